//! The registration proxy: request validation, scope widening, the Hydra adapter's
//! rewriting, answer cleaning and upstream error mapping; and Client ID Metadata
//! Documents: documents, `client_id` URLs, authorization and token forms, the
//! upstream's registration and token answers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::{cimd, registration};

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

    let url = "https://client.example/oauth/client.json";
    if let Ok(doc) = cimd::parse_document(url, 200, Some("application/json"), request) {
        let _ = cimd::fingerprint(&doc);
        let _ = cimd::check_redirect(&doc, std::str::from_utf8(answer).ok());
    }
    let text = String::from_utf8_lossy(answer);
    let _ = cimd::check_client_id(&text, false);
    let _ = cimd::check_client_id(&text, true);
    if let Some(req) = cimd::authorization_request(&text) {
        let _ = cimd::redirect_error(
            &req.client_id,
            req.state.as_deref(),
            url,
            "server_error",
            &text,
        );
    }
    let _ = cimd::replace_client_id(&text, "upstream");
    let _ = cimd::cache_seconds(Some(&text), 3600);
    let _ = cimd::read_registration(201, answer);
    let _ = cimd::is_invalid_grant(400, answer);
    let _ = cimd::map_answer(answer, "upstream", url);
});
