// The hot crossing into the module: one call per decision. The request's strings are
// written as UTF-8, one after the other, into a buffer the module lends
// (`edge_input`), and `edge_fast` gets their lengths as numbers (-1: absent). Passed
// as wasm-bindgen string arguments, each string would cost a call into the module to
// allocate it and a copy loop in JS: on this path, more than the decision itself.
import { edge_input as input, edge_fast as fastIn } from "../build/mcp_edge_auth.js";

const encoder = new TextEncoder();
let memory = null; // the module's WebAssembly.Memory
let view = new Uint8Array(0); // the lent buffer; empty once the memory grows (detached)

/** Hand over the module's exports, as `initSync` returns them. */
export function bind(exports) {
  memory = exports.memory;
  view = new Uint8Array(0);
}

function put(s, at) {
  return encoder.encodeInto(s, view.subarray(at)).written;
}

/**
 * Decide an MCP request (src/glue.rs `fast`): the decision's wire string. The body and
 * the MCP headers only once a decision asked for them.
 */
export function fast(method, url, authorization, origin, resuming, bodyState = 0, body, mcpMethod, mcpName) {
  // encodeInto writes at most 3 bytes per UTF-16 unit.
  let need = 3 * (method.length + url.length);
  if (authorization != null) need += 3 * authorization.length;
  if (origin != null) need += 3 * origin.length;
  if (body != null) need += 3 * body.length;
  if (mcpMethod != null) need += 3 * mcpMethod.length;
  if (mcpName != null) need += 3 * mcpName.length;
  if (view.byteLength < need) {
    const size = Math.max(need, 4096);
    const at = input(size); // may grow the memory: read its buffer after
    view = new Uint8Array(memory.buffer, at, size);
  }
  let at = 0;
  const m = put(method, at);
  at += m;
  const u = put(url, at);
  at += u;
  let a = -1;
  if (authorization != null) at += a = put(authorization, at);
  let o = -1;
  if (origin != null) at += o = put(origin, at);
  let b = -1;
  if (body != null) at += b = put(body, at);
  let mm = -1;
  if (mcpMethod != null) at += mm = put(mcpMethod, at);
  let mn = -1;
  if (mcpName != null) mn = put(mcpName, at);
  return fastIn(m, u, a, o, resuming, bodyState, b, mm, mn);
}
