// @ts-check
// The Worker's entry: thin on purpose. Crossing from JS into wasm costs more than a
// JWT check, so the hot path crosses once: `fast()` takes four strings (written into
// the module's memory in one go: src/crossing.mjs) and answers one. Every decision is
// made in Rust (src/authorizer.rs); this file only moves
// bytes: it forwards allowed MCP requests (bodies stream, never buffered), turns the
// decisions' replies into Responses, and, when a decision asks for it, runs the one
// `crypto.subtle.verify` Rust chose (key, algorithm, bytes). A token never seen
// comes with the decision for a good signature made ahead (`d`): a good signature
// then costs one number across (`accept()`); anything else is decided by
// `complete()`. Routes other than the MCP endpoint go to Rust's `respond()` whole.
// With DPoP on, the `DPoP` header crosses too, and a forward decision for a DPoP-bound
// token names its proof's signature (`o`), verified here before forwarding.
//
// With a SCOPE_POLICY, a decision may first ask for the POST body (`{"b": max}`):
// the entry reads it (bounded), hands it with the `mcp-*` headers (`Mcp-Method`,
// `Mcp-Name`, `MCP-Protocol-Version`, `Mcp-Param-*`) to a second `fast()`, and forwards the very bytes it read. A decision naming a filter (`t`)
// has the answer's list results rewritten in Rust: a JSON answer whole, an event
// stream event by event as it flows.
import wasmModule from "../build/mcp_edge_auth_bg.wasm";
import {
  initSync,
  edge_init as init,
  edge_authorize as authorize,
  edge_respond as respond,
  edge_origin_failure as origin_failure,
  edge_strip_headers as strip_headers,
  edge_accept as accept,
  edge_key as keyFor,
  edge_filter_json as filterJson,
  edge_refusal as refusal,
  EdgeSseFilter,
} from "../build/mcp_edge_auth.js";
import { bind, complete, fast, mcpHeaders } from "./crossing.mjs";
import { BODY } from "./wire.mjs";

/** The module's answer (src/wire.rs; typed in src/wire.d.ts). @type {(wire: string) => Decision} */
const decision = (wire) => JSON.parse(wire);

bind(initSync({ module: wasmModule }));

let level = -1; // 0 off, 1 warn, 2 info; set by init() once per isolate
let strip = new Set();
let identityPrefix = "x-auth-";
let policy = false;
let originTimeoutMs = 100_000;
let registrationPath = "/register";
let filterMax = 8 << 20;
/** The identity assertion (ASSERTION_KEY): where it goes and how to sign it. */
let assertion = null;
/** DPoP on (DPOP): the `DPoP` header goes to the module with the request. */
let dpopOn = false;

function setup(env) {
  level = init(env);
  const s = JSON.parse(strip_headers());
  strip = new Set(s.strip);
  identityPrefix = s.prefix;
  policy = s.policy;
  originTimeoutMs = s.originTimeoutMs;
  registrationPath = s.register;
  filterMax = s.filterMax;
  assertion = s.assertion;
  dpopOn = s.dpop;
}

// The identity assertion: the signing key, imported once; one signature per signing
// input (Rust gives the same input for one token within a window), kept in a bounded
// map, so a request pays only a lookup.
let assertionKey = null;
const assertions = new Map();

/** @param {string} input the JWS signing input (`header.payload`) @returns {Promise<string>} the header value */
async function asserted(input) {
  assertionKey ??= crypto.subtle.importKey("jwk", assertion.jwk, assertion.import, false, ["sign"]);
  const signature = await crypto.subtle.sign(assertion.sign, await assertionKey, encoder.encode(input));
  // @ts-ignore: workerd's V8 has Uint8Array.prototype.toBase64; the TypeScript library in use does not declare it
  const jws = `${input}.${new Uint8Array(signature).toBase64({ alphabet: "base64url", omitPadding: true })}`;
  const value = assertion.bearer ? `Bearer ${jws}` : jws;
  if (assertions.size >= 4096) assertions.clear();
  assertions.set(input, value);
  return value;
}

// Cloudflare's rate-limiting bindings, when configured: a decision names the keys to
// count on the MCP path; registrations count per client address. 429 comes from Rust.
const LIMITED = { MCP_RATE_LIMITER: "subject", MCP_CLIENT_RATE_LIMITER: "client" };

async function overLimit(env, pairs) {
  for (const [binding, key] of pairs) {
    const limiter = env[binding];
    if (limiter && !(await limiter.limit({ key })).success) return LIMITED[binding];
  }
  return null;
}

const { TEXT, TOO_LARGE, NOT_UTF8 } = BODY;

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function decoded(bytes) {
  try {
    return [TEXT, strictUtf8.decode(bytes), bytes];
  } catch {
    return [NOT_UTF8, undefined, bytes];
  }
}

// The one bounded reader for every body the entry reads (a client's request, an
// origin's answer to filter): at most `max` bytes, as they stream in. Returns the
// bytes, or null once more than `max` arrived. A client's body past the cap is
// drained (up to 8x the cap), not cancelled: cancelling a request body mid-upload
// made the runtime drop the next request on the same connection.
async function readCapped(stream, max, drain) {
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      if (drain) {
        while (total <= 8 * max) {
          const next = await reader.read();
          if (next.done) break;
          total += next.value.byteLength;
        }
        reader.releaseLock();
      } else {
        await reader.cancel();
      }
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

// Read at most `max` bytes of the request body: [state, text, bytes]. A declared
// length over the cap is refused before reading; one within it is read in one go
// (the runtime holds a body to its declared length); a body of unknown length is
// read as it streams, up to the cap.
async function readBody(request, max) {
  const length = request.headers.get("content-length");
  if (length !== null) {
    if (Number(length) > max) return [TOO_LARGE, undefined, null];
    return decoded(new Uint8Array(await request.arrayBuffer()));
  }
  if (!request.body) return [TEXT, "", null];
  const bytes = await readCapped(request.body, max, true);
  return bytes === null ? [TOO_LARGE, undefined, null] : decoded(bytes);
}

// The answer with its list results rewritten for this token (see src/sse.rs). A
// JSON answer is read whole, up to the same cap as one event of a stream: larger,
// it cannot be filtered and must not be passed on (null).
async function filtered(response, spec) {
  const type = (response.headers.get("content-type") || "").toLowerCase();
  if (!response.body || !(type.startsWith("text/event-stream") || type.startsWith("application/json"))) {
    return response;
  }
  const headers = new Headers(response.headers);
  headers.delete("content-length");
  const init = { status: response.status, statusText: response.statusText, headers };
  if (type.startsWith("application/json")) {
    // A declared length is held to by the runtime: read in one go when within the cap.
    const length = response.headers.get("content-length");
    let text;
    if (length !== null) {
      if (Number(length) > filterMax) {
        await response.body.cancel();
        return null;
      }
      text = await response.text();
    } else {
      const bytes = await readCapped(response.body, filterMax, false);
      if (bytes === null) return null;
      text = new TextDecoder().decode(bytes);
    }
    const out = filterJson(spec, text);
    return new Response(out === undefined ? text : out, init);
  }
  const filter = new EdgeSseFilter(spec);
  const body = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(
      new TransformStream({
        transform(chunk, out) {
          const text = filter.push(chunk);
          if (text) out.enqueue(text);
        },
        flush(out) {
          const text = filter.finish();
          if (text) out.enqueue(text);
          filter.free();
        },
      }),
    )
    .pipeThrough(new TextEncoderStream());
  return new Response(body, init);
}

function log(line, status) {
  if (!line || level === 0) return;
  if (status !== undefined) line.status = status;
  if (level === 2 || line.status >= 400) console.log(JSON.stringify(line));
}

// WebCrypto keys, imported once per key id and algorithm (ids change with each JWKS).
const cryptoKeys = new Map();
const encoder = new TextEncoder();

// The runtime's base64url decoder (workerd's V8 has Uint8Array.fromBase64, which the
// TypeScript library in use does not declare yet).
/** @type {(s: string) => Uint8Array} */
// @ts-ignore
const base64url = (s) => Uint8Array.fromBase64(s, { alphabet: "base64url" });

/**
 * Check the signature a decision names; any failure is "does not verify".
 * @param {Decision} d
 * @param {string} authorization
 */
async function verified(d, authorization) {
  try {
    const id = `${d.k}:${d.a}`;
    let key = cryptoKeys.get(id);
    if (!key) {
      const info = keyFor(d.k, d.a);
      if (!info) return false;
      const { jwk, import: params } = JSON.parse(info);
      key = await crypto.subtle.importKey("jwk", jwk, params, false, ["verify"]);
      if (cryptoKeys.size > 64) cryptoKeys.clear();
      cryptoKeys.set(id, key);
    }
    const signature = base64url(authorization.slice(d.s[0], d.s[1]));
    const data = encoder.encode(authorization.slice(d.i[0], d.i[1]));
    return await crypto.subtle.verify(d.y, key, signature, data);
  } catch {
    return false;
  }
}

// DPoP proof keys (a client signs its proofs with one key for a while), imported once
// per JWK, and verify parameters per algorithm.
/** @type {Map<string, Promise<CryptoKey | null>>} */
const proofKeys = new Map();
/** @type {Map<string, any>} */
const proofParams = new Map();

/**
 * Check a DPoP proof's signature (the rest of RFC 9449 §4.3 was checked in Rust).
 * @param {DpopProof} o
 * @param {string | null} header the `DPoP` header
 */
async function proofVerified(o, header) {
  if (header === null) return false;
  try {
    let key = proofKeys.get(o.k);
    if (key === undefined) {
      if (proofKeys.size >= 1024) proofKeys.clear();
      key = crypto.subtle.importKey("jwk", JSON.parse(o.k), JSON.parse(o.i), false, ["verify"]).catch(() => null);
      proofKeys.set(o.k, key);
    }
    const k = await key;
    if (k === null) return false;
    let params = proofParams.get(o.y);
    if (params === undefined) proofParams.set(o.y, (params = JSON.parse(o.y)));
    const signature = base64url(header.slice(o.s[0], o.s[1]));
    const data = encoder.encode(header.slice(o.n[0], o.n[1]));
    return await crypto.subtle.verify(params, k, signature, data);
  } catch {
    return false;
  }
}

/** @param {Decision} d */
function reply(d) {
  log(d.l);
  const r = d.r;
  return new Response(r.body === "" ? null : r.body, { status: r.status, headers: r.headers });
}

// Does a client's header stay behind? The rule of src/proxy.rs
// `strip_request_header`: hop-by-hop headers, those `Connection` names,
// Authorization, identity headers (X-Auth-*, other proxies' STRIP_IDENTITY_HEADERS)
// in every spelling CGI/WSGI servers fold onto them (`X_Auth_Subject`).
function stripped(name, named) {
  if (strip.has(name) || name.startsWith(identityPrefix)) return true;
  if (name.includes("_")) {
    const folded = name.replaceAll("_", "-");
    if (strip.has(folded) || folded.startsWith(identityPrefix) || named?.has(folded)) return true;
  }
  return named !== null && named.has(name);
}

/**
 * @param {Request} request
 * @param {Decision} d
 * @param {BodyInit | null} body
 */
async function forward(request, d, body) {
  const method = request.method;
  if (method === "GET" || method === "HEAD") {
    // The platform refuses to send a GET with a body: a client's mistake, not an
    // origin outage. An empty body is simply not sent.
    const length = request.headers.get("content-length");
    if (length === null ? request.body !== null : length !== "0") {
      return reply(decision(refusal(method, request.url, "body-on-get")));
    }
    body = null;
  }
  // One pass over the client's headers (see `stripped`); then the identity Rust
  // decided on.
  const connection = request.headers.get("connection");
  const named = connection === null ? null : new Set(connection.split(",").map((n) => n.trim().toLowerCase()));
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (!stripped(name, named)) headers.append(name, value);
  }
  for (const [name, value] of d.h) headers.set(name, value);
  if (d.g) {
    let value = assertions.get(d.g);
    if (value === undefined) {
      try {
        value = await asserted(d.g);
      } catch {
        assertionKey = null; // tried again on the next request
        return reply(decision(refusal(method, request.url, "assertion")));
      }
    }
    headers.set(assertion.header, value);
  }
  // The timeout covers the wait for the origin's response headers only: workerd's
  // fetch no longer watches its signal once the headers are in, so long streams run
  // on (tests/e2e/faults.test.mjs holds it to that). One native timer, no JS
  // closure to clear: an AbortController with setTimeout/clearTimeout cost 15 µs a
  // request in the profile.
  let response;
  try {
    response = await fetch(d.f, {
      method,
      headers,
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(originTimeoutMs),
    });
  } catch (e) {
    const timedOut = e?.name === "TimeoutError";
    return reply(decision(origin_failure(request.method, request.url, String(e?.message || e), timedOut)));
  }
  if (d.t) {
    response = await filtered(response, d.t);
    if (response === null) return reply(decision(refusal(method, request.url, "answer-too-large")));
  }
  if (d.c.length) {
    response = new Response(response.body, response);
    for (const [name, value] of d.c) response.headers.set(name, value);
  }
  log(d.l, response.status);
  return response;
}

export default {
  async fetch(request, env) {
    if (level < 0) setup(env);
    const h = request.headers;
    const method = request.method;
    const url = request.url;
    const authorization = h.get("authorization");
    const origin = h.get("origin");
    const dpop = dpopOn ? h.get("dpop") : null;
    const resuming = policy && method === "GET" && h.has("last-event-id");
    let d = decision(fast(method, url, authorization, origin, dpop, resuming, BODY.UNREAD));
    /** @type {BodyInit | null} */
    let body = request.body;
    /** @type {[number, string?, string?]} the body state, the body, the `mcp-*` headers */
    let more = [BODY.UNREAD];
    if (d.b !== undefined) {
      const [state, text, bytes] = await readBody(request, d.b);
      body = bytes;
      more = [state, text, mcpHeaders(h)];
      d = decision(fast(method, url, authorization, origin, dpop, resuming, ...more));
    }
    if (d.p) d = decision(await authorize(method, url, authorization, origin, dpop, resuming, ...more));
    if (d.v !== undefined) {
      const ok = await verified(d, authorization);
      if (ok && d.d) {
        accept(d.v);
        d = d.d;
      } else {
        d = decision(complete(d.v, ok, method, url, authorization, origin, dpop, resuming, ...more));
        // INTROSPECT_JWTS: a JWT valid locally is then asked about at the endpoint.
        if (d.p) d = decision(await authorize(method, url, authorization, origin, dpop, resuming, ...more));
      }
    }
    if (d.f) {
      if (d.o && !(await proofVerified(d.o, dpop))) return reply(decision(refusal(method, url, "dpop")));
      const limited = d.q && (await overLimit(env, d.q));
      if (limited) return reply(decision(refusal(method, url, limited)));
      return forward(request, d, body);
    }
    if (d.r) return reply(d);
    if (env.REGISTRATION_RATE_LIMITER && method === "POST" && new URL(url).pathname === registrationPath) {
      const address = h.get("cf-connecting-ip") || "unknown";
      if (!(await env.REGISTRATION_RATE_LIMITER.limit({ key: `addr:${address}` })).success) {
        return reply(decision(refusal(method, url, "address")));
      }
    }
    return respond(request, env);
  },
};
