#![cfg(not(target_arch = "wasm32"))]
//! The authorizer's whole decision on the host, with real signatures: tokens signed
//! by jsonwebtoken from PEM keys, checked by the pure-Rust backend the way the
//! worker checks them with WebCrypto (same key selection, same claims).

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mcp_edge_auth::authorizer::{Authorizer, Decision, RequestInfo};
use mcp_edge_auth::config::Config;
use mcp_edge_auth::token::verify_native;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;

fn key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn public_jwk(name: &str, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&key(name, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    let set: JwkSet = serde_json::from_value(json!({ "keys": keys })).unwrap();
    serde_json::to_vec(&set).unwrap()
}

fn config() -> Config {
    let vars = [
        ("ORIGIN_URL", "http://127.0.0.1:9000"),
        ("RESOURCE_URL", "https://mcp.example.com/mcp"),
        ("ISSUER", "https://auth.example.com/"),
        ("REQUIRED_SCOPES", "mcp:tools"),
        ("ALGORITHMS", "RS256 PS256 ES256 EdDSA"),
    ];
    Config::build(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://auth.example.com/",
        "sub": "user-1",
        "aud": "https://mcp.example.com/mcp",
        "client_id": "client-1",
        "scope": "mcp:tools",
        "iat": NOW,
        "exp": NOW + 600,
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn sign(name: &str, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, claims, &key(name, alg)).unwrap()
}

fn mcp_post(authorization: &str) -> RequestInfo<'_> {
    RequestInfo {
        method: "POST",
        path: "/mcp",
        query: None,
        authorization: Some(authorization),
        origin: None,
    }
}

/// Drive one request through the authorizer as the glue does, answering any JWKS
/// fetch with `jwks_body`. Returns the final decision and how many JWKS fetches and
/// signature checks it took.
fn decide(a: &mut Authorizer, token: &str, jwks_body: &[u8], now: i64) -> (Decision, usize, usize) {
    let auth = format!("Bearer {token}");
    let req = mcp_post(&auth);
    let (mut fetches, mut verifies) = (0, 0);
    for _ in 0..3 {
        match a.check(&req, now) {
            Decision::NeedKeys => {
                fetches += 1;
                let _ = a.install_keys(Ok(jwks_body), now);
            }
            Decision::Verify(p) => {
                verifies += 1;
                let jwt = mcp_edge_auth::token::parse(token, &a.cfg.algorithms).unwrap();
                let ok = verify_native(&jwt, &p.key).is_ok();
                return (a.complete(&req, &p, ok, now), fetches, verifies);
            }
            other => return (other, fetches, verifies),
        }
    }
    panic!("no decision after three rounds");
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Forward { .. } => 200,
        Decision::Reply { reply, .. } => reply.status,
        other => panic!("{other:?}"),
    }
}

fn all_keys() -> Vec<u8> {
    jwks(&[
        public_jwk("rsa", Algorithm::RS256, "rs1"),
        public_jwk("ec", Algorithm::ES256, "es1"),
        public_jwk("ed25519", Algorithm::EdDSA, "ed1"),
    ])
}

#[test]
fn accepts_each_algorithm_and_forwards_the_identity() {
    let keys = all_keys();
    for (name, alg, kid) in [
        ("rsa", Algorithm::RS256, "rs1"),
        ("ec", Algorithm::ES256, "es1"),
        ("ed25519", Algorithm::EdDSA, "ed1"),
    ] {
        let mut a = Authorizer::new(config());
        let t = sign(name, alg, kid, &claims(json!({})));
        let (d, fetches, verifies) = decide(&mut a, &t, &keys, NOW);
        assert_eq!((fetches, verifies), (1, 1), "{alg:?}");
        let Decision::Forward {
            target, headers, ..
        } = d
        else {
            panic!("{alg:?}: {d:?}")
        };
        assert_eq!(target, "http://127.0.0.1:9000/mcp");
        assert!(headers.contains(&("x-auth-subject", "user-1".into())));
        assert!(headers.contains(&("x-auth-client-id", "client-1".into())));
    }
}

#[test]
fn a_repeated_token_skips_keys_and_signature() {
    let mut a = Authorizer::new(config());
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    assert_eq!(status(&d), 200);
    let (d, fetches, verifies) = decide(&mut a, &t, b"unused", NOW + 10);
    assert_eq!((status(&d), fetches, verifies), (200, 0, 0));
    // ...but not past its expiry.
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW + 600 + 61);
    assert_eq!(status(&d), 401);
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let keys = all_keys();
    let cases = [
        (
            "signed by another key under a known kid",
            sign("other-rsa", Algorithm::RS256, "rs1", &claims(json!({}))),
        ),
        (
            "RSA key used with PS256",
            sign("rsa", Algorithm::PS256, "es1", &claims(json!({}))),
        ),
        (
            "unknown kid",
            sign("other-rsa", Algorithm::RS256, "nope", &claims(json!({}))),
        ),
        (
            "wrong issuer",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"iss": "https://auth.example.com"})),
            ),
        ),
        (
            "wrong audience",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"aud": ["account"]})),
            ),
        ),
        (
            "expired",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"exp": NOW - 3600})),
            ),
        ),
    ];
    for (name, t) in cases {
        let mut a = Authorizer::new(config());
        let (d, ..) = decide(&mut a, &t, &keys, NOW);
        assert_eq!(status(&d), 401, "{name}");
    }
    // A payload altered after signing.
    let t = sign(
        "rsa",
        Algorithm::RS256,
        "rs1",
        &claims(json!({"scope": "mcp:read"})),
    );
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = base64_payload(&claims(json!({})));
    parts[1] = &forged;
    let mut a = Authorizer::new(config());
    let (d, ..) = decide(&mut a, &parts.join("."), &keys, NOW);
    assert_eq!(status(&d), 401);
}

fn base64_payload(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn the_verify_handoff_names_the_exact_bytes_and_key() {
    let mut a = Authorizer::new(config());
    let _ = a.install_keys(Ok(&all_keys()), NOW);
    let t = sign("ec", Algorithm::ES256, "es1", &claims(json!({})));
    let auth = format!("Bearer  {t}");
    let req = mcp_post(&auth);
    let Decision::Verify(p) = a.check(&req, NOW) else {
        panic!()
    };
    let wire: Value = serde_json::from_str(&p.to_wire(7, &auth)).unwrap();
    let span = |name: &str| {
        let r = wire[name].as_array().unwrap();
        &auth[r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize]
    };
    let (input, sig) = t.rsplit_once('.').unwrap();
    assert_eq!(span("i"), input);
    assert_eq!(span("s"), sig);
    assert_eq!(wire["v"], 7);
    assert_eq!(wire["a"], "ES256");
    assert_eq!(wire["y"], json!({"name": "ECDSA", "hash": "SHA-256"}));
    let key: Value = serde_json::from_str(
        &a.webcrypto_key(wire["k"].as_str().unwrap(), "ES256")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(key["jwk"]["kty"], "EC");
    assert_eq!(
        key["import"],
        json!({"name": "ECDSA", "namedCurve": "P-256"})
    );
    assert!(
        a.webcrypto_key(wire["k"].as_str().unwrap(), "RS256")
            .is_none(),
        "an EC key is not an RSA key"
    );
    assert!(a
        .webcrypto_key(wire["k"].as_str().unwrap(), "HS256")
        .is_none());
}

#[test]
fn a_forged_token_sent_again_costs_no_signature_check() {
    let mut a = Authorizer::new(config());
    let forged = sign("other-rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW);
    assert_eq!((status(&d), verifies), (401, 1));
    let (d, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW + 5);
    assert_eq!(
        (status(&d), verifies),
        (401, 0),
        "refused from the refusal cache"
    );
    let (_, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW + 61);
    assert_eq!(verifies, 1, "refusals are remembered for a minute only");
}

#[test]
fn insufficient_scope_is_403_after_a_valid_signature() {
    let mut a = Authorizer::new(config());
    let t = sign(
        "ec",
        Algorithm::ES256,
        "es1",
        &claims(json!({"scope": "mcp:read"})),
    );
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    let Decision::Reply { reply, .. } = d else {
        panic!()
    };
    assert_eq!(reply.status, 403);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="insufficient_scope""#));
}

#[test]
fn a_rotated_out_key_no_longer_admits_its_cached_tokens() {
    let mut a = Authorizer::new(config());
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    assert_eq!(status(&d), 200);
    // The set rotates: rs1 is gone. An unknown kid triggers the refresh.
    let rotated = jwks(&[public_jwk("ec", Algorithm::ES256, "es1")]);
    let other = sign("other-rsa", Algorithm::RS256, "rs2", &claims(json!({})));
    let (d, fetches, _) = decide(&mut a, &other, &rotated, NOW + 60);
    assert_eq!((status(&d), fetches), (401, 1));
    let (d, ..) = decide(&mut a, &t, &rotated, NOW + 61);
    assert_eq!(status(&d), 401, "the cached token left with its key");
}

#[test]
fn unknown_kid_refreshes_at_most_once_per_interval() {
    let mut a = Authorizer::new(config());
    let good = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    decide(&mut a, &good, &all_keys(), NOW);
    let mut fetches_total = 0;
    for i in 0..20 {
        let t = sign(
            "other-rsa",
            Algorithm::RS256,
            &format!("made-up-{i}"),
            &claims(json!({})),
        );
        let (d, fetches, _) = decide(&mut a, &t, &all_keys(), NOW + 1);
        assert_eq!(status(&d), 401);
        fetches_total += fetches;
    }
    assert_eq!(
        fetches_total, 0,
        "the set was fetched less than the refresh interval ago"
    );
    let t = sign(
        "other-rsa",
        Algorithm::RS256,
        "made-up-late",
        &claims(json!({})),
    );
    let (_, fetches, _) = decide(&mut a, &t, &all_keys(), NOW + 31);
    assert_eq!(fetches, 1);
}
