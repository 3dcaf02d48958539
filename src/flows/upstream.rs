//! The authorization server, as the worker reaches it: discovery with its back-off,
//! the JWKS with its refresh and the copy shared between isolates, registration
//! posts. Generic over [`Platform`]; the decisions about what to install stay in
//! [`Authorizer`](crate::authorizer::Authorizer) and [`metadata`].
//!
//! * [`ensure_upstream`]: metadata younger than
//!   [`METADATA_TTL_SECONDS`](crate::authorizer::METADATA_TTL_SECONDS) is used as is;
//!   a recent failure is answered from memory (the back-off); otherwise one discovery
//!   at a time (`"discovery"` flight), trying the shared copy first.
//! * [`ensure_keys`]: one refresh at a time (`"keys"` flight). A new isolate (no keys
//!   yet) takes a JWKS another isolate stored, when it is younger than
//!   `JWKS_CACHE_SECONDS` and came from the same URL; isolates holding keys go to the
//!   authorization server, so a rotation is never hidden behind a shared copy. Every
//!   outcome is installed, so a failure is not retried on every request.

use crate::authorizer::METADATA_TTL_SECONDS;
use crate::error::{redact_url, Error, Fault};
use crate::metadata;
use crate::platform::{Outgoing, Platform};

/// How long the authorization server (discovery, JWKS, registration) may take.
pub const UPSTREAM_TIMEOUT_SECONDS: u32 = 10;

/// The largest answer read from the authorization server (discovery, JWKS,
/// registration): the JWKS limit, and far above any real document.
pub const MAX_UPSTREAM_BYTES: usize = crate::jwks::MAX_JWKS_BYTES;

/// A GET or POST to an upstream: JSON accepted; in the single-host layout the
/// `X-Forwarded-*` headers naming the issuer's host, so a server that builds URLs from
/// the request advertises public ones ([`crate::config::Config::forwarded_headers`]).
pub fn request<P: Platform>(
    p: &P,
    peer: &'static str,
    url: &str,
    body: Option<(Vec<u8>, &str)>,
    authorization: Option<String>,
    timeout: u32,
) -> Outgoing {
    let mut headers = vec![("accept", "application/json".to_string())];
    if let Some((_, content_type)) = &body {
        headers.push(("content-type", content_type.to_string()));
    }
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    if let Ok(Some((host, proto))) = p.with_auth(|a| a.cfg.forwarded_headers()) {
        headers.push(("x-forwarded-host", host));
        headers.push(("x-forwarded-proto", proto));
    }
    Outgoing {
        peer,
        method: if body.is_some() { "POST" } else { "GET" },
        url: url.to_string(),
        headers,
        body: body.map(|(b, _)| b),
        timeout,
        cap: MAX_UPSTREAM_BYTES,
    }
}

/// The key under which isolates share a document from the authorization server. A
/// name of the worker's own, never the upstream URL itself, so an entry can only have
/// been written by this worker.
pub fn shared_key(kind: &str, id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("https://mcp-edge-auth.cache.internal/{kind}?id={id}")
}

/// Make sure live authorization-server metadata is installed.
pub async fn ensure_upstream<P: Platform>(p: &P) -> Result<(), Error> {
    if p.with_auth(|a| a.discovery.upstream(p.now()).is_some())? {
        return Ok(());
    }
    if let Some(e) = p.with_auth(|a| a.discovery.backoff(p.now()))? {
        return Err(e);
    }
    let flow = p.clone();
    let result = p
        .single_flight("discovery", move || {
            Box::pin(async move { discover(&flow).await })
        })
        .await;
    if let Err(e) = &result {
        p.with_auth(|a| a.discovery.failed(e.clone(), p.now()))?;
    }
    result
}

/// Discovery proper: the shared copy when young enough, else each discovery URL in
/// turn ([`metadata::discovery_urls`]) until one answers with metadata for `ISSUER`.
async fn discover<P: Platform>(p: &P) -> Result<(), Error> {
    let issuer = p.with_auth(|a| a.cfg.upstream.issuer.clone())?;
    let key = shared_key("discovery", &issuer);
    if let Some((body, at, from)) = p.shared_get(&key).await {
        if p.now() - at < METADATA_TTL_SECONDS {
            if let Ok(url) = url::Url::parse(&from) {
                if let Ok(Ok(Some(up))) =
                    p.with_auth(|a| metadata::accept_upstream(&a.cfg, &url, 200, &body))
                {
                    p.with_auth(|a| a.discovery.install(up, at))?;
                    return Ok(());
                }
            }
        }
    }
    let urls = p.with_auth(|a| metadata::discovery_urls(&a.cfg))?;
    let mut tried = Vec::new();
    for url in urls {
        let peer = "the metadata document (discovered from ISSUER or AS_URL)";
        let out = request(p, peer, url.as_str(), None, None, UPSTREAM_TIMEOUT_SECONDS);
        let answer = p.fetch(out).await?;
        let (status, body) = (answer.status, answer.body);
        let accepted =
            p.with_auth(|a| metadata::accept_upstream(&a.cfg, &url, status, &body))??;
        if let Some(up) = accepted {
            let at = p.now();
            p.with_auth(|a| a.discovery.install(up, at))?;
            p.shared_put(&key, &body, at, METADATA_TTL_SECONDS, url.as_str())
                .await;
            return Ok(());
        }
        tried.push(url.to_string());
    }
    Err(Error::Upstream(
        Fault::new("no authorization server metadata found from ISSUER (or AS_URL)").detail(
            tried
                .iter()
                .map(|u| redact_url(u))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ))
}

/// Refresh the keys, one refresh at a time.
pub async fn ensure_keys<P: Platform>(p: &P) -> Result<(), Error> {
    let flow = p.clone();
    p.single_flight("keys", move || {
        Box::pin(async move { refresh_keys(&flow).await })
    })
    .await
}

/// Fetch the JWKS (discovering its URL first if need be) and install it. Every
/// outcome is recorded, so a failure, discovery's included, is not retried on every
/// request (see [`Authorizer::install_keys`](crate::authorizer::Authorizer::install_keys)).
async fn refresh_keys<P: Platform>(p: &P) -> Result<(), Error> {
    if let Some((body, at)) = shared_keys(p).await {
        if p.with_auth(|a| a.install_shared_keys(&body, at))?.is_ok() {
            return Ok(());
        }
    }
    let body = fetch_jwks(p).await;
    let at = p.now();
    p.with_auth(|a| a.install_keys(body.as_deref().map_err(Clone::clone), at))??;
    // Shared only once it installed: a set that does not parse is not handed on.
    if let (Ok(body), Ok((Some(url), ttl))) = (
        body,
        p.with_auth(|a| (a.jwks_url(), a.cfg.upstream.jwks_ttl)),
    ) {
        p.shared_put(&shared_key("jwks", &url), &body, at, ttl, &url)
            .await;
    }
    Ok(())
}

/// A new isolate's JWKS, from another isolate, when one is stored, younger than
/// `JWKS_CACHE_SECONDS` and fetched from the URL this isolate would fetch.
async fn shared_keys<P: Platform>(p: &P) -> Option<(Vec<u8>, i64)> {
    if p.with_auth(|a| a.has_keys()).ok()? {
        return None;
    }
    let url = match p.with_auth(|a| a.jwks_url()).ok()? {
        Some(u) => u,
        None => {
            ensure_upstream(p).await.ok()?;
            p.with_auth(|a| a.jwks_url()).ok()??
        }
    };
    let (body, at, from) = p.shared_get(&shared_key("jwks", &url)).await?;
    let ttl = p.with_auth(|a| a.cfg.upstream.jwks_ttl).ok()?;
    (from == url && p.now() - at < ttl).then_some((body, at))
}

/// The JWKS document. Failures other than configuration errors mean "no keys right
/// now" (503 with Retry-After), whichever upstream step failed.
async fn fetch_jwks<P: Platform>(p: &P) -> Result<Vec<u8>, Error> {
    let keys_unavailable = |e: Error| match e {
        Error::Config { .. } | Error::KeysUnavailable(_) => e,
        other => Error::KeysUnavailable(other.into_fault()),
    };
    let url = match p.with_auth(|a| a.jwks_url())? {
        Some(u) => u,
        None => {
            ensure_upstream(p).await.map_err(keys_unavailable)?;
            p.with_auth(|a| a.jwks_url())?
                .ok_or_else(|| Error::Config {
                    binding: "JWKS_URL".into(),
                    problem: "the authorization server advertises no jwks_uri; set JWKS_URL".into(),
                })?
        }
    };
    let peer = "JWKS_URL (or the discovered jwks_uri)";
    let out = request(p, peer, &url, None, None, UPSTREAM_TIMEOUT_SECONDS);
    match p.fetch(out).await.map(|a| (a.status, a.body)) {
        Ok((200, body)) => Ok(body),
        Ok((status, _)) => Err(Error::KeysUnavailable(
            Fault::new(format!("{peer} answered {status}")).detail(redact_url(&url)),
        )),
        Err(e) => Err(keys_unavailable(e)),
    }
}

/// Where registrations go: `REGISTRATION_URL`, else the discovered endpoint.
pub async fn registration_endpoint<P: Platform>(p: &P) -> Result<String, Error> {
    if let Some(u) = p.with_auth(|a| a.cfg.upstream.registration_url.clone())? {
        return Ok(u.to_string());
    }
    ensure_upstream(p).await?;
    p.with_auth(|a| {
        a.discovery
            .upstream(p.now())
            .and_then(|u| u.registration_endpoint.clone())
    })?
    .map(|u| u.to_string())
    .ok_or_else(|| {
        Error::Upstream(
            "the authorization server has no registration endpoint; set REGISTRATION_URL".into(),
        )
    })
}

/// POST a registration body (JSON) to the registration endpoint: status and answer.
pub async fn post_registration<P: Platform>(
    p: &P,
    body: Vec<u8>,
    authorization: Option<String>,
) -> Result<(u16, Vec<u8>), Error> {
    let endpoint = registration_endpoint(p).await?;
    let peer = "the registration endpoint (REGISTRATION_URL or discovered)";
    let body = Some((body, "application/json"));
    let out = request(
        p,
        peer,
        &endpoint,
        body,
        authorization,
        UPSTREAM_TIMEOUT_SECONDS,
    );
    p.fetch(out).await.map(|a| (a.status, a.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fake::{deployment, run, Fake, JWKS, METADATA};
    use crate::metadata::DISCOVERY_BACKOFF_SECONDS;

    #[test]
    fn discovery_runs_once_and_is_shared() {
        let (fake, first) = deployment();
        run(ensure_upstream(&fake)).unwrap();
        run(ensure_upstream(&fake)).unwrap();
        assert_eq!(
            fake.urls().len(),
            1,
            "fetched once, then served from memory"
        );
        assert_eq!(fake.urls()[0], first);
        assert_eq!(*fake.0.flights.borrow(), ["discovery"]);
        // In the single-host layout the request names the issuer's host.
        let sent = &fake.0.sent.borrow()[0];
        assert!(sent
            .headers
            .contains(&("x-forwarded-host", "mcp.example.com".into())));
        assert_eq!(
            (sent.method, sent.timeout),
            ("GET", UPSTREAM_TIMEOUT_SECONDS)
        );
        // Stored for the other isolates, under the worker's own key.
        let key = shared_key("discovery", "https://mcp.example.com/oidc");
        assert_eq!(fake.0.shared.borrow()[&key].2, first);
        // A new isolate takes the shared copy without asking the server ...
        let fresh = Fake::new(crate::config::tests::config());
        fresh.0.shared.replace(fake.0.shared.borrow().clone());
        run(ensure_upstream(&fresh)).unwrap();
        assert!(fresh.urls().is_empty());
        // ... unless it is older than the metadata TTL.
        let stale = Fake::new(crate::config::tests::config());
        stale.0.shared.replace(fake.0.shared.borrow().clone());
        stale.advance(METADATA_TTL_SECONDS);
        stale.answer(&first, 200, METADATA);
        run(ensure_upstream(&stale)).unwrap();
        assert_eq!(stale.urls(), [first]);
    }

    #[test]
    fn a_failed_discovery_backs_off_then_tries_every_url_again() {
        let fake = Fake::new(crate::config::tests::config());
        let urls: Vec<String> = fake
            .with_auth(|a| metadata::discovery_urls(&a.cfg))
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect();
        let e = run(ensure_upstream(&fake)).unwrap_err();
        assert_eq!(
            fake.urls(),
            urls,
            "every discovery URL tried in order (all 404)"
        );
        let public = e.reply(&Default::default()).body;
        assert!(
            public.contains("no authorization server metadata found"),
            "{public}"
        );
        assert!(
            !public.contains("127.0.0.1"),
            "no internal URL in the public body: {public}"
        );
        assert!(
            e.to_string().contains("127.0.0.1:9100"),
            "the URLs tried, for the log"
        );
        // Within the back-off: the same answer, no request.
        fake.advance(DISCOVERY_BACKOFF_SECONDS - 1);
        assert!(run(ensure_upstream(&fake)).is_err());
        assert_eq!(fake.urls().len(), urls.len());
        // After it, discovery runs again and succeeds.
        fake.advance(1);
        fake.answer(&urls[1], 200, METADATA);
        run(ensure_upstream(&fake)).unwrap();
        assert_eq!(fake.urls().len(), urls.len() + 2);
    }

    #[test]
    fn keys_are_discovered_fetched_installed_and_shared() {
        let (fake, first) = deployment();
        let jwks_url = "http://127.0.0.1:9100/oidc/jwks";
        fake.answer(jwks_url, 200, JWKS);
        run(ensure_keys(&fake)).unwrap();
        assert_eq!(
            fake.urls(),
            [first, jwks_url.to_string()],
            "discovery first, for jwks_uri"
        );
        assert_eq!(*fake.0.flights.borrow(), ["keys", "discovery"]);
        assert!(fake.with_auth(|a| a.has_usable_keys(fake.now())).unwrap());
        // A new isolate takes the stored JWKS (same URL, young enough): no fetch.
        let fresh = Fake::new(crate::config::tests::config());
        fresh.0.shared.replace(fake.0.shared.borrow().clone());
        run(ensure_keys(&fresh)).unwrap();
        assert!(fresh.urls().is_empty(), "{:?}", fresh.urls());
        assert!(fresh.with_auth(|a| a.has_usable_keys(fresh.now())).unwrap());
        // An isolate holding keys refreshes from the server itself.
        fake.advance(1);
        run(ensure_keys(&fake)).unwrap();
        assert_eq!(fake.urls().last().map(String::as_str), Some(jwks_url));
    }

    #[test]
    fn a_stored_jwks_from_another_url_or_too_old_is_not_taken() {
        let (fake, _) = deployment();
        let jwks_url = "http://127.0.0.1:9100/oidc/jwks";
        fake.answer(jwks_url, 200, JWKS);
        let key = shared_key("jwks", jwks_url);
        for (from, age) in [("https://elsewhere.example/jwks", 0), (jwks_url, 10_000)] {
            let isolate = Fake::new(crate::config::tests::config());
            isolate.answer(&fake.discovery_url(), 200, METADATA);
            isolate.answer(jwks_url, 200, JWKS);
            isolate.0.shared.borrow_mut().insert(
                key.clone(),
                (
                    JWKS.as_bytes().to_vec(),
                    isolate.now() - age,
                    from.to_string(),
                ),
            );
            run(ensure_keys(&isolate)).unwrap();
            assert!(
                isolate.urls().contains(&jwks_url.to_string()),
                "{from} {age}"
            );
        }
    }

    #[test]
    fn a_jwks_the_server_will_not_give_is_503_naming_the_binding_not_the_url() {
        let (fake, _) = deployment();
        fake.answer("http://127.0.0.1:9100/oidc/jwks", 500, "oops");
        let e = run(ensure_keys(&fake)).unwrap_err();
        assert_eq!(e.status(), 503);
        let public = e.reply(&Default::default()).body;
        assert!(
            public.contains("JWKS_URL (or the discovered jwks_uri) answered 500"),
            "{public}"
        );
        assert!(!public.contains("127.0.0.1"), "{public}");
        assert!(!fake.with_auth(|a| a.has_usable_keys(fake.now())).unwrap());
        // An unreachable server: the same kind of answer.
        fake.fail(
            "http://127.0.0.1:9100/oidc/jwks",
            Error::Upstream(Fault::new(
                "JWKS_URL (or the discovered jwks_uri) is unreachable",
            )),
        );
        fake.advance(60);
        assert_eq!(run(ensure_keys(&fake)).unwrap_err().status(), 503);
    }

    #[test]
    fn registrations_go_to_the_discovered_endpoint_or_registration_url() {
        let (fake, _) = deployment();
        fake.answer("http://127.0.0.1:9100/oidc/reg", 201, "{}");
        let (status, _) = run(post_registration(
            &fake,
            b"{}".to_vec(),
            Some("Bearer iat".into()),
        ))
        .unwrap();
        assert_eq!(status, 201);
        let sent = fake.0.sent.borrow().last().cloned().unwrap();
        assert_eq!(sent.method, "POST");
        assert!(sent
            .headers
            .contains(&("content-type", "application/json".into())));
        assert!(sent
            .headers
            .contains(&("authorization", "Bearer iat".into())));
        let cfg =
            crate::config::tests::with(&[("REGISTRATION_URL", "http://127.0.0.1:9200/register")])
                .unwrap();
        let direct = Fake::new(cfg);
        direct.answer("http://127.0.0.1:9200/register", 201, "{}");
        run(post_registration(&direct, b"{}".to_vec(), None)).unwrap();
        assert_eq!(
            direct.urls(),
            ["http://127.0.0.1:9200/register"],
            "no discovery needed"
        );
    }
}
