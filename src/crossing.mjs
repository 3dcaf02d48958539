// @ts-check
// The synchronous crossings into the module, one call each. The request's strings are
// written as UTF-8, one after the other, into a buffer the module lends
// (`edge_input`), and `edge_fast` / `edge_complete` get their lengths as numbers (-1:
// absent). Passed as wasm-bindgen string arguments, each string would cost a call
// into the module to allocate it and a copy loop in JS: on this path, more than the
// decision itself.
import { edge_input as input, edge_fast as fastIn, edge_complete as completeIn } from "../build/mcp_edge_auth.js";

const encoder = new TextEncoder();
let memory = null; // the module's WebAssembly.Memory
let view = new Uint8Array(0); // the lent buffer; empty once the memory grows (detached)
const lengths = new Int32Array(7);

/** Hand over the module's exports, as `initSync` returns them. */
export function bind(exports) {
  memory = exports.memory;
  view = new Uint8Array(0);
}

let at = 0; // where the next string goes

function put(i, s) {
  if (s == null) {
    lengths[i] = -1;
    return;
  }
  const n = encoder.encodeInto(s, view.subarray(at)).written;
  lengths[i] = n;
  at += n;
}

// Write the strings (null or undefined: absent) and set `lengths`.
function write(method, url, authorization, origin, dpop, body, mcp) {
  // encodeInto writes at most 3 bytes per UTF-16 unit.
  let need = 3 * (method.length + url.length);
  if (authorization != null) need += 3 * authorization.length;
  if (origin != null) need += 3 * origin.length;
  if (dpop != null) need += 3 * dpop.length;
  if (body != null) need += 3 * body.length;
  if (mcp != null) need += 3 * mcp.length;
  if (view.byteLength < need) {
    const size = Math.max(need, 4096);
    const start = input(size); // may grow the memory: read its buffer after
    view = new Uint8Array(memory.buffer, start, size);
  }
  at = 0;
  put(0, method);
  put(1, url);
  put(2, authorization);
  put(3, origin);
  put(4, dpop);
  put(5, body);
  put(6, mcp);
}

/**
 * Decide an MCP request (src/glue/ `fast`): the decision's wire string. The body and
 * the MCP headers (`mcpHeaders`) only once a decision asked for them.
 */
export function fast(method, url, authorization, origin, dpop, resuming, bodyState = 0, body, mcp) {
  write(method, url, authorization, origin, dpop, body, mcp);
  const l = lengths;
  return fastIn(l[0], l[1], l[2], l[3], l[4], resuming, bodyState, l[5], l[6]);
}

/** Finish a signature check (src/glue/ `complete`): the same request again. */
export function complete(handle, verified, method, url, authorization, origin, dpop, resuming, bodyState = 0, body, mcp) {
  write(method, url, authorization, origin, dpop, body, mcp);
  const l = lengths;
  return completeIn(handle, verified, l[0], l[1], l[2], l[3], l[4], resuming, bodyState, l[5], l[6]);
}

/**
 * The request's MCP headers as one string for the module (src/jsonrpc.rs
 * `McpHeaders`): every header named `mcp-*` as `name\nvalue\n`, names lowercase.
 */
export function mcpHeaders(headers) {
  let block = "";
  for (const [name, value] of headers) if (name.startsWith("mcp-")) block += `${name}\n${value}\n`;
  return block;
}
