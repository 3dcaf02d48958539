// The outside security review's findings (issue 16), end to end against the real wasm
// build in workerd: each test sends what the review sent and holds the worker to the
// fix, including the siblings found since. Peers: an in-process authorization server
// shape (metadata, JWKS, registration, a token endpoint behind the pass-through, an
// introspection endpoint that never answers) and an in-process origin that reports
// what reached it. Test names say which finding they cover.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import * as rig from "./lib/rig.mjs";

let base, faulty, direct, keys, worker, faultyWorker, up, upstream, origin;
const registered = []; // bodies the registration endpoint received, as received
const tokenRequests = []; // headers the token endpoint received
const originSaw = []; // headers of each request the origin received
let originHits = 0;

function collect(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString()));
  });
}

before(async () => {
  rig.buildWorker();
  keys = await rig.makeKeys();
  const [wPort, fPort, upPort, oPort, dPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort(), await rig.freePort(), await rig.freePort()];
  base = `http://127.0.0.1:${wPort}`;
  faulty = `http://127.0.0.1:${fPort}`;
  direct = `http://127.0.0.1:${dPort}`;
  up = `http://127.0.0.1:${upPort}`;
  upstream = http.createServer(async (req, res) => {
    const body = await collect(req);
    const json = (status, v) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(v));
    if (req.url === "/.well-known/oauth-authorization-server/oidc") {
      return json(200, {
        issuer: `${base}/oidc`,
        authorization_endpoint: `${base}/oidc/auth`,
        token_endpoint: `${base}/oidc/token`,
        jwks_uri: `${up}/jwks`,
        registration_endpoint: `${up}/register`,
        code_challenge_methods_supported: ["S256"],
        response_types_supported: ["code"],
      });
    }
    if (req.url === "/jwks") return json(200, rig.publicJwks(keys));
    if (req.url === "/register") {
      registered.push(body);
      const client = JSON.parse(body);
      return json(201, {
        ...client,
        client_id: "c-review",
        registration_client_uri: "http://10.0.0.5:4445/admin/clients/c-review",
        registration_access_token: "rat-secret",
      });
    }
    if (req.url.startsWith("/oidc/token")) {
      tokenRequests.push(req.headers);
      return json(400, { error: "invalid_grant" });
    }
    // Slow or broken peers of the faulty worker: never answer, or drop the connection.
    if (req.url.startsWith("/slow")) return;
    if (req.url.startsWith("/down")) return req.socket.destroy();
    res.writeHead(404).end();
  });
  await new Promise((r) => upstream.listen(upPort, "127.0.0.1", r));
  origin = http.createServer(async (req, res) => {
    originHits++;
    const body = await collect(req);
    originSaw.push(req.headers);
    if (req.url.startsWith("/mcp/big")) {
      // A tools/list answer over the 8 MiB the worker will hold to filter: with a
      // Content-Length, or chunked (its length known only as it streams).
      const tools = [{ name: "echo" }, { name: "delete_repo", description: "x".repeat(9 << 20) }];
      const text = JSON.stringify({ jsonrpc: "2.0", id: 1, result: { tools } });
      if (req.url === "/mcp/big") return res.writeHead(200, { "content-type": "application/json" }).end(text);
      res.writeHead(200, { "content-type": "application/json" });
      for (let i = 0; i < text.length; i += 1 << 20) res.write(text.slice(i, i + (1 << 20)));
      return res.end();
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: 1, result: { method: req.method, body } }));
  });
  await new Promise((r) => origin.listen(oPort, "127.0.0.1", r));
  [worker, faultyWorker] = await Promise.all([
    rig.startWorker({
      port: wPort,
      vars: {
        ORIGIN_URL: `http://127.0.0.1:${oPort}`,
        RESOURCE_URL: `${base}/mcp`,
        ISSUER: `${base}/oidc`,
        AS_URL: up,
        AS_PASSTHROUGH: "/oidc/",
        AS_FLAVOR: "hydra",
        SCOPES_SUPPORTED: "mcp:tools repo:admin",
        SCOPE_POLICY: JSON.stringify({ methods: { "tools/call": { names: { "delete_*": "repo:admin" } } } }),
      },
    }),
    // Every upstream of this one fails, and each URL carries a secret in its query.
    rig.startWorker({
      port: fPort,
      vars: {
        ORIGIN_URL: `http://127.0.0.1:${oPort}`,
        RESOURCE_URL: `${faulty}/mcp`,
        ISSUER: `${up}/nodisc`,
        JWKS_URL: `${up}/down/jwks?api_key=s3cret-jwks`,
        REGISTRATION_URL: `${up}/down/register?api_key=s3cret-reg`,
        INTROSPECTION_URL: `${up}/slow/introspect?api_key=s3cret-intro`,
        INTROSPECTION_TIMEOUT_SECONDS: "1",
      },
    }),
    // The worker under workerd itself, with no wrangler dev proxy in front: that proxy
    // removes `Connection` (but forwards the headers it names), and a request body
    // the worker leaves unread wedges its connection to workerd.
    rig.startWorkerd({
      port: dPort,
      vars: {
        ORIGIN_URL: `http://127.0.0.1:${oPort}`,
        RESOURCE_URL: `${direct}/mcp`,
        ISSUER: `${direct}/oidc`,
        AS_URL: up,
        AS_PASSTHROUGH: "/oidc/",
        AS_FLAVOR: "hydra",
        JWKS_URL: `${up}/jwks`,
        REGISTRATION_URL: `${up}/register`,
      },
    }),
  ]);
});

after(async () => {
  for (const s of [upstream, origin]) {
    s?.closeAllConnections();
    s?.close();
  }
  await rig.stopAll();
});

const now = () => Math.floor(Date.now() / 1000);
async function token(extra = {}) {
  return rig.signToken(keys, "RS256", { iss: `${base}/oidc`, aud: `${base}/mcp`, sub: "review-user", client_id: "c1", scope: "mcp:tools", iat: now(), exp: now() + 600, jti: String(Math.random()), ...extra });
}

/** A request with raw header bytes (latin1), as node's fetch will not send them. */
function raw(url, { method = "POST", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      collect(res).then((text) => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}';

test("2: Authorization with Unicode spaces is invalid_request, decided before any cache; the token sent right is then accepted", async () => {
  const t = await token();
  // U+00A0 (one latin1 byte) and U+3000 (its UTF-8 bytes) before the scheme, and
  // U+00A0 between scheme and token.
  for (const value of [`\u00a0Bearer ${t}`, `\u00e3\u0080\u0080Bearer ${t}`, `Bearer\u00a0${t}`, `Bearer ${t}\u00a0`, `Bearer\t${t}`]) {
    const res = await raw(`${base}/mcp`, { headers: { authorization: value, "content-type": "application/json" }, body: call });
    assert.equal(res.status, 400, JSON.stringify(value.slice(0, 12)));
    assert.match(res.headers["www-authenticate"], /error="invalid_request"/);
    assert.ok(!res.text.includes(t.slice(-20)), "the token is not echoed");
  }
  const ok = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `  bEaReR   ${t} `, "content-type": "application/json" }, body: call });
  assert.equal(ok.status, 200, "the same token, sent correctly, is not in any refusal cache");
});

test("8: a signature in non-canonical base64url is refused; the canonical one passes", async () => {
  const t = await token();
  const [h, p, s] = t.split(".");
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const last = alphabet.indexOf(s.at(-1));
  // 256 bytes of RS256 signature: 342 characters, the last one's 4 low bits unused.
  assert.equal(s.length % 4, 2);
  const spelled = `${h}.${p}.${s.slice(0, -1)}${alphabet[last | 1]}`;
  assert.notEqual(spelled, t);
  assert.deepEqual(Buffer.from(spelled.split(".")[2], "base64url"), Buffer.from(s, "base64url"), "the same signature bytes");
  const bad = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${spelled}`, "content-type": "application/json" }, body: call });
  assert.equal(bad.status, 401);
  assert.match((await bad.json()).error_description, /canonical base64url/);
  const ok = await fetch(`${base}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: call });
  assert.equal(ok.status, 200);
});

test("3: unbounded reads (workerd itself): a chunked 32 MiB registration is answered 413 at the cap, long before the body ends; a chunked form through the pass-through too", async () => {
  // Sent 256 KiB at a time, up to 32 MiB, while the worker reads: once it stops
  // reading (the socket stays full for 2 s) or answers, the client ends the upload.
  // Either way the worker must answer 413 having taken far less than 32 MiB.
  const upload = (path, type) =>
    new Promise((resolve, reject) => {
      const req = http.request(`${direct}${path}`, { method: "POST", agent: false, headers: { "content-type": type, "transfer-encoding": "chunked" } });
      let sent = 0;
      let answered = false;
      let stalledSince = 0;
      const giveUp = setTimeout(() => reject(new Error(`${path}: no answer in 30 s after ${sent} bytes`)), 30_000);
      req.on("response", (res) => {
        answered = true;
        collect(res).then((text) => {
          clearTimeout(giveUp);
          resolve({ status: res.statusCode, text, sent });
        });
      });
      req.on("error", (e) => (answered ? null : reject(e)));
      const chunk = Buffer.alloc(256 << 10, 0x20);
      const tick = setInterval(() => {
        if (answered || req.destroyed) return clearInterval(tick);
        if (req.writableLength > 0) {
          stalledSince ||= Date.now();
          if (Date.now() - stalledSince > 2_000) {
            clearInterval(tick);
            req.end();
          }
          return;
        }
        stalledSince = 0;
        if (sent >= 32 << 20) {
          clearInterval(tick);
          return req.end();
        }
        sent += chunk.length;
        req.write(chunk);
      }, 5);
    });
  for (const [path, type] of [["/register", "application/json"], ["/oidc/token", "application/x-www-form-urlencoded"]]) {
    const res = await upload(path, type);
    assert.equal(res.status, 413, `${path}: ${res.text}`);
    assert.equal(JSON.parse(res.text).error, "invalid_request");
    assert.ok(res.sent < 8 << 20, `${path}: answered after ${res.sent} bytes, not after reading 32 MiB`);
  }
  // A declared length over the cap: refused before reading.
  for (const at of [direct, base]) {
    const declared = await fetch(`${at}/register`, { method: "POST", headers: { "content-type": "application/json" }, body: " ".repeat(70_000) });
    assert.equal(declared.status, 413);
  }
  // The worker still answers on.
  assert.equal((await fetch(`${direct}/.well-known/oauth-protected-resource/mcp`)).status, 200);
});

test("4: a GET with a body is the client's mistake (400), not an origin outage; a GET without one is forwarded", async () => {
  const t = await token();
  const hits = originHits;
  for (const framing of [{ "content-length": String(call.length) }, { "transfer-encoding": "chunked" }]) {
    const res = await raw(`${base}/mcp`, { method: "GET", headers: { authorization: `Bearer ${t}`, "content-type": "application/json", ...framing }, body: call });
    assert.equal(res.status, 400, res.text);
    assert.match(JSON.parse(res.text).error_description, /GET request carries no body/);
  }
  assert.equal(originHits, hits, "nothing reached the origin");
  const plain = await fetch(`${base}/mcp`, { headers: { authorization: `Bearer ${t}` } });
  assert.equal(plain.status, 200);
  assert.equal((await plain.json()).result.method, "GET");
});

test("5: public error bodies name the binding and the failure, never an internal URL or its query; the log line keeps the URL without the query", async () => {
  const forbidden = /127\.0\.0\.1|s3cret|api_key|\/slow|\/down|nodisc/;
  // Introspection that never answers (an opaque token).
  let res = await fetch(`${faulty}/mcp`, { method: "POST", headers: { authorization: "Bearer opaque-token-value", "content-type": "application/json" }, body: call });
  let text = await res.text();
  assert.equal(res.status, 503, text);
  assert.match(text, /INTROSPECTION_URL did not answer within 1 s/);
  assert.doesNotMatch(text, forbidden);
  // A JWKS that drops the connection (a JWT).
  const t = await rig.signToken(keys, "RS256", { iss: `${up}/nodisc`, aud: `${faulty}/mcp`, sub: "u", exp: now() + 600 });
  res = await fetch(`${faulty}/mcp`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: call });
  text = await res.text();
  assert.equal(res.status, 503, text);
  assert.match(text, /JWKS_URL/);
  assert.doesNotMatch(text, forbidden);
  // Registration upstream down, and discovery that finds nothing.
  res = await fetch(`${faulty}/register`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"redirect_uris":["https://app.example/cb"]}' });
  text = await res.text();
  assert.equal(res.status, 502, text);
  assert.match(text, /registration endpoint/);
  assert.doesNotMatch(text, forbidden);
  res = await fetch(`${faulty}/.well-known/oauth-authorization-server`);
  text = await res.text();
  assert.equal(res.status, 502, text);
  assert.match(text, /ISSUER/);
  assert.doesNotMatch(text, forbidden);
  // The operator's log line has the URLs, never their queries.
  await new Promise((r) => setTimeout(r, 500));
  assert.match(faultyWorker.output, /\/slow\/introspect/);
  assert.doesNotMatch(faultyWorker.output, /s3cret/);
});

test("6: a registration is forwarded as validated: duplicate members refused, URL members checked, management URL not passed on", async () => {
  const post = (body) => fetch(`${base}/register`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const before = registered.length;
  // A member given twice: the copy the worker checks is the only one it forwards.
  let res = await post('{"redirect_uris":["https://app.example/cb"],"redirect_uris":["javascript:alert(1)"]}');
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, "invalid_redirect_uri");
  for (const [member, value, code] of [
    ["client_uri", "javascript:alert(1)", "invalid_client_metadata"],
    ["logo_uri", "http://app.example/logo.png", "invalid_client_metadata"],
    ["jwks_uri", "https://169.254.169.254/keys", "invalid_client_metadata"],
    ["sector_identifier_uri", "https://localhost/s.json", "invalid_client_metadata"],
    ["post_logout_redirect_uris", ["javascript:alert(1)"], "invalid_redirect_uri"],
  ]) {
    res = await post(JSON.stringify({ redirect_uris: ["https://app.example/cb"], [member]: value }));
    assert.equal(res.status, 400, member);
    assert.equal((await res.json()).error, code, member);
  }
  assert.equal(registered.length, before, "nothing refused reached the authorization server");
  res = await post('{"redirect_uris":["javascript:alert(1)"],"client_name":"dup","redirect_uris":["https://app.example/cb"]}');
  assert.equal(res.status, 201);
  assert.doesNotMatch(registered.at(-1), /javascript/, "the unchecked copy never goes upstream");
  // Whitespace and order as a client wrote them: what goes upstream is the parsed request.
  res = await post('{ "client_name" : "review",\n "redirect_uris" : [ "https://app.example/cb" ], "client_uri": "https://app.example" }');
  assert.equal(res.status, 201);
  const sent = JSON.parse(registered.at(-1));
  assert.deepEqual(sent.redirect_uris, ["https://app.example/cb"]);
  assert.equal(sent.client_uri, "https://app.example");
  assert.equal(registered.at(-1), JSON.stringify(JSON.parse(registered.at(-1))), "re-serialised, not the client's bytes");
  const answer = await res.json();
  assert.equal(answer.client_id, "c-review");
  assert.equal(answer.registration_client_uri, undefined, "the upstream's internal management URL is not passed on");
  assert.equal(answer.registration_access_token, undefined);
});

test("7: identity headers in every spelling and other proxies' identity headers never reach the origin", async () => {
  const t = await token();
  const res = await raw(`${base}/mcp`, {
    headers: {
      authorization: `Bearer ${t}`,
      "content-type": "application/json",
      X_Auth_Subject: "admin",
      "x-auth_scopes": "repo:admin",
      "X-Forwarded-User": "admin",
      "X_Forwarded_Email": "admin@example.com",
      "X-Forwarded-Preferred-Username": "admin",
      "Remote-User": "admin",
      "X-Remote-User": "admin",
      "X-Kept": "yes",
    },
    body: call,
  });
  assert.equal(res.status, 200, res.text);
  const seen = originSaw.at(-1);
  for (const h of ["x_auth_subject", "x-auth_scopes", "x-forwarded-user", "x_forwarded_email", "x-forwarded-preferred-username", "remote-user", "x-remote-user", "authorization"]) {
    assert.equal(seen[h], undefined, `${h} reached the origin`);
  }
  assert.equal(seen["x-auth-subject"], "review-user", "the identity the worker decided on");
  assert.equal(seen["x-kept"], "yes", "other headers pass");
});

test("7: the pass-through states Forwarded and X-Forwarded-Host from ISSUER, whatever the client sent", async () => {
  const res = await raw(`${base}/oidc/token`, {
    headers: { "content-type": "application/x-www-form-urlencoded", forwarded: "host=evil.example;proto=http", "x-forwarded-host": "evil.example", "x-forwarded-proto": "http" },
    body: "grant_type=authorization_code&code=x",
  });
  assert.equal(res.status, 400);
  const seen = tokenRequests.at(-1);
  const host = new URL(base).host;
  assert.equal(seen["x-forwarded-host"], host);
  assert.equal(seen["x-forwarded-proto"], "http");
  assert.equal(seen.forwarded, `host="${host}";proto=http`);
});

test("1 (sibling): a list answer too large to filter is refused (502), never passed on unfiltered", async () => {
  const t = await token();
  for (const path of ["/mcp/big", "/mcp/big-chunked"]) {
    const res = await fetch(`${base}${path}`, { method: "POST", headers: { authorization: `Bearer ${t}`, "content-type": "application/json" }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    const text = await res.text();
    assert.equal(res.status, 502, path);
    assert.doesNotMatch(text, /delete_repo/);
    assert.match(JSON.parse(text).error.message, /too large to filter/);
  }
});

test("7: under workerd itself (which shows the worker the Connection header): headers Connection names stay behind", async () => {
  const t = await rig.signToken(keys, "RS256", { iss: `${direct}/oidc`, aud: `${direct}/mcp`, sub: "direct-user", exp: now() + 600 });
  const res = await raw(`${direct}/mcp`, {
    headers: { authorization: `Bearer ${t}`, "content-type": "application/json", Connection: "keep-alive, X-Hop-Secret, Mcp-Trace", "X-Hop-Secret": "s", "Mcp-Trace": "t", X_Auth_Subject: "admin", "X-Kept": "yes" },
    body: call,
  });
  assert.equal(res.status, 200, res.text);
  const seen = originSaw.at(-1);
  assert.equal(seen["x-hop-secret"], undefined);
  assert.equal(seen["mcp-trace"], undefined);
  assert.equal(seen.x_auth_subject, undefined);
  assert.equal(seen["x-auth-subject"], "direct-user");
  assert.equal(seen["x-kept"], "yes");
});
