// The whole MCP authorization flow through the real worker (wasm in workerd under
// wrangler dev), with real peers: oidc-provider as the authorization server behind
// the worker's AS_PASSTHROUGH (single-host layout, issuer with a path), the
// reference MCP server (@modelcontextprotocol/server-everything) as the origin, and
// the official TypeScript SDK client.
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
