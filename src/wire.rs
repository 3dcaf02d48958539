//! The protocol between the JS entry (`src/entry.mjs`, `src/crossing.mjs`) and the
//! module, declared once. The JS side reads the same declarations: the decision's
//! keys are typed in `src/wire.d.ts` (the entry is checked against it by `tsc`, in
//! the test command) and the body states are exported by `src/wire.mjs`; the tests
//! below keep both equal to what is declared here.
//!
//! The sequence of calls for an MCP request (docs/architecture.md draws it):
//!
//! 1. `fast(request)` answers one decision. A token seen before is decided here.
//! 2. `{"b": max}`: the entry reads the body (at most `max` bytes, a [`BodyState`])
//!    and calls `fast` again with it and the `mcp-*` headers.
//! 3. `{"p": 1}`: I/O is needed; `authorize(request)` (async) does it and answers a
//!    decision.
//! 4. A verify decision (`"v"`, [`verify`]): the entry checks the signature with
//!    WebCrypto; good and a decision made ahead (`"d"`): `accept(v)` and use it;
//!    otherwise `complete(v, ok, request)` answers the decision.
//! 5. The decision is then one of forward (`"f"`), answer (`"r"`) or "not an MCP
//!    request" (`"x"`, the entry calls `respond`). A forward for a DPoP-bound token
//!    names its proof's signature (`"o"`, `DpopProof` in `src/wire.d.ts`): the entry verifies it before
//!    forwarding, and a bad one is `refusal(…, "dpop")`.
//!
//! The request's strings cross in [`REQUEST_STRINGS`] order, written by one function
//! (`write` in `src/crossing.mjs`) and read by one (`read_request` in the glue).

use crate::authorizer::{Body, Decision};
use crate::config::LogLevel;
use crate::error::Reply;
use crate::log::LogLine;

/// The request's strings, in the order they are written into the input buffer.
pub const REQUEST_STRINGS: [&str; 7] = [
    "method",
    "url",
    "authorization",
    "origin",
    "dpop",
    "body",
    "mcp",
];

/// The body as the JS entry read it (`BODY` in `src/wire.mjs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BodyState {
    /// Not read (no policy, or not asked for yet).
    Unread = 0,
    Text = 1,
    /// Longer than the decision's `max`.
    TooLarge = 2,
    NotUtf8 = 3,
}

impl BodyState {
    pub const ALL: [BodyState; 4] = [
        BodyState::Unread,
        BodyState::Text,
        BodyState::TooLarge,
        BodyState::NotUtf8,
    ];

    /// The name `src/wire.mjs` exports it under.
    pub fn js_name(self) -> &'static str {
        match self {
            BodyState::Unread => "UNREAD",
            BodyState::Text => "TEXT",
            BodyState::TooLarge => "TOO_LARGE",
            BodyState::NotUtf8 => "NOT_UTF8",
        }
    }
}

/// The request body for the decision, from the state and text the entry sent.
pub fn body(state: u8, text: Option<&str>) -> Body<'_> {
    match (state, text) {
        (s, Some(t)) if s == BodyState::Text as u8 => Body::Text(t),
        (s, _) if s == BodyState::TooLarge as u8 => Body::TooLarge,
        (s, _) if s == BodyState::NotUtf8 as u8 => Body::NotUtf8,
        _ => Body::Unread,
    }
}

/// Every key of a decision the entry reads, with its type in `src/wire.d.ts` and
/// what it means.
pub const DECISION_KEYS: &[(&str, &str, &str)] = &[
    ("f", "string", "forward to this origin URL"),
    (
        "h",
        "[string, string][]",
        "headers set on the forwarded request",
    ),
    (
        "c",
        "[string, string][]",
        "headers set on the answer (CORS, DPoP-Nonce)",
    ),
    (
        "q",
        "[string, string][]",
        "rate-limit [binding, key] pairs to count first",
    ),
    (
        "t",
        "string",
        "a filter spec for the answer's lists (JSON, handed back)",
    ),
    (
        "l",
        "Record<string, unknown> | null",
        "the log line, when it is to be printed",
    ),
    ("r", "WireReply", "answer with this reply"),
    (
        "b",
        "number",
        "read the body (at most this many bytes), then fast() again",
    ),
    ("p", "number", "I/O needed: authorize()"),
    ("x", "number", "not an MCP request: respond()"),
    (
        "v",
        "number",
        "a signature to check: the handle for accept()/complete()",
    ),
    ("k", "string", "the key id (key())"),
    ("a", "string", "the JWS algorithm"),
    (
        "y",
        "AlgorithmIdentifier | RsaPssParams | EcdsaParams",
        "WebCrypto verify params",
    ),
    (
        "i",
        "[number, number]",
        "the signing input, as offsets into Authorization",
    ),
    (
        "s",
        "[number, number]",
        "the base64url signature, as offsets into Authorization",
    ),
    (
        "d",
        "Decision",
        "the decision a good signature gets (made ahead)",
    ),
    (
        "g",
        "string",
        "the identity assertion's signing input: sign it (once), send it",
    ),
    (
        "o",
        "DpopProof",
        "a DPoP proof's signature to verify before forwarding",
    ),
];

/// A DPoP proof's signature check (`DpopProof` in `src/wire.d.ts`): the public JWK and
/// the WebCrypto import and verify parameters (JSON strings), and where the signing
/// input and the base64url signature are in the `DPoP` header.
#[derive(serde::Serialize)]
struct ProofWire<'a> {
    k: &'a str,
    i: &'a str,
    y: &'a str,
    n: (usize, usize),
    s: (usize, usize),
}

impl<'a> From<&'a crate::dpop::Check> for ProofWire<'a> {
    fn from(c: &'a crate::dpop::Check) -> Self {
        ProofWire {
            k: &c.jwk,
            i: c.import,
            y: c.verify,
            n: c.input,
            s: c.signature,
        }
    }
}

#[derive(serde::Serialize)]
struct ForwardWire<'a> {
    f: &'a str,
    h: &'a [(&'static str, String)],
    c: &'a [(&'static str, String)],
    /// Rate-limit `[binding, key]` pairs, when limiting bindings exist.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    q: &'a [(&'static str, String)],
    /// The filter spec, as a JSON string the entry hands back to the filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    /// The identity assertion's signing input.
    #[serde(skip_serializing_if = "Option::is_none")]
    g: Option<&'a str>,
    /// A DPoP proof's signature to verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    o: Option<ProofWire<'a>>,
    l: Option<&'a LogLine>,
}

#[derive(serde::Serialize)]
struct ReplyWire<'a> {
    r: &'a Reply,
    l: Option<&'a LogLine>,
}

/// A decision as the entry reads it (one string across the wasm boundary). Serialised
/// from borrowed structs: no intermediate JSON tree on the hot path.
pub fn decision(d: &Decision, level: LogLevel) -> String {
    fn log(level: LogLevel, l: &LogLine) -> Option<&LogLine> {
        let quiet =
            level == LogLevel::Off || (level == LogLevel::Warn && !l.is_warning() && l.status != 0);
        (!quiet).then_some(l)
    }
    let wire = match d {
        Decision::Forward {
            target,
            headers,
            cors,
            filter,
            limits,
            assertion,
            proof,
            log: l,
        } => serde_json::to_string(&ForwardWire {
            f: target,
            h: headers,
            c: cors,
            q: limits,
            t: filter.as_ref().and_then(|f| serde_json::to_string(f).ok()),
            g: assertion.as_deref(),
            o: proof.as_deref().map(ProofWire::from),
            l: log(level, l),
        }),
        Decision::Reply { reply, log: l } => serde_json::to_string(&ReplyWire {
            r: reply,
            l: log(level, l),
        }),
        // The glue answers Verify with `Pending::to_wire` after keeping it.
        Decision::NeedKeys
        | Decision::Verify(_)
        | Decision::Introspect
        | Decision::Exchange { .. } => return r#"{"p":1}"#.to_string(),
        Decision::NeedBody(max) => return format!(r#"{{"b":{max}}}"#),
        Decision::NotMcp => return r#"{"x":1}"#.to_string(),
    };
    wire.unwrap_or_else(|_| r#"{"x":1}"#.to_string())
}

/// A signature for the entry to check: `handle`, the key id and algorithm, the
/// WebCrypto params (JSON), the offsets of the signing input and of the signature in
/// the `Authorization` header, and the decision made ahead (a wire string), if any.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    handle: u32,
    key_id: &str,
    alg: jsonwebtoken::Algorithm,
    params: &str,
    input: (usize, usize),
    signature: (usize, usize),
    ahead: Option<&str>,
) -> String {
    // Key ids are the worker's own (`<generation>.<index>`): nothing to escape.
    let mut wire = format!(
        r#"{{"v":{handle},"k":"{key_id}","a":"{alg:?}","y":{params},"i":[{},{}],"s":[{},{}]"#,
        input.0, input.1, signature.0, signature.1
    );
    if let Some(d) = ahead {
        wire.push_str(r#","d":"#);
        wire.push_str(d);
    }
    wire.push('}');
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogLine;
    use serde_json::Value;

    fn keys_of(wire: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(wire).expect("a decision is JSON");
        v.as_object().expect("an object").keys().cloned().collect()
    }

    fn known(key: &str) -> bool {
        DECISION_KEYS.iter().any(|(k, _, _)| *k == key)
    }

    #[test]
    fn every_key_written_is_declared() {
        let forward = Decision::Forward {
            target: "http://o/mcp".into(),
            headers: vec![("x-auth-subject", "a".into())],
            cors: vec![],
            filter: Some(Default::default()),
            limits: vec![("MCP_RATE_LIMITER", "sub:a".into())],
            assertion: Some(std::rc::Rc::from("e30.e30")),
            proof: Some(Box::new(crate::dpop::Check {
                jwk: r#"{"crv":"Ed25519","kty":"OKP","x":"x"}"#.into(),
                import: r#"{"name":"Ed25519"}"#,
                verify: r#"{"name":"Ed25519"}"#,
                input: (0, 3),
                signature: (4, 6),
            })),
            log: LogLine::default(),
        };
        let reply = Decision::Reply {
            reply: Reply::empty(204),
            log: LogLine::default(),
        };
        let mut wires = vec![
            decision(&forward, LogLevel::Info),
            decision(&reply, LogLevel::Info),
            decision(&Decision::NeedKeys, LogLevel::Info),
            decision(&Decision::NeedBody(10), LogLevel::Info),
            decision(&Decision::NotMcp, LogLevel::Info),
        ];
        let ahead = decision(&forward, LogLevel::Off);
        wires.push(verify(
            7,
            "1.0",
            jsonwebtoken::Algorithm::RS256,
            r#"{"name":"RSASSA-PKCS1-v1_5"}"#,
            (7, 20),
            (21, 30),
            Some(&ahead),
        ));
        for w in &wires {
            for k in keys_of(w) {
                assert!(known(&k), "{k} in {w} is not in DECISION_KEYS");
            }
        }
        assert_eq!(keys_of(&wires[0]), ["c", "f", "g", "h", "l", "o", "q", "t"]);
        let f: Value = serde_json::from_str(&wires[0]).unwrap();
        assert_eq!(
            f["o"],
            serde_json::json!({"k": r#"{"crv":"Ed25519","kty":"OKP","x":"x"}"#, "i": r#"{"name":"Ed25519"}"#, "y": r#"{"name":"Ed25519"}"#, "n": [0, 3], "s": [4, 6]}),
            "the DPoP proof's check, as DpopProof declares it"
        );
        let v: Value = serde_json::from_str(&wires[5]).unwrap();
        assert_eq!(v["i"], serde_json::json!([7, 20]));
        assert!(v["d"]["f"].is_string(), "the decision ahead is a decision");
    }

    /// `src/wire.d.ts` types exactly the declared keys, with the declared types.
    #[test]
    fn the_typescript_declaration_matches() {
        let dts = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/wire.d.ts"))
            .expect("src/wire.d.ts");
        let body = dts
            .split("interface Decision {")
            .nth(1)
            .and_then(|b| b.split("\n}").next())
            .expect("an interface Decision in src/wire.d.ts");
        let declared: Vec<(String, String)> = body
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty() && !l.starts_with("//") && !l.starts_with("/*") && !l.starts_with('*')
            })
            .map(|l| {
                let (k, t) = l
                    .split_once("?:")
                    .unwrap_or_else(|| panic!("`{l}` is not `key?: type;`"));
                (
                    k.trim().to_string(),
                    t.trim().trim_end_matches(';').trim().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = DECISION_KEYS
            .iter()
            .map(|(k, t, _)| (k.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            declared, expected,
            "src/wire.d.ts's Decision and DECISION_KEYS differ"
        );
    }

    /// `src/wire.mjs` exports the body states with Rust's numbers.
    #[test]
    fn the_crossing_writes_the_request_strings_in_their_order() {
        let js = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/crossing.mjs"))
            .unwrap();
        let params = js
            .split("function write(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap();
        let params: Vec<&str> = params.split(',').map(str::trim).collect();
        assert_eq!(params, REQUEST_STRINGS);
        // Each string goes to its own slot, in that order.
        for (i, name) in REQUEST_STRINGS.iter().enumerate() {
            assert!(
                js.contains(&format!("put({i}, {name});")),
                "put({i}, {name})"
            );
        }
    }

    #[test]
    fn the_js_body_states_match() {
        let js = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/wire.mjs"))
            .expect("src/wire.mjs");
        for s in BodyState::ALL {
            let entry = format!("{}: {}", s.js_name(), s as u8);
            assert!(js.contains(&entry), "src/wire.mjs lacks `{entry}`");
        }
        assert_eq!(body(1, Some("x")), Body::Text("x"));
        assert_eq!(body(2, None), Body::TooLarge);
        assert_eq!(body(3, None), Body::NotUtf8);
        assert_eq!(body(0, Some("x")), Body::Unread);
        assert_eq!(body(9, None), Body::Unread);
    }
}
