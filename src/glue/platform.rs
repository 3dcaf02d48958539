//! The platform the flows run on, for workerd ([`crate::platform::Platform`]):
//! fetches read as they stream and bounded, single flights, the Cache API shared
//! between isolates, KV and the rate-limiting bindings, the clock and the log.

use super::*;

// ---- single-flight fetches ---------------------------------------------------------

/// One in-flight fetch per kind: its promise, and where its error lands (kept as an
/// [`Error`], so every waiter answers with the same status).
pub(super) type InFlight = (js_sys::Promise, Rc<RefCell<Option<Error>>>);

/// Run `make` once at a time per isolate and `kind`: concurrent callers await the
/// same promise.
pub(super) async fn single_flight(kind: &str, make: impl FnOnce() -> Flight) -> Result<(), Error> {
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
pub(super) async fn shared_get(key: &str) -> Option<(Vec<u8>, i64, String)> {
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
pub(super) fn default_cache() -> Option<JsValue> {
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
    get(&get(&js_sys::global(), "caches")?, "default").filter(|c| c.is_object())
}

/// Call `method` on a JS object with `args` and await the promise it returns: the
/// Cache API and KV are used through two calls each, without `worker`'s wrappers and
/// the serde bridge they bring into the bundle.
pub(super) async fn call_async(
    target: &JsValue,
    method: &str,
    args: &[JsValue],
) -> Result<JsValue, String> {
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
pub(super) async fn shared_put(key: &str, body: &[u8], fetched_at: i64, ttl: i64, from: &str) {
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
pub(super) struct Workerd {
    pub(super) env: Option<JsValue>,
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
pub(super) fn outbound(
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
pub(super) async fn send_capped(
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
pub(super) enum Capped {
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
pub(super) async fn read_stream(
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
pub(super) async fn read_capped(response: &mut Response, cap: usize) -> Result<Vec<u8>, Capped> {
    read_stream(response.stream(), cap, false).await
}

/// A JS object from JSON written by this worker (always valid).
pub(super) fn js_object(json: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&json.to_string()).unwrap_or(JsValue::UNDEFINED)
}

/// A binding of the `Env` by name, when it is an object.
pub(super) fn binding(env: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(env, &JsValue::from_str(name))
        .ok()
        .filter(|v| v.is_object())
}
