// The identity assertion the worker signs for the origin (ASSERTION_KEY), end to end:
// the real wasm build in workerd signing with WebCrypto, an origin that records what it
// received (tests/e2e/peers/probe-origin.mjs), and verification the way an origin does
// it, with `jose` against the worker's published JWKS. Tokens are signed with the
// authorization server's keys (oidc-provider serves them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as jose from "jose";
import * as rig from "./lib/rig.mjs";

let keys; // the authorization server's
let origin; // the probe origin's URL
let asPort;
const edge = {}; // the worker's assertion keys: private JWKs by name

/** A private JWK for ASSERTION_KEY, as an operator would export one. */
async function signingKey(alg, kid) {
  const { privateKey } = await jose.generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined, extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid };
}

async function worker(vars) {
  const port = await rig.freePort();
  const base = `http://127.0.0.1:${port}`;
  await rig.startWorkerd({
    port,
    vars: {
      ORIGIN_URL: origin,
      RESOURCE_URL: `${base}/mcp`,
      ISSUER: `http://127.0.0.1:${asPort}/oidc`,
      REQUIRED_SCOPES: "mcp:tools",
      ...vars,
    },
  });
  return base;
}

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  asPort = await rig.freePort();
  await rig.startAuthorizationServer({ port: asPort, issuer: `http://127.0.0.1:${asPort}/oidc`, keys });
  const oPort = await rig.freePort();
  await rig.startProbeOrigin(oPort);
  origin = `http://127.0.0.1:${oPort}`;
  edge.es = await signingKey("ES256", "edge-es");
  edge.ed = await signingKey("EdDSA", "edge-ed");
});

after(rig.stopAll);

async function token(base, claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  return rig.signToken(keys, "RS256", {
    iss: `http://127.0.0.1:${asPort}/oidc`,
    aud: `${base}/mcp`,
    sub: "alice",
    client_id: "app",
    scope: "mcp:tools",
    iat: now,
    exp: now + 600,
    ...claims,
  });
}

/** What the origin received for a request through the worker. */
async function seen(base, tok, headers = {}) {
  const r = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${tok}`, ...headers }, body: "{}" });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()).headers;
}

test("the worker signs an assertion an origin verifies with jose against the published JWKS; reused within its window; never the token", async () => {
  const base = await worker({ ASSERTION_KEY: JSON.stringify(edge.es), ASSERTION_SECOND_KEY: JSON.stringify(edge.ed) });
  const jwksAnswer = await fetch(`${base}/.well-known/mcp-edge-auth/jwks.json`);
  assert.equal(jwksAnswer.status, 200);
  assert.match(jwksAnswer.headers.get("cache-control"), /max-age=300/);
  const jwks = await jwksAnswer.json();
  assert.deepEqual(jwks.keys.map((k) => [k.kid, k.alg, k.use]), [["edge-es", "ES256", "sig"], ["edge-ed", "EdDSA", "sig"]]);
  assert.ok(jwks.keys.every((k) => k.d === undefined), "no private member published");

  const tok = await token(base);
  const h1 = await seen(base, tok, { "x-auth-assertion": "forged-by-the-client" });
  const assertion = h1["x-auth-assertion"];
  assert.notEqual(assertion, "forged-by-the-client", "a client's copy never reaches the origin");
  assert.equal(h1.authorization, undefined);
  assert.ok(!assertion.includes(tok.split(".")[1]), "the token is not in the assertion");
  const { payload, protectedHeader } = await jose.jwtVerify(assertion, jose.createRemoteJWKSet(new URL(`${base}/.well-known/mcp-edge-auth/jwks.json`)), {
    issuer: base,
    audience: origin,
    typ: "mcp-edge+jwt",
  });
  assert.equal(protectedHeader.kid, "edge-es");
  assert.equal(payload.sub, "alice");
  assert.equal(payload.client_id, "app");
  assert.equal(payload.scope, "mcp:tools");
  assert.equal(payload.token_iss, `http://127.0.0.1:${asPort}/oidc`);
  assert.ok(payload.jti && payload.exp - payload.iat <= 300);
  const h2 = await seen(base, tok);
  assert.equal(h2["x-auth-assertion"], assertion, "the same token within the window: the same assertion, signed once");
  const other = await seen(base, await token(base, { sub: "bob" }));
  assert.notEqual(other["x-auth-assertion"], assertion);

  // What an origin refuses: another audience (an assertion replayed at another
  // origin), a forged signature, an expired one.
  await assert.rejects(jose.jwtVerify(assertion, jose.createLocalJWKSet(jwks), { issuer: base, audience: "https://other-origin.example" }), /aud/);
  const forger = await signingKey("ES256", "edge-es");
  const forged = await new jose.SignJWT({ sub: "mallory", scope: "mcp:admin" })
    .setProtectedHeader({ alg: "ES256", kid: "edge-es", typ: "mcp-edge+jwt" })
    .setIssuer(base)
    .setAudience(origin)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(await jose.importJWK(forger, "ES256"));
  await assert.rejects(jose.jwtVerify(forged, jose.createLocalJWKSet(jwks), { issuer: base, audience: origin }), /signature/);
});

test("the assertion never outlives the token", async () => {
  const base = await worker({ ASSERTION_KEY: JSON.stringify(edge.ed) });
  const now = Math.floor(Date.now() / 1000);
  const tok = await token(base, { exp: now + 20 });
  const { payload } = await jose.jwtVerify((await seen(base, tok))["x-auth-assertion"], jose.createRemoteJWKSet(new URL(`${base}/.well-known/mcp-edge-auth/jwks.json`)), { issuer: base, audience: origin });
  assert.equal(payload.exp, now + 20);
});

test("rotation: a second key is published first, then made current, and an origin's cached JWKS verifies both without a failed request", async () => {
  const before = await worker({ ASSERTION_KEY: JSON.stringify(edge.es), ASSERTION_SECOND_KEY: JSON.stringify(edge.ed) });
  const cached = jose.createLocalJWKSet(await (await fetch(`${before}/.well-known/mcp-edge-auth/jwks.json`)).json());
  // The same deployment after the swap (same public name: the origin checks issuer).
  const after_ = await worker({ ASSERTION_KEY: JSON.stringify(edge.ed), ASSERTION_SECOND_KEY: JSON.stringify(edge.es), RESOURCE_URL: `${before}/mcp` });
  for (const [base, kid] of [[before, "edge-es"], [after_, "edge-ed"]]) {
    const tok = await token(before);
    const r = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${tok}` }, body: "{}" });
    assert.equal(r.status, 200);
    const { protectedHeader } = await jose.jwtVerify((await r.json()).headers["x-auth-assertion"], cached, { issuer: before, audience: origin });
    assert.equal(protectedHeader.kid, kid);
  }
});

test("ASSERTION_HEADER=Authorization: the origin gets the assertion as its bearer token, never the client's", async () => {
  const base = await worker({ ASSERTION_KEY: JSON.stringify(edge.es), ASSERTION_HEADER: "Authorization", ASSERTION_AUDIENCE: "urn:origin" });
  const tok = await token(base);
  const h = await seen(base, tok);
  assert.match(h.authorization, /^Bearer /);
  assert.notEqual(h.authorization, `Bearer ${tok}`);
  assert.equal(h["x-auth-assertion"], undefined);
  const { payload } = await jose.jwtVerify(h.authorization.slice(7), jose.createRemoteJWKSet(new URL(`${base}/.well-known/mcp-edge-auth/jwks.json`)), { issuer: base, audience: "urn:origin" });
  assert.equal(payload.sub, "alice");
});

test("a malformed key, or one WebCrypto refuses, is a configuration error naming the binding; without ASSERTION_KEY no JWKS is served", async () => {
  const bad = await worker({ ASSERTION_KEY: '{"kty":"RSA"}' });
  const r = await fetch(`${bad}/.well-known/oauth-protected-resource`);
  assert.equal(r.status, 500);
  const body = await r.text();
  assert.match(body, /ASSERTION_KEY/);
  // Well formed but not a key WebCrypto takes (a point off the curve): each request
  // is a 500 naming the binding, never a crash or an unsigned forward.
  const offCurve = { kty: "EC", crv: "P-256", x: "A".repeat(43), y: "A".repeat(43), d: edge.es.d, kid: "broken" };
  const broken = await worker({ ASSERTION_KEY: JSON.stringify(offCurve) });
  const refused = await fetch(`${broken}/mcp/echo`, { method: "POST", headers: { authorization: `Bearer ${await token(broken)}` }, body: "{}" });
  assert.equal(refused.status, 500);
  assert.match(await refused.text(), /ASSERTION_KEY/);
  const plain = await worker({});
  assert.equal((await fetch(`${plain}/.well-known/mcp-edge-auth/jwks.json`)).status, 404);
  const h = await seen(plain, await token(plain));
  assert.equal(h["x-auth-assertion"], undefined);
});

/** A 2026-07-28 `tools/call whoami` to `url`, with this Authorization. */
async function whoami(url, authorization) {
  const meta = { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} };
  const r = await fetch(url, {
    method: "POST",
    headers: {
      ...(authorization ? { authorization } : {}),
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": "2026-07-28",
      "mcp-method": "tools/call",
      "mcp-name": "whoami",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "whoami", arguments: {}, _meta: meta } }),
  });
  return { status: r.status, body: await r.text() };
}

test("an origin on the Python SDK's resource-server support accepts the worker's assertion and refuses forged or replayed-elsewhere ones sent straight to it", async () => {
  const [wPort, pyPort] = [await rig.freePort(), await rig.freePort()];
  const base = `http://127.0.0.1:${wPort}`;
  const pyOrigin = `http://127.0.0.1:${pyPort}`;
  const audience = `${pyOrigin}/mcp`;
  const proc = rig.start("assertion-origin", `${rig.root}/.venv/bin/python`, ["tests/e2e/python/assertion_origin.py", String(pyPort), `${base}/.well-known/mcp-edge-auth/jwks.json`, base, audience]);
  await rig.waitFor(`${pyOrigin}/.well-known/oauth-protected-resource/mcp`, proc);
  const vars = { ASSERTION_KEY: JSON.stringify(edge.es), ASSERTION_HEADER: "Authorization", ASSERTION_AUDIENCE: audience };
  await rig.startWorkerd({
    port: wPort,
    vars: { ORIGIN_URL: pyOrigin, RESOURCE_URL: `${base}/mcp`, ISSUER: `http://127.0.0.1:${asPort}/oidc`, REQUIRED_SCOPES: "mcp:tools", ...vars },
  });
  const tok = await token(base);
  const through = await whoami(`${base}/mcp`, `Bearer ${tok}`);
  assert.equal(through.status, 200, through.body);
  const result = JSON.parse(through.body).result;
  assert.equal(result.structuredContent.sub, "alice");
  assert.equal(result.structuredContent.client_id, "app");
  assert.equal(result.structuredContent.token_iss, `http://127.0.0.1:${asPort}/oidc`);

  // Straight to the origin: no assertion, the client's own token, a forged assertion,
  // and a genuine one the same worker key signed for another origin.
  assert.equal((await whoami(audience)).status, 401);
  assert.equal((await whoami(audience, `Bearer ${tok}`)).status, 401, "the client's token is no assertion");
  const forged = await new jose.SignJWT({ sub: "mallory", client_id: "app", scope: "mcp:tools" })
    .setProtectedHeader({ alg: "ES256", kid: "edge-es", typ: "mcp-edge+jwt" })
    .setIssuer(base)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(await jose.importJWK(await signingKey("ES256", "edge-es"), "ES256"));
  assert.equal((await whoami(audience, `Bearer ${forged}`)).status, 401, "forged");
  const elsewhere = await worker({ ...vars, ASSERTION_AUDIENCE: "https://another-origin.example", RESOURCE_URL: `${base}/mcp` });
  const replayed = (await seen(elsewhere, await token(elsewhere, { aud: `${base}/mcp` }))).authorization;
  assert.match(replayed, /^Bearer /);
  assert.equal((await whoami(audience, replayed)).status, 401, "made for another origin");
});

test("an origin on the TypeScript SDK, verifying with jose, accepts calls through the worker and refuses the client's token and forged assertions sent straight to it", async () => {
  const [wPort, vPort] = [await rig.freePort(), await rig.freePort()];
  const base = `http://127.0.0.1:${wPort}`;
  const verifying = `http://127.0.0.1:${vPort}`;
  await rig.startVerifyingOrigin(vPort, {
    jwks: `${base}/.well-known/mcp-edge-auth/jwks.json`,
    issuer: base,
    audience: verifying,
    typ: "mcp-edge+jwt",
  });
  await rig.startWorkerd({
    port: wPort,
    vars: {
      ORIGIN_URL: verifying,
      RESOURCE_URL: `${base}/mcp`,
      ISSUER: `http://127.0.0.1:${asPort}/oidc`,
      REQUIRED_SCOPES: "mcp:tools",
      ASSERTION_KEY: JSON.stringify(edge.ed),
      ASSERTION_HEADER: "Authorization",
    },
  });
  const call = (url, authorization) =>
    fetch(url, {
      method: "POST",
      headers: { authorization, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "whoami", arguments: {} } }),
    });
  const tok = await token(base);
  const through = await call(`${base}/mcp`, `Bearer ${tok}`);
  assert.equal(through.status, 200);
  const claims = JSON.parse((await through.json()).result.content[0].text);
  assert.equal(claims.sub, "alice");
  assert.equal(claims.aud, verifying, "ASSERTION_AUDIENCE defaults to the origin of ORIGIN_URL");
  assert.equal(claims.iss, base);
  // Straight to the origin: the client's own token, a forged assertion (same kid,
  // another key), nothing.
  assert.equal((await call(`${verifying}/mcp`, `Bearer ${tok}`)).status, 401);
  const { privateKey } = await jose.generateKeyPair("EdDSA", { crv: "Ed25519" });
  const now = Math.floor(Date.now() / 1000);
  const forged = await new jose.SignJWT({ sub: "mallory", scope: "mcp:tools" })
    .setProtectedHeader({ alg: "EdDSA", kid: edge.ed.kid, typ: "mcp-edge+jwt" })
    .setIssuer(base)
    .setAudience(verifying)
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(privateKey);
  assert.equal((await call(`${verifying}/mcp`, `Bearer ${forged}`)).status, 401);
  assert.equal((await call(`${verifying}/mcp`, "")).status, 401);
  const calls = await (await fetch(`${verifying}/calls`)).json();
  assert.deepEqual(calls.map((c) => c.accepted ?? "refused"), ["alice", "refused", "refused", "refused"]);
});
