//! DPoP (RFC 9449) at the resource server, pure: the bindings, the proof rules of
//! §4.3 with time passed in, server nonces (§8, §9), and the replay memory. The proof's
//! signature is the JS entry's to check with WebCrypto ([`Check`], in the forward
//! decision): everything else is decided here first.
//!
//! With `DPOP=allowed` a token bound to a key (`cnf.jkt`, from the JWT or the
//! introspection answer) must come as `Authorization: DPoP <token>` with one `DPoP`
//! proof; unbound tokens keep working as `Bearer`. With `DPOP=required` every token
//! must be bound. Per request (a token's own checks stay cached as for bearer tokens):
//!
//! 1. exactly one `DPoP` header, a compact JWS of at most [`MAX_PROOF_BYTES`];
//! 2. header `typ` `dpop+jwt`, an `alg` of `DPOP_ALGORITHMS` (asymmetric only), a
//!    public `jwk` of the alg's key type with no private member;
//! 3. claims `jti`, `htm` (the request's method), `htu` (the request's public URL:
//!    `RESOURCE_URL`'s origin and the request's path, no query or fragment, both
//!    normalised as RFC 3986 §6.2.2-6.2.3 say: case of scheme and host, default port,
//!    dot segments), `iat` within `DPOP_PROOF_WINDOW_SECONDS` of now (either way),
//!    `ath` (the access token's SHA-256, base64url);
//! 4. with `DPOP_NONCE_SECRET`, a `nonce` the worker issued within the last two
//!    nonce periods, else 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`;
//! 5. the key's RFC 7638 thumbprint equal to the token's `cnf.jkt`;
//! 6. a `jti` this isolate has not seen for that key while the proof could be live;
//! 7. the signature (WebCrypto, in the entry).
//!
//! Nonces are HMAC-SHA-256 of the period number under a key derived from the secret:
//! every isolate computes the same value without talking to the others.

use crate::cache::{self, TokenCache, TokenHash};
use crate::config::parse::{problem, Bindings};
use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The largest `DPoP` header read.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The longest `jti` taken.
pub const MAX_JTI_BYTES: usize = 256;
/// How many proofs one isolate remembers (their `jti` per key), while they could be live.
pub const SEEN_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// DPoP-bound tokens need proofs; bearer tokens still work.
    Allowed,
    /// Every token must be DPoP-bound.
    Required,
}

/// `DPOP*` bindings.
#[derive(Clone)]
pub struct Settings {
    pub mode: Mode,
    /// `DPOP_ALGORITHMS`: proof algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// `DPOP_PROOF_WINDOW_SECONDS`: how far a proof's `iat` may be from now.
    pub window: i64,
    /// `DPOP_NONCE_SECRET` (the key derived from it) and `DPOP_NONCE_SECONDS`.
    nonces: Option<([u8; 32], i64)>,
}

/// The nonce secret never prints.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("algorithms", &self.algorithms)
            .field("window", &self.window)
            .field("nonce_seconds", &self.nonces.map(|(_, s)| s))
            .finish()
    }
}

/// Bindings that mean nothing without `DPOP`.
pub const RELATED: &[&str] = &[
    "DPOP_ALGORITHMS",
    "DPOP_PROOF_WINDOW_SECONDS",
    "DPOP_NONCE_SECRET",
    "DPOP_NONCE_SECONDS",
];

/// Read the `DPOP*` bindings: `None` with `DPOP=off` (the default).
pub(crate) fn from_bindings(b: &Bindings) -> Result<Option<Settings>, Error> {
    let mode = match b.value("DPOP").unwrap_or_default().as_str() {
        "off" => {
            if let Some(name) = RELATED.iter().find(|n| b.get(n).is_some()) {
                return Err(problem(name, "is set but DPOP is off"));
            }
            return Ok(None);
        }
        "allowed" => Mode::Allowed,
        "required" => Mode::Required,
        other => {
            return Err(problem(
                "DPOP",
                format!("must be off, allowed or required, got {other:?}"),
            ))
        }
    };
    let mut algorithms = Vec::new();
    for name in b.words("DPOP_ALGORITHMS") {
        let alg = name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| crate::config::SUPPORTED_ALGORITHMS.contains(a))
            .ok_or_else(|| {
                problem(
                    "DPOP_ALGORITHMS",
                    format!("{name} is not an asymmetric algorithm this worker verifies"),
                )
            })?;
        algorithms.push(alg);
    }
    let nonces = match b.get("DPOP_NONCE_SECRET") {
        None => {
            if b.get("DPOP_NONCE_SECONDS").is_some() {
                return Err(problem(
                    "DPOP_NONCE_SECONDS",
                    "is set but DPOP_NONCE_SECRET is not",
                ));
            }
            None
        }
        Some(secret) if secret.len() < 32 => {
            return Err(problem(
                "DPOP_NONCE_SECRET",
                "must be at least 32 characters of random (a secret binding)",
            ))
        }
        Some(secret) => {
            let key: [u8; 32] = Sha256::new()
                .chain_update(b"mcp-edge-auth dpop nonce key\0")
                .chain_update(secret.as_bytes())
                .finalize()
                .into();
            Some((key, b.number("DPOP_NONCE_SECONDS", 10..=3600)?))
        }
    };
    Ok(Some(Settings {
        mode,
        algorithms,
        window: b.number("DPOP_PROOF_WINDOW_SECONDS", 1..=300)?,
        nonces,
    }))
}

impl Settings {
    /// The accepted algorithms, space-separated (the challenge's `algs`).
    pub fn algs(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| alg_name(*a)).collect();
        names.join(" ")
    }

    /// The accepted algorithms, as PRM lists them.
    pub fn alg_names(&self) -> Vec<&'static str> {
        self.algorithms.iter().map(|a| alg_name(*a)).collect()
    }

    /// The nonce to hand out now, when nonces are on.
    pub fn nonce(&self, now: i64) -> Option<String> {
        let (key, period) = self.nonces?;
        Some(nonce_for(&key, now.div_euclid(period)))
    }

    fn nonce_ok(&self, nonce: &str, now: i64) -> bool {
        let Some((key, period)) = self.nonces else {
            return true;
        };
        let step = now.div_euclid(period);
        // The current period, the one before (a client's nonce from just before the
        // turn), and the next (an isolate whose clock runs a little ahead).
        [step - 1, step, step + 1]
            .iter()
            .any(|s| constant_time_eq(nonce_for(&key, *s).as_bytes(), nonce.as_bytes()))
    }

    fn nonces_on(&self) -> bool {
        self.nonces.is_some()
    }
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        _ => "",
    }
}

fn nonce_for(key: &[u8; 32], step: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the request says about itself, for the proof to match.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request's public URL without query: `RESOURCE_URL`'s origin and the path.
    pub url: &'a str,
    /// SHA-256 of the access token (its `ath`, base64url-decoded).
    pub token_hash: &'a TokenHash,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
}

/// The proof's signature, for the JS entry to verify with WebCrypto: the public key as
/// a JWK (the members RFC 7638 names, so also its thumbprint's input), the import and
/// verify parameters, and where the signing input and the signature are in the
/// `DPoP` header (byte offsets; the header is ASCII, so UTF-16 offsets too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub jwk: String,
    pub import: &'static str,
    pub verify: &'static str,
    pub input: (usize, usize),
    pub signature: (usize, usize),
}

#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

fn invalid(why: impl Into<String>) -> Error {
    Error::InvalidDpopProof(why.into())
}

fn text<'v>(v: &'v Option<Value>, claim: &str) -> Result<&'v str, Error> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(invalid(format!(
            "the proof's {claim} must be a non-empty string"
        ))),
        None => Err(invalid(format!("the proof has no {claim} claim"))),
    }
}

/// Members a private or symmetric JWK has and a public one must not.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The public key of a proof header for `alg`, as its RFC 7638 thumbprint input
/// (members sorted, no white space), checked for its type and sizes.
fn public_jwk(jwk: &Map<String, Value>, alg: Algorithm) -> Result<String, Error> {
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(invalid(format!(
            "the proof's jwk holds private key material ({m}): send the public key only"
        )));
    }
    let member =
        |name: &str, len: Option<std::ops::RangeInclusive<usize>>| -> Result<&str, Error> {
            let v = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("the proof's jwk has no {name}")))?;
            let bytes = URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|_| invalid(format!("the proof's jwk {name} is not base64url")))?;
            if len.is_some_and(|l| !l.contains(&bytes.len())) {
                return Err(invalid(format!(
                    "the proof's jwk {name} has the wrong length for {}",
                    alg_name(alg)
                )));
            }
            Ok(v)
        };
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let wrong = || {
        invalid(format!(
            "the proof's jwk is not a key for {}",
            alg_name(alg)
        ))
    };
    Ok(match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (curve, size) = if alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            if kty != "EC" || crv != curve {
                return Err(wrong());
            }
            let (x, y) = (
                member("x", Some(size..=size))?,
                member("y", Some(size..=size))?,
            );
            format!(r#"{{"crv":"{curve}","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        Algorithm::EdDSA => {
            if kty != "OKP" || crv != "Ed25519" {
                return Err(wrong());
            }
            let x = member("x", Some(32..=32))?;
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#)
        }
        _ => {
            if kty != "RSA" {
                return Err(wrong());
            }
            // 2048 bits at least (RFC 7518 §3.3), 8192 at most.
            let n = member("n", Some(256..=1024))?;
            let e = member("e", Some(1..=8))?;
            format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)
        }
    })
}

/// The RFC 7638 thumbprint of a JWK in its canonical form (members sorted, as
/// [`Check::jwk`] holds it).
pub fn thumbprint(canonical_jwk: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_jwk.as_bytes()))
}

/// Proofs seen, by key and `jti`, until they could no longer be accepted.
#[derive(Debug)]
pub struct Seen(TokenCache<Until>);

#[derive(Debug, Clone, Copy)]
pub struct Until(i64);

impl cache::Entry for Until {
    fn live(&self, now: i64, _leeway: i64) -> bool {
        now <= self.0
    }
    fn kid(&self) -> Option<&str> {
        None
    }
}

impl Seen {
    /// A proof forwarded: its key (see [`check`]) is refused until `until`.
    pub fn remember(&mut self, key: TokenHash, until: i64, now: i64) {
        self.0.insert(key, Until(until), now, 0);
    }
}

impl Default for Seen {
    fn default() -> Seen {
        Seen(TokenCache::new(SEEN_CAPACITY))
    }
}

/// Check a request's `DPoP` header (`None`: absent) against the request and the
/// token's binding: what the entry must verify, and the key and time under which
/// [`Seen::remember`] keeps the proof's `jti` once the request is forwarded (a
/// decision may be made more than once for one request: only the forward counts).
pub fn check(
    header: Option<&str>,
    req: &Request<'_>,
    s: &Settings,
    seen: &Seen,
    now: i64,
) -> Result<(Check, TokenHash, i64), Error> {
    let raw =
        header.ok_or_else(|| invalid("the request has no DPoP proof: send one DPoP header"))?;
    if raw.len() > MAX_PROOF_BYTES {
        return Err(invalid(format!(
            "the DPoP header is longer than {MAX_PROOF_BYTES} bytes"
        )));
    }
    // A runtime joins repeated headers with ", "; a compact JWS has no comma.
    if raw.contains(',') {
        return Err(invalid("send exactly one DPoP header"));
    }
    let proof = raw.trim_matches(|c| c == ' ' || c == '\t');
    let offset = proof.as_ptr() as usize - raw.as_ptr() as usize;
    let mut parts = proof.split('.');
    let (Some(h64), Some(p64), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "the DPoP proof is not a compact JWS (three base64url parts)",
        ));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| invalid(format!("the DPoP proof's {what} is not base64url")))
    };
    if decode(sig, "signature").is_err() {
        return Err(invalid("the DPoP proof's signature is not base64url"));
    }
    let header: ProofHeader = serde_json::from_slice(&decode(h64, "header")?)
        .map_err(|_| invalid("the DPoP proof's header is not a JSON object"))?;
    let claims: ProofClaims = serde_json::from_slice(&decode(p64, "payload")?)
        .map_err(|_| invalid("the DPoP proof's payload is not a JSON object"))?;
    match header.typ.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(invalid("the DPoP proof's typ must be dpop+jwt")),
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| s.algorithms.contains(a))
        .ok_or_else(|| {
            invalid(format!(
                "the DPoP proof's alg {} is not accepted: use one of {}",
                header.alg.as_deref().unwrap_or("(none)"),
                s.algs()
            ))
        })?;
    if sig.is_empty() {
        return Err(invalid("the DPoP proof has no signature"));
    }
    let jwk = public_jwk(
        header
            .jwk
            .as_ref()
            .ok_or_else(|| invalid("the DPoP proof's header has no jwk"))?,
        alg,
    )?;
    let jti = text(&claims.jti, "jti")?;
    if jti.len() > MAX_JTI_BYTES {
        return Err(invalid(format!(
            "the proof's jti is longer than {MAX_JTI_BYTES} bytes"
        )));
    }
    let htm = text(&claims.htm, "htm")?;
    if htm != req.method {
        return Err(invalid(format!(
            "the proof's htm {htm} is not this request's method {}",
            req.method
        )));
    }
    let htu = text(&claims.htu, "htu")?;
    if htu.contains(['?', '#']) {
        return Err(invalid(
            "the proof's htu must not carry a query or fragment (RFC 9449 §4.2)",
        ));
    }
    // Equal as sent (the usual case) needs no parsing; else both are normalised.
    if htu != req.url && normalized(htu).as_deref() != normalized(req.url).as_deref() {
        return Err(invalid(format!(
            "the proof's htu is not this request's URL {}",
            req.url
        )));
    }
    let iat = match &claims.iat {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| invalid("the proof's iat is not a time"))?,
        Some(_) => return Err(invalid("the proof's iat must be a number")),
        None => return Err(invalid("the proof has no iat claim")),
    };
    if iat < now.saturating_sub(s.window) {
        return Err(invalid(format!(
            "the proof's iat is {} s old; proofs are good for {} s: make a fresh one",
            now.saturating_sub(iat),
            s.window
        )));
    }
    if iat > now.saturating_add(s.window) {
        return Err(invalid(
            "the proof's iat is in the future: check the client's clock",
        ));
    }
    if s.nonces_on() {
        let nonce = match &claims.nonce {
            Some(Value::String(n)) => Some(n.as_str()),
            None => None,
            Some(_) => return Err(invalid("the proof's nonce must be a string")),
        };
        if !nonce.is_some_and(|n| s.nonce_ok(n, now)) {
            return Err(Error::UseDpopNonce(s.nonce(now).unwrap_or_default()));
        }
    }
    let ath = text(&claims.ath, "ath")?;
    if ath != URL_SAFE_NO_PAD.encode(req.token_hash) {
        return Err(invalid(
            "the proof's ath is not the hash of this access token",
        ));
    }
    if thumbprint(&jwk) != req.jkt {
        return Err(Error::InvalidDpopToken(
            "the token is bound to another key than the proof's (cnf.jkt)".into(),
        ));
    }
    let key = cache::hash(&format!("{}.{jti}", req.jkt));
    if seen.0.get(&key, now, 0).is_some() {
        return Err(invalid(
            "the proof was used before (its jti): make a fresh one for each request",
        ));
    }
    let (import, verify) =
        crate::jwks::webcrypto_params(alg).ok_or_else(|| invalid("unsupported alg"))?;
    let input_end = offset + h64.len() + 1 + p64.len();
    let check = Check {
        jwk,
        import,
        verify,
        input: (offset, input_end),
        signature: (input_end + 1, input_end + 1 + sig.len()),
    };
    Ok((check, key, iat.saturating_add(s.window)))
}

/// A URL as RFC 9449 §4.3 compares `htu`: parsed (scheme and host lower case, the
/// default port dropped, dot segments removed, as RFC 3986 §6.2.2-6.2.3), without
/// query and fragment. `None` when it is not an absolute http(s) URL.
fn normalized(url: &str) -> Option<String> {
    let mut u = url::Url::parse(url).ok()?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    Some(u.into())
}

#[cfg(test)]
pub(crate) mod tests;
