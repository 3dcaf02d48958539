#![cfg(not(target_arch = "wasm32"))]
//! The authorizer's whole decision on the host, with real signatures: tokens signed
//! by jsonwebtoken from PEM keys, checked by the pure-Rust backend the way the
//! worker checks them with WebCrypto (same key selection, same claims).

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mcp_edge_auth::authorizer::{Authorizer, Body, Decision, Pending, RequestInfo};
use mcp_edge_auth::config::{Config, LogLevel};
use mcp_edge_auth::jsonrpc::McpHeaders;
use mcp_edge_auth::token::verify_native;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;

fn key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn public_jwk(name: &str, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&key(name, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    let set: JwkSet = serde_json::from_value(json!({ "keys": keys })).unwrap();
    serde_json::to_vec(&set).unwrap()
}

fn config() -> Config {
    config_with(&[])
}

fn config_with(extra: &[(&'static str, &'static str)]) -> Config {
    let mut vars = vec![
        ("ORIGIN_URL", "http://127.0.0.1:9000"),
        ("RESOURCE_URL", "https://mcp.example.com/mcp"),
        ("ISSUER", "https://auth.example.com/"),
        ("REQUIRED_SCOPES", "mcp:tools"),
        ("ALGORITHMS", "RS256 PS256 ES256 EdDSA"),
    ];
    vars.extend_from_slice(extra);
    Config::build(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://auth.example.com/",
        "sub": "user-1",
        "aud": "https://mcp.example.com/mcp",
        "client_id": "client-1",
        "scope": "mcp:tools",
        "iat": NOW,
        "exp": NOW + 600,
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

fn sign(name: &str, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, claims, &key(name, alg)).unwrap()
}

fn mcp_post(authorization: &str) -> RequestInfo<'_> {
    RequestInfo {
        method: "POST",
        path: "/mcp",
        query: None,
        authorization: Some(authorization),
        origin: None,
        ..Default::default()
    }
}

/// Drive one request through the authorizer as the glue does, answering any JWKS
/// fetch with `jwks_body`. Returns the final decision and how many JWKS fetches and
/// signature checks it took.
fn decide(a: &mut Authorizer, token: &str, jwks_body: &[u8], now: i64) -> (Decision, usize, usize) {
    decide_info(a, token, jwks_body, now, RequestInfo::default())
}

/// [`decide`] for a request shaped like `info` (its method, body and MCP headers).
fn decide_info(
    a: &mut Authorizer,
    token: &str,
    jwks_body: &[u8],
    now: i64,
    info: RequestInfo<'_>,
) -> (Decision, usize, usize) {
    let auth = format!("Bearer {token}");
    let mut req = mcp_post(&auth);
    if !info.method.is_empty() {
        req.method = info.method;
    }
    req.body = info.body;
    req.mcp = info.mcp;
    req.resuming = info.resuming;
    let (mut fetches, mut verifies) = (0, 0);
    for _ in 0..3 {
        match a.check(&req, now) {
            Decision::NeedKeys => {
                fetches += 1;
                let _ = a.install_keys(Ok(jwks_body), now);
            }
            Decision::Verify(p) => {
                verifies += 1;
                let jwt = mcp_edge_auth::token::parse(token, &a.cfg.tokens.algorithms).unwrap();
                let ok = verify_native(&jwt, a.key(&p).unwrap()).is_ok();
                return (finish(a, &req, *p, ok, now), fetches, verifies);
            }
            other => return (other, fetches, verifies),
        }
    }
    panic!("no decision after three rounds");
}

/// As the glue finishes a signature check: a good signature takes the decision made
/// ahead, if any; otherwise the authorizer completes it.
fn finish(a: &mut Authorizer, req: &RequestInfo<'_>, p: Pending, ok: bool, now: i64) -> Decision {
    if ok {
        if let Some(d) = a.ahead(req, &p, NOW) {
            a.accept(p, now);
            return d;
        }
    }
    a.complete(req, &p, ok, now)
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Forward { .. } => 200,
        Decision::Reply { reply, .. } => reply.status,
        other => panic!("{other:?}"),
    }
}

fn all_keys() -> Vec<u8> {
    jwks(&[
        public_jwk("rsa", Algorithm::RS256, "rs1"),
        public_jwk("ec", Algorithm::ES256, "es1"),
        public_jwk("ed25519", Algorithm::EdDSA, "ed1"),
    ])
}

#[test]
fn accepts_each_algorithm_and_forwards_the_identity() {
    let keys = all_keys();
    for (name, alg, kid) in [
        ("rsa", Algorithm::RS256, "rs1"),
        ("ec", Algorithm::ES256, "es1"),
        ("ed25519", Algorithm::EdDSA, "ed1"),
    ] {
        let mut a = Authorizer::new(config());
        let t = sign(name, alg, kid, &claims(json!({})));
        let (d, fetches, verifies) = decide(&mut a, &t, &keys, NOW);
        assert_eq!((fetches, verifies), (1, 1), "{alg:?}");
        let Decision::Forward {
            target, headers, ..
        } = d
        else {
            panic!("{alg:?}: {d:?}")
        };
        assert_eq!(target, "http://127.0.0.1:9000/mcp");
        assert!(headers.contains(&("x-auth-subject", "user-1".into())));
        assert!(headers.contains(&("x-auth-client-id", "client-1".into())));
    }
}

#[test]
fn a_repeated_token_skips_keys_and_signature() {
    let mut a = Authorizer::new(config());
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    assert_eq!(status(&d), 200);
    let (d, fetches, verifies) = decide(&mut a, &t, b"unused", NOW + 10);
    assert_eq!((status(&d), fetches, verifies), (200, 0, 0));
    // ...but not past its expiry.
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW + 600 + 61);
    assert_eq!(status(&d), 401);
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let keys = all_keys();
    let cases = [
        (
            "signed by another key under a known kid",
            sign("other-rsa", Algorithm::RS256, "rs1", &claims(json!({}))),
        ),
        (
            "RSA key used with PS256",
            sign("rsa", Algorithm::PS256, "es1", &claims(json!({}))),
        ),
        (
            "unknown kid",
            sign("other-rsa", Algorithm::RS256, "nope", &claims(json!({}))),
        ),
        (
            "wrong issuer",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"iss": "https://auth.example.com"})),
            ),
        ),
        (
            "wrong audience",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"aud": ["account"]})),
            ),
        ),
        (
            "expired",
            sign(
                "rsa",
                Algorithm::RS256,
                "rs1",
                &claims(json!({"exp": NOW - 3600})),
            ),
        ),
    ];
    for (name, t) in cases {
        let mut a = Authorizer::new(config());
        let (d, ..) = decide(&mut a, &t, &keys, NOW);
        assert_eq!(status(&d), 401, "{name}");
    }
    // A payload altered after signing.
    let t = sign(
        "rsa",
        Algorithm::RS256,
        "rs1",
        &claims(json!({"scope": "mcp:read"})),
    );
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = base64_payload(&claims(json!({})));
    parts[1] = &forged;
    let mut a = Authorizer::new(config());
    let (d, ..) = decide(&mut a, &parts.join("."), &keys, NOW);
    assert_eq!(status(&d), 401);
}

#[test]
fn the_decision_made_ahead_is_the_one_a_good_signature_gets() {
    let keys = all_keys();
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let auth = format!("Bearer {t}");
    let req = mcp_post(&auth);
    let pending = |a: &mut Authorizer| {
        let _ = a.install_keys(Ok(&keys), NOW);
        match a.check(&req, NOW) {
            Decision::Verify(p) => p,
            other => panic!("{other:?}"),
        }
    };
    // Two isolates: one takes the decision made ahead, one completes after the check.
    let (mut ahead, mut later) = (Authorizer::new(config()), Authorizer::new(config()));
    let p = pending(&mut ahead);
    let d = ahead.ahead(&req, &p, NOW).expect("made ahead");
    ahead.accept(*p, NOW);
    let p = pending(&mut later);
    let completed = later.complete(&req, &p, true, NOW);
    assert_eq!(d.to_wire(LogLevel::Info), completed.to_wire(LogLevel::Info));
    // Both remember the caller: the next request is decided from the cache.
    for a in [&mut ahead, &mut later] {
        assert!(matches!(a.check(&req, NOW + 1), Decision::Forward { .. }));
    }

    // Nothing is remembered until the signature is accepted.
    let mut a = Authorizer::new(config());
    let p = pending(&mut a);
    assert!(a.ahead(&req, &p, NOW).is_some());
    assert!(matches!(a.check(&req, NOW), Decision::Verify(_)));

    // A bad signature is refused as such whatever the claims say, and remembered.
    let mut a = Authorizer::new(config());
    let p = pending(&mut a);
    let d = a.complete(&req, &p, false, NOW);
    assert_eq!(status(&d), 401);
    assert!(d
        .to_wire(LogLevel::Info)
        .contains("signature does not verify"));
    assert_eq!(status(&a.check(&req, NOW + 1)), 401);

    // Claims or scopes that refuse the token: nothing is made ahead, and the refusal
    // comes after the signature (a forged token learns nothing from its claims).
    for (c, code, what) in [
        (json!({"exp": NOW - 3600}), 401, "expired"),
        (json!({"scope": "other"}), 403, "insufficient_scope"),
    ] {
        let t = sign("rsa", Algorithm::RS256, "rs1", &claims(c));
        let auth = format!("Bearer {t}");
        let req = mcp_post(&auth);
        let mut a = Authorizer::new(config());
        let _ = a.install_keys(Ok(&keys), NOW);
        let Decision::Verify(p) = a.check(&req, NOW) else {
            panic!()
        };
        assert!(a.ahead(&req, &p, NOW).is_none(), "{what}");
        let forged = a.complete(&req, &p, false, NOW);
        assert_eq!(status(&forged), 401, "{what}");
        assert!(!forged.to_wire(LogLevel::Info).contains(what), "{what}");
        let d = a.complete(&req, &p, true, NOW);
        assert_eq!(status(&d), code, "{what}");
        assert!(d.to_wire(LogLevel::Info).contains(what), "{what}");
    }
}

fn base64_payload(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn the_verify_handoff_names_the_exact_bytes_and_key() {
    let mut a = Authorizer::new(config());
    let _ = a.install_keys(Ok(&all_keys()), NOW);
    let t = sign("ec", Algorithm::ES256, "es1", &claims(json!({})));
    let auth = format!("Bearer  {t}");
    let req = mcp_post(&auth);
    let Decision::Verify(p) = a.check(&req, NOW) else {
        panic!()
    };
    let ahead = a
        .ahead(&req, &p, NOW)
        .expect("claims and scopes allow it")
        .to_wire(LogLevel::Info);
    let wire: Value = serde_json::from_str(&p.to_wire(7, &auth, Some(&ahead))).unwrap();
    assert_eq!(wire["d"], serde_json::from_str::<Value>(&ahead).unwrap());
    assert!(
        wire["d"]["f"].is_string(),
        "a forward decision: {}",
        wire["d"]
    );
    let span = |name: &str| {
        let r = wire[name].as_array().unwrap();
        &auth[r[0].as_u64().unwrap() as usize..r[1].as_u64().unwrap() as usize]
    };
    let (input, sig) = t.rsplit_once('.').unwrap();
    assert_eq!(span("i"), input);
    assert_eq!(span("s"), sig);
    assert_eq!(wire["v"], 7);
    assert_eq!(wire["a"], "ES256");
    assert_eq!(wire["y"], json!({"name": "ECDSA", "hash": "SHA-256"}));
    let key: Value = serde_json::from_str(
        &a.webcrypto_key(wire["k"].as_str().unwrap(), "ES256")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(key["jwk"]["kty"], "EC");
    assert_eq!(
        key["import"],
        json!({"name": "ECDSA", "namedCurve": "P-256"})
    );
    assert!(
        a.webcrypto_key(wire["k"].as_str().unwrap(), "RS256")
            .is_none(),
        "an EC key is not an RSA key"
    );
    assert!(a
        .webcrypto_key(wire["k"].as_str().unwrap(), "HS256")
        .is_none());
}

#[test]
fn a_forged_token_sent_again_costs_no_signature_check() {
    let mut a = Authorizer::new(config());
    let forged = sign("other-rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW);
    assert_eq!((status(&d), verifies), (401, 1));
    let (d, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW + 5);
    assert_eq!(
        (status(&d), verifies),
        (401, 0),
        "refused from the refusal cache"
    );
    let (_, _, verifies) = decide(&mut a, &forged, &all_keys(), NOW + 61);
    assert_eq!(verifies, 1, "refusals are remembered for a minute only");
}

#[test]
fn insufficient_scope_is_403_after_a_valid_signature() {
    let mut a = Authorizer::new(config());
    let t = sign(
        "ec",
        Algorithm::ES256,
        "es1",
        &claims(json!({"scope": "mcp:read"})),
    );
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    let Decision::Reply { reply, .. } = d else {
        panic!()
    };
    assert_eq!(reply.status, 403);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="insufficient_scope""#));
}

#[test]
fn a_rotated_out_key_no_longer_admits_its_cached_tokens() {
    let mut a = Authorizer::new(config());
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, ..) = decide(&mut a, &t, &all_keys(), NOW);
    assert_eq!(status(&d), 200);
    // The set rotates: rs1 is gone. An unknown kid triggers the refresh.
    let rotated = jwks(&[public_jwk("ec", Algorithm::ES256, "es1")]);
    let other = sign("other-rsa", Algorithm::RS256, "rs2", &claims(json!({})));
    let (d, fetches, _) = decide(&mut a, &other, &rotated, NOW + 60);
    assert_eq!((status(&d), fetches), (401, 1));
    let (d, ..) = decide(&mut a, &t, &rotated, NOW + 61);
    assert_eq!(status(&d), 401, "the cached token left with its key");
}

#[test]
fn unknown_kid_refreshes_at_most_once_per_interval() {
    let mut a = Authorizer::new(config());
    let good = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    decide(&mut a, &good, &all_keys(), NOW);
    let mut fetches_total = 0;
    for i in 0..20 {
        let t = sign(
            "other-rsa",
            Algorithm::RS256,
            &format!("made-up-{i}"),
            &claims(json!({})),
        );
        let (d, fetches, _) = decide(&mut a, &t, &all_keys(), NOW + 1);
        assert_eq!(status(&d), 401);
        fetches_total += fetches;
    }
    assert_eq!(
        fetches_total, 0,
        "the set was fetched less than the refresh interval ago"
    );
    let t = sign(
        "other-rsa",
        Algorithm::RS256,
        "made-up-late",
        &claims(json!({})),
    );
    let (_, fetches, _) = decide(&mut a, &t, &all_keys(), NOW + 31);
    assert_eq!(fetches, 1);
}

// ---- SCOPE_POLICY ---------------------------------------------------------------------

const POLICY: &str = r#"{"methods": {"tools/call": {"scopes": "tools:call", "names": {"delete_repo": "repo:admin"}}, "resources/read": "resources:read"}}"#;

/// An RS256 token granting `scope`.
fn scoped(scope: &str) -> String {
    sign(
        "rsa",
        Algorithm::RS256,
        "rs1",
        &claims(json!({ "scope": scope })),
    )
}

fn policy_authorizer() -> Authorizer {
    Authorizer::new(config_with(&[("SCOPE_POLICY", POLICY)]))
}

fn with_body(body: Body<'_>) -> RequestInfo<'_> {
    RequestInfo {
        body,
        ..Default::default()
    }
}

fn post(body: &str) -> RequestInfo<'_> {
    with_body(Body::Text(body))
}

fn reply_of(d: &Decision) -> (u16, String, Value) {
    match d {
        Decision::Reply { reply, .. } => (
            reply.status,
            reply
                .header("www-authenticate")
                .unwrap_or_default()
                .to_string(),
            serde_json::from_str(&reply.body).unwrap(),
        ),
        other => panic!("not a reply: {other:?}"),
    }
}

const CALL_ECHO: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
const CALL_DELETE: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}"#;

#[test]
fn policy_posts_are_read_only_once_a_token_is_present() {
    let mut a = policy_authorizer();
    let mut req = mcp_post("Bearer a.b.c");
    assert!(matches!(a.check(&req, NOW), Decision::NeedBody(n) if n == 1 << 20));
    req.authorization = None;
    assert_eq!(status(&a.check(&req, NOW)), 401);
    req.method = "GET";
    req.authorization = Some("Bearer a.b.c");
    assert!(!matches!(a.check(&req, NOW), Decision::NeedBody(_)));
}

#[test]
fn policy_scopes_are_enforced_per_tool_with_one_challenge() {
    let keys = all_keys();
    let mut a = policy_authorizer();
    let t = scoped("mcp:tools tools:call");
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, post(CALL_ECHO));
    assert!(
        matches!(&d, Decision::Forward { filter: None, .. }),
        "{d:?}"
    );

    // A privileged tool: 403, and the challenge names every scope the call needs.
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, post(CALL_DELETE));
    let (st, challenge, body) = reply_of(&d);
    assert_eq!(st, 403);
    assert_eq!(
        challenge,
        r#"Bearer error="insufficient_scope", error_description="the token lacks scope: repo:admin", scope="mcp:tools repo:admin", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
    );
    assert_eq!(body["error"], "insufficient_scope");

    // A batch needs the union.
    let batch = format!("[{CALL_ECHO},{CALL_DELETE},{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\",\"params\":{{\"uri\":\"file:///a\"}}}}]");
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, post(&batch));
    let (st, challenge, _) = reply_of(&d);
    assert_eq!(st, 403);
    assert!(
        challenge.contains(r#"scope="mcp:tools tools:call repo:admin resources:read""#),
        "{challenge}"
    );

    // Unknown methods need no more than REQUIRED_SCOPES (no default in this policy).
    let (d, _, _) = decide_info(
        &mut a,
        &t,
        &keys,
        NOW,
        post(r#"{"jsonrpc":"2.0","id":4,"method":"x/unknown"}"#),
    );
    assert_eq!(status(&d), 200);

    // The wider token calls it.
    let admin = scoped("mcp:tools repo:admin");
    let (d, _, _) = decide_info(&mut a, &admin, &keys, NOW, post(CALL_DELETE));
    assert_eq!(status(&d), 200);
}

#[test]
fn list_requests_and_resumed_streams_get_a_filter() {
    let keys = all_keys();
    let mut a = policy_authorizer();
    let t = scoped("mcp:tools tools:call");
    let (d, _, _) = decide_info(
        &mut a,
        &t,
        &keys,
        NOW,
        post(r#"{"jsonrpc":"2.0","id":"L","method":"tools/list","params":{"cursor":"c"}}"#),
    );
    let Decision::Forward {
        filter: Some(spec), ..
    } = &d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        spec.ids,
        vec![(json!("L"), mcp_edge_auth::jsonrpc::ListKind::Tools)]
    );
    assert_eq!(spec.granted, vec!["mcp:tools", "tools:call"]);
    let wire: Value =
        serde_json::from_str(&d.to_wire(mcp_edge_auth::config::LogLevel::Off)).unwrap();
    let back: mcp_edge_auth::jsonrpc::FilterSpec =
        serde_json::from_str(wire["t"].as_str().unwrap()).unwrap();
    assert_eq!(&back, spec);

    let resumed = RequestInfo {
        method: "GET",
        resuming: true,
        ..Default::default()
    };
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, resumed);
    assert!(matches!(&d, Decision::Forward { filter: Some(s), .. } if s.any));
    let plain_get = RequestInfo {
        method: "GET",
        ..Default::default()
    };
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, plain_get);
    assert!(matches!(&d, Decision::Forward { filter: None, .. }));
}

#[test]
fn malformed_bodies_and_header_mismatches_are_400_after_authentication() {
    let keys = all_keys();
    let mut a = policy_authorizer();
    let t = scoped("mcp:tools tools:call");
    let rpc_code = |d: &Decision| {
        let (st, _, body) = reply_of(d);
        assert_eq!(st, 400);
        body["error"]["code"].as_i64().unwrap()
    };
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, post("{not json"));
    assert_eq!(rpc_code(&d), -32700);
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, with_body(Body::NotUtf8));
    assert_eq!(rpc_code(&d), -32700);
    let mismatch = RequestInfo {
        body: Body::Text(CALL_ECHO),
        mcp: McpHeaders::new("mcp-method\ntools/call\nmcp-name\ndelete_repo\n"),
        ..Default::default()
    };
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, mismatch);
    assert_eq!(rpc_code(&d), -32020);
    let (d, _, _) = decide_info(&mut a, &t, &keys, NOW, with_body(Body::TooLarge));
    assert_eq!(status(&d), 413);
    // A forged token with a malformed body: authentication answers first.
    let forged = format!("{}x", &t[..t.len() - 1]);
    let (d, _, _) = decide_info(&mut a, &forged, &keys, NOW, post("{not json"));
    assert_eq!(status(&d), 401);
}

// ---- introspection (RFC 7662) ------------------------------------------------------

const INTROSPECT: (&str, &str) = (
    "INTROSPECTION_URL",
    "http://127.0.0.1:4445/admin/oauth2/introspect",
);

/// Drive one request as the glue does, answering introspection with `answer` (the
/// token it was asked about in, the endpoint's status and body out). Returns the
/// decision and how many introspection requests it took.
fn decide_introspecting(
    a: &mut Authorizer,
    token: &str,
    now: i64,
    answer: &dyn Fn(&str) -> Answer,
) -> (Decision, usize) {
    let auth = format!("Bearer {token}");
    let req = mcp_post(&auth);
    let mut asked = 0;
    let mut d = a.check(&req, now);
    for _ in 0..3 {
        d = match d {
            Decision::NeedKeys => {
                let _ = a.install_keys(Ok(&all_keys()), now);
                a.check(&req, now)
            }
            Decision::Verify(p) => {
                let jwt = mcp_edge_auth::token::parse(token, &a.cfg.tokens.algorithms).unwrap();
                let ok = verify_native(&jwt, a.key(&p).unwrap()).is_ok();
                finish(a, &req, *p, ok, now)
            }
            Decision::Introspect => {
                asked += 1;
                let result = a.install_introspection(token, answer(token), now);
                return (a.finish_introspection(&req, result, NOW), asked);
            }
            other => return (other, asked),
        };
    }
    (d, asked)
}

fn active(extra: Value) -> Answer {
    let mut doc = json!({
        "active": true,
        "iss": "https://auth.example.com/",
        "sub": "user-9",
        "client_id": "client-9",
        "aud": ["https://mcp.example.com/mcp"],
        "scope": "mcp:tools",
        "exp": NOW + 3600,
        "iat": NOW,
        "token_type": "Bearer",
        "token_use": "access_token",
    });
    doc.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Ok((200, serde_json::to_vec(&doc).unwrap()))
}

fn reply_parts(d: &Decision) -> (u16, String) {
    match d {
        Decision::Reply { reply, .. } => (
            reply.status,
            reply
                .header("www-authenticate")
                .or(reply.header("retry-after"))
                .unwrap_or_default()
                .to_string(),
        ),
        Decision::Forward { .. } => (200, String::new()),
        other => panic!("{other:?}"),
    }
}

/// What the introspection endpoint answers: status and body, or why there are none.
type Answer = Result<(u16, Vec<u8>), mcp_edge_auth::error::Error>;
type Endpoint = Box<dyn Fn(&str) -> Answer>;

const OPAQUE: &str = "ory_at_Yd8oxU0Qw1Ew4X9yQ.2Jb9XqZ-A6dCb4pVd2Hg";

#[test]
fn opaque_tokens_are_introspected_once_then_cached_within_the_bound() {
    let mut a = Authorizer::new(config_with(&[
        INTROSPECT,
        ("INTROSPECTION_CACHE_SECONDS", "30"),
    ]));
    let seen = std::cell::RefCell::new(Vec::new());
    let answer = |t: &str| {
        seen.borrow_mut().push(t.to_string());
        active(json!({}))
    };
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW, &answer);
    assert_eq!(asked, 1);
    assert_eq!(
        seen.borrow().as_slice(),
        [OPAQUE],
        "the endpoint is asked about this token"
    );
    let Decision::Forward { headers, .. } = d else {
        panic!("{d:?}")
    };
    assert!(headers.contains(&("x-auth-subject", "user-9".into())));
    assert!(headers.contains(&("x-auth-client-id", "client-9".into())));
    assert!(headers.contains(&("x-auth-scopes", "mcp:tools".into())));
    // Reused within INTROSPECTION_CACHE_SECONDS...
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 29, &answer);
    assert_eq!((status(&d), asked), (200, 0));
    // ...then asked again: revoked by now.
    let revoked = |_: &str| Ok((200, br#"{"active":false}"#.to_vec()));
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 30, &revoked);
    assert_eq!(asked, 1);
    let (code, challenge) = reply_parts(&d);
    assert_eq!(code, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains("not active"), "{challenge}");
    assert!(!challenge.contains(OPAQUE));
    // The refusal is remembered briefly, then asked again.
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 35, &answer);
    assert_eq!((status(&d), asked), (401, 0));
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 41, &answer);
    assert_eq!((status(&d), asked), (200, 1));
}

#[test]
fn a_cached_answer_never_outlives_the_tokens_exp() {
    let mut a = Authorizer::new(config_with(&[
        INTROSPECT,
        ("INTROSPECTION_CACHE_SECONDS", "600"),
    ]));
    let short = |_: &str| active(json!({"exp": NOW + 20}));
    let (d, _) = decide_introspecting(&mut a, OPAQUE, NOW, &short);
    assert_eq!(status(&d), 200);
    // Past exp plus the clock leeway (60 s), the cached answer is not used.
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 81, &short);
    assert_eq!((status(&d), asked), (401, 1));
}

#[test]
fn introspection_answers_meet_the_jwt_claim_rules() {
    for (extra, status_code, says) in [
        (
            json!({"aud": ["https://other.example.com/mcp"]}),
            401,
            "does not include",
        ),
        (json!({"aud": []}), 401, "no audience"),
        (json!({"aud": null}), 401, "no audience"),
        (
            json!({"iss": "https://auth.example.com"}),
            401,
            "not the configured issuer",
        ),
        (json!({"exp": NOW - 3600}), 401, "expired"),
        (json!({"exp": null}), 401, "no valid exp"),
        (json!({"nbf": NOW + 3600}), 401, "not valid yet"),
        (
            json!({"token_use": "refresh_token"}),
            401,
            "not an access token",
        ),
        (json!({"scope": "other"}), 403, "insufficient_scope"),
        // iss is optional in RFC 7662 answers; scp arrays are read as JWTs' are.
        (json!({"iss": null}), 200, ""),
        (json!({"scope": null, "scp": ["mcp:tools"]}), 200, ""),
        (json!({"aud": "https://mcp.example.com/mcp"}), 200, ""),
    ] {
        let mut a = Authorizer::new(config_with(&[INTROSPECT]));
        let answer = |_: &str| active(extra.clone());
        let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW, &answer);
        let (code, challenge) = reply_parts(&d);
        assert_eq!((code, asked), (status_code, 1), "{extra}: {challenge}");
        assert!(challenge.contains(says), "{extra}: {challenge}");
    }
}

#[test]
fn an_unusable_endpoint_is_503_never_an_allow_and_not_remembered() {
    use mcp_edge_auth::error::Error;
    let answers: Vec<Endpoint> = vec![
        Box::new(|_| Err(Error::Upstream("connection refused".into()))),
        Box::new(|_| Err(Error::Upstream("did not answer within 5 s".into()))),
        Box::new(|_| Ok((500, b"{\"active\":true}".to_vec()))),
        Box::new(|_| Ok((401, b"{\"error\":\"invalid_client\"}".to_vec()))),
        Box::new(|_| Ok((200, b"<html>sign in</html>".to_vec()))),
        Box::new(|_| Ok((200, b"{\"active\":\"yes\"}".to_vec()))),
        Box::new(|_| Ok((200, b"{\"active\":true,\"exp\":\"later\"}".to_vec()))),
    ];
    for answer in &answers {
        let mut a = Authorizer::new(config_with(&[INTROSPECT]));
        let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW, answer.as_ref());
        let Decision::Reply { reply, .. } = &d else {
            panic!("{d:?}")
        };
        assert_eq!((reply.status, asked), (503, 1), "{}", reply.body);
        assert_eq!(reply.header("retry-after"), Some("5"));
        assert!(reply.body.contains("temporarily_unavailable"));
        // Nothing was cached: the next request asks again.
        let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW + 1, &|_| active(json!({})));
        assert_eq!((status(&d), asked), (200, 1));
    }
}

#[test]
fn without_an_introspection_url_opaque_tokens_are_401_and_jwts_stay_local() {
    let mut a = Authorizer::new(config());
    let (d, asked) = decide_introspecting(&mut a, OPAQUE, NOW, &|_| active(json!({})));
    assert_eq!((status(&d), asked), (401, 0));
    // With introspection on, a JWT still takes the local path by default.
    let mut a = Authorizer::new(config_with(&[INTROSPECT]));
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    let (d, asked) = decide_introspecting(&mut a, &t, NOW, &|_| panic!("not asked"));
    assert_eq!((status(&d), asked), (200, 0));
    // A forged JWT is refused locally, never sent out.
    let forged = format!("{}x", &t[..t.len() - 1]);
    let (d, asked) = decide_introspecting(&mut a, &forged, NOW, &|_| panic!("not asked"));
    assert_eq!((status(&d), asked), (401, 0));
}

#[test]
fn introspect_jwts_checks_revocation_after_the_local_check() {
    let mut a = Authorizer::new(config_with(&[
        INTROSPECT,
        ("INTROSPECT_JWTS", "true"),
        ("INTROSPECTION_CACHE_SECONDS", "10"),
    ]));
    let t = sign("rsa", Algorithm::RS256, "rs1", &claims(json!({})));
    // The answer's claims do not replace the verified ones.
    let (d, asked) =
        decide_introspecting(&mut a, &t, NOW, &|_| active(json!({"sub": "someone-else"})));
    assert_eq!(asked, 1);
    let Decision::Forward { headers, .. } = d else {
        panic!("{d:?}")
    };
    assert!(headers.contains(&("x-auth-subject", "user-1".into())));
    let (d, asked) = decide_introspecting(&mut a, &t, NOW + 5, &|_| panic!("cached"));
    assert_eq!((status(&d), asked), (200, 0));
    let revoked = |_: &str| Ok((200, br#"{"active":false}"#.to_vec()));
    let (d, asked) = decide_introspecting(&mut a, &t, NOW + 10, &revoked);
    assert_eq!((status(&d), asked), (401, 1));
    // A forged JWT is not introspected.
    let forged = format!("{}x", &t[..t.len() - 1]);
    let (d, asked) = decide_introspecting(&mut a, &forged, NOW, &|_| panic!("not asked"));
    assert_eq!((status(&d), asked), (401, 0));
}
