//! Configuration from environment bindings, parsed and validated once per isolate.
//!
//! [`Config::build`] takes a lookup function (binding name to value) so that it runs
//! the same on the host, in tests and in the worker, where the glue reads `Env`.
//! Every problem names the binding it comes from.
//!
//! The bindings, with whether each is required, its default and what it means, are
//! in [`TABLE`]; unset bindings take their defaults from it. [`Config`] groups what
//! they configure: the resource, the origin, the upstream authorization server, the
//! token rules, scopes and policy, limits, and the optional features (introspection,
//! CIMD, the identity assertion). Each field says its binding, its default, and the
//! risk of changing it where there is one.

use crate::error::Error;
use crate::policy::{Hierarchy, Policy};
use jsonwebtoken::Algorithm;
use url::Url;

mod features;
pub(crate) mod parse;
mod table;
pub use features::{Cimd, Credentials, Introspection};
use parse::{http_url, problem, Bindings};
pub use table::{default_of, is_binding, Binding, TABLE};

/// The ceiling of `POLICY_MAX_BODY_BYTES`.
pub const MAX_POLICY_MAX_BODY: usize = 16 << 20;

/// The asymmetric algorithms the worker can check (WebCrypto in the wasm build,
/// jsonwebtoken's pure-Rust backend natively). HMAC and `none` are never accepted.
pub const SUPPORTED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Warn,
    Info,
}

/// The authorization server's kind, for what it needs that others do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Any RFC 8414 server: nothing added beyond the MCP defaults.
    #[default]
    Generic,
    /// Ory Hydra (self-hosted or Ory Network): it ignores RFC 8707 `resource`, so the
    /// worker asks for the audience with Hydra's own `audience` parameter on
    /// authorization and client-credentials token requests, allows it on registered
    /// clients, drops registration members Hydra refuses, and assumes Hydra's
    /// `/oauth2/register` when its metadata advertises no registration endpoint.
    Hydra,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub resource: Resource,
    pub origin: Origin,
    pub upstream: Upstream,
    pub tokens: TokenRules,
    pub scopes: Scopes,
    pub limits: Limits,
    /// `INTROSPECTION_*`: opaque tokens (and optionally JWTs) checked at an RFC 7662
    /// endpoint. Default off: a token that is not a JWT is refused.
    pub introspection: Option<Introspection>,
    /// `CIMD=true`: clients may name themselves by a metadata document URL. Default off.
    pub cimd: Option<Cimd>,
    /// `ASSERTION_*`: the identity assertion the worker signs for the origin. Default
    /// off: the origin must then trust the `X-Auth-*` headers, so it must be reachable
    /// only through the worker.
    pub assertion: Option<crate::assertion::Settings>,
    /// `TOKEN_EXCHANGE=true`: the caller's token is exchanged (RFC 8693) for one issued
    /// to the origin, forwarded as its `Authorization`. Default off: the origin gets
    /// no token.
    pub exchange: Option<crate::exchange::Settings>,
    /// `DPOP=allowed|required`: DPoP-bound tokens and their proofs (RFC 9449). Default
    /// off: tokens are bearer tokens and `cnf` is not read.
    pub dpop: Option<crate::dpop::Settings>,
    /// `LOG_LEVEL`, default `info`.
    pub log_level: LogLevel,
}

/// The protected MCP resource, as clients see it.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `RESOURCE_URL` exactly as configured (required): the PRM `resource` and the
    /// default audience.
    pub id: String,
    pub url: Url,
    /// The path of `RESOURCE_URL`: requests at it or below it are protected.
    pub protected_path: String,
    /// `RESOURCE_NAME`, `RESOURCE_DOCUMENTATION`: PRM members, default none.
    pub name: Option<String>,
    pub documentation: Option<String>,
    /// `REGISTRATION_PATH`, default `/register`, outside the protected path.
    pub registration_path: String,
    /// `ALLOWED_ORIGINS`: browser origins allowed on the MCP endpoint; the resource's
    /// own origin always is. Risk of `*` (`any_origin`): any web page may call the
    /// endpoint with a token it holds.
    pub allowed_origins: Vec<String>,
    pub any_origin: bool,
}

/// The MCP origin behind the worker.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `ORIGIN_URL` (required): requests go to it plus their path and query.
    pub url: Url,
    /// `STRIP_IDENTITY_HEADERS`: identity headers of other authenticating proxies,
    /// lower case, dropped from client requests like `X-Auth-*` (underscore spellings
    /// too). Default: the table's list. Risk of `none`: a client names its user to an
    /// origin written for such a proxy.
    pub strip_identity: Vec<String>,
}

/// The upstream authorization server.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `ISSUER` exactly as configured (required; compared byte for byte with `iss`).
    pub issuer: String,
    pub issuer_url: Url,
    /// `AS_URL`, default `ISSUER`: where the worker reaches the server.
    pub as_url: Url,
    /// `AS_PASSTHROUGH`: path prefixes forwarded verbatim to `AS_URL` (the single-host
    /// layout). Default none.
    pub passthrough: Vec<String>,
    /// `JWKS_URL`, `REGISTRATION_URL`: overrides of discovered endpoints.
    pub jwks_url: Option<Url>,
    pub registration_url: Option<Url>,
    /// `AS_FLAVOR`, default generic.
    pub flavor: Flavor,
    /// `JWKS_CACHE_SECONDS`, default 600: the JWKS's TTL. Risk of a long one: a key
    /// the server withdrew stays trusted that long.
    pub jwks_ttl: i64,
    /// `JWKS_MAX_STALE_SECONDS`, default 86400: how long past the TTL keys stay in use
    /// while refreshes fail (then 503). Risk of a long one: the same, when the server
    /// is unreachable; of 0: every refresh failure is an outage.
    pub jwks_max_stale: i64,
}

/// What a token must be to be accepted.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// `AUDIENCE`, default `RESOURCE_URL`: accepted `aud` values. Risk of adding
    /// others: tokens minted for another service work here (RFC 8707's point).
    pub audiences: Vec<String>,
    /// `ALGORITHMS`, default `RS256 ES256 PS256 EdDSA`; asymmetric only.
    pub algorithms: Vec<Algorithm>,
    /// `CLOCK_LEEWAY_SECONDS`, default 60, at most 300: on `exp`, `nbf`, `iat`.
    pub leeway: i64,
    /// `TOKEN_TYP`: the header `typ` every token must carry. Default any. Risk of
    /// leaving it unset when the server marks access tokens: an ID token from the
    /// same issuer with the right audience would pass.
    pub typ: Option<String>,
}

/// Scopes, the per-tool policy and the hierarchy between scopes.
#[derive(Debug, Clone)]
pub struct Scopes {
    /// `SCOPES_SUPPORTED`: advertised in PRM; default what the worker asks for
    /// (`REQUIRED_SCOPES`, the policy's, the hierarchy's).
    pub supported: Vec<String>,
    /// `REQUIRED_SCOPES`: every MCP request needs them. Default none: any token of
    /// the issuer and audience is enough.
    pub required: Vec<String>,
    /// `SCOPE_POLICY`: with one, MCP POST bodies are inspected and list answers
    /// filtered. Default none.
    pub policy: Option<Policy>,
    /// `SCOPE_HIERARCHY`: broader scopes and what they imply (empty: none).
    pub hierarchy: Hierarchy,
}

/// Bounds on what the worker reads and waits for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `POLICY_MAX_BODY_BYTES`, default 1 MiB, at most 16 MiB: the largest POST body
    /// the policy inspects (larger is 413).
    pub policy_max_body: usize,
    /// `ORIGIN_TIMEOUT_SECONDS`, default 100 (Cloudflare's own): seconds to wait for
    /// the origin's response headers (then 504; streams may then run on).
    pub origin_timeout: u32,
}

impl Config {
    /// Parse and validate every binding. `lookup` returns a binding's value; empty
    /// strings count as absent.
    pub fn build(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let b = Bindings::new(&lookup);
        // The table says which bindings are required: all are checked first, in its order.
        if let Some(t) = TABLE.iter().find(|t| t.required && b.get(t.name).is_none()) {
            return Err(problem(t.name, "is required but not set"));
        }
        let resource = resource(&b)?;
        let origin = origin(&b)?;
        let upstream = upstream(&b, &resource)?;
        let tokens = tokens(&b, &resource)?;
        let scopes = scopes(&b)?;
        let limits = Limits {
            policy_max_body: b.number("POLICY_MAX_BODY_BYTES", 1..=MAX_POLICY_MAX_BODY)?,
            origin_timeout: b.number("ORIGIN_TIMEOUT_SECONDS", 1..=600)?,
        };
        let introspection = features::introspection(&b)?;
        let cimd = features::cimd(&b, &upstream.passthrough)?;
        let assertion = crate::assertion::from_bindings(&|n| b.get(n), &resource.url, &origin.url)?;
        let exchange = crate::exchange::from_bindings(&b)?;
        let dpop = crate::dpop::from_bindings(&b)?;
        if exchange.is_some()
            && assertion
                .as_ref()
                .is_some_and(|a| a.header == "authorization")
        {
            return Err(problem(
                "ASSERTION_HEADER",
                "is Authorization, where the exchanged token goes (TOKEN_EXCHANGE=true): name an X-Auth-… header",
            ));
        }
        let log_level = match b.value("LOG_LEVEL").unwrap_or_default().as_str() {
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "off" => LogLevel::Off,
            other => {
                return Err(problem(
                    "LOG_LEVEL",
                    format!("must be info, warn or off, got {other:?}"),
                ))
            }
        };
        Ok(Config {
            resource,
            origin,
            upstream,
            tokens,
            scopes,
            limits,
            introspection,
            cimd,
            assertion,
            exchange,
            dpop,
            log_level,
        })
    }
}

fn resource(b: &Bindings) -> Result<Resource, Error> {
    let id = b.required("RESOURCE_URL")?;
    let url = http_url("RESOURCE_URL", &id)?;
    if url.query().is_some() {
        return Err(problem("RESOURCE_URL", "must not have a query"));
    }
    let mut protected_path = url.path().trim_end_matches('/').to_string();
    if protected_path.is_empty() {
        protected_path = "/".into();
    }
    let registration_path = b.value("REGISTRATION_PATH").unwrap_or_default();
    if !registration_path.starts_with('/') || path_matches(&registration_path, &protected_path) {
        return Err(problem(
            "REGISTRATION_PATH",
            "must start with / and lie outside the protected path",
        ));
    }
    let mut allowed_origins = Vec::new();
    let mut any_origin = false;
    for o in b.words("ALLOWED_ORIGINS") {
        if o == "*" {
            any_origin = true;
            continue;
        }
        let serialized = origin_of(&http_url("ALLOWED_ORIGINS", &o)?);
        if serialized != o.trim_end_matches('/') {
            return Err(problem(
                "ALLOWED_ORIGINS",
                format!("{o:?} is not an origin (scheme://host[:port])"),
            ));
        }
        allowed_origins.push(serialized);
    }
    // The resource's own origin is always allowed.
    let own = origin_of(&url);
    if !allowed_origins.contains(&own) {
        allowed_origins.push(own);
    }
    Ok(Resource {
        id,
        url,
        protected_path,
        name: b.get("RESOURCE_NAME"),
        documentation: b.get("RESOURCE_DOCUMENTATION"),
        registration_path,
        allowed_origins,
        any_origin,
    })
}

fn origin(b: &Bindings) -> Result<Origin, Error> {
    let url = http_url("ORIGIN_URL", &b.required("ORIGIN_URL")?)?;
    if url.query().is_some() {
        return Err(problem("ORIGIN_URL", "must not have a query"));
    }
    let strip = b.value("STRIP_IDENTITY_HEADERS").unwrap_or_default();
    let strip_identity = if strip == "none" {
        Vec::new()
    } else {
        let names = parse::words(Some(&strip.replace(',', " ").to_ascii_lowercase()));
        if let Some(bad) = names
            .iter()
            .find(|n| !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(problem(
                "STRIP_IDENTITY_HEADERS",
                format!("{bad:?} is not a header name (letters, digits and -)"),
            ));
        }
        names
    };
    Ok(Origin {
        url,
        strip_identity,
    })
}

fn upstream(b: &Bindings, resource: &Resource) -> Result<Upstream, Error> {
    let issuer = b.required("ISSUER")?;
    let issuer_url = http_url("ISSUER", &issuer)?;
    if issuer_url.query().is_some() {
        return Err(problem("ISSUER", "must not have a query (RFC 8414 §2)"));
    }
    let passthrough = b.words("AS_PASSTHROUGH");
    let protected = &resource.protected_path;
    for prefix in &passthrough {
        if !prefix.starts_with('/') || prefix == "/" {
            return Err(problem(
                "AS_PASSTHROUGH",
                format!("prefix {prefix:?} must start with / and not be / alone"),
            ));
        }
        if path_matches(protected, prefix) || path_matches(prefix, protected) {
            return Err(problem(
                "AS_PASSTHROUGH",
                format!("prefix {prefix:?} overlaps the protected path {protected:?}"),
            ));
        }
    }
    let flavor = match b.value("AS_FLAVOR").unwrap_or_default().as_str() {
        "generic" => Flavor::Generic,
        "hydra" => Flavor::Hydra,
        other => {
            return Err(problem(
                "AS_FLAVOR",
                format!("must be generic or hydra, got {other:?}"),
            ))
        }
    };
    Ok(Upstream {
        as_url: b.url("AS_URL")?.unwrap_or_else(|| issuer_url.clone()),
        issuer,
        issuer_url,
        passthrough,
        jwks_url: b.url("JWKS_URL")?,
        registration_url: b.url("REGISTRATION_URL")?,
        flavor,
        jwks_ttl: b.number("JWKS_CACHE_SECONDS", 1..=86_400)?,
        jwks_max_stale: b.number("JWKS_MAX_STALE_SECONDS", 0..=604_800)?,
    })
}

fn tokens(b: &Bindings, resource: &Resource) -> Result<TokenRules, Error> {
    let mut audiences = b.words("AUDIENCE");
    if audiences.is_empty() {
        audiences.push(resource.id.clone());
    }
    let mut algorithms = Vec::new();
    for name in b.words("ALGORITHMS") {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| problem("ALGORITHMS", format!("unknown algorithm {name:?}")))?;
        if !SUPPORTED_ALGORITHMS.contains(&alg) {
            return Err(problem(
                "ALGORITHMS",
                format!("{name} is not an asymmetric signature algorithm this worker accepts"),
            ));
        }
        algorithms.push(alg);
    }
    let typ = b.get("TOKEN_TYP");
    if let Some(t) = &typ {
        if !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-./".contains(&b))
        {
            return Err(problem(
                "TOKEN_TYP",
                format!("{t:?} is not a media type like at+jwt"),
            ));
        }
    }
    Ok(TokenRules {
        audiences,
        algorithms,
        leeway: b.number("CLOCK_LEEWAY_SECONDS", 0..=300)?,
        typ,
    })
}

fn scopes(b: &Bindings) -> Result<Scopes, Error> {
    let mut supported = b.words("SCOPES_SUPPORTED");
    let required = b.words("REQUIRED_SCOPES");
    for (binding, list) in [
        ("SCOPES_SUPPORTED", &supported),
        ("REQUIRED_SCOPES", &required),
    ] {
        if list.iter().any(|s| s == "offline_access") {
            return Err(problem(
                binding,
                "must not name offline_access (MCP 2026-07-28)",
            ));
        }
        if let Some(bad) = list.iter().find(|s| s.contains(['"', '\\'])) {
            return Err(problem(
                binding,
                format!("scope {bad:?} has a quote or backslash"),
            ));
        }
    }
    if !supported.is_empty() {
        if let Some(s) = required.iter().find(|s| !supported.contains(s)) {
            return Err(problem(
                "REQUIRED_SCOPES",
                format!("{s:?} is not in SCOPES_SUPPORTED"),
            ));
        }
    }
    let policy = b
        .get("SCOPE_POLICY")
        .map(|v| Policy::parse(&v, &supported).map_err(|e| problem("SCOPE_POLICY", e)))
        .transpose()?;
    let hierarchy = b
        .get("SCOPE_HIERARCHY")
        .map(|v| Hierarchy::parse(&v, &supported).map_err(|e| problem("SCOPE_HIERARCHY", e)))
        .transpose()?
        .unwrap_or_default();
    // Without SCOPES_SUPPORTED, PRM advertises every scope the worker asks for or
    // knows a broader one of.
    if supported.is_empty() && (policy.is_some() || !hierarchy.is_empty()) {
        let policy_scopes = policy.iter().flat_map(|p| p.scopes());
        for s in required
            .iter()
            .chain(policy_scopes)
            .chain(hierarchy.scopes())
        {
            if !supported.contains(s) {
                supported.push(s.clone());
            }
        }
    }
    Ok(Scopes {
        supported,
        required,
        policy,
        hierarchy,
    })
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers serialise it.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Config {
    /// The audience the Hydra adapter asks for: the resource when it is accepted
    /// (the default), else the first accepted audience. Never anything else.
    pub fn hydra_audience(&self) -> &str {
        if self.tokens.audiences.contains(&self.resource.id) {
            &self.resource.id
        } else {
            &self.tokens.audiences[0]
        }
    }

    /// The scopes asked for on a client's behalf when it names none: `REQUIRED_SCOPES`,
    /// else `SCOPES_SUPPORTED` (what a challenge would name).
    pub fn default_scopes(&self) -> &[String] {
        if self.scopes.required.is_empty() {
            &self.scopes.supported
        } else {
            &self.scopes.required
        }
    }

    /// The worker's public origin, taken from `RESOURCE_URL`.
    pub fn public_origin(&self) -> String {
        origin_of(&self.resource.url)
    }

    /// The path-suffixed PRM URL for the resource (RFC 9728 §3.1).
    pub fn resource_metadata_url(&self) -> String {
        let path = if self.resource.protected_path == "/" {
            ""
        } else {
            self.resource.protected_path.as_str()
        };
        format!(
            "{}/.well-known/oauth-protected-resource{}",
            self.public_origin(),
            path
        )
    }

    /// The worker's registration endpoint, as advertised in AS metadata.
    pub fn registration_endpoint(&self) -> String {
        format!(
            "{}{}",
            self.public_origin(),
            self.resource.registration_path
        )
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.resource.any_origin || self.resource.allowed_origins.iter().any(|o| o == origin)
    }

    /// Map a URL on the issuer's host (as an authorization server advertises its
    /// endpoints) to the same path on `AS_URL`, where the worker can reach it. In the
    /// single-host layout the issuer is the worker's own host, which the worker must
    /// not fetch through itself.
    pub fn rebase_upstream(&self, url: &Url) -> Url {
        if self.upstream.as_url == self.upstream.issuer_url
            || url.origin() != self.upstream.issuer_url.origin()
        {
            return url.clone();
        }
        let mut out = self.upstream.as_url.clone();
        let base = self.upstream.as_url.path().trim_end_matches('/');
        out.set_path(&format!("{base}{}", url.path()));
        out.set_query(url.query());
        out
    }
}

impl Config {
    /// In the single-host layout (the issuer on the worker's host, `AS_URL` elsewhere)
    /// the worker is the authorization server's reverse proxy: its own upstream
    /// fetches carry `X-Forwarded-Host` and `X-Forwarded-Proto` naming the issuer's
    /// host, so a server that builds URLs from the request (oidc-provider behind a
    /// proxy) advertises public endpoints.
    pub fn forwarded_headers(&self) -> Option<(String, String)> {
        if self.upstream.as_url.origin() == self.upstream.issuer_url.origin() {
            return None;
        }
        Some(self.public_issuer_host())
    }

    /// The host (with its port, if any) and scheme of `ISSUER`: the public name of
    /// the authorization server, as requests passed through to it say they came.
    pub fn public_issuer_host(&self) -> (String, String) {
        let host = self.upstream.issuer_url.host_str().unwrap_or_default();
        let host = match self.upstream.issuer_url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        (host, self.upstream.issuer_url.scheme().to_string())
    }
}

/// True when `path` equals `prefix` or lies below it (`/mcp` matches `/mcp` and
/// `/mcp/x`, not `/mcpx`). A prefix ending in `/` matches anything under it.
pub fn path_matches(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    pub fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ORIGIN_URL", "http://127.0.0.1:9000"),
            ("RESOURCE_URL", "https://mcp.example.com/mcp"),
            ("ISSUER", "https://mcp.example.com/oidc"),
            ("AS_URL", "http://127.0.0.1:9100"),
            ("AS_PASSTHROUGH", "/oidc/"),
            ("SCOPES_SUPPORTED", "mcp:tools mcp:admin"),
            ("REQUIRED_SCOPES", "mcp:tools"),
        ]
    }

    pub fn config() -> Config {
        Config::build(vars(&base())).unwrap()
    }

    pub fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, Error> {
        let mut v = base();
        for (k, val) in extra {
            v.retain(|(n, _)| n != k);
            v.push((k, val));
        }
        Config::build(vars(&v))
    }

    fn binding_of(e: Error) -> String {
        match e {
            Error::Config { binding, .. } => binding,
            other => panic!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn every_default_in_the_table_is_a_value_the_binding_accepts() {
        // Written out, a default configures what leaving the binding unset does.
        let needs = |name: &str| -> &[(&'static str, &'static str)] {
            if name.starts_with("CIMD_") {
                &[("CIMD", "true")]
            } else if name.starts_with("INTROSPECT") {
                &[("INTROSPECTION_URL", "https://as.example/introspect")]
            } else if name.starts_with("ASSERTION_") {
                &[("ASSERTION_KEY", crate::assertion::tests::ED)]
            } else if name.starts_with("DPOP_NONCE_SECONDS") {
                &[
                    ("DPOP", "allowed"),
                    ("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef"),
                ]
            } else if name.starts_with("DPOP_") {
                &[("DPOP", "allowed")]
            } else if name.starts_with("TOKEN_EXCHANGE_") {
                &[
                    ("TOKEN_EXCHANGE", "true"),
                    ("TOKEN_EXCHANGE_CLIENT_ID", "worker"),
                    ("TOKEN_EXCHANGE_CLIENT_SECRET", "secret"),
                    ("TOKEN_EXCHANGE_AUDIENCE", "origin"),
                ]
            } else {
                &[]
            }
        };
        let mut checked = 0;
        for t in TABLE {
            let Some(default) = t.default else { continue };
            let mut extra = needs(t.name).to_vec();
            extra.push((t.name, default));
            let written = with(&extra).unwrap_or_else(|e| panic!("{}={default:?}: {e:?}", t.name));
            let plain = with(needs(t.name)).unwrap();
            assert_eq!(format!("{written:?}"), format!("{plain:?}"), "{}", t.name);
            checked += 1;
        }
        assert!(checked >= 15, "{checked} defaults");
    }

    #[test]
    fn related_bindings_are_known_bindings() {
        for name in features::INTROSPECTION_RELATED
            .iter()
            .chain(features::CIMD_RELATED)
        {
            assert!(is_binding(name), "{name} missing from TABLE");
        }
    }

    #[test]
    fn cimd_needs_the_single_host_layout_and_valid_settings() {
        assert_eq!(config().cimd, None);
        let c = with(&[("CIMD", "true")]).unwrap();
        assert_eq!(
            c.cimd,
            Some(Cimd {
                allow_loopback: false,
                timeout: 5,
                cache_max: 3600
            })
        );
        let c = with(&[
            ("CIMD", "true"),
            ("CIMD_ALLOW_LOOPBACK", "true"),
            ("CIMD_TIMEOUT_SECONDS", "2"),
            ("CIMD_CACHE_SECONDS", "0"),
        ])
        .unwrap();
        assert_eq!(
            c.cimd,
            Some(Cimd {
                allow_loopback: true,
                timeout: 2,
                cache_max: 0
            })
        );
        let mut v = base();
        v.retain(|(k, _)| *k != "AS_PASSTHROUGH");
        v.push(("CIMD", "true"));
        assert_eq!(binding_of(Config::build(vars(&v)).unwrap_err()), "CIMD");
        for (extra, binding) in [
            (vec![("CIMD", "yes")], "CIMD"),
            (vec![("CIMD_TIMEOUT_SECONDS", "2")], "CIMD_TIMEOUT_SECONDS"),
            (
                vec![("CIMD", "true"), ("CIMD_TIMEOUT_SECONDS", "0")],
                "CIMD_TIMEOUT_SECONDS",
            ),
            (
                vec![("CIMD", "true"), ("CIMD_CACHE_SECONDS", "90000")],
                "CIMD_CACHE_SECONDS",
            ),
            (
                vec![("CIMD", "true"), ("CIMD_ALLOW_LOOPBACK", "1")],
                "CIMD_ALLOW_LOOPBACK",
            ),
        ] {
            assert_eq!(binding_of(with(&extra).unwrap_err()), binding, "{extra:?}");
        }
    }

    #[test]
    fn parses_a_complete_configuration() {
        let c = config();
        assert_eq!(c.resource.protected_path, "/mcp");
        assert_eq!(c.tokens.audiences, vec!["https://mcp.example.com/mcp"]);
        assert_eq!(
            c.resource_metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            c.registration_endpoint(),
            "https://mcp.example.com/register"
        );
        assert!(c.origin_allowed("https://mcp.example.com"));
        assert!(!c.origin_allowed("https://evil.example"));
        assert_eq!(
            c.tokens.algorithms,
            [
                Algorithm::RS256,
                Algorithm::ES256,
                Algorithm::PS256,
                Algorithm::EdDSA
            ]
        );
        assert_eq!(c.tokens.leeway, 60);
        assert_eq!(c.limits.origin_timeout, 100);
    }

    #[test]
    fn each_required_binding_is_named_when_missing() {
        for name in ["ORIGIN_URL", "RESOURCE_URL", "ISSUER"] {
            let mut v = base();
            v.retain(|(n, _)| *n != name);
            assert_eq!(binding_of(Config::build(vars(&v)).unwrap_err()), name);
        }
    }

    #[test]
    fn malformed_bindings_are_named() {
        let cases: &[(&str, &str)] = &[
            ("ORIGIN_URL", "not a url"),
            ("ORIGIN_URL", "ftp://x"),
            ("RESOURCE_URL", "https://h/mcp#frag"),
            ("ISSUER", "https://h/?q=1"),
            ("AS_URL", "https://user:pw@h/"),
            ("AS_PASSTHROUGH", "oauth2/"),
            ("AS_PASSTHROUGH", "/mcp/"),
            ("ALGORITHMS", "HS256"),
            ("ALGORITHMS", "none"),
            ("CLOCK_LEEWAY_SECONDS", "-1"),
            ("CLOCK_LEEWAY_SECONDS", "many"),
            ("SCOPES_SUPPORTED", "mcp:tools offline_access"),
            ("REQUIRED_SCOPES", "other"),
            ("ALLOWED_ORIGINS", "https://a.example/path"),
            ("LOG_LEVEL", "debug"),
            ("REGISTRATION_PATH", "/mcp/register"),
            ("SCOPE_POLICY", "{\"default\": \"elsewhere\"}"),
            ("SCOPE_POLICY", "not json"),
            ("POLICY_MAX_BODY_BYTES", "0"),
            ("ORIGIN_TIMEOUT_SECONDS", "0"),
            ("ORIGIN_TIMEOUT_SECONDS", "forever"),
            ("TOKEN_TYP", "at jwt"),
            ("JWKS_MAX_STALE_SECONDS", "-1"),
            ("POLICY_MAX_BODY_BYTES", "99999999999"),
        ];
        for (name, value) in cases {
            let err = with(&[(name, value)]).unwrap_err();
            assert_eq!(&binding_of(err), name, "{name}={value}");
        }
    }

    #[test]
    fn audience_and_origins_lists() {
        let c = with(&[
            ("AUDIENCE", "a b"),
            (
                "ALLOWED_ORIGINS",
                "https://app.example http://localhost:6274",
            ),
        ])
        .unwrap();
        assert_eq!(c.tokens.audiences, vec!["a", "b"]);
        assert!(c.origin_allowed("http://localhost:6274"));
        assert!(!c.origin_allowed("http://localhost:6275"));
        let any = with(&[("ALLOWED_ORIGINS", "*")]).unwrap();
        assert!(any.origin_allowed("https://whatever.example"));
    }

    #[test]
    fn a_policy_without_scopes_supported_advertises_its_scopes() {
        let mut v = base();
        v.retain(|(k, _)| *k != "SCOPES_SUPPORTED");
        v.push((
            "SCOPE_POLICY",
            r#"{"methods": {"tools/call": {"names": {"delete_*": "repo:admin"}}}}"#,
        ));
        let c = Config::build(vars(&v)).unwrap();
        assert_eq!(c.scopes.supported, vec!["mcp:tools", "repo:admin"]);
        assert_eq!(c.limits.policy_max_body, 1 << 20);
        assert!(config().scopes.policy.is_none());
    }

    #[test]
    fn upstream_urls_on_the_issuer_host_are_rebased_to_as_url() {
        let c = config();
        let jwks = Url::parse("https://mcp.example.com/oidc/jwks?x=1").unwrap();
        assert_eq!(
            c.rebase_upstream(&jwks).as_str(),
            "http://127.0.0.1:9100/oidc/jwks?x=1"
        );
        let elsewhere = Url::parse("https://keys.example/jwks").unwrap();
        assert_eq!(c.rebase_upstream(&elsewhere), elsewhere);
    }

    #[test]
    fn forwarded_headers_only_in_the_single_host_layout() {
        assert_eq!(
            config().forwarded_headers(),
            Some(("mcp.example.com".into(), "https".into()))
        );
        let mut v = base();
        v.retain(|(k, _)| *k != "AS_URL");
        assert_eq!(Config::build(vars(&v)).unwrap().forwarded_headers(), None);
    }

    #[test]
    fn path_matching_respects_segments() {
        assert!(path_matches("/mcp", "/mcp"));
        assert!(path_matches("/mcp/x", "/mcp"));
        assert!(!path_matches("/mcpx", "/mcp"));
        assert!(path_matches("/oauth2/token", "/oauth2/"));
        assert!(path_matches("/oauth2", "/oauth2/"));
        assert!(!path_matches("/oauth22", "/oauth2/"));
        assert!(path_matches("/userinfo", "/userinfo"));
    }

    #[test]
    fn introspection_is_off_without_a_url_and_related_bindings_need_one() {
        assert!(config().introspection.is_none());
        assert_eq!(
            binding_of(with(&[("INTROSPECT_JWTS", "true")]).unwrap_err()),
            "INTROSPECT_JWTS"
        );
    }

    #[test]
    fn introspection_credentials_basic_bearer_or_none() {
        let url = (
            "INTROSPECTION_URL",
            "http://127.0.0.1:4445/admin/oauth2/introspect",
        );
        let c = with(&[url]).unwrap().introspection.unwrap();
        assert_eq!(c.credentials, Credentials::None);
        assert_eq!((c.cache_seconds, c.timeout_seconds, c.jwts), (60, 5, false));
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let c = with(&[
            url,
            ("INTROSPECTION_CLIENT_ID", "edge client"),
            ("INTROSPECTION_CLIENT_SECRET", "s:cr=t"),
        ])
        .unwrap()
        .introspection
        .unwrap();
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode("edge+client:s%3Acr%3Dt");
        assert_eq!(
            c.credentials,
            Credentials::Header(format!("Basic {expected}"))
        );
        assert!(
            !format!("{c:?}").contains(&expected),
            "secrets are redacted in Debug"
        );
        let c = with(&[url, ("INTROSPECTION_BEARER_TOKEN", "ory_pat_x")])
            .unwrap()
            .introspection
            .unwrap();
        assert_eq!(
            c.credentials,
            Credentials::Header("Bearer ory_pat_x".into())
        );
        assert!(!format!("{c:?}").contains("ory_pat_x"));
        for (extra, binding) in [
            (
                vec![("INTROSPECTION_CLIENT_ID", "a")],
                "INTROSPECTION_CLIENT_SECRET",
            ),
            (
                vec![("INTROSPECTION_CLIENT_SECRET", "a")],
                "INTROSPECTION_CLIENT_ID",
            ),
            (
                vec![
                    ("INTROSPECTION_CLIENT_ID", "a"),
                    ("INTROSPECTION_CLIENT_SECRET", "b"),
                    ("INTROSPECTION_BEARER_TOKEN", "c"),
                ],
                "INTROSPECTION_BEARER_TOKEN",
            ),
            (vec![("INTROSPECT_JWTS", "yes")], "INTROSPECT_JWTS"),
            (
                vec![("INTROSPECTION_CACHE_SECONDS", "3601")],
                "INTROSPECTION_CACHE_SECONDS",
            ),
            (
                vec![("INTROSPECTION_TIMEOUT_SECONDS", "0")],
                "INTROSPECTION_TIMEOUT_SECONDS",
            ),
        ] {
            let mut all = vec![url];
            all.extend(extra);
            assert_eq!(binding_of(with(&all).unwrap_err()), binding);
        }
        let e = with(&[("INTROSPECTION_URL", "http://u:p@h/introspect")]).unwrap_err();
        assert_eq!(binding_of(e), "INTROSPECTION_URL");
    }

    #[test]
    fn flavor_and_hydra_audience() {
        assert_eq!(config().upstream.flavor, Flavor::Generic);
        let c = with(&[("AS_FLAVOR", "hydra")]).unwrap();
        assert_eq!(c.upstream.flavor, Flavor::Hydra);
        assert_eq!(c.hydra_audience(), "https://mcp.example.com/mcp");
        let c = with(&[("AUDIENCE", "api://mcp https://other")]).unwrap();
        assert_eq!(c.hydra_audience(), "api://mcp");
        assert_eq!(
            binding_of(with(&[("AS_FLAVOR", "keycloak")]).unwrap_err()),
            "AS_FLAVOR"
        );
        assert_eq!(config().default_scopes(), ["mcp:tools"]);
    }
}
