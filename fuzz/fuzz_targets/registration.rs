//! The registration proxy: request validation, scope widening, the Hydra adapter's
//! rewriting, answer cleaning and
//! upstream error mapping.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::registration;

fuzz_target!(|data: &[u8]| {
    let (cut, rest) = match data.split_first() {
        Some((c, r)) => (*c as usize % (r.len() + 1), r),
        None => return,
    };
    let (request, answer) = rest.split_at(cut);
    if let Ok(req) = registration::validate_request(request) {
        let _ =
            registration::widen_scope(&req, &["mcp:tools".to_string(), "repo:admin".to_string()]);
        let _ = registration::for_hydra(
            &req,
            "https://mcp.example.com/mcp",
            &["mcp:tools".to_string()],
        );
        let _ = registration::clean_answer(&req, answer);
    }
    let _ = registration::upstream_error(400, answer);
    let _ = registration::upstream_error(503, answer);
});
