// Rate limits with Cloudflare's rate-limiting bindings (wrangler.toml [env.limits]:
// 5 per minute per subject, 8 per client, 3 registrations per address), end to end
// in workerd: over the limit is 429 with Retry-After, and nothing reaches the origin.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as rig from "./lib/rig.mjs";

let base, keys, origin, docs, docPort;
let originHits = 0;
let docHits = 0;

before(async () => {
  rig.buildWorker();
  const [wPort, asPort, oPort] = await Promise.all([rig.freePort(), rig.freePort(), rig.freePort()]);
  base = `http://127.0.0.1:${wPort}`;
  keys = await rig.makeKeys();
  origin = http.createServer((req, res) => {
    originHits++;
    req.resume();
    res.writeHead(200, { "content-type": "application/json" }).end('{"jsonrpc":"2.0","id":1,"result":{}}');
  });
  await new Promise((r) => origin.listen(oPort, "127.0.0.1", r));
  // Client metadata documents that do not exist: each fetch is a refusal (400).
  docPort = await rig.freePort();
  docs = http.createServer((req, res) => {
    docHits++;
    res.writeHead(404, { "content-type": "application/json" }).end("{}");
  });
  await new Promise((r) => docs.listen(docPort, "127.0.0.1", r));
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys });
  await rig.startWorker({
    port: wPort,
    env: "limits",
    vars: { ...rig.singleHostVars(base, oPort, asPort), SCOPES_SUPPORTED: "mcp:tools", REQUIRED_SCOPES: "mcp:tools", CIMD: "true", CIMD_ALLOW_LOOPBACK: "true" },
  });
});

after(async () => {
  origin?.close();
  docs?.closeAllConnections();
  docs?.close();
  await rig.stopAll();
});

async function call(sub, client) {
  const now = Math.floor(Date.now() / 1000);
  const t = await rig.signToken(keys, "RS256", { iss: `${base}/oidc`, aud: `${base}/mcp`, sub, client_id: client, scope: "mcp:tools", iat: now, exp: now + 600 });
  return fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
}

test("per subject, then per client: 429 with Retry-After once over the limit", async () => {
  const statuses = [];
  for (let i = 0; i < 6; i++) statuses.push((await call("alice", "app-1")).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], "the sixth call of one subject");
  const limited = await call("alice", "app-1");
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get("retry-after"), "60");
  assert.equal((await limited.json()).error, "rate_limited");
  // Another subject of the same client: the client has had 5 allowed calls, its limit is 8.
  const bob = [];
  for (let i = 0; i < 4; i++) bob.push((await call("bob", "app-1")).status);
  assert.deepEqual(bob, [200, 200, 200, 429], "the client's ninth call");
  // Another client is not affected.
  assert.equal((await call("carol", "app-2")).status, 200);
  assert.equal(originHits, 5 + 3 + 1, "no limited request reached the origin");
});

test("registrations per client address: the fourth in a minute is 429", async () => {
  const statuses = [];
  for (let i = 0; i < 4; i++) {
    const res = await fetch(`${base}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_name: `c${i}`, redirect_uris: ["http://127.0.0.1:9/cb"], token_endpoint_auth_method: "none" }),
    });
    statuses.push(res.status);
    if (res.status === 429) assert.equal(res.headers.get("retry-after"), "60");
  }
  assert.deepEqual(statuses, [201, 201, 201, 429]);
});

test("client metadata document fetches count against the address's registration limit", async () => {
  const statuses = [];
  for (let i = 0; i < 4; i++) {
    const u = new URL(`${base}/oidc/auth`);
    for (const [k, v] of Object.entries({ response_type: "code", client_id: `http://127.0.0.1:${docPort}/clients/c${i}.json`, redirect_uri: "http://127.0.0.1:9/cb", code_challenge: "x".repeat(43), code_challenge_method: "S256" })) {
      u.searchParams.set(k, v);
    }
    const r = await fetch(u, { redirect: "manual", headers: { "cf-connecting-ip": "203.0.113.9" } });
    statuses.push(r.status);
  }
  assert.deepEqual(statuses, [400, 400, 400, 429]);
  assert.equal(docHits, 3, "the limited request fetched nothing");
});
