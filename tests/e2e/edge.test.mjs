// The worker's edge behaviour, end to end in workerd, against real peers:
// oidc-provider (behind AS_PASSTHROUGH), an SDK-built MCP origin that reports what
// it received, and a Hydra-shaped registration upstream (REGISTRATION_URL).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as jose from "jose";
import { OAuthClientInformationFullSchema } from "@modelcontextprotocol/sdk/shared/auth.js";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect } from "./lib/oauth-client.mjs";

let base, keys, worker, hydraPort, originPort;
const sentTokens = [];

before(async () => {
  rig.buildWorker();
  const [wPort, asPort] = [await rig.freePort(), await rig.freePort()];
  originPort = await rig.freePort();
  hydraPort = await rig.freePort();
  base = `http://127.0.0.1:${wPort}`;
  keys = await rig.makeKeys();
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys });
  await rig.startProbeOrigin(originPort);
  await rig.startHydraRegistration({ port: hydraPort, backend: `http://127.0.0.1:${asPort}/oidc/reg` });
  worker = await rig.startWorker({
    port: wPort,
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${originPort}`,
      RESOURCE_URL: `${base}/mcp`,
      ISSUER: `${base}/oidc`,
      AS_URL: `http://127.0.0.1:${asPort}`,
      AS_PASSTHROUGH: "/oidc/",
      REGISTRATION_URL: `http://127.0.0.1:${hydraPort}/oauth2/register`,
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
      ALLOWED_ORIGINS: "https://app.example",
      RESOURCE_NAME: "edge test",
    },
  });
});

after(rig.stopAll);

const now = () => Math.floor(Date.now() / 1000);
function claims(extra = {}) {
  return {
    iss: `${base}/oidc`,
    sub: "user-1",
    aud: `${base}/mcp`,
    client_id: "client-1",
    scope: "mcp:tools",
    iat: now(),
    exp: now() + 600,
    ...extra,
  };
}
async function token(alg = "RS256", extra = {}, header = {}) {
  const t = await rig.signToken(keys, alg, claims(extra), header);
  sentTokens.push(t);
  return t;
}
function mcp(path, { token: t, method = "POST", headers = {}, body } = {}) {
  const h = { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers };
  if (t) h.authorization = `Bearer ${t}`;
  return fetch(`${base}${path}`, { method, headers: h, body: method === "GET" || method === "DELETE" ? undefined : (body ?? "{}") });
}
function challenge(res) {
  return res.headers.get("www-authenticate") || "";
}

test("protected resource metadata at both well-known URIs, open to any origin", async () => {
  for (const path of ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]) {
    const res = await fetch(`${base}${path}`, { headers: { origin: "https://anywhere.example" } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
    assert.match(res.headers.get("cache-control"), /max-age/);
    const doc = await res.json();
    assert.deepEqual(doc, {
      resource: `${base}/mcp`,
      authorization_servers: [`${base}/oidc`],
      bearer_methods_supported: ["header"],
      scopes_supported: ["mcp:tools", "mcp:admin"],
      resource_name: "edge test",
    });
  }
});

test("authorization-server metadata at every discovery URI, patched but never re-issued", async () => {
  for (const path of [
    "/.well-known/oauth-authorization-server/oidc",
    "/.well-known/openid-configuration/oidc",
    "/oidc/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
  ]) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 200, path);
    const doc = await res.json();
    assert.equal(doc.issuer, `${base}/oidc`);
    assert.equal(doc.registration_endpoint, `${base}/register`);
    assert.ok(doc.code_challenge_methods_supported.includes("S256"));
    assert.equal(doc.authorization_endpoint, `${base}/oidc/auth`, "endpoints on the public host");
    assert.equal(res.headers.get("access-control-allow-origin"), "*");
  }
});

test("the SDK client completes the flow with a Hydra-shaped registration upstream", async () => {
  const stats = async () => (await (await fetch(`http://127.0.0.1:${hydraPort}/stats`)).json()).registrations;
  const before = await stats();
  const provider = new HeadlessProvider({ clientName: "hydra-run" });
  const { client } = await connect(`${base}/mcp`, provider);
  assert.equal((await stats()) - before, 1, "the registration went to the Hydra-shaped upstream");
  const info = provider.clientInformation();
  assert.equal(info.client_uri, undefined, 'client_uri "" was dropped');
  assert.equal(info.contacts, undefined, "contacts null was dropped");
  const result = await client.callTool({ name: "whoami", arguments: {} });
  const seen = JSON.parse(result.content[0].text);
  assert.equal(seen.subject, "demo-user");
  assert.equal(seen.client, info.client_id);
  assert.equal(seen.scopes, "mcp:tools");
  assert.equal(seen.authorization, null, "the token is never passed to the origin");
  sentTokens.push(provider.tokens().access_token);
  await client.close();
});

test("the registration proxy turns Hydra's answer into one the SDK schema accepts", async () => {
  const fixture = (await import("../fixtures/hydra-register-response.json", { with: { type: "json" } })).default;
  assert.equal(OAuthClientInformationFullSchema.safeParse(fixture).success, false, "the raw Hydra answer fails the SDK schema");
  const res = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:9876/callback"], client_name: "schema-check", token_endpoint_auth_method: "none" }),
  });
  assert.equal(res.status, 201);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.match(res.headers.get("content-type"), /application\/json/);
  const body = await res.json();
  const parsed = OAuthClientInformationFullSchema.safeParse(body);
  assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
  for (const [k, v] of Object.entries(body)) assert.ok(v !== null && v !== "", `${k} is ${JSON.stringify(v)}`);
});

test("bad registrations get RFC 7591 errors", async () => {
  const cases = [
    [{ redirect_uris: ["http://app.example/cb"] }, "invalid_redirect_uri"],
    [{ redirect_uris: ["https://app.example/cb#frag"] }, "invalid_redirect_uri"],
    [{ redirect_uris: "https://app.example/cb" }, "invalid_redirect_uri"],
    ["not json", "invalid_client_metadata"],
    [[1, 2], "invalid_client_metadata"],
  ];
  for (const [body, code] of cases) {
    const res = await fetch(`${base}/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
    assert.equal((await res.json()).error, code);
  }
  // Over the 64 KiB cap: 413 (the size, not the metadata, is wrong).
  const big = await fetch(`${base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ redirect_uris: ["https://app.example/cb"], client_name: "x".repeat(70_000) }),
  });
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error, "invalid_request");
  const get = await fetch(`${base}/register`);
  assert.equal(get.status, 405);
  assert.match(get.headers.get("allow"), /POST/);
});

test("tokens in each algorithm and server shape are accepted", async () => {
  const shapes = [
    ["RS256 RFC 9068", await token("RS256")],
    ["ES256", await token("ES256")],
    ["EdDSA", await token("EdDSA")],
    ["Hydra: typ JWT, aud array, scp array", await token("RS256", { aud: [`${base}/mcp`], scope: undefined, scp: ["mcp:tools", "offline"], nbf: now() - 5, ext: {} }, { typ: "JWT" })],
    ["Keycloak: azp, aud with account", await token("RS256", { aud: ["account", `${base}/mcp`], client_id: undefined, azp: "kc-client", typ: "Bearer" }, { typ: "JWT" })],
  ];
  for (const [name, t] of shapes) {
    const res = await mcp("/mcp/echo", { token: t });
    assert.equal(res.status, 200, `${name}: ${await res.clone().text()}`);
    const seen = await res.json();
    assert.equal(seen.headers["x-auth-subject"], "user-1", name);
  }
  const kc = await (await mcp("/mcp/echo", { token: shapes[4][1] })).json();
  assert.equal(kc.headers["x-auth-client-id"], "kc-client");
  const hydra = await (await mcp("/mcp/echo", { token: shapes[3][1] })).json();
  assert.equal(hydra.headers["x-auth-scopes"], "mcp:tools offline");
});

test("refusals: each with its status, challenge and error", async () => {
  const rogue = await jose.generateKeyPair("RS256");
  const unknownKid = await new jose.SignJWT(claims()).setProtectedHeader({ alg: "RS256", kid: "rogue" }).sign(rogue.privateKey);
  const sameKidWrongKey = await new jose.SignJWT(claims()).setProtectedHeader({ alg: "RS256", kid: "rs1" }).sign(rogue.privateKey);
  sentTokens.push(unknownKid, sameKidWrongKey);
  const cases = [
    ["no token", undefined, {}, 401, null],
    ["garbage", "garbage", {}, 401, "invalid_token"],
    ["expired", await token("RS256", { exp: now() - 3600, iat: now() - 7200 }), {}, 401, "invalid_token"],
    ["wrong iss", await token("RS256", { iss: `${base}/oidc/` }), {}, 401, "invalid_token"],
    ["wrong aud", await token("RS256", { aud: "https://other.example/mcp" }), {}, 401, "invalid_token"],
    ["no aud", await token("RS256", { aud: [] }), {}, 401, "invalid_token"],
    ["unknown kid", unknownKid, {}, 401, "invalid_token"],
    ["forged signature", sameKidWrongKey, {}, 401, "invalid_token"],
    ["insufficient scope", await token("RS256", { scope: "mcp:admin" }), {}, 403, "insufficient_scope"],
    ["bad Origin", await token("RS256"), { origin: "https://evil.example" }, 403, null],
  ];
  for (const [name, t, headers, status, code] of cases) {
    const res = await mcp("/mcp/echo", { token: t, headers });
    assert.equal(res.status, status, name);
    const body = await res.json();
    const www = challenge(res);
    if (status === 401) {
      assert.match(www, /^Bearer /, name);
      assert.ok(www.includes(`resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`), name);
      assert.ok(www.includes('scope="mcp:tools"'), name);
      if (code) assert.ok(www.includes(`error="${code}"`), `${name}: ${www}`);
      else assert.ok(!www.includes("error="), `${name}: no error code without a token`);
    }
    if (code) assert.equal(body.error, code, name);
    if (code === "insufficient_scope") {
      assert.ok(www.includes('error="insufficient_scope"') && www.includes('scope="mcp:tools"') && www.includes("resource_metadata="), www);
    }
    for (const s of sentTokens) assert.ok(!JSON.stringify(body).includes(s) && !www.includes(s), `${name} echoes a token`);
  }
});

test("forwarding: no token passthrough, identity headers replaced, session headers both ways", async () => {
  const t = await token();
  const res = await mcp("/mcp/echo?x=1&y=two", {
    token: t,
    headers: {
      "x-auth-subject": "admin",
      "x-auth-anything": "spoofed",
      "mcp-session-id": "sess-1",
      "mcp-protocol-version": "2025-11-25",
      "last-event-id": "ev-9",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("mcp-session-id"), "echo-session", "Mcp-Session-Id comes back");
  const seen = await res.json();
  assert.equal(seen.query, "?x=1&y=two");
  assert.equal(seen.headers.authorization, undefined);
  assert.equal(seen.headers["x-auth-subject"], "user-1");
  assert.equal(seen.headers["x-auth-anything"], undefined);
  assert.equal(seen.headers["x-auth-client-id"], "client-1");
  assert.equal(seen.headers["mcp-session-id"], "sess-1");
  assert.equal(seen.headers["mcp-protocol-version"], "2025-11-25");
  assert.equal(seen.headers["last-event-id"], "ev-9");
  assert.equal(seen.body, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }));
  // Hop-by-hop headers, sent raw (fetch would refuse some of them).
  const raw = await new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp/echo`, {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "proxy-authorization": "Basic c2VjcmV0", te: "trailers", connection: "keep-alive, x-hop", "x-hop": "1", "content-type": "application/json" },
    }, (res) => {
      let data = "";
      res.on("data", (c) => (data += c));
      res.on("end", () => resolve(JSON.parse(data)));
    });
    req.on("error", reject);
    req.end("{}");
  });
  assert.equal(raw.headers["proxy-authorization"], undefined);
  assert.equal(raw.headers.te, undefined);
  assert.equal(raw.headers.authorization, undefined);
  const del = await mcp("/mcp/echo", { token: t, method: "DELETE" });
  assert.equal((await del.json()).method, "DELETE");
});

test("SSE streams pass through unbuffered", async () => {
  const t = await token();
  const started = Date.now();
  const res = await mcp("/mcp/stream?n=6&gap=300", { token: t, method: "GET", headers: { accept: "text/event-stream" } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n\n")) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the stream ended before its first event");
    text += decoder.decode(value, { stream: true });
  }
  assert.match(text, /^id: 0\nevent: message\ndata: \{"i":0\}\n\n/);
  const { lastStreamFinishedAt } = await (await fetch(`http://127.0.0.1:${originPort}/mcp/stream-log`)).json();
  assert.ok(lastStreamFinishedAt < started, "the origin has not finished this stream yet");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  assert.equal((text.match(/^data: /gm) || []).length, 6);
});

test("CORS: preflights without a token, allowed origins only on the MCP path", async () => {
  const ok = await fetch(`${base}/mcp`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, mcp-session-id" },
  });
  assert.equal(ok.status, 204);
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example");
  assert.match(ok.headers.get("access-control-allow-headers"), /Authorization/);
  assert.match(ok.headers.get("access-control-expose-headers"), /WWW-Authenticate/);
  assert.match(ok.headers.get("access-control-expose-headers"), /Mcp-Session-Id/);
  const bad = await fetch(`${base}/mcp`, { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "POST" } });
  assert.equal(bad.status, 403);
  const challenged = await mcp("/mcp", { headers: { origin: "https://app.example" } });
  assert.equal(challenged.status, 401);
  assert.equal(challenged.headers.get("access-control-allow-origin"), "https://app.example");
  assert.match(challenged.headers.get("access-control-expose-headers"), /WWW-Authenticate/);
  const allowed = await mcp("/mcp/echo", { token: await token(), headers: { origin: "https://app.example" } });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example");
  const meta = await fetch(`${base}/.well-known/oauth-protected-resource/mcp`, { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } });
  assert.equal(meta.status, 204);
  assert.equal(meta.headers.get("access-control-allow-origin"), "*");
});

test("unknown paths are 404 and wrong methods 405, with JSON bodies", async () => {
  const nf = await fetch(`${base}/nowhere`);
  assert.equal(nf.status, 404);
  assert.equal((await nf.json()).error, "not_found");
  const put = await mcp("/mcp", { method: "PUT", token: await token() });
  assert.equal(put.status, 405);
  assert.match(put.headers.get("allow"), /POST/);
  const post = await fetch(`${base}/.well-known/oauth-protected-resource`, { method: "POST" });
  assert.equal(post.status, 405);
});

test("one structured log line per request, never a token", async () => {
  await new Promise((r) => setTimeout(r, 300));
  const lines = worker.output.split("\n").filter((l) => l.startsWith("{"));
  const parsed = lines.map((l) => JSON.parse(l)).filter((l) => l.route);
  assert.ok(parsed.length > 20, `${parsed.length} log lines`);
  for (const l of parsed) {
    assert.ok(l.route && l.decision && Number.isInteger(l.status), JSON.stringify(l));
  }
  assert.ok(parsed.some((l) => l.decision === "allow" && l.subject === "user-1" && l.client === "client-1"));
  assert.ok(parsed.some((l) => l.decision === "deny" && /expired/.test(l.reason)));
  for (const t of sentTokens) {
    assert.ok(!worker.output.includes(t), "a token reached the log");
    assert.ok(!worker.output.includes(t.split(".")[2]), "a token signature reached the log");
  }
});
