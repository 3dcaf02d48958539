//! One structured JSON line per request: route, decision, status, subject, client and
//! reason. Built from [`crate::error::Error`] reasons and claims, never from a token.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LogLine {
    pub route: &'static str,
    pub method: String,
    pub path: String,
    /// `allow`, `deny`, `serve`, `proxy` or `error`.
    pub decision: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LogLine {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether this line is a refusal or failure (logged at `warn`).
    pub fn is_warning(&self) -> bool {
        self.status >= 400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_without_empty_members() {
        let l = LogLine {
            route: "mcp",
            method: "POST".into(),
            path: "/mcp".into(),
            decision: "deny",
            status: 401,
            reason: Some("no bearer token".into()),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(v["route"], "mcp");
        assert_eq!(v["status"], 401);
        assert!(v.get("subject").is_none());
        assert!(l.is_warning());
    }
}
