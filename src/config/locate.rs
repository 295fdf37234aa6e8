//! Where a key is in the file, so that every error reads `path:line: key: message`.

use super::ConfigError;

/// The text being validated, for finding where a key is.
pub(crate) struct Ctx<'a> {
    /// The whole file.
    pub(super) text: &'a str,
    /// The file's name, as given.
    pub(super) path: String,
}

impl Ctx<'_> {
    /// The 1-based line of a byte offset (a span's start, from the parser).
    pub(super) fn line_at(&self, byte: usize) -> usize {
        self.text[..byte.min(self.text.len())].matches('\n').count() + 1
    }

    /// The line of a key (dotted path), or of its nearest enclosing table.
    pub(super) fn line_of(&self, field: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text).ok()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let mut line = None;
        let parts: Vec<&str> = field.split('.').collect();
        // Keys may themselves contain dots (librdkafka property names): try the longest
        // remaining key first.
        let mut i = 0;
        while i < parts.len() {
            let mut found = None;
            for j in (i + 1..=parts.len()).rev() {
                let key = parts[i..j].join(".");
                if let Some((k, item)) = table.get_key_value(&key) {
                    found = Some((j, k.span(), item));
                    break;
                }
            }
            let (j, span, item) = found?;
            if let Some(span) = span {
                line = Some(self.line_at(span.start));
            }
            i = j;
            match item.as_table_like() {
                Some(t) if i < parts.len() => table = t,
                _ => break,
            }
        }
        line
    }

    /// An error at `field` (dotted): `path:line: field: message`.
    pub(crate) fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line: self.line_of(field),
            field: field.to_string(),
            message: message.into(),
        }
    }
}
