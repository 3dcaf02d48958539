#![cfg(not(target_arch = "wasm32"))]
//! The deployment recipes (docs/deploying.md) are complete `wrangler.toml` environments: each
//! must build a valid configuration with the worker's own code, so the documentation
//! cannot drift from the bindings. Secrets a recipe names in a `# secrets:` line are
//! given placeholder values.

use mcp_edge_auth::config::{Config, Flavor};
use std::collections::HashMap;

/// Every ```toml block of docs/deploying.md that declares an `[env.<name>.vars]` table.
/// Each recipe: its name, its vars (secrets as placeholders), and the names of the
/// KV namespaces it binds.
type Recipe = (String, HashMap<String, String>, Vec<String>);

fn recipes() -> Vec<Recipe> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploying.md")).unwrap();
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
        let kv = env
            .get("kv_namespaces")
            .and_then(|k| k.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.get("binding")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push((name.clone(), vars, kv));
    }
    out
}

#[test]
fn every_recipe_builds_a_valid_configuration() {
    let recipes = recipes();
    let names: Vec<&str> = recipes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "hydra",
            "hydra-cimd",
            "hydra-opaque",
            "ory-network",
            "keycloak",
            "auth0",
            "generic"
        ]
    );
    for (name, vars, kv) in &recipes {
        let cfg = Config::build(|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("recipe {name}: {e}"));
        let hydra = name.starts_with("hydra") || name == "ory-network";
        assert_eq!(cfg.upstream.flavor == Flavor::Hydra, hydra, "{name}");
        assert_eq!(
            cfg.introspection.is_some(),
            name == "hydra-opaque" || name == "ory-network",
            "{name}"
        );
        // CIMD needs its KV namespace bound (the worker refuses to start without it).
        assert_eq!(cfg.cimd.is_some(), name == "hydra-cimd", "{name}");
        assert_eq!(
            kv.iter().any(|b| b == "CIMD_KV"),
            cfg.cimd.is_some(),
            "{name}"
        );
    }
}
