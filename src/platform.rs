//! The runtime, as the flows see it: a small trait the glue implements once for
//! workerd (`src/glue/`) and tests implement with a recording fake
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

/// A client's request relayed to the authorization server (the pass-through), as
/// the flows see it: the glue holds the runtime's request and response objects.
#[allow(async_fn_in_trait)]
pub trait Relay {
    /// The runtime's response.
    type Response;

    /// The request's method.
    fn method(&self) -> String;

    /// A request header, by lowercase name.
    fn header(&self, name: &str) -> Option<String>;

    /// The request's body, at most `cap` bytes (413 past it, read as it streams).
    async fn body(&self, cap: usize) -> Result<Vec<u8>, Error>;

    /// Forward the client's request to `target`: its headers (its own credentials
    /// included), and `form` instead of its body when given.
    async fn forward(&self, target: &str, form: Option<String>) -> Result<Self::Response, Error>;

    /// Read a forwarded answer, at most `cap` bytes (to rewrite it).
    async fn read(&self, response: Self::Response, cap: usize) -> Result<Answer, Error>;

    /// A response built from an answer (`content-length` and encodings recomputed).
    fn build(&self, answer: Answer) -> Result<Self::Response, Error>;
}

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

/// An HTTP answer: status, headers and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value; names compare without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
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

    /// Milliseconds since the epoch (record timestamps).
    fn now_ms(&self) -> i64;

    /// Send `request`; the status, headers and body, read as it streams, at most `cap`
    /// bytes, within `timeout`. Failures are [`Error::Upstream`] naming the peer.
    async fn fetch(&self, request: Outgoing) -> Result<Answer, Error>;

    /// Does the rate-limiting binding `binding`, when bound, refuse one more request
    /// under `key`? Unbound or failing: no.
    async fn over_limit(&self, binding: &str, key: &str) -> bool;

    /// The keys under `prefix` in the `CIMD_KV` namespace (at most `limit`), each
    /// with its metadata.
    async fn kv_list(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(String, Option<serde_json::Value>)>, Error>;

    /// Store `value` under `key` in the `CIMD_KV` namespace, with `metadata`.
    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        metadata: &serde_json::Value,
    ) -> Result<(), Error>;

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
