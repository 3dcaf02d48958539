// The end-to-end rig: starts real peers and the real worker (wrangler dev, running the
// wasm build in workerd) on loopback ports of their own, and stops them.
import { spawn, execFile, execFileSync } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import path from "node:path";
import * as jose from "jose";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const children = new Set();

// Ports are handed out below the kernel's ephemeral range (32768 and up on
// Linux): a port taken with listen(0) and released can be claimed again, before
// its owner binds it, by any socket that asks the kernel for one (wrangler's and
// workerd's own listeners, outbound connections). That race failed a CI run with
// EADDRINUSE. Each process starts at its own offset and never repeats a port;
// each candidate is checked free by binding it.
const PORT_LOW = 20000;
const PORT_SPAN = 12000;
let nextPort = PORT_LOW + ((process.pid * 97) % PORT_SPAN);

function canListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.unref();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

export async function freePort() {
  for (let tries = 0; tries < PORT_SPAN; tries++) {
    const port = nextPort;
    nextPort = PORT_LOW + ((nextPort - PORT_LOW + 1) % PORT_SPAN);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${PORT_LOW}-${PORT_LOW + PORT_SPAN - 1}`);
}

/** Build the wasm once, before any worker starts (wrangler's own build is then a no-op). */
export function buildWorker() {
  execFileSync("bash", [path.join(root, "scripts/build.sh")], { stdio: "inherit", cwd: root });
}

/** Spawn a process; its output is kept in `proc.output` for assertions and failures. */
export function start(name, command, args, env = {}) {
  const proc = spawn(command, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  proc.output = "";
  proc.label = name;
  const keep = (d) => {
    proc.output += d.toString();
    if (proc.output.length > 2_000_000) proc.output = proc.output.slice(-1_000_000);
  };
  proc.stdout.on("data", keep);
  proc.stderr.on("data", keep);
  children.add(proc);
  proc.on("exit", () => children.delete(proc));
  return proc;
}

export async function waitFor(url, proc, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${proc.label} exited early:\n${proc.output}`);
    try {
      await fetch(url, { signal: AbortSignal.timeout(2000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${url} did not come up in ${timeoutMs} ms${proc ? `:\n${proc.output}` : ""}`);
}

export async function stopAll() {
  for (const p of children) {
    try {
      process.kill(-p.pid, "SIGTERM");
    } catch {}
  }
  await new Promise((r) => setTimeout(r, 300));
  for (const p of children) {
    try {
      process.kill(-p.pid, "SIGKILL");
    } catch {}
  }
}

/** Signing keys for the authorization server: RSA, P-256 and Ed25519, private JWKs. */
export async function makeKeys({ secondRsa = false } = {}) {
  const out = { keys: [], private: {}, byKid: {} };
  const specs = [
    ["rs1", "RS256", { modulusLength: 2048 }],
    ["es1", "ES256", {}],
    ["ed1", "EdDSA", { crv: "Ed25519" }],
  ];
  // A second RSA key (kid rs2): a token without kid then fits two keys.
  if (secondRsa) specs.push(["rs2", "RS256", { modulusLength: 2048 }]);
  for (const [kid, alg, opts] of specs) {
    const { privateKey } = await jose.generateKeyPair(alg, { ...opts, extractable: true });
    const jwk = { ...(await jose.exportJWK(privateKey)), kid, alg, use: "sig" };
    out.keys.push(jwk);
    out.private[alg] ??= { key: privateKey, kid };
    out.byKid[kid] = privateKey;
  }
  return out;
}

/** The public half of makeKeys()'s set, as an authorization server publishes it. */
export function publicJwks(keys) {
  return { keys: keys.keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) };
}

export async function startAuthorizationServer({ port, issuer, keys, tokenAlg = "RS256", ttl = 3600, scopes, encKey = false, opaque = false, introspector, exchanger, exchangeFrom, exchangeTtl, dpop = false }) {
  const proc = start("authorization-server", process.execPath, ["tests/e2e/peers/authorization-server.mjs"], {
    AS_PORT: String(port),
    AS_ISSUER: issuer,
    AS_KEYS: JSON.stringify({ keys: keys.keys }),
    AS_TOKEN_ALG: tokenAlg,
    AS_TOKEN_TTL: String(ttl),
    ...(scopes ? { AS_SCOPES: scopes } : {}),
    ...(encKey ? { AS_ENC_KEY: "1" } : {}),
    ...(opaque ? { AS_OPAQUE: "1" } : {}),
    ...(introspector ? { AS_INTROSPECTOR: introspector } : {}),
    ...(exchanger ? { AS_EXCHANGER: exchanger, AS_EXCHANGE_FROM: exchangeFrom } : {}),
    ...(exchangeTtl ? { AS_EXCHANGE_TTL: String(exchangeTtl) } : {}),
    ...(dpop ? { AS_DPOP: "1" } : {}),
  });
  const mount = new URL(issuer).pathname.replace(/\/$/, "");
  await waitFor(`http://127.0.0.1:${port}${mount}/.well-known/openid-configuration`, proc);
  return proc;
}

export async function startProbeOrigin(port) {
  const proc = start("probe-origin", process.execPath, ["tests/e2e/peers/probe-origin.mjs"], { ORIGIN_PORT: String(port) });
  await waitFor(`http://127.0.0.1:${port}/mcp/stream-log`, proc);
  return proc;
}

/** An origin that accepts only a JWT it verifies with jose (tests/e2e/peers/verifying-origin.mjs). */
export async function startVerifyingOrigin(port, { jwks, issuer, audience, typ }) {
  const proc = start("verifying-origin", process.execPath, ["tests/e2e/peers/verifying-origin.mjs"], {
    ORIGIN_PORT: String(port),
    VERIFY_JWKS: jwks,
    VERIFY_ISSUER: issuer,
    VERIFY_AUDIENCE: audience,
    ...(typ ? { VERIFY_TYP: typ } : {}),
  });
  await waitFor(`http://127.0.0.1:${port}/calls`, proc);
  return proc;
}

export async function startPolicyOrigin(port) {
  const proc = start("policy-origin", process.execPath, ["tests/e2e/peers/policy-origin.mjs"], { ORIGIN_PORT: String(port) });
  await waitFor(`http://127.0.0.1:${port}/nothing`, proc);
  return proc;
}

export async function startEverythingOrigin(port) {
  const bin = path.join(root, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
  const proc = start("server-everything", process.execPath, [bin, "streamableHttp"], { PORT: String(port) });
  await waitFor(`http://127.0.0.1:${port}/`, proc);
  return proc;
}

export async function startHydraRegistration({ port, backend }) {
  const proc = start("hydra-registration", process.execPath, ["tests/e2e/peers/hydra-registration.mjs"], {
    HYDRA_PORT: String(port),
    HYDRA_BACKEND: backend,
  });
  await waitFor(`http://127.0.0.1:${port}/stats`, proc);
  return proc;
}

/** The Hydra-shaped authorization server (tests/e2e/peers/hydra.mjs). */
export async function startHydra({ port, issuer, opaque = false }) {
  const proc = start("hydra", process.execPath, ["tests/e2e/peers/hydra.mjs"], {
    HYDRA_PORT: String(port),
    HYDRA_ISSUER: issuer,
    ...(opaque ? { HYDRA_OPAQUE: "1" } : {}),
  });
  await waitFor(`http://127.0.0.1:${port}/stats`, proc);
  return proc;
}

/** Bindings for the single-host layout the suites share: the worker on `base`, the
 * origin and oidc-provider (mounted at /oidc) on loopback ports behind it. */
export function singleHostVars(base, originPort, asPort) {
  return {
    ORIGIN_URL: `http://127.0.0.1:${originPort}`,
    RESOURCE_URL: `${base}/mcp`,
    ISSUER: `${base}/oidc`,
    AS_URL: `http://127.0.0.1:${asPort}`,
    AS_PASSTHROUGH: "/oidc/",
  };
}

/** The worker under `wrangler dev` (workerd), configured through --var bindings. */
export async function startWorker({ port, vars, env, processEnv = {}, persist }) {
  const inspector = await freePort();
  const args = [
    path.join(root, "node_modules/wrangler/bin/wrangler.js"),
    "dev",
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(inspector),
    "--show-interactive-dev-session=false",
    "--persist-to", persist || path.join(root, ".wrangler/test-state", String(port)),
  ];
  if (env) args.push("--env", env);
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const proc = start(`worker:${port}`, process.execPath, args, processEnv);
  await waitFor(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource`, proc, 120_000);
  return proc;
}

/** Sign an access token with one of the authorization server's keys (for shape and negative cases). */
export async function signToken(keys, alg, claims, header = {}) {
  const { key, kid } = keys.private[alg];
  return new jose.SignJWT(claims).setProtectedHeader({ alg, kid, typ: "at+jwt", ...header }).sign(key);
}

/** Run a Python SDK client script of tests/e2e/python against `mcpUrl` through the
 * OAuth flow (a headless redirect handler); resolves with its last line, JSON. */
function runPython(script, mcpUrl, clientName, timeout) {
  const python = path.join(root, ".venv/bin/python");
  const args = [path.join(root, "tests/e2e/python", script), mcpUrl, "http://127.0.0.1:9/python-callback", clientName];
  return new Promise((resolve, reject) =>
    execFile(python, args, { timeout }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr.slice(-3000)}`)) : resolve(JSON.parse(stdout.trim().split("\n").pop())),
    ),
  );
}

/** The official Python SDK client in a 2025-11-25 session (oauth_client.py): lists
 * the tools and calls `echo`. */
export const runPythonClient = (mcpUrl, clientName = "python-sdk-e2e") => runPython("oauth_client.py", mcpUrl, clientName, 120_000);

/** The Python SDK's 2026-07-28 client (modern_client.py): its report of every step. */
export const runPythonModernClient = (mcpUrl, clientName = "python-2026") => runPython("modern_client.py", mcpUrl, clientName, 180_000);

/** An MCP origin on the Python SDK 2.3 speaking 2026-07-28 (tests/e2e/python/modern_origin.py). */
export async function startPythonOrigin(port) {
  const proc = start("python-origin", path.join(root, ".venv/bin/python"), ["tests/e2e/python/modern_origin.py", String(port)]);
  await waitFor(`http://127.0.0.1:${port}/calls`, proc);
  return proc;
}

let bundled = null;

/** The worker under workerd itself, bundled as `wrangler deploy` bundles it (no
 * wrangler dev proxy in front: that proxy rewrites some headers, e.g. it removes
 * `Connection` but forwards the headers it names). Bindings are text vars. */
export async function startWorkerd({ port, vars }) {
  const { mkdirSync, readdirSync, writeFileSync } = await import("node:fs");
  const dir = path.join(root, "target/e2e-workerd");
  if (!bundled) {
    execFileSync(process.execPath, [path.join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", path.join(dir, "bundle")], {
      cwd: root,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    bundled = readdirSync(path.join(dir, "bundle")).filter((f) => f.endsWith(".js") || f.endsWith(".wasm"));
    bundled.sort((a, b) => Number(a.endsWith(".wasm")) - Number(b.endsWith(".wasm")) || a.localeCompare(b));
  }
  mkdirSync(dir, { recursive: true });
  const modules = bundled.map((m) => `(name = "${m}", ${m.endsWith(".wasm") ? "wasm" : "esModule"} = embed "bundle/${m}")`).join(", ");
  const bindings = Object.entries(vars).map(([k, v]) => `(name = "${k}", text = ${JSON.stringify(v)})`).join(", ");
  const file = path.join(dir, `workerd-${port}.capnp`);
  writeFileSync(
    file,
    `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (modules = [${modules}], bindings = [${bindings}], compatibilityDate = "2026-04-20", globalOutbound = "net")),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
`,
  );
  const proc = start(`workerd:${port}`, path.join(root, "node_modules/.bin/workerd"), ["serve", file], {});
  await waitFor(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource`, proc);
  return proc;
}
