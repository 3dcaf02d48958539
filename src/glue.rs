//! The Worker glue (wasm32 only): `Env`, fetch, the clock, pending signature checks. Everything
//! it decides, it asks [`Authorizer`] to decide.
//!
//! Exports, called by the JS entry (`src/entry.mjs`):
//! * [`init`]: once per isolate; reads the bindings through `worker::Env` and builds
//!   the configuration.
//! * [`fast`]: synchronous, four strings in, one string out ([`Decision::to_wire`]).
//!   An MCP request with a token already validated is decided here with no other
//!   crossing; the JS entry forwards it.
//! * [`authorize`]: the same decision when keys must be fetched first: JWKS (and
//!   discovery) fetched single-flight per isolate.
//! * [`accept`] and [`complete`]: when a decision needs a signature checked, the JS
//!   entry runs `crypto.subtle.verify` with the parameters the decision names (a key
//!   imported once via [`key`]) and hands the result back here, synchronously. Async
//!   wasm exports cost more than the check itself, so the one await stays in JS.
//!   The decision for a good signature usually comes with the parameters, made
//!   ahead: then [`accept`] only records the caller (a number crosses, no string);
//!   [`complete`] decides the rest (a bad signature, claims that refuse the token).
//! * [`respond`]: every other route (metadata, registration, pass-through with the
//!   Client ID Metadata Document mapping of [`crate::cimd`], preflight, 404/405),
//!   built with `worker` types; KV and the Cache API are called directly
//!   ([`call_async`]), outgoing requests built with web-sys ([`outbound`]).
//! * [`origin_failure`]: the answer when the origin cannot be reached or is too slow.
//! * [`filter_json`] and [`EdgeSseFilter`]: with a `SCOPE_POLICY`, list answers
//!   rewritten for the token that asked ([`crate::jsonrpc`], [`crate::sse`]).

use crate::authorizer::{Authorizer, Decision, Pending, RequestInfo};
use crate::config::{Config, LogLevel};
use crate::error::{redact_url, redact_urls, ChallengeContext, Error, Fault, Reply};
use crate::flows;
use crate::flows::as_proxy;
use crate::flows::mcp::{self, Next};
use crate::flows::upstream;
use crate::jsonrpc::{self, FilterSpec, McpHeaders};
use crate::log::LogLine;
use crate::platform::{Answer, Flight, Outgoing, Platform, Relay};
use crate::proxy;
use crate::router;
use crate::routes::Serve;
use crate::sse::SseFilter;
use futures_util::StreamExt;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use worker::{Env, Fetch, Headers, Request, Response};

thread_local! {
    static STATE: RefCell<Option<Result<Authorizer, Error>>> = const { RefCell::new(None) };
    /// Decisions waiting for the JS entry's signature check, by handle.
    static PENDING: RefCell<PendingChecks> = RefCell::new(PendingChecks::default());
    /// Fetches in flight, by kind ("keys", "discovery", "cimd:<url>").
    static FLIGHTS: RefCell<HashMap<String, InFlight>> = RefCell::new(HashMap::new());
}

/// The KV namespace binding that holds the CIMD records.
const CIMD_KV: &str = "CIMD_KV";

fn now() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

fn console(line: &str) {
    web_sys::console::log_1(&JsValue::from_str(line));
}

/// `load_*` reads the `Env`; [`Config::build`] is the pure part.
fn load_config(env: &Env) -> Result<Config, Error> {
    Config::build(|name| {
        env.var(name)
            .map(|v| v.to_string())
            .ok()
            .or_else(|| env.secret(name).map(|s| s.to_string()).ok())
    })
}

/// Run `f` with the authorizer, or get the configuration error.
fn with_auth<T>(f: impl FnOnce(&mut Authorizer) -> T) -> Result<T, Error> {
    STATE.with(|s| match &mut *s.borrow_mut() {
        Some(Ok(a)) => Ok(f(a)),
        Some(Err(e)) => Err(e.clone()),
        None => Err(Error::Config {
            binding: "(init)".into(),
            problem: "the worker was not initialised".into(),
        }),
    })
}

fn level() -> LogLevel {
    with_auth(|a| a.log_level()).unwrap_or(LogLevel::Warn)
}

/// Build the configuration from `env`. Returns the log level (0 off, 1 warn, 2 info).
#[wasm_bindgen(js_name = edge_init)]
pub fn init(env: JsValue) -> u8 {
    console_error_panic_hook::set_once();
    let has = |name: &str| js_sys::Reflect::has(&env, &JsValue::from_str(name)).unwrap_or(false);
    let (limit_subjects, limit_clients) = (has("MCP_RATE_LIMITER"), has("MCP_CLIENT_RATE_LIMITER"));
    let has_kv = has(CIMD_KV);
    let env: Env = env.unchecked_into();
    let built = load_config(&env).and_then(|cfg| {
        if cfg.cimd.is_some() && !has_kv {
            return Err(Error::Config {
                binding: CIMD_KV.into(),
                problem: "CIMD is true but no KV namespace is bound as CIMD_KV (wrangler.toml [[kv_namespaces]])".into(),
            });
        }
        Ok(cfg)
    });
    let built = built.map(|cfg| {
        let mut a = Authorizer::new(cfg);
        a.limit_subjects = limit_subjects;
        a.limit_clients = limit_clients;
        a
    });
    if let Err(e) = &built {
        console(&serde_json::json!({"event": "config", "error": e.to_string()}).to_string());
    }
    STATE.with(|s| *s.borrow_mut() = Some(built));
    match level() {
        LogLevel::Off => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
    }
}

/// What the JS entry needs once per isolate: the request headers it removes before
/// forwarding, whether a scope policy is set (then it reports `Last-Event-ID`), the
/// origin timeout and the registration path (for the registration rate limit).
#[wasm_bindgen(js_name = edge_strip_headers)]
pub fn strip_headers() -> String {
    let (policy, timeout, register, identity) = with_auth(|a| {
        (
            a.cfg.policy.is_some(),
            a.cfg.origin_timeout,
            a.cfg.registration_path.clone(),
            a.cfg.strip_identity.clone(),
        )
    })
    .unwrap_or((false, 100, String::new(), Vec::new()));
    let strip: Vec<&str> = proxy::STRIP_REQUEST
        .iter()
        .copied()
        .chain(identity.iter().map(String::as_str))
        .collect();
    serde_json::json!({"strip": strip, "prefix": proxy::IDENTITY_PREFIX, "policy": policy, "originTimeoutMs": u64::from(timeout) * 1000, "register": register, "filterMax": crate::sse::MAX_EVENT})
        .to_string()
}

fn config_failure(e: &Error) -> String {
    let log = LogLine {
        route: "any",
        decision: "error",
        status: e.status(),
        reason: Some(e.reason()),
        ..Default::default()
    };
    Decision::Reply {
        reply: e.reply(&ChallengeContext::default()),
        log,
    }
    .to_wire(LogLevel::Warn)
}

/// The path and query of a request URL, as the runtime serialises it (absolute and
/// already in WHATWG normal form, so no second parse is needed on the hot path).
fn split_url(url: &str) -> Option<(String, Option<String>)> {
    crate::router::split_request_url(url).map(|(p, q)| (p.to_string(), q.map(str::to_string)))
}

/// A request's parts as owned strings, while its signature check or key fetch runs.
#[derive(Default)]
struct Parts {
    method: String,
    path: String,
    query: Option<String>,
    authorization: Option<String>,
    origin: Option<String>,
    body_state: u8,
    body: Option<String>,
    mcp: Option<String>,
    resuming: bool,
}

impl Parts {
    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            authorization: self.authorization.as_deref(),
            origin: self.origin.as_deref(),
            body: crate::wire::body(self.body_state, self.body.as_deref()),
            mcp: McpHeaders::new(self.mcp.as_deref().unwrap_or_default()),
            resuming: self.resuming,
            preflight_headers: None,
        }
    }

    /// The arguments of [`authorize`], owned; `None` for a URL the runtime would not
    /// send.
    #[allow(clippy::too_many_arguments)]
    fn new(
        method: String,
        url: &str,
        authorization: Option<String>,
        origin: Option<String>,
        resuming: bool,
        body_state: u8,
        body: Option<String>,
        mcp: Option<String>,
    ) -> Option<Parts> {
        let (path, query) = split_url(url)?;
        Some(Parts {
            method,
            path,
            query,
            authorization,
            origin,
            body_state,
            body,
            mcp,
            resuming,
        })
    }
}

/// Bounded: a handle the JS entry never completes (an exception mid-request) is
/// dropped with the oldest once there are [`MAX_PENDING`].
#[derive(Default)]
struct PendingChecks {
    next: u32,
    waiting: HashMap<u32, Box<Pending>>,
    order: std::collections::VecDeque<u32>,
}

const MAX_PENDING: usize = 8192;

/// Keep a pending signature check and answer with what the JS entry needs for it,
/// and the decision for a good signature when it could be made ahead.
fn hand_to_js(pending: Box<Pending>, info: &RequestInfo<'_>) -> String {
    let authorization = info.authorization.unwrap_or_default();
    let ahead = with_auth(|a| a.ahead(info, &pending).map(|d| d.to_wire(a.log_level())))
        .ok()
        .flatten();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.next = p.next.wrapping_add(1);
        let handle = p.next;
        let wire = pending.to_wire(handle, authorization, ahead.as_deref());
        while p.waiting.len() >= MAX_PENDING {
            match p.order.pop_front() {
                Some(old) => {
                    p.waiting.remove(&old);
                }
                None => break,
            }
        }
        p.waiting.insert(handle, pending);
        p.order.push_back(handle);
        if p.order.len() > 2 * MAX_PENDING {
            let waiting = std::mem::take(&mut p.waiting);
            p.order.retain(|h| waiting.contains_key(h));
            p.waiting = waiting;
        }
        wire
    })
}

/// The JS entry checked the signature of a token whose decision came with it
/// (`"d"`), and it verified: the caller is remembered. No strings cross.
#[wasm_bindgen(js_name = edge_accept)]
pub fn accept(handle: u32) {
    if let Some(pending) = PENDING.with(|p| p.borrow_mut().waiting.remove(&handle)) {
        let _ = with_auth(|a| a.accept(*pending, now()));
    }
}

/// A key for the JS entry to import into WebCrypto (`{"jwk", "import"}`), or `""`.
#[wasm_bindgen(js_name = edge_key)]
pub fn key(id: &str, alg: &str) -> String {
    with_auth(|a| a.webcrypto_key(id, alg))
        .ok()
        .flatten()
        .unwrap_or_default()
}

thread_local! {
    /// Where the JS entry writes a request's strings for [`fast`] (`src/crossing.mjs`).
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The address of a buffer of at least `len` bytes for the JS entry to write a
/// request's strings into, UTF-8, one after the other, before calling [`fast`]. Valid
/// until the next call of this function.
#[wasm_bindgen(js_name = edge_input)]
pub fn input(len: usize) -> usize {
    INPUT.with(|i| {
        let mut i = i.borrow_mut();
        let len = len.max(i.len());
        i.resize(len, 0);
        i.as_mut_ptr() as usize
    })
}

/// Decide an MCP request without I/O. See [`Decision::to_wire`]. The request's
/// strings are in the [`input`] buffer (see [`read_request`]). The body and the MCP
/// headers come only in a second call, after a decision asked for them
/// (`{"b": max}`); `body_state` is a [`crate::wire::BodyState`].
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = edge_fast)]
pub fn fast(
    method: i32,
    url: i32,
    authorization: i32,
    origin: i32,
    resuming: bool,
    body_state: u8,
    body: i32,
    mcp: i32,
) -> String {
    let lengths = [method, url, authorization, origin, body, mcp];
    read_request(lengths, resuming, body_state, |info| {
        match with_auth(|a| (a.check(info, now()), a.log_level())) {
            Ok((Decision::Verify(p), _)) => hand_to_js(p, info),
            Ok((d, level)) => d.to_wire(level),
            Err(e) => config_failure(&e),
        }
    })
}

/// Finish a request once the JS entry has checked its signature with WebCrypto, when
/// no decision came with it or the signature failed. The request is written into the
/// [`input`] buffer again, as for [`fast`].
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = edge_complete)]
pub fn complete(
    handle: u32,
    verified: bool,
    method: i32,
    url: i32,
    authorization: i32,
    origin: i32,
    resuming: bool,
    body_state: u8,
    body: i32,
    mcp: i32,
) -> String {
    let Some(pending) = PENDING.with(|p| p.borrow_mut().waiting.remove(&handle)) else {
        return config_failure(&Error::KeysUnavailable(
            "the signature check was abandoned".into(),
        ));
    };
    let lengths = [method, url, authorization, origin, body, mcp];
    read_request(lengths, resuming, body_state, |info| {
        match with_auth(|a| (a.complete(info, &pending, verified, now()), a.log_level())) {
            Ok((d, level)) => d.to_wire(level),
            Err(e) => config_failure(&e),
        }
    })
}

/// The request the JS entry wrote into the [`input`] buffer: method, URL,
/// `Authorization`, `Origin`, body, and the MCP headers (see [`McpHeaders`]), UTF-8,
/// one after the other; `lengths` in bytes, -1 for an absent one. Passing them so costs one call into
/// the module; a string argument would cost a call (to allocate) and a copy loop each.
/// Lengths that do not fit the buffer (never, from `src/crossing.mjs`) or a URL the
/// runtime would not send answer `{"x":1}`: the route handler then serves it.
fn read_request(
    lengths: [i32; 6],
    resuming: bool,
    body_state: u8,
    decide: impl FnOnce(&RequestInfo<'_>) -> String,
) -> String {
    INPUT.with(|input| {
        let input = input.borrow();
        let mut rest: &[u8] = &input;
        let mut next = |len: i32| -> Result<Option<&str>, ()> {
            let Ok(len) = usize::try_from(len) else {
                return Ok(None);
            };
            if len > rest.len() {
                return Err(());
            }
            let (s, tail) = rest.split_at(len);
            rest = tail;
            std::str::from_utf8(s).map(Some).map_err(|_| ())
        };
        let strings = lengths.map(&mut next);
        if strings.iter().any(Result::is_err) {
            return r#"{"x":1}"#.to_string();
        }
        let [method, url, authorization, origin, body, mcp] = strings.map(|s| s.ok().flatten());
        let Some((path, query)) = crate::router::split_request_url(url.unwrap_or_default()) else {
            return r#"{"x":1}"#.to_string();
        };
        decide(&RequestInfo {
            method: method.unwrap_or_default(),
            path,
            query,
            authorization,
            origin,
            body: crate::wire::body(body_state, body),
            mcp: McpHeaders::new(mcp.unwrap_or_default()),
            resuming,
            preflight_headers: None,
        })
    })
}

/// Decide an MCP request, doing the I/O [`fast`] could not. Same arguments.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = edge_authorize)]
pub async fn authorize(
    method: String,
    url: String,
    authorization: Option<String>,
    origin: Option<String>,
    resuming: bool,
    body_state: u8,
    body: Option<String>,
    mcp: Option<String>,
) -> String {
    let Some(parts) = Parts::new(
        method,
        &url,
        authorization,
        origin,
        resuming,
        body_state,
        body,
        mcp,
    ) else {
        return r#"{"x":1}"#.into();
    };
    let info = parts.info();
    match mcp::authorize(&Workerd::default(), &info).await {
        Next::Decided(d) => d.to_wire(level()),
        Next::Verify(pending) => hand_to_js(pending, &info),
        Next::Failed(e) => config_failure(&e),
    }
}

/// The answer to a request the JS entry refuses on the way (its decision's wire
/// form): a rate-limiting binding said no (429; `what` is "subject", "client" or
/// "address"), a GET or HEAD carries a body the platform will not forward
/// ("body-on-get", 400), or the origin's list answer is larger than the worker can
/// filter ("answer-too-large", 502).
#[wasm_bindgen(js_name = edge_refusal)]
pub fn refusal(method: &str, url: &str, what: &str) -> String {
    let path = split_url(url).map(|(p, _)| p).unwrap_or_default();
    let info = RequestInfo {
        method,
        path: &path,
        ..Default::default()
    };
    let e = match what {
        "body-on-get" => Error::InvalidRequest(format!(
            "a {method} request carries no body: send JSON-RPC messages with POST"
        )),
        "answer-too-large" => Error::OriginFailed(
            format!(
                "the origin's answer is larger than {} bytes, too large to filter for this token",
                crate::sse::MAX_EVENT
            )
            .into(),
        ),
        "client" => Error::RateLimited("client"),
        "address" => Error::RateLimited("address"),
        _ => Error::RateLimited("subject"),
    };
    with_auth(|a| {
        let route = router::route(&a.cfg, &path);
        a.refuse(route, &info, &e).to_wire(a.log_level())
    })
    .unwrap_or_else(|e| config_failure(&e))
}

/// The answer when the origin could not be reached (502) or sent no answer in time
/// (504), with a JSON-RPC error body.
#[wasm_bindgen(js_name = edge_origin_failure)]
pub fn origin_failure(method: &str, url: &str, message: &str, timed_out: bool) -> String {
    let path = split_url(url).map(|(p, _)| p).unwrap_or_default();
    let info = RequestInfo {
        method,
        path: &path,
        ..Default::default()
    };
    let e = if timed_out {
        Error::OriginTimeout(with_auth(|a| a.cfg.origin_timeout).unwrap_or_default())
    } else {
        Error::OriginUnreachable(
            Fault::new("the origin (ORIGIN_URL) did not take the request")
                .detail(redact_urls(&message.chars().take(200).collect::<String>())),
        )
    };
    with_auth(|a| {
        a.refuse(router::Route::Mcp, &info, &e)
            .to_wire(a.log_level())
    })
    .unwrap_or_else(|e| config_failure(&e))
}

// ---- list answers, filtered ---------------------------------------------------------

fn spec_of(spec: &str) -> FilterSpec {
    // The spec came from this module's own decision; a broken one filters as "no
    // scopes granted", the narrowest view.
    serde_json::from_str(spec).unwrap_or_else(|_| FilterSpec {
        any: true,
        ..Default::default()
    })
}

/// Rewrite a JSON answer (one message or a batch) for the filter `spec` a decision
/// named; `undefined` when it stays as it is.
#[wasm_bindgen(js_name = edge_filter_json)]
pub fn filter_json(spec: &str, text: &str) -> Option<String> {
    let spec = spec_of(spec);
    with_auth(|a| {
        a.cfg
            .policy
            .as_ref()
            .and_then(|p| jsonrpc::filter_answer(text, &spec, p))
    })
    .ok()
    .flatten()
}

/// An event stream being filtered; the JS entry feeds it text as it arrives.
#[wasm_bindgen]
pub struct EdgeSseFilter {
    inner: SseFilter,
}

#[wasm_bindgen]
impl EdgeSseFilter {
    #[wasm_bindgen(constructor)]
    pub fn new(spec: &str) -> EdgeSseFilter {
        EdgeSseFilter {
            inner: SseFilter::new(spec_of(spec)),
        }
    }

    /// The text to send on now.
    pub fn push(&mut self, chunk: &str) -> String {
        let inner = &mut self.inner;
        with_auth(|a| match &a.cfg.policy {
            Some(p) => inner.push(chunk, p),
            None => chunk.to_string(),
        })
        .unwrap_or_else(|_| chunk.to_string())
    }

    /// What is left when the stream ends.
    pub fn finish(&mut self) -> String {
        self.inner.finish()
    }
}

// ---- single-flight fetches ---------------------------------------------------------

/// One in-flight fetch per kind: its promise, and where its error lands (kept as an
/// [`Error`], so every waiter answers with the same status).
type InFlight = (js_sys::Promise, Rc<RefCell<Option<Error>>>);

/// Run `make` once at a time per isolate and `kind`: concurrent callers await the
/// same promise.
async fn single_flight(kind: &str, make: impl FnOnce() -> Flight) -> Result<(), Error> {
    let existing = FLIGHTS.with(|f| f.borrow().get(kind).cloned());
    let (promise, outcome) = match existing {
        Some(flight) => flight,
        None => {
            let fut = make();
            let outcome: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));
            let sink = outcome.clone();
            let p = future_to_promise(async move {
                if let Err(e) = fut.await {
                    *sink.borrow_mut() = Some(e);
                }
                Ok(JsValue::UNDEFINED)
            });
            FLIGHTS.with(|f| {
                f.borrow_mut()
                    .insert(kind.to_string(), (p.clone(), outcome.clone()))
            });
            (p, outcome)
        }
    };
    let _ = JsFuture::from(promise.clone()).await;
    FLIGHTS.with(|f| {
        let mut f = f.borrow_mut();
        if f.get(kind)
            .is_some_and(|(p, _)| js_sys::Object::is(p, &promise))
        {
            f.remove(kind);
        }
    });
    let error = outcome.borrow().clone();
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ---- shared with the other isolates (the Cache API) --------------------------------

/// A document another isolate stored: its bytes, when it was fetched, and the URL it
/// came from. Best effort: any failure is a miss.
async fn shared_get(key: &str) -> Option<(Vec<u8>, i64, String)> {
    let found = call_async(&default_cache()?, "match", &[JsValue::from_str(key)])
        .await
        .ok()?;
    let response: web_sys::Response = found.dyn_into().ok()?;
    let headers = response.headers();
    let at: i64 = headers.get("x-edge-fetched-at").ok()??.parse().ok()?;
    let from = headers.get("x-edge-url").ok()??;
    let buffer = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some((js_sys::Uint8Array::new(&buffer).to_vec(), at, from))
}

/// The Cache API's default cache (`caches.default`), if the runtime has one.
fn default_cache() -> Option<JsValue> {
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
    get(&get(&js_sys::global(), "caches")?, "default").filter(|c| c.is_object())
}

/// Call `method` on a JS object with `args` and await the promise it returns: the
/// Cache API and KV are used through two calls each, without `worker`'s wrappers and
/// the serde bridge they bring into the bundle.
async fn call_async(target: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let f: js_sys::Function = js_sys::Reflect::get(target, &JsValue::from_str(method))
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| format!("no {method}()"))?;
    let promise = f
        .apply(target, &args.iter().collect::<js_sys::Array>())
        .map_err(|e| format!("{method}: {e:?}"))?;
    JsFuture::from(js_sys::Promise::from(promise))
        .await
        .map_err(|e| format!("{method} failed: {e:?}"))
}

/// Store a document for the other isolates, for `ttl` seconds. Best effort.
async fn shared_put(key: &str, body: &[u8], fetched_at: i64, ttl: i64, from: &str) {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", &format!("public, max-age={ttl}"));
    let _ = headers.set("x-edge-fetched-at", &fetched_at.to_string());
    let _ = headers.set("x-edge-url", from);
    let (Some(cache), Ok(r)) = (default_cache(), Response::from_bytes(body.to_vec())) else {
        return;
    };
    let response: web_sys::Response = r.with_headers(headers).into();
    let _ = call_async(&cache, "put", &[JsValue::from_str(key), response.into()]).await;
}

// ---- the platform, for workerd -------------------------------------------------------

/// The platform the flows run on ([`crate::platform::Platform`]): this isolate, and
/// the `Env` of the request (KV, rate limits) when the flow needs it.
#[derive(Clone, Default)]
struct Workerd {
    env: Option<JsValue>,
}

impl Workerd {
    /// The `CIMD_KV` namespace, called directly (`list`, `put`, see [`call_async`]).
    fn kv(&self) -> Result<JsValue, Error> {
        self.env
            .as_ref()
            .and_then(|e| binding(e, CIMD_KV))
            .ok_or_else(|| Error::Upstream("the CIMD_KV binding is missing".into()))
    }
}

impl Platform for Workerd {
    fn now(&self) -> i64 {
        now()
    }

    fn log(&self, line: &str) {
        console(line)
    }

    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }

    async fn over_limit(&self, name: &str, key: &str) -> bool {
        let Some(limiter) = self.env.as_ref().and_then(|e| binding(e, name)) else {
            return false;
        };
        let key = js_object(&serde_json::json!({ "key": key }));
        match call_async(&limiter, "limit", &[key]).await {
            Ok(outcome) => {
                js_sys::Reflect::get(&outcome, &JsValue::from_str("success"))
                    .ok()
                    .and_then(|s| s.as_bool())
                    == Some(false)
            }
            Err(_) => false,
        }
    }

    async fn kv_list(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(String, Option<serde_json::Value>)>, Error> {
        #[derive(serde::Deserialize)]
        struct Listed {
            keys: Vec<ListedKey>,
        }
        #[derive(serde::Deserialize)]
        struct ListedKey {
            name: String,
            metadata: Option<serde_json::Value>,
        }
        let kv = self.kv()?;
        let options = js_object(&serde_json::json!({"prefix": prefix, "limit": limit}));
        let listed = call_async(&kv, "list", &[options]).await.map_err(|e| {
            Error::Upstream(Fault::new("CIMD_KV: list failed").detail(format!("CIMD_KV {e}")))
        })?;
        let text: String = js_sys::JSON::stringify(&listed)
            .map(String::from)
            .unwrap_or_default();
        let listed: Listed = serde_json::from_str(&text)
            .map_err(|e| Error::Upstream(format!("CIMD_KV list answer: {e}").into()))?;
        Ok(listed
            .keys
            .into_iter()
            .map(|k| (k.name, k.metadata))
            .collect())
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        metadata: &serde_json::Value,
    ) -> Result<(), Error> {
        let kv = self.kv()?;
        let options = js_object(&serde_json::json!({ "metadata": metadata }));
        let args = [JsValue::from_str(key), JsValue::from_str(value), options];
        call_async(&kv, "put", &args)
            .await
            .map(|_| ())
            .map_err(|e| {
                Error::Upstream(Fault::new("CIMD_KV: put failed").detail(format!("CIMD_KV {e}")))
            })
    }

    fn with_auth<T>(&self, f: impl FnOnce(&mut Authorizer) -> T) -> Result<T, Error> {
        with_auth(f)
    }

    async fn fetch(&self, o: Outgoing) -> Result<Answer, Error> {
        let headers = Headers::new();
        for (name, value) in &o.headers {
            let _ = headers.set(name, value);
        }
        let body = o
            .body
            .map(|b| JsValue::from(js_sys::Uint8Array::from(b.as_slice())));
        let request = outbound(o.method, &o.url, &headers, body).map_err(|e| {
            Error::Upstream(
                Fault::new(format!("{} is not a URL the runtime can fetch", o.peer))
                    .detail(format!("{}: {}", redact_url(&o.url), redact_urls(&e))),
            )
        })?;
        let (status, headers, body) =
            send_capped(request, o.peer, &o.url, o.timeout, o.cap).await?;
        Ok(Answer {
            status,
            headers: headers.entries().collect(),
            body,
        })
    }

    async fn shared_get(&self, key: &str) -> Option<(Vec<u8>, i64, String)> {
        shared_get(key).await
    }

    async fn shared_put(&self, key: &str, body: &[u8], fetched_at: i64, ttl: i64, from: &str) {
        shared_put(key, body, fetched_at, ttl, from).await
    }

    async fn single_flight(&self, kind: &str, make: impl FnOnce() -> Flight) -> Result<(), Error> {
        single_flight(kind, make).await
    }
}

/// An outgoing request that follows no redirects. Built with web-sys directly:
/// `worker`'s `RequestInit` would bring its Cloudflare-options serialiser into the
/// bundle for options this worker never sets.
fn outbound(
    method: &str,
    url: &str,
    headers: &Headers,
    body: Option<JsValue>,
) -> Result<Request, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(headers.0.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if let Some(b) = &body {
        init.set_body(b);
    }
    web_sys::Request::new_with_str_and_init(url, &init)
        .map(Request::from)
        .map_err(|e| format!("{e:?}"))
}

/// Send `request` (for `url`, the upstream named `peer` in public bodies) and read
/// its answer as it streams in: at most `cap` bytes, all within `timeout` seconds.
/// Returns the status, headers and body.
async fn send_capped(
    request: Request,
    peer: &str,
    url: &str,
    timeout: u32,
    cap: usize,
) -> Result<(u16, Headers, Vec<u8>), Error> {
    // The peer gets `timeout` seconds for its whole answer.
    let signal: worker::AbortSignal = web_sys::AbortSignal::timeout_with_u32(timeout * 1000).into();
    let failed = |what: &str, runtime: String| {
        let fault = if signal.aborted() {
            Fault::new(format!("{peer} did not answer within {timeout} s"))
        } else {
            Fault::new(format!("{peer} {what}"))
        };
        Error::Upstream(fault.detail(format!("{}: {}", redact_url(url), redact_urls(&runtime))))
    };
    let mut response = Fetch::Request(request)
        .send_with_signal(&signal)
        .await
        .map_err(|e| failed("is unreachable", e.to_string()))?;
    let status = response.status_code();
    let headers = response.headers().clone();
    let bytes = read_capped(&mut response, cap).await.map_err(|e| match e {
        Capped::TooLarge => failed(&format!("answered more than {cap} bytes"), String::new()),
        Capped::Failed(m) => failed("broke off its answer", m),
    })?;
    Ok((status, headers, bytes))
}

/// Why a capped read stopped.
enum Capped {
    /// More than the cap arrived (the rest is not read).
    TooLarge,
    /// The stream failed: the runtime's message.
    Failed(String),
}

/// A body, at most `cap` bytes, read as it streams in: the one reader for every body
/// the glue reads, from a client or from an upstream. Past the cap nothing more is
/// kept; an upstream's answer is dropped at once, a client's body is drained (up to
/// 8x the cap, discarded) as the JS entry drains one, because a request body left
/// half-read makes the runtime drop the next request on the same connection.
async fn read_stream(
    stream: worker::Result<worker::ByteStream>,
    cap: usize,
    drain: bool,
) -> Result<Vec<u8>, Capped> {
    let mut stream = match stream {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Vec::new()),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Capped::Failed(e.to_string()))?;
        if bytes.len() + chunk.len() > cap {
            if drain {
                let mut total = bytes.len() + chunk.len();
                drop(bytes);
                while total <= 8 * cap {
                    match stream.next().await {
                        Some(Ok(more)) => total += more.len(),
                        _ => break,
                    }
                }
            }
            return Err(Capped::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A response's body, at most `cap` bytes.
async fn read_capped(response: &mut Response, cap: usize) -> Result<Vec<u8>, Capped> {
    read_stream(response.stream(), cap, false).await
}

// ---- other routes ---------------------------------------------------------------------

fn to_response(reply: &Reply) -> Response {
    let headers = Headers::new();
    for (n, v) in &reply.headers {
        let _ = headers.append(n, v);
    }
    let response = if reply.body.is_empty() {
        Response::empty()
    } else {
        Response::from_bytes(reply.body.clone().into_bytes())
    };
    response
        .unwrap_or_else(|_| Response::empty().expect("an empty response"))
        .with_status(reply.status)
        .with_headers(headers)
}

/// Serve every route but an MCP request's forwarding.
#[wasm_bindgen(js_name = edge_respond)]
pub async fn respond(request: web_sys::Request, env: JsValue) -> web_sys::Response {
    let platform = Workerd { env: Some(env) };
    let mut req = Request::from(request);
    let method = req.method().to_string();
    let url = req.url().ok();
    let path = url
        .as_ref()
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let query = url.as_ref().and_then(|u| u.query().map(str::to_string));
    let origin = req.headers().get("origin").ok().flatten();
    let asked = req
        .headers()
        .get("access-control-request-headers")
        .ok()
        .flatten();
    let info = RequestInfo {
        method: &method,
        path: &path,
        query: query.as_deref(),
        origin: origin.as_deref(),
        preflight_headers: asked.as_deref(),
        ..Default::default()
    };
    let route = with_auth(|a| router::route(&a.cfg, &path)).unwrap_or(router::Route::NotFound);
    let mut log = LogLine {
        route: route.name(),
        method: method.clone(),
        path: path.clone(),
        decision: "serve",
        ..Default::default()
    };
    let result = match with_auth(|a| crate::routes::serve(&a.cfg, &info)).and_then(|r| r) {
        Ok(Serve::Reply(reply)) => Ok(to_response(&reply)),
        Ok(Serve::AuthorizationServerMetadata) => as_metadata().await.map(|r| to_response(&r)),
        Ok(Serve::Register) => {
            let relay = Relayed {
                req: RefCell::new(&mut req),
            };
            as_proxy::register(&platform, &relay)
                .await
                .map(|r| to_response(&r))
        }
        Ok(Serve::Passthrough(target)) => {
            log.decision = "proxy";
            let relay = Relayed {
                req: RefCell::new(&mut req),
            };
            as_proxy::pass(&platform, &relay, &target).await
        }
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            log.decision = if e.status() >= 500 { "error" } else { "deny" };
            log.reason = Some(e.reason());
            let ctx = with_auth(|a| a.challenge_context()).unwrap_or_default();
            to_response(&e.reply(&ctx))
        }
    };
    log.status = response.status_code();
    let lvl = level();
    if lvl == LogLevel::Info || (lvl == LogLevel::Warn && log.is_warning()) {
        console(&log.to_json());
    }
    response.into()
}

async fn as_metadata() -> Result<Reply, Error> {
    upstream::ensure_upstream(&Workerd::default()).await?;
    with_auth(|a| {
        a.discovery
            .upstream(now())
            .map(|u| crate::routes::as_metadata(&a.cfg, u))
            .ok_or_else(|| Error::Upstream("metadata expired while serving".into()))
    })?
}

/// The request's `Content-Length`, when it declares one.
fn declared_length(req: &Request) -> Option<usize> {
    req.headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
}

/// A client's request body, at most `cap` bytes: a declared length over the cap is
/// refused before reading, a body of unknown length (chunked) as it streams in.
async fn read_body_stream(
    declared: Option<usize>,
    stream: worker::Result<worker::ByteStream>,
    cap: usize,
) -> Result<Vec<u8>, Error> {
    if declared.is_some_and(|n| n > cap) {
        return Err(Error::PayloadTooLarge(cap));
    }
    read_stream(stream, cap, true).await.map_err(|e| match e {
        Capped::TooLarge => Error::PayloadTooLarge(cap),
        Capped::Failed(_) => Error::InvalidRequest("the request body could not be read".into()),
    })
}

// ---- the client's request, relayed to the authorization server ------------------------

/// The client's request on its way to the authorization server ([`Relay`]).
struct Relayed<'r> {
    req: RefCell<&'r mut Request>,
}

impl Relayed<'_> {
    /// The request to `target`: the client's headers (its own credentials included;
    /// how the request reached the worker, the worker says itself), and `form`
    /// instead of its body when given.
    fn outgoing(&self, target: &str, form: Option<String>) -> Result<Request, Error> {
        let req = self.req.borrow();
        let headers = Headers::new();
        let (named, identity) = with_auth(|a| {
            let connection = req.headers().get("connection").ok().flatten();
            (
                proxy::connection_named(connection.as_deref()),
                a.cfg.strip_identity.clone(),
            )
        })?;
        for (name, value) in req.headers().entries() {
            let keep = name == "authorization"
                || !(proxy::strip_request_header(&name, &named, &identity)
                    || proxy::FORWARDING_HEADERS.contains(&name.as_str()));
            if keep && !(form.is_some() && name == "content-length") {
                let _ = headers.append(&name, &value);
            }
        }
        // The public name of the authorization server, from ISSUER: never the
        // request's Host, never a client's Forwarded.
        let (host, proto) = with_auth(|a| a.cfg.public_issuer_host())?;
        let _ = headers.set("forwarded", &format!("host=\"{host}\";proto={proto}"));
        let _ = headers.set("x-forwarded-host", &host);
        let _ = headers.set("x-forwarded-proto", &proto);
        let body = match form {
            Some(f) => Some(JsValue::from_str(&f)),
            None => req.inner().body().map(JsValue::from),
        };
        outbound(req.method().as_ref(), target, &headers, body).map_err(|e| {
            Error::Upstream(
                Fault::new("AS_PASSTHROUGH: the pass-through URL cannot be fetched")
                    .detail(redact_urls(&e)),
            )
        })
    }
}

impl Relay for Relayed<'_> {
    type Response = Response;

    fn method(&self) -> String {
        self.req.borrow().method().to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.req.borrow().headers().get(name).ok().flatten()
    }

    async fn body(&self, cap: usize) -> Result<Vec<u8>, Error> {
        let (declared, stream) = {
            let mut req = self.req.borrow_mut();
            (declared_length(&req), req.stream())
        };
        read_body_stream(declared, stream, cap).await
    }

    async fn forward(&self, target: &str, form: Option<String>) -> Result<Response, Error> {
        let upstream = self.outgoing(target, form)?;
        Fetch::Request(upstream).send().await.map_err(|e| {
            Error::Upstream(
                Fault::new("AS_PASSTHROUGH: the authorization server is unreachable").detail(
                    format!("{}: {}", redact_url(target), redact_urls(&e.to_string())),
                ),
            )
        })
    }

    async fn read(&self, mut response: Response, cap: usize) -> Result<Answer, Error> {
        let status = response.status_code();
        let headers = response.headers().entries().collect();
        let body = read_capped(&mut response, cap).await.map_err(|e| match e {
            Capped::TooLarge => flows::cimd::read_failure(true, ""),
            Capped::Failed(m) => flows::cimd::read_failure(false, &m),
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn build(&self, answer: Answer) -> Result<Response, Error> {
        let headers = Headers::new();
        for (name, value) in &answer.headers {
            if !matches!(
                name.as_str(),
                "content-length" | "content-encoding" | "transfer-encoding"
            ) {
                let _ = headers.append(name, value);
            }
        }
        Ok(Response::from_bytes(answer.body)
            .map_err(|e| {
                Error::Upstream(Fault::new("the answer could not be built").detail(e.to_string()))
            })?
            .with_status(answer.status)
            .with_headers(headers))
    }
}

/// A JS object from JSON written by this worker (always valid).
fn js_object(json: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&json.to_string()).unwrap_or(JsValue::UNDEFINED)
}

/// A binding of the `Env` by name, when it is an object.
fn binding(env: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(env, &JsValue::from_str(name))
        .ok()
        .filter(|v| v.is_object())
}
