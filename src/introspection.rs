//! RFC 7662 token introspection, pure: the request the glue sends, and how its answer
//! is read. The decision around it (caching, claims) is [`crate::authorizer`]'s.
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

use crate::error::{Error, Fault};
use crate::token::Claims;
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

#[cfg(test)]
mod tests {
    use super::*;

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
