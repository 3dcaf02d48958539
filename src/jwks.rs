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

/// After a failed JWKS fetch with no keys at all, wait this long before trying again.
pub const FAILED_FETCH_BACKOFF_SECONDS: i64 = 5;

/// The keys an isolate holds and their refresh policy: when a fetch is due (no keys;
/// past `JWKS_CACHE_SECONDS`, once per [`REFRESH_INTERVAL_SECONDS`] while refreshes
/// fail), how long old keys stay usable (`JWKS_MAX_STALE_SECONDS` past the TTL), the
/// back-off after a failure with no keys, and the cooldown for an unknown `kid`.
/// Keys get ids of the store's own (`<generation>.<index>`), new with every set.
#[derive(Debug)]
pub struct KeyStore {
    set: Option<KeySet>,
    fetched_at: Option<i64>,
    last_attempt: Option<i64>,
    generation: u64,
    ttl: i64,
    max_stale: i64,
}

impl KeyStore {
    pub fn new(ttl: i64, max_stale: i64) -> KeyStore {
        KeyStore {
            set: None,
            fetched_at: None,
            last_attempt: None,
            generation: 0,
            ttl,
            max_stale,
        }
    }

    /// The keys held (however old).
    pub fn set(&self) -> Option<&KeySet> {
        self.set.as_ref()
    }

    /// Is a fetch due? With no keys, yes; with keys past their TTL, once per refresh
    /// interval (failures keep the old keys in use).
    pub fn due(&self, now: i64) -> bool {
        match (self.set.as_ref(), self.fetched_at) {
            (None, _) | (_, None) => true,
            (Some(_), Some(at)) => {
                let gap = REFRESH_INTERVAL_SECONDS.min(self.ttl);
                now - at >= self.ttl && self.last_attempt.is_none_or(|t| now - t >= gap)
            }
        }
    }

    /// No keys, and the last fetch failed less than [`FAILED_FETCH_BACKOFF_SECONDS`]
    /// ago: answer with the failure rather than fetch again.
    pub fn backing_off(&self, now: i64) -> bool {
        self.set.is_none()
            && self
                .last_attempt
                .is_some_and(|t| now - t < FAILED_FETCH_BACKOFF_SECONDS)
    }

    /// May a token with an unknown `kid` make the store refetch now?
    pub fn may_refetch_for_unknown_kid(&self, now: i64) -> bool {
        can_refresh(now, self.last_attempt)
    }

    /// Keys are held and not older than their TTL plus `JWKS_MAX_STALE_SECONDS`.
    pub fn usable(&self, now: i64) -> bool {
        match (self.set.as_ref(), self.fetched_at) {
            (Some(_), Some(at)) => now - at <= self.ttl + self.max_stale,
            _ => false,
        }
    }

    /// Record a JWKS answer fetched at `at`: a set that parses replaces the keys (and
    /// is returned, for the caller's caches); a failure keeps the keys held.
    pub fn install(
        &mut self,
        body: Result<&[u8], Error>,
        at: i64,
        algorithms: &[Algorithm],
    ) -> Result<&KeySet, Error> {
        self.last_attempt = Some(at);
        let mut set = body.and_then(|b| KeySet::parse(b, algorithms))?;
        self.generation += 1;
        for (i, k) in set.keys.iter_mut().enumerate() {
            k.id = format!("{}.{i}", self.generation);
        }
        self.fetched_at = Some(at);
        Ok(self.set.insert(set))
    }

    /// The error for a failed refresh that leaves no usable keys: when keys are held
    /// but too old, it says so.
    pub fn failure(&self, e: Error, now: i64) -> Error {
        match (&e, self.set.is_some() && !self.usable(now)) {
            (Error::KeysUnavailable(f), true) => Error::KeysUnavailable(Fault {
                public: format!(
                    "{}; the cached keys are older than JWKS_CACHE_SECONDS + JWKS_MAX_STALE_SECONDS ({} s)",
                    f.public,
                    self.ttl + self.max_stale
                ),
                detail: f.detail.clone(),
            }),
            _ => e,
        }
    }

    /// A key by its store id.
    pub fn key(&self, id: &str) -> Option<&Key> {
        self.set.as_ref()?.keys.iter().find(|k| k.id == id)
    }

    /// A key by its id, with the WebCrypto import parameters for `alg`, as the JS
    /// entry needs them to import it: `{"jwk": …, "import": …}`.
    pub fn webcrypto_key(&self, id: &str, alg: Algorithm) -> Option<String> {
        let key = self.key(id).filter(|k| k.fits(alg))?;
        let (import, _) = webcrypto_params(alg)?;
        Some(format!(r#"{{"jwk":{},"import":{import}}}"#, key.public_jwk))
    }
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

    #[test]
    fn a_key_store_names_its_keys_and_backs_off_without_any() {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let mut store = KeyStore::new(600, 60);
        assert!(store.due(0) && !store.backing_off(0));
        let down = || Err(Error::KeysUnavailable("down".into()));
        assert!(store.install(down(), 10, &[EdDSA]).is_err());
        assert!(store.backing_off(10 + FAILED_FETCH_BACKOFF_SECONDS - 1));
        assert!(!store.backing_off(10 + FAILED_FETCH_BACKOFF_SECONDS));
        assert_eq!(
            store.install(Ok(jwks), 20, &[EdDSA]).unwrap().keys[0].id,
            "1.0"
        );
        assert_eq!(
            store.install(Ok(jwks), 30, &[EdDSA]).unwrap().keys[0].id,
            "2.0"
        );
        assert!(store.key("1.0").is_none() && store.key("2.0").is_some());
        assert!(store
            .webcrypto_key("2.0", EdDSA)
            .unwrap()
            .contains(r#""import":"#));
        assert!(
            store.webcrypto_key("2.0", RS256).is_none(),
            "the key does not fit RS256"
        );
        // A failed refresh keeps the keys: usable up to TTL + max stale from the fetch.
        assert!(store.install(down(), 700, &[EdDSA]).is_err());
        assert!(store.usable(30 + 660) && !store.usable(30 + 661));
        let e = store.failure(Error::KeysUnavailable("down".into()), 800);
        assert!(
            e.to_string().contains("older than JWKS_CACHE_SECONDS"),
            "{e}"
        );
    }
}
