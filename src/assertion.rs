//! The identity assertion the worker signs for the origin (`ASSERTION_KEY`), pure:
//! the keys, the claims and the signing input; the JS entry signs with WebCrypto.
//!
//! An origin that is reachable other than through the worker cannot trust the
//! `X-Auth-*` headers; it can verify this short-lived JWT with any JOSE library
//! against the worker's JWKS (`/.well-known/mcp-edge-auth/jwks.json`):
//!
//! * header: `alg` (`ES256` or `EdDSA`, the key's), `typ` `mcp-edge+jwt`, `kid`;
//! * claims: `iss` the worker (the origin of `RESOURCE_URL`), `aud`
//!   (`ASSERTION_AUDIENCE`, default the origin of `ORIGIN_URL`), `sub`, `client_id`,
//!   `scope` (what the token was granted), `token_iss` (the issuer of the client's
//!   token), `iat`, `exp` (at most `ASSERTION_TTL_SECONDS` later, never past the
//!   token's own `exp`), `jti`. Never the client's token.
//!
//! Signed once per validated token and time window, never per request: the claims of
//! one token are the same within a window of half the TTL, so the entry reuses the
//! signature it made for the same signing input ([`signing_input`]).

use crate::error::Error;
use crate::token::Principal;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Where the worker publishes the assertion keys.
pub const JWKS_PATH: &str = "/.well-known/mcp-edge-auth/jwks.json";
/// The longest `ASSERTION_TTL_SECONDS` (its default, like the header's, is in
/// [`crate::config::TABLE`]: `X-Auth-Assertion`, under `X-Auth-`, so a client's copy
/// is always stripped).
pub const MAX_TTL_SECONDS: i64 = 3600;

/// A signing key from a binding: its public JWK (with `kid`, `alg`, `use`), the
/// private JWK the entry imports into WebCrypto, and the JWS algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: &'static str,
    pub public: Value,
    private: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// The private JWK, for the entry's `crypto.subtle.importKey` (never logged).
    pub fn private_jwk(&self) -> &Value {
        &self.private
    }

    /// WebCrypto's import and sign parameters for this key, as JSON.
    pub fn webcrypto(&self) -> (Value, Value) {
        match self.alg {
            "ES256" => (
                json!({"name": "ECDSA", "namedCurve": "P-256"}),
                json!({"name": "ECDSA", "hash": "SHA-256"}),
            ),
            _ => (json!({"name": "Ed25519"}), json!({"name": "Ed25519"})),
        }
    }
}

/// A member that must be base64url of exactly `len` bytes.
fn octets(map: &Map<String, Value>, member: &str, len: usize) -> Result<String, String> {
    let v = map
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("has no \"{member}\""))?;
    match URL_SAFE_NO_PAD.decode(v) {
        Ok(b) if b.len() == len => Ok(v.to_string()),
        _ => Err(format!(
            "\"{member}\" is not {len} bytes of unpadded base64url"
        )),
    }
}

/// Parse a private JWK: EC P-256 (ES256) or OKP Ed25519 (EdDSA). Without a `kid`,
/// the key's RFC 7638 thumbprint is its `kid`. Errors say what is wrong, never the
/// key.
pub fn parse_key(json: &str) -> Result<SigningKey, String> {
    let map: Map<String, Value> = serde_json::from_str(json)
        .map_err(|_| "is not a JSON object (a private JWK)".to_string())?;
    let kty = map.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = map.get("crv").and_then(Value::as_str).unwrap_or_default();
    let (alg, public) = match (kty, crv) {
        ("EC", "P-256") => {
            let (x, y) = (octets(&map, "x", 32)?, octets(&map, "y", 32)?);
            octets(&map, "d", 32)?;
            ("ES256", json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}))
        }
        ("OKP", "Ed25519") => {
            let x = octets(&map, "x", 32)?;
            octets(&map, "d", 32)?;
            ("EdDSA", json!({"crv": "Ed25519", "kty": "OKP", "x": x}))
        }
        _ => {
            return Err(format!(
                "is a {kty:?} {crv:?} key; an EC P-256 (ES256) or OKP Ed25519 (EdDSA) private JWK is required"
            ))
        }
    };
    if let Some(a) = map.get("alg").and_then(Value::as_str) {
        if a != alg {
            return Err(format!("names alg {a:?}, but its key is for {alg}"));
        }
    }
    // RFC 7638: the required members, in lexical order, without white space (the
    // json! objects above are in that order).
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(public.to_string()));
    let kid = match map.get("kid") {
        None => thumbprint,
        Some(Value::String(k))
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') =>
        {
            k.clone()
        }
        Some(_) => return Err("has a \"kid\" that is not a plain ASCII string".into()),
    };
    let mut public = public;
    public["kid"] = json!(kid);
    public["alg"] = json!(alg);
    public["use"] = json!("sig");
    let mut private = map;
    private.remove("kid");
    private.remove("alg");
    private.remove("use");
    private.remove("key_ops");
    Ok(SigningKey {
        kid,
        alg,
        public,
        private: Value::Object(private),
    })
}

/// The assertion settings (`ASSERTION_*` bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Signs.
    pub key: SigningKey,
    /// Published, never signs: the next key before it becomes current, or the last
    /// one while assertions it signed may still be in flight.
    pub second: Option<SigningKey>,
    pub issuer: String,
    pub audience: String,
    pub ttl: i64,
    /// The request header the origin gets it in, lowercase; `authorization` sends it
    /// as `Bearer <assertion>` (for origins built on an OAuth resource-server library).
    pub header: String,
    /// The JWS header, base64url: the same for every assertion of the key.
    encoded_header: String,
}

/// The claims, serialised from borrowed values (no JSON tree per request).
#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    scope: String,
    token_iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

impl Settings {
    /// The JWKS the worker publishes: the signing key, then the second one.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.key)
            .chain(self.second.as_ref())
            .map(|k| &k.public)
            .collect();
        json!({ "keys": keys })
    }
}

/// The start of the window `now` falls in: windows of half the TTL, the assertion's
/// `iat`.
fn window_start(s: &Settings, now: i64) -> i64 {
    now - now.rem_euclid((s.ttl / 2).max(1))
}

/// The JWS signing input (`header.payload`) of the assertion for `p`, whose token
/// hashes to `token_hash`, at `now`. The same for one token within a window of half
/// the TTL, so one signature serves every request of the window.
pub fn signing_input(
    s: &Settings,
    p: &Principal,
    token_issuer: &str,
    token_hash: &[u8; 32],
    now: i64,
) -> String {
    let iat = window_start(s, now);
    let exp = (iat + s.ttl).min(p.exp);
    let mut jti = Sha256::new();
    jti.update(token_hash);
    jti.update(iat.to_be_bytes());
    let jti = URL_SAFE_NO_PAD.encode(&jti.finalize()[..16]);
    let claims = Claims {
        iss: &s.issuer,
        aud: &s.audience,
        iat,
        exp,
        jti: &jti,
        scope: p.scopes.join(" "),
        token_iss: token_issuer,
        sub: p.subject.as_deref(),
        client_id: p.client_id.as_deref(),
    };
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    let mut input = String::with_capacity(s.encoded_header.len() + 1 + payload.len() * 4 / 3 + 4);
    input.push_str(&s.encoded_header);
    input.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut input);
    input
}

/// The signing inputs made for the tokens of an isolate, by token hash: one per token
/// and window, so a request whose token was seen in the window gets its input without
/// building it again. Bounded: dropped wholesale when full.
#[derive(Debug, Default)]
pub struct Inputs {
    made: std::cell::RefCell<std::collections::HashMap<[u8; 32], Made>>,
}

/// An input and the window it was made in.
type Made = (i64, std::rc::Rc<str>);

/// How many inputs an isolate keeps (the token cache's capacity).
pub const MAX_INPUTS: usize = 4096;

impl Inputs {
    /// The input for this token at `now`: the one made in the current window, or a
    /// new one ([`signing_input`]).
    pub fn get(
        &self,
        s: &Settings,
        p: &Principal,
        token_issuer: &str,
        token_hash: &[u8; 32],
        now: i64,
    ) -> std::rc::Rc<str> {
        let window = window_start(s, now);
        let mut made = self.made.borrow_mut();
        if let Some((w, input)) = made.get(token_hash) {
            if *w == window {
                return input.clone();
            }
        }
        if made.len() >= MAX_INPUTS {
            made.clear();
        }
        let input: std::rc::Rc<str> = signing_input(s, p, token_issuer, token_hash, now).into();
        made.insert(*token_hash, (window, input.clone()));
        input
    }
}

/// Read the `ASSERTION_*` bindings; `None` without `ASSERTION_KEY`. Errors name the
/// binding.
pub fn from_bindings(
    get: &dyn Fn(&str) -> Option<String>,
    resource: &url::Url,
    origin: &url::Url,
) -> Result<Option<Settings>, Error> {
    let problem = |binding: &str, problem: String| Error::Config {
        binding: binding.into(),
        problem,
    };
    let Some(key) = get("ASSERTION_KEY") else {
        for b in [
            "ASSERTION_SECOND_KEY",
            "ASSERTION_AUDIENCE",
            "ASSERTION_TTL_SECONDS",
            "ASSERTION_HEADER",
        ] {
            if get(b).is_some() {
                return Err(problem(b, "is set, but ASSERTION_KEY is not".into()));
            }
        }
        return Ok(None);
    };
    let key = parse_key(&key).map_err(|e| problem("ASSERTION_KEY", e))?;
    let second = get("ASSERTION_SECOND_KEY")
        .map(|k| parse_key(&k).map_err(|e| problem("ASSERTION_SECOND_KEY", e)))
        .transpose()?;
    if second.as_ref().is_some_and(|s| s.kid == key.kid) {
        return Err(problem(
            "ASSERTION_SECOND_KEY",
            "has the same kid as ASSERTION_KEY".into(),
        ));
    }
    let or_default =
        |name: &str| get(name).or_else(|| crate::config::default_of(name).map(String::from));
    let ttl = or_default("ASSERTION_TTL_SECONDS")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| (1..=MAX_TTL_SECONDS).contains(n))
        .ok_or_else(|| {
            problem(
                "ASSERTION_TTL_SECONDS",
                format!("must be a number of seconds, 1 to {MAX_TTL_SECONDS}"),
            )
        })?;
    let header = or_default("ASSERTION_HEADER")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if header != "authorization"
        && !(header.starts_with("x-auth-") && crate::policy::is_token(&header))
    {
        return Err(problem(
            "ASSERTION_HEADER",
            "must be Authorization or a header named X-Auth-… (the prefix the worker strips from clients)".into(),
        ));
    }
    let encoded_header = URL_SAFE_NO_PAD
        .encode(json!({"alg": key.alg, "kid": key.kid, "typ": "mcp-edge+jwt"}).to_string());
    Ok(Some(Settings {
        encoded_header,
        key,
        second,
        issuer: resource.origin().ascii_serialization(),
        audience: get("ASSERTION_AUDIENCE")
            .map(|a| a.trim().to_string())
            .unwrap_or_else(|| origin.origin().ascii_serialization()),
        ttl,
        header,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE"}"#;
    pub const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"ed-1"}"#;

    #[test]
    fn keys_parse_with_a_thumbprint_kid_and_never_print_the_private_part() {
        let k = parse_key(EC).unwrap();
        assert_eq!(k.alg, "ES256");
        assert_eq!(k.kid.len(), 43, "a SHA-256 thumbprint");
        assert_eq!(k.public["use"], "sig");
        assert!(k.public.get("d").is_none());
        assert!(!format!("{k:?}").contains("870MB6"));
        // RFC 8037 A.3: the thumbprint of its Ed25519 example key.
        let no_kid = ED.replace(r#","kid":"ed-1""#, "");
        assert_eq!(
            parse_key(&no_kid).unwrap().kid,
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let e = parse_key(ED).unwrap();
        assert_eq!((e.kid.as_str(), e.alg), ("ed-1", "EdDSA"));
        for (bad, needle) in [
            ("{", "not a JSON object"),
            (r#"{"kty":"RSA"}"#, "EC P-256"),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
                "has no \"d\"",
            ),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}"#,
                "32 bytes",
            ),
        ] {
            let err = parse_key(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
        let wrong_alg = ED.replace(r#""kid""#, r#""alg":"ES256","kid""#);
        assert!(parse_key(&wrong_alg).unwrap_err().contains("alg"));
    }

    fn settings() -> Settings {
        let get = |k: &str| match k {
            "ASSERTION_KEY" => Some(ED.to_string()),
            "ASSERTION_SECOND_KEY" => Some(EC.to_string()),
            _ => None,
        };
        let r = url::Url::parse("https://mcp.example.com/mcp").unwrap();
        let o = url::Url::parse("http://10.0.0.5:8080/base").unwrap();
        from_bindings(&get, &r, &o).unwrap().unwrap()
    }

    fn principal(exp: i64) -> Principal {
        Principal {
            subject: Some("alice".into()),
            client_id: Some("app".into()),
            scopes: vec!["mcp:tools".into(), "tools:call".into()],
            exp,
            nbf: None,
            kid: None,
            jkt: None,
        }
    }

    fn claims(input: &str) -> (Value, Value) {
        let (h, c) = input.split_once('.').unwrap();
        let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap();
        (h, c)
    }

    #[test]
    fn the_assertion_names_the_caller_for_the_origin_and_is_reused_within_its_window() {
        let s = settings();
        assert_eq!(s.issuer, "https://mcp.example.com");
        assert_eq!(s.audience, "http://10.0.0.5:8080");
        let input = signing_input(
            &s,
            &principal(10_000),
            "https://as.example.com",
            &[7; 32],
            1_000,
        );
        let (h, c) = claims(&input);
        assert_eq!(
            h,
            json!({"alg": "EdDSA", "kid": "ed-1", "typ": "mcp-edge+jwt"})
        );
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["client_id"], "app");
        assert_eq!(c["scope"], "mcp:tools tools:call");
        assert_eq!(c["token_iss"], "https://as.example.com");
        assert_eq!(c["iat"], 900, "the window's start (windows of 150 s)");
        assert_eq!(c["exp"], 1_200);
        // The same token within the window: the same input, one signature.
        assert_eq!(
            signing_input(
                &s,
                &principal(10_000),
                "https://as.example.com",
                &[7; 32],
                1_049
            ),
            input
        );
        // The next window, or another token: another jti.
        let next = signing_input(
            &s,
            &principal(10_000),
            "https://as.example.com",
            &[7; 32],
            1_050,
        );
        assert_ne!(claims(&next).1["jti"], c["jti"]);
        let other = signing_input(
            &s,
            &principal(10_000),
            "https://as.example.com",
            &[8; 32],
            1_000,
        );
        assert_ne!(claims(&other).1["jti"], c["jti"]);
        // Never past the token's own exp.
        let short = signing_input(
            &s,
            &principal(1_010),
            "https://as.example.com",
            &[7; 32],
            1_000,
        );
        assert_eq!(claims(&short).1["exp"], 1_010);
        // Both keys published, the signing key first.
        let jwks = s.jwks();
        assert_eq!(jwks["keys"][0]["kid"], "ed-1");
        assert_eq!(jwks["keys"][1]["alg"], "ES256");
        assert!(!jwks.to_string().contains("\"d\""));
    }

    #[test]
    fn inputs_are_made_once_per_token_and_window() {
        let s = settings();
        let inputs = Inputs::default();
        let a = inputs.get(&s, &principal(10_000), "i", &[1; 32], 1_000);
        let b = inputs.get(&s, &principal(10_000), "i", &[1; 32], 1_049);
        assert!(std::rc::Rc::ptr_eq(&a, &b), "the same input, not rebuilt");
        let c = inputs.get(&s, &principal(10_000), "i", &[1; 32], 1_050);
        assert_ne!(a, c, "a new window");
        assert_eq!(
            &*c,
            signing_input(&s, &principal(10_000), "i", &[1; 32], 1_050)
        );
    }

    #[test]
    fn bindings_are_checked_and_named() {
        let r = url::Url::parse("https://mcp.example.com/mcp").unwrap();
        let cases: [(&[(&str, &str)], &str); 5] = [
            (&[("ASSERTION_AUDIENCE", "x")], "ASSERTION_AUDIENCE"),
            (&[("ASSERTION_KEY", "{}")], "ASSERTION_KEY"),
            (
                &[("ASSERTION_KEY", ED), ("ASSERTION_SECOND_KEY", ED)],
                "ASSERTION_SECOND_KEY",
            ),
            (
                &[("ASSERTION_KEY", ED), ("ASSERTION_TTL_SECONDS", "0")],
                "ASSERTION_TTL_SECONDS",
            ),
            (
                &[("ASSERTION_KEY", ED), ("ASSERTION_HEADER", "X-User")],
                "ASSERTION_HEADER",
            ),
        ];
        for (vars, binding) in cases {
            let get = |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            match from_bindings(&get, &r, &r) {
                Err(Error::Config { binding: b, .. }) => assert_eq!(b, binding),
                other => panic!("{vars:?}: {other:?}"),
            }
        }
        let get = |k: &str| match k {
            "ASSERTION_KEY" => Some(ED.to_string()),
            "ASSERTION_HEADER" => Some("Authorization".to_string()),
            _ => None,
        };
        let s = from_bindings(&get, &r, &r).unwrap().unwrap();
        assert_eq!(
            s.header, "authorization",
            "the entry sends it as `Bearer <jws>`"
        );
        let none = |_: &str| None;
        assert_eq!(from_bindings(&none, &r, &r).unwrap(), None);
    }
}
