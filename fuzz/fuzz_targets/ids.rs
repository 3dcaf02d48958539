//! JSON-RPC id matching for list filtering: a list answer is filtered whatever the
//! spelling of its id (the origin re-serialises it), and never passes unfiltered
//! because its id matches nothing the worker saw.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::jsonrpc::{self, FilterSpec};
use mcp_edge_auth::policy::Policy;
use serde_json::Value;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::parse(
            r#"{"methods": {"tools/call": {"names": {"secret": "admin"}}}}"#,
            &[],
        )
        .expect("a valid policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Two id spellings, separated by a NUL: the request's and the answer's.
    let mut parts = text.splitn(2, '\0');
    let (req_id, answer_id) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("1"),
    );
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Value>(req_id),
        serde_json::from_str::<Value>(answer_id),
    ) else {
        return;
    };
    // Equal ids as JSON-RPC means them: numbers by value, strings exactly.
    let same = match (&a, &b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    };
    assert_eq!(jsonrpc::same_id(&a, &b), same, "{a} {b}");
    let body = format!(r#"{{"jsonrpc":"2.0","id":{req_id},"method":"tools/list"}}"#);
    let Ok(inspected) = jsonrpc::inspect(&body) else {
        return;
    };
    let spec = FilterSpec::for_body(&inspected, &[]).expect("a list request");
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{answer_id},"result":{{"tools":[{{"name":"open"}},{{"name":"secret"}}]}}}}"#
    );
    let out = jsonrpc::filter_answer(&answer, &spec, policy()).expect("always filtered");
    assert!(!out.contains("secret"));
    let batch = format!("[{answer}]");
    let out = jsonrpc::filter_answer(&batch, &spec, policy()).expect("always filtered");
    assert!(!out.contains("secret"));
});
