//! The one error type, and the one place that turns errors into HTTP answers.
//!
//! Every refusal the worker sends is built by [`Error::reply`]:
//!
//! | error | status | body | challenge (RFC 6750 §3) |
//! |---|---|---|---|
//! | [`Error::MissingToken`] | 401 | `unauthorized` | `Bearer resource_metadata, scope` with **no** `error` (R8) |
//! | [`Error::InvalidToken`] | 401 | `invalid_token` | `error="invalid_token"` plus description (R4, R8) |
//! | [`Error::InvalidRequest`] | 400 | `invalid_request` | `error="invalid_request"` (R6) |
//! | [`Error::InsufficientScope`] | 403 | `insufficient_scope` | `error="insufficient_scope", scope=<all needed>` (R7) |
//! | [`Error::OriginNotAllowed`] | 403 | `forbidden` | none (R10) |
//! | [`Error::InvalidRedirectUri`], [`Error::InvalidClientMetadata`] | 400 | RFC 7591 §3.2.2 | none |
//! | [`Error::UpstreamRejected`] | upstream 4xx | RFC 7591 body | none |
//! | [`Error::Upstream`] | 502 | `server_error` | none |
//! | [`Error::KeysUnavailable`], [`Error::IntrospectionUnavailable`], [`Error::ExchangeUnavailable`] | 503 + `Retry-After` | `temporarily_unavailable` | none |
//! | [`Error::ExchangeRefused`] | 403 | the server's code (`invalid_scope`, `invalid_target`, `access_denied`) | none |
//! | [`Error::OriginUnreachable`], [`Error::OriginFailed`] | 502 | JSON-RPC error | none |
//! | [`Error::OriginTimeout`] | 504 | JSON-RPC error | none |
//! | [`Error::JsonRpc`] | 400 | JSON-RPC error (-32700, -32600, -32602, -32020) | none |
//! | [`Error::RateLimited`] | 429 + `Retry-After` | `rate_limited` | none |
//! | [`Error::Config`] | 500 | names the binding | none |
//!
//! Descriptions never contain a token or a secret: callers build them from claim
//! names and configuration, never from the raw credential. Upstream failures carry a
//! [`Fault`]: only its public part (the binding and the kind of failure) reaches the
//! client; URLs (without their query) and the runtime's words go to the log line.

use serde_json::json;
use std::fmt;

/// `Retry-After` on a 429: the period of Cloudflare's rate-limiting bindings is 10 or
/// 60 seconds; waiting the longer one is always enough.
pub const RATE_LIMIT_RETRY_AFTER_SECONDS: u32 = 60;

/// A complete HTTP answer, independent of any runtime: the glue turns it into a
/// `Response` (wasm) and tests read it directly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a challenge needs to point the client at: the PRM URL and the scopes the
/// request needs (RFC 9728 §5.1, RFC 6750 §3), and with DPoP on (RFC 9449 §7.1) the
/// proof algorithms, whether bearer tokens are still taken, and whether this request
/// came with the `DPoP` scheme (its token errors are then DPoP challenges).
#[derive(Debug, Clone, Default)]
pub struct ChallengeContext {
    pub resource_metadata: String,
    pub scope: Vec<String>,
    /// `DPOP_ALGORITHMS`, space-separated; `None` with DPoP off.
    pub dpop_algs: Option<String>,
    /// `DPOP=required`: no Bearer challenge.
    pub dpop_required: bool,
    /// The request presented its token with the `DPoP` scheme.
    pub dpop_scheme: bool,
}

/// An upstream failure (authorization server, introspection endpoint, origin), in
/// two parts: what the client may read, and what only the log line carries.
///
/// `public` names the peer by the binding that configures it and the kind of
/// failure ("JWKS_URL did not answer within 10 s"); it never holds a URL, a query
/// string (where API keys hide) or a peer's own words. `detail` is for the operator:
/// the URL without its query and fragment ([`redact_url`]) and the runtime's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub public: String,
    pub detail: Option<String>,
}

impl Fault {
    pub fn new(public: impl Into<String>) -> Fault {
        Fault {
            public: public.into(),
            detail: None,
        }
    }

    /// The same fault with `detail` for the log line.
    pub fn detail(mut self, detail: impl Into<String>) -> Fault {
        self.detail = Some(detail.into());
        self
    }
}

impl From<&str> for Fault {
    fn from(public: &str) -> Fault {
        Fault::new(public)
    }
}

impl From<String> for Fault {
    fn from(public: String) -> Fault {
        Fault::new(public)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.public)?;
        match &self.detail {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
}

/// A URL as a log line may show it: scheme, host, port and path; no user
/// information, query or fragment (API keys and tokens travel there).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            match u.port() {
                Some(p) => format!("{}://{host}:{p}{}", u.scheme(), u.path()),
                None => format!("{}://{host}{}", u.scheme(), u.path()),
            }
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// A runtime's message as a log line may show it: one that quotes a URL (and so
/// maybe its query) is withheld.
pub fn redact_urls(message: &str) -> String {
    if message.contains("://") {
        "(the runtime's message quotes a URL; withheld)".into()
    } else {
        message.into()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A binding is missing or malformed. The worker answers 500 for every request.
    Config {
        binding: String,
        problem: String,
    },
    /// No bearer token in the `Authorization` header.
    MissingToken,
    /// A token was sent and is not acceptable (malformed, forged, expired, wrong audience...).
    InvalidToken(String),
    /// The request itself is malformed (several credentials, a mangled header).
    InvalidRequest(String),
    /// The token is valid but lacks scopes; `needed` lists every scope the request needs.
    InsufficientScope {
        needed: Vec<String>,
        missing: Vec<String>,
    },
    /// A browser `Origin` that is not allowed on the MCP endpoint.
    OriginNotAllowed(String),
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    PayloadTooLarge(usize),
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri(String),
    /// RFC 7591 §3.2.2.
    InvalidClientMetadata(String),
    /// The upstream registration endpoint refused the request (4xx): its status and
    /// RFC 7591 error code and description are kept.
    UpstreamRejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The authorization server could not be used (unreachable, 5xx, unusable answer).
    Upstream(Fault),
    /// The JWKS could not be obtained, so no token can be checked: 503, never an allow.
    KeysUnavailable(Fault),
    /// The introspection endpoint could not be used (unreachable, slow, 4xx/5xx, an
    /// answer that is not RFC 7662): 503, never an allow.
    IntrospectionUnavailable(Fault),
    /// The authorization server refused to exchange the caller's token for one to the
    /// origin (`invalid_scope`, `invalid_target`, `access_denied`; see
    /// [`crate::exchange`]): 403 with that code.
    ExchangeRefused(&'static str),
    /// The token endpoint could not be used for an exchange (unreachable, slow, 5xx):
    /// 503, never a forward without the exchanged token.
    ExchangeUnavailable(Fault),
    /// A DPoP proof that fails RFC 9449 §4.3 (missing, malformed, wrong method or URL,
    /// stale, replayed, a bad signature): 401 `invalid_dpop_proof`.
    InvalidDpopProof(String),
    /// A token whose DPoP binding does not hold (a bound token sent as Bearer, an
    /// unbound one as DPoP, a proof by another key): 401 `invalid_token`, DPoP challenge.
    InvalidDpopToken(String),
    /// The proof lacks a current server nonce (§9): 401 `use_dpop_nonce`, with the
    /// nonce to use in `DPoP-Nonce`.
    UseDpopNonce(String),
    /// The MCP origin could not be reached.
    OriginUnreachable(Fault),
    /// The MCP origin answered something the worker must not pass on (a list answer
    /// too large to filter).
    OriginFailed(Fault),
    /// The MCP origin sent no response headers within `ORIGIN_TIMEOUT_SECONDS`.
    OriginTimeout(u32),
    /// A rate-limiting binding refused the request (what was limited: "subject",
    /// "client" or "address").
    RateLimited(&'static str),
    /// A POST body the scope policy cannot read, or whose `Mcp-Method` / `Mcp-Name`
    /// headers disagree with it (R11): answered as a JSON-RPC error.
    JsonRpc {
        code: i64,
        message: String,
        /// The id of the request it answers (null when none can be named).
        id: serde_json::Value,
    },
    /// An OAuth request the worker answers itself (Client ID Metadata Documents, see
    /// [`crate::cimd`]): sent to the client's redirect URI (`location`, a 302) when
    /// the worker can trust one, else a JSON error with `status`.
    OAuth {
        error: &'static str,
        description: String,
        status: u16,
        location: Option<String>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { binding, problem } => write!(f, "configuration: {binding}: {problem}"),
            Error::MissingToken => f.write_str("no bearer token"),
            Error::InvalidToken(d) => write!(f, "invalid token: {d}"),
            Error::InvalidRequest(d) => write!(f, "invalid request: {d}"),
            Error::InsufficientScope { missing, .. } => {
                write!(f, "insufficient scope: missing {}", missing.join(" "))
            }
            Error::OriginNotAllowed(o) => write!(f, "origin not allowed: {o}"),
            Error::NotFound => f.write_str("not found"),
            Error::MethodNotAllowed { allow } => write!(f, "method not allowed (allow: {allow})"),
            Error::PayloadTooLarge(max) => write!(f, "body larger than {max} bytes"),
            Error::InvalidRedirectUri(d) => write!(f, "invalid redirect uri: {d}"),
            Error::InvalidClientMetadata(d) => write!(f, "invalid client metadata: {d}"),
            Error::UpstreamRejected { status, error, .. } => {
                write!(f, "upstream refused registration ({status} {error})")
            }
            Error::Upstream(d) => write!(f, "authorization server: {d}"),
            Error::KeysUnavailable(d) => write!(f, "signing keys unavailable: {d}"),
            Error::IntrospectionUnavailable(d) => write!(f, "introspection unavailable: {d}"),
            Error::ExchangeRefused(code) => write!(f, "token exchange refused ({code})"),
            Error::InvalidDpopProof(d) => write!(f, "invalid DPoP proof: {d}"),
            Error::InvalidDpopToken(d) => write!(f, "invalid token (DPoP): {d}"),
            Error::UseDpopNonce(_) => f.write_str("DPoP nonce required"),
            Error::ExchangeUnavailable(d) => write!(f, "token exchange unavailable: {d}"),
            Error::OriginUnreachable(d) => write!(f, "origin unreachable: {d}"),
            Error::OriginFailed(d) => write!(f, "origin answer refused: {d}"),
            Error::OriginTimeout(s) => write!(f, "origin sent no answer within {s} s"),
            Error::RateLimited(what) => write!(f, "rate limited (per {what})"),
            Error::JsonRpc { code, message, .. } => write!(f, "JSON-RPC {code}: {message}"),
            Error::OAuth {
                error, description, ..
            } => write!(f, "{error}: {description}"),
        }
    }
}

impl std::error::Error for Error {}

/// Quote a value for an auth-param (RFC 9110 §11.2 quoted-string): escape `\` and `"`
/// and drop control characters, so a description can never break the header.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c if !c.is_ascii() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Build a `WWW-Authenticate: Bearer ...` value. Parameter order follows the MCP
/// specification's examples: error, description, scope, resource_metadata.
pub fn bearer_challenge(
    error: Option<&str>,
    description: Option<&str>,
    scope: &[String],
    resource_metadata: &str,
) -> String {
    challenge("Bearer", error, description, scope, resource_metadata, None)
}

/// A challenge of `scheme` (`Bearer` or `DPoP`); a DPoP one ends with `algs` (RFC 9449
/// §7.1).
pub fn challenge(
    scheme: &str,
    error: Option<&str>,
    description: Option<&str>,
    scope: &[String],
    resource_metadata: &str,
    algs: Option<&str>,
) -> String {
    let mut params = Vec::new();
    if let Some(e) = error {
        params.push(format!("error={}", quote(e)));
    }
    if let Some(d) = description {
        params.push(format!("error_description={}", quote(d)));
    }
    if !scope.is_empty() {
        params.push(format!("scope={}", quote(&scope.join(" "))));
    }
    if !resource_metadata.is_empty() {
        params.push(format!("resource_metadata={}", quote(resource_metadata)));
    }
    if let Some(a) = algs {
        params.push(format!("algs={}", quote(a)));
    }
    if params.is_empty() {
        scheme.to_string()
    } else {
        format!("{scheme} {}", params.join(", "))
    }
}

impl Error {
    /// A JSON-RPC error answering the request with this id (other errors unchanged).
    pub fn with_id(self, id: Option<serde_json::Value>) -> Error {
        match self {
            Error::JsonRpc { code, message, .. } => Error::JsonRpc {
                code,
                message,
                id: id.unwrap_or(serde_json::Value::Null),
            },
            other => other,
        }
    }

    /// The upstream failure this error is about, to be reported as another kind
    /// (a failed discovery that leaves no keys): its public and log parts stay apart.
    pub fn into_fault(self) -> Fault {
        match self {
            Error::Upstream(f)
            | Error::KeysUnavailable(f)
            | Error::IntrospectionUnavailable(f)
            | Error::ExchangeUnavailable(f)
            | Error::OriginUnreachable(f)
            | Error::OriginFailed(f) => f,
            other => Fault::new(other.to_string()),
        }
    }

    /// The OAuth / RFC 7591 error code, when the error has one.
    pub fn code(&self) -> &str {
        match self {
            Error::Config { .. }
            | Error::Upstream(_)
            | Error::OriginUnreachable(_)
            | Error::OriginFailed(_)
            | Error::OriginTimeout(_) => "server_error",
            Error::KeysUnavailable(_)
            | Error::IntrospectionUnavailable(_)
            | Error::ExchangeUnavailable(_) => "temporarily_unavailable",
            Error::ExchangeRefused(code) => code,
            Error::MissingToken => "unauthorized",
            Error::InvalidToken(_) | Error::InvalidDpopToken(_) => "invalid_token",
            Error::InvalidDpopProof(_) => "invalid_dpop_proof",
            Error::UseDpopNonce(_) => "use_dpop_nonce",
            Error::InvalidRequest(_) | Error::JsonRpc { .. } => "invalid_request",
            Error::InsufficientScope { .. } => "insufficient_scope",
            Error::RateLimited(_) => "rate_limited",
            Error::OriginNotAllowed(_) => "forbidden",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::PayloadTooLarge(_) => "invalid_request",
            Error::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Error::InvalidClientMetadata(_) => "invalid_client_metadata",
            Error::UpstreamRejected { error, .. } => error,
            Error::OAuth { error, .. } => error,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Config { .. } => 500,
            Error::MissingToken
            | Error::InvalidToken(_)
            | Error::InvalidDpopProof(_)
            | Error::InvalidDpopToken(_)
            | Error::UseDpopNonce(_) => 401,
            Error::InvalidRequest(_)
            | Error::JsonRpc { .. }
            | Error::InvalidRedirectUri(_)
            | Error::InvalidClientMetadata(_) => 400,
            Error::InsufficientScope { .. }
            | Error::OriginNotAllowed(_)
            | Error::ExchangeRefused(_) => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::PayloadTooLarge(_) => 413,
            Error::UpstreamRejected { status, .. } => *status,
            Error::OAuth {
                location: Some(_), ..
            } => 302,
            Error::OAuth { status, .. } => *status,
            Error::Upstream(_) | Error::OriginUnreachable(_) | Error::OriginFailed(_) => 502,
            Error::OriginTimeout(_) => 504,
            Error::RateLimited(_) => 429,
            Error::KeysUnavailable(_)
            | Error::IntrospectionUnavailable(_)
            | Error::ExchangeUnavailable(_) => 503,
        }
    }

    /// A short, token-free reason for the log line.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// The single mapping from an error to the HTTP answer the client sees.
    pub fn reply(&self, ctx: &ChallengeContext) -> Reply {
        // One builder per body shape: an OAuth error, or a JSON-RPC error (the MCP
        // endpoint's own failures), so the wasm holds each shape once.
        fn oauth(code: &str, description: &str) -> serde_json::Value {
            json!({"error": code, "error_description": description})
        }
        fn rpc_with_id(code: i64, message: &str, id: &serde_json::Value) -> serde_json::Value {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
        let rpc = |code: i64, message: &str| rpc_with_id(code, message, &serde_json::Value::Null);
        let status = self.status();
        let rm = ctx.resource_metadata.as_str();
        let code = self.code();
        // The scheme of a token's challenge: DPoP for a request that came with it.
        let dpop_algs = ctx.dpop_algs.as_deref();
        let token_challenge =
            |error: Option<&str>, d: Option<&str>, scope: &[String]| match dpop_algs {
                Some(algs) if ctx.dpop_scheme => (
                    "www-authenticate",
                    challenge("DPoP", error, d, scope, rm, Some(algs)),
                ),
                _ => ("www-authenticate", bearer_challenge(error, d, scope, rm)),
            };
        let no_store = ("cache-control", "no-store".to_string());
        let (body, header) = match self {
            Error::MissingToken => {
                let body = oauth(
                    code,
                    if ctx.dpop_required {
                        "authorization required: send a DPoP-bound token (Authorization: DPoP) with a DPoP proof"
                    } else {
                        "authorization required: send a bearer token in the Authorization header"
                    },
                );
                let mut reply = Reply::json(status, &body);
                if !ctx.dpop_required {
                    let c = bearer_challenge(None, None, &ctx.scope, rm);
                    reply = reply.with_header("www-authenticate", c);
                }
                if let Some(algs) = dpop_algs {
                    let c = challenge("DPoP", None, None, &ctx.scope, rm, Some(algs));
                    reply = reply.with_header("www-authenticate", c);
                }
                return reply;
            }
            Error::InvalidDpopProof(d) | Error::InvalidDpopToken(d) => (
                oauth(code, d),
                Some((
                    "www-authenticate",
                    challenge("DPoP", Some(code), Some(d), &ctx.scope, rm, dpop_algs),
                )),
            ),
            Error::UseDpopNonce(nonce) => {
                let d = "send the proof again with the nonce in DPoP-Nonce";
                let c = challenge("DPoP", Some(code), Some(d), &[], rm, dpop_algs);
                return Reply::json(status, &oauth(code, d))
                    .with_header("www-authenticate", c)
                    .with_header("dpop-nonce", nonce.as_str())
                    .with_header("cache-control", "no-store");
            }
            Error::InvalidToken(d) | Error::InvalidRequest(d) => (
                oauth(code, d),
                Some(token_challenge(Some(code), Some(d), &ctx.scope)),
            ),
            Error::InsufficientScope { needed, missing } => {
                let d = format!("the token lacks scope: {}", missing.join(" "));
                let h = token_challenge(Some(code), Some(&d), needed);
                (oauth(code, &d), Some(h))
            }
            Error::Config { binding, problem } => {
                let mut body = oauth(code, &format!("worker misconfigured: {binding}: {problem}"));
                body["binding"] = json!(binding);
                (body, None)
            }
            Error::MethodNotAllowed { allow } => (
                oauth(code, &self.to_string()),
                Some(("allow", allow.to_string())),
            ),
            Error::UpstreamRejected { description, .. } => {
                let mut body = json!({ "error": code });
                if let Some(d) = description {
                    body["error_description"] = json!(d);
                }
                (body, Some(no_store))
            }
            Error::OAuth {
                location: Some(location),
                ..
            } => {
                return Reply::empty(status)
                    .with_header("location", location.as_str())
                    .with_header("cache-control", "no-store")
            }
            Error::OAuth { description, .. } => (oauth(code, description), Some(no_store)),
            Error::RateLimited(what) => (
                oauth(
                    code,
                    &format!("too many requests for this {what}; retry later"),
                ),
                Some(("retry-after", RATE_LIMIT_RETRY_AFTER_SECONDS.to_string())),
            ),
            Error::KeysUnavailable(f) | Error::IntrospectionUnavailable(f) => (
                oauth(
                    code,
                    &format!("cannot check tokens right now: {}", f.public),
                ),
                Some(("retry-after", "5".to_string())),
            ),
            Error::ExchangeUnavailable(f) => (
                oauth(
                    code,
                    &format!("cannot obtain a token for the MCP origin right now: {}", f.public),
                ),
                Some(("retry-after", "5".to_string())),
            ),
            Error::ExchangeRefused(_) => (
                oauth(
                    code,
                    "the authorization server will not issue this caller a token for the MCP origin",
                ),
                None,
            ),
            Error::OriginFailed(f) => (
                rpc(-32603, &format!("MCP origin answer refused: {}", f.public)),
                None,
            ),
            Error::OriginUnreachable(f) => (
                rpc(-32603, &format!("MCP origin unreachable: {}", f.public)),
                None,
            ),
            Error::Upstream(f) => (
                oauth(code, &format!("authorization server: {}", f.public)),
                None,
            ),
            Error::OriginTimeout(s) => (
                rpc(
                    -32603,
                    &format!("MCP origin timeout: no answer within {s} s"),
                ),
                None,
            ),
            Error::JsonRpc { code, message, id } => (rpc_with_id(*code, message, id), None),
            Error::InvalidRedirectUri(d) | Error::InvalidClientMetadata(d) => {
                (oauth(code, d), Some(no_store))
            }
            Error::OriginNotAllowed(_) | Error::NotFound | Error::PayloadTooLarge(_) => {
                (oauth(code, &self.to_string()), None)
            }
        };
        let reply = Reply::json(status, &body);
        match header {
            Some((name, value)) => reply.with_header(name, value),
            None => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ChallengeContext {
        ChallengeContext {
            resource_metadata: "https://h/.well-known/oauth-protected-resource/mcp".into(),
            scope: vec!["mcp:tools".into()],
            ..Default::default()
        }
    }

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        let r = Error::MissingToken.reply(&ctx());
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate").unwrap(),
            r#"Bearer scope="mcp:tools", resource_metadata="https://h/.well-known/oauth-protected-resource/mcp""#
        );
    }

    #[test]
    fn invalid_token_challenge_carries_code_and_description() {
        let r = Error::InvalidToken("token expired".into()).reply(&ctx());
        assert_eq!(r.status, 401);
        let h = r.header("www-authenticate").unwrap();
        assert!(h.starts_with(r#"Bearer error="invalid_token", error_description="token expired""#));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
    }

    #[test]
    fn insufficient_scope_lists_every_needed_scope() {
        let e = Error::InsufficientScope {
            needed: vec!["mcp:tools".into(), "repo:admin".into()],
            missing: vec!["repo:admin".into()],
        };
        let r = e.reply(&ctx());
        assert_eq!(r.status, 403);
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains(r#"scope="mcp:tools repo:admin""#));
    }

    #[test]
    fn quoting_cannot_break_the_header() {
        let h = bearer_challenge(Some("invalid_token"), Some("a\"b\\c\r\nd\u{e9}"), &[], "");
        assert_eq!(
            h,
            r#"Bearer error="invalid_token", error_description="a\"b\\c  d?""#
        );
    }

    #[test]
    fn upstream_faults_keep_urls_and_runtime_words_out_of_public_bodies() {
        let f = Fault::new("INTROSPECTION_URL did not answer within 5 s").detail(redact_url(
            "https://user:pw@intro.internal:8443/introspect?api_key=s3cret#x",
        ));
        assert_eq!(
            f.detail.as_deref(),
            Some("https://intro.internal:8443/introspect")
        );
        for e in [
            Error::IntrospectionUnavailable(f.clone()),
            Error::KeysUnavailable(f.clone()),
            Error::Upstream(f.clone()),
            Error::OriginUnreachable(f.clone()),
        ] {
            let r = e.reply(&ctx());
            assert!(r.body.contains("INTROSPECTION_URL"), "{}", r.body);
            assert!(!r.body.contains("intro.internal"), "{}", r.body);
            assert!(!r.body.contains("s3cret"), "{}", r.body);
            // The log line keeps the detail (without the query).
            assert!(e
                .reason()
                .contains("https://intro.internal:8443/introspect"));
            assert!(!e.reason().contains("s3cret"));
        }
        assert!(!redact_urls("fetch to http://a.internal/x?key=1 failed").contains("key"));
        assert_eq!(
            redact_urls("Network connection lost."),
            "Network connection lost."
        );
    }

    #[test]
    fn config_error_names_the_binding() {
        let r = Error::Config {
            binding: "ISSUER".into(),
            problem: "missing".into(),
        }
        .reply(&ChallengeContext::default());
        assert_eq!(r.status, 500);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["binding"], "ISSUER");
    }

    #[test]
    fn upstream_rejection_keeps_status_and_code() {
        let r = Error::UpstreamRejected {
            status: 400,
            error: "invalid_client_metadata".into(),
            description: Some("bad grant".into()),
        }
        .reply(&ChallengeContext::default());
        assert_eq!(r.status, 400);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
}
