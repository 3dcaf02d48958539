//! Orchestration: the I/O a decision needs, in plain Rust, generic over
//! [`crate::platform::Platform`] and unit-tested with a fake platform. The glue
//! (`src/glue/`) implements the platform for workerd and keeps the wasm exports.

pub mod as_proxy;
pub mod cimd;
#[cfg(test)]
pub(crate) mod fake;
pub mod mcp;
pub mod upstream;
