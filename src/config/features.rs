//! The optional features' bindings: token introspection (`INTROSPECTION_*`) and Client
//! ID Metadata Documents (`CIMD*`). Each is off unless its switch is set, and its
//! other bindings are refused without the switch (a likely mistake, not a no-op).

use super::parse::{basic_credentials, problem, Bindings};
use crate::error::Error;
use url::Url;

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
    /// `INTROSPECTION_URL`.
    pub url: Url,
    /// `INTROSPECTION_CLIENT_ID`/`_SECRET` or `INTROSPECTION_BEARER_TOKEN`; default none
    /// (most endpoints then refuse: the doctor says so).
    pub credentials: Credentials,
    /// `INTROSPECT_JWTS`, default false: JWTs too, once valid locally (revocation
    /// checks, at the cost of one call per token per `cache_seconds`).
    pub jwts: bool,
    /// `INTROSPECTION_CACHE_SECONDS`, default 60: longest reuse of an active answer,
    /// never past the token's `exp`. Risk: a revoked token works this long.
    pub cache_seconds: i64,
    /// `INTROSPECTION_TIMEOUT_SECONDS`, default 5; then 503.
    pub timeout_seconds: u32,
}

/// Client ID Metadata Documents at the edge (`CIMD=true`, see [`crate::cimd`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cimd {
    /// `CIMD_ALLOW_LOOPBACK`, default false: documents on loopback hosts (http or
    /// https) are fetched. Risk: for development only; private and link-local hosts
    /// stay refused either way.
    pub allow_loopback: bool,
    /// `CIMD_TIMEOUT_SECONDS`, default 5.
    pub timeout: u32,
    /// `CIMD_CACHE_SECONDS`, default 3600: the ceiling on a document's cache lifetime.
    pub cache_max: i64,
}

/// Bindings that mean nothing without `INTROSPECTION_URL`.
pub(crate) const INTROSPECTION_RELATED: &[&str] = &[
    "INTROSPECTION_CLIENT_ID",
    "INTROSPECTION_CLIENT_SECRET",
    "INTROSPECTION_BEARER_TOKEN",
    "INTROSPECT_JWTS",
    "INTROSPECTION_CACHE_SECONDS",
    "INTROSPECTION_TIMEOUT_SECONDS",
];

/// Bindings that mean nothing without `CIMD=true`.
pub(crate) const CIMD_RELATED: &[&str] = &[
    "CIMD_ALLOW_LOOPBACK",
    "CIMD_TIMEOUT_SECONDS",
    "CIMD_CACHE_SECONDS",
];

/// The `CIMD*` bindings: `None` unless `CIMD=true`.
pub(crate) fn cimd(b: &Bindings, passthrough: &[String]) -> Result<Option<Cimd>, Error> {
    if !b.flag("CIMD")? {
        if let Some(name) = CIMD_RELATED.iter().find(|n| b.get(n).is_some()) {
            return Err(problem(name, "is set but CIMD is not true"));
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
        allow_loopback: b.flag("CIMD_ALLOW_LOOPBACK")?,
        timeout: b.number("CIMD_TIMEOUT_SECONDS", 1..=30)?,
        cache_max: b.number("CIMD_CACHE_SECONDS", 0..=86_400)?,
    }))
}

/// The `INTROSPECTION_*` bindings: `None` without `INTROSPECTION_URL`.
pub(crate) fn introspection(b: &Bindings) -> Result<Option<Introspection>, Error> {
    let Some(url) = b.url("INTROSPECTION_URL")? else {
        if let Some(name) = INTROSPECTION_RELATED.iter().find(|n| b.get(n).is_some()) {
            return Err(problem(name, "is set but INTROSPECTION_URL is not"));
        }
        return Ok(None);
    };
    let credentials = match (
        b.get("INTROSPECTION_CLIENT_ID"),
        b.get("INTROSPECTION_CLIENT_SECRET"),
        b.get("INTROSPECTION_BEARER_TOKEN"),
    ) {
        (None, None, None) => Credentials::None,
        (Some(id), Some(secret), None) => Credentials::Header(basic_credentials(&id, &secret)),
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
    Ok(Some(Introspection {
        url,
        credentials,
        jwts: b.flag("INTROSPECT_JWTS")?,
        cache_seconds: b.number("INTROSPECTION_CACHE_SECONDS", 0..=3600)?,
        timeout_seconds: b.number("INTROSPECTION_TIMEOUT_SECONDS", 1..=30)?,
    }))
}
