//! The doctor's checks of a deployed worker (`--url`): what it serves, as clients
//! read it.

use super::*;

/// With `ASSERTION_KEY`: the deployed worker publishes the configured keys, public
/// halves only.
fn assertion_keys(cfg: &Config, url: &str, http: &dyn Http, out: &mut Vec<Check>) {
    let Some(a) = &cfg.assertion else { return };
    let jwks_url = format!("{url}{}", crate::assertion::JWKS_PATH);
    let expected = a.jwks();
    out.push(match http.get(&jwks_url, &[]) {
        Ok(answer) if answer.status == 200 => match serde_json::from_slice::<Value>(&answer.body) {
            Ok(doc) if doc == expected => pass(
                "deployed: assertion keys",
                format!(
                    "{jwks_url} publishes kid {} (signing){}",
                    a.key.kid,
                    a.second
                        .as_ref()
                        .map(|k| format!(" and {}", k.kid))
                        .unwrap_or_default()
                ),
            ),
            _ => fail(
                "deployed: assertion keys",
                format!("{jwks_url} does not publish the configured keys"),
                "deploy this configuration (ASSERTION_KEY, ASSERTION_SECOND_KEY), or check --env",
            ),
        },
        Ok(answer) => fail(
            "deployed: assertion keys",
            format!("{jwks_url} answered {}", answer.status),
            "deploy a build with ASSERTION_KEY set",
        ),
        Err(e) => fail(
            "deployed: assertion keys",
            format!("{jwks_url}: {e}"),
            "check --url",
        ),
    });
}

/// Compare a deployed worker with what the configuration implies.
pub(super) fn deployed(cfg: &Config, url: &str, http: &dyn Http, out: &mut Vec<Check>) {
    assertion_keys(cfg, url, http, out);
    let path = if cfg.resource.protected_path == "/" {
        ""
    } else {
        cfg.resource.protected_path.as_str()
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
    let ip = cfg.upstream.issuer_url.path().trim_end_matches('/');
    let as_url = format!("{url}/.well-known/oauth-authorization-server{ip}");
    out.push(match http.get(&as_url, &[]).map(|a| (a.status, serde_json::from_slice::<Value>(&a.body))) {
        Ok((200, Ok(doc))) if doc.get("issuer").and_then(Value::as_str) == Some(cfg.upstream.issuer.as_str()) => {
            pass("deployed: as metadata", format!("{as_url} names issuer {}", cfg.upstream.issuer))
        }
        Ok((200, Ok(doc))) => fail("deployed: as metadata", format!("{as_url} names issuer {}", doc.get("issuer").unwrap_or(&Value::Null)), "ISSUER differs between the deployment and this configuration"),
        Ok((status, _)) => fail("deployed: as metadata", format!("{as_url} answered {status}"), "the worker serves this from the authorization server's discovery: see the discovery check"),
        Err(e) => fail("deployed: as metadata", format!("{as_url}: {e}"), "is the worker deployed and routed at this URL?"),
    });
    let mcp = format!("{url}{}", cfg.resource.protected_path);
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
