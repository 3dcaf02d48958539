//! JSON Web Key Sets (RFC 7517): which keys may verify access tokens, and when to
//! fetch the set again.
//!
//! A key is usable when it is a public signature key (`use` absent or `sig`,
//! `key_ops` absent or including `verify`) of a family the allowed algorithms can use
//! (RSA, EC P-256/P-384, OKP Ed25519) and, when it names an `alg`, that algorithm is
//! allowed. Symmetric (`oct`) keys, encryption keys (Keycloak's `use: enc`) and keys the
//! worker cannot parse are skipped with a note; a set with no usable key is an error.
//! Only public members are kept, so a set that leaks a private `d` never passes it on.

use crate::error::{Error, Fault};
use jsonwebtoken::Algorithm;
use serde_json::{json, Map, Value};

/// Largest JWKS document the worker reads.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest a fetched set is used before it is fetched again, unless
/// `JWKS_CACHE_SECONDS` says otherwise.
pub const TTL_SECONDS: i64 = 600;
/// Shortest time between two fetches while refreshes past the TTL fail.
pub const REFRESH_INTERVAL_SECONDS: i64 = 30;
/// Shortest time between two fetches triggered by an unknown `kid`. Short, because an
/// authorization server may sign with a new key the moment it publishes it (Ory
/// Hydra does), and a refused token sends the client back to its login page; long
/// enough that a flood of made-up `kid`s costs the authorization server at most one
/// fetch per cooldown (fetches are also single-flight per isolate).
pub const UNKNOWN_KID_COOLDOWN_SECONDS: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl Family {
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::EcP256 => alg == ES256,
            Family::EcP384 => alg == ES384,
            Family::Ed25519 => alg == EdDSA,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Unique among every key this isolate has loaded (set when a set is installed):
    /// the JS entry caches its imported WebCrypto key under it.
    pub id: String,
    pub kid: Option<String>,
    pub family: Family,
    /// The key's own `alg`, when it names one.
    pub alg: Option<Algorithm>,
    /// The public members only, as a JWK object (for WebCrypto `importKey("jwk")`
    /// and jsonwebtoken's `DecodingKey::from_jwk`).
    pub public_jwk: Value,
}

impl Key {
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.family.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Why keys were skipped, for the log (no key material).
    pub skipped: Vec<String>,
}

/// The outcome of looking a token's key up.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    Found(&'a Key),
    /// No key has this `kid`: the set may be stale, so a refresh may help.
    UnknownKid,
}

fn public_members(kty: &str, obj: &Map<String, Value>) -> Option<(Family, Value)> {
    let s = |name: &str| {
        obj.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    match kty {
        "RSA" => Some((
            Family::Rsa,
            json!({"kty": "RSA", "n": s("n")?, "e": s("e")?}),
        )),
        "EC" => {
            let family = match s("crv")? {
                "P-256" => Family::EcP256,
                "P-384" => Family::EcP384,
                _ => return None,
            };
            Some((
                family,
                json!({"kty": "EC", "crv": s("crv")?, "x": s("x")?, "y": s("y")?}),
            ))
        }
        "OKP" if s("crv")? == "Ed25519" => Some((
            Family::Ed25519,
            json!({"kty": "OKP", "crv": "Ed25519", "x": s("x")?}),
        )),
        _ => None,
    }
}

fn describe(kid: &Option<String>) -> String {
    match kid {
        Some(k) => format!("key {k:?}"),
        None => "key without kid".into(),
    }
}

impl KeySet {
    /// Parse a JWKS document, keeping the keys usable with `algorithms`.
    pub fn parse(body: &[u8], algorithms: &[Algorithm]) -> Result<KeySet, Error> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(Error::KeysUnavailable(
                format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes").into(),
            ));
        }
        let doc: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| {
                Error::KeysUnavailable(
                    Fault::new("the answer at JWKS_URL (or the discovered jwks_uri) is not a JWKS: not a JSON object")
                        .detail(format!("line {}, column {}", e.line(), e.column())),
                )
            })?;
        let Some(Value::Array(raw)) = doc.get("keys") else {
            return Err(Error::KeysUnavailable("JWKS has no keys array".into()));
        };
        let mut set = KeySet::default();
        for entry in raw {
            let Value::Object(obj) = entry else {
                set.skipped.push("an entry that is not an object".into());
                continue;
            };
            let kid = obj.get("kid").and_then(Value::as_str).map(str::to_string);
            let kty = obj.get("kty").and_then(Value::as_str).unwrap_or("");
            if let Some(u) = obj.get("use") {
                if u != "sig" {
                    set.skipped.push(format!("{} has use {u}", describe(&kid)));
                    continue;
                }
            }
            if let Some(ops) = obj.get("key_ops") {
                if !ops
                    .as_array()
                    .is_some_and(|a| a.iter().any(|o| o == "verify"))
                {
                    set.skipped
                        .push(format!("{} has no verify key_op", describe(&kid)));
                    continue;
                }
            }
            let Some((family, public_jwk)) = public_members(kty, obj) else {
                set.skipped.push(format!(
                    "{} has unsupported or incomplete kty {kty:?}",
                    describe(&kid)
                ));
                continue;
            };
            let alg = match obj.get("alg").and_then(Value::as_str) {
                None => None,
                Some(name) => match name.parse::<Algorithm>() {
                    Ok(a) if algorithms.contains(&a) && family.fits(a) => Some(a),
                    _ => {
                        set.skipped.push(format!(
                            "{} has alg {name} which is not allowed for it",
                            describe(&kid)
                        ));
                        continue;
                    }
                },
            };
            if alg.is_none() && !algorithms.iter().any(|a| family.fits(*a)) {
                set.skipped
                    .push(format!("{} fits no allowed algorithm", describe(&kid)));
                continue;
            }
            set.keys.push(Key {
                id: String::new(),
                kid,
                family,
                alg,
                public_jwk,
            });
        }
        if set.keys.is_empty() {
            return Err(Error::KeysUnavailable(
                format!(
                    "JWKS has no usable signature key ({} skipped: {})",
                    set.skipped.len(),
                    set.skipped.join("; ")
                )
                .into(),
            ));
        }
        Ok(set)
    }

    /// Find the key for a token header's `kid` and `alg`.
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Result<Lookup<'_>, Error> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Ok(Lookup::UnknownKid);
                }
                named
                    .find(|k| k.fits(alg))
                    .map(Lookup::Found)
                    .ok_or_else(|| {
                        Error::InvalidToken(format!(
                            "the token's alg {alg:?} does not match its signing key"
                        ))
                    })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(Lookup::Found(k)),
                    (None, _) => Err(Error::InvalidToken(format!(
                        "no signing key fits alg {alg:?}"
                    ))),
                    (Some(_), Some(_)) => Err(Error::InvalidToken(
                        "the token has no kid and the authorization server has several keys".into(),
                    )),
                }
            }
        }
    }

    pub fn contains_kid(&self, kid: Option<&str>) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == kid)
    }
}

/// WebCrypto parameters for an algorithm, as JSON text (they cross to the JS entry
/// as they are, on every new token): for `importKey("jwk", …)` and for `verify`.
/// JWS signatures are already in WebCrypto's formats (PKCS #1 v1.5, PSS, raw `r||s`
/// for ECDSA, raw Ed25519), so the signature bytes pass unchanged.
pub fn webcrypto_params(alg: Algorithm) -> Option<(&'static str, &'static str)> {
    use Algorithm::*;
    const PKCS1: &str = r#"{"name":"RSASSA-PKCS1-v1_5"}"#;
    Some(match alg {
        RS256 => (r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-256"}"#, PKCS1),
        RS384 => (r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-384"}"#, PKCS1),
        RS512 => (r#"{"name":"RSASSA-PKCS1-v1_5","hash":"SHA-512"}"#, PKCS1),
        PS256 => (
            r#"{"name":"RSA-PSS","hash":"SHA-256"}"#,
            r#"{"name":"RSA-PSS","saltLength":32}"#,
        ),
        PS384 => (
            r#"{"name":"RSA-PSS","hash":"SHA-384"}"#,
            r#"{"name":"RSA-PSS","saltLength":48}"#,
        ),
        PS512 => (
            r#"{"name":"RSA-PSS","hash":"SHA-512"}"#,
            r#"{"name":"RSA-PSS","saltLength":64}"#,
        ),
        ES256 => (
            r#"{"name":"ECDSA","namedCurve":"P-256"}"#,
            r#"{"name":"ECDSA","hash":"SHA-256"}"#,
        ),
        ES384 => (
            r#"{"name":"ECDSA","namedCurve":"P-384"}"#,
            r#"{"name":"ECDSA","hash":"SHA-384"}"#,
        ),
        EdDSA => (r#"{"name":"Ed25519"}"#, r#"{"name":"Ed25519"}"#),
        _ => return None,
    })
}

/// May the worker fetch the set again because of an unknown `kid`? At most once per
/// [`UNKNOWN_KID_COOLDOWN_SECONDS`] after the last fetch (whatever caused it), so a
/// flood of made-up `kid`s cannot flood the authorization server.
pub fn can_refresh(now: i64, last_fetch: Option<i64>) -> bool {
    last_fetch.is_none_or(|t| now - t >= UNKNOWN_KID_COOLDOWN_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa(kid: &str, extra: Value) -> Value {
        let mut k = json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"});
        k.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        k
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, Error> {
        KeySet::parse(
            json!({"keys": keys}).to_string().as_bytes(),
            &[RS256, ES256, EdDSA],
        )
    }

    #[test]
    fn skips_encryption_symmetric_and_disallowed_keys() {
        let s = set(vec![
            rsa("sig", json!({"use": "sig", "alg": "RS256"})),
            rsa("enc", json!({"use": "enc", "alg": "RSA-OAEP"})),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            rsa("rs512", json!({"alg": "RS512"})),
            rsa("noverify", json!({"key_ops": ["sign"]})),
            json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "a", "y": "b"}),
            json!("junk"),
        ])
        .unwrap();
        assert_eq!(s.keys.len(), 1);
        assert_eq!(s.keys[0].kid.as_deref(), Some("sig"));
        assert_eq!(s.skipped.len(), 6);
    }

    #[test]
    fn private_members_are_not_kept() {
        let s = set(vec![rsa("k", json!({"d": "private", "p": "x"}))]).unwrap();
        assert_eq!(
            s.keys[0].public_jwk,
            json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"})
        );
    }

    #[test]
    fn a_set_with_only_enc_keys_is_an_error_that_says_why() {
        let err = set(vec![rsa("enc", json!({"use": "enc"}))]).unwrap_err();
        assert!(
            matches!(&err, Error::KeysUnavailable(m) if m.public.contains("use \"enc\"")),
            "{err:?}"
        );
        assert!(KeySet::parse(b"{\"keys\": 1}", &[RS256]).is_err());
        assert!(KeySet::parse(b"<html>", &[RS256]).is_err());
    }

    #[test]
    fn lookup_by_kid_and_alg() {
        let s = set(vec![
            rsa("a", json!({})),
            json!({"kty": "EC", "kid": "e", "crv": "P-256", "x": "x", "y": "y"}),
        ])
        .unwrap();
        assert!(
            matches!(s.lookup(Some("a"), RS256), Ok(Lookup::Found(k)) if k.kid.as_deref() == Some("a"))
        );
        assert_eq!(s.lookup(Some("zzz"), RS256), Ok(Lookup::UnknownKid));
        assert!(
            s.lookup(Some("a"), ES256).is_err(),
            "alg must match the key family"
        );
        assert!(s.lookup(None, RS256).is_ok(), "one RSA key: no kid needed");
        let two = set(vec![rsa("a", json!({})), rsa("b", json!({}))]).unwrap();
        assert!(two.lookup(None, RS256).is_err(), "several keys: kid needed");
    }

    #[test]
    fn webcrypto_parameters_cover_every_supported_algorithm() {
        let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        for alg in crate::config::SUPPORTED_ALGORITHMS {
            let (import, verify) = webcrypto_params(*alg).unwrap();
            assert!(
                json(import)["name"].is_string() && json(verify)["name"].is_string(),
                "{alg:?}"
            );
        }
        assert_eq!(json(webcrypto_params(PS256).unwrap().1)["saltLength"], 32);
        assert_eq!(
            json(webcrypto_params(ES384).unwrap().0)["namedCurve"],
            "P-384"
        );
        assert!(webcrypto_params(HS256).is_none());
    }

    #[test]
    fn refresh_is_throttled() {
        assert!(can_refresh(100, None));
        assert!(!can_refresh(100, Some(99)));
        assert!(can_refresh(100, Some(98)));
        // A new key first seen 5 s after the last fetch is fetched (was 30 s).
        assert!(can_refresh(105, Some(100)));
    }
}
