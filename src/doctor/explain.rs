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
    opts: &Options,
    out: &mut Vec<Check>,
) {
    let now = opts.now;
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
                dpop(cfg, &p, t, opts, out);
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
            dpop(cfg, &p, t, opts, out);
        }
        Err(e) => out.push(fail("token: claims", e.to_string(), token_fix(cfg, &e))),
    }
}

/// The token's DPoP binding (`cnf.jkt`) against `DPOP`, and a proof for it when one
/// is given (`--dpop-proof`): the worker's own rules, then its signature.
fn dpop(cfg: &Config, p: &token::Principal, t: &str, opts: &Options, out: &mut Vec<Check>) {
    let name = "token: dpop";
    let (jkt, settings) = match (p.jkt.as_deref(), &cfg.dpop) {
        (None, Some(d)) if d.mode == crate::dpop::Mode::Required => {
            out.push(fail(
                name,
                "the token is not DPoP-bound (no cnf.jkt), and DPOP=required refuses it",
                "the client must send a DPoP proof to the token endpoint, and the authorization server must bind the token (oidc-provider: features.dPoP; Keycloak: the client's \"Require DPoP bound tokens\")",
            ));
            return;
        }
        (None, _) => return,
        (Some(jkt), None) => {
            out.push(fail(
                name,
                format!("the token is DPoP-bound (cnf.jkt {jkt}), but DPOP is off: the worker takes it as a bearer token, so a copy works without the key"),
                "set DPOP=allowed (or required) so the worker checks a proof by the token's key on every request",
            ));
            return;
        }
        (Some(jkt), Some(d)) => (jkt, d),
    };
    out.push(pass(
        name,
        format!("bound to key {jkt}: send it as `Authorization: DPoP` with a fresh proof by that key on each request"),
    ));
    let Some(proof) = &opts.dpop_proof else {
        return;
    };
    let method = opts.dpop_method.as_deref().unwrap_or("POST");
    let hash = crate::cache::hash(t);
    let request = crate::dpop::Request {
        method,
        url: &cfg.resource.id,
        token_hash: &hash,
        jkt,
    };
    let seen = crate::dpop::Seen::default();
    let name = "dpop proof";
    match crate::dpop::check(Some(proof), &request, settings, &seen, opts.now) {
        Err(e) => out.push(fail(
            name,
            e.to_string(),
            format!("make the proof for {method} {} with the token's key, now, with ath the token's hash", cfg.resource.id),
        )),
        Ok((check, _, _)) => {
            let signed = serde_json::from_str::<jsonwebtoken::jwk::Jwk>(&check.jwk)
            .ok()
            .and_then(|jwk| jsonwebtoken::DecodingKey::from_jwk(&jwk).ok())
            .zip(jsonwebtoken::decode_header(proof.trim()).ok())
            .is_some_and(|(key, header)| {
                let p = proof.trim();
                let input = &p[..p.rfind('.').unwrap_or(0)];
                let sig = &p[p.rfind('.').map_or(0, |i| i + 1)..];
                jsonwebtoken::crypto::verify(sig, input.as_bytes(), &key, header.alg).unwrap_or(false)
            });
            out.push(if signed {
                pass(name, format!("a good proof for {method} {} by the token's key", cfg.resource.id))
            } else {
                fail(name, "the proof's signature does not verify with its jwk", "sign the proof with the private half of the jwk in its header")
            });
        }
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
