//! RFC 7662 token introspection, pure: the request the glue sends, how its answer is
//! read, and what an isolate remembers of answers ([`Answers`]). The decision around
//! it (claims, scopes) is [`crate::authorizer`]'s.
//!
//! * Opaque tokens (anything that is not a JWT, [`looks_like_jwt`]) are checked at
//!   `INTROSPECTION_URL`; with `INTROSPECT_JWTS=true`, JWTs valid locally are too.
//! * An answer is used only when it is a 200 JSON object with a boolean `active`.
//!   Anything else (a 4xx or 5xx, HTML, a missing `active`, claims of the wrong
//!   type) means the endpoint cannot be trusted right now: 503 with `Retry-After`
//!   ([`Error::IntrospectionUnavailable`]), never an allow, and never a 401 that would
//!   send the client through a new authorization for nothing.
//! * `active: false`, or an active token that is not an access token (`token_use`
//!   of Hydra, `token_type` of others naming a refresh token), is a 401.
//! * An active answer is held to the same claim rules as a JWT
//!   ([`crate::token::check_claims`]): `iss` when present, `aud`, `exp`, `nbf`, `iat`,
//!   scopes from `scope` (or `scp`).

use crate::cache::{self, TokenCache, TokenHash};
use crate::error::{Error, Fault};
use crate::token::{Claims, Principal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// How long a refused answer (inactive, wrong audience...) is reused.
pub const REFUSED_SECONDS: i64 = 10;

/// The largest introspection answer read (far above any real one).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The form body of an introspection request (RFC 7662 §2.1).
pub fn request_body(token: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("token_type_hint", "access_token")
        .finish()
}

/// A JWS in compact form: three dot-separated segments, the first a base64url JSON
/// object. Hydra's opaque tokens (`ory_at_<id>.<signature>`) have one dot; a JWE has
/// five segments: both are introspected, not parsed.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    // The first bytes suffice: `{` encodes as `ey`; decode a small prefix to be sure.
    let header = header.as_bytes();
    let prefix = &header[..header.len().min(8) / 4 * 4];
    !prefix.is_empty()
        && URL_SAFE_NO_PAD
            .decode(prefix)
            .is_ok_and(|b| b.first() == Some(&b'{'))
}

/// What the endpoint said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Active(Box<Claims>),
    /// Why the token is refused (401).
    Refused(&'static str),
}

fn unavailable(what: impl Into<String>) -> Error {
    Error::IntrospectionUnavailable(Fault::new(format!("INTROSPECTION_URL: {}", what.into())))
}

/// Read an introspection answer. Errors are the endpoint's fault (503), not the
/// token's.
pub fn read_answer(status: u16, body: &[u8]) -> Result<Verdict, Error> {
    if status != 200 {
        return Err(unavailable(format!(
            "the introspection endpoint answered {status}"
        )));
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(unavailable("the introspection answer is too large"));
    }
    let doc: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|_| unavailable("the introspection answer is not a JSON object"))?;
    match doc.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Verdict::Refused(
            "the authorization server says the token is not active (revoked, expired or unknown)",
        )),
        _ => {
            return Err(unavailable(
                "the introspection answer has no boolean \"active\"",
            ))
        }
    }
    let kind = |name: &str| doc.get(name).and_then(Value::as_str);
    if kind("token_use").is_some_and(|u| u != "access_token")
        || kind("token_type").is_some_and(|t| t.eq_ignore_ascii_case("refresh_token"))
    {
        return Ok(Verdict::Refused("the token is not an access token"));
    }
    let claims: Claims = serde_json::from_value(Value::Object(doc))
        .map_err(|_| unavailable("the introspection answer has claims of the wrong type"))?;
    Ok(Verdict::Active(Box::new(claims)))
}

/// Introspection outcomes shared by the requests that waited on one call (one call
/// per token at a time in an isolate), by flight key: bounded, dropped wholesale when
/// full (a waiter then finds none and answers 503; the next request asks again).
#[derive(Debug, Default)]
pub struct Outcomes {
    map: std::collections::HashMap<String, Result<crate::token::Principal, Error>>,
}

/// How many outcomes an isolate keeps.
pub const MAX_OUTCOMES: usize = 1024;

impl Outcomes {
    pub fn insert(&mut self, key: String, outcome: Result<crate::token::Principal, Error>) {
        if self.map.len() >= MAX_OUTCOMES {
            self.map.clear();
        }
        self.map.insert(key, outcome);
    }

    pub fn get(&self, key: &str) -> Option<Result<crate::token::Principal, Error>> {
        self.map.get(key).cloned()
    }
}

/// How many introspection answers one isolate keeps, and how many locally valid JWTs
/// may wait for the endpoint (`INTROSPECT_JWTS`).
pub const ANSWER_CAPACITY: usize = 4096;
pub const WAITING_CAPACITY: usize = 1024;

/// An introspection answer, remembered under the token's hash.
#[derive(Debug, Clone)]
enum Answer {
    Active { principal: Principal, until: i64 },
    Refused { error: Error, until: i64 },
}

impl cache::Entry for Answer {
    fn live(&self, now: i64, leeway: i64) -> bool {
        match self {
            Answer::Active { principal, until } => now < *until && principal.live(now, leeway),
            Answer::Refused { until, .. } => now < *until,
        }
    }
    fn kid(&self) -> Option<&str> {
        None
    }
}

/// What one isolate remembers of introspection, keyed by the token's hash (never the
/// token): answers, active ones for at most `INTROSPECTION_CACHE_SECONDS` and never
/// past the token's `exp`, refusals for [`REFUSED_SECONDS`]; and the JWTs valid locally
/// that wait for the endpoint's word (`INTROSPECT_JWTS`), so their verified claims are
/// kept rather than rebuilt from the answer. An unusable answer (503) is not kept: the
/// next request asks again.
#[derive(Debug)]
pub struct Answers {
    answers: TokenCache<Answer>,
    waiting: TokenCache,
}

impl Default for Answers {
    fn default() -> Answers {
        Answers {
            answers: TokenCache::new(ANSWER_CAPACITY),
            waiting: TokenCache::new(WAITING_CAPACITY),
        }
    }
}

impl Answers {
    /// A remembered answer still live: the caller, or why the token is refused.
    pub fn get(
        &self,
        hash: &TokenHash,
        now: i64,
        leeway: i64,
    ) -> Option<Result<&Principal, Error>> {
        match self.answers.get(hash, now, leeway)? {
            Answer::Active { principal, .. } => Some(Ok(principal)),
            Answer::Refused { error, .. } => Some(Err(error.clone())),
        }
    }

    /// Is a JWT valid locally waiting for the endpoint?
    pub fn waiting(&self, hash: &TokenHash, now: i64, leeway: i64) -> bool {
        self.waiting.get(hash, now, leeway).is_some()
    }

    /// A JWT valid locally, to be confirmed at the endpoint.
    pub fn wait(&mut self, hash: TokenHash, principal: Principal, now: i64, leeway: i64) {
        self.waiting.insert(hash, principal, now, leeway);
    }

    /// The verified claims of a waiting JWT, once the endpoint said it is active.
    pub fn take_waiting(&mut self, hash: &TokenHash) -> Option<Principal> {
        self.waiting.remove(hash)
    }

    /// Remember what an answer meant: an active caller for `cache_seconds` (0: not
    /// at all), a refusal for [`REFUSED_SECONDS`].
    pub fn record(
        &mut self,
        hash: TokenHash,
        result: &Result<Principal, Error>,
        cache_seconds: i64,
        now: i64,
        leeway: i64,
    ) {
        let entry = match result {
            Ok(p) if cache_seconds > 0 => Answer::Active {
                principal: p.clone(),
                until: now.saturating_add(cache_seconds),
            },
            Ok(_) => return,
            Err(e) => Answer::Refused {
                error: e.clone(),
                until: now.saturating_add(REFUSED_SECONDS),
            },
        };
        self.answers.insert(hash, entry, now, leeway);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(exp: i64) -> Principal {
        Principal {
            subject: Some("u".into()),
            client_id: None,
            scopes: vec![],
            exp,
            nbf: None,
            kid: None,
            jkt: None,
        }
    }

    #[test]
    fn active_answers_live_for_the_cache_seconds_and_never_past_exp() {
        let mut a = Answers::default();
        let h = cache::hash("ory_at_one");
        a.record(h, &Ok(principal(1_000)), 60, 100, 0);
        assert_eq!(
            a.get(&h, 159, 0).unwrap().unwrap().subject.as_deref(),
            Some("u")
        );
        assert!(a.get(&h, 160, 0).is_none(), "the cache seconds ran out");
        a.record(h, &Ok(principal(120)), 60, 100, 0);
        assert!(a.get(&h, 119, 0).is_some());
        assert!(a.get(&h, 121, 0).is_none(), "the token expired first");
        let other = cache::hash("ory_at_two");
        a.record(other, &Ok(principal(1_000)), 0, 100, 0);
        assert!(a.get(&other, 100, 0).is_none(), "0 seconds: not kept");
    }

    #[test]
    fn refusals_live_for_refused_seconds() {
        let mut a = Answers::default();
        let h = cache::hash("ory_at_gone");
        a.record(h, &Err(Error::InvalidToken("inactive".into())), 60, 100, 0);
        let e = a
            .get(&h, 100 + REFUSED_SECONDS - 1, 0)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(a.get(&h, 100 + REFUSED_SECONDS, 0).is_none());
    }

    #[test]
    fn a_waiting_jwt_keeps_its_verified_claims_until_taken() {
        let mut a = Answers::default();
        let h = cache::hash("eyJ.x.y");
        assert!(!a.waiting(&h, 100, 0));
        a.wait(h, principal(1_000), 100, 0);
        assert!(a.waiting(&h, 101, 0));
        assert_eq!(a.take_waiting(&h).unwrap().subject.as_deref(), Some("u"));
        assert!(!a.waiting(&h, 101, 0));
        assert!(a.take_waiting(&h).is_none());
    }

    #[test]
    fn the_request_is_form_encoded_with_a_hint() {
        assert_eq!(
            request_body("ory_at_a+b/c=.d"),
            "token=ory_at_a%2Bb%2Fc%3D.d&token_type_hint=access_token"
        );
    }

    #[test]
    fn jwts_are_told_from_opaque_tokens() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJh.e30."));
        for opaque in [
            "ory_at_Yd8oxU0Qw1Ew4X9yQ.2Jb9XqZ-A6dCb4pVd2Hg",
            "ory_at_abc",
            "abc.def.ghi",
            "eyJhbGciOiJSUzI1NiJ9.a.b.c.d",
            "",
            "..",
            "e.x.y",
            "€€€€€€€€.a.b",
        ] {
            assert!(!looks_like_jwt(opaque), "{opaque}");
        }
    }

    #[test]
    fn active_answers_carry_their_claims() {
        let body = br#"{"active":true,"scope":"mcp:tools","client_id":"c","sub":"u","exp":2000,"aud":["https://mcp"],"iss":"https://as/","token_type":"Bearer","token_use":"access_token","ext":{}}"#;
        let Verdict::Active(c) = read_answer(200, body).unwrap() else {
            panic!("not active");
        };
        assert_eq!(c.sub.as_deref(), Some("u"));
        assert_eq!(c.client_id.as_deref(), Some("c"));
        assert_eq!(c.exp, Some(2000.0));
        assert_eq!(c.iss.as_deref(), Some("https://as/"));
    }

    #[test]
    fn inactive_and_refresh_tokens_are_refused() {
        assert!(matches!(
            read_answer(200, br#"{"active":false}"#),
            Ok(Verdict::Refused(_))
        ));
        assert_eq!(
            read_answer(200, br#"{"active":true,"token_use":"refresh_token"}"#),
            Ok(Verdict::Refused("the token is not an access token"))
        );
        assert_eq!(
            read_answer(200, br#"{"active":true,"token_type":"refresh_token"}"#),
            Ok(Verdict::Refused("the token is not an access token"))
        );
    }

    #[test]
    fn unusable_answers_are_the_endpoints_fault() {
        for (status, body) in [
            (500, &br#"{"active":true}"#[..]),
            (401, br#"{"error":"invalid_client"}"#),
            (200, b"<html>login</html>"),
            (200, b"[true]"),
            (200, br#"{"active":"true"}"#),
            (200, br#"{}"#),
            (200, br#"{"active":true,"exp":"soon"}"#),
            (200, br#"{"active":true,"aud":7}"#),
        ] {
            let e = read_answer(status, body).unwrap_err();
            assert_eq!(
                e.status(),
                503,
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
        let huge = format!(
            r#"{{"active":true,"x":"{}"}}"#,
            "a".repeat(MAX_ANSWER_BYTES)
        );
        assert_eq!(read_answer(200, huge.as_bytes()).unwrap_err().status(), 503);
    }
}
