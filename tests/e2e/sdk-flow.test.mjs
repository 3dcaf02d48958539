// The whole MCP authorization flow through the real worker (wasm in workerd under
// wrangler dev), with real peers: oidc-provider as the authorization server behind
// the worker's AS_PASSTHROUGH (single-host layout, issuer with a path), the
// reference MCP server (@modelcontextprotocol/server-everything) as the origin, and
// the official TypeScript and Python SDK clients.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect } from "./lib/oauth-client.mjs";

let worker;
let base;
let logs;

before(async () => {
  rig.buildWorker();
  const [wPort, asPort, oPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
  base = `http://127.0.0.1:${wPort}`;
  const keys = await rig.makeKeys();
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys });
  await rig.startEverythingOrigin(oPort);
  worker = await rig.startWorker({
    port: wPort,
    vars: {
      ...rig.singleHostVars(base, oPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
    },
  });
  logs = () => worker.output;
});

after(rig.stopAll);

test("the TypeScript SDK client completes the OAuth flow through the worker and calls a tool", async () => {
  const provider = new HeadlessProvider();
  const { client } = await connect(`${base}/mcp`, provider);
  assert.equal(provider.registrations, 1, "registered once, through the worker");
  assert.ok(provider.clientInformation().client_id);
  const auth = provider.authorizations[0];
  assert.equal(auth.origin, base, "authorization went through the worker's host");
  assert.equal(auth.pathname, "/oidc/auth");
  assert.equal(auth.searchParams.get("resource"), `${base}/mcp`);
  assert.equal(auth.searchParams.get("code_challenge_method"), "S256");
  assert.equal(auth.searchParams.get("scope"), "mcp:tools");
  const tools = await client.listTools();
  assert.ok(tools.tools.some((t) => t.name === "echo"), "tools/list reached server-everything");
  const result = await client.callTool({ name: "echo", arguments: { message: "through the edge" } });
  assert.match(result.content[0].text, /through the edge/);
  await client.close();
  const access = provider.tokens().access_token;
  assert.ok(!logs().includes(access), "the access token never reaches the worker's log");
});

// Field clients (SPEC): Claude Code sometimes sends no `scope` on authorize, Claude.ai
// no `resource` (so tokens would come back without the audience). The worker fills
// in what is missing on the authorization request it passes through.
class ForgetfulProvider extends HeadlessProvider {
  constructor(forget, opts) {
    super(opts);
    this.forget = forget;
  }
  async redirectToAuthorization(url) {
    const forgetful = new URL(url);
    for (const p of this.forget) forgetful.searchParams.delete(p);
    return super.redirectToAuthorization(forgetful);
  }
}

for (const forget of [["scope"], ["resource"], ["scope", "resource"]]) {
  test(`a client that never sends ${forget.join(" or ")} still gets a token bound to the resource, with scope`, async () => {
    const provider = new ForgetfulProvider(forget, { clientName: `forgetful-${forget.join("-")}` });
    // Nor `resource` on the token request, when it forgets it.
    const tokenRequests = [];
    const forgetfulFetch = async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.endsWith("/oidc/token") && init?.body instanceof URLSearchParams) {
        if (forget.includes("resource")) init.body.delete("resource");
        tokenRequests.push(init.body.toString());
      }
      return fetch(input, init);
    };
    const { client } = await connect(`${base}/mcp`, provider, undefined, forgetfulFetch);
    const sent = provider.authorizations[0];
    for (const p of forget) assert.equal(sent.searchParams.get(p), null, `the client sent no ${p}`);
    if (forget.includes("resource")) assert.ok(tokenRequests.length >= 1 && tokenRequests.every((b) => !b.includes("resource=")));
    const claims = JSON.parse(Buffer.from(provider.tokens().access_token.split(".")[1], "base64url"));
    assert.equal(claims.aud, `${base}/mcp`, "the token carries the resource as its audience");
    assert.equal(claims.scope, "mcp:tools", "REQUIRED_SCOPES when the client named none");
    assert.ok((await client.listTools()).tools.some((t) => t.name === "echo"));
    const result = await client.callTool({ name: "echo", arguments: { message: "forgetful" } });
    assert.match(result.content[0].text, /forgetful/);
    await client.close();
  });
}

test("the Python SDK client completes the OAuth flow through the worker (issuer and RFC 9207 iss checked) and calls a tool", async () => {
  const r = await rig.runPythonClient(`${base}/mcp`);
  assert.ok(r.tools.includes("echo"), "tools/list reached server-everything");
  assert.match(r.echo, /from python/);
  assert.equal(r.iss, `${base}/oidc`, "the authorization response carried iss, which the SDK checked");
  const auth = new URL(r.authorize);
  assert.equal(auth.origin + auth.pathname, `${base}/oidc/auth`);
  assert.equal(auth.searchParams.get("resource"), `${base}/mcp`);
  assert.equal(auth.searchParams.get("code_challenge_method"), "S256");
  assert.ok(r.client_id, "registered through the worker");
});
