// Client ID Metadata Documents in front of an authorization server without them:
// oidc-provider with dynamic registration on and CIMD off, the real worker (CIMD=true,
// records in a local KV namespace) and the official TypeScript SDK client given a
// clientMetadataUrl. The documents are served over https by this file (the SDK takes
// only https URLs) with the test CA in tests/fixtures/tls, trusted by workerd through
// NODE_EXTRA_CA_CERTS; CIMD_ALLOW_LOOPBACK lets the worker fetch from 127.0.0.1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { readFileSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import * as rig from "./lib/rig.mjs";
import { HeadlessProvider, connect, followToRedirect } from "./lib/oauth-client.mjs";

const tls = path.join(rig.root, "tests/fixtures/tls");
let docs, docPort, asPort, wPort, base, worker, authorizationEndpoint, tokenEndpoint;
const served = {}; // path -> answer
const fetched = {}; // path -> count

const callback = (n) => `http://127.0.0.1:9/callback${n}`;
const docUrl = (name) => `https://127.0.0.1:${docPort}/clients/${name}.json`;

function document(name, extra = {}) {
  return {
    client_id: docUrl(name),
    client_name: `CIMD ${name}`,
    redirect_uris: [callback(1)],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
    ...extra,
  };
}

function serve(name, body, { status = 200, headers = {}, delayMs = 0 } = {}) {
  served[`/clients/${name}.json`] = { body, status, headers, delayMs };
}

async function registrations(name) {
  const stats = await (await fetch(`http://127.0.0.1:${asPort}/__stats`)).json();
  return stats.registrations.filter((r) => r.client_name === `CIMD ${name}`);
}

/** The worker's CIMD log events of one kind, as printed so far. */
function printed(kind) {
  return worker.output
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return {};
      }
    })
    .filter((e) => e.event === kind);
}

/**
 * The worker's log events of one kind that `match`, once at least `atLeast` of them
 * are printed (or 5 s have passed). A log line reaches this process through wrangler's
 * stdout, after the HTTP answer it belongs to: read at once, it is sometimes not there
 * yet (that failed a CI run). After the wait, a further 300 ms lets a line that should
 * not be there show up, so counts are checked against everything printed.
 */
async function events(kind, match = () => true, atLeast = 1) {
  const deadline = Date.now() + 5000;
  while (printed(kind).filter(match).length < atLeast && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 300));
  return printed(kind).filter(match);
}

function authorizeUrl(clientId, redirectUri, extra = {}) {
  const u = new URL(authorizationEndpoint);
  const params = {
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method: "S256",
    state: "st-1",
    scope: "mcp:tools",
    ...extra,
  };
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u;
}

before(async () => {
  rig.buildWorker();
  docPort = await rig.freePort();
  docs = https.createServer({ cert: readFileSync(path.join(tls, "server.pem")), key: readFileSync(path.join(tls, "server-key.pem")) }, (req, res) => {
    fetched[req.url] = (fetched[req.url] || 0) + 1;
    const answer = served[req.url];
    if (!answer) return res.writeHead(404, { "content-type": "application/json" }).end("{}");
    const send = () => {
      const body = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers }).end(body);
    };
    if (answer.delayMs) setTimeout(send, answer.delayMs).unref();
    else send();
  });
  await new Promise((r) => docs.listen(docPort, "127.0.0.1", r));

  const keys = await rig.makeKeys();
  asPort = await rig.freePort();
  const originPort = await rig.freePort();
  wPort = await rig.freePort();
  base = `http://127.0.0.1:${wPort}`;
  await rig.startEverythingOrigin(originPort);
  await rig.startAuthorizationServer({ port: asPort, issuer: `${base}/oidc`, keys, scopes: "mcp:tools" });
  rmSync(path.join(rig.root, ".wrangler/test-state", String(wPort)), { recursive: true, force: true });
  worker = await rig.startWorker({
    port: wPort,
    env: "cimd",
    vars: {
      ...rig.singleHostVars(base, originPort, asPort),
      SCOPES_SUPPORTED: "mcp:tools",
      REQUIRED_SCOPES: "mcp:tools",
      CIMD: "true",
      CIMD_ALLOW_LOOPBACK: "true",
      CIMD_TIMEOUT_SECONDS: "1",
    },
    processEnv: { NODE_EXTRA_CA_CERTS: path.join(tls, "ca.pem") },
  });
  const meta = await (await fetch(`${base}/.well-known/oauth-authorization-server/oidc`)).json();
  authorizationEndpoint = meta.authorization_endpoint;
  tokenEndpoint = meta.token_endpoint;
});

after(async () => {
  docs.closeAllConnections();
  docs.close();
  await rig.stopAll();
});

test("the served metadata advertises client_id_metadata_document_supported", async () => {
  const meta = await (await fetch(`${base}/.well-known/oauth-authorization-server/oidc`)).json();
  assert.equal(meta.client_id_metadata_document_supported, true);
  assert.ok(meta.token_endpoint_auth_methods_supported.includes("none"));
  assert.ok(authorizationEndpoint.startsWith(`${base}/oidc/`), authorizationEndpoint);
});

test("the TypeScript SDK client with a clientMetadataUrl completes the flow and calls a tool; a second run reuses the upstream client", async () => {
  serve("sdk", document("sdk"), { headers: { "cache-control": "max-age=60" } });
  const first = new HeadlessProvider({ redirectUrl: callback(1), clientMetadataUrl: docUrl("sdk") });
  const { client } = await connect(`${base}/mcp`, first);
  const echo = await client.callTool({ name: "echo", arguments: { message: "cimd" } });
  assert.match(JSON.stringify(echo.content), /cimd/);
  await client.close();
  assert.equal(first.clientInformation().client_id, docUrl("sdk"), "the SDK used the URL as its client_id");
  assert.ok(first.authorizations[0].searchParams.get("client_id") === docUrl("sdk"));
  const regs = await registrations("sdk");
  assert.equal(regs.length, 1, "one upstream client registered");
  assert.deepEqual(regs[0].redirect_uris, [callback(1)]);
  assert.notEqual(regs[0].client_id, docUrl("sdk"));
  assert.equal((await events("cimd_registered", (e) => e.client_id === docUrl("sdk"))).length, 1);

  const second = new HeadlessProvider({ redirectUrl: callback(1), clientMetadataUrl: docUrl("sdk") });
  const again = await connect(`${base}/mcp`, second);
  await again.client.callTool({ name: "echo", arguments: { message: "again" } });
  await again.client.close();
  assert.equal((await registrations("sdk")).length, 1, "the KV record was reused, nothing registered again");
  assert.equal(fetched["/clients/sdk.json"], 1, "the document was cached (max-age=60)");
  // No upstream secret reached the client: none was issued.
  assert.equal(second.tokens().client_secret, undefined);
});

test("a changed document registers a new upstream client; tokens of the old one still refresh", async () => {
  serve("mutable", document("mutable"), { headers: { "cache-control": "no-store" } });
  const first = new HeadlessProvider({ redirectUrl: callback(1), clientMetadataUrl: docUrl("mutable") });
  const a = await connect(`${base}/mcp`, first);
  await a.client.close();
  assert.equal((await registrations("mutable")).length, 1);
  const refresh = first.tokens().refresh_token;
  assert.ok(refresh, "a refresh token was issued");

  serve("mutable", document("mutable", { redirect_uris: [callback(2)] }), { headers: { "cache-control": "no-store" } });
  const second = new HeadlessProvider({ redirectUrl: callback(2), clientMetadataUrl: docUrl("mutable") });
  const b = await connect(`${base}/mcp`, second);
  await b.client.callTool({ name: "echo", arguments: { message: "moved" } });
  await b.client.close();
  const regs = await registrations("mutable");
  assert.equal(regs.length, 2, "re-registered once");
  assert.deepEqual(regs[1].redirect_uris, [callback(2)]);
  assert.equal(fetched["/clients/mutable.json"], 2, "no-store: fetched for each authorization");

  // The old redirect URI is gone from the document: refused without a redirect.
  const stale = await fetch(authorizeUrl(docUrl("mutable"), callback(1)), { redirect: "manual" });
  assert.equal(stale.status, 400);
  assert.equal(stale.headers.get("location"), null);

  // The first client's refresh token, sent with the URL as client_id: the worker tries
  // the newest upstream client, gets invalid_grant, then the older one.
  const r = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refresh, client_id: docUrl("mutable") }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.ok(body.access_token);
  const retries = await events("cimd_retry", (e) => e.client_id === docUrl("mutable"));
  assert.deepEqual(retries.map((e) => e.detail), [regs[1].client_id], "the new client was tried first");
});

test("concurrent first authorization requests register one upstream client", async () => {
  serve("burst", document("burst"));
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) => fetch(authorizeUrl(docUrl("burst"), callback(1), { state: `s${i}` }), { redirect: "manual" })),
  );
  for (const a of answers) {
    assert.equal(a.status, 303, await a.text());
    assert.match(a.headers.get("location"), /\/oidc\/interaction\//);
  }
  assert.equal((await registrations("burst")).length, 1);
  // A flow with that client finishes, and its code redeems with the URL as client_id.
  const { code } = await followToRedirect(authorizeUrl(docUrl("burst"), callback(1)), callback(1));
  const r = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    // RFC 7636 Appendix B's verifier for the challenge authorizeUrl() sends.
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: callback(1), code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", client_id: docUrl("burst") }),
  });
  const tokens = await r.json();
  assert.equal(r.status, 200, JSON.stringify(tokens));
  assert.ok(tokens.access_token);
  assert.equal((await registrations("burst")).length, 1);
});

/** wrangler's KV commands on the worker's local namespace. */
function kv(...args) {
  const out = execFileSync(process.execPath, [
    path.join(rig.root, "node_modules/wrangler/bin/wrangler.js"), "kv", "key", ...args,
    "--binding", "CIMD_KV", "--env", "cimd", "--local", "--persist-to", path.join(rig.root, ".wrangler/test-state", String(wPort)),
  ], { cwd: rig.root, env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" } });
  return out.toString();
}

test("a client registered concurrently elsewhere: new flows use the earliest record, codes issued to the other still redeem", async () => {
  // What two isolates registering the same new document at once leave behind: two
  // records. Here the worker registers A; then "another isolate" registers B at the
  // authorization server and records it as the earlier one, in the same namespace.
  serve("dup", document("dup"));
  const redeem = async (code) => {
    const r = await fetch(tokenEndpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: callback(1), code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", client_id: docUrl("dup") }),
    });
    return [r.status, await r.json()];
  };
  const withA = await followToRedirect(authorizeUrl(docUrl("dup"), callback(1)), callback(1));
  const [a] = await registrations("dup");
  const listed = JSON.parse(kv("list", "--prefix", "cimd/v1/"));
  const recordA = listed.find((k) => k.metadata?.c === a.client_id);
  assert.ok(recordA, JSON.stringify(listed));

  const reg = await fetch(`http://127.0.0.1:${asPort}/oidc/reg`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_name: "CIMD dup (elsewhere)", redirect_uris: [callback(1)], grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "none" }),
  });
  const b = await reg.json();
  assert.equal(reg.status, 201, JSON.stringify(b));
  const earlier = recordA.metadata.t - 1;
  const prefix = recordA.name.slice(0, recordA.name.lastIndexOf("/") + 1);
  kv("put", `${prefix}${String(earlier).padStart(15, "0")}-bbbbbbbb`, JSON.stringify({ client_id: b.client_id }), "--metadata", JSON.stringify({ c: b.client_id, f: recordA.metadata.f, t: earlier }));

  // The code issued to A: B is tried first (invalid_grant), then A.
  const [status, tokens] = await redeem(withA.code);
  assert.equal(status, 200, JSON.stringify(tokens));
  assert.deepEqual((await events("cimd_retry", (e) => e.client_id === docUrl("dup"))).map((e) => e.detail), [b.client_id]);
  // A new flow goes through B, the earliest record, and redeems at the first try.
  const withB = await followToRedirect(authorizeUrl(docUrl("dup"), callback(1)), callback(1));
  const [status2, tokens2] = await redeem(withB.code);
  assert.equal(status2, 200, JSON.stringify(tokens2));
  assert.equal((await events("cimd_retry", (e) => e.client_id === docUrl("dup"), 2)).length, 1, "no retry for B's code");
  assert.equal((await registrations("dup")).length, 1, "nothing registered again");
});

test("documents that cannot be trusted end in a plain error, never a redirect", async () => {
  serve("mismatch", document("mismatch", { client_id: "https://client.example/other.json" }));
  serve("redirecting", "", { status: 302, headers: { location: docUrl("sdk") } });
  serve("slow", document("slow"), { delayMs: 3000 });
  serve("big", { ...document("big"), padding: "x".repeat(1024 * 1024) });
  serve("html", "<html>hello</html>", { headers: { "content-type": "text/html" } });
  serve("sdk", document("sdk"), { headers: { "cache-control": "max-age=60" } });
  const cases = [
    [docUrl("mismatch"), callback(1), "invalid_client", /names client_id "https:\/\/client.example\/other.json", not its own URL/],
    [docUrl("redirecting"), callback(1), "invalid_client", /302 \(a redirect\); redirects are not followed/],
    [docUrl("slow"), callback(1), "invalid_client", /did not answer within 1 s/],
    [docUrl("big"), callback(1), "invalid_client", /more than 5120 bytes/],
    [docUrl("html"), callback(1), "invalid_client", /content type "text\/html"/],
    [docUrl("absent"), callback(1), "invalid_client", /answered 404/],
    ["https://10.0.0.7/clients/x.json", callback(1), "invalid_client", /private, link-local or reserved host/],
    ["https://169.254.169.254/latest/meta-data", callback(1), "invalid_client", /private/],
    [`https://127.0.0.1:${docPort}/clients/../clients/sdk.json`, callback(1), "invalid_client", /normal form/],
    [docUrl("sdk"), "https://evil.example/cb", "invalid_request", /not one of the client's metadata document's redirect_uris/],
  ];
  for (const [clientId, redirectUri, error, why] of cases) {
    const started = Date.now();
    const r = await fetch(authorizeUrl(clientId, redirectUri), { redirect: "manual" });
    const elapsed = Date.now() - started;
    const body = await r.json();
    assert.equal(r.status, 400, `${clientId}: ${JSON.stringify(body)}`);
    assert.equal(r.headers.get("location"), null, clientId);
    assert.equal(body.error, error, clientId);
    assert.match(body.error_description, why, clientId);
    assert.ok(elapsed < 2500, `${clientId} took ${elapsed} ms`);
  }
  assert.equal(fetched["/clients/redirecting.json"], 1);
  assert.equal(fetched["/clients/sdk.json"], 1, "redirect not followed; sdk.json still cached from before");
  assert.equal((await registrations("mismatch")).length + (await registrations("big")).length, 0);
  // Each refusal is logged with its reason.
  const refusals = (await events("cimd_refused", (e) => /not its own URL|private, link-local/.test(e.detail), 2)).map((e) => e.detail);
  assert.ok(refusals.some((d) => /not its own URL/.test(d)), refusals.join("\n"));
  assert.ok(refusals.some((d) => /private, link-local/.test(d)), refusals.join("\n"));
});

test("a trusted redirect URI gets the error for other document problems, with state and iss", async () => {
  serve("nameless", document("nameless", { client_name: undefined }));
  serve("secretive", document("secretive", { token_endpoint_auth_method: "client_secret_basic" }));
  for (const [name, why] of [["nameless", /client_name/], ["secretive", /shared secrets/]]) {
    const r = await fetch(authorizeUrl(docUrl(name), callback(1)), { redirect: "manual" });
    assert.equal(r.status, 302, name);
    const to = new URL(r.headers.get("location"));
    assert.equal(`${to.origin}${to.pathname}`, callback(1));
    assert.equal(to.searchParams.get("error"), "unauthorized_client");
    assert.match(to.searchParams.get("error_description"), why);
    assert.equal(to.searchParams.get("state"), "st-1");
    assert.equal(to.searchParams.get("iss"), `${base}/oidc`);
  }
});

test("a token request naming a document no client was registered for is invalid_client", async () => {
  const r = await fetch(tokenEndpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: "x", redirect_uri: callback(1), code_verifier: "v".repeat(43), client_id: docUrl("never") }),
  });
  assert.equal(r.status, 401);
  const body = await r.json();
  assert.equal(body.error, "invalid_client");
  assert.match(body.error_description, /no client is registered/);
});

test("CIMD in front of Hydra (AS_FLAVOR=hydra): the SDK client's document becomes a Hydra client with the audience, and the flow completes", async () => {
  // The Hydra-shaped server of peers/hydra.mjs: no registration_endpoint advertised,
  // `resource` ignored, `audience` granted only when allowed on the client.
  const [port, originPort, hydraPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
  const site = `http://127.0.0.1:${port}`;
  await rig.startHydra({ port: hydraPort, issuer: `${site}/` });
  await rig.startEverythingOrigin(originPort);
  rmSync(path.join(rig.root, ".wrangler/test-state", String(port)), { recursive: true, force: true });
  await rig.startWorker({
    port,
    env: "cimd",
    vars: {
      ORIGIN_URL: `http://127.0.0.1:${originPort}`,
      RESOURCE_URL: `${site}/mcp`,
      ISSUER: `${site}/`,
      AS_URL: `http://127.0.0.1:${hydraPort}`,
      AS_PASSTHROUGH: "/oauth2/",
      AS_FLAVOR: "hydra",
      SCOPES_SUPPORTED: "mcp:tools",
      REQUIRED_SCOPES: "mcp:tools",
      CIMD: "true",
      CIMD_ALLOW_LOOPBACK: "true",
    },
    processEnv: { NODE_EXTRA_CA_CERTS: path.join(tls, "ca.pem") },
  });
  const meta = await (await fetch(`${site}/.well-known/oauth-authorization-server`)).json();
  assert.equal(meta.client_id_metadata_document_supported, true);
  serve("hydra", document("hydra", { redirect_uris: [callback(3)] }));
  const provider = new HeadlessProvider({ redirectUrl: callback(3), clientMetadataUrl: docUrl("hydra") });
  const { client } = await connect(`${site}/mcp`, provider);
  const echo = await client.callTool({ name: "echo", arguments: { message: "hydra" } });
  assert.match(JSON.stringify(echo.content), /hydra/);
  await client.close();
  const stats = await (await fetch(`http://127.0.0.1:${hydraPort}/stats`)).json();
  assert.equal(stats.registrations.length, 1);
  const [asked] = stats.registrations;
  assert.equal(asked.client_name, "CIMD hydra");
  assert.deepEqual(asked.audience, [`${site}/mcp`]);
  assert.equal(asked.scope, "mcp:tools");
  assert.equal(asked.token_endpoint_auth_method, "none");
  assert.ok(!("client_secret" in asked));
  const claims = JSON.parse(Buffer.from(provider.tokens().access_token.split(".")[1], "base64url"));
  assert.deepEqual(claims.aud, [`${site}/mcp`]);
  assert.notEqual(claims.client_id, docUrl("hydra"), "Hydra knows only its own client");
});
