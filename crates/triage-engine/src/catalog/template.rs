//! The suggested-reply template: text with `{placeholders}` filled from a symptom.

use std::fmt;

/// The placeholders a reply template may use.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("title", "the symptom's title"),
    ("id", "the symptom's id"),
    ("checks", "the first checks, as a numbered list"),
    ("fix", "the likely fix"),
    ("evidence", "what matched in the ticket, one line per match"),
    (
        "why",
        "the evidence named in words: each rule that matched and the text it matched",
    ),
    ("catalogue", "the catalogue's name"),
    ("version", "the catalogue's version"),
];

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

/// A template that cannot be parsed: what is wrong, and the byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {offset} of the template)")]
pub struct TemplateError {
    /// What went wrong and what was expected.
    pub message: String,
    /// Where, in bytes from the template's start.
    pub offset: usize,
}

impl Template {
    /// Parse `{name}` placeholders; `{{` and `}}` stand for literal braces.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let rest = &src[i + 1..];
                    let Some(close) = rest.find('}') else {
                        return Err(TemplateError {
                            message: "unclosed `{`; expected `{name}`, or `{{` for a literal brace"
                                .into(),
                            offset: i,
                        });
                    };
                    let name = rest[..close].trim();
                    let Some(&(known, _)) = PLACEHOLDERS.iter().find(|(n, _)| *n == name) else {
                        let names: Vec<_> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                        return Err(TemplateError {
                            message: format!(
                                "unknown placeholder `{{{name}}}`; expected one of {}",
                                names.join(", ")
                            ),
                            offset: i,
                        });
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(known));
                    for _ in 0..rest[..close].chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError {
                        message: "stray `}`; write `}}` for a literal brace".into(),
                        offset: i,
                    })
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// Fill the template, asking `value` for each placeholder.
    pub fn render(&self, mut value: impl FnMut(&str, &mut String)) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => value(f, &mut out),
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => write!(f, "{}", t.replace('{', "{{").replace('}', "}}"))?,
                Piece::Field(n) => write!(f, "{{{n}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_escapes() {
        let t = Template::parse("{title}: {{literal}}\n{checks}").unwrap();
        let s = t.render(|f, out| out.push_str(&f.to_uppercase()));
        assert_eq!(s, "TITLE: {literal}\nCHECKS");
    }

    #[test]
    fn unknown_placeholder_is_an_error_with_offset() {
        let e = Template::parse("Hi {nme}").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(
            e.message.contains("unknown placeholder `{nme}`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("title"));
    }

    #[test]
    fn unclosed_and_stray_braces() {
        assert!(Template::parse("a {title")
            .unwrap_err()
            .message
            .contains("unclosed"));
        assert!(Template::parse("a } b")
            .unwrap_err()
            .message
            .contains("stray"));
    }

    #[test]
    fn round_trips_through_display() {
        let src = "{title} {{x}} {fix}";
        let t = Template::parse(src).unwrap();
        assert_eq!(t.to_string(), src);
    }
}
