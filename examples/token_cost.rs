//! Native cost of the token work, for the benchmark's report (BENCHMARKS.md):
//! `cargo run --release --example token_cost`.
//!
//! * a signature check with jsonwebtoken's pure-Rust backend (what host builds use;
//!   the worker uses WebCrypto instead), per algorithm;
//! * parsing a token (segments, base64url, header and claims JSON);
//! * the whole synchronous decision for a token already validated (the hot path:
//!   SHA-256 of the token, cache lookup, scope check, the reply string).
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use mcp_edge_auth::authorizer::{Authorizer, Decision, RequestInfo};
    use mcp_edge_auth::config::{Config, LogLevel};
    use mcp_edge_auth::jwks::KeySet;
    use mcp_edge_auth::token;
    use serde_json::json;
    use std::time::Instant;

    fn key(name: &str, alg: Algorithm) -> EncodingKey {
        let pem = std::fs::read(format!(
            "{}/tests/fixtures/keys/{name}.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
            _ => EncodingKey::from_ed_pem(&pem).unwrap(),
        }
    }

    fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
        for _ in 0..n / 10 {
            f();
        }
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    }

    pub fn run() {
        let vars = [
            ("ORIGIN_URL", "http://127.0.0.1:9000"),
            ("RESOURCE_URL", "https://mcp.example.com/mcp"),
            ("ISSUER", "https://auth.example.com/"),
            ("REQUIRED_SCOPES", "mcp:tools"),
        ];
        let cfg = Config::build(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let claims = json!({"iss": "https://auth.example.com/", "sub": "u", "aud": "https://mcp.example.com/mcp", "scope": "mcp:tools", "exp": 4_000_000_000u64, "client_id": "c"});
        println!("| operation (native, this machine) | µs per op |");
        println!("|---|---|");
        for (name, alg) in [
            ("rsa", Algorithm::RS256),
            ("ec", Algorithm::ES256),
            ("ed25519", Algorithm::EdDSA),
        ] {
            let k = key(name, alg);
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&k, alg).unwrap()).unwrap();
            jwk["kid"] = json!("k");
            let keys =
                KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes(), &[alg]).unwrap();
            let mut h = Header::new(alg);
            h.kid = Some("k".into());
            let t = encode(&h, &claims, &k).unwrap();
            let jwt = token::parse(&t, &[alg]).unwrap();
            let us = per_op(200, || {
                token::verify_native(&jwt, &keys.keys[0]).unwrap();
            });
            println!("| signature check, {alg:?} (jsonwebtoken rust_crypto) | {us:.1} |");
            if alg == Algorithm::RS256 {
                let us = per_op(20_000, || {
                    token::parse(&t, &[alg]).unwrap();
                });
                println!("| parse a token (RS256, {} bytes) | {us:.2} |", t.len());
                let mut a = Authorizer::new(cfg.clone());
                let _ = a.install_keys(Ok(json!({"keys": [jwk]}).to_string().as_bytes()), 0);
                let auth = format!("Bearer {t}");
                let req = RequestInfo {
                    method: "POST",
                    path: "/mcp",
                    query: None,
                    authorization: Some(&auth),
                    origin: None,
                    ..Default::default()
                };
                let Decision::Verify(p) = a.check(&req, 1) else {
                    panic!()
                };
                assert!(a.ahead(&req, &p, 1).is_some());
                a.accept(*p, 1);
                let us = per_op(20_000, || {
                    let d = a.check(&req, 2);
                    assert!(matches!(d, Decision::Forward { .. }));
                    std::hint::black_box(d.to_wire(LogLevel::Warn));
                });
                println!("| whole decision for a cached token, with its reply string | {us:.2} |");
            }
        }
    }
}

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::run();
}
