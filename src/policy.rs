//! Per-method and per-name scope policy (`SCOPE_POLICY`), pure.
//!
//! The binding is a JSON object:
//!
//! ```json
//! {
//!   "default": "mcp:tools",
//!   "methods": {
//!     "tools/call": {
//!       "scopes": "tools:call",
//!       "names": { "delete_repo": "repo:admin", "read_*": "tools:read" }
//!     },
//!     "resources/read": "resources:read",
//!     "initialize": ""
//!   }
//! }
//! ```
//!
//! * Scopes are a space-separated string or an array of strings; `""` or `[]` means
//!   "nothing beyond `REQUIRED_SCOPES`".
//! * A message needs the scopes of the first of these that applies:
//!   1. the most specific `names` rule of its method that matches its name (the
//!      tool or prompt `name`, or the resource `uri`): an exact name beats any
//!      pattern; among patterns the one with more literal characters wins, then the
//!      lexically smaller pattern;
//!   2. its method's `scopes` (a method given as a plain string or array is this);
//!   3. `default`.
//!
//!   `REQUIRED_SCOPES` are needed on top, by every request.
//! * Patterns: `*` matches any run of characters (also none); every other character
//!   matches itself. `names` is accepted only for methods that carry a name:
//!   [`NAMED_METHODS`].
//! * `server/discover` (MCP 2026-07-28) needs only `REQUIRED_SCOPES` unless the
//!   policy names it: a client must be able to learn what the server offers.
//! * `subscriptions/listen` (2026-07-28) needs, on top of its own rule, what reading
//!   each URI of its `resourceSubscriptions` needs (the `resources/read` rule).
//!
//! A name rule may also look at the arguments of a `tools/call` or `prompts/get`
//! (beyond every scope-only gateway):
//!
//! ```json
//! "tools/call": {"names": {"deploy": {
//!   "scopes": "deploy:run",
//!   "arguments": {"region": {"match": {"prod-*": "deploy:prod"}, "header": "Region"}}
//! }}}
//! ```
//!
//! * Each listed argument (a top-level member of `params.arguments`) adds the scopes
//!   of its most specific matching pattern, as names do. Strings match as they are,
//!   integers as their decimal form (`5.0` is `5`), booleans as `true` / `false`.
//! * An absent or `null` argument adds nothing. A value a pattern cannot read (an
//!   object, an array, a fraction) adds every scope the argument's patterns name:
//!   a rule is never skipped because a value came in another type.
//! * `header` names the argument's `Mcp-Param-{header}` (its `x-mcp-header`, MCP
//!   2026-07-28); it defaults to the argument's own name. The worker interprets that
//!   header, so it checks it against the body (400, JSON-RPC -32020, on a mismatch);
//!   when `header` is written out, a 2026-07-28 request must also send it whenever
//!   the argument has a value.
//! * Not expressible, by design: nested or array members, conditions joining two
//!   arguments, negation, numeric ranges, and a rule on an argument's absence (put
//!   what the tool's default needs on the name's own `scopes`).
//!
//! `SCOPE_HIERARCHY` ([`Hierarchy`]) declares which broader scopes imply narrower
//! ones (R15); it applies to `REQUIRED_SCOPES`, the policy and list filtering alike.
//!
//! Validation happens once, at load: unknown keys, wrong types, empty patterns,
//! `offline_access`, quotes in scopes and (when `SCOPES_SUPPORTED` is set) scopes it
//! does not list are refused with a message naming the JSON path.

use serde_json::Value;
use std::borrow::Cow;

/// Methods whose messages carry a name, and the `params` member holding it.
pub const NAMED_METHODS: &[(&str, &str)] = &[
    ("tools/call", "name"),
    ("prompts/get", "name"),
    ("resources/read", "uri"),
    ("resources/subscribe", "uri"),
    ("resources/unsubscribe", "uri"),
];

/// The `params` member that names the target of `method`, if it has one.
pub fn name_field(method: &str) -> Option<&'static str> {
    NAMED_METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, f)| *f)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NameRule {
    pattern: String,
    exact: bool,
    scopes: Vec<String>,
    arguments: Vec<ArgumentRule>,
}

impl NameRule {
    fn matches(&self, name: &str) -> bool {
        if self.exact {
            self.pattern == name
        } else {
            glob_matches(&self.pattern, name)
        }
    }
}

/// Most specific first: exact names, then patterns by literal length, then lexically.
fn most_specific_first(rules: &mut [NameRule]) {
    rules.sort_by(|a, b| {
        let literal = |r: &NameRule| r.pattern.chars().filter(|c| *c != '*').count();
        b.exact
            .cmp(&a.exact)
            .then(literal(b).cmp(&literal(a)))
            .then(a.pattern.cmp(&b.pattern))
    });
}

/// What one argument of a named call adds to the scopes it needs (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentRule {
    property: String,
    header: String,
    /// `header` was written out: a 2026-07-28 client must send it.
    declared: bool,
    /// Value patterns, most specific first (their `arguments` are empty).
    values: Vec<NameRule>,
}

impl ArgumentRule {
    /// The member of `params.arguments` the rule reads.
    pub fn property(&self) -> &str {
        &self.property
    }

    /// The `{Name}` of the `Mcp-Param-{Name}` header mirroring the argument.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Must a 2026-07-28 request carry the header whenever the argument has a value?
    pub fn header_required(&self) -> bool {
        self.declared
    }

    /// The scopes the argument's value adds: those of the most specific matching
    /// pattern; none for an absent or null value; all of them for a value no pattern
    /// can read.
    pub fn needs<'p>(&'p self, value: Option<&Value>) -> Vec<&'p String> {
        match value.map(scalar) {
            None | Some(Scalar::Null) => Vec::new(),
            Some(Scalar::Text(text)) => self
                .values
                .iter()
                .find(|r| r.matches(&text))
                .map(|r| r.scopes.iter().collect())
                .unwrap_or_default(),
            Some(Scalar::Unreadable) => self.values.iter().flat_map(|r| &r.scopes).collect(),
        }
    }
}

/// An argument's value as a pattern reads it.
#[derive(Debug, PartialEq)]
pub enum Scalar<'v> {
    Null,
    Text(Cow<'v, str>),
    /// An object, an array, a fraction: no pattern reads it.
    Unreadable,
}

/// Strings as they are, integers (also `5.0`, `5e0`) in decimal, booleans as
/// `true` / `false`. The same rendering an `Mcp-Param-*` header carries.
pub fn scalar(v: &Value) -> Scalar<'_> {
    match v {
        Value::Null => Scalar::Null,
        Value::String(s) => Scalar::Text(Cow::Borrowed(s)),
        Value::Bool(b) => Scalar::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Scalar::Text(Cow::Owned(i.to_string()))
            } else if let Some(u) = n.as_u64() {
                Scalar::Text(Cow::Owned(u.to_string()))
            } else {
                match n.as_f64() {
                    // Integral and exact (within 2^53): the integer it is.
                    Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                        Scalar::Text(Cow::Owned((f as i64).to_string()))
                    }
                    _ => Scalar::Unreadable,
                }
            }
        }
        Value::Array(_) | Value::Object(_) => Scalar::Unreadable,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MethodRule {
    method: String,
    scopes: Option<Vec<String>>,
    /// Most specific first.
    names: Vec<NameRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    default: Vec<String>,
    methods: Vec<MethodRule>,
}

/// The rule a message falls under: the scopes it needs, and the argument rules that
/// may add to them.
#[derive(Debug, Clone, Copy)]
pub struct Rule<'p> {
    pub scopes: &'p [String],
    pub arguments: &'p [ArgumentRule],
}

/// Does `name` match the glob `pattern` (`*` only)?
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: an exact comparison.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn scopes_at(path: &str, v: &Value) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                        out.push(s.to_string())
                    }
                    _ => {
                        return Err(format!(
                            "{path}[{i}] must be a scope (a non-empty string without spaces)"
                        ))
                    }
                }
            }
            out
        }
        _ => {
            return Err(format!(
                "{path} must be scopes: a space-separated string or an array of strings"
            ))
        }
    };
    for s in &list {
        if s == "offline_access" {
            return Err(format!(
                "{path} names offline_access, which is never a resource scope (MCP 2026-07-28)"
            ));
        }
        if s.contains(['"', '\\']) || s.chars().any(|c| c.is_control() || !c.is_ascii()) {
            return Err(format!(
                "{path}: scope {s:?} has a character a challenge cannot carry"
            ));
        }
    }
    Ok(list)
}

fn object<'a>(
    path: &str,
    v: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let map = v
        .as_object()
        .ok_or_else(|| format!("{path} must be a JSON object"))?;
    if !allowed.is_empty() {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!(
                "{path} has an unknown key {k:?} (expected one of: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(map)
}

impl Policy {
    /// Parse and validate the binding's JSON. `supported` is `SCOPES_SUPPORTED`
    /// (empty: not checked). Errors are messages naming the JSON path.
    pub fn parse(json: &str, supported: &[String]) -> Result<Policy, String> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| format!("is not valid JSON: {e}"))?;
        let top = object("the policy", &root, &["default", "methods"])?;
        let default = match top.get("default") {
            Some(v) => scopes_at("default", v)?,
            None => Vec::new(),
        };
        let mut methods = Vec::new();
        if let Some(m) = top.get("methods") {
            for (method, rule) in object("methods", m, &[])? {
                let path = format!("methods[{method:?}]");
                if method.is_empty() || method.contains(char::is_whitespace) {
                    return Err(format!(
                        "{path}: a method name must be non-empty, without spaces"
                    ));
                }
                methods.push(Self::method_rule(&path, method, rule)?);
            }
        }
        let policy = Policy { default, methods };
        if !supported.is_empty() {
            if let Some(s) = policy.scopes().find(|s| !supported.contains(s)) {
                return Err(format!(
                    "scope {s:?} is not in SCOPES_SUPPORTED; every scope the policy names must be advertised"
                ));
            }
        }
        Ok(policy)
    }

    fn method_rule(path: &str, method: &str, rule: &Value) -> Result<MethodRule, String> {
        if !rule.is_object() {
            return Ok(MethodRule {
                method: method.to_string(),
                scopes: Some(scopes_at(path, rule)?),
                names: Vec::new(),
            });
        }
        let map = object(path, rule, &["scopes", "names"])?;
        let scopes = map
            .get("scopes")
            .map(|v| scopes_at(&format!("{path}.scopes"), v))
            .transpose()?;
        let mut names = Vec::new();
        if let Some(n) = map.get("names") {
            if name_field(method).is_none() {
                let named: Vec<&str> = NAMED_METHODS.iter().map(|(m, _)| *m).collect();
                return Err(format!(
                    "{path}.names: {method} carries no name; names apply to {}",
                    named.join(", ")
                ));
            }
            for (pattern, rule) in object(&format!("{path}.names"), n, &[])? {
                let p = format!("{path}.names[{pattern:?}]");
                if pattern.is_empty() {
                    return Err(format!("{p}: a name pattern must not be empty"));
                }
                names.push(Self::name_rule(&p, method, pattern, rule)?);
            }
        }
        most_specific_first(&mut names);
        Ok(MethodRule {
            method: method.to_string(),
            scopes,
            names,
        })
    }

    /// A name rule: scopes, or `{"scopes": …, "arguments": {…}}`.
    fn name_rule(
        path: &str,
        method: &str,
        pattern: &str,
        rule: &Value,
    ) -> Result<NameRule, String> {
        let mut out = NameRule {
            pattern: pattern.to_string(),
            exact: !pattern.contains('*'),
            scopes: Vec::new(),
            arguments: Vec::new(),
        };
        if !rule.is_object() {
            out.scopes = scopes_at(path, rule)?;
            return Ok(out);
        }
        let map = object(path, rule, &["scopes", "arguments"])?;
        if let Some(v) = map.get("scopes") {
            out.scopes = scopes_at(&format!("{path}.scopes"), v)?;
        }
        let Some(arguments) = map.get("arguments") else {
            return Ok(out);
        };
        if !ARGUMENT_METHODS.contains(&method) {
            return Err(format!(
                "{path}.arguments: {method} carries no arguments; arguments apply to {}",
                ARGUMENT_METHODS.join(", ")
            ));
        }
        for (property, rule) in object(&format!("{path}.arguments"), arguments, &[])? {
            let p = format!("{path}.arguments[{property:?}]");
            if property.is_empty() {
                return Err(format!("{p}: an argument name must not be empty"));
            }
            let map = object(&p, rule, &["match", "header"])?;
            let header = match map.get("header") {
                None => None,
                Some(Value::String(h)) if is_token(h) => Some(h.clone()),
                Some(_) => {
                    return Err(format!(
                        "{p}.header must be an HTTP field-name token (the tool's x-mcp-header)"
                    ))
                }
            };
            if header.is_none() && !is_token(property) {
                return Err(format!(
                    "{p}: the argument's name is not an HTTP token, so name its Mcp-Param header in \"header\""
                ));
            }
            let Some(patterns) = map.get("match") else {
                return Err(format!(
                    "{p} needs \"match\": value patterns and their scopes"
                ));
            };
            let mut values = Vec::new();
            for (value, scopes) in object(&format!("{p}.match"), patterns, &[])? {
                let vp = format!("{p}.match[{value:?}]");
                if value.is_empty() {
                    return Err(format!("{vp}: a value pattern must not be empty"));
                }
                values.push(NameRule {
                    pattern: value.clone(),
                    exact: !value.contains('*'),
                    scopes: scopes_at(&vp, scopes)?,
                    arguments: Vec::new(),
                });
            }
            if values.is_empty() {
                return Err(format!("{p}.match names no value pattern"));
            }
            most_specific_first(&mut values);
            if out.arguments.iter().any(|a: &ArgumentRule| {
                a.header
                    .eq_ignore_ascii_case(header.as_deref().unwrap_or(property))
            }) {
                return Err(format!("{p}: two arguments share one Mcp-Param header"));
            }
            out.arguments.push(ArgumentRule {
                property: property.clone(),
                declared: header.is_some(),
                header: header.unwrap_or_else(|| property.clone()),
                values,
            });
        }
        Ok(out)
    }

    /// Every scope the policy names (with repeats).
    pub fn scopes(&self) -> impl Iterator<Item = &String> {
        fn of_name(n: &NameRule) -> impl Iterator<Item = &String> {
            n.scopes.iter().chain(
                n.arguments
                    .iter()
                    .flat_map(|a| a.values.iter().flat_map(|v| v.scopes.iter())),
            )
        }
        self.default.iter().chain(self.methods.iter().flat_map(|m| {
            m.scopes
                .iter()
                .flatten()
                .chain(m.names.iter().flat_map(of_name))
        }))
    }

    /// The rule a message with `method` (and, for [`NAMED_METHODS`], `name`) falls
    /// under.
    pub fn rule(&self, method: &str, name: Option<&str>) -> Rule<'_> {
        let Some(rule) = self.methods.iter().find(|m| m.method == method) else {
            let scopes: &[String] = if method == "server/discover" {
                &[]
            } else {
                &self.default
            };
            return Rule {
                scopes,
                arguments: &[],
            };
        };
        if let Some(n) = name.and_then(|name| rule.names.iter().find(|n| n.matches(name))) {
            return Rule {
                scopes: &n.scopes,
                arguments: &n.arguments,
            };
        }
        Rule {
            scopes: rule.scopes.as_deref().unwrap_or(&self.default),
            arguments: &[],
        }
    }

    /// The scopes a message with `method` (and, for [`NAMED_METHODS`], `name`) needs,
    /// beyond `REQUIRED_SCOPES`, before its arguments are looked at.
    pub fn needs(&self, method: &str, name: Option<&str>) -> &[String] {
        self.rule(method, name).scopes
    }

    /// May a token holding `granted` (its scopes and every scope they imply) send this
    /// message, arguments aside? What list filtering asks of each item.
    pub fn allows(&self, granted: &[String], method: &str, name: Option<&str>) -> bool {
        self.needs(method, name).iter().all(|s| granted.contains(s))
    }

    /// Could two tokens see different items of a list whose items are used with
    /// `method`? Only if some message of that method needs a scope. Such a list is
    /// answered `"cacheScope": "private"` whether or not anything was removed, so a
    /// shared cache never hands one token's list to another.
    pub fn can_hide(&self, method: &str) -> bool {
        match self.methods.iter().find(|m| m.method == method) {
            None => !self.default.is_empty(),
            Some(m) => {
                !m.scopes.as_deref().unwrap_or(&self.default).is_empty()
                    || m.names.iter().any(|n| !n.scopes.is_empty())
            }
        }
    }
}

/// Methods whose `params.arguments` argument rules read.
pub const ARGUMENT_METHODS: &[&str] = &["tools/call", "prompts/get"];

/// RFC 9110 `token` (`1*tchar`): what an HTTP field name, so an `x-mcp-header`, is.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(crate::token::is_tchar)
}

/// `SCOPE_HIERARCHY`: broader scopes and the narrower ones they imply (R15), as a
/// JSON object from a scope to scopes (a space-separated string or an array):
///
/// ```json
/// {"mcp:admin": "mcp:tools mcp:resources", "mcp:tools": "tools:read"}
/// ```
///
/// Implication is transitive (`mcp:admin` above implies `tools:read`). Validated at
/// load: no cycles, no scope implying itself, and (with `SCOPES_SUPPORTED`) only
/// advertised scopes. A token holding a broader scope satisfies every requirement
/// for a narrower one; challenges still name the scopes an operation needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchy {
    /// Each broader scope with every scope it implies, transitively.
    implies: Vec<(String, Vec<String>)>,
}

impl Hierarchy {
    pub fn parse(json: &str, supported: &[String]) -> Result<Hierarchy, String> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| format!("is not valid JSON: {e}"))?;
        let mut direct: Vec<(String, Vec<String>)> = Vec::new();
        for (broad, narrow) in object("the hierarchy", &root, &[])? {
            let path = format!("[{broad:?}]");
            let key = scopes_at(&path, &Value::String(broad.clone()))?;
            let [broad] = key.as_slice() else {
                return Err(format!("{path}: a key must be one scope"));
            };
            let narrow = scopes_at(&path, narrow)?;
            if narrow.contains(broad) {
                return Err(format!("{path}: a scope cannot imply itself"));
            }
            direct.push((broad.clone(), narrow));
        }
        let mut implies = Vec::new();
        for (broad, _) in &direct {
            // Depth-first from `broad`; meeting `broad` again is a cycle.
            let mut closure: Vec<String> = Vec::new();
            let mut stack = vec![broad.as_str()];
            while let Some(s) = stack.pop() {
                for n in direct.iter().filter(|(b, _)| b == s).flat_map(|(_, n)| n) {
                    if n == broad {
                        return Err(format!(
                            "{broad:?} implies itself through {s:?}: the hierarchy must have no cycles"
                        ));
                    }
                    if !closure.contains(n) {
                        closure.push(n.clone());
                        stack.push(n);
                    }
                }
            }
            implies.push((broad.clone(), closure));
        }
        let h = Hierarchy { implies };
        if !supported.is_empty() {
            if let Some(s) = h.scopes().find(|s| !supported.contains(s)) {
                return Err(format!(
                    "scope {s:?} is not in SCOPES_SUPPORTED; every scope the hierarchy names must be advertised"
                ));
            }
        }
        Ok(h)
    }

    pub fn is_empty(&self) -> bool {
        self.implies.is_empty()
    }

    /// Every scope the hierarchy names (with repeats).
    pub fn scopes(&self) -> impl Iterator<Item = &String> {
        self.implies
            .iter()
            .flat_map(|(b, n)| std::iter::once(b).chain(n.iter()))
    }

    /// The granted scope that satisfies `needed`: `needed` itself, else the first
    /// granted scope implying it.
    pub fn grantor<'g>(&self, granted: &'g [String], needed: &str) -> Option<&'g String> {
        granted.iter().find(|g| *g == needed).or_else(|| {
            granted.iter().find(|g| {
                self.implies
                    .iter()
                    .any(|(b, n)| b == *g && n.iter().any(|s| s == needed))
            })
        })
    }

    /// `granted` with every scope it implies (what list filtering compares with).
    pub fn expand(&self, granted: &[String]) -> Vec<String> {
        let mut out = granted.to_vec();
        for (_, n) in self.implies.iter().filter(|(b, _)| granted.contains(b)) {
            for s in n {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(
            r#"{
              "default": "mcp:tools",
              "methods": {
                "tools/call": {
                  "scopes": ["tools:call"],
                  "names": {"delete_repo": "repo:admin", "read_*": "tools:read", "read_secret*": "repo:admin secrets"}
                },
                "resources/read": "resources:read",
                "initialize": ""
              }
            }"#,
            &[],
        )
        .unwrap()
    }

    fn s(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let p = policy();
        assert_eq!(
            s(p.needs("tools/call", Some("delete_repo"))),
            ["repo:admin"]
        );
        assert_eq!(s(p.needs("tools/call", Some("read_file"))), ["tools:read"]);
        assert_eq!(
            s(p.needs("tools/call", Some("read_secrets"))),
            ["repo:admin", "secrets"]
        );
        assert_eq!(s(p.needs("tools/call", Some("echo"))), ["tools:call"]);
        assert_eq!(s(p.needs("tools/call", None)), ["tools:call"]);
        assert_eq!(
            s(p.needs("resources/read", Some("file:///x"))),
            ["resources:read"]
        );
        assert!(p.needs("initialize", None).is_empty());
        assert_eq!(s(p.needs("tools/list", None)), ["mcp:tools"]);
        assert_eq!(s(p.needs("no/such/method", None)), ["mcp:tools"]);
    }

    #[test]
    fn allows_checks_every_needed_scope() {
        let p = policy();
        let granted = vec!["repo:admin".to_string()];
        assert!(p.allows(&granted, "tools/call", Some("delete_repo")));
        assert!(!p.allows(&granted, "tools/call", Some("read_secret_x")));
        assert!(!p.allows(&granted, "tools/call", Some("echo")));
    }

    #[test]
    fn a_method_without_scopes_falls_back_to_the_default() {
        let p = Policy::parse(
            r#"{"default": ["d"], "methods": {"prompts/get": {"names": {"x": "px"}}}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(s(p.needs("prompts/get", Some("x"))), ["px"]);
        assert_eq!(s(p.needs("prompts/get", Some("y"))), ["d"]);
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("read_*", "read_"));
        assert!(glob_matches("read_*", "read_file"));
        assert!(!glob_matches("read_*", "xread_file"));
        assert!(glob_matches("*_repo", "delete_repo"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(glob_matches("a*b*c", "abc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(!glob_matches("ab*ba", "aba"));
        assert!(glob_matches("file:///docs/*", "file:///docs/a/b.md"));
        assert!(glob_matches("工具*", "工具一"));
        assert!(!glob_matches("exact", "exactly"));
    }

    #[test]
    fn bad_policies_are_named() {
        let cases = [
            ("[]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"defaults": "x"}"#, "unknown key \"defaults\""),
            (r#"{"default": 3}"#, "default must be scopes"),
            (r#"{"default": ["a b"]}"#, "default[0]"),
            (r#"{"default": "offline_access"}"#, "offline_access"),
            (r#"{"default": "a\"b"}"#, "cannot carry"),
            (
                r#"{"methods": {"tools/call": {"scope": "x"}}}"#,
                "unknown key \"scope\"",
            ),
            (
                r#"{"methods": {"tools/list": {"names": {"a": "x"}}}}"#,
                "carries no name",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"": "x"}}}}"#,
                "must not be empty",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"a": 1}}}}"#,
                "methods[\"tools/call\"].names[\"a\"]",
            ),
            (r#"{"methods": {"": "x"}}"#, "method name"),
        ];
        for (json, needle) in cases {
            let e = Policy::parse(json, &[]).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn every_scope_must_be_advertised() {
        let supported: Vec<String> = [
            "mcp:tools",
            "tools:call",
            "tools:read",
            "repo:admin",
            "secrets",
        ]
        .map(String::from)
        .to_vec();
        let e = Policy::parse(
            r#"{"default": "mcp:tools", "methods": {"resources/read": "resources:read"}}"#,
            &supported,
        )
        .unwrap_err();
        assert!(
            e.contains("\"resources:read\" is not in SCOPES_SUPPORTED"),
            "{e}"
        );
        assert!(Policy::parse(
            r#"{"methods": {"tools/call": {"names": {"x": "secrets"}}}}"#,
            &supported
        )
        .is_ok());
    }

    fn deploy() -> Policy {
        Policy::parse(
            r#"{"default": "mcp:tools", "methods": {"tools/call": {"names": {
                 "deploy": {"scopes": "deploy:run", "arguments": {
                   "region": {"match": {"prod-*": "deploy:prod", "prod-eu-*": "deploy:prod deploy:eu", "*": []}, "header": "Region"},
                   "force": {"match": {"true": "deploy:force"}},
                   "replicas": {"match": {"1*": "big"}}
                 }}}}}}"#,
            &[],
        )
        .unwrap()
    }

    fn needs_with(p: &Policy, args: &str) -> Vec<String> {
        let args: serde_json::Map<String, Value> = serde_json::from_str(args).unwrap();
        let rule = p.rule("tools/call", Some("deploy"));
        let mut out: Vec<String> = rule.scopes.to_vec();
        for a in rule.arguments {
            for s in a.needs(args.get(a.property())) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    #[test]
    fn argument_rules_add_the_scopes_of_their_most_specific_pattern() {
        let p = deploy();
        assert_eq!(needs_with(&p, r#"{"region": "us-west1"}"#), ["deploy:run"]);
        assert_eq!(
            needs_with(&p, r#"{"region": "prod-us"}"#),
            ["deploy:run", "deploy:prod"]
        );
        assert_eq!(
            needs_with(&p, r#"{"region": "prod-eu-1"}"#),
            ["deploy:run", "deploy:prod", "deploy:eu"]
        );
        assert_eq!(
            needs_with(&p, r#"{"force": true, "replicas": 12.0}"#),
            ["deploy:run", "deploy:force", "big"]
        );
        assert_eq!(
            needs_with(&p, r#"{"force": false, "replicas": 2}"#),
            ["deploy:run"]
        );
        assert_eq!(needs_with(&p, r#"{"region": null}"#), ["deploy:run"]);
        // A value no pattern reads needs everything its argument's patterns name.
        for odd in [r#"["prod-us"]"#, r#"{"r": "prod-us"}"#, "1.5"] {
            let args = format!(r#"{{"region": {odd}}}"#);
            assert_eq!(
                needs_with(&p, &args),
                ["deploy:run", "deploy:prod", "deploy:eu"],
                "{odd}"
            );
        }
        // Another tool, or list filtering, sees only the name's scopes.
        assert_eq!(s(p.needs("tools/call", Some("deploy"))), ["deploy:run"]);
        assert!(p.rule("tools/call", Some("echo")).arguments.is_empty());
        let rule = p.rule("tools/call", Some("deploy"));
        let region = rule
            .arguments
            .iter()
            .find(|a| a.property() == "region")
            .unwrap();
        assert_eq!(
            (region.header(), region.header_required()),
            ("Region", true)
        );
        let force = rule
            .arguments
            .iter()
            .find(|a| a.property() == "force")
            .unwrap();
        assert_eq!((force.header(), force.header_required()), ("force", false));
        assert!(p.scopes().any(|s| s == "deploy:force"));
    }

    #[test]
    fn scalars_render_as_headers_do() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        let text = |j: &str| match scalar(&v(j)) {
            Scalar::Text(t) => Some(t.into_owned()),
            _ => None,
        };
        assert_eq!(text(r#""a""#).as_deref(), Some("a"));
        assert_eq!(text("42").as_deref(), Some("42"));
        assert_eq!(text("42.0").as_deref(), Some("42"));
        assert_eq!(text("-7e0").as_deref(), Some("-7"));
        assert_eq!(
            text("18446744073709551615").as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(text("false").as_deref(), Some("false"));
        assert_eq!(text("0.5"), None);
        assert_eq!(text("1e300"), None);
        assert_eq!(scalar(&v("null")), Scalar::Null);
    }

    #[test]
    fn bad_argument_rules_are_named() {
        let cases = [
            (
                r#"{"methods": {"tools/list": {"names": {}}}}"#,
                "carries no name",
            ),
            (
                r#"{"methods": {"resources/read": {"names": {"x": {"arguments": {"a": {"match": {"1": "s"}}}}}}}}"#,
                "carries no arguments",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"1": "s"}}}}}}}"#,
                "unknown key \"1\"",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {}}}}}}}"#,
                "needs \"match\"",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {}}}}}}}}"#,
                "names no value pattern",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {"": "s"}}}}}}}}"#,
                "must not be empty",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a b": {"match": {"1": "s"}}}}}}}}"#,
                "not an HTTP token",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {"1": "s"}, "header": "A B"}}}}}}}"#,
                "field-name token",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {"1": "s"}}, "b": {"match": {"1": "s"}, "header": "A"}}}}}}}"#,
                "share one Mcp-Param header",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"scope": "s"}}}}}"#,
                "unknown key \"scope\"",
            ),
            (
                r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {"1": "offline_access"}}}}}}}}"#,
                "offline_access",
            ),
        ];
        for (json, needle) in cases {
            let e = Policy::parse(json, &[]).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
        let e = Policy::parse(
            r#"{"methods": {"tools/call": {"names": {"x": {"arguments": {"a": {"match": {"1": "elsewhere"}}}}}}}}"#,
            &["mcp:tools".to_string()],
        )
        .unwrap_err();
        assert!(
            e.contains("\"elsewhere\" is not in SCOPES_SUPPORTED"),
            "{e}"
        );
    }

    #[test]
    fn discover_needs_nothing_unless_named_and_lists_may_be_per_token() {
        let p = policy();
        assert!(p.needs("server/discover", None).is_empty());
        assert_eq!(s(p.needs("subscriptions/listen", None)), ["mcp:tools"]);
        let named = Policy::parse(r#"{"methods": {"server/discover": "mcp:tools"}}"#, &[]).unwrap();
        assert_eq!(s(named.needs("server/discover", None)), ["mcp:tools"]);
        assert!(p.can_hide("tools/call"));
        assert!(p.can_hide("prompts/get"), "the default applies");
        let open = Policy::parse(
            r#"{"methods": {"tools/call": {"scopes": "", "names": {"x": ""}}, "resources/read": {"names": {"secret*": "s"}}}}"#,
            &[],
        )
        .unwrap();
        assert!(!open.can_hide("tools/call"));
        assert!(!open.can_hide("prompts/get"));
        assert!(open.can_hide("resources/read"));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hierarchies_close_over_implication() {
        let h = Hierarchy::parse(
            r#"{"mcp:admin": "mcp:tools mcp:resources", "mcp:tools": ["tools:read"], "other": "x"}"#,
            &[],
        )
        .unwrap();
        let granted = strings(&["mcp:admin"]);
        assert_eq!(
            h.grantor(&granted, "mcp:admin").map(String::as_str),
            Some("mcp:admin")
        );
        assert_eq!(
            h.grantor(&granted, "tools:read").map(String::as_str),
            Some("mcp:admin")
        );
        assert_eq!(h.grantor(&granted, "x"), None);
        assert_eq!(h.grantor(&strings(&["mcp:tools"]), "mcp:resources"), None);
        assert_eq!(
            h.expand(&granted),
            ["mcp:admin", "mcp:tools", "mcp:resources", "tools:read"]
        );
        assert_eq!(h.expand(&strings(&["y"])), ["y"]);
        assert!(Hierarchy::default()
            .grantor(&granted, "mcp:tools")
            .is_none());
        assert!(!h.is_empty() && Hierarchy::default().is_empty());
    }

    #[test]
    fn bad_hierarchies_are_named() {
        let cases = [
            ("[]", "must be a JSON object"),
            (r#"{"a": "a"}"#, "cannot imply itself"),
            (r#"{"a": "b", "b": "c", "c": "a"}"#, "no cycles"),
            (r#"{"a b": "c"}"#, "one scope"),
            (r#"{"a": "offline_access"}"#, "offline_access"),
            (r#"{"a": 1}"#, "must be scopes"),
        ];
        for (json, needle) in cases {
            let e = Hierarchy::parse(json, &[]).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
        let e = Hierarchy::parse(r#"{"mcp:admin": "mcp:tools"}"#, &strings(&["mcp:tools"]))
            .unwrap_err();
        assert!(
            e.contains("\"mcp:admin\" is not in SCOPES_SUPPORTED"),
            "{e}"
        );
    }
}
