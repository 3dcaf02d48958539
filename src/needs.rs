//! What a request needs before it is forwarded, from the configuration and, with a
//! `SCOPE_POLICY`, its body: every scope (`REQUIRED_SCOPES`, then the policy's per
//! message, its arguments and a listen request's resources), the filter for its
//! answer's lists, and an `Mcp-Param-*` header that disagrees with the body. Pure; the
//! decision is [`crate::authorizer`]'s.

use crate::authorizer::{Body, RequestInfo};
use crate::config::Config;
use crate::error::Error;
use crate::jsonrpc::{self, FilterSpec};
use crate::token::Principal;
use std::borrow::Cow;

/// Every scope the request needs (`REQUIRED_SCOPES` first, then the policy's for
/// each message, no repeats), the filter for its answer, and an `Mcp-Param-*`
/// header that disagrees with the body. That one is answered only once the scopes
/// hold: a client that never saw the tool in its (filtered) list cannot know the
/// header, and must first learn from the 403 what to step up to; with the wider
/// token it lists the tool and resends with the header (the spec's recovery from
/// -32020).
#[allow(clippy::type_complexity)]
pub fn needs<'c>(
    cfg: &'c Config,
    req: &RequestInfo<'_>,
    p: &Principal,
) -> Result<(Cow<'c, [String]>, Option<FilterSpec>, Option<Error>), Error> {
    // Without a policy (or for GET and DELETE) nothing is copied on the hot path.
    let required = Cow::Borrowed(cfg.scopes.required.as_slice());
    let Some(policy) = &cfg.scopes.policy else {
        return Ok((required, None, None));
    };
    if req.method == "GET" && req.resuming {
        let spec = FilterSpec {
            any: true,
            granted: p.scopes.clone(),
            ..Default::default()
        };
        return Ok((required, Some(spec), None));
    }
    if req.method != "POST" {
        return Ok((required, None, None));
    }
    let mut needed = required.into_owned();
    let text = match req.body {
        Body::Text(t) => t,
        Body::TooLarge => return Err(Error::PayloadTooLarge(cfg.limits.policy_max_body)),
        Body::NotUtf8 | Body::Unread => {
            return Err(jsonrpc::rpc(
                jsonrpc::PARSE_ERROR,
                "Parse error: the body is not UTF-8 JSON",
            ))
        }
    };
    let body = jsonrpc::inspect(text)?;
    let modern = jsonrpc::check_headers(&body, &req.mcp)?;
    let mut mismatch = None;
    let mut add = |s: &String| {
        if !needed.contains(s) {
            needed.push(s.clone());
        }
    };
    for m in &body.messages {
        let Some(method) = &m.method else { continue };
        let rule = policy.rule(method, m.name.as_deref());
        rule.scopes.iter().for_each(&mut add);
        // R15 aside, what reading each subscribed resource needs (2026-07-28).
        for uri in &m.subscriptions {
            policy
                .needs("resources/read", Some(uri))
                .iter()
                .for_each(&mut add);
        }
        if rule.arguments.is_empty() {
            continue;
        }
        let arguments = arguments_of(m)?;
        for a in rule.arguments {
            let value = arguments.as_ref().and_then(|args| args.get(a.property()));
            if method == "tools/call" && mismatch.is_none() {
                let required = modern && a.header_required();
                let header = req.mcp.param(a.header());
                if let Err(what) = jsonrpc::check_param(a.header(), header, value, required) {
                    mismatch = Some(
                        jsonrpc::rpc(jsonrpc::HEADER_MISMATCH, format!("Header mismatch: {what}"))
                            .with_id(m.id.clone()),
                    );
                }
            }
            a.needs(value).into_iter().for_each(&mut add);
        }
    }
    let granted = &p.scopes;
    let spec = FilterSpec::for_body(&body, granted).map(|mut spec| {
        spec.granted = cfg.scopes.hierarchy.expand(granted);
        spec.private = modern;
        spec
    });
    Ok((Cow::Owned(needed), spec, mismatch))
}

/// A message's `params.arguments` as an object, read only when an argument rule
/// asks. Absent or `null` is `None`; any other non-object is -32602.
fn arguments_of(
    m: &jsonrpc::Message<'_>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, Error> {
    let Some(raw) = m.arguments else {
        return Ok(None);
    };
    match serde_json::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(raw.get()) {
        Ok(map) => Ok(map),
        Err(_) => Err(jsonrpc::rpc(
            jsonrpc::INVALID_PARAMS,
            "Invalid params: arguments must be an object",
        )
        .with_id(m.id.clone())),
    }
}
