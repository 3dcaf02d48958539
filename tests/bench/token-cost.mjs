// The cost of one token check inside the wasm module, in a wasm runtime: V8 in Node,
// the engine workerd embeds (workerd's clock does not advance during computation, so
// it cannot time this itself). The real build (build/, as the worker ships it) is
// driven the way src/entry.mjs drives it: fast() -> crypto.subtle.verify -> accept()
// (the decision made ahead) for a token never seen, fast() alone for a token already
// validated. A JS check on
// jose (the benchmark's baseline authorizer does the same) runs in the same process.
//
//   bash scripts/build.sh && node tests/bench/token-cost.mjs [--tokens 2000]
//
// Node's WebCrypto is OpenSSL; workerd's is BoringSSL: the signature share of the
// figures is indicative, the wasm share (parse, claims, cache, crossings) is the
// same code on the same engine.
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { performance } from "node:perf_hooks";
import * as jose from "jose";
import { root } from "../e2e/lib/rig.mjs";
import {
  initSync,
  edge_init as init,
  edge_authorize as authorize,
  edge_accept as accept,
  edge_key as keyFor,
} from "../../build/mcp_edge_auth.js";
import { bind, complete, fast } from "../../src/crossing.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const N = Number(arg("tokens", 2000));
const ALGS = ["RS256", "ES256", "EdDSA"];

// The worker shares JWKS through the Cache API; Node has none: every lookup misses.
globalThis.caches = { default: { match: async () => undefined, put: async () => undefined } };

const keys = {};
const jwks = { keys: [] };
for (const alg of ALGS) {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg, { extractable: true });
  keys[alg] = { privateKey, publicKey, kid: `k-${alg}` };
  jwks.keys.push({ ...(await jose.exportJWK(publicKey)), kid: `k-${alg}`, alg, use: "sig" });
}
const server = http.createServer((req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(jwks)));
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const port = server.address().port;

const issuer = "https://auth.example.com/";
const resource = "http://127.0.0.1:1/mcp";
bind(initSync({ module: readFileSync(path.join(root, "build/mcp_edge_auth_bg.wasm")) }));
init({
  ORIGIN_URL: "http://127.0.0.1:2",
  RESOURCE_URL: resource,
  ISSUER: issuer,
  JWKS_URL: `http://127.0.0.1:${port}/jwks`,
  REQUIRED_SCOPES: "mcp:tools",
  ALGORITHMS: ALGS.join(" "),
  LOG_LEVEL: "off",
  // DPoP on, for the proof rows below; bearer tokens are decided as without it.
  DPOP: "allowed",
  DPOP_PROOF_WINDOW_SECONDS: "300",
});

const cryptoKeys = new Map();
function b64(s) {
  return Uint8Array.from(Buffer.from(s, "base64url"));
}
const encoder = new TextEncoder();
// As src/entry.mjs: one imported key per key id and algorithm.
async function verified(d, authorization) {
  const id = `${d.k}:${d.a}`;
  let key = cryptoKeys.get(id);
  if (!key) {
    const { jwk, import: params } = JSON.parse(keyFor(d.k, d.a));
    key = await crypto.subtle.importKey("jwk", jwk, params, false, ["verify"]);
    cryptoKeys.set(id, key);
  }
  return crypto.subtle.verify(d.y, key, b64(authorization.slice(d.s[0], d.s[1])), encoder.encode(authorization.slice(d.i[0], d.i[1])));
}

// Time spent in the synchronous wasm calls (and parsing their answers), summed.
let inWasm = 0;
async function decide(authorization) {
  let t = performance.now();
  let d = JSON.parse(fast("POST", resource, authorization, undefined, null, false, 0));
  inWasm += performance.now() - t;
  if (d.p) d = JSON.parse(await authorize("POST", resource, authorization, undefined, null, false, 0));
  if (d.v !== undefined) {
    const ok = await verified(d, authorization);
    t = performance.now();
    if (ok && d.d) {
      accept(d.v);
      d = d.d;
    } else {
      d = JSON.parse(complete(d.v, ok, "POST", resource, authorization, undefined, null, false, 0));
    }
    inWasm += performance.now() - t;
  }
  if (!d.f) throw new Error(`not forwarded: ${JSON.stringify(d).slice(0, 300)}`);
}

async function tokens(alg, n) {
  const now = Math.floor(Date.now() / 1000);
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(
      `Bearer ${await new jose.SignJWT({ scope: "mcp:tools", client_id: "bench" })
        .setProtectedHeader({ alg, kid: keys[alg].kid, typ: "at+jwt" })
        .setIssuer(issuer)
        .setAudience(resource)
        .setSubject(`user-${i}`)
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .sign(keys[alg].privateKey)}`,
    );
  }
  return out;
}

const us = (ms, n) => ((ms * 1000) / n).toFixed(1);
const rows = [];
for (const alg of ALGS) {
  // Warm-up: fetch the JWKS, import the key, let V8 tier up, on tokens not measured.
  for (const t of await tokens(alg, 200)) await decide(t);
  const fresh = await tokens(alg, N);

  inWasm = 0;
  let t0 = performance.now();
  for (const t of fresh) await decide(t);
  const first = performance.now() - t0;
  const firstWasm = inWasm;

  inWasm = 0;
  t0 = performance.now();
  for (const t of fresh) await decide(t);
  const repeated = performance.now() - t0;
  const repeatedWasm = inWasm;

  // The signature alone, as the entry runs it (imported key, base64url, encode).
  const parts = fresh.map((t) => {
    const jwt = t.slice(7);
    const dot = jwt.lastIndexOf(".");
    return { sig: jwt.slice(dot + 1), data: jwt.slice(0, dot) };
  });
  const key = cryptoKeys.get([...cryptoKeys.keys()].find((k) => k.endsWith(`:${alg}`)));
  const params = alg === "RS256" ? { name: "RSASSA-PKCS1-v1_5" } : alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "Ed25519" };
  t0 = performance.now();
  for (const p of parts) await crypto.subtle.verify(params, key, b64(p.sig), encoder.encode(p.data));
  const signature = performance.now() - t0;

  const publicKey = keys[alg].publicKey;
  t0 = performance.now();
  for (const t of fresh) await jose.jwtVerify(t.slice(7), publicKey, { issuer, audience: resource, algorithms: [alg] });
  const joseMs = performance.now() - t0;

  rows.push([alg, us(first, N), us(firstWasm, N), us(signature, N), us(repeated, N), us(repeatedWasm, N), us(joseMs, N)]);
}
server.close();

// DPoP: a token already validated, bound to the client's key, and a fresh proof per
// request, decided and verified as src/entry.mjs does (fast() with the DPoP header,
// then one crypto.subtle.verify of the proof, its key imported once).
const proofKeys = new Map();
async function proofVerified(o, header) {
  let key = proofKeys.get(o.k);
  if (!key) {
    key = await crypto.subtle.importKey("jwk", JSON.parse(o.k), JSON.parse(o.i), false, ["verify"]);
    proofKeys.set(o.k, key);
  }
  return crypto.subtle.verify(JSON.parse(o.y), key, b64(header.slice(o.s[0], o.s[1])), encoder.encode(header.slice(o.n[0], o.n[1])));
}
const dpopRows = [];
for (const alg of ["ES256", "EdDSA"]) {
  const client = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(client.publicKey);
  const jkt = await jose.calculateJwkThumbprint(jwk);
  const now = Math.floor(Date.now() / 1000);
  const token = await new jose.SignJWT({ scope: "mcp:tools", client_id: "bench", cnf: { jkt } })
    .setProtectedHeader({ alg: "RS256", kid: keys.RS256.kid, typ: "at+jwt" })
    .setIssuer(issuer)
    .setAudience(resource)
    .setSubject("dpop-user")
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(keys.RS256.privateKey);
  const authorization = `DPoP ${token}`;
  const ath = Buffer.from(await crypto.subtle.digest("SHA-256", encoder.encode(token))).toString("base64url");
  const proofs = [];
  for (let i = 0; i < N + 200; i++) {
    proofs.push(
      await new jose.SignJWT({ jti: `p-${alg}-${i}`, htm: "POST", htu: resource, iat: now, ath }).setProtectedHeader({ alg, typ: "dpop+jwt", jwk }).sign(client.privateKey),
    );
  }
  const once = async (proof) => {
    let t = performance.now();
    let d = JSON.parse(fast("POST", resource, authorization, undefined, proof, false, 0));
    inWasm += performance.now() - t;
    if (d.p) d = JSON.parse(await authorize("POST", resource, authorization, undefined, proof, false, 0));
    if (d.v !== undefined) {
      const ok = await verified(d, authorization);
      d = ok && d.d ? (accept(d.v), d.d) : JSON.parse(complete(d.v, ok, "POST", resource, authorization, undefined, proof, false, 0));
    }
    if (!d.f || !d.o || !(await proofVerified(d.o, proof))) throw new Error(`DPoP not forwarded: ${JSON.stringify(d).slice(0, 300)}`);
    return d.o;
  };
  // Warm-up: the token validated and cached, the proof key imported.
  for (const p of proofs.slice(N)) await once(p);
  inWasm = 0;
  let t0 = performance.now();
  let o;
  for (const p of proofs.slice(0, N)) o = await once(p);
  const whole = performance.now() - t0;
  const wasm = inWasm;
  const key = proofKeys.get(o.k);
  const params = JSON.parse(o.y);
  t0 = performance.now();
  for (const p of proofs.slice(0, N)) {
    const dot = p.lastIndexOf(".");
    await crypto.subtle.verify(params, key, b64(p.slice(dot + 1)), encoder.encode(p.slice(0, dot)));
  }
  const signature = performance.now() - t0;
  dpopRows.push([alg, us(whole, N), us(wasm, N), us(signature, N)]);
}

console.log(`Node ${process.version} (V8 ${process.versions.v8}), ${N} tokens per algorithm, µs per token:\n`);
console.log("| algorithm | first sight, whole | of which in wasm calls | WebCrypto verify alone | repeated, whole | of which in wasm calls | jose jwtVerify (JS) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);

console.log("\nDPoP: a validated token bound to the client's key, a fresh proof per request, µs per request:\n");
console.log("| proof algorithm | whole (decision + proof verify) | of which in wasm calls | WebCrypto verify alone |");
console.log("|---|---|---|---|");
for (const r of dpopRows) console.log(`| ${r.join(" | ")} |`);
