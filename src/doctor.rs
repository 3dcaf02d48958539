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
        .filter(|k| !crate::config::BINDINGS.contains(k))
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
            cfg.resource, cfg.issuer, cfg.origin_url
        ),
    ));
    if let Some(c) = step_up(&cfg) {
        out.push(c);
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
    origin(&cfg, http, &mut out);
    if let Some(t) = &opts.token {
        explain_token(&cfg, keys.as_ref(), t, http, opts.now, &mut out);
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

fn discovery(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) -> Option<Upstream> {
    let mut tried = Vec::new();
    for url in metadata::discovery_urls(cfg) {
        let answer = match get_upstream(cfg, http, url.as_str()) {
            Ok(a) => a,
            Err(e) => {
                out.push(fail(
                    "discovery",
                    format!("{url}: {e}"),
                    "the worker reaches the authorization server at AS_URL (default ISSUER): check that it is up and that AS_URL points at it",
                ));
                return None;
            }
        };
        match metadata::accept_upstream(cfg, &url, answer.status, &answer.body) {
            Ok(Some(up)) => {
                out.push(pass("discovery", format!("metadata at {url}")));
                return Some(up);
            }
            Ok(None) => tried.push(format!("{url} ({})", answer.status)),
            Err(e @ Error::Config { .. }) => {
                let found = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|d| d.get("issuer").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                out.push(fail(
                    "discovery",
                    e.to_string(),
                    format!("set ISSUER = {found:?} (exactly, trailing slash included), or fix the authorization server's issuer setting; tokens' iss must equal it too"),
                ));
                return None;
            }
            Err(e) => {
                out.push(fail(
                    "discovery",
                    e.to_string(),
                    "the authorization server must answer RFC 8414 or OpenID discovery with a JSON object",
                ));
                return None;
            }
        }
    }
    out.push(fail(
        "discovery",
        format!("no metadata at {}", tried.join(", ")),
        "check ISSUER (with its path, if any) and AS_URL; the server must serve /.well-known/oauth-authorization-server or /.well-known/openid-configuration for this issuer",
    ));
    None
}

fn looks_like_hydra(doc: &serde_json::Map<String, Value>) -> bool {
    let ends = |k: &str, suffix: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.ends_with(suffix))
    };
    ends("authorization_endpoint", "/oauth2/auth")
        && ends("token_endpoint", "/oauth2/token")
        && ends("jwks_uri", "/.well-known/jwks.json")
}

fn authorization_server(cfg: &Config, up: &Upstream, out: &mut Vec<Check>) {
    let doc = &up.document;
    let s256 = doc
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|v| v == "S256"));
    out.push(if s256 {
        pass("pkce", "code_challenge_methods_supported lists S256")
    } else {
        fail(
            "pkce",
            "the authorization server does not advertise S256 in code_challenge_methods_supported",
            "enable PKCE with S256 at the authorization server: MCP clients refuse a server without it (the worker adds S256 to the metadata it serves, but the server itself must honour it)",
        )
    });
    out.push(match &up.registration_endpoint {
        Some(u) => pass(
            "registration",
            format!("clients register at {}, proxied to {u}", cfg.registration_endpoint()),
        ),
        None => fail(
            "registration",
            "the authorization server advertises no registration_endpoint and REGISTRATION_URL is not set",
            if looks_like_hydra(doc) {
                "set AS_FLAVOR = \"hydra\" (the worker then uses Hydra's /oauth2/register) and enable oidc.dynamic_client_registration in Hydra"
            } else {
                "enable dynamic client registration (RFC 7591) at the authorization server, or set REGISTRATION_URL"
            },
        ),
    });
    if looks_like_hydra(doc) {
        out.push(if cfg.flavor == Flavor::Hydra {
            pass("hydra", "the server looks like Ory Hydra and AS_FLAVOR = hydra")
        } else {
            fail(
                "hydra",
                "the server looks like Ory Hydra, which ignores RFC 8707 resource: its tokens will carry aud []",
                "set AS_FLAVOR = \"hydra\" (with the single-host layout, AS_PASSTHROUGH = \"/oauth2/\"), so the worker asks Hydra for the audience; Hydra's issuer must be the worker's public URL",
            )
        });
    }
}

/// With `CIMD=true`: can the worker honour client metadata documents for this server?
fn cimd(cfg: &Config, up: &Upstream, out: &mut Vec<Check>) {
    if cfg.cimd.is_none() {
        return;
    }
    out.push(if crate::metadata::cimd_ready(cfg, up) {
        pass(
            "cimd",
            "client metadata documents are accepted: authorization and token requests pass through the worker (bind a KV namespace as CIMD_KV)",
        )
    } else {
        fail(
            "cimd",
            "CIMD is true but the worker cannot honour it, so the served metadata does not advertise it: the authorization and token endpoints must be on the resource's host under an AS_PASSTHROUGH prefix, and a registration endpoint must exist",
            "use the single-host layout: the issuer is the worker's public URL and AS_PASSTHROUGH covers the server's endpoints (\"/oauth2/\" for Hydra); enable registration or set REGISTRATION_URL",
        )
    });
}

fn jwks(
    cfg: &Config,
    upstream: Option<&Upstream>,
    http: &dyn Http,
    out: &mut Vec<Check>,
) -> Option<KeySet> {
    let url = cfg
        .jwks_url
        .clone()
        .or_else(|| upstream.and_then(|u| u.jwks_uri.clone()));
    let Some(url) = url else {
        if upstream.is_some() {
            out.push(fail(
                "jwks",
                "the authorization server advertises no jwks_uri",
                "set JWKS_URL",
            ));
        }
        return None;
    };
    let answer = match get_upstream(cfg, http, url.as_str()) {
        Ok(a) if a.status == 200 => a,
        Ok(a) => {
            out.push(fail(
                "jwks",
                format!("{url} answered {}", a.status),
                "check JWKS_URL or the server's jwks_uri",
            ));
            return None;
        }
        Err(e) => {
            out.push(fail(
                "jwks",
                format!("{url}: {e}"),
                "check JWKS_URL or the server's jwks_uri",
            ));
            return None;
        }
    };
    match KeySet::parse(&answer.body, &cfg.algorithms) {
        Ok(set) => {
            let kids: Vec<String> = set
                .keys
                .iter()
                .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
                .collect();
            let mut detail = format!(
                "{} usable signature key(s): {}",
                set.keys.len(),
                kids.join(", ")
            );
            if !set.skipped.is_empty() {
                detail.push_str(&format!("; skipped: {}", set.skipped.join("; ")));
            }
            out.push(pass("jwks", detail));
            Some(set)
        }
        Err(e) => {
            // Not a key set at all (an HTML login page, an error document): the URL is
            // wrong, not the algorithms.
            let is_jwks = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .is_some_and(|v| v.get("keys").is_some_and(serde_json::Value::is_array));
            let source = if cfg.jwks_url.is_some() {
                "JWKS_URL"
            } else {
                "the discovered jwks_uri"
            };
            let fix = if is_jwks {
                let algs: Vec<String> = cfg.algorithms.iter().map(|a| format!("{a:?}")).collect();
                format!("publish at least one signature key (use \"sig\" or no use) for ALGORITHMS ({}) at {url}, or widen ALGORITHMS", algs.join(" "))
            } else {
                let kind = answer.header("content-type").unwrap_or("no content type");
                format!("{source} ({url}) answered {kind}, not a JWKS (a JSON object with a \"keys\" array): point {} at the authorization server's key set", if cfg.jwks_url.is_some() { "JWKS_URL" } else { "JWKS_URL (or fix the server's jwks_uri)" })
            };
            out.push(fail("jwks", e.to_string(), fix));
            None
        }
    }
}

fn introspect(cfg: &Config, http: &dyn Http, token: &str) -> Result<(u16, Vec<u8>), Error> {
    let intro = cfg
        .introspection
        .as_ref()
        .ok_or_else(|| Error::IntrospectionUnavailable("INTROSPECTION_URL is not set".into()))?;
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
    ];
    if let crate::config::Credentials::Header(h) = &intro.credentials {
        headers.push(("authorization", h.as_str()));
    }
    http.post(
        intro.url.as_str(),
        &headers,
        introspection::request_body(token).as_bytes(),
    )
    .map(|a| (a.status, a.body))
    .map_err(|e| Error::IntrospectionUnavailable(format!("{}: {e}", intro.url).into()))
}

fn introspection_endpoint(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) {
    let probe = "mcp-edge-auth-doctor-probe";
    let fix = "check INTROSPECTION_URL and its credentials (INTROSPECTION_CLIENT_ID + INTROSPECTION_CLIENT_SECRET, or INTROSPECTION_BEARER_TOKEN)";
    out.push(match introspect(cfg, http, probe) {
        Err(e) => fail("introspection", e.to_string(), fix),
        Ok((status, body)) => match introspection::read_answer(status, &body) {
            Ok(Verdict::Refused(_)) => pass("introspection", "the endpoint answers RFC 7662 (a made-up token is inactive)"),
            Ok(Verdict::Active(_)) => fail("introspection", "the endpoint says a made-up token is active", "the endpoint is not checking tokens: point INTROSPECTION_URL at the real RFC 7662 endpoint"),
            Err(e) => fail(
                "introspection",
                e.to_string(),
                if status == 401 || status == 403 {
                    "the endpoint refused the worker's credentials: set INTROSPECTION_CLIENT_ID and INTROSPECTION_CLIENT_SECRET, or INTROSPECTION_BEARER_TOKEN, as secrets"
                } else {
                    fix
                },
            ),
        },
    });
}

fn origin(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) {
    let url = proxy::target(cfg, &cfg.protected_path, None);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mcp-edge-auth-doctor", "version": env!("CARGO_PKG_VERSION")}}}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        (proxy::SUBJECT, "mcp-edge-auth-doctor"),
    ];
    let check = match http.post(&url, &headers, body.as_bytes()) {
        Err(e) => fail(
            "origin",
            format!("{url}: {e}"),
            "check ORIGIN_URL: the worker forwards MCP requests to ORIGIN_URL + path",
        ),
        Ok(a) if a.status == 401 || a.status == 403 => fail(
            "origin",
            format!("{url} answered {} to initialize", a.status),
            "the origin does its own authorization: behind the worker it should trust X-Auth-Subject / X-Auth-Client-Id / X-Auth-Scopes and be reachable only through the worker",
        ),
        Ok(a) => {
            let text = String::from_utf8_lossy(&a.body);
            if (200..300).contains(&a.status) && text.contains("protocolVersion") {
                let name = text
                    .split("\"serverInfo\"")
                    .nth(1)
                    .and_then(|s| s.split("\"name\"").nth(1))
                    .and_then(|s| s.split('"').nth(1))
                    .unwrap_or("unnamed");
                pass("origin", format!("{url} answers initialize (server {name:?})"))
            } else {
                fail(
                    "origin",
                    format!("{url} answered {} without an initialize result", a.status),
                    "ORIGIN_URL + the path of RESOURCE_URL must be the origin's Streamable HTTP MCP endpoint",
                )
            }
        }
    };
    out.push(check);
}

/// Explain, step by step, what the worker would do with `t`. The token is never
/// printed; claims are.
fn explain_token(
    cfg: &Config,
    keys: Option<&KeySet>,
    t: &str,
    http: &dyn Http,
    now: i64,
    out: &mut Vec<Check>,
) {
    let t = t.trim();
    let t = t.strip_prefix("Bearer ").unwrap_or(t);
    if !introspection::looks_like_jwt(t) {
        if cfg.introspection.is_none() {
            out.push(fail(
                "token",
                "the token is opaque (not a JWT), and INTROSPECTION_URL is not set",
                "set INTROSPECTION_URL (and its credentials) so opaque tokens are introspected, or have the authorization server mint JWT access tokens (Hydra: strategies.access_token = jwt)",
            ));
            return;
        }
        let mut a = Authorizer::new(cfg.clone());
        let answer = introspect(cfg, http, t);
        match a.install_introspection(t, answer, now) {
            Ok(p) => {
                out.push(pass(
                    "token",
                    format!(
                        "opaque, active at the introspection endpoint: {}",
                        describe(&p)
                    ),
                ));
                scopes(cfg, &p, out);
            }
            Err(e) => out.push(fail("token", format!("opaque: {e}"), token_fix(cfg, &e))),
        }
        return;
    }
    let jwt = match token::parse(t, &cfg.algorithms) {
        Ok(j) => j,
        Err(e) => {
            out.push(fail("token: header", e.to_string(), token_fix(cfg, &e)));
            return;
        }
    };
    out.push(pass(
        "token: header",
        format!(
            "alg {:?}, kid {}, typ {}",
            jwt.alg,
            jwt.header.kid.as_deref().unwrap_or("(none)"),
            jwt.header.typ.as_deref().unwrap_or("(none)")
        ),
    ));
    if let Some(required) = &cfg.token_typ {
        if let Err(e) = token::check_typ(jwt.header.typ.as_deref(), required) {
            out.push(fail(
                "token: typ",
                e.to_string(),
                "unset TOKEN_TYP, or have the server mark access tokens with it",
            ));
            return;
        }
    }
    let Some(keys) = keys else {
        out.push(fail(
            "token: key",
            "no usable JWKS (see the jwks check)",
            "fix the jwks check first",
        ));
        return;
    };
    let key = match keys.lookup(jwt.header.kid.as_deref(), jwt.alg) {
        Ok(Lookup::Found(k)) => k,
        Ok(Lookup::UnknownKid) => {
            out.push(fail(
                "token: key",
                "the token's kid is not in the JWKS",
                "the token was signed by another server or a rotated-out key: check ISSUER and JWKS_URL, or get a new token",
            ));
            return;
        }
        Err(e) => {
            out.push(fail("token: key", e.to_string(), token_fix(cfg, &e)));
            return;
        }
    };
    out.push(pass(
        "token: key",
        format!("kid {}", key.kid.as_deref().unwrap_or("(none)")),
    ));
    if let Err(e) = token::verify_native(&jwt, key) {
        out.push(fail(
            "token: signature",
            e.to_string(),
            "the token was altered, or signed by another key with the same kid",
        ));
        return;
    }
    out.push(pass("token: signature", "verifies"));
    match token::check_claims(&jwt.claims, key.kid.as_deref(), cfg, now) {
        Ok(p) => {
            out.push(pass("token: claims", describe(&p)));
            scopes(cfg, &p, out);
        }
        Err(e) => out.push(fail("token: claims", e.to_string(), token_fix(cfg, &e))),
    }
}

fn describe(p: &token::Principal) -> String {
    format!(
        "sub {}, client {}, scopes [{}], expires at {}",
        p.subject.as_deref().unwrap_or("(none)"),
        p.client_id.as_deref().unwrap_or("(none)"),
        p.scopes.join(" "),
        p.exp
    )
}

fn scopes(cfg: &Config, p: &token::Principal, out: &mut Vec<Check>) {
    let missing = token::missing_scopes(p, &cfg.required_scopes, &cfg.hierarchy);
    out.push(if missing.is_empty() {
        pass(
            "token: scopes",
            format!("holds REQUIRED_SCOPES{}", implied(cfg, p, &cfg.required_scopes)),
        )
    } else {
        fail(
            "token: scopes",
            format!("lacks {}", missing.join(" ")),
            "the client must ask for these scopes (the worker's challenge names them), and the authorization server must grant them",
        )
    });
    if let Some(policy) = &cfg.policy {
        let mut named: Vec<String> = Vec::new();
        for s in policy.scopes() {
            if !named.contains(s) && !cfg.required_scopes.contains(s) {
                named.push(s.clone());
            }
        }
        let (held, lacked): (Vec<String>, Vec<String>) = named
            .into_iter()
            .partition(|s| cfg.hierarchy.grantor(&p.scopes, s).is_some());
        out.push(pass(
            "token: policy",
            format!(
                "of the policy's scopes, holds [{}]{}; lacks [{}] (operations needing them are 403 insufficient_scope, and hidden from lists)",
                held.join(" "),
                implied(cfg, p, &held),
                lacked.join(" ")
            ),
        ));
    }
}

/// `", through mcp:admin for mcp:tools, …"`: the requirements among `needed` a
/// broader scope satisfied (`SCOPE_HIERARCHY`), or nothing.
fn implied(cfg: &Config, p: &token::Principal, needed: &[String]) -> String {
    let via: Vec<String> = needed
        .iter()
        .filter_map(|s| {
            let g = cfg.hierarchy.grantor(&p.scopes, s)?;
            (g != s).then(|| format!("{s} implied by {g}"))
        })
        .collect();
    if via.is_empty() {
        String::new()
    } else {
        format!(" ({})", via.join(", "))
    }
}

/// A policy that can ask for more than `REQUIRED_SCOPES`, with the authorization
/// server on a host of its own: spec-following clients (the Python SDK, rmcp) read
/// that server's own metadata and register there, with the scope of their first
/// challenge, so the worker never sees the registration and cannot widen its scope;
/// a server holding clients to their registered scope (oidc-provider) then refuses
/// the step-up (`invalid_scope`). Said as advice: a server granting the policy's
/// scopes by default is fine.
fn step_up(cfg: &Config) -> Option<Check> {
    let policy = cfg.policy.as_ref()?;
    let resource = url::Url::parse(&cfg.resource).ok()?;
    if resource.origin() == cfg.issuer_url.origin() {
        return None;
    }
    let beyond: Vec<&String> = policy
        .scopes()
        .chain(cfg.hierarchy.scopes())
        .filter(|s| !cfg.required_scopes.contains(s))
        .collect();
    if beyond.is_empty() {
        return None;
    }
    Some(Check {
        name: "step-up".into(),
        ok: true,
        detail: format!(
            "the policy may ask for scopes beyond REQUIRED_SCOPES, and the authorization server has its own host ({}): clients that register there do so with the scope of their first challenge, which the worker never sees",
            cfg.issuer_url.origin().ascii_serialization()
        ),
        fix: Some(
            "if the server holds clients to their registered scope (oidc-provider does), step-up ends in invalid_scope: use the single-host layout (ISSUER on the worker's host with AS_PASSTHROUGH, so registrations pass through the worker, which registers every advertised scope), or have the server grant the policy's scopes to every client by default".into(),
        ),
    })
}

/// Advice for a refused token, by what the refusal says.
fn token_fix(cfg: &Config, e: &Error) -> String {
    let d = e.to_string();
    if d.contains("audience") {
        if cfg.flavor != Flavor::Hydra && d.contains("no audience") {
            return format!("the authorization server must bind tokens to {} (RFC 8707 resource). On Ory Hydra set AS_FLAVOR = \"hydra\" on the worker; on Keycloak add an Audience mapper; on Auth0 use an API with that identifier", cfg.hydra_audience());
        }
        return format!("request tokens for {} (the PRM resource), or add the token's audience to AUDIENCE if it is really this resource's", cfg.resource);
    }
    if d.contains("issuer") {
        return "ISSUER must equal the token's iss byte for byte (trailing slash included)".into();
    }
    if d.contains("expired") || d.contains("not valid yet") || d.contains("future") {
        return "get a fresh token; check the clocks (CLOCK_LEEWAY_SECONDS allows up to 300 s)"
            .into();
    }
    if d.contains("alg") || d.contains("algorithm") {
        return "add the token's algorithm to ALGORITHMS if it is asymmetric and expected".into();
    }
    "see docs/behaviour.md (Tokens)".into()
}

/// Compare a deployed worker with what the configuration implies.
fn deployed(cfg: &Config, url: &str, http: &dyn Http, out: &mut Vec<Check>) {
    let path = if cfg.protected_path == "/" {
        ""
    } else {
        cfg.protected_path.as_str()
    };
    let prm_url = format!("{url}/.well-known/oauth-protected-resource{path}");
    let expected = metadata::protected_resource(cfg);
    out.push(
        match http
            .get(&prm_url, &[])
            .map(|a| (a.status, serde_json::from_slice::<Value>(&a.body)))
        {
            Ok((200, Ok(doc))) if doc == expected => pass(
                "deployed: prm",
                format!("{prm_url} matches the configuration"),
            ),
            Ok((200, Ok(doc))) => {
                let differ: Vec<String> = expected
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| doc.get(k.as_str()) != Some(v))
                    .map(|(k, v)| {
                        format!(
                            "{k}: deployed {}, configured {v}",
                            doc.get(k.as_str()).unwrap_or(&Value::Null)
                        )
                    })
                    .collect();
                fail(
                    "deployed: prm",
                    differ.join("; "),
                    "deploy this configuration (npx wrangler deploy --env <name>), or check --env",
                )
            }
            Ok((status, _)) => fail(
                "deployed: prm",
                format!("{prm_url} answered {status}"),
                "is the worker routed at this URL?",
            ),
            Err(e) => fail(
                "deployed: prm",
                format!("{prm_url}: {e}"),
                "is the worker deployed and routed at this URL?",
            ),
        },
    );
    let ip = cfg.issuer_url.path().trim_end_matches('/');
    let as_url = format!("{url}/.well-known/oauth-authorization-server{ip}");
    out.push(match http.get(&as_url, &[]).map(|a| (a.status, serde_json::from_slice::<Value>(&a.body))) {
        Ok((200, Ok(doc))) if doc.get("issuer").and_then(Value::as_str) == Some(cfg.issuer.as_str()) => {
            pass("deployed: as metadata", format!("{as_url} names issuer {}", cfg.issuer))
        }
        Ok((200, Ok(doc))) => fail("deployed: as metadata", format!("{as_url} names issuer {}", doc.get("issuer").unwrap_or(&Value::Null)), "ISSUER differs between the deployment and this configuration"),
        Ok((status, _)) => fail("deployed: as metadata", format!("{as_url} answered {status}"), "the worker serves this from the authorization server's discovery: see the discovery check"),
        Err(e) => fail("deployed: as metadata", format!("{as_url}: {e}"), "is the worker deployed and routed at this URL?"),
    });
    let mcp = format!("{url}{}", cfg.protected_path);
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-edge-auth-doctor","version":"1"}}}"#;
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let expected_rm = format!("resource_metadata=\"{}\"", cfg.resource_metadata_url());
    out.push(match http.post(&mcp, &headers, body) {
        Ok(a) if a.status == 401 => match a.header("www-authenticate") {
            Some(c)
                if c.starts_with("Bearer") && c.contains(&expected_rm) && !c.contains("error=") =>
            {
                pass("deployed: challenge", format!("401 with {c}"))
            }
            Some(c) => fail(
                "deployed: challenge",
                format!("401 with {c}"),
                format!("the challenge should be Bearer with {expected_rm} and no error (MCP R8)"),
            ),
            None => fail(
                "deployed: challenge",
                "401 without WWW-Authenticate",
                "clients cannot discover the authorization server without it",
            ),
        },
        Ok(a) => fail(
            "deployed: challenge",
            format!("{mcp} answered {} to a request without a token", a.status),
            "the MCP path must answer 401 without a token: is the worker in front of it?",
        ),
        Err(e) => fail(
            "deployed: challenge",
            format!("{mcp}: {e}"),
            "is the worker deployed and routed at this URL?",
        ),
    });
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
}
