//! The proof rules of RFC 9449 §4.3, each refusal on its own, with time passed in.
//! Signatures are the entry's to check: proofs here carry stand-in signature bytes.

use super::*;
use crate::config::tests::with;
use serde_json::json;

/// RFC 8037 A.2's Ed25519 public key, whose RFC 7638 thumbprint A.3 publishes.
pub const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
pub const ED_JKT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
pub const NOW: i64 = 1_800_000_000;
const URL: &str = "https://mcp.example.com/mcp";
pub const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

pub fn settings(extra: &[(&'static str, &'static str)]) -> Settings {
    let mut v = vec![("DPOP", "allowed")];
    v.extend_from_slice(extra);
    with(&v).unwrap().dpop.unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A proof for the test request, with `change` applied to its header and claims.
pub fn proof_with(change: impl FnOnce(&mut Value, &mut Value)) -> String {
    let mut header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": ED_X}});
    let mut claims = json!({
        "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW,
        "ath": URL_SAFE_NO_PAD.encode(cache::hash(TOKEN)),
    });
    change(&mut header, &mut claims);
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims),
        URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}

fn request(hash: &TokenHash) -> Request<'_> {
    Request {
        method: "POST",
        url: URL,
        token_hash: hash,
        jkt: ED_JKT,
    }
}

fn run(
    proof: Option<&str>,
    s: &Settings,
    seen: &Seen,
    now: i64,
) -> Result<(Check, TokenHash, i64), Error> {
    check(proof, &request(&cache::hash(TOKEN)), s, seen, now)
}

/// The refusal's description (or its kind), for the assertions below.
fn refused(proof: &str) -> String {
    match run(Some(proof), &settings(&[]), &Seen::default(), NOW) {
        Err(Error::InvalidDpopProof(d)) => d,
        Err(e) => format!("{e:?}"),
        Ok(_) => "accepted".into(),
    }
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{ED_X}"}}"#);
    assert_eq!(thumbprint(&jwk), ED_JKT, "RFC 8037 A.3");
}

#[test]
fn a_good_proof_names_what_the_entry_verifies() {
    let p = proof_with(|_, _| {});
    let header = format!("  {p}");
    let (check, key, until) = check(
        Some(&header),
        &request(&cache::hash(TOKEN)),
        &settings(&[]),
        &Seen::default(),
        NOW + 5,
    )
    .unwrap();
    let (h, rest) = p.split_once('.').unwrap();
    let (c, sig) = rest.split_once('.').unwrap();
    assert_eq!(&header[check.input.0..check.input.1], format!("{h}.{c}"));
    assert_eq!(&header[check.signature.0..check.signature.1], sig);
    assert_eq!(
        check.jwk,
        format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{ED_X}"}}"#)
    );
    assert_eq!(check.import, r#"{"name":"Ed25519"}"#);
    assert_eq!(until, NOW + 60, "remembered while it could be taken");
    assert_ne!(key, cache::hash("e1j3V_bKic8-LAEB"), "keyed by key and jti");
}

#[test]
fn each_broken_rule_is_refused_with_what_to_fix() {
    let cases: Vec<(&str, String)> = vec![
        ("typ", proof_with(|h, _| h["typ"] = json!("JWT"))),
        ("alg none", proof_with(|h, _| h["alg"] = json!("none"))),
        ("alg", proof_with(|h, _| h["alg"] = json!("HS256"))),
        (
            "jwk",
            proof_with(|h, _| h.as_object_mut().unwrap().remove("jwk").map(drop).unwrap()),
        ),
        (
            "private",
            proof_with(|h, _| h["jwk"]["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")),
        ),
        (
            "not a key for",
            proof_with(|h, _| h["jwk"]["kty"] = json!("EC")),
        ),
        (
            "not a key for",
            proof_with(|h, _| h["alg"] = json!("ES256")),
        ),
        ("length", proof_with(|h, _| h["jwk"]["x"] = json!("AAAA"))),
        ("htm", proof_with(|_, c| c["htm"] = json!("GET"))),
        (
            "htu",
            proof_with(|_, c| c["htu"] = json!("http://127.0.0.1:9000/mcp")),
        ),
        (
            "htu",
            proof_with(|_, c| c["htu"] = json!("https://other.example.com/mcp")),
        ),
        (
            "htu",
            proof_with(|_, c| c["htu"] = json!("https://mcp.example.com/mcp/other")),
        ),
        (
            "query",
            proof_with(|_, c| c["htu"] = json!("https://mcp.example.com/mcp?x=1")),
        ),
        (
            "query",
            proof_with(|_, c| c["htu"] = json!("https://mcp.example.com/mcp#f")),
        ),
        ("old", proof_with(|_, c| c["iat"] = json!(NOW - 61))),
        ("future", proof_with(|_, c| c["iat"] = json!(NOW + 61))),
        ("iat", proof_with(|_, c| c["iat"] = json!("now"))),
        (
            "ath",
            proof_with(|_, c| c["ath"] = json!(URL_SAFE_NO_PAD.encode(cache::hash("another")))),
        ),
        (
            "no ath",
            proof_with(|_, c| c.as_object_mut().unwrap().remove("ath").map(drop).unwrap()),
        ),
        (
            "no jti",
            proof_with(|_, c| c.as_object_mut().unwrap().remove("jti").map(drop).unwrap()),
        ),
        (
            "jti",
            proof_with(|_, c| c["jti"] = json!("x".repeat(MAX_JTI_BYTES + 1))),
        ),
        (
            "exactly one",
            format!("{}, {}", proof_with(|_, _| {}), proof_with(|_, _| {})),
        ),
        ("compact JWS", "a.b".into()),
        (
            "signature",
            format!("{}.", proof_with(|_, _| {}).rsplit_once('.').unwrap().0),
        ),
        ("longer", "a".repeat(MAX_PROOF_BYTES + 1)),
    ];
    for (what, proof) in cases {
        let why = refused(&proof);
        assert!(why.contains(what), "{what}: {why}");
        assert!(
            !why.contains(TOKEN) && !why.contains(&proof),
            "no token or proof echoed"
        );
    }
    assert!(refused(&proof_with(|_, _| {})) == "accepted");
    // Within the window either way.
    assert_eq!(
        refused(&proof_with(|_, c| c["iat"] = json!(NOW - 60))),
        "accepted"
    );
    assert_eq!(
        refused(&proof_with(|_, c| c["iat"] = json!(NOW + 60))),
        "accepted"
    );
    // The URL compared as RFC 3986 normalises it.
    assert_eq!(
        refused(&proof_with(
            |_, c| c["htu"] = json!("HTTPS://MCP.Example.COM:443/mcp")
        )),
        "accepted"
    );
    assert_eq!(
        refused(&proof_with(
            |_, c| c["htu"] = json!("https://mcp.example.com/x/../mcp")
        )),
        "accepted"
    );
    // No proof at all.
    let none = run(None, &settings(&[]), &Seen::default(), NOW).unwrap_err();
    assert!(matches!(none, Error::InvalidDpopProof(_)));
}

#[test]
fn a_proof_by_another_key_than_the_tokens_is_an_invalid_token() {
    let hash = cache::hash(TOKEN);
    let r = Request {
        jkt: "another-thumbprint",
        ..request(&hash)
    };
    let e = check(
        Some(&proof_with(|_, _| {})),
        &r,
        &settings(&[]),
        &Seen::default(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidDpopToken(_)), "{e:?}");
    assert_eq!(e.code(), "invalid_token");
}

#[test]
fn only_the_configured_algorithms_are_taken() {
    let s = settings(&[("DPOP_ALGORITHMS", "ES256")]);
    let e = run(Some(&proof_with(|_, _| {})), &s, &Seen::default(), NOW).unwrap_err();
    assert!(e.to_string().contains("use one of ES256"), "{e}");
}

#[test]
fn a_proof_is_taken_once_per_key_while_it_could_be_live() {
    let s = settings(&[]);
    let mut seen = Seen::default();
    let p = proof_with(|_, _| {});
    let (_, key, until) = run(Some(&p), &s, &seen, NOW).unwrap();
    // Not remembered until the request is forwarded: deciding twice is no replay.
    assert!(run(Some(&p), &s, &seen, NOW).is_ok());
    seen.remember(key, until, NOW);
    let e = run(Some(&p), &s, &seen, NOW + 1).unwrap_err();
    assert!(e.to_string().contains("used before"), "{e}");
    // Another jti is another proof.
    assert!(run(
        Some(&proof_with(|_, c| c["jti"] = json!("fresh"))),
        &s,
        &seen,
        NOW + 1
    )
    .is_ok());
    // Past its window the proof would be stale anyway; the memory lets go.
    assert!(run(Some(&p), &s, &seen, NOW + 61)
        .unwrap_err()
        .to_string()
        .contains("old"));
}

#[test]
fn nonces_are_the_same_in_every_isolate_and_good_for_two_periods() {
    let secret = ("DPOP_NONCE_SECRET", "a-secret-of-at-least-32-characters!");
    let (a, b) = (settings(&[secret]), settings(&[secret]));
    assert_eq!(a.nonce(NOW), b.nonce(NOW), "derived, not coordinated");
    let other = settings(&[("DPOP_NONCE_SECRET", "another-secret-of-32-characters-too")]);
    assert_ne!(a.nonce(NOW), other.nonce(NOW));
    let period = 60;
    let n = a.nonce(NOW).unwrap();
    assert_ne!(a.nonce(NOW + period), Some(n.clone()), "rotates");
    let with_nonce = |nonce: &str| proof_with(|_, c| c["nonce"] = json!(nonce));
    let seen = Seen::default();
    assert!(run(Some(&with_nonce(&n)), &a, &seen, NOW).is_ok());
    // The next period still takes it (the iat window aside).
    let later = NOW + period;
    let p = proof_with(|_, c| {
        c["nonce"] = json!(n);
        c["iat"] = json!(later);
    });
    assert!(run(Some(&p), &a, &seen, later).is_ok());
    // Two periods on, or none, or made up: use_dpop_nonce with the current one.
    let much_later = NOW + 2 * period;
    let p = proof_with(|_, c| {
        c["nonce"] = json!(n);
        c["iat"] = json!(much_later);
    });
    match run(Some(&p), &a, &seen, much_later) {
        Err(Error::UseDpopNonce(current)) => assert_eq!(Some(current), a.nonce(much_later)),
        other => panic!("{other:?}"),
    }
    for p in [proof_with(|_, _| {}), with_nonce("made-up")] {
        assert!(matches!(
            run(Some(&p), &a, &seen, NOW),
            Err(Error::UseDpopNonce(_))
        ));
    }
}

#[test]
fn bindings_are_checked_and_named() {
    assert!(with(&[]).unwrap().dpop.is_none());
    let binding = |v: &[(&'static str, &'static str)]| match with(v).unwrap_err() {
        Error::Config { binding, .. } => binding,
        e => panic!("{e:?}"),
    };
    assert_eq!(binding(&[("DPOP", "sometimes")]), "DPOP");
    assert_eq!(binding(&[("DPOP_ALGORITHMS", "ES256")]), "DPOP_ALGORITHMS");
    assert_eq!(
        binding(&[("DPOP", "allowed"), ("DPOP_ALGORITHMS", "HS256")]),
        "DPOP_ALGORITHMS"
    );
    assert_eq!(
        binding(&[("DPOP", "allowed"), ("DPOP_NONCE_SECRET", "short")]),
        "DPOP_NONCE_SECRET"
    );
    assert_eq!(
        binding(&[("DPOP", "allowed"), ("DPOP_NONCE_SECONDS", "60")]),
        "DPOP_NONCE_SECONDS"
    );
    assert_eq!(
        binding(&[("DPOP", "allowed"), ("DPOP_PROOF_WINDOW_SECONDS", "0")]),
        "DPOP_PROOF_WINDOW_SECONDS"
    );
    let s = settings(&[("DPOP_NONCE_SECRET", "a-secret-of-at-least-32-characters!")]);
    assert_eq!(s.algs(), "ES256 EdDSA RS256 PS256");
    assert!(
        !format!("{s:?}").contains("a-secret"),
        "Debug hides the secret"
    );
    assert_eq!(
        with(&[("DPOP", "required")]).unwrap().dpop.unwrap().mode,
        Mode::Required
    );
}
