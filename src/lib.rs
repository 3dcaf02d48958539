//! mcp-edge-auth: OAuth 2.1 for MCP servers, enforced at the edge.
//!
//! The crate is split in two:
//!
//! * Pure protocol modules, with no `worker` types, time and I/O passed in, tested
//!   natively with `cargo test`:
//!   [`config`] (bindings), [`router`] (which route a request takes), [`metadata`]
//!   (RFC 9728 protected-resource and RFC 8414 authorization-server metadata),
//!   [`registration`] (RFC 7591 proxy validation and answer cleaning), [`jwks`] (usable
//!   signature keys and the refresh policy), [`token`] (JWT access-token checks),
//!   [`cache`] (validated tokens), [`authorizer`] (the request decision), [`proxy`]
//!   (what reaches the origin), [`policy`] (`SCOPE_POLICY`: scopes per method and
//!   name), [`jsonrpc`] (request inspection, R11 header checks, list-answer
//!   filtering), [`sse`] (event-stream filtering), [`error`] (the one error type and its HTTP mapping),
//!   [`log`] (the structured log line), [`cimd`] (Client ID Metadata Documents mapped to
//!   upstream clients).
//! * [`flows`]: the orchestration (discovery, keys, registration posts), generic over
//!   the [`platform::Platform`] trait, unit-tested with a fake platform.
//! * [`glue`] (wasm32 only): the thin Worker layer, which reads the `Env` and
//!   implements the platform for workerd: fetches, the Cache API, single flights,
//!   WebCrypto signature checks and the clock.
//!
//! The hot path (an MCP request carrying a token already seen) is one synchronous call
//! from the JS entry (`src/entry.mjs`) into the wasm with four strings, answered with
//! one string: see [`glue`] and docs/architecture.md.

pub mod assertion;
pub mod authorizer;
pub mod cache;
pub mod cimd;
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod doctor;
pub mod dpop;
pub mod error;
pub mod exchange;
pub mod flows;
pub mod headers;
pub mod introspection;
pub mod jsonrpc;
pub mod jwks;
pub mod log;
pub mod metadata;
pub mod needs;
pub mod platform;
pub mod policy;
pub mod proxy;
pub mod registration;
pub mod router;
pub mod routes;
pub mod sse;
pub mod token;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use error::{Error, Reply};
