//! The deployment doctor's checks, pure: bindings in, HTTP through [`Http`], a list of
//! [`Check`]s out. The command (`src/bin/doctor.rs`) supplies a real HTTP client with
//! timeouts and prints the report; tests supply recorded answers.
//!
//! Every check runs the worker's own code on what the upstreams answer: the
//! configuration through [`Config::build`], discovery through
//! [`metadata::accept_upstream`], keys through [`KeySet::parse`], a token through
//! [`token::parse`], [`token::verify_native`] and [`token::check_claims`], an opaque
//! token through [`Authorizer::install_introspection`]. Nothing is reimplemented, so
//! what passes here passes at the edge. No check prints a token or a secret.

use crate::authorizer::Authorizer;
use crate::config::{Config, Flavor};
use crate::error::Error;
use crate::introspection::{self, Verdict};
use crate::jwks::{KeySet, Lookup};
use crate::metadata::{self, Upstream};
use crate::proxy;
use crate::token;
use serde_json::{json, Value};
use std::collections::HashMap;

mod deployed;
mod explain;
mod upstream;

use deployed::deployed;
use explain::explain_token;
#[cfg(test)]
use explain::scopes;
use upstream::{
    authorization_server, cimd, discovery, exchange_endpoint, introspection_endpoint, jwks, origin,
};

/// An HTTP answer: the worker's own ([`crate::platform::Answer`]).
pub use crate::platform::Answer;

/// The network, as the doctor sees it. Errors are human-readable reasons
/// (unreachable, timed out); the implementation must bound every call in time and
/// must not follow redirects.
pub trait Http {
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String>;
    fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String>;
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to change, and where, when the check fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn pass(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// What to check beyond the configuration and its upstreams.
#[derive(Debug, Default)]
pub struct Options {
    /// A token to explain (`--token`).
    pub token: Option<String>,
    /// A DPoP proof to check with it (`--dpop-proof`), for a request of
    /// `dpop_method` (default POST) to `RESOURCE_URL`.
    pub dpop_proof: Option<String>,
    pub dpop_method: Option<String>,
    /// A deployed worker to compare with the configuration (`--url`).
    pub url: Option<String>,
    /// Seconds since the epoch.
    pub now: i64,
}

/// The bindings of `wrangler.toml`: `[vars]` at the top, or `[env.<env>.vars]`, then
/// `.dev.vars` (`KEY=value` lines, as wrangler reads them), then `overrides`.
pub fn load_vars(
    wrangler_toml: &str,
    env: Option<&str>,
    dev_vars: Option<&str>,
    overrides: &[(String, String)],
) -> Result<HashMap<String, String>, String> {
    let doc: toml::Table = wrangler_toml
        .parse()
        .map_err(|e| format!("wrangler.toml is not TOML: {e}"))?;
    let vars = match env {
        None => doc.get("vars"),
        Some(name) => doc
            .get("env")
            .and_then(|e| e.get(name))
            .ok_or_else(|| format!("wrangler.toml has no [env.{name}]"))?
            .get("vars"),
    };
    let mut out = HashMap::new();
    if let Some(vars) = vars {
        let table = vars
            .as_table()
            .ok_or("the vars of wrangler.toml are not a table")?;
        for (k, v) in table {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(format!("wrangler.toml: {k} is not a string or number")),
            };
            out.insert(k.clone(), value);
        }
    }
    for line in dev_vars.unwrap_or_default().lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(".dev.vars: {line:?} is not KEY=value"));
        };
        let v = v.trim();
        let unquoted = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), unquoted.to_string());
    }
    for (k, v) in overrides {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn config_fix(e: &Error) -> String {
    match e {
        Error::Config { binding, .. } => format!(
            "set {binding} in wrangler.toml ([vars] or [env.<name>.vars]), .dev.vars or as a secret; see docs/configuration.md"
        ),
        _ => "see docs/configuration.md".into(),
    }
}

/// Run every check. The configuration comes first: when it fails, nothing else can
/// be judged and the report stops there.
pub fn run(vars: &HashMap<String, String>, http: &dyn Http, opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let cfg = match Config::build(|k| vars.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => {
            out.push(fail("configuration", e.to_string(), config_fix(&e)));
            return out;
        }
    };
    let mut unknown: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| !crate::config::is_binding(k))
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        out.push(fail(
            "bindings",
            format!("not bindings of this worker: {}", unknown.join(", ")),
            "remove them or correct their names (a misspelt binding is silently unset); docs/configuration.md lists every binding",
        ));
    }
    out.push(pass(
        "configuration",
        format!(
            "resource {}, issuer {}, origin {}",
            cfg.resource.id, cfg.upstream.issuer, cfg.origin.url
        ),
    ));
    if let Some(c) = step_up(&cfg) {
        out.push(c);
    }
    if let Some(a) = &cfg.assertion {
        out.push(pass(
            "assertion",
            format!(
                "{} key {} signs for audience {} ({} s); {} published",
                a.key.alg,
                a.key.kid,
                a.audience,
                a.ttl,
                if a.second.is_some() {
                    "2 keys"
                } else {
                    "1 key"
                }
            ),
        ));
    }
    let upstream = discovery(&cfg, http, &mut out);
    if let Some(up) = &upstream {
        authorization_server(&cfg, up, &mut out);
        cimd(&cfg, up, &mut out);
    }
    let keys = jwks(&cfg, upstream.as_ref(), http, &mut out);
    if cfg.introspection.is_some() {
        introspection_endpoint(&cfg, http, &mut out);
    }
    exchange_endpoint(&cfg, upstream.as_ref(), http, &mut out);
    origin(&cfg, http, &mut out);
    if let Some(t) = &opts.token {
        explain_token(&cfg, keys.as_ref(), t, http, opts, &mut out);
    }
    if let Some(url) = &opts.url {
        deployed(&cfg, url.trim_end_matches('/'), http, &mut out);
    }
    out
}

/// The headers the worker sends the authorization server (`X-Forwarded-*` in the
/// single-host layout, [`Config::forwarded_headers`]), so it answers the doctor as it
/// answers the worker.
fn get_upstream(cfg: &Config, http: &dyn Http, url: &str) -> Result<Answer, String> {
    let forwarded = cfg.forwarded_headers();
    let headers: Vec<(&str, &str)> = forwarded
        .iter()
        .flat_map(|(host, proto)| {
            [
                ("x-forwarded-host", host.as_str()),
                ("x-forwarded-proto", proto.as_str()),
            ]
        })
        .collect();
    http.get(url, &headers)
}

/// A policy that can ask for more than `REQUIRED_SCOPES`, with the authorization
/// server on a host of its own: spec-following clients (the Python SDK, rmcp) read
/// that server's own metadata and register there, with the scope of their first
/// challenge, so the worker never sees the registration and cannot widen its scope;
/// a server holding clients to their registered scope (oidc-provider) then refuses
/// the step-up (`invalid_scope`). Said as advice: a server granting the policy's
/// scopes by default is fine.
fn step_up(cfg: &Config) -> Option<Check> {
    let policy = cfg.scopes.policy.as_ref()?;
    let resource = url::Url::parse(&cfg.resource.id).ok()?;
    if resource.origin() == cfg.upstream.issuer_url.origin() {
        return None;
    }
    let beyond: Vec<&String> = policy
        .scopes()
        .chain(cfg.scopes.hierarchy.scopes())
        .filter(|s| !cfg.scopes.required.contains(s))
        .collect();
    if beyond.is_empty() {
        return None;
    }
    Some(Check {
        name: "step-up".into(),
        ok: true,
        detail: format!(
            "the policy may ask for scopes beyond REQUIRED_SCOPES, and the authorization server has its own host ({}): clients that register there do so with the scope of their first challenge, which the worker never sees",
            cfg.upstream.issuer_url.origin().ascii_serialization()
        ),
        fix: Some(
            "if the server holds clients to their registered scope (oidc-provider does), step-up ends in invalid_scope: use the single-host layout (ISSUER on the worker's host with AS_PASSTHROUGH, so registrations pass through the worker, which registers every advertised scope), or have the server grant the policy's scopes to every client by default".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
name = "x"
[vars]
ORIGIN_URL = "http://127.0.0.1:1"
[env.demo.vars]
ORIGIN_URL = "http://127.0.0.1:2"
RESOURCE_URL = "http://127.0.0.1:3/mcp"
CLOCK_LEEWAY_SECONDS = 30
"#;

    #[test]
    fn vars_come_from_the_chosen_env_then_dev_vars_then_overrides() {
        let top = load_vars(TOML, None, None, &[]).unwrap();
        assert_eq!(top["ORIGIN_URL"], "http://127.0.0.1:1");
        let demo = load_vars(
            TOML,
            Some("demo"),
            Some("# comment\nISSUER=\"http://i\"\nRESOURCE_URL=http://r/mcp\n"),
            &[("ISSUER".into(), "http://over".into())],
        )
        .unwrap();
        assert_eq!(demo["ORIGIN_URL"], "http://127.0.0.1:2");
        assert_eq!(demo["RESOURCE_URL"], "http://r/mcp");
        assert_eq!(demo["ISSUER"], "http://over");
        assert_eq!(demo["CLOCK_LEEWAY_SECONDS"], "30");
        assert!(load_vars(TOML, Some("nope"), None, &[])
            .unwrap_err()
            .contains("[env.nope]"));
        assert!(load_vars("[vars", None, None, &[]).is_err());
        assert!(load_vars(TOML, None, Some("JUSTAWORD"), &[]).is_err());
    }

    struct Offline;
    impl Http for Offline {
        fn get(&self, url: &str, _: &[(&str, &str)]) -> Result<Answer, String> {
            Err(format!("{url} unreachable"))
        }
        fn post(&self, url: &str, _: &[(&str, &str)], _: &[u8]) -> Result<Answer, String> {
            Err(format!("{url} unreachable"))
        }
    }

    #[test]
    fn a_bad_configuration_stops_the_report_with_the_binding_named() {
        let vars: HashMap<String, String> =
            [("ORIGIN_URL".to_string(), "http://o".to_string())].into();
        let report = run(&vars, &Offline, &Options::default());
        assert_eq!(report.len(), 1);
        assert!(!report[0].ok);
        assert!(report[0].detail.contains("RESOURCE_URL"), "{:?}", report[0]);
        assert!(report[0].fix.as_deref().unwrap().contains("RESOURCE_URL"));
    }

    /// The three required bindings, pointing at closed ports.
    fn minimal() -> HashMap<String, String> {
        [
            ("ORIGIN_URL", "http://127.0.0.1:1"),
            ("RESOURCE_URL", "http://127.0.0.1:2/mcp"),
            ("ISSUER", "http://127.0.0.1:3/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn misspelt_bindings_are_named() {
        let mut vars = minimal();
        vars.insert("REQUIRED_SCOPE".into(), "mcp:tools".into());
        let report = run(&vars, &Offline, &Options::default());
        let c = report.iter().find(|c| c.name == "bindings").unwrap();
        assert!(!c.ok);
        assert_eq!(c.detail, "not bindings of this worker: REQUIRED_SCOPE");
    }

    /// An authorization server that answers discovery with `doc` and nothing else.
    struct Discovery(serde_json::Value);
    impl Http for Discovery {
        fn get(&self, url: &str, _: &[(&str, &str)]) -> Result<Answer, String> {
            if url.contains("/.well-known/oauth-authorization-server") {
                Ok(Answer {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: self.0.to_string().into_bytes(),
                })
            } else {
                Err(format!("{url} unreachable"))
            }
        }
        fn post(&self, url: &str, _: &[(&str, &str)], _: &[u8]) -> Result<Answer, String> {
            Err(format!("{url} unreachable"))
        }
    }

    /// A token endpoint answering every exchange with `status` and `body`.
    struct TokenEndpoint(u16, &'static str);
    impl Http for TokenEndpoint {
        fn get(&self, url: &str, _: &[(&str, &str)]) -> Result<Answer, String> {
            Err(format!("{url} unreachable"))
        }
        fn post(&self, url: &str, h: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
            if url != "http://127.0.0.1:4/token" {
                return Err(format!("{url} unreachable"));
            }
            assert!(h
                .iter()
                .any(|(n, v)| *n == "authorization" && v.starts_with("Basic ")));
            let body = String::from_utf8_lossy(body);
            assert!(body.contains("subject_token=mcp-edge-auth-doctor-probe"));
            Ok(Answer {
                status: self.0,
                headers: vec![],
                body: self.1.as_bytes().to_vec(),
            })
        }
    }

    #[test]
    fn the_exchange_probe_passes_only_on_invalid_grant() {
        let mut vars = minimal();
        for (k, v) in [
            ("TOKEN_EXCHANGE", "true"),
            ("TOKEN_EXCHANGE_URL", "http://127.0.0.1:4/token"),
            ("TOKEN_EXCHANGE_CLIENT_ID", "edge"),
            ("TOKEN_EXCHANGE_CLIENT_SECRET", "s"),
            ("TOKEN_EXCHANGE_AUDIENCE", "api"),
        ] {
            vars.insert(k.into(), v.into());
        }
        let check = |status, body| {
            run(&vars, &TokenEndpoint(status, body), &Options::default())
                .into_iter()
                .find(|c| c.name == "token exchange")
                .unwrap()
        };
        assert!(check(400, r#"{"error":"invalid_grant"}"#).ok);
        for (status, body, fix) in [
            (
                401,
                r#"{"error":"invalid_client"}"#,
                "TOKEN_EXCHANGE_CLIENT_SECRET",
            ),
            (
                400,
                r#"{"error":"unauthorized_client"}"#,
                "Standard token exchange",
            ),
            (400, r#"{"error":"unsupported_grant_type"}"#, "Hydra"),
            (
                400,
                r#"{"error":"invalid_target"}"#,
                "TOKEN_EXCHANGE_AUDIENCE",
            ),
            (
                200,
                r#"{"access_token":"x","token_type":"Bearer"}"#,
                "do not use it",
            ),
            (500, "", "invalid_grant"),
        ] {
            let c = check(status, body);
            assert!(!c.ok, "{status} {body}");
            assert!(c.fix.as_deref().unwrap().contains(fix), "{c:?}");
        }
    }

    #[test]
    fn cimd_is_checked_against_the_served_endpoints() {
        let mut vars = minimal();
        for (k, v) in [
            ("ISSUER", "http://127.0.0.1:2/oidc"),
            ("AS_URL", "http://127.0.0.1:3"),
            ("AS_PASSTHROUGH", "/oidc/"),
            ("CIMD", "true"),
        ] {
            vars.insert(k.into(), v.into());
        }
        let doc = |auth: &str| {
            serde_json::json!({
                "issuer": "http://127.0.0.1:2/oidc",
                "authorization_endpoint": auth,
                "token_endpoint": "http://127.0.0.1:2/oidc/token",
                "registration_endpoint": "http://127.0.0.1:2/oidc/reg",
                "code_challenge_methods_supported": ["S256"],
            })
        };
        let check = |d| {
            run(&vars, &Discovery(d), &Options::default())
                .into_iter()
                .find(|c| c.name == "cimd")
                .unwrap()
        };
        assert!(check(doc("http://127.0.0.1:2/oidc/auth")).ok);
        let c = check(doc("https://login.example.com/authorize"));
        assert!(!c.ok);
        assert!(c.fix.unwrap().contains("AS_PASSTHROUGH"));
    }

    #[test]
    fn dead_hosts_are_failed_checks_with_advice() {
        let vars = minimal();
        let report = run(&vars, &Offline, &Options::default());
        let names: Vec<(&str, bool)> = report.iter().map(|c| (c.name.as_str(), c.ok)).collect();
        assert_eq!(
            names,
            [
                ("configuration", true),
                ("discovery", false),
                ("origin", false)
            ]
        );
        assert!(report.iter().all(|c| c.ok || c.fix.is_some()));
    }

    #[test]
    fn a_policy_with_the_server_on_its_own_host_gets_step_up_advice() {
        let mut vars = minimal();
        vars.insert("REQUIRED_SCOPES".into(), "mcp:tools".into());
        vars.insert(
            "SCOPE_POLICY".into(),
            r#"{"methods": {"tools/call": {"names": {"deploy": "deploy:run"}}}}"#.into(),
        );
        let report = run(&vars, &Offline, &Options::default());
        let c = report.iter().find(|c| c.name == "step-up").expect("advice");
        assert!(c.ok && c.detail.contains("http://127.0.0.1:3"), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("single-host layout"));
        // The single-host layout, or a policy asking for nothing more: no advice.
        let mut single = vars.clone();
        single.insert("ISSUER".into(), "http://127.0.0.1:2/oidc".into());
        single.insert("AS_URL".into(), "http://127.0.0.1:3/".into());
        single.insert("AS_PASSTHROUGH".into(), "/oidc/".into());
        let report = run(&single, &Offline, &Options::default());
        assert!(report.iter().all(|c| c.name != "step-up"), "{report:?}");
        vars.insert("SCOPE_POLICY".into(), r#"{"default": "mcp:tools"}"#.into());
        let report = run(&vars, &Offline, &Options::default());
        assert!(report.iter().all(|c| c.name != "step-up"));
    }

    #[test]
    fn a_token_explanation_names_the_implication_that_satisfied_a_requirement() {
        let mut vars = minimal();
        vars.insert("REQUIRED_SCOPES".into(), "mcp:tools".into());
        vars.insert(
            "SCOPE_HIERARCHY".into(),
            r#"{"mcp:admin": "mcp:tools deploy:run"}"#.into(),
        );
        vars.insert(
            "SCOPE_POLICY".into(),
            r#"{"methods": {"tools/call": {"names": {"deploy": "deploy:run", "nuke": "nuke"}}}}"#
                .into(),
        );
        let cfg = Config::build(|k| vars.get(k).cloned()).unwrap();
        let p = token::Principal {
            subject: None,
            client_id: None,
            scopes: vec!["mcp:admin".into()],
            exp: 0,
            nbf: None,
            kid: None,
            jkt: None,
        };
        let mut out = Vec::new();
        scopes(&cfg, &p, &mut out);
        assert_eq!(
            out[0].detail,
            "holds REQUIRED_SCOPES (mcp:tools implied by mcp:admin)"
        );
        assert!(
            out[1]
                .detail
                .contains("holds [deploy:run] (deploy:run implied by mcp:admin); lacks [nuke]"),
            "{}",
            out[1].detail
        );
    }

    /// Answers the worker's JWKS path with `jwks`, everything else unreachable.
    struct Deployed(String);
    impl Http for Deployed {
        fn get(&self, url: &str, _: &[(&str, &str)]) -> Result<Answer, String> {
            if url.ends_with(crate::assertion::JWKS_PATH) {
                Ok(Answer {
                    status: 200,
                    headers: vec![],
                    body: self.0.clone().into_bytes(),
                })
            } else {
                Err(format!("{url} unreachable"))
            }
        }
        fn post(&self, url: &str, _: &[(&str, &str)], _: &[u8]) -> Result<Answer, String> {
            Err(format!("{url} unreachable"))
        }
    }

    #[test]
    fn the_assertion_key_is_described_and_its_deployed_jwks_compared() {
        let mut vars = minimal();
        let key = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"edge-1"}"#;
        vars.insert("ASSERTION_KEY".into(), key.into());
        let cfg = Config::build(|k| vars.get(k).cloned()).unwrap();
        let published = cfg.assertion.as_ref().unwrap().jwks().to_string();
        let opts = Options {
            url: Some("https://mcp.example.com".into()),
            ..Default::default()
        };
        let report = run(&vars, &Deployed(published), &opts);
        let described = report.iter().find(|c| c.name == "assertion").unwrap();
        assert!(
            described.ok && described.detail.contains("EdDSA key edge-1"),
            "{described:?}"
        );
        let deployed = report
            .iter()
            .find(|c| c.name == "deployed: assertion keys")
            .unwrap();
        assert!(deployed.ok, "{deployed:?}");
        // Another key deployed: failed, with advice.
        let other = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"old"}]}"#;
        let report = run(&vars, &Deployed(other.into()), &opts);
        let deployed = report
            .iter()
            .find(|c| c.name == "deployed: assertion keys")
            .unwrap();
        assert!(!deployed.ok && deployed.fix.is_some());
        // A bad key stops the report at the configuration, naming the binding.
        vars.insert("ASSERTION_KEY".into(), "{}".into());
        let report = run(&vars, &Offline, &Options::default());
        assert!(
            report[0].detail.contains("ASSERTION_KEY"),
            "{:?}",
            report[0]
        );
    }
}
