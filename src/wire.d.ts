// Types for the checked JS (src/entry.mjs, src/crossing.mjs), run by `tsc -p
// tsconfig.entry.json` in the test command. `Decision` is the module's answer
// (src/wire.rs, `DECISION_KEYS`: a Rust test keeps the two equal, key for key and
// type for type).

declare module "*.wasm" {
  const module: WebAssembly.Module;
  export default module;
}

/** A reply the module built (src/error.rs `Reply`). */
interface WireReply {
  status: number;
  headers: [string, string][];
  body: string;
}

/** One decision: which keys are present says what to do (src/wire.rs). */
interface Decision {
  f?: string;
  h?: [string, string][];
  c?: [string, string][];
  q?: [string, string][];
  t?: string;
  l?: Record<string, unknown> | null;
  r?: WireReply;
  b?: number;
  p?: number;
  x?: number;
  v?: number;
  k?: string;
  a?: string;
  y?: AlgorithmIdentifier | RsaPssParams | EcdsaParams;
  i?: [number, number];
  s?: [number, number];
  d?: Decision;
  g?: string;
  o?: DpopProof;
}

/** A DPoP proof's signature to verify (src/wire.rs `ProofWire`): the public JWK and
 * the WebCrypto import and verify parameters as JSON strings, and the signing input
 * and the base64url signature as offsets into the `DPoP` header. */
interface DpopProof {
  k: string;
  i: string;
  y: string;
  n: [number, number];
  s: [number, number];
}
