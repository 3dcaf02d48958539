//! Configuration parsing: bindings given as `NAME=value` lines, any of them malformed,
//! including `SCOPE_POLICY` JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::config::Config;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut vars: HashMap<&str, &str> = HashMap::from([
        ("ORIGIN_URL", "http://127.0.0.1:9000"),
        ("RESOURCE_URL", "https://mcp.example.com/mcp"),
        ("ISSUER", "https://mcp.example.com/oidc"),
    ]);
    for line in text.split('\n') {
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k, v);
        }
    }
    let _ = Config::build(|k| vars.get(k).map(|v| v.to_string()));
});
