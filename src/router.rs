//! Which route a request takes. Pure: method and path in, [`Route`] out.
//!
//! | path | route |
//! |---|---|
//! | `/.well-known/oauth-protected-resource` and `…/<resource path>` | [`Route::ProtectedResourceMetadata`] (RFC 9728 §3.1) |
//! | `/.well-known/oauth-authorization-server[/<issuer path>]`, `/.well-known/openid-configuration[/<issuer path>]`, `<issuer path>/.well-known/openid-configuration` | [`Route::AuthorizationServerMetadata`] (RFC 8414 §3.1, SPEC A1) |
//! | `REGISTRATION_PATH` | [`Route::Register`] (RFC 7591) |
//! | `/.well-known/mcp-edge-auth/jwks.json`, with `ASSERTION_KEY` | [`Route::AssertionKeys`] |
//! | `RESOURCE_URL`'s path and below | [`Route::Mcp`] |
//! | an `AS_PASSTHROUGH` prefix | [`Route::Passthrough`] |
//! | anything else | [`Route::NotFound`] |
//!
//! Worker routes win over pass-through prefixes, so the worker's own metadata and
//! registration endpoint are served even when the issuer shares the host.

use crate::config::{path_matches, Config};
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ProtectedResourceMetadata,
    AuthorizationServerMetadata,
    Register,
    /// The public keys of the identity assertion ([`crate::assertion`]).
    AssertionKeys,
    Mcp,
    Passthrough,
    NotFound,
}

const PRM: &str = "/.well-known/oauth-protected-resource";
const OAUTH_AS: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::ProtectedResourceMetadata => "prm",
            Route::AuthorizationServerMetadata => "as-metadata",
            Route::Register => "register",
            Route::AssertionKeys => "assertion-keys",
            Route::Mcp => "mcp",
            Route::Passthrough => "passthrough",
            Route::NotFound => "not-found",
        }
    }

    /// Methods a route accepts, for 405 and CORS preflights.
    pub fn allow(self) -> &'static str {
        match self {
            Route::ProtectedResourceMetadata
            | Route::AuthorizationServerMetadata
            | Route::AssertionKeys => "GET, HEAD, OPTIONS",
            Route::Register => "POST, OPTIONS",
            Route::Mcp => "GET, POST, DELETE, OPTIONS",
            Route::Passthrough | Route::NotFound => "",
        }
    }

    /// Check the method against the route (`OPTIONS` is answered as a preflight).
    pub fn check_method(self, method: &str) -> Result<(), Error> {
        let ok = match self {
            Route::Passthrough | Route::NotFound => true,
            _ if method == "OPTIONS" => true,
            Route::ProtectedResourceMetadata
            | Route::AuthorizationServerMetadata
            | Route::AssertionKeys => matches!(method, "GET" | "HEAD"),
            Route::Register => method == "POST",
            Route::Mcp => matches!(method, "GET" | "POST" | "DELETE"),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::MethodNotAllowed {
                allow: self.allow(),
            })
        }
    }
}

/// Path and query of an absolute URL in WHATWG normal form (what the runtime hands a
/// worker as `request.url`): `None` when it is not one. The fragment is dropped.
pub fn split_request_url(url: &str) -> Option<(&str, Option<&str>)> {
    let (_, rest) = url.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or_default();
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let rest = &rest[at..];
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Some((if path.is_empty() { "/" } else { path }, query))
}

/// The issuer's path without a trailing slash (`""` for an issuer without a path).
fn issuer_path(cfg: &Config) -> &str {
    cfg.upstream.issuer_url.path().trim_end_matches('/')
}

pub fn route(cfg: &Config, path: &str) -> Route {
    let resource_path = if cfg.resource.protected_path == "/" {
        ""
    } else {
        cfg.resource.protected_path.as_str()
    };
    if path == PRM || path == format!("{PRM}{resource_path}") {
        return Route::ProtectedResourceMetadata;
    }
    let ip = issuer_path(cfg);
    if path == OAUTH_AS
        || path == OIDC
        || (!ip.is_empty()
            && (path == format!("{OAUTH_AS}{ip}")
                || path == format!("{OIDC}{ip}")
                || path == format!("{ip}{OIDC}")))
    {
        return Route::AuthorizationServerMetadata;
    }
    if path == cfg.resource.registration_path {
        return Route::Register;
    }
    if cfg.assertion.is_some() && path == crate::assertion::JWKS_PATH {
        return Route::AssertionKeys;
    }
    if path_matches(path, &cfg.resource.protected_path) {
        return Route::Mcp;
    }
    if cfg
        .upstream
        .passthrough
        .iter()
        .any(|p| path_matches(path, p))
    {
        return Route::Passthrough;
    }
    Route::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    #[test]
    fn routes_follow_the_table() {
        let c = config();
        let cases = [
            (
                "/.well-known/oauth-protected-resource",
                Route::ProtectedResourceMetadata,
            ),
            (
                "/.well-known/oauth-protected-resource/mcp",
                Route::ProtectedResourceMetadata,
            ),
            (
                "/.well-known/oauth-protected-resource/other",
                Route::NotFound,
            ),
            (
                "/.well-known/oauth-authorization-server",
                Route::AuthorizationServerMetadata,
            ),
            (
                "/.well-known/oauth-authorization-server/oidc",
                Route::AuthorizationServerMetadata,
            ),
            (
                "/.well-known/openid-configuration/oidc",
                Route::AuthorizationServerMetadata,
            ),
            (
                "/oidc/.well-known/openid-configuration",
                Route::AuthorizationServerMetadata,
            ),
            (
                "/.well-known/openid-configuration",
                Route::AuthorizationServerMetadata,
            ),
            ("/register", Route::Register),
            ("/mcp", Route::Mcp),
            ("/mcp/sub", Route::Mcp),
            ("/mcpx", Route::NotFound),
            ("/oidc/auth", Route::Passthrough),
            ("/oidc/token", Route::Passthrough),
            ("/", Route::NotFound),
        ];
        for (path, want) in cases {
            assert_eq!(route(&c, path), want, "{path}");
        }
    }

    #[test]
    fn request_urls_split_like_the_url_parser() {
        for u in [
            "http://127.0.0.1:8787/mcp",
            "https://mcp.example.com/mcp?x=1&y=%20",
            "https://mcp.example.com",
            "https://mcp.example.com?q",
            "https://mcp.example.com/a/b/?",
            "https://u@mcp.example.com/p#frag",
            "https://mcp.example.com/p?q=1#frag",
            "http://[::1]:8080/.well-known/oauth-protected-resource/mcp",
        ] {
            let parsed = url::Url::parse(u).unwrap();
            assert_eq!(
                split_request_url(u),
                Some((parsed.path(), parsed.query())),
                "{u}"
            );
        }
        assert_eq!(split_request_url("/relative"), None);
    }

    #[test]
    fn methods_are_checked_per_route() {
        assert!(Route::Mcp.check_method("POST").is_ok());
        assert!(Route::Mcp.check_method("DELETE").is_ok());
        assert_eq!(
            Route::Mcp.check_method("PUT"),
            Err(Error::MethodNotAllowed {
                allow: "GET, POST, DELETE, OPTIONS"
            })
        );
        assert!(Route::Register.check_method("GET").is_err());
        assert!(Route::ProtectedResourceMetadata
            .check_method("POST")
            .is_err());
        assert!(Route::Passthrough.check_method("PATCH").is_ok());
    }
}
