// The JS side of the workers-rs pass-through, as worker-build's shim would do it.
import wasmModule from "../../../target/bench-passthrough/bench_passthrough_rs_bg.wasm";
import { initSync, fetch as wasmFetch } from "../../../target/bench-passthrough/bench_passthrough_rs.js";

initSync({ module: wasmModule });

export default {
  fetch(request, env, ctx) {
    return wasmFetch(request, env, ctx);
  },
};
