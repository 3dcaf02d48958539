//! JSON-RPC inspection for the scope policy, pure: what a POST asks for, whether its
//! `Mcp-Method` / `Mcp-Name` headers agree with its body (R11), and list answers
//! rewritten so a token only sees what it may call.
//!
//! * [`inspect`] reads a request body (one message or a batch) without materialising
//!   arguments: only `id`, `method` and the name member of `params` are kept. A
//!   member given twice (`{"name":"a","name":"b"}`) is refused: parsers disagree on
//!   which one counts, and the origin must act on the name the policy checked.
//! * [`check_headers`] compares the 2026-07-28 headers with the body; values in the
//!   `=?base64?…?=` form are decoded first ([`decode_header_value`]).
//! * [`filter_answer`] removes the tools, prompts or resources a token may not use
//!   from `tools/list`, `prompts/list` and `resources/list` results. Everything
//!   else in the message, including `nextCursor`, is kept byte for byte: the item
//!   array is spliced, never re-serialised.

use crate::error::Error;
pub use crate::headers::{
    check_headers, check_param, decode_header_value, is_modern, McpHeaders, MCP_NAME_METHODS,
};
use crate::policy::{self, Policy};
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// JSON-RPC error codes the worker answers with.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28: `Mcp-Method` / `Mcp-Name` disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// One message of a request body: a request (with `id`), a notification, or a
/// client's response to a server request (no `method`). Borrows from the body.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub id: Option<Value>,
    pub method: Option<String>,
    /// The tool or prompt `name`, or the resource `uri`, for [`policy::NAMED_METHODS`].
    pub name: Option<String>,
    /// `params.arguments`, unparsed (read only when an argument rule asks).
    pub arguments: Option<&'a RawValue>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (MCP 2026-07-28);
    /// `Some(None)` when present but not a string.
    pub version: Option<Option<String>>,
    /// `params.notifications.resourceSubscriptions` of a `subscriptions/listen`.
    pub subscriptions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Body<'a> {
    pub messages: Vec<Message<'a>>,
    pub batch: bool,
}

pub(crate) fn rpc(code: i64, message: impl Into<String>) -> Error {
    Error::JsonRpc {
        code,
        message: message.into(),
        id: Value::Null,
    }
}

/// The body member carrying a 2026-07-28 request's protocol version, in `params._meta`.
pub const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// `params`, keeping only the members the policy and the header checks read. A
/// member given twice is refused: parsers disagree on which one counts.
#[derive(Default)]
struct Params<'a> {
    name: Option<Value>,
    uri: Option<Value>,
    arguments: Option<&'a RawValue>,
    /// `_meta` and `notifications` as values: small objects, and no deserializer of
    /// their own in the wasm.
    meta: Option<Value>,
    notifications: Option<Value>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Params<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Params<'a>, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Params<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("params as an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'a>, A::Error> {
                fn once<E: de::Error, T>(slot: &Option<T>, key: &str) -> Result<(), E> {
                    match slot {
                        Some(_) => Err(E::custom(format!("duplicate params member `{key}`"))),
                        None => Ok(()),
                    }
                }
                let mut p = Params::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "name" => {
                            once(&p.name, &key)?;
                            p.name = Some(map.next_value()?);
                        }
                        "uri" => {
                            once(&p.uri, &key)?;
                            p.uri = Some(map.next_value()?);
                        }
                        "arguments" => {
                            once(&p.arguments, &key)?;
                            p.arguments = Some(map.next_value()?);
                        }
                        "_meta" => {
                            once(&p.meta, &key)?;
                            p.meta = Some(map.next_value()?);
                        }
                        "notifications" => {
                            once(&p.notifications, &key)?;
                            p.notifications = Some(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    params: Option<Params<'a>>,
}

fn classify(e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            rpc(PARSE_ERROR, "Parse error: the body is not valid JSON")
        }
        Category::Data => rpc(
            INVALID_REQUEST,
            format!("Invalid Request: not a JSON-RPC message ({e})"),
        ),
    }
}

fn message(w: WireMessage<'_>) -> Result<Message<'_>, Error> {
    let method = w.method.map(Cow::into_owned);
    let mut m = Message {
        id: w.id,
        method: None,
        name: None,
        arguments: None,
        version: None,
        subscriptions: Vec::new(),
    };
    if m.id
        .as_ref()
        .is_some_and(|id| IdKey::of(id) == IdKey::Invalid)
    {
        return Err(rpc(
            INVALID_REQUEST,
            "Invalid Request: an id must be a string, a number or null",
        ));
    }
    if let (Some(method), Some(p)) = (method.as_deref(), w.params) {
        let value = match policy::name_field(method) {
            Some("name") => p.name,
            Some(_) => p.uri,
            None => None,
        };
        m.name = match value {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                return Err(rpc(
                    INVALID_PARAMS,
                    format!("Invalid params: the name of {method} must be a string"),
                )
                .with_id(m.id.clone()))
            }
        };
        m.arguments = p.arguments;
        m.version = p
            .meta
            .as_ref()
            .and_then(|meta| meta.get(VERSION_META))
            .map(|v| v.as_str().map(str::to_string));
        if method == "subscriptions/listen" {
            let uris = p
                .notifications
                .as_ref()
                .and_then(|n| n.get("resourceSubscriptions"));
            if let Some(uris) = uris {
                let uris = uris.as_array().filter(|a| a.iter().all(Value::is_string));
                m.subscriptions = uris
                    .ok_or_else(|| {
                        rpc(
                            INVALID_PARAMS,
                            "Invalid params: resourceSubscriptions must be an array of URIs",
                        )
                        .with_id(m.id.clone())
                    })?
                    .iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect();
            }
        }
    }
    m.method = method;
    Ok(m)
}

/// Read what a POST body asks for. A body that is not JSON is a parse error
/// (-32700); JSON that is not a message or a non-empty batch of messages is an
/// invalid request (-32600): a batch item that is not an object (a nested array
/// included), an `id` that is not a string, a number or null, and a batch whose
/// requests repeat an id (as JSON-RPC means ids: `1`, `1.0` and `1e0` are one id),
/// since answers could then not be told apart.
pub fn inspect(body: &str) -> Result<Body<'_>, Error> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(body).map_err(|e| classify(&e))?;
        if items.is_empty() {
            return Err(rpc(INVALID_REQUEST, "Invalid Request: an empty batch"));
        }
        let mut messages: Vec<Message> = Vec::with_capacity(items.len());
        // The request ids seen, as a JSON object's keys: the map serde_json already
        // brings into the wasm serves as the set.
        let mut seen = serde_json::Map::new();
        for raw in items {
            if !raw.get().starts_with('{') {
                return Err(rpc(
                    INVALID_REQUEST,
                    "Invalid Request: every batch item must be a JSON-RPC message (an object)",
                ));
            }
            let m = message(serde_json::from_str(raw.get()).map_err(|e| classify(&e))?)?;
            if let (Some(_), Some(id)) = (&m.method, &m.id) {
                if seen
                    .insert(IdKey::of(id).to_string(), Value::Null)
                    .is_some()
                {
                    return Err(rpc(
                        INVALID_REQUEST,
                        "Invalid Request: a batch repeats a request id",
                    ));
                }
            }
            messages.push(m);
        }
        Ok(Body {
            messages,
            batch: true,
        })
    } else if trimmed.starts_with('{') {
        let m: WireMessage<'_> = serde_json::from_str(body).map_err(|e| classify(&e))?;
        Ok(Body {
            messages: vec![message(m)?],
            batch: false,
        })
    } else if serde_json::from_str::<IgnoredAny>(body).is_ok() {
        Err(rpc(
            INVALID_REQUEST,
            "Invalid Request: the body is neither a message nor a batch",
        ))
    } else {
        Err(rpc(PARSE_ERROR, "Parse error: the body is not valid JSON"))
    }
}

/// A JSON-RPC id as JSON-RPC means it: strings compared exactly, numbers by value
/// (`1`, `1.0`, `1e0` and `10E-1` are one id; `-0` is `0`), null as itself. Servers
/// re-serialise ids, so an answer's id is matched to its request through this key.
/// Integers beyond 2^53 may share a key: that only ever makes more answers filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdKey {
    Null,
    Str(String),
    /// The bits of the number as an `f64`, with `-0` folded onto `0`.
    Num(u64),
    /// Not a valid JSON-RPC id (an object, an array, a boolean).
    Invalid,
}

impl IdKey {
    pub fn of(id: &Value) -> IdKey {
        match id {
            Value::Null => IdKey::Null,
            Value::String(s) => IdKey::Str(s.clone()),
            Value::Number(n) => match n.as_f64() {
                Some(0.0) => IdKey::Num(0), // -0 too: float patterns compare with ==
                Some(f) => IdKey::Num(f.to_bits()),
                None => IdKey::Invalid,
            },
            _ => IdKey::Invalid,
        }
    }
}

impl fmt::Display for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdKey::Null => f.write_str("null"),
            IdKey::Str(s) => write!(f, "s:{s}"),
            IdKey::Num(bits) => write!(f, "n:{bits}"),
            IdKey::Invalid => f.write_str("invalid"),
        }
    }
}

/// Do two ids name the same request ([`IdKey`])? Invalid ids match nothing.
pub fn same_id(a: &Value, b: &Value) -> bool {
    let a = IdKey::of(a);
    a != IdKey::Invalid && a == IdKey::of(b)
}

/// A list answer the worker rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    pub fn from_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            _ => None,
        }
    }

    /// The method an item is used with, and the item member that names it.
    fn use_method(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("tools/call", "name"),
            ListKind::Prompts => ("prompts/get", "name"),
            ListKind::Resources => ("resources/read", "uri"),
        }
    }
}

/// Which answers of one exchange to rewrite, and for whom: the list requests' ids
/// (or, for a resumed stream whose requests the worker never saw, any answer shaped
/// like a list result) and the scopes the token holds.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FilterSpec {
    /// `(request id, kind)` of each list request in the exchange.
    #[serde(default)]
    pub ids: Vec<(Value, ListKind)>,
    /// The ids of the exchange's other requests: their answers pass as they are.
    /// An answer matching neither list is rewritten as any list answer could be.
    #[serde(default)]
    pub others: Vec<Value>,
    /// Rewrite any result shaped like a list answer (resumed streams).
    #[serde(default)]
    pub any: bool,
    /// The scopes the token holds, with every scope they imply (`SCOPE_HIERARCHY`).
    pub granted: Vec<String>,
    /// A 2026-07-28 exchange: a list result without `cacheScope` gets one (`"private"`).
    /// A `cacheScope` the origin sent is made `"private"` in every revision.
    #[serde(default)]
    pub private: bool,
}

impl FilterSpec {
    /// The spec for a request body, or `None` when it holds no list request (then no
    /// answer needs rewriting and the response streams through untouched).
    pub fn for_body(body: &Body, granted: &[String]) -> Option<FilterSpec> {
        let mut ids = Vec::new();
        let mut others = Vec::new();
        for m in &body.messages {
            let (Some(method), Some(id)) = (m.method.as_deref(), m.id.as_ref()) else {
                continue;
            };
            match ListKind::from_method(method) {
                Some(kind) => ids.push((id.clone(), kind)),
                None => others.push(id.clone()),
            }
        }
        (!ids.is_empty()).then(|| FilterSpec {
            ids,
            others,
            any: false,
            granted: granted.to_vec(),
            private: false,
        })
    }

    /// Which lists to rewrite in an answer with this id. An answer the worker cannot
    /// attribute to a request of the exchange (no id, an id it never saw, a
    /// re-serialised id matching nothing) is treated as any list answer: a list must
    /// never pass unfiltered because its id was spelled differently.
    fn kinds_for(&self, id: Option<&Value>) -> &'static [ListKind] {
        const ALL: &[ListKind] = &[ListKind::Tools, ListKind::Prompts, ListKind::Resources];
        const TOOLS: &[ListKind] = &[ListKind::Tools];
        const PROMPTS: &[ListKind] = &[ListKind::Prompts];
        const RESOURCES: &[ListKind] = &[ListKind::Resources];
        let Some(id) = id else { return ALL };
        if let Some((_, k)) = self.ids.iter().find(|(i, _)| same_id(i, id)) {
            return match k {
                ListKind::Tools => TOOLS,
                ListKind::Prompts => PROMPTS,
                ListKind::Resources => RESOURCES,
            };
        }
        if !self.any && self.others.iter().any(|i| same_id(i, id)) {
            return &[];
        }
        ALL
    }
}

#[derive(Deserialize)]
struct WireAnswer<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireList<'a> {
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompts: Option<&'a RawValue>,
    #[serde(default, borrow)]
    resources: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "cacheScope")]
    cache_scope: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    uri: Option<Value>,
}

/// Byte offset of `inner` (a slice of `outer`) within `outer`.
fn offset(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

/// Rewrite one JSON-RPC message or batch of answers. `None`: nothing to change
/// (not an answer this spec covers, not JSON, or every item allowed).
pub fn filter_answer(text: &str, spec: &FilterSpec, policy: &Policy) -> Option<String> {
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        let mut changed = false;
        let parts: Vec<Cow<'_, str>> = items
            .iter()
            .map(|raw| match filter_one(raw.get(), spec, policy) {
                Some(s) => {
                    changed = true;
                    Cow::Owned(s)
                }
                None => Cow::Borrowed(raw.get()),
            })
            .collect();
        return changed.then(|| format!("[{}]", parts.join(",")));
    }
    filter_one(text, spec, policy)
}

fn filter_one(text: &str, spec: &FilterSpec, policy: &Policy) -> Option<String> {
    let answer: WireAnswer<'_> = serde_json::from_str(text).ok()?;
    let result = answer.result?;
    let kinds = spec.kinds_for(answer.id.as_ref());
    if kinds.is_empty() {
        return None;
    }
    let list: WireList<'_> = serde_json::from_str(result.get()).ok()?;
    // Every list array the answer holds, rewritten where the token may not use an item.
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    let mut splice = |start: usize, end: usize, with: String| {
        // In text order (at most four; no sort routine in the wasm for that).
        let at = splices.iter().take_while(|(s, _, _)| *s < start).count();
        splices.insert(at, (start, end, with));
    };
    let mut per_token = false;
    for &kind in kinds {
        let array = match kind {
            ListKind::Tools => list.tools,
            ListKind::Prompts => list.prompts,
            ListKind::Resources => list.resources,
        };
        let Some(array) = array else { continue };
        let items: Vec<&RawValue> = match serde_json::from_str(array.get()) {
            Ok(items) => items,
            Err(_) => continue,
        };
        let (method, member) = kind.use_method();
        per_token |= policy.can_hide(method);
        let kept: Vec<&str> = items
            .iter()
            .filter(|raw| {
                let name = serde_json::from_str::<WireItem>(raw.get())
                    .ok()
                    .and_then(|i| if member == "name" { i.name } else { i.uri });
                let name = name.as_ref().and_then(Value::as_str);
                policy.allows(&spec.granted, method, name)
            })
            .map(|raw| raw.get())
            .collect();
        if kept.len() == items.len() {
            continue;
        }
        let start = offset(text, array.get());
        splice(
            start,
            start + array.get().len(),
            format!("[{}]", kept.join(",")),
        );
    }
    // SEP-2549: a list that depends on the token is private, whatever the origin said,
    // and whether or not this token lost an item (R14).
    if per_token {
        match list.cache_scope {
            Some(scope) if scope.get() == r#""private""# => {}
            Some(scope) => {
                let start = offset(text, scope.get());
                splice(start, start + scope.get().len(), r#""private""#.into());
            }
            None if spec.private => {
                let start = offset(text, result.get()) + 1;
                splice(start, start, r#""cacheScope":"private","#.into());
            }
            None => {}
        }
    }
    if splices.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, with) in splices {
        out.push_str(&text[at..start]);
        out.push_str(&with);
        at = end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    fn code(e: Error) -> i64 {
        match e {
            Error::JsonRpc { code, .. } => code,
            other => panic!("not a JSON-RPC error: {other:?}"),
        }
    }

    #[test]
    fn single_messages_and_batches() {
        let b = inspect(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"name":"not this","deep":[1,{"uri":2}]}}}"#).unwrap();
        assert!(!b.batch);
        let [m] = b.messages.as_slice() else {
            panic!("one message")
        };
        assert_eq!(m.id, Some(Value::from(1)));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(
            m.arguments.map(RawValue::get),
            Some(r#"{"name":"not this","deep":[1,{"uri":2}]}"#)
        );
        assert_eq!(m.version, None);
        let b = inspect(r#" [{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x","name":"ignored"}},
                             {"jsonrpc":"2.0","method":"notifications/initialized"},
                             {"jsonrpc":"2.0","id":7,"result":{}}] "#).unwrap();
        assert!(b.batch);
        assert_eq!(b.messages[0].name.as_deref(), Some("file:///x"));
        assert_eq!(
            b.messages[1].method.as_deref(),
            Some("notifications/initialized")
        );
        assert_eq!(b.messages[2].method, None);
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(code(inspect("").unwrap_err()), PARSE_ERROR);
        assert_eq!(code(inspect("{").unwrap_err()), PARSE_ERROR);
        assert_eq!(code(inspect("{\"id\":1,}").unwrap_err()), PARSE_ERROR);
        assert_eq!(code(inspect("nope").unwrap_err()), PARSE_ERROR);
        assert_eq!(code(inspect("[]").unwrap_err()), INVALID_REQUEST);
        assert_eq!(code(inspect("3").unwrap_err()), INVALID_REQUEST);
        assert_eq!(code(inspect("[1]").unwrap_err()), INVALID_REQUEST);
        assert_eq!(
            code(inspect(r#"{"method":3}"#).unwrap_err()),
            INVALID_REQUEST
        );
        assert_eq!(
            code(inspect(r#"{"method":"tools/call","params":{"name":5}}"#).unwrap_err()),
            INVALID_PARAMS
        );
        assert_eq!(
            code(inspect(r#"{"method":"tools/call","params":["delete_repo"]}"#).unwrap_err()),
            INVALID_REQUEST
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        for body in [
            r#"{"method":"tools/call","params":{"name":"read_x","name":"delete_repo"}}"#,
            r#"{"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
        ] {
            assert_eq!(code(inspect(body).unwrap_err()), INVALID_REQUEST, "{body}");
        }
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(
            decode_header_value("tools/call").as_deref(),
            Some("tools/call")
        );
        let enc = format!("=?base64?{}?=", STANDARD.encode("工具"));
        assert_eq!(decode_header_value(&enc).as_deref(), Some("工具"));
        assert_eq!(
            decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").as_deref(),
            Some("=?base64?literal?=")
        );
        assert_eq!(decode_header_value("=?base64?***?="), None);
        assert_eq!(decode_header_value("=?base64?/w==?="), None); // not UTF-8
        assert_eq!(
            decode_header_value("=?BASE64?eA==?=").as_deref(),
            Some("=?BASE64?eA==?=")
        );
    }

    /// The block the entry builds (`mcpHeaders` in src/crossing.mjs).
    fn block(headers: &[(&str, &str)]) -> String {
        headers.iter().map(|(n, v)| format!("{n}\n{v}\n")).collect()
    }

    fn check(body: &Body<'_>, headers: &[(&str, &str)]) -> Result<bool, Error> {
        check_headers(body, &McpHeaders::new(&block(headers)))
    }

    #[test]
    fn the_header_block_reads_back() {
        let b = block(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-param-region", "us-west1"),
            ("mcp-session-id", "s"),
        ]);
        let h = McpHeaders::new(&b);
        assert_eq!(h.version(), Some("2026-07-28"));
        assert_eq!(h.param("Region"), Some("us-west1"));
        assert_eq!(h.param("regio"), None);
        assert_eq!(h.get("mcp-method"), None);
        assert_eq!(McpHeaders::new("").version(), None);
        assert_eq!(McpHeaders::new("mcp-method").get("mcp-method"), None);
    }

    #[test]
    fn revisions_compare_as_dates() {
        assert!(is_modern("2026-07-28"));
        assert!(is_modern("2027-01-01"));
        assert!(!is_modern("2025-11-25"));
        assert!(!is_modern("2026-07-28 "));
        assert!(!is_modern("draft"));
        assert!(!is_modern("2026/07/28"));
    }

    #[test]
    fn headers_must_describe_the_body_in_every_revision() {
        let call = inspect(r#"{"id":1,"method":"tools/call","params":{"name":"工具"}}"#).unwrap();
        let enc = format!("=?base64?{}?=", STANDARD.encode("工具"));
        assert_eq!(check(&call, &[]).ok(), Some(false));
        assert!(check(&call, &[("mcp-method", "tools/call"), ("mcp-name", &enc)]).is_ok());
        let bad: [&[(&str, &str)]; 6] = [
            &[("mcp-method", "tools/list"), ("mcp-name", &enc)],
            &[("mcp-method", "tools/call"), ("mcp-name", "other")],
            &[("mcp-method", "tools/call")],
            &[("mcp-method", "tools/call"), ("mcp-name", "=?base64?!!?=")],
            &[("mcp-name", "other")],
            // Mcp-Method has no base64 form.
            &[
                ("mcp-method", "=?base64?dG9vbHMvY2FsbA==?="),
                ("mcp-name", &enc),
            ],
        ];
        for h in bad {
            let e = check(&call, h).unwrap_err();
            assert!(
                matches!(&e, Error::JsonRpc { code: HEADER_MISMATCH, id, .. } if id.as_i64() == Some(1)),
                "{h:?}: {e:?}"
            );
        }
        let list = inspect(r#"{"id":1,"method":"tools/list"}"#).unwrap();
        assert!(check(&list, &[("mcp-method", "tools/list")]).is_ok());
        assert_eq!(
            code(check(&list, &[("mcp-method", "tools/list"), ("mcp-name", "x")]).unwrap_err()),
            HEADER_MISMATCH
        );
        let batch = inspect(r#"[{"id":1,"method":"tools/list"}]"#).unwrap();
        let e = check(&batch, &[("mcp-method", "tools/list")]).unwrap_err();
        assert!(matches!(
            e,
            Error::JsonRpc {
                code: HEADER_MISMATCH,
                id: Value::Null,
                ..
            }
        ));
        let answer = inspect(r#"{"id":1,"result":{}}"#).unwrap();
        assert_eq!(
            code(check(&answer, &[("mcp-method", "tools/list")]).unwrap_err()),
            HEADER_MISMATCH
        );
    }

    #[test]
    fn a_2026_request_carries_every_standard_header() {
        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;
        let call =
            format!(r#"{{"id":"c","method":"tools/call","params":{{"name":"echo",{meta}}}}}"#);
        let call = inspect(&call).unwrap();
        let v = ("mcp-protocol-version", "2026-07-28");
        let full = [v, ("mcp-method", "tools/call"), ("mcp-name", "echo")];
        assert_eq!(check(&call, &full).ok(), Some(true));
        // Each one missing, by the header version or by the body's _meta alone.
        for missing in 0..3 {
            let mut h = full.to_vec();
            h.remove(missing);
            let e = check(&call, &h).unwrap_err();
            assert!(
                matches!(&e, Error::JsonRpc { code: HEADER_MISMATCH, id, .. } if id.as_str() == Some("c")),
                "without {:?}: {e:?}",
                full[missing]
            );
        }
        // The header and the _meta version disagree.
        let e = check(
            &call,
            &[("mcp-protocol-version", "2026-08-01"), full[1], full[2]],
        );
        assert_eq!(code(e.unwrap_err()), HEADER_MISMATCH);
        // Without _meta, the header alone makes the request 2026-07-28.
        let bare = inspect(r#"{"id":2,"method":"tools/list"}"#).unwrap();
        assert_eq!(code(check(&bare, &[v]).unwrap_err()), HEADER_MISMATCH);
        assert_eq!(
            check(&bare, &[v, ("mcp-method", "tools/list")]).ok(),
            Some(true)
        );
        // A 2026-07-28 request is one message.
        let batch = inspect(r#"[{"id":2,"method":"tools/list"}]"#).unwrap();
        assert_eq!(
            code(check(&batch, &[v, ("mcp-method", "tools/list")]).unwrap_err()),
            HEADER_MISMATCH
        );
        // Earlier revisions: optional, checked when present; the version must still
        // agree with the body.
        let old = inspect(r#"{"id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#).unwrap();
        assert_eq!(
            check(&old, &[("mcp-protocol-version", "2025-11-25")]).ok(),
            Some(false)
        );
        assert_eq!(check(&old, &[]).ok(), Some(false));
        assert_eq!(
            code(check(&old, &[("mcp-protocol-version", "2025-06-18")]).unwrap_err()),
            HEADER_MISMATCH
        );
        // A non-string _meta version is no version: it disagrees with any header.
        let odd = inspect(r#"{"id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}"#).unwrap();
        assert_eq!(
            code(check(&odd, &[v, ("mcp-method", "tools/list")]).unwrap_err()),
            HEADER_MISMATCH
        );
        // Invalid characters in a plain value are malformed.
        assert_eq!(
            code(
                check(
                    &call,
                    &[v, ("mcp-method", "tools/call"), ("mcp-name", "ech\u{1}o")]
                )
                .unwrap_err()
            ),
            HEADER_MISMATCH
        );
    }

    #[test]
    fn param_headers_match_their_arguments() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        let ok = |h: Option<&str>, value: Option<Value>, required: bool| {
            check_param("Region", h, value.as_ref(), required)
        };
        assert!(ok(Some("us-west1"), Some(v(r#""us-west1""#)), false).is_ok());
        let b64 = format!("=?base64?{}?=", STANDARD.encode(" padded "));
        assert!(ok(Some(&b64), Some(v(r#"" padded ""#)), true).is_ok());
        assert!(ok(Some("42"), Some(v("42")), false).is_ok());
        assert!(ok(Some("42.0"), Some(v("42")), false).is_ok());
        assert!(ok(Some("-7"), Some(v("-7.0")), false).is_ok());
        assert!(ok(Some("true"), Some(v("true")), false).is_ok());
        assert!(ok(None, None, true).is_ok());
        assert!(ok(None, Some(v("null")), true).is_ok());
        assert!(
            ok(None, Some(v(r#""x""#)), false).is_ok(),
            "undeclared: optional"
        );
        let bad = [
            (Some("us-east1"), Some(v(r#""us-west1""#)), false),
            (Some("4.2e1"), Some(v("42")), false),
            (Some("42."), Some(v("42")), false),
            (Some("43"), Some(v("42")), false),
            (Some("True"), Some(v("true")), false),
            (Some("x"), None, false),
            (Some("x"), Some(v("null")), false),
            (None, Some(v(r#""x""#)), true),
            (Some("=?base64?***?="), Some(v(r#""x""#)), false),
            (Some("[1]"), Some(v("[1]")), false),
        ];
        for (h, value, required) in bad {
            assert!(ok(h, value.clone(), required).is_err(), "{h:?} {value:?}");
        }
    }

    fn policy() -> Policy {
        Policy::parse(
            r#"{"methods": {"tools/call": {"scopes": "tools:call", "names": {"delete_*": "repo:admin"}},
                            "resources/read": {"scopes": "res", "names": {"file:///secret/*": "secrets"}},
                            "prompts/get": "prompts"}}"#,
            &[],
        )
        .unwrap()
    }

    fn spec(ids: &[(Value, ListKind)], granted: &[&str]) -> FilterSpec {
        FilterSpec {
            ids: ids.to_vec(),
            others: vec![],
            any: false,
            granted: granted.iter().map(|s| s.to_string()).collect(),
            private: false,
        }
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object","properties":{"z":{},"a":{}}}},{"name":"delete_repo","inputSchema":{}}, {"name":"delete_all"}],"nextCursor":"c2"}}"#;

    #[test]
    fn list_answers_lose_what_the_token_cannot_use() {
        let s = spec(&[(Value::from(3), ListKind::Tools)], &["tools:call"]);
        let out = filter_answer(TOOLS, &s, &policy()).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object","properties":{"z":{},"a":{}}}}],"nextCursor":"c2"}}"#
        );
        // Everything allowed: untouched.
        let all = spec(
            &[(Value::from(3), ListKind::Tools)],
            &["tools:call", "repo:admin"],
        );
        assert_eq!(filter_answer(TOOLS, &all, &policy()), None);
        // An id the exchange never sent: rewritten all the same (it cannot be told
        // apart from a list answer whose id was spelled differently).
        assert!(filter_answer(
            TOOLS,
            &spec(&[(Value::from(4), ListKind::Tools)], &[]),
            &policy()
        )
        .is_some());
        // The answer to another request of the exchange, or a spec for prompts: untouched.
        let mut other = spec(&[(Value::from(4), ListKind::Tools)], &[]);
        other.others = vec![Value::from(3)];
        assert_eq!(filter_answer(TOOLS, &other, &policy()), None);
        assert_eq!(
            filter_answer(
                TOOLS,
                &spec(&[(Value::from(3), ListKind::Prompts)], &[]),
                &policy()
            ),
            None
        );
        // A resumed stream: any list-shaped result.
        let mut any = spec(&[], &["repo:admin"]);
        any.any = true;
        let out = filter_answer(TOOLS, &any, &policy()).unwrap();
        assert!(
            out.contains(
                r#""tools":[{"name":"delete_repo","inputSchema":{}},{"name":"delete_all"}]"#
            ),
            "{out}"
        );
    }

    #[test]
    fn ids_match_as_json_rpc_means_them() {
        let one = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        for (a, b) in [
            ("1", "1.0"),
            ("1", "1e0"),
            ("1", "10E-1"),
            ("0", "-0"),
            ("-0.0", "0"),
            (r#""a""#, r#""a""#),
            ("null", "null"),
        ] {
            assert!(same_id(&one(a), &one(b)), "{a} {b}");
        }
        for (a, b) in [
            ("1", r#""1""#),
            (r#""a""#, r#""A""#),
            ("1", "2"),
            ("1", "null"),
            ("true", "true"),
            ("[1]", "[1]"),
        ] {
            assert!(!same_id(&one(a), &one(b)), "{a} {b}");
        }
        // The origin re-serialises the id: the list is filtered for every spelling,
        // for JSON answers and batches alike.
        for req_id in ["1.0", "1e0", "10E-1", "1"] {
            for answer_id in ["1", "1.0"] {
                let text = format!(r#"{{"jsonrpc":"2.0","id":{req_id},"method":"tools/list"}}"#);
                let body = inspect(&text).unwrap();
                let s = FilterSpec::for_body(&body, &["tools:call".into()]).unwrap();
                let answer = TOOLS.replace(r#""id":3"#, &format!(r#""id":{answer_id}"#));
                let out = filter_answer(&answer, &s, &policy()).expect("filtered");
                assert!(!out.contains("delete_repo"), "{req_id} {answer_id}");
                let batch = format!("[{answer}]");
                assert!(!filter_answer(&batch, &s, &policy())
                    .unwrap()
                    .contains("delete_repo"));
            }
        }
        // Zero written as -0: the same.
        let body = inspect(r#"{"id":-0,"method":"prompts/list"}"#).unwrap();
        let s = FilterSpec::for_body(&body, &[]).unwrap();
        let out = filter_answer(
            r#"{"id":0,"result":{"prompts":[{"name":"p"}]}}"#,
            &s,
            &policy(),
        )
        .unwrap();
        assert_eq!(out, r#"{"id":0,"result":{"prompts":[]}}"#);
        // Several lists in one unattributed result: each is rewritten.
        let mut any = spec(&[], &[]);
        any.any = true;
        let out = filter_answer(
            r#"{"id":5,"result":{"prompts":[{"name":"p"}],"tools":[{"name":"delete_x"}]}}"#,
            &any,
            &policy(),
        )
        .unwrap();
        assert_eq!(out, r#"{"id":5,"result":{"prompts":[],"tools":[]}}"#);
    }

    #[test]
    fn batches_that_cannot_be_attributed_are_refused() {
        for body in [
            r#"[{"id":1,"method":"tools/list"},{"id":1,"method":"tools/call","params":{"name":"x"}}]"#,
            r#"[{"id":1,"method":"tools/list"},{"id":1.0,"method":"prompts/list"}]"#,
            r#"[{"id":"a","method":"tools/list"},{"id":"a","method":"tools/list"}]"#,
            r#"[[{"id":1,"method":"tools/call","params":{"name":"delete_repo"}}]]"#,
            r#"[{"id":1,"method":"tools/list"},[]]"#,
            r#"[1]"#,
            r#"{"id":{"a":1},"method":"tools/list"}"#,
            r#"{"id":[1],"method":"tools/list"}"#,
            r#"{"id":true,"method":"tools/list"}"#,
        ] {
            assert_eq!(code(inspect(body).unwrap_err()), INVALID_REQUEST, "{body}");
        }
        // A client's answer may share an id with one of its requests (they are
        // different id spaces), and notifications carry none.
        assert!(inspect(r#"[{"id":1,"method":"tools/list"},{"id":1,"result":{}},{"method":"notifications/x"},{"method":"notifications/y"}]"#).is_ok());
    }

    #[test]
    fn resources_prompts_and_batches() {
        let res = r#"{"id":"r","result":{"resources":[{"uri":"file:///a","name":"a"},{"uri":"file:///secret/k","name":"k"}]}}"#;
        let out = filter_answer(
            res,
            &spec(&[("r".into(), ListKind::Resources)], &["res"]),
            &policy(),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"id":"r","result":{"resources":[{"uri":"file:///a","name":"a"}]}}"#
        );
        let prompts = r#"{"id":1,"result":{"prompts":[{"name":"p"}]}}"#;
        let out = filter_answer(
            prompts,
            &spec(&[(1.into(), ListKind::Prompts)], &[]),
            &policy(),
        )
        .unwrap();
        assert_eq!(out, r#"{"id":1,"result":{"prompts":[]}}"#);
        let batch = format!("[{prompts}, {{\"id\":9,\"result\":{{}}}}]");
        let out = filter_answer(
            &batch,
            &spec(&[(1.into(), ListKind::Prompts)], &[]),
            &policy(),
        )
        .unwrap();
        assert_eq!(
            out,
            r#"[{"id":1,"result":{"prompts":[]}},{"id":9,"result":{}}]"#
        );
    }

    #[test]
    fn non_answers_pass() {
        let s = spec(&[(1.into(), ListKind::Tools)], &[]);
        for text in [
            "",
            "not json",
            r#"{"id":1,"error":{"code":1}}"#,
            r#"{"id":1,"result":{"tools":"x"}}"#,
            r#"{"method":"notifications/tools/list_changed"}"#,
        ] {
            assert_eq!(filter_answer(text, &s, &policy()), None, "{text}");
        }
    }

    #[test]
    fn specs_come_from_list_requests() {
        let b = inspect(r#"[{"id":1,"method":"tools/list"},{"id":2,"method":"tools/call","params":{"name":"x"}},{"method":"prompts/list"}]"#).unwrap();
        let s = FilterSpec::for_body(&b, &["a".into()]).unwrap();
        assert_eq!(s.ids, vec![(Value::from(1), ListKind::Tools)]);
        let b = inspect(r#"{"id":2,"method":"tools/call","params":{"name":"x"}}"#).unwrap();
        assert_eq!(FilterSpec::for_body(&b, &[]), None);
    }

    #[test]
    fn a_list_the_policy_makes_per_token_is_private() {
        let p = policy();
        let modern = |granted: &[&str]| FilterSpec {
            private: true,
            ..spec(&[(Value::from(3), ListKind::Tools)], granted)
        };
        let public = TOOLS.replace(
            r#""nextCursor":"c2""#,
            r#""nextCursor":"c2","ttlMs":60000,"cacheScope":"public""#,
        );
        // Filtered: private, the rest byte for byte.
        let out = filter_answer(&public, &modern(&["tools:call"]), &p).unwrap();
        assert!(
            out.contains(r#""ttlMs":60000,"cacheScope":"private""#),
            "{out}"
        );
        assert!(!out.contains("delete_repo"));
        // Nothing removed for this token: still private (another token's list differs).
        let all = filter_answer(&public, &modern(&["tools:call", "repo:admin"]), &p).unwrap();
        assert_eq!(
            all,
            public.replace(r#""cacheScope":"public""#, r#""cacheScope":"private""#)
        );
        // Already private and nothing removed: untouched.
        let private = public.replace("public", "private");
        assert_eq!(
            filter_answer(&private, &modern(&["tools:call", "repo:admin"]), &p),
            None
        );
        // No cacheScope from the origin: added for a 2026-07-28 exchange only.
        let out = filter_answer(TOOLS, &modern(&["tools:call", "repo:admin"]), &p).unwrap();
        assert!(
            out.contains(r#""result":{"cacheScope":"private","tools":["#),
            "{out}"
        );
        assert_eq!(
            filter_answer(
                TOOLS,
                &spec(
                    &[(Value::from(3), ListKind::Tools)],
                    &["tools:call", "repo:admin"]
                ),
                &p
            ),
            None
        );
        // A kind no rule can hide keeps the origin's scope.
        let open = Policy::parse(r#"{"methods": {"tools/call": ""}}"#, &[]).unwrap();
        assert_eq!(filter_answer(&public, &modern(&[]), &open), None);
        // In an event stream's batch too.
        let batch = format!("[{public}]");
        assert!(
            filter_answer(&batch, &modern(&["tools:call", "repo:admin"]), &p)
                .unwrap()
                .contains(r#""cacheScope":"private""#)
        );
    }

    #[test]
    fn listen_carries_its_subscriptions_and_params_are_read_once() {
        let b = inspect(r#"{"id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///a","file:///b"]}}}"#).unwrap();
        assert_eq!(b.messages[0].subscriptions, ["file:///a", "file:///b"]);
        let b = inspect(r#"{"id":1,"method":"tools/call","params":{"notifications":{"resourceSubscriptions":["x"]}}}"#).unwrap();
        assert!(b.messages[0].subscriptions.is_empty());
        for body in [
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":{},"arguments":{"x":1}}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a","_meta":{},"_meta":{}}}"#,
        ] {
            assert_eq!(code(inspect(body).unwrap_err()), INVALID_REQUEST, "{body}");
        }
    }
}
