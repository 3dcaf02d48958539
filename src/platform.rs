//! The runtime, as the flows see it: a small trait the glue implements once for
//! workerd (`src/glue.rs`) and tests implement with a recording fake
//! (`src/flows/upstream.rs`). The flows ([`crate::flows`]) are plain Rust, generic
//! over it: they decide which requests to send, in which order, what to install and
//! what to share, and never touch `worker`, `web_sys`, `js_sys` or `wasm_bindgen`.
//!
//! Modelled on passing a backend to the operations that need it (cloudflare/azul's
//! log backends, oauth2-rs's HTTP client as a parameter): the platform is a value the
//! flows are handed, not a global they reach for.

use crate::authorizer::Authorizer;
use crate::error::Error;
use std::future::Future;
use std::pin::Pin;

/// A flow started under [`Platform::single_flight`].
pub type Flight = Pin<Box<dyn Future<Output = Result<(), Error>>>>;

/// An HTTP request to an upstream (the authorization server, the introspection
/// endpoint). Redirects are never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Names the upstream in public error bodies (its binding), never the URL.
    pub peer: &'static str,
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    /// Seconds the whole answer may take.
    pub timeout: u32,
    /// The most bytes of the answer read (the rest is refused, not truncated).
    pub cap: usize,
}

/// What the flows need from the runtime.
#[allow(async_fn_in_trait)] // one implementation per target, never `dyn`, never Send
pub trait Platform: Clone + 'static {
    /// Seconds since the epoch.
    fn now(&self) -> i64;

    /// Write one log line (JSON) to the runtime's log.
    fn log(&self, line: &str);

    /// Run `f` with this isolate's authorizer (its configuration, keys, caches), or
    /// get the configuration error it could not be built with.
    fn with_auth<T>(&self, f: impl FnOnce(&mut Authorizer) -> T) -> Result<T, Error>;

    /// Send `request`; the status and the body, read as it streams, at most `cap`
    /// bytes, within `timeout`. Failures are [`Error::Upstream`] naming the peer.
    async fn fetch(&self, request: Outgoing) -> Result<(u16, Vec<u8>), Error>;

    /// A document another isolate stored under `key`: its bytes, when it was
    /// fetched, and the URL it came from. Best effort: any failure is a miss.
    async fn shared_get(&self, key: &str) -> Option<(Vec<u8>, i64, String)>;

    /// Store a document for the other isolates for `ttl` seconds. Best effort.
    async fn shared_put(&self, key: &str, body: &[u8], fetched_at: i64, ttl: i64, from: &str);

    /// Run `make` unless a flight of the same `kind` is under way; either way, wait
    /// for that flight and share its outcome. A flight runs to its end even if the
    /// request that started it goes away.
    async fn single_flight(&self, kind: &str, make: impl FnOnce() -> Flight) -> Result<(), Error>;
}
