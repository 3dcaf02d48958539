//! An MCP request the synchronous decision could not finish: keys to fetch, a token to
//! introspect. Generic over [`Platform`]; the decisions are [`Authorizer`]'s.
//!
//! [`authorize`] asks the authorizer again after each piece of I/O, at most three
//! times: `NeedKeys` refreshes the keys ([`upstream::ensure_keys`]) and, when no usable
//! key is left, answers with the keys failure (503, or the configuration error);
//! `Introspect` asks the introspection endpoint ([`introspect`]); `Exchange` trades the
//! token for one to the origin ([`exchange`]); a signature to check goes back to the
//! JS entry ([`Next::Verify`]).
//!
//! [`Authorizer`]: crate::authorizer::Authorizer

use crate::authorizer::{Decision, Pending, RequestInfo};
use crate::config::Credentials;
use crate::error::Error;
use crate::flows::upstream;
use crate::platform::Platform;
use crate::router::Route;

/// What the glue does next. Returned once per request, never stored: its size costs
/// nothing a box would not.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Next {
    /// Answer with this decision.
    Decided(Decision),
    /// Hand this signature check to the JS entry (WebCrypto).
    Verify(Box<Pending>),
    /// The worker is misconfigured (or not initialised): the configuration failure.
    Failed(Error),
}

/// Decide `info`, doing the I/O the decision names.
pub async fn authorize<P: Platform>(p: &P, info: &RequestInfo<'_>) -> Next {
    for _ in 0..3 {
        let decision = match p.with_auth(|a| a.check(info, p.now())) {
            Ok(d) => d,
            Err(e) => return Next::Failed(e),
        };
        match decision {
            Decision::NeedKeys => {
                if let Err(e) = upstream::ensure_keys(p).await {
                    p.log(
                        &serde_json::json!({"event": "jwks", "error": e.to_string()}).to_string(),
                    );
                    let usable = p.with_auth(|a| a.has_usable_keys(p.now())).unwrap_or(false);
                    if matches!(e, Error::Config { .. }) || !usable {
                        return match p.with_auth(|a| {
                            let e = a.keys_failure(e, p.now());
                            a.refuse(Route::Mcp, info, &e)
                        }) {
                            Ok(d) => Next::Decided(d),
                            Err(e) => Next::Failed(e),
                        };
                    }
                }
            }
            Decision::Verify(pending) => return Next::Verify(pending),
            Decision::Introspect => match introspect(p, info).await {
                Next::Decided(Decision::Exchange { exp }) => {
                    if let Err(e) = exchange(p, info, exp).await {
                        return refuse(p, info, e);
                    }
                }
                other => return other,
            },
            Decision::Exchange { exp } => {
                if let Err(e) = exchange(p, info, exp).await {
                    return refuse(p, info, e);
                }
            }
            other => return Next::Decided(other),
        }
    }
    let e = Error::KeysUnavailable("no usable key after refreshing".into());
    match p.with_auth(|a| a.refuse(Route::Mcp, info, &e)) {
        Ok(d) => Next::Decided(d),
        Err(e) => Next::Failed(e),
    }
}

/// Ask the introspection endpoint about the request's token, and decide with its
/// answer. One call per token at a time in an isolate: concurrent first requests
/// with the same token share the answer (the flight is keyed by the token's hash,
/// never the token). The token is sent only to the endpoint, in a form body.
pub async fn introspect<P: Platform>(p: &P, info: &RequestInfo<'_>) -> Next {
    let token = crate::token::presented(info.authorization).to_string();
    let key = format!(
        "introspect:{}",
        crate::cache::hex(&crate::cache::hash(&token))
    );
    let (flow, k) = (p.clone(), key.clone());
    let flight = p
        .single_flight(&key, move || {
            Box::pin(async move {
                let answer = answer(&flow, &token).await?;
                flow.with_auth(|a| {
                    let outcome = a.install_introspection(&token, answer, flow.now());
                    a.introspection_outcomes.insert(k, outcome);
                })
            })
        })
        .await;
    if let Err(e) = flight {
        return Next::Failed(e);
    }
    let result = p
        .with_auth(|a| a.introspection_outcomes.get(&key))
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            Err(Error::IntrospectionUnavailable(
                "the shared introspection answer was dropped".into(),
            ))
        });
    match p.with_auth(|a| a.finish_introspection(info, result, p.now())) {
        Ok(d) => Next::Decided(d),
        Err(e) => Next::Failed(e),
    }
}

fn refuse<P: Platform>(p: &P, info: &RequestInfo<'_>, e: Error) -> Next {
    match p.with_auth(|a| a.refuse(Route::Mcp, info, &e)) {
        Ok(d) => Next::Decided(d),
        Err(e) => Next::Failed(e),
    }
}

/// Exchange the request's token (expiring at `subject_exp`) for one issued to the
/// origin, and remember the outcome ([`crate::exchange`]). One exchange per token at a
/// time in an isolate: concurrent requests with the same token share it (the flight
/// is keyed by the token's hash, never the token). The token goes only to the token
/// endpoint, in a form body, with the worker's credentials.
pub async fn exchange<P: Platform>(
    p: &P,
    info: &RequestInfo<'_>,
    subject_exp: i64,
) -> Result<(), Error> {
    let token = crate::token::presented(info.authorization).to_string();
    let hash = crate::cache::hash(&token);
    let key = format!("exchange:{}", crate::cache::hex(&hash));
    let flow = p.clone();
    let result = p
        .single_flight(&key, move || {
            Box::pin(async move {
                let outcome = match exchanged(&flow, &token, subject_exp).await {
                    Err(e @ Error::Config { .. }) => return Err(e),
                    other => other,
                };
                flow.with_auth(|a| a.exchanges.record(hash, &outcome, flow.now()))?;
                outcome.map(|_| ())
            })
        })
        .await;
    if let Err(e) = &result {
        if e.status() >= 500 {
            p.log(&serde_json::json!({"event": "exchange", "error": e.to_string()}).to_string());
        }
    }
    result
}

/// One exchange at the token endpoint: `TOKEN_EXCHANGE_URL`, else the discovered
/// `token_endpoint`.
async fn exchanged<P: Platform>(
    p: &P,
    token: &str,
    subject_exp: i64,
) -> Result<crate::exchange::Exchanged, Error> {
    let Some(settings) = p.with_auth(|a| a.cfg.exchange.clone())? else {
        return Err(Error::Upstream("TOKEN_EXCHANGE is not on".into()));
    };
    let url = match &settings.url {
        Some(u) => u.to_string(),
        None => {
            upstream::ensure_upstream(p).await?;
            p.with_auth(|a| {
                a.discovery
                    .upstream(p.now())
                    .and_then(|u| u.token_endpoint.clone())
            })?
            .ok_or_else(|| {
                Error::Upstream(
                    "the authorization server advertises no token_endpoint; set TOKEN_EXCHANGE_URL"
                        .into(),
                )
            })?
            .to_string()
        }
    };
    let body = crate::exchange::request_body(token, &settings).into_bytes();
    let out = upstream::request(
        p,
        "TOKEN_EXCHANGE_URL",
        &url,
        Some((body, "application/x-www-form-urlencoded")),
        Some(settings.credentials.clone()),
        settings.timeout,
    );
    match p.fetch(out).await {
        Ok(a) => crate::exchange::read_answer(a.status, &a.body, subject_exp, p.now()),
        Err(e) => Err(Error::ExchangeUnavailable(e.into_fault())),
    }
}

/// The introspection endpoint's answer about `token` (or why there is none); `Err`
/// only for a configuration error.
async fn answer<P: Platform>(p: &P, token: &str) -> Result<Result<(u16, Vec<u8>), Error>, Error> {
    let Some(intro) = p.with_auth(|a| a.cfg.introspection.clone())? else {
        return Ok(Err(Error::IntrospectionUnavailable(
            "INTROSPECTION_URL is not set".into(),
        )));
    };
    let auth = match intro.credentials {
        Credentials::Header(h) => Some(h),
        Credentials::None => None,
    };
    let body = crate::introspection::request_body(token).into_bytes();
    let body = Some((body, "application/x-www-form-urlencoded"));
    let out = upstream::request(
        p,
        "INTROSPECTION_URL",
        intro.url.as_str(),
        body,
        auth,
        intro.timeout_seconds,
    );
    Ok(p.fetch(out).await.map(|a| (a.status, a.body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fake::{deployment, run, Concurrently, Fake, JWKS};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const JWKS_URL: &str = "http://127.0.0.1:9100/oidc/jwks";

    fn post(authorization: &str) -> RequestInfo<'_> {
        RequestInfo {
            method: "POST",
            path: "/mcp",
            authorization: Some(authorization),
            ..Default::default()
        }
    }

    /// A well-formed JWT for the deployment (its signature is the JS entry's to check).
    fn jwt(now: i64) -> String {
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#);
        let claims = serde_json::json!({
            "iss": "https://mcp.example.com/oidc", "aud": "https://mcp.example.com/mcp",
            "sub": "alice", "scope": "mcp:tools", "exp": now + 600, "iat": now,
        });
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("Bearer {h}.{p}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]))
    }

    fn status(next: &Next) -> u16 {
        match next {
            Next::Decided(Decision::Reply { reply, .. }) => reply.status,
            Next::Decided(Decision::Forward { .. }) => 200,
            other => panic!("not decided: {other:?}"),
        }
    }

    #[test]
    fn a_first_token_fetches_keys_once_then_goes_to_the_js_entry() {
        let (fake, _) = deployment();
        fake.answer(JWKS_URL, 200, JWKS);
        let auth = jwt(fake.now());
        assert!(matches!(
            run(authorize(&fake, &post(&auth))),
            Next::Verify(_)
        ));
        assert_eq!(*fake.0.flights.borrow(), ["keys", "discovery"]);
        // Keys held: the next first-seen token needs no I/O at all.
        let sent = fake.urls().len();
        assert!(matches!(
            run(authorize(&fake, &post(&auth))),
            Next::Verify(_)
        ));
        assert_eq!(fake.urls().len(), sent);
    }

    #[test]
    fn concurrent_first_requests_share_one_discovery_and_one_jwks_fetch() {
        let (fake, first) = deployment();
        fake.answer(JWKS_URL, 200, JWKS);
        fake.hold(JWKS_URL);
        let tokens: Vec<String> = (0..3).map(|_| jwt(fake.now())).collect();
        let requests: Vec<RequestInfo> = tokens.iter().map(|t| post(t)).collect();
        let mut flows = Concurrently::new();
        for r in &requests {
            flows.add(authorize(&fake, r));
        }
        assert_eq!(flows.step(), 3, "all three wait for the one JWKS fetch");
        assert_eq!(
            fake.urls(),
            [first.as_str()],
            "the JWKS fetch is not sent yet"
        );
        fake.release(JWKS_URL);
        for next in flows.finish() {
            assert!(matches!(next, Next::Verify(_)), "{next:?}");
        }
        assert_eq!(fake.urls(), [first.as_str(), JWKS_URL]);
        let joined = fake
            .0
            .flights
            .borrow()
            .iter()
            .filter(|k| *k == "keys")
            .count();
        assert_eq!(joined, 3, "each request asked for the keys flight");
    }

    #[test]
    fn a_failed_flight_is_every_waiters_answer() {
        let (fake, _) = deployment();
        fake.answer(JWKS_URL, 500, "down");
        fake.hold(JWKS_URL);
        let (a, b) = (jwt(fake.now()), jwt(fake.now() + 1));
        let (ra, rb) = (post(&a), post(&b));
        let mut flows = Concurrently::new();
        flows.add(authorize(&fake, &ra));
        flows.add(authorize(&fake, &rb));
        assert_eq!(flows.step(), 2);
        fake.release(JWKS_URL);
        let outcomes = flows.finish();
        assert_eq!(outcomes.iter().map(status).collect::<Vec<_>>(), [503, 503]);
        let fetches = fake.urls().iter().filter(|u| *u == JWKS_URL).count();
        assert_eq!(fetches, 1);
    }

    #[test]
    fn no_keys_at_all_is_503_and_logged() {
        let (fake, _) = deployment();
        fake.answer(JWKS_URL, 500, "down");
        let next = run(authorize(&fake, &post(&jwt(fake.now()))));
        assert_eq!(status(&next), 503);
        assert!(fake.0.logged.borrow()[0].contains(r#""event":"jwks""#));
        // Within the back-off the answer comes from memory.
        let sent = fake.urls().len();
        assert_eq!(status(&run(authorize(&fake, &post(&jwt(fake.now()))))), 503);
        assert_eq!(fake.urls().len(), sent, "no fetch per request");
    }

    fn introspecting() -> Fake {
        let cfg = crate::config::tests::with(&[
            ("INTROSPECTION_URL", "http://127.0.0.1:9300/introspect"),
            ("INTROSPECTION_BEARER_TOKEN", "api-key"),
        ])
        .unwrap();
        Fake::new(cfg)
    }

    const ACTIVE: &str = r#"{"active":true,"sub":"bob","client_id":"app","scope":"mcp:tools","aud":"https://mcp.example.com/mcp","exp":99999999999}"#;

    #[test]
    fn an_opaque_token_is_introspected_once_then_decided_from_the_cache() {
        let fake = introspecting();
        fake.answer("http://127.0.0.1:9300/introspect", 200, ACTIVE);
        let auth = "Bearer opaque-token-1";
        assert_eq!(status(&run(authorize(&fake, &post(auth)))), 200);
        let sent = fake.0.sent.borrow()[0].clone();
        assert_eq!(sent.method, "POST");
        assert!(sent
            .headers
            .contains(&("authorization", "Bearer api-key".into())));
        assert_eq!(
            sent.body.as_deref(),
            Some(&b"token=opaque-token-1&token_type_hint=access_token"[..])
        );
        // The flight is keyed by the token's hash, never the token.
        let flights = fake.0.flights.borrow().clone();
        assert!(flights[0].starts_with("introspect:") && !flights[0].contains("opaque"));
        assert_eq!(status(&run(authorize(&fake, &post(auth)))), 200);
        assert_eq!(fake.urls().len(), 1, "the answer is cached");
        // Another token is asked about on its own.
        assert_eq!(
            status(&run(authorize(&fake, &post("Bearer opaque-token-2")))),
            200
        );
        assert_eq!(fake.urls().len(), 2);
    }

    #[test]
    fn concurrent_requests_with_one_opaque_token_share_one_introspection_call() {
        const URL: &str = "http://127.0.0.1:9300/introspect";
        let fake = introspecting();
        fake.answer(URL, 200, ACTIVE);
        fake.hold(URL);
        let same = post("Bearer opaque-token-1");
        let other = post("Bearer opaque-token-2");
        let mut flows = Concurrently::new();
        flows.add(authorize(&fake, &same));
        flows.add(authorize(&fake, &same));
        flows.add(authorize(&fake, &other));
        assert_eq!(flows.step(), 3);
        fake.release(URL);
        let outcomes = flows.finish();
        assert_eq!(outcomes.iter().map(status).collect::<Vec<_>>(), [200; 3]);
        let bodies: Vec<String> = fake
            .0
            .sent
            .borrow()
            .iter()
            .map(|o| String::from_utf8_lossy(o.body.as_deref().unwrap()).into_owned())
            .collect();
        assert_eq!(
            bodies.len(),
            2,
            "one call per token, not per request: {bodies:?}"
        );
        assert!(bodies[0].contains("opaque-token-1") && bodies[1].contains("opaque-token-2"));
    }

    const TOKEN_URL: &str = "http://127.0.0.1:9100/oidc/token";

    fn exchanging(extra: &[(&'static str, &'static str)]) -> Fake {
        let mut v = vec![
            ("TOKEN_EXCHANGE", "true"),
            ("TOKEN_EXCHANGE_CLIENT_ID", "mcp-edge"),
            ("TOKEN_EXCHANGE_CLIENT_SECRET", "worker-secret"),
            ("TOKEN_EXCHANGE_AUDIENCE", "orders-api"),
        ];
        v.extend_from_slice(extra);
        let fake = Fake::new(crate::config::tests::with(&v).unwrap());
        let first = fake.discovery_url();
        fake.answer(&first, 200, crate::flows::fake::METADATA);
        fake.answer(JWKS_URL, 200, JWKS);
        fake
    }

    /// The `Authorization` a forward decision sends the origin.
    fn origin_authorization(next: &Next) -> Option<String> {
        match next {
            Next::Decided(Decision::Forward { headers, .. }) => headers
                .iter()
                .find(|(n, _)| *n == "authorization")
                .map(|(_, v)| v.clone()),
            other => panic!("not a forward: {other:?}"),
        }
    }

    /// A JWT's request through the entry's sequence: authorize, the signature checked
    /// (good), complete, and authorize again when it asks for I/O.
    fn through_the_entry(fake: &Fake, info: &RequestInfo<'_>) -> Next {
        let Next::Verify(pending) = run(authorize(fake, info)) else {
            panic!("a first-seen JWT goes to the entry");
        };
        let ahead = fake
            .with_auth(|a| a.ahead(info, &pending, fake.now()))
            .unwrap();
        assert!(ahead.is_none(), "no forward is decided before the exchange");
        match fake
            .with_auth(|a| a.complete(info, &pending, true, fake.now()))
            .unwrap()
        {
            Decision::Exchange { .. } => run(authorize(fake, info)),
            other => Next::Decided(other),
        }
    }

    #[test]
    fn the_token_is_exchanged_once_and_the_origin_gets_the_issued_one() {
        let fake = exchanging(&[]);
        fake.answer(
            TOKEN_URL,
            200,
            r#"{"access_token":"issued-for-orders","token_type":"Bearer","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#,
        );
        let auth = jwt(fake.now());
        let info = post(&auth);
        let next = through_the_entry(&fake, &info);
        assert_eq!(
            origin_authorization(&next).as_deref(),
            Some("Bearer issued-for-orders")
        );
        let sent = fake.0.sent.borrow().last().cloned().unwrap();
        assert_eq!(
            sent.url, TOKEN_URL,
            "the discovered token endpoint, on AS_URL"
        );
        assert!(sent
            .headers
            .iter()
            .any(|(n, v)| *n == "authorization" && v.starts_with("Basic ")));
        let form = String::from_utf8(sent.body.unwrap()).unwrap();
        let subject = auth.strip_prefix("Bearer ").unwrap();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        assert!(pairs.contains(&("subject_token".into(), subject.into())));
        assert!(pairs.contains(&("audience".into(), "orders-api".into())));
        // Reused: decided synchronously, no I/O.
        let sent = fake.urls().len();
        let again = fake.with_auth(|a| a.check(&info, fake.now())).unwrap();
        assert_eq!(
            origin_authorization(&Next::Decided(again)).as_deref(),
            Some("Bearer issued-for-orders")
        );
        assert_eq!(fake.urls().len(), sent);
        // Past the issued token's life (less the margin), exchanged again.
        fake.advance(300 - crate::exchange::MARGIN_SECONDS);
        let d = fake.with_auth(|a| a.check(&info, fake.now())).unwrap();
        assert!(matches!(d, Decision::Exchange { .. }), "{d:?}");
    }

    #[test]
    fn concurrent_requests_with_one_token_share_one_exchange() {
        let fake = exchanging(&[]);
        fake.answer(
            TOKEN_URL,
            200,
            r#"{"access_token":"shared","token_type":"Bearer"}"#,
        );
        let auth = jwt(fake.now());
        let info = post(&auth);
        let Next::Verify(pending) = run(authorize(&fake, &info)) else {
            panic!()
        };
        fake.with_auth(|a| a.complete(&info, &pending, true, fake.now()))
            .unwrap();
        fake.hold(TOKEN_URL);
        let mut flows = Concurrently::new();
        for _ in 0..3 {
            flows.add(authorize(&fake, &info));
        }
        assert_eq!(flows.step(), 3);
        fake.release(TOKEN_URL);
        for next in flows.finish() {
            assert_eq!(
                origin_authorization(&next).as_deref(),
                Some("Bearer shared")
            );
        }
        let exchanges = fake.urls().iter().filter(|u| *u == TOKEN_URL).count();
        assert_eq!(exchanges, 1);
    }

    #[test]
    fn a_refused_exchange_is_the_answer_and_an_outage_is_503_retried() {
        let fake = exchanging(&[("TOKEN_EXCHANGE_URL", "http://127.0.0.1:9200/token")]);
        const URL: &str = "http://127.0.0.1:9200/token";
        fake.answer(
            URL,
            400,
            r#"{"error":"invalid_grant","error_description":"revoked"}"#,
        );
        let auth = jwt(fake.now());
        let info = post(&auth);
        assert_eq!(status(&through_the_entry(&fake, &info)), 401);
        assert_eq!(
            fake.urls().last().map(String::as_str),
            Some(URL),
            "TOKEN_EXCHANGE_URL"
        );
        // The refusal is remembered briefly: no second call.
        let calls = fake.urls().len();
        let d = fake.with_auth(|a| a.check(&info, fake.now())).unwrap();
        assert_eq!(status(&Next::Decided(d)), 401);
        assert_eq!(fake.urls().len(), calls);
        // invalid_target: 403 with that code; an outage: 503, logged, and not kept.
        let other = jwt(fake.now() + 1);
        let info = post(&other);
        fake.answer(URL, 400, r#"{"error":"invalid_target"}"#);
        let Next::Decided(Decision::Reply { reply, .. }) = through_the_entry(&fake, &info) else {
            panic!()
        };
        assert_eq!(reply.status, 403);
        assert!(reply.body.contains("invalid_target"));
        let third = jwt(fake.now() + 2);
        let info = post(&third);
        fake.answer(URL, 503, "");
        let Next::Decided(Decision::Reply { reply, .. }) = through_the_entry(&fake, &info) else {
            panic!()
        };
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("retry-after"), Some("5"));
        assert!(fake
            .0
            .logged
            .borrow()
            .iter()
            .any(|l| l.contains(r#""event":"exchange""#)));
        fake.answer(
            URL,
            200,
            r#"{"access_token":"later","token_type":"Bearer"}"#,
        );
        let next = run(authorize(&fake, &info));
        assert_eq!(origin_authorization(&next).as_deref(), Some("Bearer later"));
        // No token, no logged token.
        for line in fake.0.logged.borrow().iter() {
            assert!(!line.contains(third.strip_prefix("Bearer ").unwrap()));
        }
    }

    #[test]
    fn an_opaque_token_is_introspected_then_exchanged() {
        let fake = exchanging(&[
            ("INTROSPECTION_URL", "http://127.0.0.1:9300/introspect"),
            ("INTROSPECTION_BEARER_TOKEN", "api-key"),
        ]);
        fake.answer("http://127.0.0.1:9300/introspect", 200, ACTIVE);
        fake.answer(
            TOKEN_URL,
            200,
            r#"{"access_token":"from-opaque","token_type":"Bearer"}"#,
        );
        let next = run(authorize(&fake, &post("Bearer opaque-token-9")));
        assert_eq!(
            origin_authorization(&next).as_deref(),
            Some("Bearer from-opaque")
        );
    }

    #[test]
    fn an_inactive_token_is_401_and_an_unreachable_endpoint_503() {
        let fake = introspecting();
        fake.answer(
            "http://127.0.0.1:9300/introspect",
            200,
            r#"{"active":false}"#,
        );
        assert_eq!(status(&run(authorize(&fake, &post("Bearer revoked")))), 401);
        fake.fail(
            "http://127.0.0.1:9300/introspect",
            Error::Upstream(crate::error::Fault::new("INTROSPECTION_URL is unreachable")),
        );
        assert_eq!(status(&run(authorize(&fake, &post("Bearer other")))), 503);
    }
}
