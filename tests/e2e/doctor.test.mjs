// The doctor (`mcp-edge-auth-doctor`, the native binary) against the same real peers
// as the other suites: oidc-provider, server-everything and the worker in workerd.
// Once healthy (every check passes, exit 0), then once per injected fault, each
// producing its own failure and advice: wrong issuer, missing S256, an opaque token,
// a token with an empty audience, a dead origin, a JWKS with only `enc` keys.
// The faults that need a broken authorization server come from a small server in
// this process that relays the real one and breaks one thing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as rig from "./lib/rig.mjs";

let base, asPort, faultPort, deadPort, keys, config, relay;
const doctorBin = path.join(rig.root, "target/debug/mcp-edge-auth-doctor");

before(async () => {
  rig.buildWorker();
  execFileSync("cargo", ["build", "--quiet", "--bin", "mcp-edge-auth-doctor"], { cwd: rig.root, stdio: "inherit" });
  const [wPort, oPort] = [await rig.freePort(), await rig.freePort()];
  [asPort, faultPort, deadPort] = [await rig.freePort(), await rig.freePort(), await rig.freePort()];
  base = `http://127.0.0.1:${wPort}`;
  keys = await rig.makeKeys();
  await rig.startAuthorizationServer({
    port: asPort,
    issuer: `${base}/oidc`,
    keys,
    introspector: "doctor-introspector:right-secret",
    exchanger: "doctor-exchanger:right-exchange-secret",
    exchangeFrom: `${base}/mcp`,
  });
  await rig.startEverythingOrigin(oPort);
  const vars = { ...rig.singleHostVars(base, oPort, asPort), SCOPES_SUPPORTED: "mcp:tools mcp:admin", REQUIRED_SCOPES: "mcp:tools" };
  await rig.startWorker({ port: wPort, vars });
  const dir = mkdtempSync(path.join(tmpdir(), "doctor-"));
  config = path.join(dir, "wrangler.toml");
  writeFileSync(config, `name = "doctor-test"\n[env.t.vars]\n${Object.entries(vars).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join("\n")}\n`);

  // The real authorization server, relayed; /nos256 strips S256 from its metadata,
  // /enc-jwks serves a JWKS holding only an encryption key.
  relay = http
    .createServer(async (req, res) => {
      if (req.url === "/html-jwks") {
        return res.writeHead(200, { "content-type": "text/html" }).end("<html><body>Sign in</body></html>");
      }
      if (req.url === "/enc-jwks") {
        const enc = { kty: "RSA", use: "enc", alg: "RSA-OAEP", kid: "enc1", n: keys.keys[0].n, e: keys.keys[0].e };
        return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [enc] }));
      }
      const upstream = await fetch(`http://127.0.0.1:${asPort}${req.url}`, {
        headers: { "x-forwarded-host": req.headers["x-forwarded-host"] || "", "x-forwarded-proto": req.headers["x-forwarded-proto"] || "" },
      });
      let body = await upstream.text();
      if (upstream.ok && /\/\.well-known\/(oauth-authorization-server|openid-configuration)/.test(req.url)) {
        const doc = JSON.parse(body);
        doc.code_challenge_methods_supported = ["plain"];
        body = JSON.stringify(doc);
      }
      res.writeHead(upstream.status, { "content-type": "application/json" }).end(body);
    })
    .listen(faultPort, "127.0.0.1");
});

after(async () => {
  relay.closeAllConnections();
  relay.close();
  await rig.stopAll();
});

function doctor(...args) {
  return new Promise((resolve) =>
    execFile(doctorBin, ["--config", config, "--env", "t", "--timeout", "3", "--json", ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? err.code : 0;
      let report;
      try {
        report = JSON.parse(stdout);
      } catch {
        throw new Error(`doctor printed no JSON (exit ${code}): ${stdout}\n${stderr}`);
      }
      resolve({ code, report, stdout, byName: Object.fromEntries(report.checks.map((c) => [c.name, c])) });
    }),
  );
}

const now = () => Math.floor(Date.now() / 1000);
const token = (claims) =>
  rig.signToken(keys, "RS256", { iss: `${base}/oidc`, sub: "doctor-user", aud: `${base}/mcp`, scope: "mcp:tools", client_id: "c1", iat: now(), exp: now() + 600, ...claims });

test("healthy: every check passes, including a token and the deployed worker", async () => {
  const good = await token({});
  const { code, report, byName, stdout } = await doctor("--token", good, "--url", base);
  assert.equal(code, 0, stdout);
  assert.equal(report.ok, true);
  for (const name of ["configuration", "discovery", "pkce", "registration", "jwks", "origin", "token: header", "token: key", "token: signature", "token: claims", "token: scopes", "deployed: prm", "deployed: as metadata", "deployed: challenge"]) {
    assert.equal(byName[name]?.ok, true, `${name}: ${JSON.stringify(byName[name])}`);
  }
  assert.match(byName.origin.detail, /answers initialize/);
  assert.ok(!stdout.includes(good), "the token is never printed");
});

test("the text report prints one line per check and exits 1 on a failure", async () => {
  const out = await new Promise((resolve) =>
    execFile(doctorBin, ["--config", config, "--env", "t", "--var", `ORIGIN_URL=http://127.0.0.1:${deadPort}`], (err, stdout) => resolve({ code: err?.code ?? 0, stdout })),
  );
  assert.equal(out.code, 1);
  assert.match(out.stdout, /^PASS configuration: /m);
  assert.match(out.stdout, /^FAIL origin: .*refused/m);
  assert.match(out.stdout, /^ {5}fix: check ORIGIN_URL/m);
});

const faults = [
  ["wrong issuer (a trailing slash)", ["--var", "ISSUER=BASE/oidc/"], "discovery", /names issuer/, /set ISSUER = "BASE\/oidc"/],
  ["missing S256", ["--var", `AS_URL=http://127.0.0.1:FAULT`], "pkce", /does not advertise S256/, /enable PKCE with S256/],
  ["dead origin", ["--var", `ORIGIN_URL=http://127.0.0.1:DEAD`], "origin", /refused/, /check ORIGIN_URL/],
  ["JWKS with only enc keys", ["--var", `JWKS_URL=http://127.0.0.1:FAULT/enc-jwks`], "jwks", /no usable signature key.*use "enc"/, /publish at least one signature key/],
  ["a JWKS_URL that answers an HTML page", ["--var", `JWKS_URL=http://127.0.0.1:FAULT/html-jwks`], "jwks", /not a JWKS/, /JWKS_URL .* answered text\/html, not a JWKS/],
  ["an opaque token", ["--token", "ory_at_opaque-token-value.signature"], "token", /opaque/, /INTROSPECTION_URL/],
  ["a token with an empty audience", ["--token", "AUD_EMPTY"], "token: claims", /no audience/, /AS_FLAVOR = "hydra"/],
];

for (const [fault, rawArgs, check, detail, fix] of faults) {
  test(`fault: ${fault} fails the ${check} check with advice`, async () => {
    const subst = (s) => s.replaceAll("BASE", base).replaceAll("FAULT", String(faultPort)).replaceAll("DEAD", String(deadPort));
    const args = [];
    for (const a of rawArgs) args.push(a === "AUD_EMPTY" ? await token({ aud: [] }) : subst(a));
    const { code, report, byName } = await doctor(...args);
    assert.equal(code, 1);
    assert.equal(report.ok, false);
    const c = byName[check];
    assert.ok(c && !c.ok, `${check}: ${JSON.stringify(report.checks)}`);
    assert.match(c.detail, new RegExp(subst(detail.source)));
    assert.match(c.fix, new RegExp(subst(fix.source)));
    const failing = report.checks.filter((x) => !x.ok).map((x) => x.name);
    assert.deepEqual(failing, [check], "only the injected fault fails");
  });
}

test("a Hydra-shaped server without AS_FLAVOR=hydra gets Hydra-specific advice; with it, passes", async () => {
  const hPort = await rig.freePort();
  const issuer = `http://127.0.0.1:${hPort}/`;
  await rig.startHydra({ port: hPort, issuer });
  const { code, byName } = await doctor("--var", `ISSUER=${issuer}`, "--var", "AS_URL=", "--var", "AS_PASSTHROUGH=");
  assert.equal(code, 1);
  assert.equal(byName.discovery.ok, true, "found at openid-configuration (Hydra before v25.4)");
  assert.equal(byName.hydra.ok, false);
  assert.match(byName.hydra.fix, /AS_FLAVOR = "hydra"/);
  assert.equal(byName.registration.ok, false);
  assert.match(byName.registration.fix, /AS_FLAVOR = "hydra"/);
  const fixed = await doctor("--var", `ISSUER=${issuer}`, "--var", "AS_URL=", "--var", "AS_PASSTHROUGH=", "--var", "AS_FLAVOR=hydra");
  assert.equal(fixed.byName.hydra.ok, true);
  assert.equal(fixed.byName.registration.ok, true);
  assert.equal(fixed.code, 0, JSON.stringify(fixed.report.checks.filter((c) => !c.ok)));
});

test("introspection: the endpoint and its credentials are checked, a wrong secret named as such", async () => {
  const vars = (secret) => [
    "--var", `INTROSPECTION_URL=http://127.0.0.1:${asPort}/oidc/token/introspection`,
    "--var", "INTROSPECTION_CLIENT_ID=doctor-introspector",
    "--var", `INTROSPECTION_CLIENT_SECRET=${secret}`,
  ];
  const good = await doctor(...vars("right-secret"));
  assert.equal(good.byName.introspection?.ok, true, JSON.stringify(good.byName.introspection));
  assert.equal(good.code, 0);
  const bad = await doctor(...vars("wrong-secret"));
  assert.equal(bad.code, 1);
  assert.equal(bad.byName.introspection.ok, false);
  assert.match(bad.byName.introspection.detail, /401/);
  assert.match(bad.byName.introspection.fix, /refused the worker's credentials/);
  assert.ok(!bad.stdout.includes("wrong-secret") && !good.stdout.includes("right-secret"), "secrets are not printed");
});

test("token exchange: the doctor's probe (a made-up subject token) passes on oidc-provider's invalid_grant and names refused credentials", async () => {
  const vars = (secret) => [
    "--var", "TOKEN_EXCHANGE=true",
    "--var", "TOKEN_EXCHANGE_CLIENT_ID=doctor-exchanger",
    "--var", `TOKEN_EXCHANGE_CLIENT_SECRET=${secret}`,
    "--var", "TOKEN_EXCHANGE_RESOURCE=https://orders.example/",
  ];
  const good = await doctor(...vars("right-exchange-secret"));
  const check = good.byName["token exchange"];
  assert.equal(check?.ok, true, JSON.stringify(check));
  assert.match(check.detail, /\/oidc\/token took the worker's credentials/);
  assert.equal(good.code, 0);
  const bad = await doctor(...vars("wrong-secret"));
  assert.equal(bad.code, 1);
  assert.equal(bad.byName["token exchange"].ok, false);
  assert.match(bad.byName["token exchange"].detail, /invalid_client/);
  assert.ok(!bad.stdout.includes("wrong-secret") && !good.stdout.includes("right-exchange-secret"), "secrets are not printed");
});
