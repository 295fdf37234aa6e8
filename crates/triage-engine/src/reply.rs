//! From symptoms found to the suggested first reply: the internal note an agent reads.
//!
//! Each symptom's reply template (the catalogue's, or [`crate::catalog::DEFAULT_REPLY`]) is
//! filled with its title, first checks (numbered), likely fix and the evidence; several
//! symptoms give several sections under one header naming the catalogue. The note is plain
//! text; ticket text quoted in it is put on one line between quotes and cut to a sane length,
//! and a sink that renders markup escapes the whole note for its system.

use crate::catalog::{Catalog, Symptom};
use crate::classify::{Evidence, Finding};

/// Longest quoted evidence, in characters.
pub const MAX_QUOTE_CHARS: usize = 80;

/// Quote a piece of ticket text for the note: one line, bounded, in quotes.
pub fn quote(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: String = one_line.chars().take(MAX_QUOTE_CHARS).collect();
    if one_line.chars().count() > MAX_QUOTE_CHARS {
        out.push('…');
    }
    format!("\u{201c}{out}\u{201d}")
}

fn evidence_line(e: &[Evidence]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for ev in e {
        if ev.rule.starts_with("context:") {
            continue;
        }
        // A match inside a longer one says nothing more ("PIN" inside "PIN blocked").
        let inside = e.iter().any(|o| {
            o.field == ev.field
                && o.start <= ev.start
                && ev.end <= o.end
                && (o.end - o.start) > (ev.end - ev.start)
                && !o.rule.starts_with("context:")
        });
        if inside {
            continue;
        }
        let q = quote(&ev.text);
        if !parts.iter().any(|p| p.to_lowercase() == q.to_lowercase()) {
            parts.push(q);
        }
    }
    if parts.is_empty() {
        "(no direct evidence)".to_string()
    } else {
        parts.join(", ")
    }
}

/// Render one symptom's section.
pub fn render_symptom(cat: &Catalog, sym: &Symptom, finding: &Finding) -> String {
    sym.reply.render(|field, out| match field {
        "title" => out.push_str(&sym.title),
        "id" => out.push_str(&sym.id),
        "checks" => {
            for (i, c) in sym.checks.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&format!("{}. {}", i + 1, c.trim()));
            }
        }
        "fix" => out.push_str(sym.fix.trim()),
        "evidence" => out.push_str(&evidence_line(&finding.evidence)),
        "catalogue" => out.push_str(&cat.name),
        "version" => out.push_str(&cat.version),
        _ => {}
    })
}

/// The whole note for a ticket; empty when nothing was found.
pub fn render(cat: &Catalog, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "triage: {} possible symptom{} (catalogue {} {})",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        cat.name,
        cat.version
    );
    for f in findings {
        let Some(sym) = cat.symptoms.get(f.index) else {
            continue;
        };
        out.push_str("\n\n");
        out.push_str(render_symptom(cat, sym, f).trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(field: &'static str, start: usize, end: usize, text: &str, rule: &str) -> Evidence {
        Evidence {
            field,
            start,
            end,
            text: text.into(),
            rule: rule.into(),
        }
    }

    #[test]
    fn evidence_line_drops_contained_and_repeated_matches() {
        let e = vec![
            ev("subject", 0, 7, "YubiKey", "together:1:0:@seckey"),
            ev("subject", 8, 11, "PIN", "together:0:0:@pin"),
            ev("subject", 8, 19, "PIN blocked", "keyword:pin blocked"),
            ev("body", 3, 14, "pin blocked", "keyword:pin blocked"),
            ev("body", 20, 27, "passkey", "context:@passkey"),
        ];
        assert_eq!(
            evidence_line(&e),
            "\u{201c}YubiKey\u{201d}, \u{201c}PIN blocked\u{201d}"
        );
    }

    #[test]
    fn quote_is_one_bounded_line() {
        assert_eq!(quote("a\n\tb"), "\u{201c}a b\u{201d}");
        let long = "x".repeat(200);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_QUOTE_CHARS + 3);
        assert!(q.ends_with("…\u{201d}"));
    }
}
