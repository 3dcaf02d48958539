//! Token handling from the `Authorization` header to a decision: bearer extraction,
//! JWT parsing (header, allowlist, claims), JWKS parsing and key lookup, claim checks,
//! and introspection answers (RFC 7662) read and held to the same claim rules.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::config::Config;
use mcp_edge_auth::introspection;
use mcp_edge_auth::jwks::KeySet;
use mcp_edge_auth::token;
use std::sync::OnceLock;

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        Config::build(|k| match k {
            "ORIGIN_URL" => Some("http://127.0.0.1:9000".into()),
            "RESOURCE_URL" => Some("https://mcp.example.com/mcp".into()),
            "ISSUER" => Some("https://auth.example.com/".into()),
            "REQUIRED_SCOPES" => Some("mcp:tools".into()),
            _ => None,
        })
        .expect("a valid configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    // The first byte splits the input into a header value and a JWKS document.
    let (cut, rest) = match data.split_first() {
        Some((c, r)) => (*c as usize % (r.len() + 1), r),
        None => return,
    };
    let (header, jwks) = rest.split_at(cut);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let Ok(t) = token::bearer(Some(header)) {
        let _ = introspection::looks_like_jwt(t);
        let _ = introspection::request_body(t);
        if let Ok(jwt) = token::parse(t, &cfg.tokens.algorithms) {
            let _ = token::check_typ(jwt.header.typ.as_deref(), "at+jwt");
            if let Ok(keys) = KeySet::parse(jwks, &cfg.tokens.algorithms) {
                let _ = keys.lookup(jwt.header.kid.as_deref(), jwt.alg);
            }
            let _ = token::check_claims(&jwt.claims, jwt.header.kid.as_deref(), cfg, 1_800_000_000);
        }
    }
    let _ = KeySet::parse(rest, &cfg.tokens.algorithms);
    if let Ok(introspection::Verdict::Active(claims)) = introspection::read_answer(200, rest) {
        let _ = token::check_claims(&claims, None, cfg, 1_800_000_000);
    }
});
