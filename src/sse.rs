//! `text/event-stream` answers filtered event by event, pure.
//!
//! [`SseFilter::push`] takes the stream's text as it arrives and returns what may be
//! sent on at once: every complete event, either byte for byte or, when its data is a
//! list answer [`jsonrpc::filter_answer`] rewrites, with the data replaced and its
//! `id:`, `event:` and `retry:` lines kept (so `Last-Event-ID` resumption works).
//! At most one event is held back, never the stream; an event larger than
//! [`MAX_EVENT`] cannot be inspected and is dropped (a comment line, [`DROPPED`],
//! says so in its place): a list answer must never pass unfiltered. Lines may end in
//! CRLF, LF or CR (WHATWG HTML §9.2.6), also split across chunks.

use crate::jsonrpc::{self, FilterSpec};
use crate::policy::Policy;

/// The largest event held back for inspection (bytes).
pub const MAX_EVENT: usize = 8 << 20;

/// Sent in place of an event larger than [`MAX_EVENT`] (an SSE comment: clients
/// ignore it).
pub const DROPPED: &str =
    ": mcp-edge-auth dropped an event larger than 8 MiB: it could not be filtered\n";

#[derive(Debug, Default)]
pub struct SseFilter {
    spec: FilterSpec,
    /// The current line, not yet terminated.
    line: String,
    /// The current event's complete lines, with their terminators, as received.
    raw: String,
    /// Its data lines, joined with `\n`.
    data: Option<String>,
    /// The last chunk ended in CR: a leading LF in the next one belongs to it.
    after_cr: bool,
    /// The current event outgrew [`MAX_EVENT`] and is being dropped.
    oversized: bool,
    /// In oversized mode: the current line has content already sent on.
    line_started: bool,
    /// The last event was rewritten (with LF endings) and ended in a CR: the LF
    /// completing that CRLF is not sent.
    swallow_lf: bool,
    /// Events rewritten so far.
    pub rewritten: usize,
    /// Events dropped for their size so far.
    pub dropped: usize,
}

/// A line's field name and value (`data: x` is `("data", "x")`; a comment has the
/// field `""`).
fn field(line: &str) -> (&str, &str) {
    match line.find(':') {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(' ').unwrap_or(value))
        }
        None => (line, ""),
    }
}

impl SseFilter {
    pub fn new(spec: FilterSpec) -> SseFilter {
        SseFilter {
            spec,
            ..Default::default()
        }
    }

    /// Feed the next piece of the stream; returns the text to send on now.
    pub fn push(&mut self, chunk: &str, policy: &Policy) -> String {
        let mut out = String::new();
        let mut rest = chunk;
        let swallow = std::mem::take(&mut self.swallow_lf);
        if std::mem::take(&mut self.after_cr) {
            if let Some(r) = rest.strip_prefix('\n') {
                // The LF of a CRLF split across chunks: sent with its line, unless
                // that line ended an event already rewritten with LF endings.
                if self.oversized {
                    // Part of the dropped event.
                } else if !swallow {
                    self.raw.push('\n');
                }
                rest = r;
            }
        }
        while let Some(i) = rest.find(['\r', '\n']) {
            let (text, tail) = rest.split_at(i);
            let term = if tail.starts_with("\r\n") { 2 } else { 1 };
            if tail == "\r" {
                self.after_cr = true;
            }
            self.add(text, &mut out);
            self.end_line(&tail[..term], policy, &mut out);
            rest = &tail[term..];
        }
        self.add(rest, &mut out);
        out
    }

    /// An event grown past [`MAX_EVENT`] is dropped: what is held goes, and the rest
    /// of it is skipped as it arrives.
    fn spill_if_large(&mut self, out: &mut String) {
        if !self.oversized && self.raw.len() + self.line.len() > MAX_EVENT {
            self.raw = String::new();
            self.line_started = !self.line.is_empty();
            self.line = String::new();
            self.data = None;
            self.oversized = true;
            self.dropped += 1;
            out.push_str(DROPPED);
        }
    }

    /// The end of the stream: whatever is held back goes on unchanged (an
    /// unterminated event is not dispatched by a client anyway).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.raw);
        out.push_str(&std::mem::take(&mut self.line));
        self.data = None;
        out
    }

    fn add(&mut self, text: &str, out: &mut String) {
        if text.is_empty() {
            return;
        }
        if self.oversized {
            self.line_started = true;
        } else {
            self.line.push_str(text);
            self.spill_if_large(out);
        }
    }

    fn end_line(&mut self, term: &str, policy: &Policy, out: &mut String) {
        if self.oversized {
            if !std::mem::take(&mut self.line_started) {
                // Its CR may be the first half of a CRLF split across chunks.
                self.swallow_lf = term == "\r";
                // A blank line: the oversized event is over.
                self.oversized = false;
            }
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.raw.push_str(term);
            self.dispatch(policy, out);
            return;
        }
        let (name, value) = field(&line);
        if name == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        self.raw.push_str(&line);
        self.raw.push_str(term);
        self.spill_if_large(out);
    }

    fn dispatch(&mut self, policy: &Policy, out: &mut String) {
        let raw = std::mem::take(&mut self.raw);
        let rewritten = self
            .data
            .take()
            .filter(|d| d.contains("\"result\""))
            .and_then(|d| jsonrpc::filter_answer(&d, &self.spec, policy));
        let Some(data) = rewritten else {
            out.push_str(&raw);
            return;
        };
        self.rewritten += 1;
        self.swallow_lf = raw.ends_with('\r');
        let mut data_written = false;
        for line in raw.split(['\r', '\n']).filter(|l| !l.is_empty()) {
            if field(line).0 != "data" {
                out.push_str(line);
                out.push('\n');
            } else if !data_written {
                data_written = true;
                for part in data.split('\n') {
                    out.push_str("data: ");
                    out.push_str(part);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::ListKind;
    use serde_json::Value;

    fn policy() -> Policy {
        Policy::parse(
            r#"{"methods": {"tools/call": {"names": {"secret": "admin"}}}}"#,
            &[],
        )
        .unwrap()
    }

    fn filter() -> SseFilter {
        SseFilter::new(FilterSpec {
            ids: vec![(Value::from(2), ListKind::Tools)],
            others: vec![],
            any: false,
            granted: vec![],
            private: false,
        })
    }

    const NOTE: &str = "id: e1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"hi\"}}\n\n";
    const LIST: &str = "id: e2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"open\"},{\"name\":\"secret\"}]}}\n\n";
    const FILTERED: &str = "id: e2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"open\"}]}}\n\n";

    fn run(f: &mut SseFilter, chunks: &[&str]) -> String {
        let p = policy();
        let mut out = String::new();
        for c in chunks {
            out.push_str(&f.push(c, &p));
        }
        out + &f.finish()
    }

    #[test]
    fn other_events_pass_unchanged_and_in_order() {
        let stream = format!(": keepalive\n\n{NOTE}{LIST}{NOTE}");
        let mut f = filter();
        assert_eq!(
            run(&mut f, &[&stream]),
            format!(": keepalive\n\n{NOTE}{FILTERED}{NOTE}")
        );
        assert_eq!(f.rewritten, 1);
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_output() {
        let stream = format!("{NOTE}{LIST}retry: 10\n\n");
        let want = format!("{NOTE}{FILTERED}retry: 10\n\n");
        for at in 0..=stream.len() {
            if !stream.is_char_boundary(at) {
                continue;
            }
            let (a, b) = stream.split_at(at);
            assert_eq!(run(&mut filter(), &[a, b]), want, "split at {at}");
        }
        let bytes: Vec<String> = stream.chars().map(String::from).collect();
        let parts: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run(&mut filter(), &parts), want);
    }

    #[test]
    fn events_are_sent_as_soon_as_they_end() {
        let p = policy();
        let mut f = filter();
        assert_eq!(f.push(NOTE, &p), NOTE);
        let (a, b) = LIST.split_at(30);
        assert_eq!(f.push(a, &p), "");
        assert_eq!(f.push(b, &p), FILTERED);
    }

    #[test]
    fn crlf_cr_and_multiline_data() {
        let crlf = LIST.replace('\n', "\r\n");
        assert_eq!(run(&mut filter(), &[&crlf]), FILTERED);
        let cr = NOTE.replace('\n', "\r");
        assert_eq!(
            run(&mut filter(), &[&cr]),
            cr,
            "unchanged events keep their bytes"
        );
        // CRLF split between chunks, in the blank line.
        let (a, b) = crlf.split_at(crlf.len() - 1);
        assert_eq!(run(&mut filter(), &[a, b]), FILTERED);
        let multi = "id: 9\ndata: {\"id\":2,\ndata:\"result\":{\"tools\":[{\"name\":\"secret\"},\ndata:  {\"name\":\"x\"}]}}\n\n";
        assert_eq!(
            run(&mut filter(), &[multi]),
            "id: 9\ndata: {\"id\":2,\ndata: \"result\":{\"tools\":[{\"name\":\"x\"}]}}\n\n"
        );
    }

    #[test]
    fn unterminated_tails_pass_unchanged() {
        let cut = &LIST[..LIST.len() - 1];
        assert_eq!(run(&mut filter(), &[cut]), cut);
    }

    #[test]
    fn oversized_events_are_dropped_never_passed_unfiltered() {
        let big = format!("data: {{\"id\":2,\"result\":{{\"tools\":[{{\"name\":\"secret\",\"pad\":\"{}\"}}]}}}}\n\n", "x".repeat(MAX_EVENT));
        let p = policy();
        let mut f = filter();
        let mut out = String::new();
        for piece in big.as_bytes().chunks(1 << 20) {
            let s = std::str::from_utf8(piece).unwrap();
            let o = f.push(s, &p);
            assert!(o.len() < MAX_EVENT + (1 << 20) + 16, "held back too much");
            out.push_str(&o);
        }
        out.push_str(&f.push(LIST, &p));
        out.push_str(&f.finish());
        assert_eq!(out, format!("{DROPPED}{FILTERED}"));
        assert_eq!(f.dropped, 1);
        // Split on CRLF across chunks, the same.
        let crlf = big.replace('\n', "\r\n");
        let mut f = filter();
        let (a, b) = crlf.split_at(crlf.len() - 1);
        let out = f.push(a, &p) + &f.push(b, &p) + &f.push(NOTE, &p) + &f.finish();
        assert_eq!(out, format!("{DROPPED}{NOTE}"));
    }
}
