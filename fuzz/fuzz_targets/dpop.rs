//! DPoP proofs (RFC 9449 §4.3) from the `DPoP` header to what the entry verifies:
//! any header, against a token bound to the proof's own key (so every rule is reached)
//! and to another key, with nonces off and on. Also the `Authorization` scheme split
//! (Bearer and DPoP). Never a panic; the offsets handed to JS always slice the header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::cache;
use mcp_edge_auth::config::Config;
use mcp_edge_auth::dpop::{self, Request, Seen};
use mcp_edge_auth::token;
use std::sync::OnceLock;

fn config(nonces: bool) -> &'static Config {
    static PLAIN: OnceLock<Config> = OnceLock::new();
    static NONCES: OnceLock<Config> = OnceLock::new();
    let cell = if nonces { &NONCES } else { &PLAIN };
    cell.get_or_init(|| {
        Config::build(|k| match k {
            "ORIGIN_URL" => Some("http://127.0.0.1:9000".into()),
            "RESOURCE_URL" => Some("https://mcp.example.com/mcp".into()),
            "ISSUER" => Some("https://auth.example.com/".into()),
            "DPOP" => Some("allowed".into()),
            "DPOP_NONCE_SECRET" if nonces => Some("a-fuzzing-secret-of-32-characters!!".into()),
            _ => None,
        })
        .expect("a valid configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = token::credential(Some(text), true);
    let _ = token::scheme(Some(text));
    let cfg = config(data.first().is_some_and(|b| b & 1 == 1));
    let settings = cfg.dpop.as_ref().expect("DPoP on");
    let hash = cache::hash("the-access-token");
    let seen = Seen::default();
    // The proof's own key, when it has one the rules accept, as the token's binding.
    let mut jkts = vec!["not-the-key".to_string()];
    let probe = Request {
        method: "POST",
        url: "https://mcp.example.com/mcp",
        token_hash: &hash,
        jkt: "not-the-key",
    };
    if let Ok((check, _, _)) = dpop::check(Some(text), &probe, settings, &seen, 1_800_000_000) {
        jkts.push(dpop::thumbprint(&check.jwk));
    }
    for jkt in &jkts {
        let r = Request { jkt, ..probe };
        for now in [0, 1_800_000_000, i64::MAX, i64::MIN] {
            if let Ok((check, _, _)) = dpop::check(Some(text), &r, settings, &seen, now) {
                assert!(text.get(check.input.0..check.input.1).is_some());
                assert!(text.get(check.signature.0..check.signature.1).is_some());
            }
        }
    }
});
