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

mod platform;
mod relay;

use platform::*;
use relay::*;

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
/// origin timeout and the registration path (for the registration rate limit), the
/// identity assertion's key, and whether DPoP is on (then it passes the `DPoP` header).
#[wasm_bindgen(js_name = edge_strip_headers)]
pub fn strip_headers() -> String {
    let dpop = with_auth(|a| a.cfg.dpop.is_some()).unwrap_or(false);
    let (policy, timeout, register, identity, assertion) = with_auth(|a| {
        (
            a.cfg.scopes.policy.is_some(),
            a.cfg.limits.origin_timeout,
            a.cfg.resource.registration_path.clone(),
            a.cfg.origin.strip_identity.clone(),
            a.cfg.assertion.as_ref().map(|s| {
                let (import, sign) = s.key.webcrypto();
                // The private key goes to the entry's WebCrypto, inside the isolate.
                serde_json::json!({"header": s.header, "bearer": s.header == "authorization", "import": import, "sign": sign, "jwk": s.key.private_jwk()})
            }),
        )
    })
    .unwrap_or((false, 100, String::new(), Vec::new(), None));
    let strip: Vec<&str> = proxy::STRIP_REQUEST
        .iter()
        .copied()
        .chain(identity.iter().map(String::as_str))
        .collect();
    serde_json::json!({"strip": strip, "prefix": proxy::IDENTITY_PREFIX, "policy": policy, "originTimeoutMs": u64::from(timeout) * 1000, "register": register, "filterMax": crate::sse::MAX_EVENT, "assertion": assertion.unwrap_or_default(), "dpop": dpop})
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
    dpop: Option<String>,
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
            dpop: self.dpop.as_deref(),
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
        dpop: Option<String>,
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
            dpop,
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
    let ahead = with_auth(|a| {
        a.ahead(info, &pending, now())
            .map(|d| d.to_wire(a.log_level()))
    })
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
    dpop: i32,
    resuming: bool,
    body_state: u8,
    body: i32,
    mcp: i32,
) -> String {
    let lengths = [method, url, authorization, origin, dpop, body, mcp];
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
    dpop: i32,
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
    let lengths = [method, url, authorization, origin, dpop, body, mcp];
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
    lengths: [i32; 7],
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
        let [method, url, authorization, origin, dpop, body, mcp] =
            strings.map(|s| s.ok().flatten());
        let Some((path, query)) = crate::router::split_request_url(url.unwrap_or_default()) else {
            return r#"{"x":1}"#.to_string();
        };
        decide(&RequestInfo {
            method: method.unwrap_or_default(),
            path,
            query,
            authorization,
            origin,
            dpop,
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
    dpop: Option<String>,
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
        dpop,
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
/// ("body-on-get", 400), the origin's list answer is larger than the worker can
/// filter ("answer-too-large", 502), WebCrypto refused the assertion key
/// ("assertion", 500 naming `ASSERTION_KEY`), or a DPoP proof's signature does not
/// verify ("dpop", 401 `invalid_dpop_proof`).
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
        "assertion" => Error::Config {
            binding: "ASSERTION_KEY".into(),
            problem: "the runtime's WebCrypto could not import or use the key to sign".into(),
        },
        "dpop" => Error::InvalidDpopProof(
            "the DPoP proof's signature does not verify with its jwk".into(),
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
        Error::OriginTimeout(with_auth(|a| a.cfg.limits.origin_timeout).unwrap_or_default())
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
            .scopes
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
        with_auth(|a| match &a.cfg.scopes.policy {
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
