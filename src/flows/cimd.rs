//! Client ID Metadata Documents at the pass-through (`CIMD=true`; the rules are in
//! [`crate::cimd`]): an authorization request whose `client_id` is a document URL is
//! checked against the document and sent on with the document's upstream client; a
//! token or revocation form naming the URL is sent with the recorded upstream clients
//! in turn while the server answers `invalid_grant`. Generic over [`Platform`] (KV,
//! the per-address limit, fetches) and [`Relay`] (the client's request).

use crate::cimd;
use crate::config::{Cimd, LogLevel};
use crate::error::{Error, Fault};
use crate::flows::upstream;
use crate::platform::{Outgoing, Platform, Relay};
use crate::proxy;

/// The largest form body (and token answer) the worker reads on its way to the
/// authorization server.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Log a CIMD event (warnings: refusals and failures; info: registrations).
fn log<P: Platform>(p: &P, event: &str, client_id: &str, detail: &str, warning: bool) {
    let level = p.with_auth(|a| a.log_level()).unwrap_or(LogLevel::Warn);
    if level == LogLevel::Info || (level == LogLevel::Warn && warning) {
        p.log(
            &serde_json::json!({"event": event, "client_id": client_id, "detail": detail})
                .to_string(),
        );
    }
}

/// An authorization request whose `client_id` is a document URL: fetch and check the
/// document, find or register its upstream client, and forward the request with the
/// upstream `client_id`.
pub async fn authorize<P: Platform, R: Relay>(
    p: &P,
    relay: &R,
    target: &str,
    ar: cimd::AuthorizationRequest,
    c: &Cimd,
) -> Result<R::Response, Error> {
    let refuse = |error: &'static str, detail: String| {
        log(p, "cimd_refused", &ar.client_id, &detail, true);
        cimd::refuse(error, detail)
    };
    let url = cimd::check_client_id(&ar.client_id, c.allow_loopback).map_err(|e| {
        refuse(
            "invalid_client",
            format!("client_id {:?} {e}", ar.client_id),
        )
    })?;
    // Fetching a document (and maybe registering a client) counts against the
    // registration limit of the client's address, like a registration.
    let cached = p.with_auth(|a| a.cimd.document(url.as_str(), p.now()).is_some())?;
    let address = relay.header("cf-connecting-ip");
    let key = format!("addr:{}", address.as_deref().unwrap_or("unknown"));
    if !cached && p.over_limit("REGISTRATION_RATE_LIMITER", &key).await {
        log(
            p,
            "cimd_refused",
            &ar.client_id,
            "rate limited (per address)",
            true,
        );
        return Err(Error::RateLimited("address"));
    }
    let doc = document(p, &url, c).await.map_err(|e| {
        refuse(
            "invalid_client",
            format!("the client metadata document at {url} {e}"),
        )
    })?;
    let redirect = cimd::check_redirect(&doc, ar.redirect_uri.as_deref())
        .map_err(|e| refuse("invalid_request", e))?;
    let issuer = p.with_auth(|a| a.cfg.upstream.issuer.clone())?;
    if let Some(problem) = &doc.problem {
        let detail = format!("the client metadata document {problem}");
        log(p, "cimd_refused", &ar.client_id, &detail, true);
        return Err(cimd::to_client(
            &ar,
            &redirect,
            &issuer,
            "unauthorized_client",
            detail,
        ));
    }
    let upstream_id = upstream_client(p, &doc).await.map_err(|e| {
        log(p, "cimd_failed", &ar.client_id, &e.to_string(), true);
        cimd::to_client(
            &ar,
            &redirect,
            &issuer,
            "server_error",
            "the authorization server could not register this client; try again later",
        )
    })?;
    let (base, query) = target.split_once('?').unwrap_or((target, ""));
    let target = format!("{base}?{}", cimd::replace_client_id(query, &upstream_id));
    relay.forward(&target, None).await
}

/// The document at `url`: from this isolate's memory while its cache lifetime lasts,
/// else fetched (no redirects, `CIMD_TIMEOUT_SECONDS`, [`cimd::MAX_DOCUMENT_BYTES`]).
/// Errors are told to the client in its words.
async fn document<P: Platform>(p: &P, url: &url::Url, c: &Cimd) -> Result<cimd::Document, String> {
    if let Ok(Some(d)) = p.with_auth(|a| a.cimd.document(url.as_str(), p.now()).cloned()) {
        return Ok(d);
    }
    let out = Outgoing {
        peer: "the document",
        method: "GET",
        url: url.to_string(),
        headers: vec![("accept", "application/json".into())],
        body: None,
        timeout: c.timeout,
        cap: cimd::MAX_DOCUMENT_BYTES,
    };
    let answer = match p.fetch(out).await {
        Ok(answer) => answer,
        // The client's own URL: its failure is told to the client in its words.
        Err(Error::Upstream(f)) => {
            return Err(f
                .public
                .strip_prefix("the document ")
                .unwrap_or(&f.public)
                .to_string())
        }
        Err(e) => return Err(e.to_string()),
    };
    let doc = cimd::parse_document(
        url.as_str(),
        answer.status,
        answer.header("content-type"),
        &answer.body,
    )?;
    let seconds = cimd::cache_seconds(answer.header("cache-control"), c.cache_max);
    let now = p.now();
    let _ = p.with_auth(|a| a.cimd.keep_document(doc.clone(), seconds, now));
    Ok(doc)
}

/// Every record of the document's upstream clients: KV's list and this isolate's
/// own writes. A key whose metadata is not a record (not written by this worker) is
/// skipped.
async fn records<P: Platform>(p: &P, url: &str) -> Result<Vec<(String, cimd::Record)>, Error> {
    let listed = p.kv_list(&cimd::kv_prefix(url), 100).await?;
    let parsed = listed
        .into_iter()
        .filter_map(|(name, metadata)| Some((name, serde_json::from_value(metadata?).ok()?)))
        .collect();
    p.with_auth(|a| a.cimd.merge(url, parsed))
}

/// The upstream client for a document: recorded, or registered now (once at a time
/// per document in this isolate).
async fn upstream_client<P: Platform>(p: &P, doc: &cimd::Document) -> Result<String, Error> {
    let fp = cimd::fingerprint(doc);
    if let Some(r) = cimd::for_authorization(&records(p, &doc.client_id).await?, &fp) {
        return Ok(r.client_id.clone());
    }
    let (flow, d, f) = (p.clone(), doc.clone(), fp.clone());
    p.single_flight(&format!("cimd:{}", doc.client_id), move || {
        Box::pin(async move { register_document(&flow, d, f).await })
    })
    .await?;
    cimd::for_authorization(&records(p, &doc.client_id).await?, &fp)
        .map(|r| r.client_id.clone())
        .ok_or_else(|| {
            Error::Upstream("the client was registered but its record is missing".into())
        })
}

/// Register the document's client upstream and record it in KV, unless a record
/// with the document's fingerprint appeared meanwhile.
async fn register_document<P: Platform>(
    p: &P,
    doc: cimd::Document,
    fp: String,
) -> Result<(), Error> {
    if cimd::for_authorization(&records(p, &doc.client_id).await?, &fp).is_some() {
        return Ok(());
    }
    let body = p.with_auth(|a| cimd::registration_body(&a.cfg, &doc))?;
    let (status, answer) = upstream::post_registration(p, body, None).await?;
    let id = cimd::read_registration(status, &answer)?;
    let created_ms = p.now_ms();
    let key = cimd::kv_key(&doc.client_id, created_ms, &id);
    let record = cimd::Record {
        client_id: id.clone(),
        fingerprint: fp,
        created_ms,
    };
    let value = serde_json::json!({
        "client_id_metadata_document": doc.client_id,
        "client_id": id,
        "redirect_uris": doc.redirect_uris,
        "grant_types": doc.grant_types,
        "registered_at_ms": created_ms,
    });
    let metadata = serde_json::to_value(&record).unwrap_or_default();
    p.kv_put(&key, &value.to_string(), &metadata).await?;
    p.with_auth(|a| a.cimd.wrote(&doc.client_id, key, record))?;
    log(p, "cimd_registered", &doc.client_id, &id, false);
    Ok(())
}

/// A form POST (token, revocation) naming a document URL as `client_id`: sent with
/// the recorded upstream clients in turn while the upstream answers `invalid_grant`.
pub async fn form<P: Platform, R: Relay>(
    p: &P,
    relay: &R,
    target: &str,
    form: &str,
    url: &str,
) -> Result<R::Response, Error> {
    let unavailable = |e: Error| {
        log(p, "cimd_failed", url, &e.to_string(), true);
        Error::OAuth {
            error: "temporarily_unavailable",
            description: "client records cannot be read right now; retry later".into(),
            status: 503,
            location: None,
        }
    };
    let recs = records(p, url).await.map_err(unavailable)?;
    let tries = cimd::for_token(&recs);
    if tries.is_empty() {
        log(p, "cimd_refused", url, "no client registered", true);
        return Err(cimd::unknown_client(url));
    }
    for (i, r) in tries.iter().enumerate() {
        let body = cimd::replace_client_id(form, &r.client_id);
        let body = p
            .with_auth(|a| proxy::token_defaults(&a.cfg, &body))?
            .unwrap_or(body);
        let response = relay.forward(target, Some(body)).await?;
        let mut answer = relay.read(response, MAX_FORM_BYTES).await?;
        if i + 1 < tries.len() && cimd::is_invalid_grant(answer.status, &answer.body) {
            log(p, "cimd_retry", url, &r.client_id, false);
            continue;
        }
        if let Some(mapped) = cimd::map_answer(&answer.body, &r.client_id, url) {
            answer.body = mapped;
        }
        return relay.build(answer);
    }
    Err(cimd::unknown_client(url))
}

/// The token-endpoint answer's failure as the glue reports it.
pub fn read_failure(too_large: bool, message: &str) -> Error {
    Error::Upstream(if too_large {
        Fault::new(format!(
            "AS_PASSTHROUGH: the token endpoint answered more than {MAX_FORM_BYTES} bytes"
        ))
    } else {
        Fault::new("AS_PASSTHROUGH: the token endpoint broke off its answer")
            .detail(crate::error::redact_urls(message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::fake::{run, Fake, METADATA};
    use crate::platform::Answer;
    use std::cell::RefCell;

    const DOC_URL: &str = "https://client.example/oauth/client.json";
    const REG: &str = "http://127.0.0.1:9100/oidc/reg";

    /// The client's request: records what the flow forwards and answers from a script
    /// (by the upstream `client_id` in the form, when there is one).
    #[derive(Default)]
    struct FakeRelay {
        method: &'static str,
        forwarded: RefCell<Vec<(String, Option<String>)>>,
        /// `(client_id, status, body)` answers for forms.
        answers: Vec<(&'static str, u16, &'static str)>,
    }

    impl Relay for FakeRelay {
        type Response = Answer;

        fn method(&self) -> String {
            self.method.into()
        }

        fn header(&self, name: &str) -> Option<String> {
            (name == "cf-connecting-ip").then(|| "203.0.113.9".into())
        }

        async fn body(&self, _cap: usize) -> Result<Vec<u8>, Error> {
            Ok(Vec::new())
        }

        async fn forward(&self, target: &str, form: Option<String>) -> Result<Answer, Error> {
            self.forwarded
                .borrow_mut()
                .push((target.to_string(), form.clone()));
            let id = form
                .as_deref()
                .and_then(|f| cimd::form_value(f, "client_id"));
            let (status, body) = self
                .answers
                .iter()
                .find(|(c, _, _)| Some(*c) == id.as_deref())
                .map(|(_, s, b)| (*s, *b))
                .unwrap_or((302, ""));
            Ok(Answer {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.as_bytes().to_vec(),
            })
        }

        async fn read(&self, response: Answer, _cap: usize) -> Result<Answer, Error> {
            Ok(response)
        }

        fn build(&self, answer: Answer) -> Result<Answer, Error> {
            Ok(answer)
        }
    }

    fn deployment() -> Fake {
        let cfg = crate::config::tests::with(&[("CIMD", "true")]).unwrap();
        let fake = Fake::new(cfg);
        fake.answer(&fake.discovery_url(), 200, METADATA);
        let doc = serde_json::json!({
            "client_id": DOC_URL, "client_name": "Example",
            "redirect_uris": ["https://client.example/cb"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        });
        fake.answer_with(
            DOC_URL,
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "max-age=600"),
            ],
            &doc.to_string(),
        );
        fake.answer(REG, 201, r#"{"client_id":"upstream-1"}"#);
        fake
    }

    fn authorization(fake: &Fake, relay: &FakeRelay) -> Result<Answer, Error> {
        let q = format!(
            "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fclient.example%2Fcb&state=s",
            url::form_urlencoded::byte_serialize(DOC_URL.as_bytes()).collect::<String>()
        );
        let ar = cimd::authorization_request(&q).expect("an authorization request");
        let c = fake.with_auth(|a| a.cfg.cimd.clone()).unwrap().unwrap();
        run(authorize(
            fake,
            relay,
            &format!("http://127.0.0.1:9100/oidc/auth?{q}"),
            ar,
            &c,
        ))
    }

    #[test]
    fn a_document_client_is_registered_once_and_its_requests_carry_the_upstream_id() {
        let fake = deployment();
        let relay = FakeRelay::default();
        authorization(&fake, &relay).unwrap();
        let (target, _) = relay.forwarded.borrow()[0].clone();
        assert!(target.contains("client_id=upstream-1"), "{target}");
        assert!(!target.contains("client.example%2Foauth"), "{target}");
        assert_eq!(fake.urls().iter().filter(|u| *u == REG).count(), 1);
        assert_eq!(fake.0.kv.borrow().len(), 1, "recorded in KV");
        assert!(fake.0.flights.borrow().contains(&format!("cimd:{DOC_URL}")));
        // Again: the document from memory, the client from the record.
        let sent = fake.urls().len();
        authorization(&fake, &relay).unwrap();
        assert_eq!(fake.urls().len(), sent, "no fetch, no registration");
        assert!(relay.forwarded.borrow()[1]
            .0
            .contains("client_id=upstream-1"));
    }

    #[test]
    fn a_new_document_over_the_address_limit_is_refused() {
        let fake = deployment();
        fake.0.limited.borrow_mut().push("addr:203.0.113.9".into());
        let e = authorization(&fake, &FakeRelay::default()).unwrap_err();
        assert!(matches!(e, Error::RateLimited("address")), "{e:?}");
        assert!(fake.urls().is_empty(), "nothing fetched");
    }

    #[test]
    fn token_requests_try_each_recorded_client_while_the_server_says_invalid_grant() {
        let fake = deployment();
        // Two upstream clients for the document, registered a second apart.
        for (id, at) in [("old-client", 1_000), ("new-client", 2_000)] {
            let key = cimd::kv_key(DOC_URL, at, id);
            let record = cimd::Record {
                client_id: id.into(),
                fingerprint: format!("fp-{id}"),
                created_ms: at,
            };
            let metadata = serde_json::to_value(record).unwrap();
            fake.0.kv.borrow_mut().insert(key, ("{}".into(), metadata));
        }
        let relay = FakeRelay {
            method: "POST",
            answers: vec![
                ("new-client", 400, r#"{"error":"invalid_grant"}"#),
                (
                    "old-client",
                    200,
                    r#"{"access_token":"t","client_id":"old-client"}"#,
                ),
            ],
            ..Default::default()
        };
        let form = format!(
            "grant_type=authorization_code&code=c&client_id={}",
            url::form_urlencoded::byte_serialize(DOC_URL.as_bytes()).collect::<String>()
        );
        let answer = run(super::form(
            &fake,
            &relay,
            "http://127.0.0.1:9100/oidc/token",
            &form,
            DOC_URL,
        ))
        .unwrap();
        let tried: Vec<String> = relay
            .forwarded
            .borrow()
            .iter()
            .map(|(_, f)| cimd::form_value(f.as_deref().unwrap(), "client_id").unwrap())
            .collect();
        assert_eq!(
            tried,
            ["new-client", "old-client"],
            "newest first, then the next on invalid_grant"
        );
        assert_eq!(answer.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(
            body["client_id"], DOC_URL,
            "the answer names the document, not the upstream client"
        );
        // The last client's invalid_grant is the client's answer.
        let relay = FakeRelay {
            method: "POST",
            answers: vec![
                ("new-client", 400, r#"{"error":"invalid_grant"}"#),
                ("old-client", 400, r#"{"error":"invalid_grant"}"#),
            ],
            ..Default::default()
        };
        let answer = run(super::form(
            &fake,
            &relay,
            "http://127.0.0.1:9100/oidc/token",
            &form,
            DOC_URL,
        ))
        .unwrap();
        assert_eq!(answer.status, 400);
        // No record at all: the client is unknown.
        let empty = Fake::new(crate::config::tests::with(&[("CIMD", "true")]).unwrap());
        assert!(run(super::form(&empty, &relay, "http://t", &form, DOC_URL)).is_err());
    }
}
