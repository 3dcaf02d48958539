// MCP 2026-07-28 at the edge, end to end: the real worker (the wasm build in workerd),
// oidc-provider as the authorization server, the official Python SDK 2.3 on both sides
// (tests/e2e/python/modern_origin.py as the origin, modern_client.py as the client
// through the whole OAuth flow), and raw requests for the refusals, with tokens signed
// by the authorization server's own keys.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as rig from "./lib/rig.mjs";

const SCOPES = "mcp:tools mcp:admin deploy:run deploy:prod secrets repo:admin";
const POLICY = {
  methods: {
    "tools/call": {
      names: {
        deploy: { scopes: "deploy:run", arguments: { region: { match: { "prod-*": "deploy:prod" }, header: "Region" } } },
        delete_repo: "repo:admin",
      },
    },
    "resources/read": { names: { "file:///secret/*": "secrets" } },
  },
};
const HIERARCHY = { "mcp:admin": "mcp:tools deploy:run" };
const APP = "https://app.example";

let open; // no policy
let policed; // SCOPE_POLICY + SCOPE_HIERARCHY
let originPort;
let keys;

async function deployment(vars) {
  const [wPort, asPort] = [await rig.freePort(), await rig.freePort()];
  const base = `http://127.0.0.1:${wPort}`;
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys, scopes: SCOPES });
  await rig.startWorkerd({
    port: wPort,
    vars: { ...rig.singleHostVars(base, originPort, asPort), SCOPES_SUPPORTED: SCOPES, REQUIRED_SCOPES: "mcp:tools", ALLOWED_ORIGINS: APP, ...vars },
  });
  return base;
}

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  originPort = await rig.freePort();
  await rig.startPythonOrigin(originPort);
  open = await deployment({});
  policed = await deployment({ SCOPE_POLICY: JSON.stringify(POLICY), SCOPE_HIERARCHY: JSON.stringify(HIERARCHY) });
});

after(rig.stopAll);

const V = "2026-07-28";
const META = { "io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {} };

async function token(base, scope) {
  const now = Math.floor(Date.now() / 1000);
  return rig.signToken(keys, "RS256", { iss: `${base}/oidc`, aud: `${base}/mcp`, sub: "modern-user", client_id: "modern-client", scope, iat: now, exp: now + 600 });
}

/** A 2026-07-28 POST: the standard headers from the body unless `headers` says otherwise
 * (a header given as null is left out). */
async function post(base, tok, method, params, headers = {}, id = 1) {
  const body = { jsonrpc: "2.0", id, method, params: { ...params, _meta: META } };
  const name = params.name ?? params.uri;
  const h = {
    authorization: `Bearer ${tok}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": V,
    "mcp-method": method,
    ...(name !== undefined ? { "mcp-name": name } : {}),
    ...headers,
  };
  for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
  const r = await fetch(`${base}/mcp`, { method: "POST", headers: h, body: JSON.stringify(body) });
  const text = await r.text();
  const line = text.split("\n").find((l) => l.startsWith("data: "));
  return { status: r.status, headers: r.headers, json: JSON.parse(line ? line.slice(6) : text || "null") };
}

const calls = async () => (await fetch(`http://127.0.0.1:${originPort}/calls`)).json();

test("without a policy a Python 2.3 client and origin speak 2026-07-28 through the worker: everything flows, the origin sees the client's MCP headers and no Authorization", async () => {
  const r = await rig.runPythonModernClient(`${open}/mcp`, "python-2026-open");
  const s = r.steps;
  for (const [name, st] of Object.entries(s)) assert.ok(st.ok, `${name}: ${JSON.stringify(st)}`);
  assert.equal(s.discover.version, V, "negotiated through server/discover");
  assert.equal(s.discover.server, "modern-origin");
  assert.deepEqual(s.tools.names, ["delete_repo", "deploy", "echo", "seen", "touch"]);
  assert.equal(s.tools.cacheScope, "public", "an answer the worker did not change keeps the origin's cacheScope");
  assert.equal(s.resources.cacheScope, "public");
  assert.match(s.echo.text, /from python 2026/);
  const seen = s.seen.structured;
  assert.equal(seen.authorization, false, "the client's token never reaches the origin");
  assert.equal(seen.headers["mcp-protocol-version"], V);
  assert.equal(seen.headers["mcp-method"], "tools/call");
  assert.equal(seen.headers["mcp-name"], "seen");
  assert.ok(seen.headers["x-auth-subject"], "the identity headers");
  assert.match(s.deploy_us.text, /to us-1 \(Mcp-Param-Region: us-1\)/, "Mcp-Param-* forwarded untouched");
  assert.match(s.deploy_prod.text, /to prod-1/);
  assert.equal(s.readme.text, "public readme");
  assert.equal(s.listen.event, "ResourceUpdated");
  assert.deepEqual(r.authorizations.length, 1);
});

test("with a policy the Python 2.3 client gets private, filtered lists and steps up to what each call needs (single-host layout)", async () => {
  const r = await rig.runPythonModernClient(`${policed}/mcp`, "python-2026-policy");
  const s = r.steps;
  for (const [name, st] of Object.entries(s)) assert.ok(st.ok, `${name}: ${JSON.stringify(st)}`);
  assert.equal(s.discover.version, V);
  assert.deepEqual(s.tools.names, ["echo", "seen", "touch"], "deploy and delete_repo hidden from a mcp:tools token");
  assert.equal(s.tools.cacheScope, "private", "a list filtered per token is private whatever the origin said");
  assert.deepEqual(s.resources.uris, ["file:///pub/readme"]);
  assert.equal(s.resources.cacheScope, "private");
  assert.match(s.deploy_us.text, /to us-1 \(Mcp-Param-Region: us-1\)/);
  assert.match(s.deploy_prod.text, /to prod-1 \(Mcp-Param-Region: prod-1\)/);
  assert.deepEqual(
    // The SDK adds offline_access (the server offers refresh tokens); the worker never asks for it.
    r.authorizations.map((a) => a.split(" ").filter((x) => x !== "offline_access").sort().join(" ")),
    ["mcp:tools", "deploy:run mcp:tools", "deploy:prod deploy:run mcp:tools"],
    "one step-up for deploy, one for its prod-* region: each challenge named what the call needs",
  );
  assert.deepEqual(s.tools_after.names, ["deploy", "echo", "seen", "touch"]);
  assert.equal(s.tools_after.cacheScope, "private");
  assert.equal(s.readme.cacheScope, "public", "resources/read is not rewritten");
  assert.equal(s.listen.event, "ResourceUpdated", "the listen stream flows through");
});

test("a forbidden call is 403 with the scopes it needs and never reaches the origin; a broader scope satisfies narrower ones", async () => {
  const before = (await calls()).length;
  const t = await token(policed, "mcp:tools deploy:run");
  let r = await post(policed, t, "tools/call", { name: "delete_repo", arguments: { name: "x" } });
  assert.equal(r.status, 403);
  const challenge = r.headers.get("www-authenticate");
  assert.match(challenge, /error="insufficient_scope"/);
  assert.match(challenge, /scope="mcp:tools repo:admin"/);
  assert.match(challenge, new RegExp(`resource_metadata="${policed}/.well-known/oauth-protected-resource/mcp"`));
  r = await post(policed, t, "tools/call", { name: "deploy", arguments: { region: "prod-eu" } }, { "mcp-param-region": "prod-eu" });
  assert.equal(r.status, 403);
  assert.match(r.headers.get("www-authenticate"), /scope="mcp:tools deploy:run deploy:prod"/);
  assert.equal((await calls()).length, before, "neither reached the origin");
  const admin = await token(policed, "mcp:admin");
  r = await post(policed, admin, "tools/call", { name: "deploy", arguments: { region: "us-2" } }, { "mcp-param-region": "us-2" });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.match(r.json.result.content[0].text, /to us-2/, "mcp:admin implies mcp:tools and deploy:run");
});

test("missing, malformed or mismatching 2026-07-28 headers are 400 -32020 with the request's id, from the worker itself", async () => {
  const before = (await calls()).length;
  const t = await token(policed, "mcp:tools deploy:run deploy:prod");
  const deploy = { name: "deploy", arguments: { region: "us-1" } };
  const cases = [
    ["no Mcp-Method", "tools/call", deploy, { "mcp-method": null, "mcp-param-region": "us-1" }],
    ["no Mcp-Name", "tools/call", deploy, { "mcp-name": null, "mcp-param-region": "us-1" }],
    ["Mcp-Name differs", "tools/call", deploy, { "mcp-name": "echo", "mcp-param-region": "us-1" }],
    ["Mcp-Method differs", "tools/call", deploy, { "mcp-method": "tools/list", "mcp-param-region": "us-1" }],
    ["version differs from _meta", "tools/call", deploy, { "mcp-protocol-version": "2026-08-01", "mcp-param-region": "us-1" }],
    ["Mcp-Param-Region differs from the argument", "tools/call", deploy, { "mcp-param-region": "prod-1" }],
    ["Mcp-Param-Region missing (declared x-mcp-header)", "tools/call", deploy, {}],
    ["Mcp-Param-Region not validly encoded", "tools/call", deploy, { "mcp-param-region": "=?base64?***?=" }],
    ["no MCP-Protocol-Version, _meta says 2026-07-28", "tools/list", {}, { "mcp-protocol-version": null }],
  ];
  let id = 100;
  for (const [what, method, params, headers] of cases) {
    id += 1;
    const r = await post(policed, t, method, params, headers, id);
    assert.equal(r.status, 400, what);
    assert.equal(r.json.error.code, -32020, what);
    assert.equal(r.json.id, id, `${what}: the request's id`);
  }
  // The base64 sentinel where the spec allows it: Mcp-Name and Mcp-Param-*.
  const b64 = (s) => `=?base64?${Buffer.from(s).toString("base64")}?=`;
  const r = await post(policed, t, "tools/call", deploy, { "mcp-name": b64("deploy"), "mcp-param-region": b64("us-1") });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((await calls()).length, before + 1, "only the valid request reached the origin");
});

test("subscriptions/listen needs what reading each subscribed resource needs; server/discover only the required scopes", async () => {
  const t = await token(policed, "mcp:tools");
  const listen = (uris) => ({ notifications: { resourceSubscriptions: uris } });
  let r = await post(policed, t, "subscriptions/listen", listen(["file:///pub/readme", "file:///secret/plan"]));
  assert.equal(r.status, 403);
  assert.match(r.headers.get("www-authenticate"), /scope="mcp:tools secrets"/);
  r = await post(policed, t, "server/discover", {});
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.result.serverInfo?.name ?? r.json.result._meta?.["io.modelcontextprotocol/serverInfo"]?.name, "modern-origin");
});

test("browsers may send Mcp-Param-* headers: a preflight from an allowed origin allows the ones it asks for", async () => {
  for (const base of [open, policed]) {
    const r = await fetch(`${base}/mcp`, {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "POST", "access-control-request-headers": "authorization, mcp-method, mcp-name, mcp-param-region" },
    });
    assert.equal(r.status, 204);
    const allowed = r.headers.get("access-control-allow-headers").toLowerCase().split(/,\s*/);
    for (const h of ["authorization", "mcp-method", "mcp-name", "mcp-param-region"]) assert.ok(allowed.includes(h), `${h} in ${allowed}`);
    assert.equal(r.headers.get("access-control-allow-origin"), APP);
    assert.match(r.headers.get("vary"), /Access-Control-Request-Headers/);
  }
  const refused = await fetch(`${open}/mcp`, {
    method: "OPTIONS",
    headers: { origin: "https://evil.example", "access-control-request-method": "POST", "access-control-request-headers": "mcp-param-region" },
  });
  assert.equal(refused.status, 403);
});
