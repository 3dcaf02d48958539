//! The doctor's token explanation (`--token`): what the worker would do with a
//! token, step by step, with the worker's own code.

use super::upstream::introspect;
use super::*;

/// Explain, step by step, what the worker would do with `t`. The token is never
/// printed; claims are.
pub(super) fn explain_token(
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
    let jwt = match token::parse(t, &cfg.tokens.algorithms) {
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
    if let Some(required) = &cfg.tokens.typ {
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

pub(super) fn describe(p: &token::Principal) -> String {
    format!(
        "sub {}, client {}, scopes [{}], expires at {}",
        p.subject.as_deref().unwrap_or("(none)"),
        p.client_id.as_deref().unwrap_or("(none)"),
        p.scopes.join(" "),
        p.exp
    )
}

pub(super) fn scopes(cfg: &Config, p: &token::Principal, out: &mut Vec<Check>) {
    let missing = token::missing_scopes(p, &cfg.scopes.required, &cfg.scopes.hierarchy);
    out.push(if missing.is_empty() {
        pass(
            "token: scopes",
            format!("holds REQUIRED_SCOPES{}", implied(cfg, p, &cfg.scopes.required)),
        )
    } else {
        fail(
            "token: scopes",
            format!("lacks {}", missing.join(" ")),
            "the client must ask for these scopes (the worker's challenge names them), and the authorization server must grant them",
        )
    });
    if let Some(policy) = &cfg.scopes.policy {
        let mut named: Vec<String> = Vec::new();
        for s in policy.scopes() {
            if !named.contains(s) && !cfg.scopes.required.contains(s) {
                named.push(s.clone());
            }
        }
        let (held, lacked): (Vec<String>, Vec<String>) = named
            .into_iter()
            .partition(|s| cfg.scopes.hierarchy.grantor(&p.scopes, s).is_some());
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
pub(super) fn implied(cfg: &Config, p: &token::Principal, needed: &[String]) -> String {
    let via: Vec<String> = needed
        .iter()
        .filter_map(|s| {
            let g = cfg.scopes.hierarchy.grantor(&p.scopes, s)?;
            (g != s).then(|| format!("{s} implied by {g}"))
        })
        .collect();
    if via.is_empty() {
        String::new()
    } else {
        format!(" ({})", via.join(", "))
    }
}

/// Advice for a refused token, by what the refusal says.
pub(super) fn token_fix(cfg: &Config, e: &Error) -> String {
    let d = e.to_string();
    if d.contains("audience") {
        if cfg.upstream.flavor != Flavor::Hydra && d.contains("no audience") {
            return format!("the authorization server must bind tokens to {} (RFC 8707 resource). On Ory Hydra set AS_FLAVOR = \"hydra\" on the worker; on Keycloak add an Audience mapper; on Auth0 use an API with that identifier", cfg.hydra_audience());
        }
        return format!("request tokens for {} (the PRM resource), or add the token's audience to AUDIENCE if it is really this resource's", cfg.resource.id);
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
