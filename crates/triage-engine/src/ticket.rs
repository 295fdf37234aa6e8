//! Tickets and their decoding from input shapes.
//!
//! The plain shape is a JSON object with `id`, `subject` and `body` (other keys are ignored);
//! `id` may be a string or a number. A ticket needs an id and some text.
//!
//! The streaming worker reads other shapes too (Zendesk and Jira webhook payloads, or any JSON
//! object): a [`TicketShape`] names, by JSON pointer, where each field is, and decodes raw
//! message bytes with the checks a stream needs (size limit, UTF-8, JSON).

use serde_json::Value;

/// A ticket to classify.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ticket {
    /// The ticketing system's id, as text.
    pub id: String,
    /// Subject line (may be empty).
    pub subject: String,
    /// Body: plain text or HTML (may be empty when the subject is not).
    pub body: String,
    /// Expected symptom ids, when the input is labelled (for `triage eval`).
    pub labels: Option<Vec<String>>,
    /// Tags (Zendesk) or labels (Jira) the ticket already carries; the worker skips tickets
    /// that carry its marker tag (loop prevention). Empty when the input has none.
    pub tags: Vec<String>,
    /// Who made the change that produced this event (user id, account id or email), when the
    /// input says; the worker skips events authored by its own API user (loop prevention).
    pub author: Option<String>,
    /// The ticket's last-update stamp as the ticketing system wrote it, when the input has
    /// one; post-back sinks can use it to refuse writing over a newer version of the ticket.
    pub updated_stamp: Option<String>,
    /// Set when the text was longer than the scan limit and only its beginning was kept
    /// (`worker.oversize = "scan-prefix"`); the decision says so downstream.
    pub truncated: Option<Truncation>,
}

/// How much of a ticket's text was kept when it was over the scan limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Truncation {
    /// Bytes of subject and body kept and scanned (the limit, or a little less: the cut
    /// falls on a UTF-8 character boundary).
    pub scanned_bytes: usize,
    /// Bytes of subject and body the record had.
    pub total_bytes: usize,
}

/// Why an input record is not a ticket. Never retryable: the record itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("expected a JSON object with id, subject and body; got {0}")]
    NotObject(&'static str),
    /// No usable `id`.
    #[error("missing `id` (expected a non-empty string or a number)")]
    MissingId,
    /// Neither subject nor body has text.
    #[error("ticket {0}: no text (expected a non-empty `subject` or `body`)")]
    NoText(String),
    /// A field has the wrong type.
    #[error("field `{field}`: expected {expected}")]
    FieldType {
        /// Which field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The record is larger than the configured limit (checked before anything else):
    /// `worker.max_ticket_bytes`, or `worker.max_record_bytes` when oversize tickets are
    /// scanned in part.
    #[error("record of {bytes} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the record.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The record is not UTF-8 text.
    #[error("invalid UTF-8 at byte {valid_up_to}")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The record has no bytes at all (an empty or null Kafka message).
    #[error("empty record (no bytes)")]
    Empty,
    /// The body field is absent or null.
    #[error("ticket {id}: missing body (expected a string at JSON pointer `{pointer}`)")]
    MissingBody {
        /// The ticket id.
        id: String,
        /// Where the body was looked for.
        pointer: String,
    },
}

impl DecodeError {
    /// A short, stable class name for metrics and dead-letter headers.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "invalid_json",
            DecodeError::NotObject(_) => "not_object",
            DecodeError::MissingId => "missing_id",
            DecodeError::NoText(_) => "no_text",
            DecodeError::FieldType { .. } => "field_type",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::Empty => "empty",
            DecodeError::MissingBody { .. } => "missing_body",
        }
    }

    /// Never: a record that does not decode will not decode on a second try either.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text_field(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<String, DecodeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DecodeError::FieldType {
            field,
            expected: "a string",
        }),
    }
}

impl Ticket {
    /// Decode one JSON object in the plain shape.
    pub fn from_json(line: &str) -> Result<Ticket, DecodeError> {
        let v: Value = serde_json::from_str(line).map_err(|e| DecodeError::Json(e.to_string()))?;
        Ticket::from_value(&v)
    }

    /// Decode a parsed value in the plain shape.
    pub fn from_value(v: &Value) -> Result<Ticket, DecodeError> {
        let Value::Object(obj) = v else {
            return Err(DecodeError::NotObject(kind(v)));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(DecodeError::MissingId),
        };
        let subject = text_field(obj, "subject")?;
        let body = text_field(obj, "body")?;
        if subject.trim().is_empty() && body.trim().is_empty() {
            return Err(DecodeError::NoText(id));
        }
        let labels = match obj.get("labels") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for x in a {
                    match x {
                        Value::String(s) => out.push(s.clone()),
                        _ => {
                            return Err(DecodeError::FieldType {
                                field: "labels",
                                expected: "an array of symptom id strings",
                            })
                        }
                    }
                }
                Some(out)
            }
            Some(_) => {
                return Err(DecodeError::FieldType {
                    field: "labels",
                    expected: "an array of symptom id strings",
                })
            }
        };
        Ok(Ticket {
            id,
            subject,
            body,
            labels,
            ..Default::default()
        })
    }

    /// The text the classifier reads.
    pub fn text(&self) -> crate::classify::TicketText<'_> {
        crate::classify::TicketText {
            subject: &self.subject,
            body: &self.body,
        }
    }
}

/// A built-in input shape: where a ticket's fields are in one kind of payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `{"id", "subject", "body", "tags", "author", "updated_at"}` at the top level.
    #[default]
    Plain,
    /// A Zendesk ticket event webhook: `{"type": "zen:event-type:ticket.…", "detail": {"id",
    /// "subject", "description", "tags", "actor_id", "updated_at", …}, "event": {…}}`.
    Zendesk,
    /// A Jira issue webhook: `{"webhookEvent": "jira:issue_…", "user": {"accountId", …},
    /// "issue": {"key", "fields": {"summary", "description", "labels", "updated", …}}}`.
    Jira,
}

/// Where each field of a ticket is in an input record, as JSON pointers (RFC 6901).
///
/// `id` and `body` are required in every record; the optional fields are read when their
/// pointer is set and the record has a value there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketShape {
    /// The ticket id: a non-empty string or a number.
    pub id: String,
    /// The subject line (a missing subject is empty).
    pub subject: Option<String>,
    /// The body: a string, or an Atlassian Document Format object whose text is collected.
    pub body: String,
    /// Tags: an array of strings, or one string of tags separated by spaces or commas (as a
    /// help desk's webhook template may render a list).
    pub tags: Option<String>,
    /// Author of the event: a string or a number.
    pub author: Option<String>,
    /// Last-update stamp: a string or a number.
    pub updated_stamp: Option<String>,
    /// Records longer than this many bytes are refused before decoding.
    pub max_bytes: usize,
    /// When set, a ticket whose subject and body hold more bytes than this keeps only their
    /// beginning, cut at a character boundary, and is marked [`Ticket::truncated`]. When
    /// `None`, the text is kept whole (`max_bytes` alone bounds it).
    pub max_text_bytes: Option<usize>,
}

impl TicketShape {
    /// The pointers of a built-in preset, with a size limit.
    pub fn preset(preset: Preset, max_bytes: usize) -> TicketShape {
        let s = |p: &str| p.to_string();
        match preset {
            Preset::Plain => TicketShape {
                id: s("/id"),
                subject: Some(s("/subject")),
                body: s("/body"),
                tags: Some(s("/tags")),
                author: Some(s("/author")),
                updated_stamp: Some(s("/updated_at")),
                max_bytes,
                max_text_bytes: None,
            },
            Preset::Zendesk => TicketShape {
                id: s("/detail/id"),
                subject: Some(s("/detail/subject")),
                body: s("/detail/description"),
                tags: Some(s("/detail/tags")),
                author: Some(s("/detail/actor_id")),
                updated_stamp: Some(s("/detail/updated_at")),
                max_bytes,
                max_text_bytes: None,
            },
            Preset::Jira => TicketShape {
                id: s("/issue/key"),
                subject: Some(s("/issue/fields/summary")),
                body: s("/issue/fields/description"),
                tags: Some(s("/issue/fields/labels")),
                author: Some(s("/user/accountId")),
                updated_stamp: Some(s("/issue/fields/updated")),
                max_bytes,
                max_text_bytes: None,
            },
        }
    }

    /// This shape, keeping at most `max_text_bytes` of a ticket's text (see
    /// [`TicketShape::max_text_bytes`]).
    pub fn scanning_prefix(self, max_text_bytes: usize) -> TicketShape {
        TicketShape {
            max_text_bytes: Some(max_text_bytes),
            ..self
        }
    }

    /// Decode one raw record (a Kafka message value or a JSON Lines line).
    pub fn decode(&self, bytes: &[u8]) -> Result<Ticket, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.len() > self.max_bytes {
            return Err(DecodeError::TooLarge {
                bytes: bytes.len(),
                limit: self.max_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let v: Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
        self.from_value(&v)
    }

    /// Decode a parsed record.
    pub fn from_value(&self, v: &Value) -> Result<Ticket, DecodeError> {
        if !v.is_object() {
            return Err(DecodeError::NotObject(kind(v)));
        }
        let id = match v.pointer(&self.id) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(DecodeError::MissingId),
        };
        let subject = match self.subject.as_deref().and_then(|p| v.pointer(p)) {
            None | Some(Value::Null) => String::new(),
            Some(x) => document_text(x).ok_or(DecodeError::FieldType {
                field: "subject",
                expected: "a string",
            })?,
        };
        let body = match v.pointer(&self.body) {
            None | Some(Value::Null) => {
                return Err(DecodeError::MissingBody {
                    id,
                    pointer: self.body.clone(),
                })
            }
            Some(x) => document_text(x).ok_or(DecodeError::FieldType {
                field: "body",
                expected: "a string or an Atlassian Document Format object",
            })?,
        };
        if subject.trim().is_empty() && body.trim().is_empty() {
            return Err(DecodeError::NoText(id));
        }
        let tags = match self.tags.as_deref().and_then(|p| v.pointer(p)) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for x in a {
                    match x {
                        Value::String(s) => out.push(s.clone()),
                        _ => {
                            return Err(DecodeError::FieldType {
                                field: "tags",
                                expected: "an array of strings",
                            })
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(DecodeError::FieldType {
                    field: "tags",
                    expected: "an array of strings",
                })
            }
        };
        let scalar =
            |p: Option<&str>, field: &'static str| -> Result<Option<String>, DecodeError> {
                match p.and_then(|p| v.pointer(p)) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(_) => Err(DecodeError::FieldType {
                        field,
                        expected: "a string or a number",
                    }),
                }
            };
        let author = scalar(self.author.as_deref(), "author")?;
        let updated_stamp = scalar(self.updated_stamp.as_deref(), "updated")?;
        let mut ticket = Ticket {
            id,
            subject,
            body,
            labels: None,
            tags,
            author,
            updated_stamp,
            truncated: None,
        };
        if let Some(limit) = self.max_text_bytes {
            ticket.keep_prefix(limit);
        }
        Ok(ticket)
    }
}

impl Ticket {
    /// Keep at most `limit` bytes of subject and body together (the subject first, then the
    /// beginning of the body), cutting at a character boundary; note it in `truncated`.
    pub fn keep_prefix(&mut self, limit: usize) {
        let total = self.subject.len() + self.body.len();
        if total <= limit {
            return;
        }
        cut_at_char_boundary(&mut self.subject, limit);
        cut_at_char_boundary(&mut self.body, limit - self.subject.len());
        // Give the memory of the cut-off text back now, not when the ticket is done.
        self.body.shrink_to_fit();
        self.truncated = Some(Truncation {
            scanned_bytes: self.subject.len() + self.body.len(),
            total_bytes: total,
        });
    }
}

/// Shorten `s` to at most `max` bytes, at the last character boundary at or before `max`.
fn cut_at_char_boundary(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// The text of a field: a string as it is, or the text nodes of an Atlassian Document Format
/// document (Jira Cloud's rich-text fields), one line per block. `None` for other values.
fn document_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) if o.contains_key("content") || o.contains_key("text") => {
            let mut out = String::new();
            adf_text(v, &mut out);
            Some(out.trim_end().to_string())
        }
        _ => None,
    }
}

fn adf_text(v: &Value, out: &mut String) {
    let Value::Object(o) = v else { return };
    if let Some(Value::String(t)) = o.get("text") {
        out.push_str(t);
    }
    if o.get("type").and_then(Value::as_str) == Some("hardBreak") {
        out.push('\n');
    }
    if let Some(Value::Array(children)) = o.get("content") {
        for c in children {
            adf_text(c, out);
        }
        let block = matches!(
            o.get("type").and_then(Value::as_str),
            Some(
                "paragraph"
                    | "heading"
                    | "codeBlock"
                    | "blockquote"
                    | "listItem"
                    | "panel"
                    | "rule"
            )
        );
        if block && !out.ends_with('\n') {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_plain_shape() {
        let t =
            Ticket::from_json(r#"{"id": 42, "subject": "s", "body": "b", "extra": 1}"#).unwrap();
        assert_eq!(t.id, "42");
        assert_eq!(t.subject, "s");
        assert_eq!(t.labels, None);
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(matches!(Ticket::from_json("{"), Err(DecodeError::Json(_))));
        assert_eq!(
            Ticket::from_json("[1]"),
            Err(DecodeError::NotObject("an array"))
        );
        assert_eq!(
            Ticket::from_json(r#"{"body": "x"}"#),
            Err(DecodeError::MissingId)
        );
        assert_eq!(
            Ticket::from_json(r#"{"id": "", "body": "x"}"#),
            Err(DecodeError::MissingId)
        );
        assert_eq!(
            Ticket::from_json(r#"{"id": "a", "body": "  "}"#),
            Err(DecodeError::NoText("a".into()))
        );
        assert_eq!(
            Ticket::from_json(r#"{"id": "a", "body": 3}"#)
                .unwrap_err()
                .class(),
            "field_type"
        );
    }

    #[test]
    fn reads_labels() {
        let t = Ticket::from_json(r#"{"id": "a", "body": "x", "labels": ["pin-locked"]}"#).unwrap();
        assert_eq!(t.labels, Some(vec!["pin-locked".to_string()]));
        assert!(Ticket::from_json(r#"{"id": "a", "body": "x", "labels": [1]}"#).is_err());
    }

    #[test]
    fn shape_decodes_each_preset() {
        let plain = TicketShape::preset(Preset::Plain, 1 << 20);
        let t = plain
            .decode(br#"{"id": 7, "subject": "s", "body": "b", "tags": ["x", "y"], "author": "me", "updated_at": "2024-01-01T00:00:00Z"}"#)
            .unwrap();
        assert_eq!(
            (t.id.as_str(), t.subject.as_str(), t.body.as_str()),
            ("7", "s", "b")
        );
        assert_eq!(t.tags, vec!["x", "y"]);
        let listed = plain
            .decode(br#"{"id": 8, "body": "b", "tags": "vip, triage-processed  hardware,"}"#)
            .unwrap();
        assert_eq!(listed.tags, vec!["vip", "triage-processed", "hardware"]);
        assert_eq!(t.author.as_deref(), Some("me"));
        assert_eq!(t.updated_stamp.as_deref(), Some("2024-01-01T00:00:00Z"));

        let zendesk = TicketShape::preset(Preset::Zendesk, 1 << 20);
        let t = zendesk
            .decode(br#"{"type": "zen:event-type:ticket.created", "detail": {"id": "35436", "subject": "Key", "description": "my key is locked", "tags": ["vip"], "actor_id": "900", "updated_at": "2024-04-17T17:18:10Z"}, "event": {}}"#)
            .unwrap();
        assert_eq!(t.id, "35436");
        assert_eq!(t.body, "my key is locked");
        assert_eq!(t.author.as_deref(), Some("900"));

        let jira = TicketShape::preset(Preset::Jira, 1 << 20);
        let t = jira
            .decode(br#"{"webhookEvent": "jira:issue_created", "user": {"accountId": "5b10ac"}, "issue": {"key": "HD-12", "fields": {"summary": "Passkey", "description": {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "PIN is "}, {"type": "text", "text": "blocked", "marks": [{"type": "strong"}]}]}, {"type": "paragraph", "content": [{"type": "text", "text": "help"}]}]}, "labels": ["it"], "updated": "2024-05-01T10:00:00.000+0000"}}}"#)
            .unwrap();
        assert_eq!(t.id, "HD-12");
        assert_eq!(t.body, "PIN is blocked\nhelp");
        assert_eq!(t.tags, vec!["it"]);
        assert_eq!(t.author.as_deref(), Some("5b10ac"));
    }

    #[test]
    fn shape_refuses_bad_records_with_a_class() {
        let shape = TicketShape::preset(Preset::Plain, 64);
        let class = |b: &[u8]| shape.decode(b).unwrap_err().class();
        assert_eq!(class(b""), "empty");
        assert_eq!(class(&[b'x'; 65]), "too_large");
        assert_eq!(
            class(b"{\"id\": \"a\", \"body\": \"\xff\"}"),
            "invalid_utf8"
        );
        assert_eq!(class(b"{not json"), "invalid_json");
        assert_eq!(
            class(b"{\"id\": \"a\", \"subject\": \"s\"}"),
            "missing_body"
        );
        assert_eq!(class(b"{\"body\": \"b\"}"), "missing_id");
        assert_eq!(
            class(b"{\"id\": 1, \"body\": \"b\", \"tags\": [1]}"),
            "field_type"
        );
        assert!(!shape.decode(b"{}").unwrap_err().is_retryable());
    }

    #[test]
    fn scan_prefix_keeps_the_beginning_of_long_text_at_a_character_boundary() {
        // 20 bytes of subject + body: within the limit, kept whole and not marked.
        let shape = TicketShape::preset(Preset::Plain, 4096).scanning_prefix(20);
        let t = shape
            .decode(br#"{"id": 1, "subject": "0123456789", "body": "abcdefghij"}"#)
            .unwrap();
        assert_eq!((t.body.as_str(), t.truncated), ("abcdefghij", None));

        // "é" is two bytes: a cut at byte 20 would split the third one, so 19 bytes are kept.
        let body = format!("{}{}", "x".repeat(5), "é".repeat(100));
        let record = format!(r#"{{"id": "a", "subject": "Key locked", "body": "{body}"}}"#);
        let t = shape.decode(record.as_bytes()).unwrap();
        assert_eq!(t.subject, "Key locked");
        assert_eq!(t.body, "xxxxxéé");
        assert_eq!(
            t.truncated,
            Some(Truncation {
                scanned_bytes: 19,
                total_bytes: 10 + 5 + 200
            })
        );

        // A subject alone over the limit is cut too, and the body is then empty.
        let long_subject = format!(
            r#"{{"id": "b", "subject": "{}", "body": "b"}}"#,
            "s".repeat(30)
        );
        let t = shape.decode(long_subject.as_bytes()).unwrap();
        assert_eq!((t.subject.len(), t.body.as_str()), (20, ""));
        assert_eq!(t.truncated.unwrap().total_bytes, 31);
    }

    #[test]
    fn the_record_limit_holds_in_both_modes() {
        let record = format!(r#"{{"id": "a", "body": "{}"}}"#, "x".repeat(100));
        let whole = TicketShape::preset(Preset::Plain, 64);
        assert_eq!(
            whole.decode(record.as_bytes()).unwrap_err(),
            DecodeError::TooLarge {
                bytes: record.len(),
                limit: 64
            }
        );
        let prefix = TicketShape::preset(Preset::Plain, 64).scanning_prefix(32);
        assert_eq!(
            prefix.decode(record.as_bytes()).unwrap_err().class(),
            "too_large"
        );
        let roomy = TicketShape::preset(Preset::Plain, 4096).scanning_prefix(32);
        let t = roomy.decode(record.as_bytes()).unwrap();
        assert_eq!(t.body.len(), 32);
        assert!(t.truncated.is_some());
    }
}
