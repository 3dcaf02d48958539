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
//!
//! Validation happens once, at load: unknown keys, wrong types, empty patterns,
//! `offline_access`, quotes in scopes and (when `SCOPES_SUPPORTED` is set) scopes it
//! does not list are refused with a message naming the JSON path.

use serde_json::Value;

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
            for (pattern, scopes) in object(&format!("{path}.names"), n, &[])? {
                let p = format!("{path}.names[{pattern:?}]");
                if pattern.is_empty() {
                    return Err(format!("{p}: a name pattern must not be empty"));
                }
                names.push(NameRule {
                    pattern: pattern.clone(),
                    exact: !pattern.contains('*'),
                    scopes: scopes_at(&p, scopes)?,
                });
            }
        }
        // Most specific first: exact names, then patterns by literal length, then lexically.
        names.sort_by(|a, b| {
            let literal = |r: &NameRule| r.pattern.chars().filter(|c| *c != '*').count();
            b.exact
                .cmp(&a.exact)
                .then(literal(b).cmp(&literal(a)))
                .then(a.pattern.cmp(&b.pattern))
        });
        Ok(MethodRule {
            method: method.to_string(),
            scopes,
            names,
        })
    }

    /// Every scope the policy names (with repeats).
    pub fn scopes(&self) -> impl Iterator<Item = &String> {
        self.default.iter().chain(self.methods.iter().flat_map(|m| {
            m.scopes
                .iter()
                .flatten()
                .chain(m.names.iter().flat_map(|n| n.scopes.iter()))
        }))
    }

    /// The scopes a message with `method` (and, for [`NAMED_METHODS`], `name`) needs,
    /// beyond `REQUIRED_SCOPES`.
    pub fn needs(&self, method: &str, name: Option<&str>) -> &[String] {
        let Some(rule) = self.methods.iter().find(|m| m.method == method) else {
            return &self.default;
        };
        if let Some(name) = name {
            if let Some(n) = rule.names.iter().find(|n| {
                if n.exact {
                    n.pattern == name
                } else {
                    glob_matches(&n.pattern, name)
                }
            }) {
                return &n.scopes;
            }
        }
        rule.scopes.as_deref().unwrap_or(&self.default)
    }

    /// May a token holding `granted` send this message?
    pub fn allows(&self, granted: &[String], method: &str, name: Option<&str>) -> bool {
        self.needs(method, name).iter().all(|s| granted.contains(s))
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
}
