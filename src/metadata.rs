//! Metadata documents.
//!
//! * Protected Resource Metadata (RFC 9728 §2), built from configuration.
//! * Authorization-server metadata (RFC 8414), discovered upstream in the order of
//!   SPEC A1 ([`discovery_urls`]), checked ([`accept_upstream`]: status, JSON object,
//!   `issuer` equal to `ISSUER` per RFC 8414 §3.3) and patched ([`patch`]): the
//!   registration endpoint points at the worker's cleaning proxy and `S256` is listed.
//!   With `AS_FLAVOR=hydra`, a document without `registration_endpoint` (Hydra's
//!   default) still gets the worker's, proxying to Hydra's `/oauth2/register`; and
//!   Hydra before v25.4, which serves only `openid-configuration`, is found by the
//!   discovery order's second URL.
//!   `issuer` is never rewritten.

use crate::config::{Config, Flavor};
use crate::error::{redact_url, Error, Fault};
use serde_json::{json, Map, Value};
use url::Url;

/// RFC 9728 §2 document for the configured resource.
pub fn protected_resource(cfg: &Config) -> Value {
    let mut doc = json!({
        "resource": cfg.resource.id,
        "authorization_servers": [cfg.upstream.issuer],
        "bearer_methods_supported": ["header"],
    });
    if !cfg.scopes.supported.is_empty() {
        doc["scopes_supported"] = json!(cfg.scopes.supported);
    }
    if let Some(name) = &cfg.resource.name {
        doc["resource_name"] = json!(name);
    }
    if let Some(docs) = &cfg.resource.documentation {
        doc["resource_documentation"] = json!(docs);
    }
    // RFC 9728 §2: the proof algorithms taken, and whether bound tokens are a must.
    if let Some(d) = &cfg.dpop {
        doc["dpop_signing_alg_values_supported"] = json!(d.alg_names());
        if d.mode == crate::dpop::Mode::Required {
            doc["dpop_bound_access_tokens_required"] = json!(true);
        }
    }
    doc
}

/// Where to look for the authorization server's metadata, in order (RFC 8414 §3.1 and
/// OIDC discovery; SPEC A1), already mapped onto `AS_URL`.
pub fn discovery_urls(cfg: &Config) -> Vec<Url> {
    let path = cfg.upstream.issuer_url.path().trim_end_matches('/');
    let mut base = cfg.upstream.issuer_url.clone();
    base.set_query(None);
    let at = |p: String| {
        let mut u = base.clone();
        u.set_path(&p);
        cfg.rebase_upstream(&u)
    };
    if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".into()),
            at("/.well-known/openid-configuration".into()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// The parts of the upstream metadata the worker itself uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The document as served upstream.
    pub document: Map<String, Value>,
    /// Where the worker fetches keys (mapped onto `AS_URL`).
    pub jwks_uri: Option<Url>,
    /// Where the worker forwards registrations (mapped onto `AS_URL`).
    pub registration_endpoint: Option<Url>,
    /// Where the worker exchanges tokens (`TOKEN_EXCHANGE`; mapped onto `AS_URL`).
    /// Read only when exchange is on: a malformed one then fails discovery.
    pub token_endpoint: Option<Url>,
}

/// Check one discovery answer. `Ok(None)` means "not here, try the next URL" (404 and
/// similar); errors are answers that must not be used.
pub fn accept_upstream(
    cfg: &Config,
    url: &Url,
    status: u16,
    body: &[u8],
) -> Result<Option<Upstream>, Error> {
    if matches!(status, 404 | 405 | 410) {
        return Ok(None);
    }
    if !(200..300).contains(&status) {
        return Err(Error::Upstream(
            Fault::new(format!(
                "the metadata document (discovered from ISSUER or AS_URL) answered {status}"
            ))
            .detail(redact_url(url.as_str())),
        ));
    }
    let doc: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        Error::Upstream(
            Fault::new(
                "the metadata document (discovered from ISSUER or AS_URL) is not a JSON object",
            )
            .detail(format!("{}: {e}", redact_url(url.as_str()))),
        )
    })?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(iss) if iss == cfg.upstream.issuer => {}
        Some(iss) => {
            return Err(Error::Config {
                binding: "ISSUER".into(),
                problem: format!(
                    "the authorization server's metadata names issuer {iss:?}, but ISSUER is {:?}; they must be equal byte for byte (RFC 8414 §3.3)",
                    cfg.upstream.issuer
                ),
            })
        }
        None => {
            return Err(Error::Upstream(
                Fault::new("the metadata document (discovered from ISSUER or AS_URL) has no issuer")
                    .detail(redact_url(url.as_str())),
            ))
        }
    }
    let endpoint = |name: &str| -> Result<Option<Url>, Error> {
        match doc.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Url::parse(s)
                .map(|u| Some(cfg.rebase_upstream(&u)))
                .map_err(|e| Error::Upstream(format!("metadata {name} is not a URL: {e}").into())),
            Some(_) => Err(Error::Upstream(
                format!("metadata {name} is not a string").into(),
            )),
        }
    };
    let jwks_uri = match &cfg.upstream.jwks_url {
        Some(u) => Some(u.clone()),
        None => endpoint("jwks_uri")?,
    };
    let registration_endpoint = match &cfg.upstream.registration_url {
        Some(u) => Some(u.clone()),
        None => endpoint("registration_endpoint")?.or_else(|| hydra_registration(cfg)),
    };
    let token_endpoint = match cfg.exchange {
        Some(_) => endpoint("token_endpoint")?,
        None => None,
    };
    Ok(Some(Upstream {
        document: doc,
        jwks_uri,
        registration_endpoint,
        token_endpoint,
    }))
}

/// Hydra advertises its registration endpoint only when configured to
/// (`webfinger.oidc_discovery.client_registration_url`), but serves it at
/// `<issuer>/oauth2/register` whenever dynamic registration is enabled.
fn hydra_registration(cfg: &Config) -> Option<Url> {
    if cfg.upstream.flavor != Flavor::Hydra {
        return None;
    }
    let mut u = cfg.upstream.issuer_url.clone();
    let path = format!("{}/oauth2/register", u.path().trim_end_matches('/'));
    u.set_path(&path);
    Some(cfg.rebase_upstream(&u))
}

/// The document the worker serves: the upstream's, with the registration endpoint
/// pointing at the worker's proxy (when there is an upstream to proxy to) and `S256`
/// among the PKCE methods (A3). `issuer` and every other member are kept.
pub fn patch(cfg: &Config, upstream: &Upstream) -> Value {
    let mut doc = upstream.document.clone();
    if upstream.registration_endpoint.is_some() {
        doc.insert(
            "registration_endpoint".into(),
            json!(cfg.registration_endpoint()),
        );
    }
    let mut methods: Vec<Value> = match doc.get("code_challenge_methods_supported") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if !methods.iter().any(|m| m == "S256") {
        methods.push(json!("S256"));
    }
    doc.insert(
        "code_challenge_methods_supported".into(),
        Value::Array(methods),
    );
    if cimd_ready(cfg, upstream) {
        doc.insert("client_id_metadata_document_supported".into(), json!(true));
        let mut auth: Vec<Value> = match doc.get("token_endpoint_auth_methods_supported") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        if !auth.is_empty() && !auth.iter().any(|m| m == "none") {
            auth.push(json!("none"));
            doc.insert(
                "token_endpoint_auth_methods_supported".into(),
                Value::Array(auth),
            );
        }
    }
    Value::Object(doc)
}

/// Whether the worker can honour Client ID Metadata Documents for this upstream:
/// `CIMD=true`, a registration endpoint, and authorization and token endpoints
/// that pass through the worker (served on the resource's host under an
/// `AS_PASSTHROUGH` prefix). Otherwise the worker's support is not advertised (an
/// upstream's own `client_id_metadata_document_supported` is kept as it is).
pub fn cimd_ready(cfg: &Config, upstream: &Upstream) -> bool {
    let through_worker = |name: &str| {
        upstream
            .document
            .get(name)
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| {
                crate::config::origin_of(&u) == crate::config::origin_of(&cfg.resource.url)
                    && crate::router::route(cfg, u.path()) == crate::router::Route::Passthrough
            })
    };
    cfg.cimd.is_some()
        && (upstream.registration_endpoint.is_some() || cfg.upstream.registration_url.is_some())
        && through_worker("authorization_endpoint")
        && through_worker("token_endpoint")
}

/// How long discovered authorization-server metadata is used.
pub const METADATA_TTL_SECONDS: i64 = 300;
/// After a failed discovery, answer with its error for this long before trying again.
pub const DISCOVERY_BACKOFF_SECONDS: i64 = 5;

/// Discovery's state in an isolate: the metadata and when it was fetched, and the
/// last failure, repeated for [`DISCOVERY_BACKOFF_SECONDS`] instead of asking the
/// authorization server again on every request.
#[derive(Debug, Default)]
pub struct Discovery {
    upstream: Option<(Upstream, i64)>,
    failure: Option<(Error, i64)>,
}

impl Discovery {
    /// The metadata, while younger than [`METADATA_TTL_SECONDS`].
    pub fn upstream(&self, now: i64) -> Option<&Upstream> {
        self.upstream
            .as_ref()
            .filter(|(_, at)| now - at < METADATA_TTL_SECONDS)
            .map(|(u, _)| u)
    }

    /// The metadata however old (the `jwks_uri` stays usable past the TTL).
    pub fn any(&self) -> Option<&Upstream> {
        self.upstream.as_ref().map(|(u, _)| u)
    }

    pub fn install(&mut self, upstream: Upstream, now: i64) {
        self.upstream = Some((upstream, now));
        self.failure = None;
    }

    /// Record a failed discovery (see [`Discovery::backoff`]).
    pub fn failed(&mut self, error: Error, now: i64) {
        self.failure = Some((error, now));
    }

    /// The last failure, while it is recent enough to answer with it instead of
    /// fetching again.
    pub fn backoff(&self, now: i64) -> Option<Error> {
        self.failure
            .as_ref()
            .filter(|(_, at)| now - at < DISCOVERY_BACKOFF_SECONDS)
            .map(|(e, _)| e.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{base, config, vars};

    fn upstream_doc() -> Value {
        json!({
            "issuer": "https://mcp.example.com/oidc",
            "authorization_endpoint": "https://mcp.example.com/oidc/auth",
            "token_endpoint": "https://mcp.example.com/oidc/token",
            "jwks_uri": "https://mcp.example.com/oidc/jwks",
            "registration_endpoint": "https://mcp.example.com/oidc/reg",
            "code_challenge_methods_supported": ["plain"],
            "response_types_supported": ["code"],
        })
    }

    #[test]
    fn prm_document() {
        let doc = protected_resource(&config());
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://mcp.example.com/oidc"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
        assert!(doc.get("resource_name").is_none());
    }

    #[test]
    fn discovery_order_for_an_issuer_with_a_path() {
        let urls: Vec<String> = discovery_urls(&config())
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9100/.well-known/oauth-authorization-server/oidc",
                "http://127.0.0.1:9100/.well-known/openid-configuration/oidc",
                "http://127.0.0.1:9100/oidc/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn discovery_order_for_an_issuer_without_a_path() {
        let mut v = base();
        v.retain(|(k, _)| *k != "ISSUER" && *k != "AS_URL");
        v.push(("ISSUER", "https://auth.example.com/"));
        let c = Config::build(vars(&v)).unwrap();
        let urls: Vec<String> = discovery_urls(&c).iter().map(|u| u.to_string()).collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn cimd_is_advertised_only_when_the_worker_can_honour_it() {
        let url = Url::parse("http://127.0.0.1:9100/x").unwrap();
        let served = |c: &Config, doc: Value| {
            let up = accept_upstream(c, &url, 200, doc.to_string().as_bytes())
                .unwrap()
                .unwrap();
            patch(c, &up)
        };
        let mut v = base();
        v.push(("CIMD", "true"));
        let on = Config::build(vars(&v)).unwrap();
        let mut doc = upstream_doc();
        doc["token_endpoint_auth_methods_supported"] = json!(["client_secret_basic"]);
        let d = served(&on, doc.clone());
        assert_eq!(d["client_id_metadata_document_supported"], true);
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "none"])
        );
        // Off: the upstream's own flag (here none) is kept as it is.
        assert!(served(&config(), doc.clone())
            .get("client_id_metadata_document_supported")
            .is_none());
        // Endpoints that do not pass through the worker, or no registration endpoint.
        let mut elsewhere = doc.clone();
        elsewhere["authorization_endpoint"] = json!("https://auth.example.com/oidc/auth");
        assert!(served(&on, elsewhere)
            .get("client_id_metadata_document_supported")
            .is_none());
        let mut other_path = doc.clone();
        other_path["token_endpoint"] = json!("https://mcp.example.com/token");
        assert!(served(&on, other_path)
            .get("client_id_metadata_document_supported")
            .is_none());
        let mut no_reg = doc;
        no_reg
            .as_object_mut()
            .unwrap()
            .remove("registration_endpoint");
        assert!(served(&on, no_reg)
            .get("client_id_metadata_document_supported")
            .is_none());
    }

    #[test]
    fn accepted_upstream_is_rebased_and_patched() {
        let c = config();
        let url = Url::parse("http://127.0.0.1:9100/x").unwrap();
        let body = upstream_doc().to_string();
        let up = accept_upstream(&c, &url, 200, body.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            up.jwks_uri.unwrap().as_str(),
            "http://127.0.0.1:9100/oidc/jwks"
        );
        assert_eq!(
            up.registration_endpoint.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9100/oidc/reg"
        );
        let served = patch(
            &c,
            &accept_upstream(&c, &url, 200, body.as_bytes())
                .unwrap()
                .unwrap(),
        );
        assert_eq!(served["issuer"], "https://mcp.example.com/oidc");
        assert_eq!(
            served["registration_endpoint"],
            "https://mcp.example.com/register"
        );
        assert_eq!(
            served["code_challenge_methods_supported"],
            json!(["plain", "S256"])
        );
        assert_eq!(
            served["token_endpoint"],
            "https://mcp.example.com/oidc/token"
        );
    }

    #[test]
    fn no_registration_upstream_means_none_advertised() {
        let c = config();
        let mut doc = upstream_doc();
        doc.as_object_mut().unwrap().remove("registration_endpoint");
        let url = Url::parse("http://x/").unwrap();
        let up = accept_upstream(&c, &url, 200, doc.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert!(patch(&c, &up).get("registration_endpoint").is_none());
    }

    #[test]
    fn hydra_without_a_registration_endpoint_gets_the_workers() {
        // Hydra's default: issuer with a trailing slash, on the worker's host, no
        // registration_endpoint in its openid-configuration.
        let mut v = base();
        v.retain(|(k, _)| !matches!(*k, "ISSUER" | "AS_PASSTHROUGH"));
        v.extend([
            ("ISSUER", "https://mcp.example.com/"),
            ("AS_PASSTHROUGH", "/oauth2/"),
            ("AS_FLAVOR", "hydra"),
        ]);
        let c = Config::build(vars(&v)).unwrap();
        let doc = json!({
            "issuer": "https://mcp.example.com/",
            "authorization_endpoint": "https://mcp.example.com/oauth2/auth",
            "jwks_uri": "https://mcp.example.com/.well-known/jwks.json",
        });
        let url = Url::parse("http://127.0.0.1:9100/.well-known/openid-configuration").unwrap();
        let up = accept_upstream(&c, &url, 200, doc.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(
            up.registration_endpoint.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9100/oauth2/register"
        );
        let served = patch(&c, &up);
        assert_eq!(
            served["registration_endpoint"],
            "https://mcp.example.com/register"
        );
        assert_eq!(served["code_challenge_methods_supported"], json!(["S256"]));
    }

    #[test]
    fn mismatched_issuer_is_a_configuration_error() {
        let c = config();
        let mut doc = upstream_doc();
        doc["issuer"] = json!("https://mcp.example.com/oidc/");
        let url = Url::parse("http://x/").unwrap();
        match accept_upstream(&c, &url, 200, doc.to_string().as_bytes()) {
            Err(Error::Config { binding, problem }) => {
                assert_eq!(binding, "ISSUER");
                assert!(problem.contains("byte for byte"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_answers() {
        let c = config();
        let url = Url::parse("http://x/").unwrap();
        assert_eq!(accept_upstream(&c, &url, 404, b"").unwrap(), None);
        assert!(matches!(
            accept_upstream(&c, &url, 500, b""),
            Err(Error::Upstream(_))
        ));
        assert!(matches!(
            accept_upstream(&c, &url, 200, b"<html>"),
            Err(Error::Upstream(_))
        ));
        assert!(matches!(
            accept_upstream(&c, &url, 200, b"[1]"),
            Err(Error::Upstream(_))
        ));
        assert!(matches!(
            accept_upstream(&c, &url, 200, b"{}"),
            Err(Error::Upstream(_))
        ));
    }

    #[test]
    fn a_failed_discovery_is_repeated_for_the_backoff_then_retried() {
        let cfg = crate::config::tests::config();
        let mut d = Discovery::default();
        assert_eq!(d.backoff(100), None);
        d.failed(Error::Upstream("down".into()), 100);
        assert_eq!(
            d.backoff(100 + DISCOVERY_BACKOFF_SECONDS - 1),
            Some(Error::Upstream("down".into()))
        );
        assert_eq!(d.backoff(100 + DISCOVERY_BACKOFF_SECONDS), None);
        d.failed(Error::Upstream("down".into()), 200);
        let doc = br#"{"issuer":"https://mcp.example.com/oidc"}"#;
        let url = url::Url::parse("http://127.0.0.1:9100/x").unwrap();
        let up = accept_upstream(&cfg, &url, 200, doc).unwrap().unwrap();
        d.install(up, 201);
        assert_eq!(d.backoff(201), None, "a success clears it");
        assert!(d.upstream(201 + METADATA_TTL_SECONDS - 1).is_some());
        assert!(d.upstream(201 + METADATA_TTL_SECONDS).is_none(), "expired");
        assert!(d.any().is_some(), "still known, for its jwks_uri");
    }
}
