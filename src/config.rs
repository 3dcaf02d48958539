//! Configuration from environment bindings, parsed and validated once per isolate.
//!
//! [`Config::build`] takes a lookup function (binding name to value) so that it runs
//! the same on the host, in tests and in the worker, where the glue reads `Env`.
//! Every problem names the binding it comes from.
//!
//! The bindings, with whether each is required and what it means, are in [`TABLE`].

use crate::error::Error;
use crate::policy::{Hierarchy, Policy};
use jsonwebtoken::Algorithm;
use url::Url;

/// Every binding the worker reads (the doctor flags any other name as a likely typo).
/// A text binding the worker reads: its name, whether it is required, and what it
/// means (docs/configuration.md says more; a test keeps its table to this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub name: &'static str,
    pub required: bool,
    /// Native builds only (the doctor, the tests): the wasm carries no prose.
    #[cfg(not(target_arch = "wasm32"))]
    pub meaning: &'static str,
}

/// Every binding the worker reads, in one table: it drives the required-binding check
/// of [`Config::build`], the doctor's misspelling check and the documentation test.
pub const TABLE: &[Binding] = &[
    Binding { name: "ORIGIN_URL", required: true, #[cfg(not(target_arch = "wasm32"))] meaning: "base URL of the MCP origin" },
    Binding { name: "RESOURCE_URL", required: true, #[cfg(not(target_arch = "wasm32"))] meaning: "canonical public URL of the protected MCP endpoint" },
    Binding { name: "ISSUER", required: true, #[cfg(not(target_arch = "wasm32"))] meaning: "the authorization server's issuer, exactly as in tokens' `iss`" },
    Binding { name: "AS_URL", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "where the worker reaches the authorization server (default `ISSUER`)" },
    Binding { name: "AS_PASSTHROUGH", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "path prefixes forwarded verbatim to `AS_URL`" },
    Binding { name: "JWKS_URL", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "overrides of discovered endpoints" },
    Binding { name: "REGISTRATION_URL", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "overrides of discovered endpoints" },
    Binding { name: "AUDIENCE", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "accepted `aud` values (default `RESOURCE_URL`)" },
    Binding { name: "SCOPES_SUPPORTED", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "scopes advertised in PRM" },
    Binding { name: "REQUIRED_SCOPES", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "scopes every MCP request needs" },
    Binding { name: "ALLOWED_ORIGINS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "browser origins allowed on the MCP endpoint (`*` for any)" },
    Binding { name: "ALGORITHMS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "accepted JWS algorithms (default `RS256 ES256 PS256 EdDSA`)" },
    Binding { name: "CLOCK_LEEWAY_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "leeway on `exp`/`nbf` (default 60, at most 300)" },
    Binding { name: "RESOURCE_NAME", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "PRM `resource_name`, `resource_documentation`" },
    Binding { name: "RESOURCE_DOCUMENTATION", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "PRM `resource_name`, `resource_documentation`" },
    Binding { name: "REGISTRATION_PATH", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "path of the worker's registration endpoint (default `/register`)" },
    Binding { name: "LOG_LEVEL", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "`info` (a line per request, default), `warn` (refusals and failures), `off`" },
    Binding { name: "SCOPE_POLICY", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "JSON: scopes per MCP method and tool/prompt/resource name (see [`crate::policy`])" },
    Binding { name: "SCOPE_HIERARCHY", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "JSON: broader scopes and the narrower ones they imply (see [`crate::policy::Hierarchy`])" },
    Binding { name: "POLICY_MAX_BODY_BYTES", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "largest POST body the policy inspects (default 1 MiB, at most 16 MiB); larger is 413" },
    Binding { name: "ORIGIN_TIMEOUT_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "how long to wait for the origin's response headers (default 100, 1 to 600); then 504" },
    Binding { name: "TOKEN_TYP", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "required JWT header `typ` (e.g. `at+jwt`, RFC 9068); unset: any" },
    Binding { name: "JWKS_MAX_STALE_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "how long keys stay in use when the JWKS cannot be refreshed (default 86400, 0 to 604800); then 503" },
    Binding { name: "JWKS_CACHE_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "how long a fetched JWKS is used before it is fetched again (default 600, 1 to 86400)" },
    Binding { name: "INTROSPECTION_URL", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "RFC 7662 endpoint: tokens that are not JWTs are checked there (see [`Introspection`])" },
    Binding { name: "INTROSPECTION_CLIENT_ID", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "HTTP Basic credentials for the introspection endpoint" },
    Binding { name: "INTROSPECTION_CLIENT_SECRET", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "HTTP Basic credentials for the introspection endpoint" },
    Binding { name: "INTROSPECTION_BEARER_TOKEN", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "or a bearer API key for it (Ory Network)" },
    Binding { name: "INTROSPECT_JWTS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "`true`: JWTs, once valid locally, must also be active at the endpoint (revocation)" },
    Binding { name: "INTROSPECTION_CACHE_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "longest an active answer is reused (default 60, 0 to 3600; never past the token's `exp`)" },
    Binding { name: "INTROSPECTION_TIMEOUT_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "how long the endpoint may take (default 5, 1 to 30); then 503" },
    Binding { name: "AS_FLAVOR", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "`generic` (default) or `hydra`: the Ory Hydra adapter (see [`Flavor`])" },
    Binding { name: "CIMD", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "`true`: accept Client ID Metadata Documents for the upstream (see [`crate::cimd`]); needs `AS_PASSTHROUGH` and a KV namespace bound as `CIMD_KV`" },
    Binding { name: "CIMD_ALLOW_LOOPBACK", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "`true` (development only): documents may live on loopback hosts, over http too" },
    Binding { name: "CIMD_TIMEOUT_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "how long a document's host may take (default 5, 1 to 30)" },
    Binding { name: "CIMD_CACHE_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "longest a document is reused, whatever its `Cache-Control` says (default 3600, 0 to 86400)" },
    Binding { name: "STRIP_IDENTITY_HEADERS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "request headers other authenticating proxies use for identity, never forwarded from a client (default [`crate::proxy::FOREIGN_IDENTITY_HEADERS`]; `none` forwards them)" },
    Binding { name: "ASSERTION_KEY", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "the identity assertion signed for the origin (see [`crate::assertion`])" },
    Binding { name: "ASSERTION_SECOND_KEY", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "the identity assertion signed for the origin (see [`crate::assertion`])" },
    Binding { name: "ASSERTION_AUDIENCE", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "the identity assertion signed for the origin (see [`crate::assertion`])" },
    Binding { name: "ASSERTION_TTL_SECONDS", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "the identity assertion signed for the origin (see [`crate::assertion`])" },
    Binding { name: "ASSERTION_HEADER", required: false, #[cfg(not(target_arch = "wasm32"))] meaning: "the identity assertion signed for the origin (see [`crate::assertion`])" },
];

/// Is `name` one of the worker's bindings?
pub fn is_binding(name: &str) -> bool {
    TABLE.iter().any(|b| b.name == name)
}

/// Default and ceiling of `POLICY_MAX_BODY_BYTES`.
pub const DEFAULT_POLICY_MAX_BODY: usize = 1 << 20;
pub const MAX_POLICY_MAX_BODY: usize = 16 << 20;

const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

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

/// How the introspection endpoint is told who is asking (RFC 7662 §2.1).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// The whole `Authorization` header value: `Basic <base64(id:secret)>`, each part
    /// form-encoded first (RFC 6749 §2.3.1), or `Bearer <api key>`.
    Header(String),
}

/// Secrets never reach a log line, not even through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Header(_) => f.write_str("Header(<redacted>)"),
        }
    }
}

/// Opaque tokens checked at an RFC 7662 endpoint (`INTROSPECTION_*` bindings).
#[derive(Debug, Clone)]
pub struct Introspection {
    pub url: Url,
    pub credentials: Credentials,
    /// JWTs too, once valid locally (revocation checks).
    pub jwts: bool,
    /// Longest reuse of an active answer; never past the token's `exp`.
    pub cache_seconds: i64,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub origin_url: Url,
    /// `RESOURCE_URL` exactly as configured: the PRM `resource` and default audience.
    pub resource: String,
    pub resource_url: Url,
    /// The path of `RESOURCE_URL`: requests at it or below it are protected.
    pub protected_path: String,
    /// `ISSUER` exactly as configured (compared byte for byte with `iss`).
    pub issuer: String,
    pub issuer_url: Url,
    pub as_url: Url,
    pub as_passthrough: Vec<String>,
    pub jwks_url: Option<Url>,
    pub registration_url: Option<Url>,
    pub audiences: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub required_scopes: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub any_origin: bool,
    pub algorithms: Vec<Algorithm>,
    pub leeway: i64,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
    pub registration_path: String,
    pub log_level: LogLevel,
    /// `SCOPE_POLICY`: with one, MCP POST bodies are inspected and list answers filtered.
    pub policy: Option<Policy>,
    /// `SCOPE_HIERARCHY`: broader scopes and what they imply (empty: none).
    pub hierarchy: Hierarchy,
    pub policy_max_body: usize,
    /// Seconds to wait for the origin's response headers (streams may then run on).
    pub origin_timeout: u32,
    /// `TOKEN_TYP`: the header `typ` every token must carry.
    pub token_typ: Option<String>,
    /// Seconds past the JWKS's TTL its keys stay in use while refreshes fail.
    pub jwks_max_stale: i64,
    /// `JWKS_CACHE_SECONDS`: the JWKS's TTL.
    pub jwks_ttl: i64,
    pub introspection: Option<Introspection>,
    pub flavor: Flavor,
    /// `CIMD=true`: clients may name themselves by a metadata document URL.
    pub cimd: Option<Cimd>,
    /// `STRIP_IDENTITY_HEADERS`: identity headers of other authenticating proxies,
    /// lower case, dropped from client requests like `X-Auth-*` (underscore spellings
    /// too). Default [`crate::proxy::FOREIGN_IDENTITY_HEADERS`]: an origin written
    /// for such a proxy would trust them. Risk of `none`: a client names its user.
    pub strip_identity: Vec<String>,
    /// `ASSERTION_*`: the identity assertion the worker signs for the origin.
    pub assertion: Option<crate::assertion::Settings>,
}

/// Client ID Metadata Documents at the edge (`CIMD=true`, see [`crate::cimd`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cimd {
    /// `CIMD_ALLOW_LOOPBACK`: documents on loopback hosts (http or https) are fetched.
    /// For development; private and link-local hosts stay refused.
    pub allow_loopback: bool,
    /// `CIMD_TIMEOUT_SECONDS`.
    pub timeout: u32,
    /// `CIMD_CACHE_SECONDS`: the ceiling on a document's cache lifetime.
    pub cache_max: i64,
}

/// A `true`/`false` binding (unset: false).
fn boolean(value: Option<String>, binding: &str) -> Result<bool, Error> {
    match value.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(problem(
            binding,
            format!("must be true or false, got {other:?}"),
        )),
    }
}

/// Bindings that mean nothing without `INTROSPECTION_URL`.
const INTROSPECTION_RELATED: &[&str] = &[
    "INTROSPECTION_CLIENT_ID",
    "INTROSPECTION_CLIENT_SECRET",
    "INTROSPECTION_BEARER_TOKEN",
    "INTROSPECT_JWTS",
    "INTROSPECTION_CACHE_SECONDS",
    "INTROSPECTION_TIMEOUT_SECONDS",
];

/// Bindings that mean nothing without `CIMD=true`.
const CIMD_RELATED: &[&str] = &[
    "CIMD_ALLOW_LOOPBACK",
    "CIMD_TIMEOUT_SECONDS",
    "CIMD_CACHE_SECONDS",
];

fn cimd(
    get: &impl Fn(&str) -> Option<String>,
    passthrough: &[String],
) -> Result<Option<Cimd>, Error> {
    if !boolean(get("CIMD"), "CIMD")? {
        for name in CIMD_RELATED {
            if get(name).is_some() {
                return Err(problem(name, "is set but CIMD is not true"));
            }
        }
        return Ok(None);
    }
    if passthrough.is_empty() {
        return Err(problem(
            "CIMD",
            "needs the single-host layout: set AS_PASSTHROUGH so that authorization and token requests pass through the worker",
        ));
    }
    Ok(Some(Cimd {
        allow_loopback: boolean(get("CIMD_ALLOW_LOOPBACK"), "CIMD_ALLOW_LOOPBACK")?,
        timeout: number(
            get("CIMD_TIMEOUT_SECONDS"),
            "CIMD_TIMEOUT_SECONDS",
            5,
            1..=30,
        )?,
        cache_max: number(
            get("CIMD_CACHE_SECONDS"),
            "CIMD_CACHE_SECONDS",
            3600,
            0..=86_400,
        )?,
    }))
}

fn problem(binding: &str, problem: impl Into<String>) -> Error {
    Error::Config {
        binding: binding.to_string(),
        problem: problem.into(),
    }
}

fn words(value: Option<String>) -> Vec<String> {
    value
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn http_url(binding: &str, value: &str) -> Result<Url, Error> {
    let url =
        Url::parse(value).map_err(|e| problem(binding, format!("not a URL ({e}): {value:?}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(problem(
            binding,
            format!("must be http or https, got {:?}", url.scheme()),
        ));
    }
    if url.fragment().is_some() {
        return Err(problem(binding, "must not have a #fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(problem(
            binding,
            "must not carry credentials; use a secret binding",
        ));
    }
    Ok(url)
}

/// A whole-number binding within `range`, or `default` when unset.
fn number<T>(
    value: Option<String>,
    binding: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, Error>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(v) = value else {
        return Ok(default);
    };
    match v.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(problem(
            binding,
            format!(
                "must be a whole number from {} to {}, got {v:?}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The `INTROSPECTION_*` bindings: `None` without `INTROSPECTION_URL`.
fn introspection(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Introspection>, Error> {
    let Some(url) = get("INTROSPECTION_URL") else {
        if let Some(name) = INTROSPECTION_RELATED.iter().find(|n| get(n).is_some()) {
            return Err(problem(name, "is set but INTROSPECTION_URL is not"));
        }
        return Ok(None);
    };
    let url = http_url("INTROSPECTION_URL", &url)?;
    let form = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let credentials = match (
        get("INTROSPECTION_CLIENT_ID"),
        get("INTROSPECTION_CLIENT_SECRET"),
        get("INTROSPECTION_BEARER_TOKEN"),
    ) {
        (None, None, None) => Credentials::None,
        (Some(id), Some(secret), None) => {
            use base64::Engine;
            let pair = format!("{}:{}", form(&id), form(&secret));
            Credentials::Header(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        (None, None, Some(key)) => {
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(problem(
                    "INTROSPECTION_BEARER_TOKEN",
                    "must be printable ASCII without spaces",
                ));
            }
            Credentials::Header(format!("Bearer {key}"))
        }
        (Some(_), None, None) => {
            return Err(problem(
                "INTROSPECTION_CLIENT_SECRET",
                "is required with INTROSPECTION_CLIENT_ID",
            ))
        }
        (None, Some(_), None) => {
            return Err(problem(
                "INTROSPECTION_CLIENT_ID",
                "is required with INTROSPECTION_CLIENT_SECRET",
            ))
        }
        (_, _, Some(_)) => return Err(problem(
            "INTROSPECTION_BEARER_TOKEN",
            "set either it or INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET, not both",
        )),
    };
    let jwts = boolean(get("INTROSPECT_JWTS"), "INTROSPECT_JWTS")?;
    Ok(Some(Introspection {
        url,
        credentials,
        jwts,
        cache_seconds: number(
            get("INTROSPECTION_CACHE_SECONDS"),
            "INTROSPECTION_CACHE_SECONDS",
            60,
            0..=3600,
        )?,
        timeout_seconds: number(
            get("INTROSPECTION_TIMEOUT_SECONDS"),
            "INTROSPECTION_TIMEOUT_SECONDS",
            5,
            1..=30,
        )?,
    }))
}

/// The origin (`scheme://host[:port]`) of a URL, as browsers serialise it.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl Config {
    /// Parse and validate every binding. `lookup` returns a binding's value; empty
    /// strings count as absent.
    pub fn build(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // The table says which bindings are required: all are checked first, in its order.
        if let Some(b) = TABLE.iter().find(|b| b.required && get(b.name).is_none()) {
            return Err(problem(b.name, "is required but not set"));
        }
        let required =
            |name: &str| get(name).ok_or_else(|| problem(name, "is required but not set"));

        let origin_url = http_url("ORIGIN_URL", &required("ORIGIN_URL")?)?;
        if origin_url.query().is_some() {
            return Err(problem("ORIGIN_URL", "must not have a query"));
        }

        let resource = required("RESOURCE_URL")?;
        let resource_url = http_url("RESOURCE_URL", &resource)?;
        if resource_url.query().is_some() {
            return Err(problem("RESOURCE_URL", "must not have a query"));
        }
        let mut protected_path = resource_url.path().trim_end_matches('/').to_string();
        if protected_path.is_empty() {
            protected_path = "/".into();
        }

        let issuer = required("ISSUER")?;
        let issuer_url = http_url("ISSUER", &issuer)?;
        if issuer_url.query().is_some() {
            return Err(problem("ISSUER", "must not have a query (RFC 8414 §2)"));
        }
        let as_url = match get("AS_URL") {
            Some(v) => http_url("AS_URL", &v)?,
            None => issuer_url.clone(),
        };

        let as_passthrough = words(get("AS_PASSTHROUGH"));
        for prefix in &as_passthrough {
            if !prefix.starts_with('/') || prefix == "/" {
                return Err(problem(
                    "AS_PASSTHROUGH",
                    format!("prefix {prefix:?} must start with / and not be / alone"),
                ));
            }
            if path_matches(&protected_path, prefix) || path_matches(prefix, &protected_path) {
                return Err(problem(
                    "AS_PASSTHROUGH",
                    format!("prefix {prefix:?} overlaps the protected path {protected_path:?}"),
                ));
            }
        }

        let jwks_url = get("JWKS_URL")
            .map(|v| http_url("JWKS_URL", &v))
            .transpose()?;
        let registration_url = get("REGISTRATION_URL")
            .map(|v| http_url("REGISTRATION_URL", &v))
            .transpose()?;

        let mut audiences = words(get("AUDIENCE"));
        if audiences.is_empty() {
            audiences.push(resource.clone());
        }

        let mut scopes_supported = words(get("SCOPES_SUPPORTED"));
        let required_scopes = words(get("REQUIRED_SCOPES"));
        for (binding, list) in [
            ("SCOPES_SUPPORTED", &scopes_supported),
            ("REQUIRED_SCOPES", &required_scopes),
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
        if !scopes_supported.is_empty() {
            if let Some(s) = required_scopes
                .iter()
                .find(|s| !scopes_supported.contains(s))
            {
                return Err(problem(
                    "REQUIRED_SCOPES",
                    format!("{s:?} is not in SCOPES_SUPPORTED"),
                ));
            }
        }

        let policy = get("SCOPE_POLICY")
            .map(|v| Policy::parse(&v, &scopes_supported).map_err(|e| problem("SCOPE_POLICY", e)))
            .transpose()?;
        let hierarchy = get("SCOPE_HIERARCHY")
            .map(|v| {
                Hierarchy::parse(&v, &scopes_supported).map_err(|e| problem("SCOPE_HIERARCHY", e))
            })
            .transpose()?
            .unwrap_or_default();
        // Without SCOPES_SUPPORTED, PRM advertises every scope the worker asks for or
        // knows a broader one of.
        if scopes_supported.is_empty() && (policy.is_some() || !hierarchy.is_empty()) {
            let policy_scopes = policy.iter().flat_map(|p| p.scopes());
            for s in required_scopes
                .iter()
                .chain(policy_scopes)
                .chain(hierarchy.scopes())
            {
                if !scopes_supported.contains(s) {
                    scopes_supported.push(s.clone());
                }
            }
        }
        let policy_max_body: usize = number(
            get("POLICY_MAX_BODY_BYTES"),
            "POLICY_MAX_BODY_BYTES",
            DEFAULT_POLICY_MAX_BODY,
            1..=MAX_POLICY_MAX_BODY,
        )?;

        let origin_timeout: u32 = number(
            get("ORIGIN_TIMEOUT_SECONDS"),
            "ORIGIN_TIMEOUT_SECONDS",
            100,
            1..=600,
        )?;

        let jwks_max_stale: i64 = number(
            get("JWKS_MAX_STALE_SECONDS"),
            "JWKS_MAX_STALE_SECONDS",
            86_400,
            0..=604_800,
        )?;
        let jwks_ttl: i64 = number(
            get("JWKS_CACHE_SECONDS"),
            "JWKS_CACHE_SECONDS",
            crate::jwks::TTL_SECONDS,
            1..=86_400,
        )?;
        let token_typ = get("TOKEN_TYP");
        if let Some(t) = &token_typ {
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

        let introspection = introspection(&get)?;
        let flavor = match get("AS_FLAVOR").as_deref() {
            None | Some("generic") => Flavor::Generic,
            Some("hydra") => Flavor::Hydra,
            Some(other) => {
                return Err(problem(
                    "AS_FLAVOR",
                    format!("must be generic or hydra, got {other:?}"),
                ))
            }
        };

        let cimd = cimd(&get, &as_passthrough)?;
        let assertion = crate::assertion::from_bindings(&get, &resource_url, &origin_url)?;

        let strip_identity = match get("STRIP_IDENTITY_HEADERS") {
            None => crate::proxy::FOREIGN_IDENTITY_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            Some(v) if v.trim() == "none" => Vec::new(),
            Some(v) => {
                let names = words(Some(v.replace(',', " ").to_ascii_lowercase()));
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
            }
        };

        let mut allowed_origins = Vec::new();
        let mut any_origin = false;
        for o in words(get("ALLOWED_ORIGINS")) {
            if o == "*" {
                any_origin = true;
                continue;
            }
            let url = http_url("ALLOWED_ORIGINS", &o)?;
            let serialized = origin_of(&url);
            if serialized != o.trim_end_matches('/') {
                return Err(problem(
                    "ALLOWED_ORIGINS",
                    format!("{o:?} is not an origin (scheme://host[:port])"),
                ));
            }
            allowed_origins.push(serialized);
        }
        // The resource's own origin is always allowed.
        let own = origin_of(&resource_url);
        if !allowed_origins.contains(&own) {
            allowed_origins.push(own);
        }

        let algorithms = match get("ALGORITHMS") {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(v) => {
                let mut algs = Vec::new();
                for name in v.split_whitespace() {
                    let alg: Algorithm = name.parse().map_err(|_| {
                        problem("ALGORITHMS", format!("unknown algorithm {name:?}"))
                    })?;
                    if !SUPPORTED_ALGORITHMS.contains(&alg) {
                        return Err(problem("ALGORITHMS", format!("{name} is not an asymmetric signature algorithm this worker accepts")));
                    }
                    algs.push(alg);
                }
                algs
            }
        };

        let leeway: i64 = number(
            get("CLOCK_LEEWAY_SECONDS"),
            "CLOCK_LEEWAY_SECONDS",
            60,
            0..=300,
        )?;

        let registration_path = get("REGISTRATION_PATH").unwrap_or_else(|| "/register".into());
        if !registration_path.starts_with('/') || path_matches(&registration_path, &protected_path)
        {
            return Err(problem(
                "REGISTRATION_PATH",
                "must start with / and lie outside the protected path",
            ));
        }

        let log_level = match get("LOG_LEVEL").as_deref() {
            None | Some("info") => LogLevel::Info,
            Some("warn") => LogLevel::Warn,
            Some("off") => LogLevel::Off,
            Some(other) => {
                return Err(problem(
                    "LOG_LEVEL",
                    format!("must be info, warn or off, got {other:?}"),
                ))
            }
        };

        Ok(Config {
            assertion,
            origin_url,
            resource,
            resource_url,
            protected_path,
            issuer,
            issuer_url,
            as_url,
            as_passthrough,
            jwks_url,
            registration_url,
            audiences,
            scopes_supported,
            required_scopes,
            allowed_origins,
            any_origin,
            algorithms,
            leeway,
            resource_name: get("RESOURCE_NAME"),
            resource_documentation: get("RESOURCE_DOCUMENTATION"),
            registration_path,
            log_level,
            policy,
            hierarchy,
            policy_max_body,
            origin_timeout,
            token_typ,
            jwks_max_stale,
            jwks_ttl,
            introspection,
            flavor,
            cimd,
            strip_identity,
        })
    }

    /// The audience the Hydra adapter asks for: the resource when it is accepted
    /// (the default), else the first accepted audience. Never anything else.
    pub fn hydra_audience(&self) -> &str {
        if self.audiences.contains(&self.resource) {
            &self.resource
        } else {
            &self.audiences[0]
        }
    }

    /// The scopes asked for on a client's behalf when it names none: `REQUIRED_SCOPES`,
    /// else `SCOPES_SUPPORTED` (what a challenge would name).
    pub fn default_scopes(&self) -> &[String] {
        if self.required_scopes.is_empty() {
            &self.scopes_supported
        } else {
            &self.required_scopes
        }
    }

    /// The worker's public origin, taken from `RESOURCE_URL`.
    pub fn public_origin(&self) -> String {
        origin_of(&self.resource_url)
    }

    /// The path-suffixed PRM URL for the resource (RFC 9728 §3.1).
    pub fn resource_metadata_url(&self) -> String {
        let path = if self.protected_path == "/" {
            ""
        } else {
            self.protected_path.as_str()
        };
        format!(
            "{}/.well-known/oauth-protected-resource{}",
            self.public_origin(),
            path
        )
    }

    /// The worker's registration endpoint, as advertised in AS metadata.
    pub fn registration_endpoint(&self) -> String {
        format!("{}{}", self.public_origin(), self.registration_path)
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.any_origin || self.allowed_origins.iter().any(|o| o == origin)
    }

    /// Map a URL on the issuer's host (as an authorization server advertises its
    /// endpoints) to the same path on `AS_URL`, where the worker can reach it. In the
    /// single-host layout the issuer is the worker's own host, which the worker must
    /// not fetch through itself.
    pub fn rebase_upstream(&self, url: &Url) -> Url {
        if self.as_url == self.issuer_url || url.origin() != self.issuer_url.origin() {
            return url.clone();
        }
        let mut out = self.as_url.clone();
        let base = self.as_url.path().trim_end_matches('/');
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
        if self.as_url.origin() == self.issuer_url.origin() {
            return None;
        }
        Some(self.public_issuer_host())
    }

    /// The host (with its port, if any) and scheme of `ISSUER`: the public name of
    /// the authorization server, as requests passed through to it say they came.
    pub fn public_issuer_host(&self) -> (String, String) {
        let host = self.issuer_url.host_str().unwrap_or_default();
        let host = match self.issuer_url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        (host, self.issuer_url.scheme().to_string())
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
    fn related_bindings_are_known_bindings() {
        for name in INTROSPECTION_RELATED.iter().chain(CIMD_RELATED) {
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
        assert_eq!(c.protected_path, "/mcp");
        assert_eq!(c.audiences, vec!["https://mcp.example.com/mcp"]);
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
        assert_eq!(c.algorithms, DEFAULT_ALGORITHMS);
        assert_eq!(c.leeway, 60);
        assert_eq!(c.origin_timeout, 100);
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
        assert_eq!(c.audiences, vec!["a", "b"]);
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
        assert_eq!(c.scopes_supported, vec!["mcp:tools", "repo:admin"]);
        assert_eq!(c.policy_max_body, DEFAULT_POLICY_MAX_BODY);
        assert!(config().policy.is_none());
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
        assert_eq!(config().flavor, Flavor::Generic);
        let c = with(&[("AS_FLAVOR", "hydra")]).unwrap();
        assert_eq!(c.flavor, Flavor::Hydra);
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
