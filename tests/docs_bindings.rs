#![cfg(not(target_arch = "wasm32"))]
//! The configuration table (docs/configuration.md) names exactly the worker's text
//! bindings (`config::TABLE`, which also drives the required-binding check and the
//! doctor's misspelling check), each marked required and with its default as the
//! table says, so the documentation cannot drift from the code.

use mcp_edge_auth::config::TABLE;

/// Binding names in the first column of the table's rows: `` `A`, `B` ``.
fn documented() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    let mut out = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for name in first.split('`').skip(1).step_by(2) {
            out.push(name.to_string());
        }
    }
    out
}

#[test]
fn the_configuration_table_lists_every_binding_and_only_bindings() {
    let documented = documented();
    let missing: Vec<&str> = TABLE
        .iter()
        .map(|b| b.name)
        .filter(|b| !documented.iter().any(|d| d == b))
        .collect();
    assert!(
        missing.is_empty(),
        "bindings not in docs/configuration.md: {missing:?}"
    );
    // Besides the text bindings, the table documents the runtime bindings the worker
    // looks up by name (a KV namespace, rate limiters).
    let runtime = [
        "CIMD_KV",
        "MCP_RATE_LIMITER",
        "MCP_CLIENT_RATE_LIMITER",
        "REGISTRATION_RATE_LIMITER",
    ];
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| !TABLE.iter().any(|b| b.name == d.as_str()) && !runtime.contains(&d.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "documented but not bindings: {unknown:?}"
    );
}

#[test]
fn the_required_column_and_the_defaults_follow_the_table() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .expect("docs/configuration.md");
    for b in TABLE {
        let row = doc
            .lines()
            .find(|l| {
                l.starts_with("| `")
                    && l.split('|')
                        .nth(1)
                        .is_some_and(|c| c.contains(&format!("`{}`", b.name)))
            })
            .unwrap_or_else(|| panic!("no row for {}", b.name));
        let required = row.split('|').nth(2).unwrap_or_default().trim();
        assert_eq!(
            required == "yes",
            b.required,
            "{}: documented as {required:?}",
            b.name
        );
        assert!(!b.meaning.is_empty(), "{} has a meaning", b.name);
        if let Some(default) = b.default {
            assert!(
                row.to_ascii_lowercase().contains("default") && row.contains(default),
                "{}: the row does not give the default {default:?}",
                b.name
            );
        }
    }
}
