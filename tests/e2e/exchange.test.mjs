// Token exchange (RFC 8693, TOKEN_EXCHANGE=true), end to end: the real wasm build in
// workerd trading each caller's token at oidc-provider's token endpoint (an
// extension grant registered in tests/e2e/peers/authorization-server.mjs) with the
// worker's own client credentials, the official TypeScript SDK client running the
// whole OAuth flow, and an origin on the TypeScript SDK that accepts only a token it
// verifies itself with jose against the authorization server's keys, for its own
// audience (tests/e2e/peers/verifying-origin.mjs). Other workers in this file face
// the same server with credentials or requests it refuses, or no server at all.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as jose from "jose";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect } from "./lib/oauth-client.mjs";

const EXCHANGER = ["mcp-edge", "edge-exchange-secret"];
let base, asPort, oPort, keys, worker, originAudience;

async function json(url) {
  return (await fetch(url)).json();
}
const exchanges = async () => (await json(`http://127.0.0.1:${asPort}/__stats`)).exchanges;
const originCalls = async () => json(`http://127.0.0.1:${oPort}/calls`);

before(async () => {
  rig.buildWorker();
  const wPort = await rig.freePort();
  [asPort, oPort] = [await rig.freePort(), await rig.freePort()];
  base = `http://127.0.0.1:${wPort}`;
  originAudience = `http://127.0.0.1:${oPort}/mcp`;
  keys = await rig.makeKeys();
  await rig.startAuthorizationServer({
    port: asPort,
    issuer: `${base}/oidc`,
    keys,
    exchanger: EXCHANGER.join(":"),
    exchangeFrom: `${base}/mcp`,
  });
  await rig.startVerifyingOrigin(oPort, {
    jwks: `http://127.0.0.1:${asPort}/oidc/jwks`,
    issuer: `${base}/oidc`,
    audience: originAudience,
  });
  worker = await rig.startWorkerd({
    port: wPort,
    vars: {
      ...rig.singleHostVars(base, oPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
      TOKEN_EXCHANGE: "true",
      TOKEN_EXCHANGE_CLIENT_ID: EXCHANGER[0],
      TOKEN_EXCHANGE_CLIENT_SECRET: EXCHANGER[1],
      TOKEN_EXCHANGE_RESOURCE: originAudience,
    },
  });
});

after(rig.stopAll);

/** Another worker on the same authorization server (not its single host): tokens for
 * the main worker's resource are accepted (AUDIENCE), so the server will exchange them. */
async function otherWorker(vars) {
  const port = await rig.freePort();
  await rig.startWorkerd({
    port,
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${oPort}`,
      RESOURCE_URL: `http://127.0.0.1:${port}/mcp`,
      AUDIENCE: `${base}/mcp`,
      ISSUER: `${base}/oidc`,
      AS_URL: `http://127.0.0.1:${asPort}`,
      REQUIRED_SCOPES: "mcp:tools",
      TOKEN_EXCHANGE: "true",
      TOKEN_EXCHANGE_CLIENT_ID: EXCHANGER[0],
      TOKEN_EXCHANGE_CLIENT_SECRET: EXCHANGER[1],
      TOKEN_EXCHANGE_RESOURCE: originAudience,
      ...vars,
    },
  });
  return `http://127.0.0.1:${port}`;
}

/** A token as the authorization server signs them, for the main worker's resource. */
function subjectToken(claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  return rig.signToken(keys, "RS256", {
    iss: `${base}/oidc`,
    aud: `${base}/mcp`,
    sub: "carol",
    client_id: "some-app",
    scope: "mcp:tools",
    iat: now,
    exp: now + 600,
    ...claims,
  });
}

const initialize = (url, token) =>
  fetch(`${url}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } } }),
  });

test("the SDK client's token is exchanged once; the origin verifies the issued token with jose and never sees the client's", async () => {
  const provider = new HeadlessProvider({ clientName: "exchange-e2e" });
  const { client } = await connect(`${base}/mcp`, provider);
  const before = (await exchanges()).length;
  const tools = await client.listTools();
  assert.deepEqual(tools.tools.map((t) => t.name), ["whoami"]);
  const result = await client.callTool({ name: "whoami", arguments: {} });
  const claims = JSON.parse(result.content[0].text);
  await client.close();
  // What the origin verified: the user, for the origin's audience, from the same
  // issuer, with the worker as the actor.
  assert.equal(claims.sub, "demo-user");
  assert.equal(claims.aud, originAudience);
  assert.equal(claims.iss, `${base}/oidc`);
  assert.deepEqual(claims.act, { sub: EXCHANGER[0] });
  assert.equal(claims.scope, "mcp:tools");
  assert.equal(claims.client_id, EXCHANGER[0]);
  assert.ok(claims.subject_client_id, "the server kept the original client");
  // The SDK's requests (initialize, notifications, list, call) shared one exchange.
  const made = (await exchanges()).slice(before);
  assert.ok(made.length <= 1, `${made.length} exchanges after the first`);
  const all = await exchanges();
  assert.equal(all.filter((e) => e.sub === "demo-user").length, 1, "one exchange for the token");
  assert.deepEqual(all[0], { sub: "demo-user", resource: originAudience, scope: "mcp:tools", client: EXCHANGER[0] });
  const calls = await originCalls();
  assert.ok(calls.length >= 3 && calls.every((c) => c.accepted === "demo-user"), JSON.stringify(calls));
  // The client's own token is refused by the origin: it was never meant for it.
  const own = provider.tokens().access_token;
  const direct = await initialize(`http://127.0.0.1:${oPort}`, own);
  assert.equal(direct.status, 401);
  assert.match((await direct.json()).error_description, /aud/);
  assert.ok(!worker.output.includes(own), "no token in the worker's log");
});

test("a forged or self-made token sent straight to the origin is refused", async () => {
  const { privateKey } = await jose.generateKeyPair("RS256");
  const now = Math.floor(Date.now() / 1000);
  const forged = await new jose.SignJWT({ sub: "mallory", scope: "mcp:tools" })
    .setProtectedHeader({ alg: "RS256", kid: keys.private.RS256.kid })
    .setIssuer(`${base}/oidc`)
    .setAudience(originAudience)
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(privateKey);
  assert.equal((await initialize(`http://127.0.0.1:${oPort}`, forged)).status, 401);
  assert.equal((await initialize(`http://127.0.0.1:${oPort}`, "")).status, 401);
});

test("refused exchanges: the server's code to the client, nothing to the origin", async () => {
  const calls = (await originCalls()).length;
  // invalid_grant: the server will not take the subject token (its clock allows no
  // skew on nbf, the worker's allows 60 s): 401 invalid_token, so the client
  // authorizes again.
  const early = await subjectToken({ nbf: Math.floor(Date.now() / 1000) + 30 });
  let r = await initialize(base, early);
  assert.equal(r.status, 401);
  assert.match(r.headers.get("www-authenticate"), /^Bearer error="invalid_token", error_description="[^"]*invalid_grant/);
  // invalid_scope: the worker asks for more than the caller holds: 403 with that code.
  const greedy = await otherWorker({ TOKEN_EXCHANGE_SCOPE: "mcp:tools mcp:admin" });
  r = await initialize(greedy, await subjectToken());
  assert.equal(r.status, 403);
  const body = await r.json();
  assert.equal(body.error, "invalid_scope");
  assert.doesNotMatch(JSON.stringify(body), /more scope than/, "the server's own words stay behind");
  // A token the server did not mean for the worker (confused deputy): the server
  // refuses to exchange it.
  const elsewhere = await otherWorker({ AUDIENCE: "https://another-resource.example/mcp" });
  r = await initialize(elsewhere, await subjectToken({ aud: "https://another-resource.example/mcp" }));
  assert.equal(r.status, 401);
  // The worker's own credentials wrong: 502 naming the binding, not the server's words.
  const wrong = await otherWorker({ TOKEN_EXCHANGE_CLIENT_SECRET: "not-the-secret" });
  r = await initialize(wrong, await subjectToken());
  assert.equal(r.status, 502);
  assert.match((await r.json()).error_description, /TOKEN_EXCHANGE_CLIENT_ID/);
  // No server: 503 with Retry-After.
  const closed = await rig.freePort();
  const down = await otherWorker({ TOKEN_EXCHANGE_URL: `http://127.0.0.1:${closed}/token` });
  r = await initialize(down, await subjectToken());
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("retry-after"), "5");
  assert.equal((await originCalls()).length, calls, "nothing was forwarded without an exchanged token");
});

test("concurrent first requests with one token share one exchange; another token gets its own", async () => {
  const before = (await exchanges()).length;
  const [a, b] = [await subjectToken({ sub: "dave" }), await subjectToken({ sub: "erin" })];
  const answers = await Promise.all([a, a, a, a, b].map((t) => initialize(base, t)));
  assert.deepEqual(answers.map((r) => r.status), [200, 200, 200, 200, 200]);
  const made = (await exchanges()).slice(before);
  assert.deepEqual(made.map((e) => e.sub).sort(), ["dave", "erin"]);
});
