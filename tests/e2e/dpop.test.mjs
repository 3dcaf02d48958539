// DPoP (RFC 9449) at the edge, end to end: the real wasm build in workerd (DPOP=allowed,
// then required, then with server nonces), oidc-provider issuing DPoP-bound JWT access
// tokens (and opaque ones, whose `cnf` comes back from introspection), a client doing
// the whole authorization-code flow with DPoP on panva's oauth4webapi (registration
// through the worker, PKCE, a DPoP-bound token, a fresh proof per request, nonces
// handled as the library handles them), and the TypeScript SDK's MCP server as the
// origin. Every refusal is checked with its exact challenge; proofs for them are made
// with jose from the client's own key, one rule broken at a time.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as jose from "jose";
import * as oauth from "oauth4webapi";
import * as rig from "./lib/rig.mjs";
import { followToRedirect } from "./lib/oauth-client.mjs";

const REDIRECT = "http://127.0.0.1:9/dpop-callback";
const ALGS = 'algs="ES256 EdDSA RS256 PS256"';
let keys, oPort;
const insecure = { [oauth.allowInsecureRequests]: true };

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  oPort = await rig.freePort();
  await rig.startProbeOrigin(oPort);
});

after(rig.stopAll);

/** A worker in the single-host layout with its own oidc-provider (DPoP on). */
async function deployment(vars = {}, as = {}) {
  const [wPort, asPort] = [await rig.freePort(), await rig.freePort()];
  const base = `http://127.0.0.1:${wPort}`;
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys, dpop: true, ...as });
  const all = { ...rig.singleHostVars(base, oPort, asPort), SCOPES_SUPPORTED: "mcp:tools", REQUIRED_SCOPES: "mcp:tools", DPOP: "allowed", ...vars };
  const worker = await rig.startWorkerd({ port: wPort, vars: all });
  return { base, asPort, worker, vars: all };
}

/**
 * The authorization-code flow with oauth4webapi, through the worker: discovery at the
 * worker's AS metadata, registration at the worker, PKCE, and a DPoP-bound token.
 */
async function authorize(base, { dpop = true } = {}) {
  const issuer = new URL(`${base}/oidc`);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: "oauth2", ...insecure }));
  const registered = await oauth.processDynamicClientRegistrationResponse(
    await oauth.dynamicClientRegistrationRequest(
      as,
      { redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code"], response_types: ["code"], client_name: "dpop-e2e", scope: "mcp:tools" },
      insecure,
    ),
  );
  const client = { client_id: registered.client_id, token_endpoint_auth_method: "none" };
  const keyPair = await oauth.generateKeyPair("ES256", { extractable: true });
  const handle = dpop ? oauth.DPoP(client, keyPair) : undefined;
  const verifier = oauth.generateRandomCodeVerifier();
  const url = new URL(as.authorization_endpoint);
  for (const [k, v] of Object.entries({
    client_id: client.client_id,
    redirect_uri: REDIRECT,
    response_type: "code",
    scope: "mcp:tools",
    resource: `${base}/mcp`,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
  })) {
    url.searchParams.set(k, v);
  }
  const { url: callback } = await followToRedirect(url, REDIRECT);
  const params = oauth.validateAuthResponse(as, client, callback);
  const grant = () =>
    oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, REDIRECT, verifier, {
      DPoP: handle,
      additionalParameters: { resource: `${base}/mcp` },
      ...insecure,
    });
  let response = await grant();
  let tokens;
  try {
    tokens = await oauth.processAuthorizationCodeResponse(as, client, response);
  } catch (e) {
    if (!oauth.isDPoPNonceError(e)) throw e;
    tokens = await oauth.processAuthorizationCodeResponse(as, client, await grant());
  }
  return { token: tokens.access_token, tokenType: tokens.token_type, keyPair, handle };
}

const mcpBody = (id, method, params = {}) => JSON.stringify({ jsonrpc: "2.0", id, method, params });
const mcpHeaders = () => new Headers({ "content-type": "application/json", accept: "application/json, text/event-stream" });

/** An MCP call through oauth4webapi (a fresh proof each time); nonce challenges retried once, as the library advises. */
async function call(base, session, id, method, params) {
  const send = () => oauth.protectedResourceRequest(session.token, "POST", new URL(`${base}/mcp`), mcpHeaders(), mcpBody(id, method, params), { DPoP: session.handle, ...insecure });
  try {
    return await send();
  } catch (e) {
    if (!oauth.isDPoPNonceError(e)) throw e;
    session.nonceChallenges = (session.nonceChallenges || 0) + 1;
    return send();
  }
}

/** A proof made by hand from the session's key, for breaking one rule at a time. */
async function proof(session, claims = {}, header = {}, key = session.keyPair) {
  const jwk = await jose.exportJWK(key.publicKey);
  const ath = createHash("sha256").update(session.token).digest("base64url");
  return new jose.SignJWT({ jti: crypto.randomUUID(), htm: "POST", htu: session.htu, iat: Math.floor(Date.now() / 1000), ath, ...claims })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk, ...header })
    .sign(key.privateKey);
}

/** A raw request with the session's token: the status and the challenge. */
async function raw(base, session, { scheme = "DPoP", dpop, method = "POST", path = "/mcp" } = {}) {
  const headers = { authorization: `${scheme} ${session.token}`, "content-type": "application/json", accept: "application/json, text/event-stream" };
  if (dpop !== undefined) headers.dpop = dpop;
  const r = await fetch(`${base}${path}`, { method, headers, body: method === "POST" ? mcpBody(1, "tools/list") : undefined });
  return { status: r.status, challenge: r.headers.get("www-authenticate"), nonce: r.headers.get("dpop-nonce"), body: await r.text() };
}

test("oauth4webapi runs the whole flow with DPoP through the worker and calls tools with a fresh proof per request", async () => {
  const { base, worker } = await deployment();
  const prm = await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json();
  assert.deepEqual(prm.dpop_signing_alg_values_supported, ["ES256", "EdDSA", "RS256", "PS256"]);
  assert.equal(prm.dpop_bound_access_tokens_required, undefined);
  const asMeta = await (await fetch(`${base}/.well-known/oauth-authorization-server/oidc`)).json();
  assert.ok(asMeta.dpop_signing_alg_values_supported?.includes("ES256"), "the upstream's DPoP algorithms are kept");
  const session = await authorize(base);
  assert.equal(session.tokenType.toLowerCase(), "dpop");
  const claims = jose.decodeJwt(session.token);
  assert.equal(claims.cnf.jkt, await jose.calculateJwkThumbprint(await jose.exportJWK(session.keyPair.publicKey)));
  const list = await call(base, session, 1, "tools/list");
  assert.equal(list.status, 200);
  assert.ok((await list.json()).result.tools.some((t) => t.name === "whoami"));
  for (let i = 0; i < 3; i++) {
    const r = await call(base, session, 10 + i, "tools/call", { name: "whoami", arguments: {} });
    assert.equal(r.status, 200);
    const who = JSON.parse((await r.json()).result.content[0].text);
    assert.equal(who.subject, "demo-user");
    assert.equal(who.authorization, null, "the origin gets no token");
  }
  // The origin sees neither the token nor the proof.
  session.htu = `${base}/mcp/echo`;
  const echo = await fetch(`${base}/mcp/echo`, { method: "POST", headers: { authorization: `DPoP ${session.token}`, dpop: await proof(session) }, body: "{}" });
  assert.equal(echo.status, 200);
  const seen = (await echo.json()).headers;
  assert.equal(seen.dpop, undefined);
  assert.equal(seen.authorization, undefined);
  assert.ok(!worker.output.includes(session.token), "no token in the worker's log");
});

test("every broken rule is refused with its exact challenge", async () => {
  const { base } = await deployment();
  const session = await authorize(base);
  session.htu = `${base}/mcp`;
  const refused = async (what, options, error, description) => {
    const r = await raw(base, session, options);
    assert.equal(r.status, 401, `${what}: ${r.status} ${r.body}`);
    assert.match(r.challenge, new RegExp(`^DPoP error="${error}", error_description="[^"]*${description}`), `${what}: ${r.challenge}`);
    assert.ok(r.challenge.endsWith(ALGS), `${what}: ${r.challenge}`);
    assert.ok(!r.body.includes(session.token) && !(options.dpop && r.body.includes(options.dpop)), `${what}: no token or proof echoed`);
  };
  const now = Math.floor(Date.now() / 1000);
  await refused("proof missing", {}, "invalid_dpop_proof", "no DPoP proof");
  await refused("wrong htm", { dpop: await proof(session, { htm: "GET" }) }, "invalid_dpop_proof", "htm GET");
  await refused("htu of the origin", { dpop: await proof(session, { htu: `http://127.0.0.1:${oPort}/mcp` }) }, "invalid_dpop_proof", "htu is not this request");
  await refused("htu of another host", { dpop: await proof(session, { htu: "https://elsewhere.example/mcp" }) }, "invalid_dpop_proof", "htu is not this request");
  await refused("htu with a query", { dpop: await proof(session, { htu: `${base}/mcp?x=1` }) }, "invalid_dpop_proof", "query or fragment");
  await refused("stale iat", { dpop: await proof(session, { iat: now - 120 }) }, "invalid_dpop_proof", "old");
  await refused("future iat", { dpop: await proof(session, { iat: now + 120 }) }, "invalid_dpop_proof", "in the future");
  await refused("wrong ath", { dpop: await proof(session, { ath: createHash("sha256").update("another").digest("base64url") }) }, "invalid_dpop_proof", "ath");
  const other = await oauth.generateKeyPair("ES256", { extractable: true });
  await refused("another key than cnf.jkt", { dpop: await proof(session, {}, {}, other) }, "invalid_token", "bound to another key");
  // A signature that does not verify: the header's key is the token's, the signer another.
  const forged = await new jose.SignJWT({ jti: crypto.randomUUID(), htm: "POST", htu: session.htu, iat: now, ath: createHash("sha256").update(session.token).digest("base64url") })
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await jose.exportJWK(session.keyPair.publicKey) })
    .sign(other.privateKey);
  await refused("a forged signature", { dpop: forged }, "invalid_dpop_proof", "signature does not verify");
  const hs = await new jose.SignJWT({ jti: "x", htm: "POST", htu: session.htu, iat: now }).setProtectedHeader({ alg: "HS256", typ: "dpop+jwt", jwk: { kty: "oct", k: "c2VjcmV0" } }).sign(new TextEncoder().encode("secret"));
  await refused("a symmetric alg", { dpop: hs }, "invalid_dpop_proof", "alg HS256 is not accepted");
  const none = `${jose.base64url.encode(JSON.stringify({ alg: "none", typ: "dpop+jwt", jwk: await jose.exportJWK(session.keyPair.publicKey) }))}.${jose.base64url.encode(JSON.stringify({ jti: "n", htm: "POST", htu: session.htu, iat: now }))}.`;
  await refused("alg none", { dpop: none }, "invalid_dpop_proof", "alg none is not accepted");
  const priv = await jose.exportJWK(session.keyPair.privateKey);
  await refused("private key in the header", { dpop: await proof(session, {}, { jwk: priv }) }, "invalid_dpop_proof", "private key material");
  await refused("two proofs", { dpop: `${await proof(session)}, ${await proof(session)}` }, "invalid_dpop_proof", "exactly one");
  // The bound token sent as Bearer.
  const asBearer = await raw(base, session, { scheme: "Bearer" });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.challenge, /^DPoP error="invalid_token", error_description="the token is DPoP-bound/);
  // A good proof works once; replayed, it is refused.
  const good = await proof(session);
  assert.equal((await raw(base, session, { dpop: good })).status, 200);
  await refused("a replayed jti", { dpop: good }, "invalid_dpop_proof", "used before");
});

test("DPOP=required: a bearer token is refused, PRM says so, and the challenge names only DPoP", async () => {
  const { base } = await deployment({ DPOP: "required" });
  const prm = await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json();
  assert.equal(prm.dpop_bound_access_tokens_required, true);
  const bare = await fetch(`${base}/mcp`, { method: "POST", body: "{}" });
  assert.equal(bare.status, 401);
  const rm = `resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`;
  assert.equal(bare.headers.get("www-authenticate"), `DPoP scope="mcp:tools", ${rm}, ${ALGS}`);
  // A token the server issued without DPoP (a client without proofs) is a bearer token.
  const bearer = await authorize(base, { dpop: false });
  assert.equal(bearer.tokenType.toLowerCase(), "bearer");
  const r = await raw(base, bearer, { scheme: "Bearer" });
  assert.equal(r.status, 401);
  assert.match(r.challenge, /^DPoP error="invalid_token", error_description="this resource takes DPoP-bound tokens only/);
  // A DPoP client still gets through.
  const session = await authorize(base);
  assert.equal((await call(base, session, 1, "tools/list")).status, 200);
});

test("DPOP=allowed: both challenges without a token, and a bearer client keeps working", async () => {
  const { base } = await deployment();
  const bare = await fetch(`${base}/mcp`, { method: "POST", body: "{}" });
  const rm = `resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`;
  assert.equal(bare.headers.get("www-authenticate"), `Bearer scope="mcp:tools", ${rm}, DPoP scope="mcp:tools", ${rm}, ${ALGS}`);
  const bearer = await authorize(base, { dpop: false });
  const r = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${bearer.token}`, "content-type": "application/json", accept: "application/json, text/event-stream" }, body: mcpBody(1, "tools/list") });
  assert.equal(r.status, 200);
});

test("server nonces: the library is told to use one and retries; a missing or stale one is refused with a fresh DPoP-Nonce", async () => {
  const { base } = await deployment({ DPOP_NONCE_SECRET: "an-e2e-nonce-secret-of-32-characters-at-least", DPOP_NONCE_SECONDS: "10" });
  const session = await authorize(base);
  const first = await call(base, session, 1, "tools/list");
  assert.equal(first.status, 200);
  assert.equal(session.nonceChallenges, 1, "one use_dpop_nonce, then the library's retry with the nonce");
  assert.ok(first.headers.get("dpop-nonce"), "forwards hand out the current nonce");
  // Made by hand: none, then a made-up one.
  session.htu = `${base}/mcp`;
  for (const nonce of [undefined, "made-up-nonce"]) {
    const r = await raw(base, session, { dpop: await proof(session, nonce ? { nonce } : {}) });
    assert.equal(r.status, 401);
    assert.match(r.challenge, /^DPoP error="use_dpop_nonce", /);
    assert.ok(r.nonce && r.nonce !== nonce, "a fresh DPoP-Nonce");
  }
  // Stale: two periods later the nonce is no longer taken.
  const current = first.headers.get("dpop-nonce");
  assert.equal((await raw(base, session, { dpop: await proof(session, { nonce: current }) })).status, 200);
  await new Promise((r) => setTimeout(r, 21_000));
  const stale = await raw(base, session, { dpop: await proof(session, { nonce: current }) });
  assert.equal(stale.status, 401);
  assert.match(stale.challenge, /^DPoP error="use_dpop_nonce"/);
});

test("opaque DPoP-bound tokens: the binding comes from the introspection answer's cnf", async () => {
  const introspector = "dpop-introspector:dpop-introspection-secret";
  // Built by hand: the worker needs the server's port for INTROSPECTION_URL.
  const [wPort, asPort] = [await rig.freePort(), await rig.freePort()];
  const b = `http://127.0.0.1:${wPort}`;
  await rig.startAuthorizationServer({ port: asPort, issuer: `${b}/oidc`, keys, dpop: true, opaque: true, introspector });
  await rig.startWorkerd({
    port: wPort,
    vars: {
      ...rig.singleHostVars(b, oPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools",
      REQUIRED_SCOPES: "mcp:tools",
      DPOP: "allowed",
      INTROSPECTION_URL: `http://127.0.0.1:${asPort}/oidc/token/introspection`,
      INTROSPECTION_CLIENT_ID: "dpop-introspector",
      INTROSPECTION_CLIENT_SECRET: "dpop-introspection-secret",
    },
  });
  const session = await authorize(b);
  assert.ok(!session.token.includes("."), "an opaque token");
  assert.equal((await call(b, session, 1, "tools/list")).status, 200);
  session.htu = `${b}/mcp`;
  const asBearer = await raw(b, session, { scheme: "Bearer" });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.challenge, /the token is DPoP-bound/);
  const other = await oauth.generateKeyPair("ES256", { extractable: true });
  const r = await raw(b, session, { dpop: await proof(session, {}, {}, other) });
  assert.match(r.challenge, /^DPoP error="invalid_token", error_description="the token is bound to another key/);
});

test("the doctor explains a DPoP-bound token and checks a proof for it", async () => {
  execFileSync("cargo", ["build", "--quiet", "--bin", "mcp-edge-auth-doctor"], { cwd: rig.root, stdio: "inherit" });
  const { base, vars } = await deployment();
  const session = await authorize(base);
  session.htu = `${base}/mcp`;
  const dir = mkdtempSync(path.join(tmpdir(), "doctor-dpop-"));
  const config = path.join(dir, "wrangler.toml");
  writeFileSync(config, `name = "doctor-dpop"\n[vars]\n${Object.entries(vars).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n")}\n`);
  const doctor = (...args) =>
    new Promise((resolve) =>
      execFile(path.join(rig.root, "target/debug/mcp-edge-auth-doctor"), ["--config", config, "--json", "--token", session.token, ...args], { timeout: 60_000 }, (err, stdout) => {
        const byName = Object.fromEntries(JSON.parse(stdout).checks.map((c) => [c.name, c]));
        resolve({ byName, stdout });
      }),
    );
  const good = await doctor("--dpop-proof", await proof(session));
  assert.equal(good.byName["token: dpop"]?.ok, true, JSON.stringify(good.byName["token: dpop"]));
  assert.match(good.byName["token: dpop"].detail, /bound to key/);
  assert.equal(good.byName["dpop proof"]?.ok, true, JSON.stringify(good.byName["dpop proof"]));
  const other = await oauth.generateKeyPair("ES256", { extractable: true });
  const wrongKey = await doctor("--dpop-proof", await proof(session, {}, {}, other));
  assert.equal(wrongKey.byName["dpop proof"].ok, false);
  assert.match(wrongKey.byName["dpop proof"].detail, /bound to another key/);
  const wrongMethod = await doctor("--dpop-proof", await proof(session), "--dpop-method", "GET");
  assert.match(wrongMethod.byName["dpop proof"].detail, /htm POST is not this request's method GET/);
  const off = await doctor("--var", "DPOP=off");
  assert.equal(off.byName["token: dpop"].ok, false);
  assert.match(off.byName["token: dpop"].fix, /DPOP=allowed/);
  assert.ok(!good.stdout.includes(session.token), "the token is not printed");
});
