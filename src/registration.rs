//! The Dynamic Client Registration proxy (RFC 7591).
//!
//! 1. [`validate_request`]: the body is a JSON object under [`MAX_BODY`] bytes;
//!    `redirect_uris`, when present, is an array of absolute `https` URIs or loopback
//!    `http` URIs without fragments (OAuth 2.1 §2.3.1, SPEC A6). Failures are RFC 7591
//!    §3.2.2 errors (`invalid_redirect_uri`, `invalid_client_metadata`).
//! 2. The glue forwards the body unchanged to the upstream registration endpoint
//!    ([`outgoing`]), except:
//!    * with `AS_FLAVOR=hydra` ([`for_hydra`]): members Hydra refuses with a 400 are
//!      dropped, the resource is allowed as an `audience` (so Hydra grants it later)
//!      and the default scopes are asked for when the client names none;
//!    * with a `SCOPE_POLICY`, a requested `scope` is widened to every scope the
//!      resource advertises ([`widen_scope`]), because clients register with the
//!      scope of their first challenge and an authorization server that holds
//!      clients to their registered scope would refuse the step-up later.
//! 3. [`clean_answer`]: members that are `null` or `""` are dropped (Hydra answers
//!    `client_uri: ""` and `contacts: null`, which the TypeScript SDK's strict schema
//!    refuses), RFC 7591 §2 defaults are filled in where absent, and the answer is
//!    201 `application/json` with `Cache-Control: no-store` (RFC 7591 §3.2.1).
//! 4. [`upstream_error`]: a 4xx keeps its status and RFC 7591 error code; a 5xx or an
//!    unusable answer is a 502.

use crate::config::{Config, Flavor};
use crate::error::{Error, Reply};
use serde_json::{json, Map, Value};
use url::{Host, Url};

/// Largest registration request the worker reads.
pub const MAX_BODY: usize = 64 * 1024;

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub(crate) fn check_redirect_uri(raw: &str) -> Result<(), Error> {
    let url = Url::parse(raw)
        .map_err(|e| Error::InvalidRedirectUri(format!("{raw:?} is not an absolute URI: {e}")))?;
    if url.fragment().is_some() || raw.contains('#') {
        return Err(Error::InvalidRedirectUri(format!("{raw:?} has a fragment")));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(Error::InvalidRedirectUri(format!(
            "{raw:?} uses http on a non-loopback host; use https, or http://127.0.0.1 / http://localhost for native clients"
        ))),
        other => Err(Error::InvalidRedirectUri(format!("{raw:?} uses scheme {other:?}; only https or loopback http are accepted"))),
    }
}

/// Members that name pages a consent screen links to: https only.
const PAGE_URIS: &[&str] = &["client_uri", "logo_uri", "tos_uri", "policy_uri"];
/// Members the authorization server itself fetches: https on a public host only.
const FETCHED_URIS: &[&str] = &["jwks_uri", "sector_identifier_uri"];

fn check_redirect_list(map: &Map<String, Value>, name: &str) -> Result<(), Error> {
    match map.get(name) {
        None => Ok(()),
        Some(Value::Array(uris)) => {
            if uris.is_empty() {
                return Err(Error::InvalidRedirectUri(format!("{name} is empty")));
            }
            for uri in uris {
                let Some(s) = uri.as_str() else {
                    return Err(Error::InvalidRedirectUri(format!(
                        "{name} must hold strings"
                    )));
                };
                check_redirect_uri(s)?;
            }
            Ok(())
        }
        Some(_) => Err(Error::InvalidRedirectUri(format!(
            "{name} must be an array"
        ))),
    }
}

fn check_https_member(name: &str, raw: &str, public_host: bool) -> Result<(), Error> {
    let bad = |why: &str| Error::InvalidClientMetadata(format!("{name} {why}"));
    let url = Url::parse(raw).map_err(|_| bad("must be an absolute https URL"))?;
    if url.scheme() != "https" {
        return Err(bad("must use https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if public_host && crate::cimd::host_kind(&url) != crate::cimd::HostKind::Public {
        return Err(bad(
            "must name a public host (the authorization server fetches it)",
        ));
    }
    Ok(())
}

/// Validate a registration request body. Returns the parsed object: the only form
/// of the request that is forwarded ([`outgoing`] re-serialises it).
pub fn validate_request(body: &[u8]) -> Result<Map<String, Value>, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge(MAX_BODY));
    }
    // A member given twice keeps its last value, as most parsers do: that is the
    // value checked here, and the only one forwarded (re-serialised by [`outgoing`]).
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidClientMetadata(format!("request body is not JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(Error::InvalidClientMetadata(
            "request body must be a JSON object".into(),
        ));
    };
    check_redirect_list(&map, "redirect_uris")?;
    check_redirect_list(&map, "post_logout_redirect_uris")?;
    // An empty page URL is no URL: left out rather than forwarded.
    map.retain(|k, v| !(PAGE_URIS.contains(&k.as_str()) && v.as_str() == Some("")));
    for (names, public_host) in [(PAGE_URIS, false), (FETCHED_URIS, true)] {
        for name in names {
            match map.get(*name) {
                None => {}
                Some(Value::String(s)) => check_https_member(name, s, public_host)?,
                Some(_) => {
                    return Err(Error::InvalidClientMetadata(format!(
                        "{name} must be a string"
                    )))
                }
            }
        }
    }
    for name in ["grant_types", "response_types", "contacts"] {
        if let Some(v) = map.get(name) {
            if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                return Err(Error::InvalidClientMetadata(format!(
                    "{name} must be an array of strings"
                )));
            }
        }
    }
    for name in ["client_name", "scope", "token_endpoint_auth_method"] {
        if let Some(v) = map.get(name) {
            if !v.is_string() {
                return Err(Error::InvalidClientMetadata(format!(
                    "{name} must be a string"
                )));
            }
        }
    }
    Ok(map)
}

/// With a scope policy, the registration body with `scope` widened to include every
/// advertised scope; `None` when it stays as sent (no `scope`, or nothing to add).
pub fn widen_scope(
    request: &Map<String, Value>,
    advertised: &[String],
) -> Option<Map<String, Value>> {
    let requested = request.get("scope")?.as_str()?;
    let mut scopes: Vec<&str> = requested.split_whitespace().collect();
    let before = scopes.len();
    for s in advertised {
        if !scopes.contains(&s.as_str()) {
            scopes.push(s);
        }
    }
    if scopes.len() == before {
        return None;
    }
    let mut body = request.clone();
    body.insert("scope".into(), Value::String(scopes.join(" ")));
    Some(body)
}

/// Members Ory Hydra answers 400 for in a registration request (SPEC "Ory Hydra").
pub const HYDRA_REFUSED: &[&str] = &[
    "client_secret",
    "metadata",
    "skip_consent",
    "access_token_strategy",
];

/// The registration as Hydra will take it and later honour: without the members it
/// refuses, with `audience` allowing `audience` (Hydra grants a token only the
/// audiences its client may ask for), and with `scope` set to `default_scopes` when
/// the client asks for none.
pub fn for_hydra(
    request: &Map<String, Value>,
    audience: &str,
    default_scopes: &[String],
) -> Map<String, Value> {
    let mut body = request.clone();
    body.retain(|k, _| !HYDRA_REFUSED.contains(&k.as_str()));
    let mut audiences: Vec<Value> = match body.get("audience") {
        Some(Value::Array(a)) => a.iter().filter(|v| v.is_string()).cloned().collect(),
        Some(Value::String(s)) => s.split_whitespace().map(|s| json!(s)).collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == audience) {
        audiences.push(json!(audience));
    }
    body.insert("audience".into(), Value::Array(audiences));
    let no_scope = body
        .get("scope")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty());
    if no_scope && !default_scopes.is_empty() {
        body.insert("scope".into(), json!(default_scopes.join(" ")));
    }
    body
}

/// The body sent to the upstream registration endpoint: the validated request,
/// re-serialised (never the client's bytes, which could say something the
/// validation did not read), as the Hydra adapter or a scope policy changes it
/// (see the module).
pub fn outgoing(cfg: &Config, request: &Map<String, Value>) -> Vec<u8> {
    let mut changed = (cfg.upstream.flavor == Flavor::Hydra)
        .then(|| for_hydra(request, cfg.hydra_audience(), cfg.default_scopes()));
    if cfg.scopes.policy.is_some() {
        let base = changed.as_ref().unwrap_or(request);
        if let Some(wider) = widen_scope(base, &cfg.scopes.supported) {
            changed = Some(wider);
        }
    }
    serde_json::to_vec(changed.as_ref().unwrap_or(request)).unwrap_or_default()
}

/// Turn the upstream's success answer into one strict clients accept.
/// `request` is the validated request, used to restore `redirect_uris` when the
/// upstream omits them.
pub fn clean_answer(request: &Map<String, Value>, body: &[u8]) -> Result<Reply, Error> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Upstream(format!("registration answer is not JSON: {e}").into()))?;
    let Value::Object(mut map) = value else {
        return Err(Error::Upstream(
            "registration answer is not a JSON object".into(),
        ));
    };
    // RFC 7592 management is not proxied: the upstream's management URL is an
    // internal address the client cannot use, and its access token is useless
    // without it. Neither is passed on.
    map.retain(|k, v| {
        !(v.is_null()
            || v.as_str() == Some("")
            || k == "registration_client_uri"
            || k == "registration_access_token")
    });
    if !map.get("client_id").is_some_and(Value::is_string) {
        return Err(Error::Upstream(
            "registration answer has no client_id".into(),
        ));
    }
    if !map.contains_key("redirect_uris") {
        if let Some(uris) = request.get("redirect_uris") {
            map.insert("redirect_uris".into(), uris.clone());
        }
    }
    // RFC 7591 §2 defaults, made explicit.
    map.entry("grant_types")
        .or_insert_with(|| json!(["authorization_code"]));
    map.entry("response_types")
        .or_insert_with(|| json!(["code"]));
    // RFC 7591 §2 says `client_secret_basic`, but a client the upstream issued no
    // secret to cannot use it: say `none` then, which is what the upstream granted.
    let method = if map.contains_key("client_secret") {
        "client_secret_basic"
    } else {
        "none"
    };
    map.entry("token_endpoint_auth_method")
        .or_insert_with(|| json!(method));
    Ok(Reply::json(201, &Value::Object(map)).with_header("cache-control", "no-store"))
}

/// Map an upstream refusal (or failure) to the error the client sees.
pub fn upstream_error(status: u16, body: &[u8]) -> Error {
    if (400..500).contains(&status) {
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
        let code = parsed
            .as_ref()
            .and_then(|m| m.get("error"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("invalid_client_metadata")
            .to_string();
        let description = parsed
            .as_ref()
            .and_then(|m| m.get("error_description"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                Some(format!(
                    "the authorization server refused the registration ({status})"
                ))
            });
        return Error::UpstreamRejected {
            status,
            error: code,
            description,
        };
    }
    Error::Upstream(format!("registration endpoint answered {status}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYDRA: &str = include_str!("../tests/fixtures/hydra-register-response.json");

    fn req() -> Map<String, Value> {
        validate_request(
            br#"{"redirect_uris":["http://127.0.0.1:9876/callback"],"client_name":"t"}"#,
        )
        .unwrap()
    }

    #[test]
    fn accepts_https_and_loopback_redirects() {
        for uri in [
            "https://app.example/cb",
            "http://127.0.0.1:1/cb",
            "http://localhost/cb",
            "http://[::1]:8/cb",
        ] {
            let body = json!({"redirect_uris": [uri]}).to_string();
            assert!(validate_request(body.as_bytes()).is_ok(), "{uri}");
        }
    }

    #[test]
    fn refuses_bad_redirects_with_invalid_redirect_uri() {
        for uri in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "javascript:alert(1)",
            "/relative",
            "ftp://x/",
        ] {
            let body = json!({"redirect_uris": [uri]}).to_string();
            let err = validate_request(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "invalid_redirect_uri", "{uri}");
        }
        let err = validate_request(br#"{"redirect_uris":"https://x/"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_redirect_uri");
        let err = validate_request(br#"{"redirect_uris":[]}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_redirect_uri");
    }

    #[test]
    fn refuses_non_objects_and_oversized_bodies() {
        for body in [
            &b"[]"[..],
            b"nope",
            b"\"x\"",
            b"{\"grant_types\":\"code\"}",
            b"{\"client_name\":5}",
        ] {
            assert_eq!(
                validate_request(body).unwrap_err().code(),
                "invalid_client_metadata"
            );
        }
        // Too large is the size's fault, not the metadata's: 413.
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(validate_request(&big).unwrap_err().status(), 413);
    }

    #[test]
    fn hydra_answer_is_cleaned() {
        let reply = clean_answer(&req(), HYDRA.as_bytes()).unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let v: Map<String, Value> = serde_json::from_str(&reply.body).unwrap();
        for (k, val) in &v {
            assert!(!val.is_null() && val.as_str() != Some(""), "{k} survived");
        }
        assert!(!v.contains_key("client_uri"));
        assert!(!v.contains_key("contacts"));
        assert_eq!(v["client_id"], "5f0a5c5e-8a7e-4a54-9d3e-3f3a3c1b2d11");
        assert_eq!(v["token_endpoint_auth_method"], "none");
        assert_eq!(
            v["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert!(!v.contains_key("registration_access_token"));
        assert!(!v.contains_key("registration_client_uri"));
    }

    #[test]
    fn defaults_are_filled_and_redirects_restored() {
        let reply = clean_answer(&req(), br#"{"client_id":"c1","redirect_uris":null}"#).unwrap();
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            v["redirect_uris"],
            json!(["http://127.0.0.1:9876/callback"])
        );
        assert_eq!(v["grant_types"], json!(["authorization_code"]));
        assert_eq!(v["response_types"], json!(["code"]));
        assert_eq!(v["token_endpoint_auth_method"], "none");
        let reply = clean_answer(&req(), br#"{"client_id":"c1","client_secret":"s"}"#).unwrap();
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    }

    #[test]
    fn unusable_answers_are_upstream_errors() {
        for body in [&b"<html>"[..], b"[]", b"{}", b"{\"client_id\":\"\"}"] {
            assert!(matches!(
                clean_answer(&req(), body),
                Err(Error::Upstream(_))
            ));
        }
    }

    #[test]
    fn upstream_errors_keep_4xx_and_hide_5xx() {
        let e = upstream_error(
            400,
            br#"{"error":"invalid_redirect_uri","error_description":"nope"}"#,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "invalid_redirect_uri");
        let e = upstream_error(403, b"<html>forbidden</html>");
        assert_eq!((e.status(), e.code()), (403, "invalid_client_metadata"));
        let e = upstream_error(503, b"down");
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn scope_is_widened_to_the_advertised_scopes() {
        let advertised: Vec<String> = ["mcp:tools", "repo:admin"].map(String::from).to_vec();
        let req = validate_request(br#"{"scope":"mcp:tools","client_name":"c"}"#).unwrap();
        let body = Value::Object(widen_scope(&req, &advertised).unwrap());
        assert_eq!(body["scope"], "mcp:tools repo:admin");
        assert_eq!(body["client_name"], "c");
        let all = validate_request(br#"{"scope":"repo:admin mcp:tools"}"#).unwrap();
        assert_eq!(widen_scope(&all, &advertised), None);
        let none = validate_request(br#"{"client_name":"c"}"#).unwrap();
        assert_eq!(widen_scope(&none, &advertised), None);
    }

    fn cfg(extra: &[(&'static str, &'static str)]) -> Config {
        let mut v = crate::config::tests::base();
        v.extend_from_slice(extra);
        Config::build(crate::config::tests::vars(&v)).unwrap()
    }

    #[test]
    fn hydra_registrations_drop_what_hydra_refuses_and_allow_the_audience() {
        let request = validate_request(
            br#"{"redirect_uris":["http://127.0.0.1:1/cb"],"client_secret":"x","metadata":{},"skip_consent":true,"access_token_strategy":"jwt","audience":["https://other"],"client_name":"n"}"#,
        )
        .unwrap();
        let out = for_hydra(
            &request,
            "https://mcp.example.com/mcp",
            &["mcp:tools".into()],
        );
        for k in HYDRA_REFUSED {
            assert!(!out.contains_key(*k), "{k} kept");
        }
        assert_eq!(
            out["audience"],
            json!(["https://other", "https://mcp.example.com/mcp"])
        );
        assert_eq!(out["scope"], "mcp:tools");
        assert_eq!(out["client_name"], "n");
        // A scope the client asked for is kept; the audience is not added twice.
        let again = for_hydra(
            &{
                let mut m = out.clone();
                m.insert("scope".into(), json!("a b"));
                m
            },
            "https://mcp.example.com/mcp",
            &["mcp:tools".into()],
        );
        assert_eq!(again["scope"], "a b");
        assert_eq!(
            again["audience"],
            json!(["https://other", "https://mcp.example.com/mcp"])
        );
    }

    #[test]
    fn duplicate_members_and_url_members() {
        // A member given twice: the copy checked is the copy forwarded.
        let dup = br#"{"redirect_uris":["https://a.example/cb"],"redirect_uris":["javascript:alert(1)"]}"#;
        assert_eq!(
            validate_request(dup).unwrap_err().code(),
            "invalid_redirect_uri"
        );
        let dup = br#"{"redirect_uris":["javascript:alert(1)"],"redirect_uris":["https://a.example/cb"]}"#;
        let map = validate_request(dup).unwrap();
        let sent: Value = serde_json::from_slice(&outgoing(&cfg(&[]), &map)).unwrap();
        assert_eq!(sent["redirect_uris"], json!(["https://a.example/cb"]));
        for (body, code) in [
            (
                json!({"post_logout_redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"post_logout_redirect_uris": ["http://app.example/bye"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"client_uri": "javascript:alert(1)"}),
                "invalid_client_metadata",
            ),
            (
                json!({"logo_uri": "http://app.example/logo.png"}),
                "invalid_client_metadata",
            ),
            (
                json!({"tos_uri": "data:text/html,x"}),
                "invalid_client_metadata",
            ),
            (
                json!({"policy_uri": "https://user:pw@app.example/p"}),
                "invalid_client_metadata",
            ),
            (json!({"policy_uri": 7}), "invalid_client_metadata"),
            (
                json!({"jwks_uri": "https://169.254.169.254/keys"}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks_uri": "https://localhost/keys"}),
                "invalid_client_metadata",
            ),
            (
                json!({"jwks_uri": "http://app.example/keys"}),
                "invalid_client_metadata",
            ),
            (
                json!({"sector_identifier_uri": "https://[fd00::1]/s.json"}),
                "invalid_client_metadata",
            ),
            (
                json!({"sector_identifier_uri": "https://metadata.internal/s"}),
                "invalid_client_metadata",
            ),
        ] {
            let e = validate_request(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.code(), code, "{body}");
        }
        let ok = json!({"client_uri": "https://app.example", "logo_uri": "https://app.example/l.png",
            "tos_uri": "https://app.example/tos", "policy_uri": "", "jwks_uri": "https://app.example/jwks",
            "post_logout_redirect_uris": ["http://127.0.0.1:5/bye"]});
        let map = validate_request(ok.to_string().as_bytes()).unwrap();
        assert!(
            !map.contains_key("policy_uri"),
            "an empty page URL is left out"
        );
    }

    #[test]
    fn outgoing_bodies_change_only_for_hydra_or_a_policy() {
        let body = br#"{"scope":"mcp:tools", "redirect_uris":["http://127.0.0.1:1/cb"]}"#.to_vec();
        let request = validate_request(&body).unwrap();
        // Generic flavour, no policy: the validated request, re-serialised.
        let plain: Value = serde_json::from_slice(&outgoing(&cfg(&[]), &request)).unwrap();
        assert_eq!(plain, serde_json::from_slice::<Value>(&body).unwrap());
        let hydra: Value =
            serde_json::from_slice(&outgoing(&cfg(&[("AS_FLAVOR", "hydra")]), &request)).unwrap();
        assert_eq!(hydra["audience"], json!(["https://mcp.example.com/mcp"]));
        assert_eq!(hydra["scope"], "mcp:tools");
        // Both: Hydra's changes, then the policy's wider scope.
        let both = cfg(&[
            ("AS_FLAVOR", "hydra"),
            (
                "SCOPE_POLICY",
                r#"{"default":"mcp:tools","methods":{"tools/call":{"names":{"admin_*":"mcp:admin"}}}}"#,
            ),
        ]);
        let out: Value = serde_json::from_slice(&outgoing(&both, &request)).unwrap();
        assert_eq!(out["scope"], "mcp:tools mcp:admin");
        assert_eq!(out["audience"], json!(["https://mcp.example.com/mcp"]));
    }
}
