//! The scope policy's request inspection (bodies, the `mcp-*` header block, argument
//! rules and `Mcp-Param-*` checks), policies and hierarchies as parsed from the
//! input, and answer filtering (with `cacheScope`), JSON and event streams split at
//! arbitrary points.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::jsonrpc::{self, FilterSpec};
use mcp_edge_auth::policy::{Hierarchy, Policy};
use mcp_edge_auth::sse::SseFilter;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        Policy::parse(
            r#"{"default": "d", "methods": {"tools/call": {"scopes": "c", "names": {"delete_*": "admin", "x": "",
                   "deploy": {"scopes": "c", "arguments": {"region": {"match": {"prod-*": "admin", "*": "c"}, "header": "Region"},
                                                            "n": {"match": {"1*": "admin"}}}}}},
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
    // The `mcp-*` header block rides after the first NUL, when present.
    let (body, block) = text.split_once('\0').unwrap_or((text, ""));
    let headers = jsonrpc::McpHeaders::new(block);
    if let Ok(b) = jsonrpc::inspect(body) {
        let modern = jsonrpc::check_headers(&b, &headers).unwrap_or(false);
        for m in &b.messages {
            if let Some(method) = &m.method {
                let rule = p.rule(method, m.name.as_deref());
                let args: Option<serde_json::Map<String, serde_json::Value>> = m
                    .arguments
                    .and_then(|raw| serde_json::from_str(raw.get()).ok());
                for a in rule.arguments {
                    let value = args.as_ref().and_then(|args| args.get(a.property()));
                    let _ =
                        jsonrpc::check_param(a.header(), headers.param(a.header()), value, modern);
                    let _ = a.needs(value);
                }
            }
        }
        let _ = FilterSpec::for_body(&b, &["c".to_string()]);
    }
    let _ = Hierarchy::parse(body, &[]).map(|h| h.expand(&["c".to_string(), "d".to_string()]));
    let _ = jsonrpc::decode_header_value(body);
    let _ = Policy::parse(body, &[]);
    let spec = FilterSpec {
        any: true,
        granted: vec!["c".into()],
        private: block.is_empty(),
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
