// The Worker's entry: thin on purpose. Crossing from JS into wasm costs more than a
// JWT check, so the hot path crosses once: `fast()` takes four strings and answers
// one. Every decision is made in Rust (src/authorizer.rs); this file only moves
// bytes: it forwards allowed MCP requests (bodies stream, never buffered), turns the
// decisions' replies into Responses, and, when a decision asks for it, runs the one
// `crypto.subtle.verify` Rust chose (key, algorithm, bytes) and hands the result back
// synchronously with `complete()`. Routes other than the MCP endpoint go to Rust's
// `respond()` whole.
import wasmModule from "../build/mcp_edge_auth_bg.wasm";
import {
  initSync,
  edge_init as init,
  edge_fast as fast,
  edge_authorize as authorize,
  edge_respond as respond,
  edge_origin_failure as origin_failure,
  edge_strip_headers as strip_headers,
  edge_complete as complete,
  edge_key as keyFor,
} from "../build/mcp_edge_auth.js";

initSync({ module: wasmModule });

let level = -1; // 0 off, 1 warn, 2 info; set by init() once per isolate
let strip = new Set();
let identityPrefix = "x-auth-";

function setup(env) {
  level = init(env);
  const s = JSON.parse(strip_headers());
  strip = new Set(s.strip);
  identityPrefix = s.prefix;
}

function log(line, status) {
  if (!line || level === 0) return;
  if (status !== undefined) line.status = status;
  if (level === 2 || line.status >= 400) console.log(JSON.stringify(line));
}

// WebCrypto keys, imported once per key id and algorithm (ids change with each JWKS).
const cryptoKeys = new Map();
const encoder = new TextEncoder();

function base64url(s) {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Check the signature a decision names; any failure is "does not verify".
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

function reply(d) {
  log(d.l);
  const r = d.r;
  return new Response(r.body === "" ? null : r.body, { status: r.status, headers: r.headers });
}

async function forward(request, d) {
  // One pass over the client's headers: hop-by-hop, Authorization and any X-Auth-*
  // stay behind; then the identity Rust decided on.
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (!strip.has(name) && !name.startsWith(identityPrefix)) headers.append(name, value);
  }
  for (const [name, value] of d.h) headers.set(name, value);
  let response;
  try {
    response = await fetch(d.f, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
    });
  } catch (e) {
    return reply(JSON.parse(origin_failure(request.method, request.url, String((e && e.message) || e))));
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
    let d = JSON.parse(fast(method, url, authorization, origin));
    if (d.p) d = JSON.parse(await authorize(method, url, authorization, origin));
    if (d.v !== undefined) d = JSON.parse(complete(d.v, await verified(d, authorization)));
    if (d.f) return forward(request, d);
    if (d.r) return reply(d);
    return respond(request);
  },
};
