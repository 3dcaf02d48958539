// The Hydra adapter (AS_FLAVOR=hydra), end to end through the real wasm build in
// workerd, in the single-host layout (the worker fronts the MCP origin and Hydra's
// public API through AS_PASSTHROUGH=/oauth2/). The upstream is the Hydra-shaped
// server in peers/hydra.mjs (written from SPEC.md: `resource` ignored, `audience`
// honoured only when allowed on the client, only openid-configuration, no
// registration_endpoint advertised, registration answers in the captured fixture's
// shape, `typ: JWT` tokens with `scp` arrays). Audience checks stay on throughout.
// A worker without the adapter, in front of the same server, is the negative twin:
// its tokens come back with `aud: []` and are refused.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect, followToRedirect } from "./lib/oauth-client.mjs";

const REDIRECT = "http://127.0.0.1:9/hydra-callback";
let hydra, plain, opaque, hydraPort, opaquePort;

async function startSite({ flavor, hydraOpaque = false, registrationUrl = false }) {
  const [wPort, oPort, hPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
  const base = `http://127.0.0.1:${wPort}`;
  await rig.startHydra({ port: hPort, issuer: `${base}/`, opaque: hydraOpaque });
  await rig.startEverythingOrigin(oPort);
  const worker = await rig.startWorker({
    port: wPort,
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${oPort}`,
      RESOURCE_URL: `${base}/mcp`,
      ISSUER: `${base}/`,
      AS_URL: `http://127.0.0.1:${hPort}`,
      AS_PASSTHROUGH: "/oauth2/",
      SCOPES_SUPPORTED: "mcp:tools mcp:admin",
      REQUIRED_SCOPES: "mcp:tools",
      ...(flavor ? { AS_FLAVOR: flavor } : {}),
      // Without the adapter, Hydra's registration endpoint must be named by hand.
      ...(registrationUrl ? { REGISTRATION_URL: `http://127.0.0.1:${hPort}/oauth2/register` } : {}),
      ...(hydraOpaque ? { INTROSPECTION_URL: `http://127.0.0.1:${hPort}/admin/oauth2/introspect` } : {}),
    },
  });
  const stats = async () => (await fetch(`http://127.0.0.1:${hPort}/stats`)).json();
  return { base, worker, stats };
}

before(async () => {
  rig.buildWorker();
  hydra = await startSite({ flavor: "hydra" });
  plain = await startSite({ registrationUrl: true });
  opaque = await startSite({ flavor: "hydra", hydraOpaque: true });
});

after(rig.stopAll);

const b64json = (s) => JSON.parse(Buffer.from(s, "base64url").toString());

const initialize = (site, token) =>
  fetch(`${site.base}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "hydra-e2e", version: "1" } } }),
  });

// A client that sends `resource` but no `scope` (Claude Code's habit), by hand.
async function rawFlow(site, registration = {}) {
  const meta = await (await fetch(`${site.base}/.well-known/oauth-authorization-server`)).json();
  const reg = await fetch(meta.registration_endpoint, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_name: "raw", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code"], ...registration }),
  });
  const client = await reg.json();
  if (reg.status !== 201) return { meta, reg, client };
  const verifier = "v".repeat(50);
  const challenge = (await import("node:crypto")).createHash("sha256").update(verifier).digest("base64url");
  const auth = new URL(meta.authorization_endpoint);
  for (const [k, v] of Object.entries({ response_type: "code", client_id: client.client_id, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: "S256", state: "s1", resource: `${site.base}/mcp` })) {
    auth.searchParams.set(k, v);
  }
  const { code } = await followToRedirect(auth, REDIRECT);
  const token = await fetch(meta.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code, code_verifier: verifier, client_id: client.client_id, redirect_uri: REDIRECT, resource: `${site.base}/mcp` }),
  });
  return { meta, reg, client, token: await token.json() };
}

test("discovery: Hydra's openid-configuration only, no registration_endpoint, still served with the worker's", async () => {
  const meta = await (await fetch(`${hydra.base}/.well-known/oauth-authorization-server`)).json();
  assert.equal(meta.issuer, `${hydra.base}/`);
  assert.equal(meta.registration_endpoint, `${hydra.base}/register`);
  assert.ok(meta.code_challenge_methods_supported.includes("S256"));
});

test("a client sending resource but no scope gets a token whose aud names the resource, accepted with audience checks on", async () => {
  // The members Hydra refuses in a registration are dropped on the way.
  const { reg, client, token } = await rawFlow(hydra, { client_secret: "chosen-by-client", metadata: { a: 1 }, skip_consent: true });
  assert.equal(reg.status, 201, JSON.stringify(client));
  for (const [k, v] of Object.entries(client)) assert.ok(v !== null && v !== "", `${k} survived cleaning`);
  const stats = await hydra.stats();
  const registered = stats.registrations.at(-1);
  assert.deepEqual(registered.audience, [`${hydra.base}/mcp`], "the resource allowed as an audience");
  assert.equal(registered.scope, "mcp:tools", "the default scope given");
  assert.ok(!("client_secret" in registered) && !("metadata" in registered) && !("skip_consent" in registered));
  const asked = stats.authorizations.at(-1);
  assert.equal(asked.audience, `${hydra.base}/mcp`, "audience asked for on the client's behalf");
  assert.equal(asked.scope, "mcp:tools");
  const [header, payload] = token.access_token.split(".").map((s, i) => (i < 2 ? b64json(s) : s));
  assert.equal(header.typ, "JWT");
  assert.deepEqual(payload.aud, [`${hydra.base}/mcp`]);
  assert.deepEqual(payload.scp, ["mcp:tools"]);
  const res = await initialize(hydra, token.access_token);
  assert.equal(res.status, 200, await res.text());
});

test("without the adapter: Hydra refuses the registration members and mints tokens with aud [], which are refused", async () => {
  const refused = await rawFlow(plain, { client_secret: "chosen-by-client" });
  assert.equal(refused.reg.status, 400);
  assert.equal(refused.client.error, "invalid_request");
  // Registering the scope by hand gets a token, but Hydra ignored `resource`.
  const { token } = await rawFlow(plain, { scope: "mcp:tools" });
  assert.deepEqual(b64json(token.access_token.split(".")[1]).aud, []);
  const res = await initialize(plain, token.access_token);
  assert.equal(res.status, 401);
  const challenge = res.headers.get("www-authenticate");
  assert.match(challenge, /error="invalid_token"/);
  assert.match(challenge, /no audience/);
  assert.match(challenge, /Hydra/, "the description says how to fix it");
});

test("the TypeScript SDK client completes the flow against Hydra through the adapter and calls a tool", async () => {
  const provider = new HeadlessProvider({ clientName: "hydra-sdk", redirectUrl: REDIRECT });
  const { client } = await connect(`${hydra.base}/mcp`, provider);
  const result = await client.callTool({ name: "echo", arguments: { message: "hydra at the edge" } });
  assert.match(result.content[0].text, /hydra at the edge/);
  await client.close();
  const payload = b64json(provider.tokens().access_token.split(".")[1]);
  assert.deepEqual(payload.aud, [`${hydra.base}/mcp`]);
  assert.ok(!hydra.worker.output.includes(provider.tokens().access_token));
});

test("client_credentials: a token request with neither scope nor audience gets both", async () => {
  const reg = await fetch(`${hydra.base}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_name: "machine", grant_types: ["client_credentials"], token_endpoint_auth_method: "client_secret_basic" }),
  });
  const client = await reg.json();
  assert.equal(reg.status, 201, JSON.stringify(client));
  assert.ok(client.client_secret, "a confidential client gets its secret");
  const basic = Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString("base64");
  const res = await fetch(`${hydra.base}/oauth2/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${basic}` },
    body: "grant_type=client_credentials",
  });
  const token = await res.json();
  assert.equal(res.status, 200, JSON.stringify(token));
  const asked = (await hydra.stats()).tokenRequests.at(-1);
  assert.equal(asked.audience, `${hydra.base}/mcp`);
  assert.equal(asked.resource, `${hydra.base}/mcp`);
  assert.equal(asked.scope, "mcp:tools");
  const payload = b64json(token.access_token.split(".")[1]);
  assert.deepEqual(payload.aud, [`${hydra.base}/mcp`]);
  assert.equal(payload.sub, client.client_id);
  assert.equal((await initialize(hydra, token.access_token)).status, 200);
});

test("Hydra's default opaque tokens are checked at its admin introspection endpoint", async () => {
  const { token } = await rawFlow(opaque);
  assert.match(token.access_token, /^ory_at_[\w-]+\.[\w-]+$/);
  const res = await initialize(opaque, token.access_token);
  assert.equal(res.status, 200, await res.text());
  assert.equal((await opaque.stats()).introspections, 1);
  // Cached: the next request does not ask again.
  assert.equal((await initialize(opaque, token.access_token)).status, 200);
  assert.equal((await opaque.stats()).introspections, 1);
  assert.ok(!opaque.worker.output.includes(token.access_token));
});
