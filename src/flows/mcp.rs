//! An MCP request the synchronous decision could not finish: keys to fetch, a token to
//! introspect. Generic over [`Platform`]; the decisions are [`Authorizer`]'s.
//!
//! [`authorize`] asks the authorizer again after each piece of I/O, at most three
//! times: `NeedKeys` refreshes the keys ([`upstream::ensure_keys`]) and, when no usable
//! key is left, answers with the keys failure (503, or the configuration error);
//! `Introspect` asks the introspection endpoint ([`introspect`]); a signature to check
//! goes back to the JS entry ([`Next::Verify`]).
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
            Decision::Introspect => return introspect(p, info).await,
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
    let token = crate::token::bearer(info.authorization)
        .unwrap_or_default()
        .to_string();
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
