// The benchmark: the cost of authorization at the edge, side by side, in one run, on
// loopback, under workerd itself (wrangler dev's proxy caps throughput near 1,000
// req/s, so it is not used here). Prints one table per run.
//
//   node tests/bench/run.mjs [--requests 8000] [--concurrency 16,64] [--rounds 3] [--log-level warn]
//   node tests/bench/run.mjs --memory [--rounds 8] [--requests 8000]
//   node tests/bench/run.mjs --only jose-fresh,edge-fresh --profile jose-fresh,edge-fresh
//   node tests/bench/run.mjs --baseline main~3
//
// --baseline REV: also build the worker as it was at git revision REV (a worktree in
// target/bench/baseline) and run it in the same workerd as base-reused, base-fresh,
// base-invalid and base-policy-reused: a change measured before and after in one run.
//
// --only: run these variants alone. --profile: record a V8 CPU profile of the named
// variants' workers (through workerd's inspector) during their first measured round
// at each concurrency: target/bench/<variant>-c<conc>.cpuprofile (opens in Chrome
// DevTools), and a summary of where the time went (self time by function, and by
// kind: wasm, JS, runtime) in target/bench/profile.md. Profiled figures carry the
// profiler's overhead: compare them with each other, not with unprofiled runs.
// BENCH_V8_FLAGS="--flag ..." passes V8 flags to workerd (experiments only; e.g.
// --no-liftoff changed nothing: the hot wasm is optimised code either way); what
// workerd printed (e.g. --trace-gc) is then kept in target/bench/workerd.log.
//
// --memory: each of mcp-edge-auth, the jose authorizer and the JS pass-through runs
// alone in its own workerd process; every round sends it reused, fresh and invalid
// tokens (REQUESTS of each, 64 connections) and records the process's RSS, so the
// growth of each worker can be read against the baselines'.
//
// Every cell runs once per round, the rounds interleaved (even rounds in reverse
// order), and the table shows the median of the rounds (a single run on two shared
// cores moves by 20% or more); each round's ratio against the jose twin is printed
// below the table.
//
// Variants, all against the same origin (tests/bench/origin.mjs):
//   direct          wrk straight to the origin
//   js-passthrough  a JS worker that forwards, no auth (the runtime's floor)
//   rs-passthrough  a workers-rs worker that forwards, no auth (the toolchain's floor)
//   jose            a complete JS authorizer on jose (tests/bench/jose-authorizer)
//   edge-reused     mcp-edge-auth, 4 long-lived tokens reused (what MCP clients do)
//   edge-fresh      mcp-edge-auth, every request a token never seen before
//   jose-fresh      the jose authorizer with the same fresh tokens
//   edge-invalid    mcp-edge-auth refusing tokens whose signature was altered
//   edge-dpop-bearer  mcp-edge-auth with DPOP=allowed, the bearer tokens of edge-reused
//   edge-dpop-reused  the same worker, 4 DPoP-bound tokens reused, a fresh proof (ES256)
//                   per request, made just before the cell runs
// Needs wrk (Debian package; installed here if missing and apt-get is available).
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { once } from "node:events";
import WebSocket from "ws";
import path from "node:path";
import os from "node:os";
import * as jose from "jose";
import { createHash, randomUUID } from "node:crypto";
import { root, freePort, start, waitFor, stopAll } from "../e2e/lib/rig.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const REQUESTS = Number(arg("requests", 8000));
const ROUNDS = Number(arg("rounds", 3));
const LEVELS = arg("concurrency", "16,64").split(",").map(Number);
const WARMUP = 2000;
const LOG_LEVEL = arg("log-level", "warn");
const ONLY = arg("only", "");
const MEMORY = process.argv.includes("--memory");
const PROFILE = new Set(arg("profile", "").split(",").filter(Boolean));
const BASELINE = arg("baseline", "");
// Profiles name the wasm's functions (scripts/build.sh, also run by wrangler's bundling);
// the shipped build strips the names.
process.env.KEEP_NAMES = PROFILE.size ? "1" : "0";
const out = path.join(root, "target/bench");
mkdirSync(out, { recursive: true });
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"], ...opts }).toString();

function ensureWrk() {
  try {
    sh("wrk", ["--version"], { stdio: "ignore" });
  } catch (e) {
    if (e.code !== "ENOENT" && e.status !== undefined) return; // wrk --version exits 1
    console.error("bench: installing wrk (apt-get)");
    execFileSync("bash", ["-c", "apt-get install -y -qq wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)"], { stdio: "inherit" });
  }
}

function build() {
  console.error("bench: building the worker and the workers-rs pass-through");
  execFileSync("bash", ["scripts/build.sh"], { cwd: root, stdio: "inherit" });
  execFileSync("cargo", ["build", "--quiet", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path", "tests/bench/passthrough-rs/Cargo.toml", "--target-dir", "target"], { cwd: root, stdio: "inherit" });
  const wasm = "target/wasm32-unknown-unknown/release/bench_passthrough_rs.wasm";
  execFileSync("wasm-bindgen", ["--target", "web", "--out-dir", "target/bench-passthrough", "--no-typescript", wasm], { cwd: root, stdio: "inherit" });
  execFileSync("node_modules/binaryen/bin/wasm-opt", ["-Oz", "--enable-bulk-memory", "--enable-nontrapping-float-to-int", "--enable-sign-ext", "--enable-reference-types", "--enable-multivalue", "--enable-mutable-globals", "target/bench-passthrough/bench_passthrough_rs_bg.wasm", "-o", "target/bench-passthrough/bench_passthrough_rs_bg.wasm"], { cwd: root, stdio: "inherit" });
}

/** A bundle's modules: the main module (the bundled entry) first, then the wasm it imports. */
function modulesOf(dir) {
  const modules = readdirSync(dir).filter((f) => f.endsWith(".js") || f.endsWith(".wasm"));
  modules.sort((a, b) => Number(a.endsWith(".wasm")) - Number(b.endsWith(".wasm")) || a.localeCompare(b));
  return modules;
}

/** The worker at git revision `rev`, built in a worktree of its own and bundled. */
function baselineBundle(rev) {
  const tree = path.join(out, "baseline");
  const commit = sh("git", ["rev-parse", rev]).trim();
  let have = "";
  try {
    have = sh("git", ["-C", tree, "rev-parse", "HEAD"], { stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {}
  if (have !== commit) {
    rmSync(tree, { recursive: true, force: true });
    sh("git", ["worktree", "prune"]);
    sh("git", ["worktree", "add", "--detach", tree, commit]);
  }
  // Its own target directory (inside the worktree, kept between runs); the project's
  // installed JS tooling.
  rmSync(path.join(tree, "node_modules"), { force: true });
  symlinkSync(path.join(root, "node_modules"), path.join(tree, "node_modules"));
  console.error(`bench: building the baseline ${rev} (${commit.slice(0, 10)})`);
  execFileSync("bash", ["scripts/build.sh"], { cwd: tree, stdio: "inherit" });
  const dir = path.join(out, "bundles", "base");
  rmSync(dir, { recursive: true, force: true });
  execFileSync(process.execPath, [path.join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", dir, "--config", path.join(tree, "wrangler.toml"), "--env", ""], {
    cwd: tree,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  return { dir, modules: modulesOf(dir) };
}

/** Bundle a worker as `wrangler deploy` would, and list its modules. */
function bundle(name, config) {
  const dir = path.join(out, "bundles", name);
  rmSync(dir, { recursive: true, force: true });
  execFileSync(process.execPath, [path.join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", dir, "--config", config, "--env", "", ...(PROFILE.size ? ["--no-minify"] : [])], {
    cwd: root,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  return { dir, modules: modulesOf(dir) };
}

function sizes(b) {
  let raw = 0, gz = 0, wasmRaw = 0, wasmGz = 0, jsRaw = 0, jsGz = 0;
  for (const m of b.modules) {
    const data = readFileSync(path.join(b.dir, m));
    const g = gzipSync(data, { level: 9 }).length;
    raw += data.length;
    gz += g;
    if (m.endsWith(".wasm")) { wasmRaw += data.length; wasmGz += g; } else { jsRaw += data.length; jsGz += g; }
  }
  return { raw, gz, wasmRaw, wasmGz, jsRaw, jsGz };
}

// The policy variant: every tools/list body is read and inspected, and every answer
// filtered (the origin's one tool is allowed, so the answer passes unchanged).
const POLICY = JSON.stringify({ methods: { "tools/call": { names: { "delete_*": "mcp:admin" } } } });

const camel = (id) => id.replace(/-(.)/g, (_, c) => c.toUpperCase());

function capnpWorker(id, b, bindings, dir = id) {
  const mods = b.modules
    .map((m) => (m.endsWith(".wasm") ? `(name = "${m}", wasm = embed "bundles/${dir}/${m}")` : `(name = "${m}", esModule = embed "bundles/${dir}/${m}")`))
    .join(",\n      ");
  const binds = Object.entries(bindings).map(([k, v]) => `(name = "${k}", text = ${JSON.stringify(v)})`).join(",\n      ");
  return `const ${camel(id)} :Workerd.Worker = (
    modules = [
      ${mods}
    ],
    bindings = [
      ${binds}
    ],
    compatibilityDate = "2026-04-20",
    globalOutbound = "net",
  );`;
}

/** Run wrk until every thread has its answers; the rate is requests over that time. */
function wrk(port, { mode, tokensFile, connections, requests }) {
  const threads = 2;
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    let elapsed = null;
    let outText = "";
    let doneThreads = 0;
    const p = spawn("wrk", ["-t", String(threads), "-c", String(connections), "-d", "300s", "--timeout", "10s", "-s", path.join(root, "tests/bench/load.lua"), `http://127.0.0.1:${port}/mcp`], {
      env: { ...process.env, BENCH_MODE: mode, BENCH_TOKENS: tokensFile || "", BENCH_REQUESTS: String(requests), BENCH_THREADS: String(threads) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    p.stdout.on("data", (d) => {
      outText += d.toString();
      const count = (outText.match(/thread-done/g) || []).length;
      if (count > doneThreads) {
        doneThreads = count;
        if (doneThreads === threads && elapsed === null) {
          elapsed = Number(process.hrtime.bigint() - started) / 1e9;
          p.kill("SIGINT");
        }
      }
    });
    p.on("error", reject);
    p.on("exit", () => {
      const line = outText.trim().split("\n").filter((l) => l.startsWith("{")).pop();
      if (!line || elapsed === null) return reject(new Error(`wrk did not finish: ${outText}`));
      const r = JSON.parse(line);
      r.seconds = elapsed;
      r.rps = r.requests / elapsed;
      resolve(r);
    });
  });
}

async function main() {
  ensureWrk();
  build();
  const bundles = {
    edge: bundle("edge", "wrangler.toml"),
    "rs-passthrough": bundle("rs-passthrough", "tests/bench/passthrough-rs/wrangler.toml"),
    "js-passthrough": bundle("js-passthrough", "tests/bench/js-passthrough/wrangler.toml"),
    jose: bundle("jose", "tests/bench/jose-authorizer/wrangler.toml"),
  };
  if (BASELINE) bundles.base = baselineBundle(BASELINE);

  // Keys and tokens.
  const { privateKey, publicKey } = await jose.generateKeyPair("RS256", { extractable: true });
  const pub = { ...(await jose.exportJWK(publicKey)), kid: "bench-1", alg: "RS256", use: "sig" };
  const [originPort, upPort] = [await freePort(), await freePort()];
  const ports = { edge: await freePort(), "edge-policy": await freePort(), "edge-assert": await freePort(), "edge-dpop": await freePort(), "rs-passthrough": await freePort(), "js-passthrough": await freePort(), jose: await freePort() };
  if (BASELINE) Object.assign(ports, { base: await freePort(), "base-policy": await freePort() });
  const issuer = `http://127.0.0.1:${upPort}`;
  const resource = `http://127.0.0.1:${ports.edge}/mcp`;
  const joseResource = `http://127.0.0.1:${ports.jose}/mcp`;
  const policyResource = `http://127.0.0.1:${ports["edge-policy"]}/mcp`;
  const assertResource = `http://127.0.0.1:${ports["edge-assert"]}/mcp`;
  const dpopResource = `http://127.0.0.1:${ports["edge-dpop"]}/mcp`;
  // The client's DPoP key (ES256), to which the edge-dpop tokens are bound.
  const dpopKey = await jose.generateKeyPair("ES256", { extractable: true });
  const dpopJwk = await jose.exportJWK(dpopKey.publicKey);
  const dpopJkt = await jose.calculateJwkThumbprint(dpopJwk);
  // The identity assertion's signing key (ES256), for the edge-assert worker.
  const assertionKey = { ...(await jose.exportJWK((await jose.generateKeyPair("ES256", { extractable: true })).privateKey)), kid: "bench-edge" };
  const baseResources = BASELINE ? [`http://127.0.0.1:${ports.base}/mcp`, `http://127.0.0.1:${ports["base-policy"]}/mcp`] : [];
  const now = Math.floor(Date.now() / 1000);
  const sign = (aud, i, extra = {}) =>
    new jose.SignJWT({ iss: issuer, sub: `user-${i}`, aud: [resource, joseResource, policyResource, assertResource, dpopResource, ...baseResources], client_id: "bench", scope: "mcp:tools", iat: now, exp: now + 7200, jti: `t-${i}`, ...extra })
      .setProtectedHeader({ alg: "RS256", kid: "bench-1", typ: "at+jwt" })
      .sign(privateKey);
  console.error("bench: signing tokens");
  const reused = await Promise.all([0, 1, 2, 3].map((i) => sign(resource, i)));
  const freshCount = (REQUESTS + 50) * LEVELS.length * ROUNDS;
  const fresh = [];
  for (let i = 0; i < freshCount; i++) fresh.push(await sign(resource, 1000 + i));
  const invalid = reused.map((t) => {
    const [h, p, s] = t.split(".");
    return `${h}.${p}.${s.slice(0, 10)}${s[10] === "A" ? "B" : "A"}${s.slice(11)}`;
  });
  const bound = await Promise.all([0, 1, 2, 3].map((i) => sign(dpopResource, 100 + i, { cnf: { jkt: dpopJkt } })));
  /** `count` lines "token proof", each proof for one request to the edge-dpop worker. */
  const proofs = async (count) => {
    const lines = [];
    const iat = Math.floor(Date.now() / 1000);
    for (let i = 0; i < count; i++) {
      const token = bound[i % bound.length];
      const ath = createHash("sha256").update(token).digest("base64url");
      const proof = await new jose.SignJWT({ jti: randomUUID(), htm: "POST", htu: dpopResource, iat, ath })
        .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: dpopJwk })
        .sign(dpopKey.privateKey);
      lines.push(`${token} ${proof}`);
    }
    return lines.join("\n") + "\n";
  };
  const files = { reused: path.join(out, "reused.txt"), fresh: path.join(out, "fresh.txt"), invalid: path.join(out, "invalid.txt"), dpop: path.join(out, "dpop.txt"), dpopWarm: path.join(out, "dpop-warm.txt") };
  writeFileSync(files.reused, reused.join("\n") + "\n");
  writeFileSync(files.invalid, invalid.join("\n") + "\n");

  // Peers.
  start("bench-origin", process.execPath, ["tests/bench/origin.mjs"], { ORIGIN_PORT: String(originPort) });
  start("bench-upstream", process.execPath, ["tests/bench/upstream.mjs"], { UPSTREAM_PORT: String(upPort), UPSTREAM_JWKS: JSON.stringify({ keys: [pub] }) });
  await waitFor(`http://127.0.0.1:${originPort}/`);
  await waitFor(`http://127.0.0.1:${upPort}/stats`);

  const origin = `http://127.0.0.1:${originPort}`;
  const workers = {
    edge: ["edge", capnpWorker("edge", bundles.edge, { ORIGIN_URL: origin, RESOURCE_URL: resource, ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools", LOG_LEVEL: LOG_LEVEL })],
    "edge-policy": ["edgePolicy", capnpWorker("edge-policy", bundles.edge, { ORIGIN_URL: origin, RESOURCE_URL: policyResource, ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools mcp:admin", SCOPE_POLICY: POLICY, LOG_LEVEL: LOG_LEVEL }, "edge")],
    "edge-dpop": ["edgeDpop", capnpWorker("edge-dpop", bundles.edge, { ORIGIN_URL: origin, RESOURCE_URL: dpopResource, ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools", DPOP: "allowed", DPOP_PROOF_WINDOW_SECONDS: "300", LOG_LEVEL: LOG_LEVEL }, "edge")],
    "edge-assert": ["edgeAssert", capnpWorker("edge-assert", bundles.edge, { ORIGIN_URL: origin, RESOURCE_URL: assertResource, ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools", ASSERTION_KEY: JSON.stringify(assertionKey), LOG_LEVEL: LOG_LEVEL }, "edge")],
    "rs-passthrough": ["rsPassthrough", capnpWorker("rs-passthrough", bundles["rs-passthrough"], { ORIGIN_URL: origin })],
    "js-passthrough": ["jsPassthrough", capnpWorker("js-passthrough", bundles["js-passthrough"], { ORIGIN_URL: origin })],
    jose: ["jose", capnpWorker("jose", bundles.jose, { ORIGIN_URL: origin, RESOURCE_URL: joseResource, ISSUER: issuer, JWKS_URL: `${issuer}/jwks-jose`, REQUIRED_SCOPES: "mcp:tools" })],
  };
  if (BASELINE) {
    workers.base = ["base", capnpWorker("base", bundles.base, { ORIGIN_URL: origin, RESOURCE_URL: baseResources[0], ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools", LOG_LEVEL: LOG_LEVEL })];
    workers["base-policy"] = ["basePolicy", capnpWorker("base-policy", bundles.base, { ORIGIN_URL: origin, RESOURCE_URL: baseResources[1], ISSUER: issuer, REQUIRED_SCOPES: "mcp:tools", SCOPES_SUPPORTED: "mcp:tools mcp:admin", SCOPE_POLICY: POLICY, LOG_LEVEL: LOG_LEVEL }, "base")];
  }
  // A workerd configuration serving `names` (each on its port), with outbound access to loopback.
  const configFor = (names) => `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (${process.env.BENCH_V8_FLAGS ? `\n  v8Flags = ${JSON.stringify(process.env.BENCH_V8_FLAGS.split(" "))},` : ""}
  services = [
${names.map((n) => `    (name = "${n}", worker = .${workers[n][0]}),`).join("\n")}
    (name = "net", network = (allow = ["public", "private", "local"], tlsOptions = (trustBrowserCas = true))),
  ],
  sockets = [
${names.map((n) => `    (name = "${n}", address = "127.0.0.1:${ports[n]}", http = (), service = "${n}"),`).join("\n")}
  ],
);
${names.map((n) => workers[n][1]).join("\n")}
`;
  if (MEMORY) return memory({ configFor, ports, files, fresh });
  writeFileSync(path.join(out, "workerd.capnp"), configFor(Object.keys(workers)));
  const t0 = Date.now();
  const inspector = PROFILE.size ? await freePort() : 0;
  const workerd = start("workerd", path.join(root, "node_modules/.bin/workerd"), ["serve", path.join(out, "workerd.capnp"), ...(inspector ? [`--inspector-addr=127.0.0.1:${inspector}`] : [])], {});
  await waitFor(`http://127.0.0.1:${ports.edge}/.well-known/oauth-protected-resource`, workerd);
  const startup = Date.now() - t0;
  const probe = await fetch(`http://127.0.0.1:${ports.edge}/mcp`, { method: "POST", headers: { authorization: `Bearer ${reused[0]}` }, body: "{}" });
  if (probe.status !== 200) throw new Error(`edge refused a valid token: ${probe.status} ${await probe.text()}\n${workerd.output}`);
  const [dpopToken, dpopProof] = (await proofs(1)).trim().split(" ");
  const dpopProbe = await fetch(dpopResource, { method: "POST", headers: { authorization: `DPoP ${dpopToken}`, dpop: dpopProof }, body: "{}" });
  if (dpopProbe.status !== 200) throw new Error(`edge-dpop refused a good proof: ${dpopProbe.status} ${await dpopProbe.text()}`);
  const joseProbe = await fetch(`http://127.0.0.1:${ports.jose}/mcp`, { method: "POST", headers: { authorization: `Bearer ${reused[0]}` }, body: "{}" });
  if (joseProbe.status !== 200) throw new Error(`jose refused a valid token: ${joseProbe.status} ${await joseProbe.text()}`);

  const variants = [
    ["direct", originPort, "none", null],
    ["js-passthrough", ports["js-passthrough"], "none", null],
    ["rs-passthrough", ports["rs-passthrough"], "none", null],
    ["jose", ports.jose, "cycle", files.reused],
    ["edge-reused", ports.edge, "cycle", files.reused],
    ["edge-policy-reused", ports["edge-policy"], "cycle", files.reused],
    ["edge-assert-reused", ports["edge-assert"], "cycle", files.reused],
    ["jose-fresh", ports.jose, "fresh", files.fresh],
    ["edge-fresh", ports.edge, "fresh", files.fresh],
    ["edge-assert-fresh", ports["edge-assert"], "fresh", files.fresh],
    ["edge-dpop-bearer", ports["edge-dpop"], "cycle", files.reused],
    ["edge-dpop-reused", ports["edge-dpop"], "dpop", files.dpop],
    ["edge-invalid", ports.edge, "cycle", files.invalid],
    ["jose-invalid", ports.jose, "cycle", files.invalid],
  ];
  if (BASELINE) {
    // Each baseline cell next to its twin, so both see the same moment of the machine.
    const twin = (name) => variants.findIndex(([n]) => n === name) + 1;
    variants.splice(twin("edge-reused"), 0, ["base-reused", ports.base, "cycle", files.reused]);
    variants.splice(twin("edge-policy-reused"), 0, ["base-policy-reused", ports["base-policy"], "cycle", files.reused]);
    variants.splice(twin("edge-fresh"), 0, ["base-fresh", ports.base, "fresh", files.fresh]);
    variants.splice(twin("edge-invalid"), 0, ["base-invalid", ports.base, "cycle", files.invalid]);
  }
  if (ONLY) {
    const keep = new Set(ONLY.split(","));
    for (let i = variants.length - 1; i >= 0; i--) if (!keep.has(variants[i][0])) variants.splice(i, 1);
  }
  const runs = [];
  let freshOffset = 0;
  // workerd's resident memory (all the benchmark's workers in one process), sampled
  // after each round: a leak shows as growth round after round.
  const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${workerd.pid}/status`, "utf8"))[1]) / 1024;
  const rssRounds = [rssMiB()];
  let requestsSent = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of LEVELS) {
      // edge-fresh and jose-fresh share a slice no run has sent before (they are different workers)
      writeFileSync(files.fresh, fresh.slice(freshOffset, freshOffset + REQUESTS + 50).join("\n") + "\n");
      freshOffset += REQUESTS + 50;
      // Odd rounds run the variants in the listed order, even rounds reversed, so a
      // drift over the run (heaps filling, the machine's other load) weighs on no
      // variant more than its twin.
      for (const [name, port, mode, file] of round % 2 ? variants : [...variants].reverse()) {
        if (mode === "dpop") {
          // Proofs made now (their iat), never sent before: one file to warm up, one to measure.
          // wrk keeps up to a connection's worth of requests in flight past its count:
          // spare proofs, so none is sent twice.
          writeFileSync(files.dpopWarm, await proofs(WARMUP + 2 * c + 50));
          writeFileSync(files.dpop, await proofs(REQUESTS + 2 * c + 50));
        }
        const warm = mode === "fresh" ? ["cycle", files.reused] : mode === "dpop" ? ["dpop", files.dpopWarm] : [mode, file];
        await wrk(port, { mode: warm[0], tokensFile: warm[1], connections: c, requests: WARMUP });
        const measure = () => wrk(port, { mode, tokensFile: file, connections: c, requests: REQUESTS });
        const service = Object.keys(ports).find((k) => ports[k] === port);
        const r = PROFILE.has(name) && round === 1 && service ? await profiled(inspector, service, `${name}-c${c}`, measure) : await measure();
        runs.push({ name, c, round, ...r });
        requestsSent += REQUESTS + WARMUP;
        console.error(`bench: round ${round} c=${c} ${name}: ${r.rps.toFixed(0)} req/s, p50 ${(r.p50_us / 1000).toFixed(2)} ms, p99 ${(r.p99_us / 1000).toFixed(2)} ms, non-2xx ${r.non2xx}, errors ${r.errors}`);
      }
    }
    rssRounds.push(rssMiB());
    console.error(`bench: workerd RSS after round ${round}: ${rssRounds.at(-1).toFixed(0)} MiB`);
  }
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  };
  const results = [];
  for (const c of LEVELS) {
    for (const [name] of variants) {
      const mine = runs.filter((r) => r.c === c && r.name === name);
      results.push({
        name,
        c,
        rps: median(mine.map((r) => r.rps)),
        p50_us: median(mine.map((r) => r.p50_us)),
        p99_us: median(mine.map((r) => r.p99_us)),
        non2xx: mine.reduce((a, r) => a + r.non2xx, 0),
        errors: mine.reduce((a, r) => a + r.errors, 0),
      });
    }
  }
  if (PROFILE.size) {
    writeFileSync(path.join(out, "profile.md"), profiles.join("\n"));
    console.error(`bench: profile summaries in ${path.join(out, "profile.md")}`);
  }
  const upstreamHits = await (await fetch(`http://127.0.0.1:${upPort}/stats`)).json();
  const memoryLine = `workerd RSS (all workers, one process): ${rssRounds.map((m) => m.toFixed(0)).join(" -> ")} MiB at start and after each round; ${requestsSent} requests in all.`;
  await stopAll();
  if (process.env.BENCH_V8_FLAGS) writeFileSync(path.join(out, "workerd.log"), workerd.output);

  // Report.
  const cpu = os.cpus()[0]?.model || "unknown CPU";
  const lines = [];
  lines.push(`Machine: ${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}; workerd ${sh(path.join(root, "node_modules/.bin/workerd"), ["--version"]).trim()}; wrk 2 threads; ${REQUESTS} requests per cell after ${WARMUP} warm-up, median of ${ROUNDS} interleaved rounds (even rounds in reverse order); ${new Date().toISOString().slice(0, 10)}.`);
  lines.push("");
  const twinOf = (name) => (name === "edge-policy-reused" ? "jose" : name.replace("edge", "jose").replace("jose-reused", "jose"));
  lines.push("| variant | conc. | req/s | p50 ms | p99 ms | non-2xx (all rounds) | errors | vs rs-passthrough | vs jose (same tokens) |");
  lines.push("|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const floor = results.find((x) => x.c === r.c && x.name === "rs-passthrough");
    const ratio = (x) => (x ? `${(r.rps / x.rps).toFixed(2)}x` : "");
    const joseTwin = results.find((x) => x.c === r.c && x.name === twinOf(r.name));
    const vsJose = r.name.startsWith("edge") ? ratio(joseTwin) : "";
    lines.push(`| ${r.name} | ${r.c} | ${r.rps.toFixed(0)} | ${(r.p50_us / 1000).toFixed(2)} | ${(r.p99_us / 1000).toFixed(2)} | ${r.non2xx} | ${r.errors} | ${ratio(floor)} | ${vsJose} |`);
  }
  lines.push("");
  // Each round's ratio against the jose twin in that same round: how far the median
  // ratio above can be trusted on this machine.
  const spread = [];
  for (const c of LEVELS) {
    for (const [name] of variants) {
      if (!name.startsWith("edge")) continue;
      const per = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const mine = runs.find((r) => r.c === c && r.round === round && r.name === name);
        const twin = runs.find((r) => r.c === c && r.round === round && r.name === twinOf(name));
        if (mine && twin) per.push(mine.rps / twin.rps);
      }
      if (per.length) spread.push(`${name} c${c}: ${per.map((x) => `${x.toFixed(2)}x`).join(" ")} (median ${median(per).toFixed(2)}x)`);
    }
  }
  if (spread.length) {
    lines.push(`Per-round throughput against the jose twin (round by round): ${spread.join("; ")}.`);
    lines.push("");
  }
  // The identity assertion on (edge-assert-*) against off (edge-*), round by round.
  const assertion = [];
  for (const c of LEVELS) {
    for (const kind of ["reused", "fresh"]) {
      const per = [];
      const p99 = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const on = runs.find((r) => r.c === c && r.round === round && r.name === `edge-assert-${kind}`);
        const off = runs.find((r) => r.c === c && r.round === round && r.name === `edge-${kind}`);
        if (on && off) {
          per.push(on.rps / off.rps);
          p99.push(on.p99_us / off.p99_us);
        }
      }
      if (per.length) assertion.push(`${kind} c${c}: throughput ${per.map((x) => `${x.toFixed(2)}x`).join(" ")} (median ${median(per).toFixed(2)}x), p99 median ${median(p99).toFixed(2)}x`);
    }
  }
  if (assertion.length) {
    lines.push(`Identity assertion on against off (same run, round by round): ${assertion.join("; ")}.`);
    lines.push("");
  }
  // DPoP against bearer tokens on the same build, round by round: proofs on every
  // request (edge-dpop-reused), and bearer traffic on a worker with DPoP on.
  const dpop = [];
  for (const c of LEVELS) {
    for (const name of ["edge-dpop-reused", "edge-dpop-bearer"]) {
      const per = [];
      const p99 = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const on = runs.find((r) => r.c === c && r.round === round && r.name === name);
        const off = runs.find((r) => r.c === c && r.round === round && r.name === "edge-reused");
        if (on && off) {
          per.push(on.rps / off.rps);
          p99.push(on.p99_us / off.p99_us);
        }
      }
      if (per.length) dpop.push(`${name} c${c}: throughput ${per.map((x) => `${x.toFixed(2)}x`).join(" ")} (median ${median(per).toFixed(2)}x), p99 median ${median(p99).toFixed(2)}x`);
    }
  }
  if (dpop.length) {
    lines.push(`DPoP against edge-reused (bearer, DPoP off; same run, round by round): ${dpop.join("; ")}.`);
    lines.push("");
  }
  if (BASELINE) {
    // This build against the baseline, cell by cell and round by round.
    const against = [];
    for (const c of LEVELS) {
      for (const [name] of variants.filter(([n]) => n.startsWith("base-"))) {
        const mineName = name.replace("base-", "edge-");
        const per = [];
        const p99 = [];
        for (let round = 1; round <= ROUNDS; round++) {
          const mine = runs.find((r) => r.c === c && r.round === round && r.name === mineName);
          const base = runs.find((r) => r.c === c && r.round === round && r.name === name);
          if (mine && base) {
            per.push(mine.rps / base.rps);
            p99.push(mine.p99_us / base.p99_us);
          }
        }
        if (per.length) against.push(`${mineName} c${c}: throughput ${per.map((x) => `${x.toFixed(2)}x`).join(" ")} (median ${median(per).toFixed(2)}x), p99 median ${median(p99).toFixed(2)}x`);
      }
    }
    lines.push(`This build against the baseline ${BASELINE} (same run, round by round): ${against.join("; ")}.`);
    lines.push(`Baseline bundle: ${JSON.stringify(sizes(bundles.base))}.`);
    lines.push("");
  }
  const s = sizes(bundles.edge);
  const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
  if (PROFILE.size) lines.push("Profiled run: the build keeps its wasm names and the JS is not minified, so the sizes below are not the shipped ones.");
  lines.push(`Bundle (mcp-edge-auth, as wrangler deploys it): wasm ${kb(s.wasmRaw)} raw / ${kb(s.wasmGz)} gzip; JS ${kb(s.jsRaw)} raw / ${kb(s.jsGz)} gzip; total ${kb(s.gz)} gzip (${s.gz} bytes).`);
  const rs = sizes(bundles["rs-passthrough"]);
  lines.push(`Bundle (workers-rs pass-through): total ${kb(rs.gz)} gzip. jose authorizer: ${kb(sizes(bundles.jose).gz)} gzip.`);
  lines.push(`workerd start-up to the edge worker's first answer: ${startup} ms (process start, four workers).`);
  lines.push(memoryLine);
  lines.push(`Authorization-server fetches during the whole run: mcp-edge-auth ${upstreamHits.discovery} discovery and ${upstreamHits.jwks} JWKS; jose ${upstreamHits.joseJwks} JWKS.`);
  lines.push(`mcp-edge-auth ran with LOG_LEVEL=${LOG_LEVEL}.`);
  console.log(lines.join("\n"));
  writeFileSync(path.join(out, "report.md"), lines.join("\n") + "\n");
}

const profiles = [];

/** Run `measure` with V8's CPU profiler on the worker `service` (workerd's inspector). */
async function profiled(inspector, service, label, measure) {
  const ws = new WebSocket(`ws://127.0.0.1:${inspector}/${service}`);
  await once(ws, "open");
  let next = 0;
  const waiting = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m);
    waiting.get(msg.id)?.(msg);
    waiting.delete(msg.id);
  });
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      waiting.set(++next, resolve);
      ws.send(JSON.stringify({ id: next, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 100 });
  await call("Profiler.start");
  const r = await measure();
  const { result } = await call("Profiler.stop");
  ws.close();
  writeFileSync(path.join(out, `${label}.cpuprofile`), JSON.stringify(result.profile));
  profiles.push(summarise(label, result.profile, r.requests));
  return r;
}

// What a wasm function's (demangled) name says it is part of, first match wins.
const WASM_AREAS = [
  [/sha2/, "SHA-256"],
  [/base64/, "base64"],
  [/serde_json::ser|Serializer|serialize/, "serde: writing JSON"],
  [/serde|Deserializ|deserialize/, "serde: reading JSON"],
  [/dlmalloc|__rdl|__rust_alloc|alloc::|raw_vec|drop_in_place|RawVec/, "allocation"],
  [/memcpy|memcmp|memset|copy_from_slice|memchr/, "memory copies and compares"],
  [/fmt::|Formatter|write_str|format/, "formatting"],
  [/hashbrown|Hasher|hash::/, "hash maps"],
  [/mcp_edge_auth::token/, "mcp_edge_auth::token"],
  [/mcp_edge_auth::authorizer/, "mcp_edge_auth::authorizer"],
  [/mcp_edge_auth::/, "mcp_edge_auth, other modules"],
  [/wasm_bindgen|__wbg|wbindgen|shim/, "wasm-bindgen glue"],
];

/** Self time by function and by kind, per request, from a V8 CPU profile. */
function summarise(label, profile, requests) {
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const kinds = new Map();
  const areas = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] || 0;
    const { functionName, url } = byNode.get(id).callFrame;
    const file = url.split("/").pop();
    const kind = /\.wasm/.test(url) || url.startsWith("wasm") ? "wasm" : url ? `JS ${file}` : functionName || "(runtime)";
    const name = `${functionName || "(anonymous)"} ${file}`.trim();
    total += dt;
    self.set(name, (self.get(name) || 0) + dt);
    kinds.set(kind, (kinds.get(kind) || 0) + dt);
    if (kind === "wasm") {
      const area = (WASM_AREAS.find(([re]) => re.test(functionName)) || [null, "other"])[1];
      areas.set(area, (areas.get(area) || 0) + dt);
    }
  });
  const perRequest = (us) => (us / requests).toFixed(1);
  const rows = (m, n) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `| ${k.replace(/\|/g, "\\|").slice(0, 120)} | ${perRequest(us)} | ${((100 * us) / total).toFixed(1)}% |`);
  return [`### ${label}: ${requests} requests, ${(total / 1000).toFixed(0)} ms sampled`, "", "| kind | µs per request | share |", "|---|---|---|", ...rows(kinds, 12), "", "| wasm, by area (function names) | µs per request | share |", "|---|---|---|", ...rows(areas, 16), "", "| function (self time) | µs per request | share |", "|---|---|---|", ...rows(self, 30), ""].join("\n");
}

/** Each worker alone in its own workerd, RSS after every round of mixed load. */
async function memory({ configFor, ports, files, fresh }) {
  const rows = [];
  let freshOffset = 0;
  for (const [name, loads] of [
    ["edge", ["reused", "fresh", "invalid"]],
    ["jose", ["reused", "fresh", "invalid"]],
    ["js-passthrough", ["none"]],
  ]) {
    const file = path.join(out, `workerd-${name}.capnp`);
    writeFileSync(file, configFor([name]));
    const workerd = start(`workerd-${name}`, path.join(root, "node_modules/.bin/workerd"), ["serve", file], {});
    await waitFor(`http://127.0.0.1:${ports[name]}/`, workerd);
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${workerd.pid}/status`, "utf8"))[1]) / 1024;
    const samples = [rss()];
    let sent = 0;
    let bad = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const load of loads) {
        let opts = { mode: "none", tokensFile: null };
        if (load === "reused") opts = { mode: "cycle", tokensFile: files.reused };
        if (load === "invalid") opts = { mode: "cycle", tokensFile: files.invalid };
        if (load === "fresh") {
          writeFileSync(files.fresh, fresh.slice(freshOffset, freshOffset + REQUESTS + 50).join("\n") + "\n");
          freshOffset = (freshOffset + REQUESTS + 50) % Math.max(1, fresh.length - REQUESTS - 50);
          opts = { mode: "fresh", tokensFile: files.fresh };
        }
        const r = await wrk(ports[name], { ...opts, connections: 64, requests: REQUESTS });
        sent += r.requests;
        // Invalid tokens are meant to be refused; anything else must succeed.
        if (load !== "invalid") bad += r.non2xx + r.errors;
      }
      samples.push(rss());
      console.error(`bench: ${name} round ${round}: RSS ${samples.at(-1).toFixed(0)} MiB`);
    }
    process.kill(-workerd.pid, "SIGKILL");
    rows.push({ name, samples, sent, bad, loads });
  }
  await stopAll();
  const lines = [];
  lines.push(`Memory: each worker alone in its own workerd; ${ROUNDS} rounds, each ${REQUESTS} requests per load at 64 connections; RSS in MiB at start and after each round; ${new Date().toISOString().slice(0, 10)}.`);
  lines.push("");
  lines.push("| worker | loads per round | requests | failed | RSS start -> each round (MiB) | growth, first half of rounds | growth, second half |");
  lines.push("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const mid = Math.floor(r.samples.length / 2);
    const d = (a, b) => `${(r.samples[b] - r.samples[a]).toFixed(0)} MiB`;
    lines.push(`| ${r.name} | ${r.loads.join(", ")} | ${r.sent} | ${r.bad} | ${r.samples.map((m) => m.toFixed(0)).join(" -> ")} | ${d(0, mid)} | ${d(mid, r.samples.length - 1)} |`);
  }
  console.log(lines.join("\n"));
  writeFileSync(path.join(out, "memory.md"), lines.join("\n") + "\n");
}

main().catch(async (e) => {
  console.error(e.stack || e);
  await stopAll();
  process.exit(1);
});
