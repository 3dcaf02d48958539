#![cfg(not(target_arch = "wasm32"))]
//! The README's deployment recipes are complete `wrangler.toml` environments: each
//! must build a valid configuration with the worker's own code, so the documentation
//! cannot drift from the bindings. Secrets a recipe names in a `# secrets:` line are
//! given placeholder values.

use mcp_edge_auth::config::{Config, Flavor};
use std::collections::HashMap;

/// Every ```toml block of the README that declares an `[env.<name>.vars]` table.
fn recipes() -> Vec<(String, HashMap<String, String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    for block in readme.split("```toml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if !block.contains("[env.") {
            continue;
        }
        let doc: toml::Table = block.parse().unwrap_or_else(|e| panic!("{e}\n{block}"));
        let envs = doc["env"].as_table().unwrap();
        assert_eq!(envs.len(), 1, "one environment per block:\n{block}");
        let (name, env) = envs.iter().next().unwrap();
        let mut vars: HashMap<String, String> = env["vars"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("vars are strings").to_string()))
            .collect();
        for line in block.lines().filter_map(|l| l.strip_prefix("# secrets:")) {
            for secret in line.split_whitespace() {
                vars.insert(secret.to_string(), "placeholder-secret".into());
            }
        }
        out.push((name.clone(), vars));
    }
    out
}

#[test]
fn every_recipe_builds_a_valid_configuration() {
    let recipes = recipes();
    let names: Vec<&str> = recipes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "hydra",
            "hydra-opaque",
            "ory-network",
            "keycloak",
            "auth0",
            "generic"
        ]
    );
    for (name, vars) in &recipes {
        let cfg = Config::build(|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("recipe {name}: {e}"));
        let hydra = name.starts_with("hydra") || name == "ory-network";
        assert_eq!(cfg.flavor == Flavor::Hydra, hydra, "{name}");
        assert_eq!(
            cfg.introspection.is_some(),
            name == "hydra-opaque" || name == "ory-network",
            "{name}"
        );
    }
}
