//! RFC 8693 token exchange for the origin, pure: the bindings, the request the flow
//! sends, how the answer is read, and the exchanged tokens an isolate keeps.
//!
//! With `TOKEN_EXCHANGE=true` the worker trades each caller's validated access token
//! (the *subject token*) at the authorization server's token endpoint for one issued
//! to the origin (`TOKEN_EXCHANGE_AUDIENCE` and/or `TOKEN_EXCHANGE_RESOURCE`), with
//! its own client credentials, and forwards that one as the origin's
//! `Authorization: Bearer`. The caller's token never reaches the origin.
//!
//! * The request (§2.1): `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//!   `subject_token`, `subject_token_type=…:access_token`,
//!   `requested_token_type=…:access_token`, `audience`, `resource`, `scope` as
//!   configured; the worker authenticates with HTTP Basic (`client_secret_basic`).
//! * The answer (§2.2): a 200 JSON object with `access_token` and a `token_type` of
//!   `Bearer` (or `N_A`, which RFC 8693 allows for tokens that are not access tokens);
//!   `expires_in` when the server says. Anything else from a 200 is the server's
//!   fault (502).
//! * Refusals (§2.2.2, RFC 6749 §5.2), mapped so the client learns what it can do:
//!   `invalid_grant` (the subject token is not acceptable to the server: revoked,
//!   expired there) is 401 `invalid_token`, so the client authorizes again;
//!   `invalid_scope`, `invalid_target` and `access_denied` (the caller may not reach
//!   the origin this way) are 403 carrying that code; `invalid_client`,
//!   `unauthorized_client`, `unsupported_grant_type` and `invalid_request` are the
//!   worker's configuration (its credentials, its client's grants), 502 naming the
//!   binding. A 5xx, a timeout or no answer is 503 with `Retry-After`. The server's
//!   description is never passed on: its own words may quote the token.
//! * Kept per subject token (by hash) until the earlier of both tokens' expiry, less
//!   [`MARGIN_SECONDS`], so a forwarded token is never about to lapse; refusals for
//!   [`REFUSED_SECONDS`]; bounded ([`CAPACITY`]). Nothing is forwarded without the
//!   exchanged token while exchange is on.

use crate::cache::{self, TokenCache, TokenHash};
use crate::config::parse::{problem, Bindings};
use crate::error::{Error, Fault};
use serde_json::{Map, Value};
use std::rc::Rc;
use url::Url;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// How many exchanged tokens (and refusals) an isolate keeps.
pub const CAPACITY: usize = 4096;
/// An exchanged token is not forwarded in its last seconds.
pub const MARGIN_SECONDS: i64 = 10;
/// How long a refused exchange is remembered.
pub const REFUSED_SECONDS: i64 = 10;
/// The largest answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `TOKEN_EXCHANGE*` bindings.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `TOKEN_EXCHANGE_URL`, default the discovered `token_endpoint`.
    pub url: Option<Url>,
    /// `Basic <base64(id:secret)>` from `TOKEN_EXCHANGE_CLIENT_ID` and
    /// `TOKEN_EXCHANGE_CLIENT_SECRET` (each form-encoded first, RFC 6749 §2.3.1).
    pub credentials: String,
    pub client_id: String,
    /// `TOKEN_EXCHANGE_AUDIENCE`: space-separated logical names of the origin.
    pub audience: Vec<String>,
    /// `TOKEN_EXCHANGE_RESOURCE`: space-separated absolute URIs (RFC 8707).
    pub resource: Vec<String>,
    /// `TOKEN_EXCHANGE_SCOPE`: the scope asked for; default none (the server decides).
    pub scope: Option<String>,
    /// `TOKEN_EXCHANGE_TIMEOUT_SECONDS`, default 5; then 503.
    pub timeout: u32,
}

/// The client secret never prints.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url.as_ref().map(Url::as_str))
            .field("client_id", &self.client_id)
            .field("credentials", &"<redacted>")
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Bindings that mean nothing without `TOKEN_EXCHANGE=true`.
pub const RELATED: &[&str] = &[
    "TOKEN_EXCHANGE_URL",
    "TOKEN_EXCHANGE_CLIENT_ID",
    "TOKEN_EXCHANGE_CLIENT_SECRET",
    "TOKEN_EXCHANGE_AUDIENCE",
    "TOKEN_EXCHANGE_RESOURCE",
    "TOKEN_EXCHANGE_SCOPE",
    "TOKEN_EXCHANGE_TIMEOUT_SECONDS",
];

/// Read the `TOKEN_EXCHANGE*` bindings: `None` unless `TOKEN_EXCHANGE=true`.
pub(crate) fn from_bindings(b: &Bindings) -> Result<Option<Settings>, Error> {
    if !b.flag("TOKEN_EXCHANGE")? {
        if let Some(name) = RELATED.iter().find(|n| b.get(n).is_some()) {
            return Err(problem(name, "is set but TOKEN_EXCHANGE is not true"));
        }
        return Ok(None);
    }
    let client_id = b.required("TOKEN_EXCHANGE_CLIENT_ID")?;
    let secret = b.required("TOKEN_EXCHANGE_CLIENT_SECRET")?;
    let audience = b.words("TOKEN_EXCHANGE_AUDIENCE");
    let resource = b.words("TOKEN_EXCHANGE_RESOURCE");
    if audience.is_empty() && resource.is_empty() {
        return Err(problem(
            "TOKEN_EXCHANGE_AUDIENCE",
            "name the origin: set TOKEN_EXCHANGE_AUDIENCE (a name the server knows, as Keycloak's client id) or TOKEN_EXCHANGE_RESOURCE (its URL, RFC 8707), or both",
        ));
    }
    for r in &resource {
        let u = Url::parse(r).map_err(|_| {
            problem(
                "TOKEN_EXCHANGE_RESOURCE",
                format!("{r:?} is not an absolute URI"),
            )
        })?;
        if u.fragment().is_some() {
            return Err(problem(
                "TOKEN_EXCHANGE_RESOURCE",
                "must not have a #fragment (RFC 8707 §2)",
            ));
        }
    }
    let scope = b.get("TOKEN_EXCHANGE_SCOPE");
    if let Some(bad) = scope.iter().flat_map(|s| s.split(' ')).find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|c| c == 0x21 || (0x23..=0x5B).contains(&c) || (0x5D..=0x7E).contains(&c))
    }) {
        return Err(problem(
            "TOKEN_EXCHANGE_SCOPE",
            format!("{bad:?} is not a scope token (RFC 6749 §3.3)"),
        ));
    }
    Ok(Some(Settings {
        url: b.url("TOKEN_EXCHANGE_URL")?,
        credentials: crate::config::parse::basic_credentials(&client_id, &secret),
        client_id,
        audience,
        resource,
        scope,
        timeout: b.number("TOKEN_EXCHANGE_TIMEOUT_SECONDS", 1..=30)?,
    }))
}

/// The form body of an exchange (RFC 8693 §2.1).
pub fn request_body(subject_token: &str, s: &Settings) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", GRANT_TYPE)
        .append_pair("subject_token", subject_token)
        .append_pair("subject_token_type", ACCESS_TOKEN_TYPE)
        .append_pair("requested_token_type", ACCESS_TOKEN_TYPE);
    for a in &s.audience {
        f.append_pair("audience", a);
    }
    for r in &s.resource {
        f.append_pair("resource", r);
    }
    if let Some(scope) = &s.scope {
        f.append_pair("scope", scope);
    }
    f.finish()
}

/// A token issued to the origin, and until when it may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    pub token: Rc<str>,
    pub until: i64,
}

fn server_fault(what: impl Into<String>) -> Error {
    Error::Upstream(Fault::new(format!("TOKEN_EXCHANGE: {}", what.into())))
}

fn unavailable(what: impl Into<String>) -> Error {
    Error::ExchangeUnavailable(Fault::new(format!("TOKEN_EXCHANGE: {}", what.into())))
}

/// Read the token endpoint's answer to an exchange for a subject token that expires
/// at `subject_exp`.
pub fn read_answer(
    status: u16,
    body: &[u8],
    subject_exp: i64,
    now: i64,
) -> Result<Exchanged, Error> {
    if status >= 500 {
        return Err(unavailable(format!("the token endpoint answered {status}")));
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(server_fault("the token endpoint's answer is too large"));
    }
    let doc: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    if status != 200 {
        let code = doc
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(refusal(status, code));
    }
    let doc =
        doc.ok_or_else(|| server_fault("the token endpoint's answer is not a JSON object"))?;
    let token = doc
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| server_fault("the token endpoint's answer has no usable access_token"))?;
    match doc.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") || t.eq_ignore_ascii_case("n_a") => {}
        Some(t) => {
            return Err(server_fault(format!(
                "the token endpoint issued a {t:?} token; the worker forwards bearer tokens only"
            )))
        }
        None => {
            return Err(server_fault(
                "the token endpoint's answer has no token_type",
            ))
        }
    }
    let until = match doc.get("expires_in") {
        None | Some(Value::Null) => subject_exp,
        Some(v) => match v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) {
            Some(n) if n > 0 => subject_exp.min(now.saturating_add(n)),
            _ => {
                return Err(server_fault(
                    "the token endpoint's expires_in is not a positive number",
                ))
            }
        },
    };
    let until = until.saturating_sub(MARGIN_SECONDS);
    if until <= now {
        return Err(server_fault(format!(
            "the token endpoint issued a token that expires within {MARGIN_SECONDS} s"
        )));
    }
    Ok(Exchanged {
        token: token.into(),
        until,
    })
}

/// What a refused exchange means for the client (see the module doc).
fn refusal(status: u16, code: &str) -> Error {
    match code {
        "invalid_grant" => Error::InvalidToken(
            "the authorization server would not exchange the token for the MCP origin (invalid_grant); authorize again".into(),
        ),
        "invalid_scope" | "invalid_target" | "access_denied" => Error::ExchangeRefused(match code {
            "invalid_scope" => "invalid_scope",
            "invalid_target" => "invalid_target",
            _ => "access_denied",
        }),
        "invalid_client" | "unauthorized_client" | "unsupported_grant_type" | "invalid_request" => {
            server_fault(format!(
                "the token endpoint refused the worker's exchange request ({code}): check TOKEN_EXCHANGE_CLIENT_ID, its secret and that its client may use the token-exchange grant"
            ))
        }
        _ => server_fault(format!("the token endpoint answered {status}")),
    }
}

/// An exchanged token (or why there is none) remembered under the subject token's hash.
#[derive(Debug, Clone)]
enum Entry {
    Issued(Exchanged),
    Refused { error: Error, until: i64 },
}

impl cache::Entry for Entry {
    fn live(&self, now: i64, _leeway: i64) -> bool {
        match self {
            Entry::Issued(e) => now < e.until,
            Entry::Refused { until, .. } => now < *until,
        }
    }
    fn kid(&self) -> Option<&str> {
        None
    }
}

/// The exchanges one isolate remembers, by subject-token hash (never the token).
#[derive(Debug)]
pub struct Exchanges {
    entries: TokenCache<Entry>,
}

impl Default for Exchanges {
    fn default() -> Exchanges {
        Exchanges {
            entries: TokenCache::new(CAPACITY),
        }
    }
}

impl Exchanges {
    /// The token for the origin, or why there is none; `None`: exchange first.
    pub fn get(&self, subject: &TokenHash, now: i64) -> Option<Result<Rc<str>, Error>> {
        match self.entries.get(subject, now, 0)? {
            Entry::Issued(e) => Some(Ok(e.token.clone())),
            Entry::Refused { error, .. } => Some(Err(error.clone())),
        }
    }

    /// Remember an exchange's outcome. An unavailable server (503) is not remembered:
    /// the next request tries again.
    pub fn record(&mut self, subject: TokenHash, outcome: &Result<Exchanged, Error>, now: i64) {
        let entry = match outcome {
            Ok(e) if e.until > now => Entry::Issued(e.clone()),
            Ok(_) => return,
            Err(Error::ExchangeUnavailable(_)) => return,
            Err(e) => Entry::Refused {
                error: e.clone(),
                until: now.saturating_add(REFUSED_SECONDS),
            },
        };
        self.entries.insert(subject, entry, now, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with;

    fn on(extra: &[(&'static str, &'static str)]) -> Result<Option<Settings>, Error> {
        let mut v = vec![
            ("TOKEN_EXCHANGE", "true"),
            ("TOKEN_EXCHANGE_CLIENT_ID", "mcp-edge"),
            ("TOKEN_EXCHANGE_CLIENT_SECRET", "s3cr:t&"),
        ];
        v.extend_from_slice(extra);
        with(&v).map(|c| c.exchange)
    }

    fn binding(e: Error) -> String {
        match e {
            Error::Config { binding, .. } => binding,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bindings_need_the_switch_credentials_and_a_target() {
        assert!(with(&[]).unwrap().exchange.is_none());
        assert_eq!(
            binding(with(&[("TOKEN_EXCHANGE_AUDIENCE", "api")]).unwrap_err()),
            "TOKEN_EXCHANGE_AUDIENCE"
        );
        assert_eq!(binding(on(&[]).unwrap_err()), "TOKEN_EXCHANGE_AUDIENCE");
        let s = on(&[("TOKEN_EXCHANGE_AUDIENCE", "orders-api")])
            .unwrap()
            .unwrap();
        assert_eq!(s.audience, ["orders-api"]);
        assert_eq!(s.timeout, 5);
        assert_eq!(s.url, None);
        // RFC 6749 §2.3.1: each part form-encoded, then base64.
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(s.credentials.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"mcp-edge:s3cr%3At%26");
        assert!(!format!("{s:?}").contains("s3cr"), "Debug hides the secret");
        for (name, value) in [
            ("TOKEN_EXCHANGE_RESOURCE", "not a uri"),
            ("TOKEN_EXCHANGE_RESOURCE", "https://api.example/#x"),
            ("TOKEN_EXCHANGE_SCOPE", "read \"all\""),
            ("TOKEN_EXCHANGE_TIMEOUT_SECONDS", "0"),
            ("TOKEN_EXCHANGE_URL", "ftp://as.example/token"),
        ] {
            let e = on(&[("TOKEN_EXCHANGE_AUDIENCE", "a"), (name, value)]).unwrap_err();
            assert_eq!(binding(e), name, "{name}={value}");
        }
        let mut v = vec![("TOKEN_EXCHANGE", "true"), ("TOKEN_EXCHANGE_AUDIENCE", "a")];
        assert_eq!(binding(with(&v).unwrap_err()), "TOKEN_EXCHANGE_CLIENT_ID");
        v.push(("TOKEN_EXCHANGE_CLIENT_ID", "x"));
        assert_eq!(
            binding(with(&v).unwrap_err()),
            "TOKEN_EXCHANGE_CLIENT_SECRET"
        );
    }

    #[test]
    fn the_request_names_the_grant_the_subject_and_the_origin() {
        let s = on(&[
            ("TOKEN_EXCHANGE_AUDIENCE", "orders-api"),
            (
                "TOKEN_EXCHANGE_RESOURCE",
                "https://api.example/ https://b.example/x",
            ),
            ("TOKEN_EXCHANGE_SCOPE", "orders:read"),
        ])
        .unwrap()
        .unwrap();
        let body = request_body("eyJ.a+b.c", &s);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let get = |n: &str| {
            pairs
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("grant_type"), [GRANT_TYPE]);
        assert_eq!(get("subject_token"), ["eyJ.a+b.c"]);
        assert_eq!(get("subject_token_type"), [ACCESS_TOKEN_TYPE]);
        assert_eq!(get("requested_token_type"), [ACCESS_TOKEN_TYPE]);
        assert_eq!(get("audience"), ["orders-api"]);
        assert_eq!(
            get("resource"),
            ["https://api.example/", "https://b.example/x"]
        );
        assert_eq!(get("scope"), ["orders:read"]);
    }

    #[test]
    fn an_issued_token_lives_until_the_earlier_expiry_less_the_margin() {
        let ok = |body: &str, subject_exp| read_answer(200, body.as_bytes(), subject_exp, 1_000);
        let e = ok(r#"{"access_token":"tok","token_type":"Bearer","expires_in":300,"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#, 5_000).unwrap();
        assert_eq!(&*e.token, "tok");
        assert_eq!(e.until, 1_300 - MARGIN_SECONDS);
        let e = ok(
            r#"{"access_token":"tok","token_type":"bearer","expires_in":300}"#,
            1_100,
        )
        .unwrap();
        assert_eq!(
            e.until,
            1_100 - MARGIN_SECONDS,
            "the subject token expires first"
        );
        let e = ok(r#"{"access_token":"tok","token_type":"N_A"}"#, 2_000).unwrap();
        assert_eq!(
            e.until,
            2_000 - MARGIN_SECONDS,
            "no expires_in: the subject's"
        );
        for bad in [
            "[]",
            "<html>",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"a b","token_type":"Bearer"}"#,
            r#"{"access_token":"t"}"#,
            r#"{"access_token":"t","token_type":"DPoP"}"#,
            r#"{"access_token":"t","token_type":"Bearer","expires_in":"soon"}"#,
            r#"{"access_token":"t","token_type":"Bearer","expires_in":-1}"#,
        ] {
            let e = ok(bad, 5_000).unwrap_err();
            assert_eq!(e.status(), 502, "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_what_the_client_can_do() {
        let refused =
            |status, body: &str| read_answer(status, body.as_bytes(), 5_000, 1_000).unwrap_err();
        let e = refused(
            400,
            r#"{"error":"invalid_grant","error_description":"token eyJ.secret revoked"}"#,
        );
        assert_eq!(e.status(), 401);
        assert!(
            !format!("{e:?}").contains("eyJ"),
            "the server's words are not kept"
        );
        for code in ["invalid_scope", "invalid_target", "access_denied"] {
            let e = refused(400, &format!(r#"{{"error":"{code}"}}"#));
            assert_eq!((e.status(), e.code()), (403, code));
        }
        for code in [
            "invalid_client",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_request",
            "something_else",
        ] {
            assert_eq!(
                refused(400, &format!(r#"{{"error":"{code}"}}"#)).status(),
                502,
                "{code}"
            );
        }
        assert_eq!(refused(401, "not json").status(), 502);
        for status in [500, 502, 503] {
            let e = refused(status, "");
            assert_eq!(e.status(), 503);
            assert!(e.reply(&Default::default()).header("retry-after").is_some());
        }
    }

    #[test]
    fn exchanges_are_kept_per_subject_token_and_refusals_briefly() {
        let mut x = Exchanges::default();
        let (a, b) = (cache::hash("subject-a"), cache::hash("subject-b"));
        assert!(x.get(&a, 100).is_none());
        let issued = Exchanged {
            token: "for-origin".into(),
            until: 400,
        };
        x.record(a, &Ok(issued), 100);
        assert_eq!(&*x.get(&a, 399).unwrap().unwrap(), "for-origin");
        assert!(x.get(&a, 400).is_none(), "expired: exchange again");
        assert!(
            x.get(&b, 100).is_none(),
            "another subject token has its own"
        );
        x.record(b, &Err(Error::ExchangeRefused("invalid_target")), 100);
        assert_eq!(
            x.get(&b, 100 + REFUSED_SECONDS - 1)
                .unwrap()
                .unwrap_err()
                .status(),
            403
        );
        assert!(x.get(&b, 100 + REFUSED_SECONDS).is_none());
        let c = cache::hash("subject-c");
        x.record(c, &Err(Error::ExchangeUnavailable("down".into())), 100);
        assert!(x.get(&c, 100).is_none(), "an outage is not remembered");
    }
}
