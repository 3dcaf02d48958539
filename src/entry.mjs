// The Worker's entry: thin on purpose. Crossing from JS into wasm costs more than a
// JWT check, so the hot path crosses once: `fast()` takes four strings and answers
// one. Every decision is made in Rust (src/authorizer.rs); this file only moves
// bytes: it forwards allowed MCP requests (bodies stream, never buffered) and turns
// the decisions' replies into Responses. Routes other than the MCP endpoint go to
// Rust's `respond()` whole.
import wasmModule from "../build/mcp_edge_auth_bg.wasm";
import {
  initSync,
  edge_init as init,
  edge_fast as fast,
  edge_authorize as authorize,
  edge_respond as respond,
  edge_origin_failure as origin_failure,
  edge_strip_headers as strip_headers,
} from "../build/mcp_edge_auth.js";

initSync({ module: wasmModule });

let level = -1; // 0 off, 1 warn, 2 info; set by init() once per isolate
let strip = [];
let identityPrefix = "x-auth-";

function setup(env) {
  level = init(env);
  const s = JSON.parse(strip_headers());
  strip = s.strip;
  identityPrefix = s.prefix;
}

function log(line, status) {
  if (!line || level === 0) return;
  if (status !== undefined) line.status = status;
  if (level === 2 || line.status >= 400) console.log(JSON.stringify(line));
}

function reply(d) {
  log(d.l);
  const r = d.r;
  return new Response(r.body === "" ? null : r.body, { status: r.status, headers: r.headers });
}

async function forward(request, d) {
  const headers = new Headers(request.headers);
  for (const name of strip) headers.delete(name);
  for (const name of [...headers.keys()]) {
    if (name.startsWith(identityPrefix)) headers.delete(name);
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
    if (d.f) return forward(request, d);
    if (d.r) return reply(d);
    return respond(request);
  },
};
