// Configuration and upstream failures, end to end in workerd: a missing binding,
// an authorization server whose metadata names another issuer, a JWKS endpoint that
// fails or rotates its keys, an origin that cannot be reached, one that never answers
// and one that dies mid-stream, and a registration upstream that never answers. The upstream here is a small server
// in this test process, so each fault can be switched on and off.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as rig from "./lib/rig.mjs";

// Every request in this file gives up after 20 s (a test that sets its own signal
// keeps it): a hang fails its own test with a clear message instead of running into
// the file's timeout and taking the tests after it down too.
const fetch = (url, init = {}) => globalThis.fetch(url, { signal: AbortSignal.timeout(20_000), ...init });

let downHits = 0;
let base, broken, nodisc, bigjwks, stale, keys, upstream, jwksFails = true, jwksHits = 0, servedJwks;
let staleUp = true, staleHits = 0, staleKeys, staleServer;
let registration = { status: 400, body: '{"error":"invalid_client_metadata","error_description":"grant not allowed"}' };

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  servedJwks = rig.publicJwks(keys);
  const upPort = await rig.freePort();
  upstream = http.createServer((req, res) => {
    // An authorization server that is down: every request to it dropped, and counted.
    if (req.url.includes("/down")) {
      downHits++;
      return req.socket.destroy();
    }
    // The origin: /origin/mcp/hang never answers; anything else is dropped unanswered.
    if (req.url.startsWith("/origin/mcp/hang")) return;
    // /origin/mcp/die: an event stream whose origin dies after the first event.
    if (req.url.startsWith("/origin/mcp/die")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('id: 1\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"one"}}\n\n');
      setTimeout(() => req.socket.destroy(), 300);
      return;
    }
    // /origin/mcp/long: an event stream that outlives ORIGIN_TIMEOUT_SECONDS (2 s):
    // headers at once, an event every second, the fourth at 3 s.
    if (req.url.startsWith("/origin/mcp/long")) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      let n = 0;
      const send = () => {
        n++;
        res.write(`id: ${n}\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"${n}"}}\n\n`);
        if (n === 4) return res.end();
        setTimeout(send, 1000);
      };
      return send();
    }
    if (req.url.startsWith("/origin/")) return req.socket.destroy();
    // A JWKS far over the 256 KiB cap, streamed slowly: read no further than the cap.
    if (req.url === "/bigjwks") {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"keys":[');
      const pad = JSON.stringify({ kty: "oct", k: "x".repeat(64 * 1024) });
      let n = 0;
      const more = () => {
        if (n++ >= 64 || res.destroyed) return res.end('{"kty":"oct","k":"eA"}]}');
        res.write(pad + ",", () => setTimeout(more, 5));
      };
      return more();
    }
    if (req.url === "/jwks") {
      jwksHits++;
      if (jwksFails) return res.writeHead(500).end("down");
      return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(servedJwks));
    }
    if (req.url === "/register") {
      if (registration.status === 0) return req.socket.destroy();
      if (registration.status === -1) return; // never answers
      return res.writeHead(registration.status, { "content-type": "application/json" }).end(registration.body);
    }
    if (req.url === "/.well-known/oauth-authorization-server/issuer") {
      return res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ issuer: `http://127.0.0.1:${upPort}/other-issuer`, authorization_endpoint: "x", token_endpoint: "y" }));
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => upstream.listen(upPort, "127.0.0.1", r));
  // The stale-limit worker's JWKS, on a server of its own (its own keys, its own
  // connections), switched off and on by the test.
  staleKeys = await rig.makeKeys();
  const stalePort = await rig.freePort();
  staleServer = http.createServer((req, res) => {
    staleHits++;
    if (!staleUp) return req.socket.destroy();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(rig.publicJwks(staleKeys)));
  });
  await new Promise((r) => staleServer.listen(stalePort, "127.0.0.1", r));
  const [wPort, bPort, nPort, jPort, sPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort(), await rig.freePort(), await rig.freePort()];
  stale = `http://127.0.0.1:${sPort}`;
  nodisc = `http://127.0.0.1:${nPort}`;
  bigjwks = `http://127.0.0.1:${jPort}`;
  base = `http://127.0.0.1:${wPort}`;
  broken = `http://127.0.0.1:${bPort}`;
  await Promise.all([
    rig.startWorker({
      port: wPort,
      vars: {
        ORIGIN_URL: `http://127.0.0.1:${upPort}/origin`,
        ORIGIN_TIMEOUT_SECONDS: "2",
        RESOURCE_URL: `${base}/mcp`,
        ISSUER: `http://127.0.0.1:${upPort}/issuer`,
        JWKS_URL: `http://127.0.0.1:${upPort}/jwks`,
        REGISTRATION_URL: `http://127.0.0.1:${upPort}/register`,
      },
    }),
    rig.startWorker({
      port: bPort,
      vars: { ORIGIN_URL: "http://127.0.0.1:1", RESOURCE_URL: `${broken}/mcp`, ISSUER: "not a url" },
    }),
    // A JWKS endpoint answering 4 MiB.
    rig.startWorker({
      port: jPort,
      vars: { ORIGIN_URL: `http://127.0.0.1:${upPort}/origin`, RESOURCE_URL: `${bigjwks}/mcp`, ISSUER: `http://127.0.0.1:${upPort}/big`, JWKS_URL: `http://127.0.0.1:${upPort}/bigjwks` },
    }),
    // A one-second JWKS TTL and a three-second stale limit, so the limit is reached
    // within the test.
    rig.startWorker({
      port: sPort,
      vars: {
        ORIGIN_URL: `http://127.0.0.1:${upPort}/origin`,
        RESOURCE_URL: `${stale}/mcp`,
        ISSUER: `http://127.0.0.1:${upPort}/stale`,
        JWKS_URL: `http://127.0.0.1:${stalePort}/jwks`,
        JWKS_CACHE_SECONDS: "1",
        JWKS_MAX_STALE_SECONDS: "3",
      },
    }),
    // The authorization server is down from the start: nothing to discover.
    rig.startWorker({
      port: nPort,
      vars: { ORIGIN_URL: `http://127.0.0.1:${upPort}/origin`, RESOURCE_URL: `${nodisc}/mcp`, ISSUER: `http://127.0.0.1:${upPort}/down` },
    }),
  ]);
});

after(async () => {
  upstream?.closeAllConnections();
  upstream?.close();
  staleServer?.closeAllConnections();
  staleServer?.close();
  await rig.stopAll();
});

async function token() {
  const now = Math.floor(Date.now() / 1000);
  const iss = (await (await fetch(`${base}/.well-known/oauth-protected-resource`)).json()).authorization_servers[0];
  return rig.signToken(keys, "RS256", { iss, sub: "u", aud: `${base}/mcp`, exp: now + 600 });
}

test("discovery down at start-up: PRM still served, metadata 502, tokens 503 with Retry-After and no retry storm", async () => {
  assert.equal((await fetch(`${nodisc}/.well-known/oauth-protected-resource`)).status, 200);
  const meta = await fetch(`${nodisc}/.well-known/oauth-authorization-server/down`);
  assert.equal(meta.status, 502);
  assert.equal((await meta.json()).error, "server_error");
  const metaHits = downHits;
  assert.equal((await fetch(`${nodisc}/.well-known/oauth-authorization-server/down`)).status, 502);
  assert.equal(downHits, metaHits, "the metadata route does not rediscover on every request either");
  const now = Math.floor(Date.now() / 1000);
  const t = await rig.signToken(keys, "RS256", { iss: "http://issuer.invalid/down", aud: `${nodisc}/mcp`, exp: now + 600 });
  const call = () => fetch(`${nodisc}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" });
  const first = await call();
  assert.equal(first.status, 503);
  assert.ok(Number(first.headers.get("retry-after")) > 0);
  assert.equal((await first.json()).error, "temporarily_unavailable");
  const hits = downHits;
  const second = await call();
  assert.equal(second.status, 503);
  assert.equal(downHits, hits, "the failure is remembered for the backoff, not rediscovered per request");
});

test("a JWKS over 256 KiB is cut off at the cap: 503, never an allow", async () => {
  const now = Math.floor(Date.now() / 1000);
  const t = await rig.signToken(keys, "RS256", { iss: `http://127.0.0.1:0/big`, aud: `${bigjwks}/mcp`, exp: now + 600 });
  const res = await fetch(`${bigjwks}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" });
  const body = await res.json();
  assert.equal(res.status, 503, JSON.stringify(body));
  assert.match(body.error_description, /more than 262144 bytes/);
});

test("a malformed binding answers 500 naming it, on every route", async () => {
  for (const path of ["/mcp", "/.well-known/oauth-protected-resource", "/register"]) {
    const res = await fetch(`${broken}${path}`, { method: "POST" });
    assert.equal(res.status, 500, path);
    const body = await res.json();
    assert.equal(body.binding, "ISSUER");
    assert.match(body.error_description, /ISSUER/);
  }
});

test("JWKS down with no keys yet: 503 with Retry-After, never an allow", async () => {
  const t = await token();
  const res = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" });
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers.get("retry-after")) > 0);
  assert.equal((await res.json()).error, "temporarily_unavailable");
  const hits = jwksHits;
  const again = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" });
  assert.equal(again.status, 503);
  assert.equal(jwksHits, hits, "a failed fetch is not retried on every request");
});

test("an unreachable origin gives 502 with a JSON-RPC error", async () => {
  jwksFails = false;
  await new Promise((r) => setTimeout(r, 5200)); // the failed-fetch backoff
  const t = await token();
  const res = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: "{}" });
  const body = await res.json();
  assert.equal(res.status, 502, JSON.stringify(body));
  assert.equal(body.jsonrpc, "2.0");
  assert.equal(body.error.code, -32603);
  assert.match(body.error.message, /origin unreachable/);
});

test("an origin that never answers gives 504 after ORIGIN_TIMEOUT_SECONDS, not a hang", async () => {
  const t = await token();
  const started = Date.now();
  const res = await fetch(`${base}/mcp/hang`, {
    method: "POST",
    headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(30_000),
  });
  const body = await res.json();
  assert.equal(res.status, 504, JSON.stringify(body));
  assert.equal(body.error.code, -32603);
  assert.match(body.error.message, /no answer within 2 s/);
  assert.ok(Date.now() - started >= 1900, "not before the timeout");
});

test("a stream that outlives ORIGIN_TIMEOUT_SECONDS runs on: the timeout covers the response headers only", async () => {
  const t = await token();
  const started = Date.now();
  const res = await fetch(`${base}/mcp/long`, { headers: { authorization: `Bearer ${t}`, accept: "text/event-stream" }, signal: AbortSignal.timeout(20_000) });
  assert.equal(res.status, 200);
  const text = await res.text();
  const events = [...text.matchAll(/"data":"(\d)"/g)].map((m) => m[1]);
  assert.deepEqual(events, ["1", "2", "3", "4"], text);
  assert.ok(Date.now() - started >= 2900, "the last event came after the 2 s timeout");
});

test("metadata naming another issuer is a configuration error that says so", async () => {
  const res = await fetch(`${base}/.well-known/oauth-authorization-server/issuer`);
  const body = await res.json();
  assert.equal(res.status, 500, JSON.stringify(body));
  assert.equal(body.binding, "ISSUER");
  assert.match(body.error_description, /other-issuer/);
});

test("registration upstream failures: 4xx keeps its status and code, 5xx and silence are 502", async () => {
  const register = () =>
    fetch(`${base}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:5555/cb"] }),
    });
  let res = await register();
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: "invalid_client_metadata", error_description: "grant not allowed" });
  registration = { status: 403, body: "<html>nope</html>" };
  res = await register();
  assert.equal(res.status, 403);
  assert.equal((await res.json()).error, "invalid_client_metadata");
  registration = { status: 503, body: "busy" };
  res = await register();
  assert.equal(res.status, 502);
  assert.equal((await res.json()).error, "server_error");
  registration = { status: 201, body: "<html>not json</html>" };
  res = await register();
  assert.equal(res.status, 502);
  registration = { status: 0 };
  res = await register();
  assert.equal(res.status, 502);
  assert.equal((await res.json()).error, "server_error");
  // A registration upstream that never answers: 502 after the upstream timeout, not a hang.
  registration = { status: -1 };
  const started = Date.now();
  res = await register();
  const body = await res.json();
  assert.equal(res.status, 502);
  assert.match(body.error_description, /did not answer within 10 s/);
  assert.ok(Date.now() - started < 20_000);
});

test("an origin that dies mid-stream: the client sees the stream end, the worker carries on", async () => {
  const t = await token();
  const res = await fetch(`${base}/mcp/die`, { headers: { authorization: `Bearer ${t}`, accept: "text/event-stream" }, signal: AbortSignal.timeout(15_000) });
  assert.equal(res.status, 200);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let ended;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    ended = "done";
  } catch (e) {
    ended = `error: ${e.name}`;
  }
  assert.match(text, /"data":"one"/, "the event sent before the origin died arrived");
  assert.ok(!/Timeout|Abort/.test(ended), `the stream ended (${ended}) and did not hang until the client gave up`);
  // The worker answers the next request. Under wrangler dev (these tests), a request
  // sent right after such a stream is now and then never answered: in a loop of this
  // test's three requests, 2 of 900 on a reused connection and 1 of 228 on a new one,
  // while the same build run directly under workerd (as tests/bench runs it) answered
  // 1,600 of 1,600. So: a short timeout and up to three tries.
  let status = "no answer";
  for (let attempt = 1; attempt <= 3 && status !== 200; attempt++) {
    try {
      const prm = await fetch(`${base}/.well-known/oauth-protected-resource`, { signal: AbortSignal.timeout(5_000) });
      status = prm.status;
      await prm.body?.cancel();
    } catch (e) {
      status = `${e.name} on try ${attempt}`;
    }
  }
  assert.equal(status, 200, "the worker answers the next request");
});

test("JWKS rotation: a new kid is picked up on first sight; a removed key is refused after the refresh", async () => {
  const fresh = await rig.makeKeys();
  const before = await token(); // kid rs1, known
  let res = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${before}` }, body: "{}" });
  assert.notEqual(res.status, 401, "the current key works");
  const now = Math.floor(Date.now() / 1000);
  const iss = (await (await fetch(`${base}/.well-known/oauth-protected-resource`)).json()).authorization_servers[0];
  const claims = { iss, sub: "u", aud: `${base}/mcp`, exp: now + 600 };
  const jose = await import("jose");
  // A token under a kid nobody publishes makes the worker fetch the JWKS now.
  const forger = await jose.generateKeyPair("RS256");
  const forged = (kid) => new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid, typ: "at+jwt" }).sign(forger.privateKey);
  await new Promise((r) => setTimeout(r, 2_100)); // past the cooldown of any earlier fetch
  let hits = jwksHits;
  res = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${await forged("forged-0")}` }, body: "{}" });
  assert.equal(res.status, 401);
  assert.equal(jwksHits, hits + 1, "an unknown kid costs one JWKS fetch");
  // Rotate: the server now publishes only a new key, under a new kid, and signs with
  // it at once (as Ory Hydra does). Its first token comes 5 s after the last fetch.
  servedJwks = { keys: rig.publicJwks(fresh).keys.map((k) => ({ ...k, kid: `new-${k.kid}` })) };
  await new Promise((r) => setTimeout(r, 5_000));
  const rotated = await new jose.SignJWT(claims).setProtectedHeader({ alg: "RS256", kid: "new-rs1", typ: "at+jwt" }).sign(fresh.private.RS256.key);
  hits = jwksHits;
  res = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${rotated}` }, body: "{}" });
  assert.notEqual(res.status, 401, `the new kid is accepted after one refetch: ${res.status}`);
  assert.equal(jwksHits, hits + 1, "exactly one JWKS fetch");
  // A flood of forged kids right after: refused, and within the cooldown no fetch.
  hits = jwksHits;
  const flood = await Promise.all(
    Array.from({ length: 20 }, async (_, i) =>
      (await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${await forged(`forged-${i + 1}`)}` }, body: "{}" })).status,
    ),
  );
  assert.deepEqual([...new Set(flood)], [401]);
  assert.ok(jwksHits <= hits + 1, `a flood of forged kids costs at most one JWKS fetch per cooldown (${jwksHits - hits})`);
  // The old key has left the JWKS: even the token accepted (and cached) before is refused now.
  res = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${before}` }, body: "{}" });
  assert.equal(res.status, 401);
  assert.match((await res.json()).error_description, /kid/);
});

test("JWKS down: cached keys serve up to JWKS_MAX_STALE_SECONDS past the TTL, then 503; back up, tokens flow again", async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // A fresh token each time: a cached one would not need the keys at all.
  const fresh = async () => {
    const now = Math.floor(Date.now() / 1000);
    const iss = `http://127.0.0.1:${upstream.address().port}/stale`;
    const t = await rig.signToken(staleKeys, "RS256", { iss, sub: `u${Math.random()}`, aud: `${stale}/mcp`, exp: now + 600 });
    return fetch(`${stale}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" });
  };
  // Authorized requests reach the origin, which drops them: 502 means "let through".
  const first = await fresh();
  assert.equal(first.status, 502, await first.text());
  const fetchedAt = Date.now();
  staleUp = false;
  const hits = staleHits;
  await sleep(1600);
  assert.equal((await fresh()).status, 502, "past the TTL, the refresh fails and the old keys still serve");
  assert.ok(staleHits > hits, "a refresh was attempted");
  // TTL 1 s + stale limit 3 s, counted in whole seconds: by 6 s the limit has passed.
  await sleep(Math.max(0, fetchedAt + 6000 - Date.now()));
  const res = await fresh();
  const body = await res.json();
  assert.equal(res.status, 503, JSON.stringify(body));
  assert.ok(Number(res.headers.get("retry-after")) > 0);
  assert.match(body.error_description, /JWKS_MAX_STALE_SECONDS/);
  staleUp = true;
  await sleep(1100);
  assert.equal((await fresh()).status, 502, "keys refreshed once the JWKS is back");
});
