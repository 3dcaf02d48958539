//! The scope policy's request inspection (bodies, `Mcp-Method` / `Mcp-Name`) and its
//! answer filtering, JSON and event streams split at arbitrary points.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::jsonrpc::{self, FilterSpec};
use mcp_edge_auth::policy::Policy;
use mcp_edge_auth::sse::SseFilter;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::parse(
            r#"{"default": "d", "methods": {"tools/call": {"scopes": "c", "names": {"delete_*": "admin", "x": ""}},
                 "resources/read": {"names": {"file:///secret/*": "admin"}}, "prompts/get": "p"}}"#,
            &[],
        )
        .expect("a valid policy")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = policy();
    // Header values ride after the last two NULs, when present.
    let mut parts = text.splitn(3, '\0');
    let body = parts.next().unwrap_or_default();
    let method = parts.next();
    let name = parts.next();
    if let Ok(b) = jsonrpc::inspect(body) {
        let _ = jsonrpc::check_headers(&b, method, name);
        for m in &b.messages {
            if let Some(method) = &m.method {
                let _ = p.needs(method, m.name.as_deref());
            }
        }
        let _ = FilterSpec::for_body(&b, &["c".to_string()]);
    }
    let _ = jsonrpc::decode_header_value(body);
    let _ = Policy::parse(body, &[]);
    let spec = FilterSpec {
        any: true,
        granted: vec!["c".into()],
        ..Default::default()
    };
    let _ = jsonrpc::filter_answer(body, &spec, p);
    let mut sse = SseFilter::new(spec);
    let mut out = String::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut cut = (rest.len() / 3).max(1);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        out.push_str(&sse.push(chunk, p));
        rest = tail;
    }
    out.push_str(&sse.finish());
});
