//! Tickets and their decoding from input shapes.
//!
//! The plain shape is a JSON object with `id`, `subject` and `body` (other keys are ignored);
//! `id` may be a string or a number. A ticket needs an id and some text.

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
        }
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

fn text_field(obj: &serde_json::Map<String, Value>, field: &'static str) -> Result<String, DecodeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_plain_shape() {
        let t = Ticket::from_json(r#"{"id": 42, "subject": "s", "body": "b", "extra": 1}"#).unwrap();
        assert_eq!(t.id, "42");
        assert_eq!(t.subject, "s");
        assert_eq!(t.labels, None);
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(matches!(Ticket::from_json("{"), Err(DecodeError::Json(_))));
        assert_eq!(Ticket::from_json("[1]"), Err(DecodeError::NotObject("an array")));
        assert_eq!(Ticket::from_json(r#"{"body": "x"}"#), Err(DecodeError::MissingId));
        assert_eq!(Ticket::from_json(r#"{"id": "", "body": "x"}"#), Err(DecodeError::MissingId));
        assert_eq!(
            Ticket::from_json(r#"{"id": "a", "body": "  "}"#),
            Err(DecodeError::NoText("a".into()))
        );
        assert_eq!(
            Ticket::from_json(r#"{"id": "a", "body": 3}"#).unwrap_err().class(),
            "field_type"
        );
    }

    #[test]
    fn reads_labels() {
        let t = Ticket::from_json(r#"{"id": "a", "body": "x", "labels": ["pin-locked"]}"#).unwrap();
        assert_eq!(t.labels, Some(vec!["pin-locked".to_string()]));
        assert!(Ticket::from_json(r#"{"id": "a", "body": "x", "labels": [1]}"#).is_err());
    }
}
