//! The MCP request headers against the body (MCP 2026-07-28 transport, R11-R13),
//! pure: which revision a request speaks, the standard headers it must carry, the
//! base64 sentinel, and an `Mcp-Param-*` header an argument rule interprets.

use crate::error::Error;
use crate::jsonrpc::{rpc, Body, HEADER_MISMATCH};
use crate::policy;
use base64::Engine;
use serde_json::Value;
use std::borrow::Cow;

/// The MCP headers of a POST, as the entry hands them over: every request header
/// whose name starts with `mcp-`, as `name\nvalue\n` pairs with lowercase names (header
/// values cannot hold a line feed). Only read when a `SCOPE_POLICY` reads the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpHeaders<'a> {
    block: &'a str,
}

impl<'a> McpHeaders<'a> {
    pub fn new(block: &'a str) -> McpHeaders<'a> {
        McpHeaders { block }
    }

    fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut lines = self.block.split('\n');
        std::iter::from_fn(move || Some((lines.next()?, lines.next()?)))
    }

    /// The value of a header, by its lowercase name.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `MCP-Protocol-Version`.
    pub fn version(&self) -> Option<&'a str> {
        self.get("mcp-protocol-version")
    }

    /// `Mcp-Param-{name}`, `name` compared without regard to case.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.pairs()
            .find(|(n, _)| {
                n.strip_prefix("mcp-param-")
                    .is_some_and(|p| p.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v)
    }
}

/// Is `version` MCP 2026-07-28 or later, whose requests must carry the standard
/// headers? Revisions are dates (`YYYY-MM-DD`), so they compare as strings; anything
/// else is no revision this worker knows of, and is left to the origin to refuse.
pub fn is_modern(version: &str) -> bool {
    version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
        && version >= "2026-07-28"
}

/// Does `v` hold only what a header value may (visible ASCII, space, tab)?
fn plain(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Decode an `Mcp-Name` / `Mcp-Param-*` value: plain visible ASCII as is, or
/// `=?base64?<standard base64 of UTF-8>?=`. `None` when it is malformed.
pub fn decode_header_value(v: &str) -> Option<Cow<'_, str>> {
    if !plain(v) {
        return None;
    }
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(v)),
    }
}

/// Methods whose 2026-07-28 requests must carry `Mcp-Name` (R11).
pub const MCP_NAME_METHODS: &[&str] = &["tools/call", "resources/read", "prompts/get"];

/// R11, R12: the MCP headers against the body. In every revision a header that is
/// present must describe the body exactly (`Mcp-Method` as is, `Mcp-Name` after the
/// base64 sentinel is decoded) and `MCP-Protocol-Version` must equal the body's
/// `_meta` version when both are given. A 2026-07-28 request (by its header, or by its
/// body's `_meta` when the header is missing) must also carry all three: one message,
/// `MCP-Protocol-Version`, `Mcp-Method`, and `Mcp-Name` for [`MCP_NAME_METHODS`].
/// Failures are -32020 with the request's id. `Ok(true)`: a 2026-07-28 request.
pub fn check_headers(body: &Body<'_>, headers: &McpHeaders<'_>) -> Result<bool, Error> {
    let single = match body.messages.as_slice() {
        [m] if !body.batch => Some(m),
        _ => None,
    };
    let id = single.and_then(|m| m.id.clone());
    let mismatch =
        |what: &str| rpc(HEADER_MISMATCH, format!("Header mismatch: {what}")).with_id(id.clone());
    let version = headers.version();
    let modern = version.is_some_and(is_modern)
        || body
            .messages
            .iter()
            .any(|m| matches!(&m.version, Some(Some(v)) if is_modern(v)));
    let mcp_method = headers.get("mcp-method");
    let mcp_name = headers.get("mcp-name");
    if !modern && mcp_method.is_none() && mcp_name.is_none() && version.is_none() {
        return Ok(false);
    }
    if let Some(v) = version {
        for m in &body.messages {
            match &m.version {
                Some(Some(b)) if b == v => {}
                None => {}
                Some(_) => {
                    return Err(mismatch(
                        "MCP-Protocol-Version differs from the body's _meta protocol version",
                    ))
                }
            }
        }
    }
    if !modern && mcp_method.is_none() && mcp_name.is_none() {
        return Ok(false);
    }
    let Some(m) = single else {
        return Err(mismatch(
            "the MCP headers describe one message; the body is a batch",
        ));
    };
    if modern && version.is_none() {
        return Err(mismatch(
            "MCP-Protocol-Version is required (the body's _meta names 2026-07-28 or later)",
        ));
    }
    let method = m.method.as_deref();
    match mcp_method {
        Some(h) if !plain(h) => return Err(mismatch("Mcp-Method has invalid characters")),
        Some(h) if Some(h) != method => {
            return Err(mismatch(
                "the Mcp-Method header differs from the body's method",
            ))
        }
        None if modern && method.is_some() => {
            return Err(mismatch(
                "Mcp-Method is required by MCP 2026-07-28 and later",
            ))
        }
        _ => {}
    }
    let needs_name = method.is_some_and(|m| MCP_NAME_METHODS.contains(&m));
    match mcp_name {
        Some(h) => {
            let h = decode_header_value(h)
                .ok_or_else(|| mismatch("Mcp-Name is not a valid header value"))?;
            let named = method.and_then(policy::name_field).is_some();
            if !named || m.name.as_deref() != Some(h.as_ref()) {
                return Err(mismatch("the Mcp-Name header differs from the body's name"));
            }
        }
        None if needs_name && (modern || mcp_method.is_some()) => {
            return Err(mismatch("Mcp-Name is required for this method"));
        }
        None => {}
    }
    Ok(modern)
}

/// R13: an `Mcp-Param-{name}` header the worker interprets (an argument rule reads
/// its argument) against the argument's value in the body. A header must decode and
/// equal the value as a client renders it (integers compared numerically, so `42.0`
/// in the header matches `42`); a header without a value in the body is a mismatch,
/// and so, when `required`, is a value without a header.
pub fn check_param(
    name: &str,
    header: Option<&str>,
    value: Option<&Value>,
    required: bool,
) -> Result<(), String> {
    let value = value.filter(|v| !v.is_null());
    let (header, value) = match (header, value) {
        (None, None) => return Ok(()),
        (None, Some(_)) if required => {
            return Err(format!(
                "Mcp-Param-{name} is required: the tool mirrors this argument into it"
            ))
        }
        (None, Some(_)) => return Ok(()),
        (Some(_), None) => {
            return Err(format!(
                "Mcp-Param-{name} is sent, the body has no value for its argument"
            ))
        }
        (Some(h), Some(v)) => (h, v),
    };
    let decoded = decode_header_value(header)
        .ok_or_else(|| format!("Mcp-Param-{name} is not a valid header value"))?;
    let same = match (value, policy::scalar(value)) {
        (Value::Number(n), _) => integral(&decoded).is_some_and(|h| n.as_f64() == Some(h)),
        (_, policy::Scalar::Text(text)) => text == decoded,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "the Mcp-Param-{name} header differs from the body's argument"
        ))
    }
}

/// A header's number in canonical decimal (`-7`, `42`, `42.0`), as an `f64`; `None`
/// for anything else (exponents never compare numerically, as in the SDKs).
fn integral(s: &str) -> Option<f64> {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let canonical = match unsigned.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(unsigned),
    };
    // serde_json's number reader (already in the wasm; `str::parse` would add core's).
    canonical.then(|| serde_json::from_str(s).ok()).flatten()
}
