//! The routes other than the MCP endpoint, pure: what each answers without I/O (PRM,
//! preflights, 404, 405) and what I/O the rest needs ([`Serve`]): the
//! authorization-server metadata (discovery), registrations and the pass-through
//! ([`crate::flows::as_proxy`]).

use crate::authorizer::RequestInfo;
use crate::config::Config;
use crate::error::{Error, Reply};
use crate::metadata::{self, Upstream};
use crate::proxy;
use crate::router::{self, Route};

/// What a non-MCP route needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Serve {
    Reply(Reply),
    /// Serve the patched authorization-server metadata (needs discovery).
    AuthorizationServerMetadata,
    /// Proxy a registration (needs discovery, then the upstream).
    Register,
    /// Forward verbatim to this URL on the authorization server.
    Passthrough(String),
}

/// Answer a non-MCP request, or say what I/O it needs.
pub fn serve(cfg: &Config, req: &RequestInfo<'_>) -> Result<Serve, Error> {
    let route = router::route(cfg, req.path);
    route.check_method(req.method)?;
    let open_cors = |r: Reply| r.with_header("access-control-allow-origin", "*");
    if req.method == "OPTIONS" && route != Route::Passthrough && route != Route::NotFound {
        return match route {
            Route::Mcp => match req.origin {
                Some(o) if !cfg.origin_allowed(o) => Err(Error::OriginNotAllowed(o.to_string())),
                o => Ok(Serve::Reply(
                    Reply::empty(204)
                        .with_header("access-control-allow-origin", o.unwrap_or("*"))
                        .with_header("access-control-allow-methods", route.allow())
                        .with_header(
                            "access-control-allow-headers",
                            proxy::allow_headers(req.preflight_headers).into_owned(),
                        )
                        .with_header("access-control-expose-headers", proxy::EXPOSE_HEADERS)
                        .with_header("access-control-max-age", "86400")
                        .with_header("vary", "Origin, Access-Control-Request-Headers"),
                )),
            },
            _ => Ok(Serve::Reply(
                open_cors(Reply::empty(204))
                    .with_header("access-control-allow-methods", route.allow())
                    .with_header(
                        "access-control-allow-headers",
                        "Authorization, Content-Type, MCP-Protocol-Version",
                    )
                    .with_header("access-control-max-age", "86400"),
            )),
        };
    }
    match route {
        Route::ProtectedResourceMetadata => Ok(Serve::Reply(open_cors(
            Reply::json(200, &metadata::protected_resource(cfg))
                .with_header("cache-control", "public, max-age=3600"),
        ))),
        Route::AuthorizationServerMetadata => Ok(Serve::AuthorizationServerMetadata),
        Route::AssertionKeys => match &cfg.assertion {
            Some(a) => Ok(Serve::Reply(open_cors(
                Reply::json(200, &a.jwks()).with_header("cache-control", "public, max-age=300"),
            ))),
            None => Err(Error::NotFound),
        },
        Route::Register => Ok(Serve::Register),
        Route::Passthrough => {
            let base = cfg.upstream.as_url.as_str().trim_end_matches('/');
            let defaults = req
                .query
                .filter(|_| req.method == "GET")
                .and_then(|q| proxy::authorization_defaults(cfg, q));
            Ok(Serve::Passthrough(
                match defaults.as_deref().or(req.query) {
                    Some(q) => format!("{base}{}?{q}", req.path),
                    None => format!("{base}{}", req.path),
                },
            ))
        }
        Route::NotFound => Err(Error::NotFound),
        Route::Mcp => Err(Error::Upstream("MCP requests are decided by check".into())),
    }
}

/// The authorization-server metadata document the worker serves.
pub fn as_metadata(cfg: &Config, upstream: &Upstream) -> Reply {
    Reply::json(200, &metadata::patch(cfg, upstream))
        .with_header("access-control-allow-origin", "*")
        .with_header("cache-control", "public, max-age=300")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::config;

    fn req<'a>() -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            path: "/",
            ..Default::default()
        }
    }

    #[test]
    fn non_mcp_routes_are_served() {
        let cfg = config();
        let mut r = req();
        r.method = "GET";
        r.path = "/.well-known/oauth-protected-resource/mcp";
        let Ok(Serve::Reply(reply)) = serve(&cfg, &r) else {
            panic!()
        };
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        r.path = "/oidc/auth";
        r.query = Some("a=1");
        assert_eq!(
            serve(&cfg, &r),
            Ok(Serve::Passthrough(
                "http://127.0.0.1:9100/oidc/auth?a=1".into()
            ))
        );
        r.path = "/nope";
        assert_eq!(serve(&cfg, &r), Err(Error::NotFound));
        r.path = "/register";
        assert!(matches!(
            serve(&cfg, &r),
            Err(Error::MethodNotAllowed { .. })
        ));
        r.method = "OPTIONS";
        assert!(matches!(serve(&cfg, &r), Ok(Serve::Reply(rep)) if rep.status == 204));
        r.path = "/mcp";
        r.origin = Some("https://evil.example");
        assert_eq!(
            serve(&cfg, &r),
            Err(Error::OriginNotAllowed("https://evil.example".into()))
        );
    }

    #[test]
    fn the_metadata_the_worker_serves_is_cacheable_and_open() {
        let cfg = config();
        let doc = br#"{"issuer":"https://mcp.example.com/oidc"}"#;
        let url = url::Url::parse("http://127.0.0.1:9100/x").unwrap();
        let up = metadata::accept_upstream(&cfg, &url, 200, doc)
            .unwrap()
            .unwrap();
        let reply = as_metadata(&cfg, &up);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("cache-control"), Some("public, max-age=300"));
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    }
}
