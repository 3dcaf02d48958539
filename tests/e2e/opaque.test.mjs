// Opaque access tokens checked by introspection (RFC 7662), end to end: oidc-provider
// issuing opaque tokens, its real introspection endpoint called by the real wasm
// build in workerd with client_secret_basic credentials, the official TypeScript SDK
// client running the whole flow, and revocation at the server taking effect within
// INTROSPECTION_CACHE_SECONDS. A second worker faces an introspection endpoint in this
// test process that can be switched off, slowed down or made to answer garbage.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect } from "./lib/oauth-client.mjs";

const INTROSPECTOR = ["edge-introspector", "s3cret-introspection-credential"];
const CACHE_SECONDS = 2;
let base, asPort, worker, faultyBase, faulty, endpoint;
let mode = "active"; // of the endpoint in this process: active | down | slow | html | inactive
let asked = [];

before(async () => {
  rig.buildWorker();
  const [wPort, oPort, fPort, iPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort(), await rig.freePort()];
  asPort = await rig.freePort();
  base = `http://127.0.0.1:${wPort}`;
  faultyBase = `http://127.0.0.1:${fPort}`;
  const keys = await rig.makeKeys();
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys, opaque: true, introspector: INTROSPECTOR.join(":") });
  await rig.startEverythingOrigin(oPort);
  worker = await rig.startWorker({
    port: wPort,
    vars: {
      ...rig.singleHostVars(base, oPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
      INTROSPECTION_URL: `http://127.0.0.1:${asPort}/oidc/token/introspection`,
      INTROSPECTION_CLIENT_ID: INTROSPECTOR[0],
      INTROSPECTION_CLIENT_SECRET: INTROSPECTOR[1],
      INTROSPECTION_CACHE_SECONDS: String(CACHE_SECONDS),
    },
  });

  // An RFC 7662 endpoint whose behaviour each test picks.
  endpoint = http
    .createServer(async (req, res) => {
      let body = "";
      for await (const c of req) body += c;
      asked.push({ auth: req.headers.authorization, body });
      if (mode === "down") return req.socket.destroy();
      if (mode === "slow") return; // never answers
      if (mode === "html") return res.writeHead(200, { "content-type": "text/html" }).end("<html>sign in</html>");
      if (mode === "delayed") await new Promise((r) => setTimeout(r, 500));
      if (mode === "inactive") return res.writeHead(200, { "content-type": "application/json" }).end('{"active":false}');
      const now = Math.floor(Date.now() / 1000);
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({ active: true, sub: "u1", client_id: "c1", scope: "mcp:tools", aud: `${faultyBase}/mcp`, iss: `${faultyBase}/oidc`, exp: now + 600, iat: now }),
      );
    })
    .listen(iPort, "127.0.0.1");
  faulty = await rig.startWorker({
    port: fPort,
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${oPort}`,
      RESOURCE_URL: `${faultyBase}/mcp`,
      ISSUER: `${faultyBase}/oidc`,
      AS_URL: `http://127.0.0.1:${asPort}`,
      INTROSPECTION_URL: `http://127.0.0.1:${iPort}/introspect`,
      INTROSPECTION_BEARER_TOKEN: "ory_pat_test-api-key",
      INTROSPECTION_CACHE_SECONDS: "0",
      INTROSPECTION_TIMEOUT_SECONDS: "1",
    },
  });
});

after(async () => {
  endpoint.closeAllConnections();
  endpoint.close();
  await rig.stopAll();
});

const initialize = (token, url = `${base}/mcp`) =>
  fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "opaque-e2e", version: "1" } } }),
  });

let sdkToken, sdkClientId;

test("the TypeScript SDK client gets an opaque token and calls a tool through the worker", async () => {
  const provider = new HeadlessProvider({ clientName: "opaque-e2e" });
  const { client } = await connect(`${base}/mcp`, provider);
  sdkToken = provider.tokens().access_token;
  sdkClientId = provider.clientInformation().client_id;
  assert.ok(sdkToken.split(".").length !== 3, `an opaque token, not a JWT: ${sdkToken.length} characters`);
  const result = await client.callTool({ name: "echo", arguments: { message: "opaque at the edge" } });
  assert.match(result.content[0].text, /opaque at the edge/);
  await client.close();
  const out = worker.output;
  assert.ok(!out.includes(sdkToken), "the token never reaches the worker's log");
  assert.ok(!out.includes(INTROSPECTOR[1]), "nor the introspection secret");
  // The identity the origin would see came from the introspection answer.
  assert.match(out, new RegExp(`"client":"${sdkClientId}"`));
});

test("a token revoked at the server is refused within INTROSPECTION_CACHE_SECONDS", async () => {
  assert.ok(sdkToken, "the SDK test ran first");
  assert.equal((await initialize(sdkToken)).status, 200);
  const revoked = await fetch(`http://127.0.0.1:${asPort}/oidc/token/revocation`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: sdkToken, client_id: sdkClientId }),
  });
  assert.equal(revoked.status, 200, await revoked.text());
  const start = Date.now();
  let res;
  for (;;) {
    res = await initialize(sdkToken);
    if (res.status !== 200 || Date.now() - start > (CACHE_SECONDS + 5) * 1000) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const waited = (Date.now() - start) / 1000;
  assert.equal(res.status, 401, `still accepted ${waited} s after revocation`);
  assert.ok(waited <= CACHE_SECONDS + 1, `refused after ${waited} s, bound ${CACHE_SECONDS} s`);
  const challenge = res.headers.get("www-authenticate");
  assert.match(challenge, /error="invalid_token"/);
  assert.match(challenge, /not active/);
  assert.match(challenge, /resource_metadata=/);
});

test("an opaque token the server never issued is 401 with a challenge", async () => {
  const res = await initialize("not-a-real-token-0123456789");
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /error="invalid_token"/);
});

test("the introspection endpoint is asked with the bearer API key and the token in a form body", async () => {
  mode = "active";
  asked = [];
  const res = await initialize("ory_at_abc.def", `${faultyBase}/mcp`);
  assert.equal(res.status, 200, await res.text());
  assert.equal(asked.length, 1);
  assert.equal(asked[0].auth, "Bearer ory_pat_test-api-key");
  assert.equal(asked[0].body, "token=ory_at_abc.def&token_type_hint=access_token");
  assert.ok(!faulty.output.includes("ory_pat_test-api-key"), "the API key is not logged");
});

test("concurrent first requests with one opaque token share one introspection call", async () => {
  // INTROSPECTION_CACHE_SECONDS=0 on this worker: only the shared call can explain one.
  // The endpoint takes 500 ms, so all eight are in flight together.
  mode = "delayed";
  asked = [];
  const answers = await Promise.all(Array.from({ length: 8 }, () => initialize("ory_at_burst.x", `${faultyBase}/mcp`)));
  mode = "active";
  for (const a of answers) assert.equal(a.status, 200, await a.text());
  assert.equal(asked.length, 1);
  // Later, with nothing in flight and no cache: asked again.
  assert.equal((await initialize("ory_at_burst.x", `${faultyBase}/mcp`)).status, 200);
  assert.equal(asked.length, 2);
});

for (const [fault, limit] of [["down", 5], ["slow", 4], ["html", 5]]) {
  test(`an introspection endpoint that is ${fault} gives 503 with Retry-After, never an allow`, async () => {
    mode = fault;
    const start = Date.now();
    const res = await initialize(`ory_at_${fault}.x`, `${faultyBase}/mcp`);
    const took = (Date.now() - start) / 1000;
    mode = "active";
    const text = await res.text();
    assert.equal(res.status, 503, text);
    assert.equal(res.headers.get("retry-after"), "5");
    const body = JSON.parse(text);
    assert.equal(body.error, "temporarily_unavailable");
    assert.ok(took < limit, `answered in ${took} s (INTROSPECTION_TIMEOUT_SECONDS=1)`);
  });
}

test("an inactive answer is 401 invalid_token", async () => {
  mode = "inactive";
  const res = await initialize("ory_at_inactive.x", `${faultyBase}/mcp`);
  mode = "active";
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /error="invalid_token"/);
});
