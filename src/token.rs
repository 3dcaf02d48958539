//! JWT access tokens (RFC 9068 and the shapes of SPEC.md): extraction from the
//! `Authorization` header, structural parsing, and claim checks.
//!
//! Steps, in order, each a distinct refusal:
//! 1. [`bearer`]: one `Bearer` credential from the header (RFC 6750 §2.1; the query
//!    string and form body are never read), at most [`MAX_TOKEN_BYTES`].
//! 2. [`parse`]: exactly three base64url segments (a five-segment JWE is named as
//!    such); a JSON header whose `alg` is in the configured allowlist (never taken from
//!    the token alone, never `none` or HMAC) and without `crit`; `jku`, `x5u`, `jwk`
//!    and `x5c` are ignored, keys come only from the configured JWKS.
//! 3. The signature, checked by the caller with the key [`crate::jwks::KeySet::lookup`]
//!    chose: WebCrypto in the worker, [`verify_native`] on the host.
//! 4. [`check_claims`]: `iss` equal to `ISSUER` byte for byte; `exp` required and
//!    `nbf`/`iat` sane within the leeway; `aud` (string or array) intersecting the
//!    accepted audiences; scopes from `scope` (string) or `scp` (array or string); the
//!    client from `client_id` or `azp`.

use crate::config::Config;
use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub crit: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<OneOrMany>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub scope: Option<OneOrMany>,
    pub scp: Option<OneOrMany>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    /// RFC 7800 confirmation: `jkt` binds the token to a DPoP key (RFC 9449 §6).
    pub cnf: Option<Confirmation>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Confirmation {
    pub jkt: Option<String>,
}

/// A structurally valid JWT whose signature is still to be checked.
#[derive(Debug, Clone)]
pub struct Jwt<'a> {
    pub header: Header,
    pub alg: Algorithm,
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// Checked for its alphabet only: it is decoded where it is verified.
    pub signature_b64: &'a str,
    pub claims: Claims,
}

/// Who is calling, once the token is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// The signing key's `kid`, so cached entries can be dropped when it leaves the JWKS.
    pub kid: Option<String>,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
}

/// Take the bearer token from the `Authorization` header value.
///
/// The syntax is narrow (RFC 6750 §2.1 with RFC 9110 §11.4 and §5.5): optional ASCII
/// white space, the scheme `Bearer` in any case, one or more ASCII spaces, one
/// `token68`, optional ASCII white space; nothing else. Decided on the exact bytes
/// before any cache is consulted.
///
/// No header, or a well-formed credential of another scheme: [`Error::MissingToken`]
/// (the challenge then carries no error code, RFC 6750 §3.1). Anything else (several
/// credentials, as when a client sends the header twice and the runtime joins them
/// with `, `; an empty token; Unicode spaces; characters outside `token68`):
/// [`Error::InvalidRequest`].
///
/// Because everything accepted is ASCII, a byte offset into the header is also its
/// offset in the JavaScript (UTF-16) string the entry slices: the offsets that cross
/// to JS ([`crate::authorizer::Pending::to_wire`]) are in one unit by construction.
pub fn bearer(authorization: Option<&str>) -> Result<&str, Error> {
    credential(authorization, false).map(|(_, token)| token)
}

/// How a token was presented (RFC 6750 `Bearer`, RFC 9449 `DPoP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    DPoP,
}

/// The scheme an `Authorization` value names (`None`: neither), without checking the
/// rest: the decision checked it already.
pub fn scheme(authorization: Option<&str>) -> Option<Scheme> {
    let value = authorization?.trim_start_matches([' ', '\t']);
    let name = value.split(' ').next().unwrap_or_default();
    if name.eq_ignore_ascii_case("dpop") {
        Some(Scheme::DPoP)
    } else if name.eq_ignore_ascii_case("bearer") {
        Some(Scheme::Bearer)
    } else {
        None
    }
}

/// The token of a credential the decision already took (either scheme), or `""`.
pub fn presented(authorization: Option<&str>) -> &str {
    credential(authorization, true)
        .map(|(_, t)| t)
        .unwrap_or_default()
}

/// Take the token and its scheme from the `Authorization` header value, as
/// [`bearer`] does; with `dpop`, the `DPoP` scheme (RFC 9449 §7.1, the same token68
/// syntax) is a credential too, else it is "no token" like any other scheme.
pub fn credential(authorization: Option<&str>, dpop: bool) -> Result<(Scheme, &str), Error> {
    let Some(value) = authorization else {
        return Err(Error::MissingToken);
    };
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let malformed = || {
        Error::InvalidRequest(
            "malformed Authorization header: send `Bearer <token>` (one credential, ASCII spaces only)"
                .into(),
        )
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case("dpop") {
        Scheme::DPoP
    } else {
        // Another scheme (Basic, DPoP without support, ...) is no bearer token; a
        // scheme that is not even an RFC 9110 token is a malformed header.
        return if !scheme.is_empty() && scheme.bytes().all(is_tchar) {
            Err(Error::MissingToken)
        } else {
            Err(malformed())
        };
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Error::InvalidRequest(
            "the Authorization header has no bearer token".into(),
        ));
    }
    // Bytes, not chars, and a table: this runs on every request. A JWT (base64url and
    // dots) passes in one look per byte; anything else gets the full token68 check.
    if !jwt_alphabet(token) && !is_token68(token) {
        return Err(if token.bytes().any(|b| matches!(b, b',' | b' ' | b'\t')) {
            Error::InvalidRequest(
                "send exactly one bearer token in one Authorization header".into(),
            )
        } else {
            malformed()
        });
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::InvalidToken(format!(
            "token longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok((scheme, token))
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §11.2 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Bytes a compact JWS may hold: the base64url alphabet and `.`.
const JWT_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    t
};

fn jwt_alphabet(token: &str) -> bool {
    token.bytes().all(|b| JWT_BYTES[b as usize])
}

/// Is `segment` base64url (RFC 7515 §2: no padding) in its one canonical spelling?
/// The unused low bits of the last character must be zero and the length must not
/// leave a lone character: otherwise one token has many spellings (and many cache
/// entries), while WebCrypto's decoder would accept them all as the same bytes.
pub fn canonical_b64url(segment: &str) -> bool {
    fn value(c: u8) -> Option<u8> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        })
    }
    let Some(&last) = segment.as_bytes().last() else {
        return true;
    };
    let Some(v) = value(last) else { return false };
    match segment.len() % 4 {
        1 => false,
        2 => v & 0x0f == 0,
        3 => v & 0x03 == 0,
        _ => true,
    }
}

fn b64(segment: &str, what: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Error::InvalidToken(format!("the token's {what} is not base64url")))
}

/// Split and decode a JWT, and check its header against the allowlist.
pub fn parse<'a>(token: &'a str, algorithms: &[Algorithm]) -> Result<Jwt<'a>, Error> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::InvalidToken(format!(
            "token longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    if !jwt_alphabet(token) {
        return Err(Error::InvalidToken(
            "the token has characters outside base64url".into(),
        ));
    }
    let segments = token.split('.').count();
    if segments == 5 {
        return Err(Error::InvalidToken(
            "encrypted (JWE) access tokens are not supported; the worker needs signed JWTs".into(),
        ));
    }
    if segments != 3 {
        return Err(Error::InvalidToken(format!(
            "the token is not a JWT ({segments} segment(s) instead of 3); is the authorization server issuing opaque tokens? Set INTROSPECTION_URL to check them, or have it issue JWT access tokens (Hydra: strategies.access_token = jwt)"
        )));
    }
    let (signing_input, signature_b64) = token.rsplit_once('.').expect("three segments");
    let (header_b64, payload_b64) = signing_input.split_once('.').expect("three segments");
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(Error::InvalidToken(
            "the token has an empty segment (unsigned tokens are refused)".into(),
        ));
    }
    for (segment, what) in [
        (header_b64, "header"),
        (payload_b64, "payload"),
        (signature_b64, "signature"),
    ] {
        if !canonical_b64url(segment) {
            return Err(Error::InvalidToken(format!(
                "the token's {what} is not canonical base64url (RFC 7515: unpadded, unused bits zero)"
            )));
        }
    }
    let header: Header = serde_json::from_slice(&b64(header_b64, "header")?)
        .map_err(|e| shape_error("header", &e))?;
    let alg: Algorithm = header
        .alg
        .parse()
        .ok()
        .filter(|a| algorithms.contains(a))
        .ok_or_else(|| {
            Error::InvalidToken(format!(
                "alg {:?} is not accepted (accepted: {})",
                header.alg,
                names(algorithms)
            ))
        })?;
    if header.crit.is_some() {
        return Err(Error::InvalidToken(
            "the token header has crit extensions the worker does not understand".into(),
        ));
    }
    let claims: Claims = serde_json::from_slice(&b64(payload_b64, "payload")?)
        .map_err(|e| shape_error("claims", &e))?;
    Ok(Jwt {
        header,
        alg,
        signing_input,
        signature_b64,
        claims,
    })
}

/// A media type as JWT `typ` carries it, compared case-insensitively and without the
/// optional `application/` prefix (RFC 7515 §4.1.9, RFC 9068 §2.1).
fn media_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    t.strip_prefix("application/")
        .map(str::to_string)
        .unwrap_or(t)
}

/// With `TOKEN_TYP` set (e.g. `at+jwt`), the header's `typ` must name that type, so
/// an ID token or another JWT from the same issuer is not taken for an access token.
pub fn check_typ(typ: Option<&str>, required: &str) -> Result<(), Error> {
    match typ {
        Some(t) if media_type(t) == media_type(required) => Ok(()),
        _ => Err(Error::InvalidToken(format!(
            "the token's typ is not {required} (TOKEN_TYP); is it an access token?"
        ))),
    }
}

/// Describe a header or claims set that does not parse, without quoting any of its
/// content (serde's messages quote values, and those come from the token).
fn shape_error(what: &str, e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Data => "has a missing, duplicate or wrongly typed member",
        Category::Syntax | Category::Eof | Category::Io => "is not valid JSON",
    };
    Error::InvalidToken(format!("the token {what} {kind} (column {})", e.column()))
}

fn names(algorithms: &[Algorithm]) -> String {
    algorithms
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Check the claims of a token whose signature has been verified.
pub fn check_claims(
    claims: &Claims,
    kid: Option<&str>,
    cfg: &Config,
    now: i64,
) -> Result<Principal, Error> {
    match claims.iss.as_deref() {
        Some(iss) if iss == cfg.upstream.issuer => {}
        Some(iss) => {
            return Err(Error::InvalidToken(format!(
                "the token's issuer {iss:?} is not the configured issuer {:?}",
                cfg.upstream.issuer
            )))
        }
        None => return Err(Error::InvalidToken("the token has no iss".into())),
    }
    let leeway = cfg.tokens.leeway;
    let exp = claims
        .exp
        .filter(|e| e.is_finite())
        .ok_or_else(|| Error::InvalidToken("the token has no valid exp".into()))?
        .floor() as i64;
    if now > exp.saturating_add(leeway) {
        return Err(Error::InvalidToken("the token has expired".into()));
    }
    let nbf = claims
        .nbf
        .filter(|n| n.is_finite())
        .map(|n| n.floor() as i64);
    if let Some(nbf) = nbf {
        if now.saturating_add(leeway) < nbf {
            return Err(Error::InvalidToken(
                "the token is not valid yet (nbf)".into(),
            ));
        }
    }
    if let Some(iat) = claims.iat.filter(|i| i.is_finite()) {
        if (iat.floor() as i64) > now.saturating_add(leeway) {
            return Err(Error::InvalidToken(
                "the token was issued in the future (iat)".into(),
            ));
        }
    }
    let aud = claims
        .aud
        .as_ref()
        .map(OneOrMany::values)
        .unwrap_or_default();
    if aud.is_empty() {
        return Err(Error::InvalidToken(format!(
            "the token has no audience; the authorization server must bind it to {} (RFC 8707 resource parameter; Ory Hydra ignores it: set AS_FLAVOR=hydra on the worker, which asks Hydra for the audience)",
            cfg.tokens.audiences.join(" ")
        )));
    }
    if !aud
        .iter()
        .any(|a| cfg.tokens.audiences.iter().any(|ok| ok == a))
    {
        return Err(Error::InvalidToken(format!(
            "the token's audience {} does not include {}",
            aud.join(" "),
            cfg.tokens.audiences.join(" ")
        )));
    }
    let mut scopes: Vec<String> = Vec::new();
    for source in [&claims.scope, &claims.scp].into_iter().flatten() {
        for value in source.values() {
            for s in value.split_whitespace() {
                if !scopes.iter().any(|x| x == s) {
                    scopes.push(s.to_string());
                }
            }
        }
    }
    Ok(Principal {
        subject: claims.sub.clone(),
        client_id: claims.client_id.clone().or_else(|| claims.azp.clone()),
        scopes,
        exp,
        nbf,
        kid: kid.map(str::to_string),
        jkt: claims.cnf.as_ref().and_then(|c| c.jkt.clone()),
    })
}

/// Scopes among `needed` that `principal` lacks: neither holds nor holds a broader
/// scope implying ([`crate::policy::Hierarchy`]).
pub fn missing_scopes(
    principal: &Principal,
    needed: &[String],
    hierarchy: &crate::policy::Hierarchy,
) -> Vec<String> {
    needed
        .iter()
        .filter(|s| hierarchy.grantor(&principal.scopes, s).is_none())
        .cloned()
        .collect()
}

/// Verify a JWT's signature with jsonwebtoken's pure-Rust backend (host builds).
#[cfg(not(target_arch = "wasm32"))]
pub fn verify_native(jwt: &Jwt<'_>, key: &crate::jwks::Key) -> Result<(), Error> {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone())
        .map_err(|e| Error::KeysUnavailable(format!("unusable key: {e}").into()))?;
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk)
        .map_err(|e| Error::KeysUnavailable(format!("unusable key: {e}").into()))?;
    match jsonwebtoken::crypto::verify(
        jwt.signature_b64,
        jwt.signing_input.as_bytes(),
        &decoding,
        jwt.alg,
    ) {
        Ok(true) => Ok(()),
        _ => Err(Error::InvalidToken(
            "the token's signature does not verify".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;
    use serde_json::json;

    fn enc(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn unsigned(header: serde_json::Value, claims: serde_json::Value) -> String {
        format!("{}.{}.c2ln", enc(&header), enc(&claims))
    }

    fn good_claims() -> serde_json::Value {
        json!({"iss": "https://mcp.example.com/oidc", "sub": "u1", "aud": "https://mcp.example.com/mcp", "exp": 2000, "iat": 900, "scope": "mcp:tools", "client_id": "c1"})
    }

    fn claims(v: serde_json::Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn typ_is_compared_as_a_media_type() {
        assert!(check_typ(Some("at+jwt"), "at+jwt").is_ok());
        assert!(check_typ(Some("application/AT+JWT"), "at+jwt").is_ok());
        assert!(check_typ(Some("JWT"), "at+jwt").is_err());
        assert!(check_typ(None, "at+jwt").is_err());
    }

    #[test]
    fn bearer_syntax_is_narrow() {
        // Optional ASCII white space around the field value, any case, 1+ spaces.
        assert_eq!(bearer(Some(" \tBEARER  a.b.c \t")), Ok("a.b.c"));
        assert_eq!(bearer(Some("Bearer abc+/~==")), Ok("abc+/~=="));
        // Unicode spaces, a tab between scheme and token, characters outside token68,
        // padding in the middle: malformed, never a token.
        for bad in [
            "\u{a0}Bearer a.b.c",
            "\u{3000}Bearer a.b.c",
            "Bearer\u{a0}a.b.c",
            "Bearer a.b.c\u{a0}",
            "Bearer\ta.b.c",
            "Bearer a.b.c\u{3000}",
            "Bearer a=b",
            "Bearer a\"b",
            "Bearer a.b.c;",
            "Bearer ===",
            "\u{a0}Basic x",
        ] {
            assert!(
                matches!(bearer(Some(bad)), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        // A well-formed credential of another scheme carries no bearer token.
        assert_eq!(bearer(Some("DPoP a.b.c")), Err(Error::MissingToken));
        assert_eq!(
            bearer(Some("  Basic dXNlcjpwdw==")),
            Err(Error::MissingToken)
        );
    }

    #[test]
    fn canonical_base64url_only() {
        // "sig" encodes to "c2ln"; "si" to "c2k" (last char's two low bits zero).
        assert!(canonical_b64url("c2ln"));
        assert!(canonical_b64url("c2k"));
        assert!(!canonical_b64url("c2l"), "non-zero trailing bits");
        assert!(!canonical_b64url("c2m"), "non-zero trailing bits");
        assert!(canonical_b64url("cw"));
        assert!(!canonical_b64url("cx"), "non-zero trailing bits");
        assert!(!canonical_b64url("c2lnA"), "a lone final character");
        assert!(!canonical_b64url("c2k="), "padding");
        let t = unsigned(json!({"alg": "RS256", "kid": "k"}), good_claims());
        let (input, _) = t.rsplit_once('.').unwrap();
        assert!(parse(&format!("{input}.c2k"), &[Algorithm::RS256]).is_ok());
        for sig in ["c2l", "c2m", "c2lnA"] {
            let e = parse(&format!("{input}.{sig}"), &[Algorithm::RS256]).unwrap_err();
            assert!(e.to_string().contains("canonical"), "{e}");
        }
        // A header or payload spelled with trailing bits set is refused the same way.
        let (h, rest) = t.split_once('.').unwrap();
        let last = h.as_bytes()[h.len() - 1];
        if h.len() % 4 != 0 {
            let bumped = format!("{}{}.{rest}", &h[..h.len() - 1], (last + 1) as char);
            assert!(parse(&bumped, &[Algorithm::RS256]).is_err());
        }
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer(None), Err(Error::MissingToken));
        assert_eq!(bearer(Some("Basic dXNlcjpwdw==")), Err(Error::MissingToken));
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer   abc")), Ok("abc"));
        assert!(matches!(
            bearer(Some("Bearer")),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            bearer(Some("Bearer a, Bearer b")),
            Err(Error::InvalidRequest(_))
        ));
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(bearer(Some(&huge)), Err(Error::InvalidToken(_))));
    }

    #[test]
    fn structural_refusals() {
        let algs = [Algorithm::RS256];
        let ok_header = json!({"alg": "RS256", "kid": "k"});
        let cases = [
            "a.b".to_string(),
            "a.b.c.d".into(),
            "a.b.c.d.e".into(),
            "a+b.c.d".into(),
            format!("{}.{}.", enc(&ok_header), enc(&good_claims())),
            unsigned(json!({"alg": "none"}), good_claims()),
            unsigned(json!({"alg": "NONE"}), good_claims()),
            unsigned(json!({"alg": "HS256"}), good_claims()),
            unsigned(json!({"alg": "ES256"}), good_claims()),
            unsigned(json!({"alg": "RS256", "crit": ["exp"]}), good_claims()),
            unsigned(json!({"kid": "k"}), good_claims()),
            format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","alg":"none"}"#),
                enc(&good_claims())
            ),
            unsigned(ok_header.clone(), json!({"exp": "tomorrow"})),
            format!("{}.bm90IGpzb24.c2ln", enc(&ok_header)),
        ];
        for t in &cases {
            assert!(
                matches!(parse(t, &algs), Err(Error::InvalidToken(_))),
                "{t}"
            );
        }
        let jwe = parse("a.b.c.d.e", &algs).unwrap_err();
        assert!(jwe.to_string().contains("JWE"));
        // Claim values never reach the description.
        let t = unsigned(ok_header.clone(), json!({"exp": "c3VwZXItc2VjcmV0"}));
        let err = parse(&t, &algs).unwrap_err().to_string();
        assert!(err.contains("wrongly typed"), "{err}");
        assert!(!err.contains("c3VwZXItc2VjcmV0"), "{err}");
    }

    #[test]
    fn parses_a_well_formed_token_and_ignores_key_url_headers() {
        let t = unsigned(
            json!({"alg": "RS256", "kid": "k", "jku": "https://evil/jwks", "x5u": "https://evil", "typ": "at+jwt"}),
            good_claims(),
        );
        let jwt = parse(&t, &[Algorithm::RS256]).unwrap();
        assert_eq!(jwt.alg, Algorithm::RS256);
        assert_eq!(jwt.header.kid.as_deref(), Some("k"));
        assert_eq!(jwt.signature_b64, URL_SAFE_NO_PAD.encode(b"sig"));
        assert_eq!(jwt.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn claim_checks() {
        let cfg = config();
        let p = check_claims(&claims(good_claims()), Some("k"), &cfg, 1000).unwrap();
        assert_eq!(p.subject.as_deref(), Some("u1"));
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        assert_eq!(p.scopes, vec!["mcp:tools"]);

        let refuse = |patch: serde_json::Value, now: i64, needle: &str| {
            let mut c = good_claims();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            let err = check_claims(&claims(c), None, &cfg, now).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidToken(d) if d.contains(needle)),
                "{err:?} lacks {needle}"
            );
        };
        refuse(
            json!({"iss": "https://mcp.example.com/oidc/"}),
            1000,
            "issuer",
        );
        refuse(
            json!({"iss": "HTTPS://mcp.example.com/oidc"}),
            1000,
            "issuer",
        );
        refuse(json!({"iss": null}), 1000, "no iss");
        refuse(json!({"exp": null}), 1000, "exp");
        refuse(json!({}), 2061, "expired");
        refuse(json!({"nbf": 1100}), 1000, "nbf");
        refuse(json!({"iat": 5000}), 1000, "future");
        refuse(json!({"aud": null}), 1000, "no audience");
        refuse(json!({"aud": []}), 1000, "no audience");
        refuse(
            json!({"aud": "https://other.example/mcp"}),
            1000,
            "does not include",
        );
        refuse(json!({"aud": ["account"]}), 1000, "does not include");
        // Within the leeway both ways.
        assert!(check_claims(&claims(good_claims()), None, &cfg, 2059).is_ok());
    }

    #[test]
    fn token_shapes_of_real_servers() {
        let cfg = config();
        // Hydra: aud array, scp array, nbf, ext.
        let hydra = json!({"iss": "https://mcp.example.com/oidc", "sub": "u", "aud": ["https://mcp.example.com/mcp"], "exp": 2000, "nbf": 900, "scp": ["mcp:tools", "openid"], "client_id": "c", "ext": {}});
        let p = check_claims(&claims(hydra), None, &cfg, 1000).unwrap();
        assert_eq!(p.scopes, vec!["mcp:tools", "openid"]);
        // Keycloak / Auth0: azp instead of client_id, aud array with extra entries.
        let kc = json!({"iss": "https://mcp.example.com/oidc", "sub": "u", "aud": ["account", "https://mcp.example.com/mcp"], "exp": 2000, "azp": "kc-client", "scope": "mcp:tools profile", "typ": "Bearer"});
        let p = check_claims(&claims(kc), None, &cfg, 1000).unwrap();
        assert_eq!(p.client_id.as_deref(), Some("kc-client"));
        assert_eq!(p.scopes, vec!["mcp:tools", "profile"]);
    }

    #[test]
    fn missing_scopes_are_listed() {
        let p = check_claims(&claims(good_claims()), None, &config(), 1000).unwrap();
        assert!(missing_scopes(&p, &["mcp:tools".into()], &Default::default()).is_empty());
        assert_eq!(
            missing_scopes(
                &p,
                &["mcp:tools".into(), "mcp:admin".into()],
                &Default::default()
            ),
            vec!["mcp:admin"]
        );
    }
}
