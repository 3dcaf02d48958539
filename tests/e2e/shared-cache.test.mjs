// JWKS and discovery shared across isolates through the Cache API: a worker that
// starts afresh (a new isolate, as after a deploy or in another process of the same
// data centre) finds the documents another isolate fetched and does not ask the
// authorization server again. wrangler dev keeps the Cache API in its persistence
// directory, so a restarted worker on the same port plays the new isolate.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { rmSync } from "node:fs";
import path from "node:path";
import * as rig from "./lib/rig.mjs";

let upstream, keys, wPort, base, vars;
const hits = { discovery: 0, jwks: 0 };

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  const upPort = await rig.freePort();
  wPort = await rig.freePort();
  base = `http://127.0.0.1:${wPort}`;
  const issuer = `http://127.0.0.1:${upPort}/shared`;
  upstream = http.createServer((req, res) => {
    const json = (body) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.url === "/.well-known/oauth-authorization-server/shared") {
      hits.discovery++;
      return json({ issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `http://127.0.0.1:${upPort}/jwks`, code_challenge_methods_supported: ["S256"] });
    }
    if (req.url === "/jwks") {
      hits.jwks++;
      return json(rig.publicJwks(keys));
    }
    // The origin: answers every MCP request.
    return json({ jsonrpc: "2.0", id: 1, result: {} });
  });
  await new Promise((r) => upstream.listen(upPort, "127.0.0.1", r));
  vars = { ORIGIN_URL: `http://127.0.0.1:${upPort}/origin`, RESOURCE_URL: `${base}/mcp`, ISSUER: issuer };
  rmSync(path.join(rig.root, ".wrangler/test-state", String(wPort)), { recursive: true, force: true });
});

after(async () => {
  upstream.closeAllConnections();
  upstream.close();
  await rig.stopAll();
});

async function call() {
  const now = Math.floor(Date.now() / 1000);
  const t = await rig.signToken(keys, "RS256", { iss: vars.ISSUER, sub: `u${Math.random()}`, aud: `${base}/mcp`, exp: now + 600 });
  return fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: "{}" });
}

async function stop(proc) {
  const exited = new Promise((r) => proc.once("exit", r));
  process.kill(-proc.pid, "SIGTERM");
  await exited;
}

test("a new isolate takes the JWKS and discovery another isolate fetched, asking the authorization server nothing", async () => {
  const first = await rig.startWorker({ port: wPort, vars });
  assert.equal((await call()).status, 200);
  assert.deepEqual(hits, { discovery: 1, jwks: 1 });
  await stop(first);
  const second = await rig.startWorker({ port: wPort, vars });
  const res = await call();
  assert.equal(res.status, 200, await res.text());
  assert.deepEqual(hits, { discovery: 1, jwks: 1 }, "the restarted worker fetched nothing upstream");
  // The authorization-server metadata route is served from the shared document too.
  const meta = await fetch(`${base}/.well-known/oauth-authorization-server/shared`);
  assert.equal(meta.status, 200);
  assert.equal(hits.discovery, 1);
  await stop(second);
});
