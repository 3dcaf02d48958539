//! What reaches the origin, and what comes back.
//!
//! * The target is `ORIGIN_URL` (its path, if any, as a prefix) plus the request's
//!   path and query.
//! * Removed from the client's request: `Authorization` (no token passthrough, MCP
//!   security R5), every `X-Auth-*` header (so a client cannot claim an identity),
//!   and hop-by-hop headers (RFC 9110 §7.6.1).
//! * Added: the caller's identity, [`SUBJECT`], [`CLIENT_ID`], [`SCOPES`].
//! * `Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID` and every other
//!   end-to-end header pass both ways unchanged; bodies stream, never buffered.
//!
//! Authorization requests passing through to the authorization server (the
//! single-host layout) get what known clients forget ([`authorization_defaults`]).

use crate::config::{Config, Flavor};
use crate::token::Principal;
use std::borrow::Cow;

pub const SUBJECT: &str = "x-auth-subject";
pub const CLIENT_ID: &str = "x-auth-client-id";
pub const SCOPES: &str = "x-auth-scopes";
/// Client headers starting with this are dropped before the identity is added.
pub const IDENTITY_PREFIX: &str = "x-auth-";

/// Request headers the worker never forwards (lower case).
pub const STRIP_REQUEST: &[&str] = &[
    "authorization",
    // A DPoP proof is for the worker's URL and goes with the client's token, which the
    // origin never gets.
    "dpop",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Stripped from requests to the origin, but a client's own business with the
/// authorization server: kept on the pass-through (client authentication, and the
/// DPoP proof a token request binds its token with).
pub const AUTHORIZATION_SERVER_CREDENTIALS: &[&str] = &["authorization", "dpop"];

/// Headers that say how a request reached the worker: on the way to the
/// authorization server the worker states them itself, from the configuration.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
];

/// The header names a request's `Connection` field lists (RFC 9110 §7.6.1: an
/// intermediary removes them), lower case.
pub fn connection_named(connection: Option<&str>) -> Vec<String> {
    connection
        .map(|c| {
            c.split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Does a client's request header (`name` in lower case, as the runtime gives it)
/// stay behind on the way to the origin? Hop-by-hop headers, those the request's
/// `Connection` names, `Authorization`, identity headers (`X-Auth-*` and
/// `strip_identity`) in every spelling a CGI/WSGI-style server folds onto them
/// (`X_Auth_Subject` reads as `X-Auth-Subject` there). The JS entry applies the same
/// rule on the hot path (src/entry.mjs `forward`) with the lists it gets from
/// `edge_strip_headers`.
pub fn strip_request_header(
    name: &str,
    connection_named: &[String],
    strip_identity: &[String],
) -> bool {
    // `name` read as `want`, an `_` in it standing for a `-`.
    fn folds_to(name: &[u8], want: &[u8]) -> bool {
        name.len() == want.len()
            && name
                .iter()
                .zip(want)
                .all(|(&n, &w)| n == w || (n == b'_' && w == b'-'))
    }
    let n = name.as_bytes();
    STRIP_REQUEST.iter().any(|h| folds_to(n, h.as_bytes()))
        || n.get(..IDENTITY_PREFIX.len())
            .is_some_and(|p| folds_to(p, IDENTITY_PREFIX.as_bytes()))
        || strip_identity.iter().any(|h| folds_to(n, h.as_bytes()))
        || connection_named.iter().any(|h| folds_to(n, h.as_bytes()))
}

/// Response headers the MCP endpoint exposes to browsers (CORS).
pub const EXPOSE_HEADERS: &str =
    "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version, DPoP-Nonce";
pub const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name, DPoP";

/// The request headers a preflight for the MCP endpoint allows: [`ALLOW_HEADERS`],
/// and the `Mcp-Param-*` headers the browser asks for (`Access-Control-Request-Headers`),
/// which a 2026-07-28 client sends for tool arguments annotated `x-mcp-header`.
/// CORS has no wildcard for a header prefix, so they are named one by one.
pub fn allow_headers(requested: Option<&str>) -> Cow<'static, str> {
    let mut out = Cow::Borrowed(ALLOW_HEADERS);
    for name in requested.unwrap_or_default().split(',').map(str::trim) {
        let param = name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("mcp-param-"));
        if param && name.len() > 10 && crate::policy::is_token(name) {
            let s = out.to_mut();
            s.push_str(", ");
            s.push_str(name);
        }
    }
    out
}

/// The origin URL for a request path and query (`query` without the `?`).
pub fn target(cfg: &Config, path: &str, query: Option<&str>) -> String {
    let base = cfg.origin.url.as_str().trim_end_matches('/');
    match query {
        Some(q) if !q.is_empty() => format!("{base}{path}?{q}"),
        _ => format!("{base}{path}"),
    }
}

/// Fill in what field clients leave out of an authorization request (RFC 6749 §4.1.1:
/// a GET with `response_type` and `client_id`) on its way to the authorization server:
/// * no `resource` (Claude.ai, SPEC): `resource=RESOURCE_URL` (RFC 8707), so the
///   token is bound to this resource instead of coming back without an audience;
/// * no or an empty `scope` (Claude Code, SPEC; oidc-provider refuses such requests):
///   `REQUIRED_SCOPES`, else `SCOPES_SUPPORTED`, the scopes a challenge would name.
///
/// * with `AS_FLAVOR=hydra`, no `audience` while `resource` names this resource:
///   `audience=<resource>` (Hydra ignores RFC 8707 and binds only what its own
///   `audience` parameter asks for; [`Config::hydra_audience`]).
///
/// Returns the new query, or `None` when nothing is added (not an authorization
/// request, or nothing missing). Parameters already present are never changed.
pub fn authorization_defaults(cfg: &Config, query: &str) -> Option<String> {
    let pairs = form_pairs(query);
    let has = |k: &str| pairs.iter().any(|(n, v)| n == k && !v.trim().is_empty());
    if !has("response_type") || !has("client_id") {
        return None;
    }
    add_defaults(cfg, query, &pairs)
}

/// The same defaults for a `client_credentials` token request (its form body) on its
/// way to Hydra (`AS_FLAVOR=hydra` only; other servers take RFC 8707 `resource`).
pub fn token_defaults(cfg: &Config, body: &str) -> Option<String> {
    if cfg.upstream.flavor != Flavor::Hydra {
        return None;
    }
    let pairs = form_pairs(body);
    if !pairs
        .iter()
        .any(|(n, v)| n == "grant_type" && v == "client_credentials")
    {
        return None;
    }
    add_defaults(cfg, body, &pairs)
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

fn add_defaults(cfg: &Config, query: &str, pairs: &[(String, String)]) -> Option<String> {
    let has = |k: &str| pairs.iter().any(|(n, v)| n == k && !v.trim().is_empty());
    let mut extra = url::form_urlencoded::Serializer::new(String::new());
    let mut added = false;
    if !pairs.iter().any(|(n, _)| n == "resource") {
        extra.append_pair("resource", &cfg.resource.id);
        added = true;
    }
    let scopes = cfg.default_scopes();
    if !has("scope") && !scopes.is_empty() {
        extra.append_pair("scope", &scopes.join(" "));
        added = true;
    }
    if cfg.upstream.flavor == Flavor::Hydra && !pairs.iter().any(|(n, _)| n == "audience") {
        let ours = |r: &str| r == cfg.resource.id || cfg.tokens.audiences.iter().any(|a| a == r);
        let resources: Vec<&str> = pairs
            .iter()
            .filter(|(n, _)| n == "resource")
            .map(|(_, v)| v.as_str())
            .collect();
        // No resource given means the one just added: this worker's.
        if resources.is_empty() || resources.iter().any(|r| ours(r)) {
            extra.append_pair("audience", cfg.hydra_audience());
            added = true;
        }
    }
    if !added {
        return None;
    }
    // An empty `scope=` is replaced, not repeated.
    let scope_given = has("scope");
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && (scope_given || !p.starts_with("scope=")))
        .collect();
    let extra = extra.finish();
    Some(if kept.is_empty() {
        extra
    } else {
        format!("{}&{extra}", kept.join("&"))
    })
}

/// Make a claim value safe for an HTTP header: visible ASCII and spaces pass, anything
/// else is percent-encoded, so a crafted `sub` cannot inject a header.
pub fn header_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The identity headers for an accepted token.
pub fn identity_headers(p: &Principal) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(3);
    if let Some(s) = &p.subject {
        h.push((SUBJECT, header_value(s)));
    }
    if let Some(c) = &p.client_id {
        h.push((CLIENT_ID, header_value(c)));
    }
    h.push((SCOPES, header_value(&p.scopes.join(" "))));
    h
}

/// CORS headers for an answer on the MCP endpoint to an allowed browser origin.
pub fn cors_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_string()),
        ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
        ("vary", "Origin".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_headers_that_stay_behind() {
        // STRIP_IDENTITY_HEADERS's default (config::TABLE).
        let foreign = crate::config::tests::config().origin.strip_identity;
        let named = connection_named(Some(" keep-alive, X-Secret ,,Mcp-Trace"));
        assert_eq!(named, ["keep-alive", "x-secret", "mcp-trace"]);
        for h in [
            "authorization",
            "connection",
            "te",
            "transfer-encoding",
            "upgrade",
            "host",
            "x-auth-subject",
            "x_auth_subject",
            "x-auth_scopes",
            "x_auth_anything",
            "x-forwarded-user",
            "x_forwarded_user",
            "x-forwarded-email",
            "remote-user",
            "remote_user",
            "x-remote-user",
            "x-forwarded-preferred-username",
            "x-secret",
            "mcp-trace",
        ] {
            assert!(strip_request_header(h, &named, &foreign), "{h}");
        }
        for h in [
            "content-type",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
            "x-request-id",
            "mcp-param-region",
            "x_custom",
        ] {
            assert!(!strip_request_header(h, &named, &foreign), "{h}");
        }
        // STRIP_IDENTITY_HEADERS=none: other proxies' headers pass; X-Auth-* never.
        assert!(!strip_request_header("x-forwarded-user", &[], &[]));
        assert!(strip_request_header("x_auth_subject", &[], &[]));
    }

    use super::*;
    use crate::config::tests::config;

    #[test]
    fn target_keeps_path_and_query() {
        let c = config();
        assert_eq!(target(&c, "/mcp", None), "http://127.0.0.1:9000/mcp");
        assert_eq!(
            target(&c, "/mcp/x", Some("a=1&b=2")),
            "http://127.0.0.1:9000/mcp/x?a=1&b=2"
        );
    }

    #[test]
    fn identity_values_cannot_inject() {
        assert_eq!(
            header_value("user\r\nx-auth-subject: admin"),
            "user%0D%0Ax-auth-subject: admin"
        );
        assert_eq!(header_value("jos\u{e9}"), "jos%C3%A9");
        assert_eq!(header_value("100%"), "100%25");
        let p = Principal {
            subject: Some("u1".into()),
            client_id: Some("c1".into()),
            scopes: vec!["a".into(), "b".into()],
            exp: 0,
            nbf: None,
            kid: None,
            jkt: None,
        };
        assert_eq!(
            identity_headers(&p),
            vec![
                (SUBJECT, "u1".to_string()),
                (CLIENT_ID, "c1".to_string()),
                (SCOPES, "a b".to_string())
            ]
        );
    }

    #[test]
    fn authorization_requests_get_resource_and_scope_when_missing() {
        let c = config();
        let q = "response_type=code&client_id=abc&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&state=s";
        assert_eq!(
            authorization_defaults(&c, q).unwrap(),
            format!("{q}&resource=https%3A%2F%2Fmcp.example.com%2Fmcp&scope=mcp%3Atools")
        );
        // An empty scope counts as missing; present parameters are never touched.
        let q2 = "scope=&response_type=code&client_id=abc&resource=https%3A%2F%2Fother";
        assert_eq!(
            authorization_defaults(&c, q2).unwrap(),
            "response_type=code&client_id=abc&resource=https%3A%2F%2Fother&scope=mcp%3Atools"
        );
        let full = "response_type=code&client_id=abc&scope=x&resource=r";
        assert_eq!(authorization_defaults(&c, full), None);
        // Not an authorization request: untouched.
        assert_eq!(
            authorization_defaults(&c, "grant_type=x&client_id=abc"),
            None
        );
        assert_eq!(authorization_defaults(&c, ""), None);
    }

    fn hydra() -> Config {
        let mut v = crate::config::tests::base();
        v.push(("AS_FLAVOR", "hydra"));
        Config::build(crate::config::tests::vars(&v)).unwrap()
    }

    #[test]
    fn hydra_authorization_requests_ask_for_the_audience() {
        let c = hydra();
        let res = "https%3A%2F%2Fmcp.example.com%2Fmcp";
        let q = format!("response_type=code&client_id=abc&resource={res}&scope=mcp%3Atools");
        assert_eq!(
            authorization_defaults(&c, &q).unwrap(),
            format!("{q}&audience={res}")
        );
        // No resource (Claude.ai) and no scope (Claude Code): all three added.
        assert_eq!(
            authorization_defaults(&c, "response_type=code&client_id=abc").unwrap(),
            format!(
                "response_type=code&client_id=abc&resource={res}&scope=mcp%3Atools&audience={res}"
            )
        );
        // Another resource, or an audience the client chose: no audience added.
        let other = "response_type=code&client_id=abc&resource=https%3A%2F%2Fother&scope=x";
        assert_eq!(authorization_defaults(&c, other), None);
        let chosen = format!("response_type=code&client_id=abc&resource={res}&scope=x&audience=y");
        assert_eq!(authorization_defaults(&c, &chosen), None);
        // The generic flavour never adds an audience.
        assert_eq!(authorization_defaults(&config(), &q), None);
    }

    #[test]
    fn hydra_client_credentials_requests_get_the_same_defaults() {
        let c = hydra();
        let res = "https%3A%2F%2Fmcp.example.com%2Fmcp";
        assert_eq!(
            token_defaults(&c, "grant_type=client_credentials").unwrap(),
            format!(
                "grant_type=client_credentials&resource={res}&scope=mcp%3Atools&audience={res}"
            )
        );
        let full = format!("grant_type=client_credentials&resource={res}&scope=a&audience={res}");
        assert_eq!(token_defaults(&c, &full), None);
        // Other grants are left alone, and only Hydra gets any of this.
        assert_eq!(
            token_defaults(&c, "grant_type=authorization_code&code=x"),
            None
        );
        assert_eq!(
            token_defaults(&config(), "grant_type=client_credentials"),
            None
        );
        // Accepted audiences other than the resource count as this resource's too.
        let mut v = crate::config::tests::base();
        v.extend([("AS_FLAVOR", "hydra"), ("AUDIENCE", "api://mcp")]);
        let c = Config::build(crate::config::tests::vars(&v)).unwrap();
        assert_eq!(
            token_defaults(&c, "grant_type=client_credentials&resource=api%3A%2F%2Fmcp&scope=a")
                .unwrap(),
            "grant_type=client_credentials&resource=api%3A%2F%2Fmcp&scope=a&audience=api%3A%2F%2Fmcp"
        );
    }

    #[test]
    fn authorization_and_identity_never_pass() {
        assert!(STRIP_REQUEST.contains(&"authorization"));
        for h in [SUBJECT, CLIENT_ID, SCOPES] {
            assert!(h.starts_with(IDENTITY_PREFIX));
        }
    }

    #[test]
    fn preflights_allow_the_param_headers_asked_for() {
        assert_eq!(allow_headers(None), ALLOW_HEADERS);
        assert_eq!(
            allow_headers(Some("authorization, content-type")),
            ALLOW_HEADERS
        );
        assert_eq!(
            allow_headers(Some("mcp-method, mcp-param-region,Mcp-Param-Tenant-Id, mcp-param-, mcp-param-a b, x-other")),
            format!("{ALLOW_HEADERS}, mcp-param-region, Mcp-Param-Tenant-Id")
        );
    }
}
