//! The doctor's checks of the upstreams: discovery, the authorization server's
//! metadata, CIMD, the JWKS, the introspection endpoint and the origin.

use super::*;

pub(super) fn discovery(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) -> Option<Upstream> {
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

pub(super) fn looks_like_hydra(doc: &serde_json::Map<String, Value>) -> bool {
    let ends = |k: &str, suffix: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .is_some_and(|v| v.ends_with(suffix))
    };
    ends("authorization_endpoint", "/oauth2/auth")
        && ends("token_endpoint", "/oauth2/token")
        && ends("jwks_uri", "/.well-known/jwks.json")
}

pub(super) fn authorization_server(cfg: &Config, up: &Upstream, out: &mut Vec<Check>) {
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
        out.push(if cfg.upstream.flavor == Flavor::Hydra {
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
pub(super) fn cimd(cfg: &Config, up: &Upstream, out: &mut Vec<Check>) {
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

pub(super) fn jwks(
    cfg: &Config,
    upstream: Option<&Upstream>,
    http: &dyn Http,
    out: &mut Vec<Check>,
) -> Option<KeySet> {
    let url = cfg
        .upstream
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
    match KeySet::parse(&answer.body, &cfg.tokens.algorithms) {
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
            let source = if cfg.upstream.jwks_url.is_some() {
                "JWKS_URL"
            } else {
                "the discovered jwks_uri"
            };
            let fix = if is_jwks {
                let algs: Vec<String> = cfg
                    .tokens
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect();
                format!("publish at least one signature key (use \"sig\" or no use) for ALGORITHMS ({}) at {url}, or widen ALGORITHMS", algs.join(" "))
            } else {
                let kind = answer.header("content-type").unwrap_or("no content type");
                format!("{source} ({url}) answered {kind}, not a JWKS (a JSON object with a \"keys\" array): point {} at the authorization server's key set", if cfg.upstream.jwks_url.is_some() { "JWKS_URL" } else { "JWKS_URL (or fix the server's jwks_uri)" })
            };
            out.push(fail("jwks", e.to_string(), fix));
            None
        }
    }
}

pub(super) fn introspect(
    cfg: &Config,
    http: &dyn Http,
    token: &str,
) -> Result<(u16, Vec<u8>), Error> {
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

pub(super) fn introspection_endpoint(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) {
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

/// The token endpoint, asked to exchange a made-up subject token with the worker's
/// credentials: a probe that must fail. `invalid_grant` says the credentials and the
/// grant were taken and only the subject token refused; anything issued for it is a
/// failure (and is dropped unread).
pub(super) fn exchange_endpoint(
    cfg: &Config,
    up: Option<&Upstream>,
    http: &dyn Http,
    out: &mut Vec<Check>,
) {
    let Some(x) = &cfg.exchange else { return };
    let name = "token exchange";
    let Some(url) = x
        .url
        .clone()
        .or_else(|| up.and_then(|u| u.token_endpoint.clone()))
    else {
        out.push(fail(
            name,
            "no token endpoint: the metadata names none and TOKEN_EXCHANGE_URL is unset",
            "set TOKEN_EXCHANGE_URL",
        ));
        return;
    };
    let body = crate::exchange::request_body("mcp-edge-auth-doctor-probe", x);
    let forwarded = cfg.forwarded_headers();
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
        ("authorization", x.credentials.as_str()),
    ];
    if let Some((host, proto)) = &forwarded {
        headers.push(("x-forwarded-host", host.as_str()));
        headers.push(("x-forwarded-proto", proto.as_str()));
    }
    let answer = match http.post(url.as_str(), &headers, body.as_bytes()) {
        Ok(a) => a,
        Err(e) => {
            out.push(fail(
                name,
                format!("{url}: {e}"),
                "check TOKEN_EXCHANGE_URL (or the discovered token_endpoint) is reachable from the worker",
            ));
            return;
        }
    };
    let code = serde_json::from_slice::<serde_json::Map<String, Value>>(&answer.body)
        .ok()
        .and_then(|d| d.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    out.push(match (answer.status, code.as_str()) {
        (200, _) => fail(
            name,
            format!("{url} issued a token for a made-up subject token"),
            "the endpoint does not check subject tokens: do not use it for exchange",
        ),
        (400, "invalid_grant") => pass(
            name,
            format!("{url} took the worker's credentials ({}) and the grant, and refused a made-up subject token", x.client_id),
        ),
        (_, "invalid_client") => fail(
            name,
            format!("{url} refused the worker's credentials (invalid_client)"),
            "set TOKEN_EXCHANGE_CLIENT_ID and TOKEN_EXCHANGE_CLIENT_SECRET (as secrets) to a confidential client of the authorization server, authenticated with client_secret_basic",
        ),
        (_, "unauthorized_client" | "unsupported_grant_type") => fail(
            name,
            format!("{url}: the worker's client may not use the token-exchange grant ({code})"),
            "allow the grant for TOKEN_EXCHANGE_CLIENT_ID (Keycloak: enable Standard token exchange on the client; oidc-provider: register the grant and list it in the client's grant_types); Ory Hydra has no RFC 8693 grant: use the identity assertion instead",
        ),
        (_, "invalid_target" | "invalid_scope") => fail(
            name,
            format!("{url} refused the target before the subject token ({code})"),
            "check TOKEN_EXCHANGE_AUDIENCE / TOKEN_EXCHANGE_RESOURCE / TOKEN_EXCHANGE_SCOPE name what the server knows",
        ),
        (status, code) => fail(
            name,
            format!("{url} answered {status} {code}"),
            "expected 400 invalid_grant for a made-up subject token: check the endpoint and the worker's client",
        ),
    });
}

pub(super) fn origin(cfg: &Config, http: &dyn Http, out: &mut Vec<Check>) {
    let url = proxy::target(cfg, &cfg.resource.protected_path, None);
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
