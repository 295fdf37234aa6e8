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

/// One group of a co-occurrence as the note names it: group index, its name, the quoted hit
/// (empty when the hit is shown under another rule).
type GroupSeen = (usize, String, String);

/// The evidence of `finding` named for people: one line per rule that matched, saying what
/// the rule looks for in words and quoting the ticket text it matched.
///
/// A co-occurrence reads "security key + locked, within 60 characters: “YubiKey”, “locked”":
/// each group by its term set's label (`[term_labels]`; the set's name without one) or, for
/// a group of plain phrases, by the text matched. Keywords read "the phrase “…”", hints
/// "supporting word “…”", patterns "a pattern of the catalogue: “…”". The hit that only put the ticket
/// on topic (`requires`) is not repeated here.
pub fn explain(cat: &Catalog, sym: &Symptom, finding: &Finding) -> Vec<String> {
    let label = |origin: &str, text: &str| -> String {
        match origin.strip_prefix('@') {
            Some(name) => cat
                .term_labels
                .get(origin)
                .cloned()
                .unwrap_or_else(|| name.to_string()),
            None => quote(text),
        }
    };
    let mut keywords: Vec<String> = Vec::new();
    let mut hints: Vec<String> = Vec::new();
    let mut patterns: Vec<String> = Vec::new();
    // Co-occurrence rules in the order their first hit appears: (rule, [(group, label, quote)]).
    let mut together: Vec<(usize, Vec<GroupSeen>)> = Vec::new();
    let push_unique = |v: &mut Vec<String>, q: String| {
        if !v.iter().any(|p| p.to_lowercase() == q.to_lowercase()) {
            v.push(q);
        }
    };
    for ev in &finding.evidence {
        let (kind, rest) = ev.rule.split_once(':').unwrap_or((ev.rule.as_str(), ""));
        match kind {
            "keyword" => push_unique(&mut keywords, quote(&ev.text)),
            "hint" => push_unique(&mut hints, quote(&ev.text)),
            // The regex itself is for the catalogue's author (`triage check`, the workbench);
            // the agent reads what it matched.
            "pattern" => push_unique(&mut patterns, quote(&ev.text)),
            "together" => {
                let mut it = rest.splitn(3, ':');
                let (Some(Ok(r)), Some(Ok(k)), Some(origin)) = (
                    it.next().map(str::parse::<usize>),
                    it.next().map(str::parse::<usize>),
                    it.next(),
                ) else {
                    continue;
                };
                let entry = match together.iter_mut().position(|(rr, _)| *rr == r) {
                    Some(i) => &mut together[i].1,
                    None => {
                        together.push((r, Vec::new()));
                        &mut together.last_mut().expect("just pushed").1
                    }
                };
                if !entry.iter().any(|(g, _, _)| *g == k) {
                    entry.push((k, label(origin, &ev.text), quote(&ev.text)));
                }
            }
            _ => {}
        }
    }
    let mut lines: Vec<String> = Vec::new();
    if !keywords.is_empty() {
        let s = if keywords.len() == 1 { "" } else { "s" };
        lines.push(format!("the phrase{s} {}", keywords.join(", ")));
    }
    for (r, mut groups) in together {
        // A hit shared with another rule is shown once, under that rule: name such a group
        // from the catalogue ("@pin" -> its label; a plain phrase in quotes).
        if let Some(t) = sym.together.get(r) {
            for (k, terms) in t.groups.iter().enumerate() {
                if groups.iter().any(|(g, _, _)| *g == k) {
                    continue;
                }
                if let Some(first) = terms.first() {
                    let name = match first.origin.strip_prefix('@') {
                        Some(_) => label(&first.origin, ""),
                        None => quote(&first.origin),
                    };
                    groups.push((k, name, String::new()));
                }
            }
        }
        groups.sort_by_key(|(g, _, _)| *g);
        let names: Vec<&str> = groups.iter().map(|(_, l, _)| l.as_str()).collect();
        let quotes: Vec<&str> = groups
            .iter()
            .filter(|(_, l, q)| !q.is_empty() && l != q)
            .map(|(_, _, q)| q.as_str())
            .collect();
        let reach = match sym.together.get(r).and_then(|t| t.within) {
            Some(n) => format!("within {n} characters"),
            None => "in one sentence".to_string(),
        };
        let mut line = format!("{}, {reach}", names.join(" + "));
        if !quotes.is_empty() {
            line.push_str(": ");
            line.push_str(&quotes.join(", "));
        }
        lines.push(line);
    }
    if !patterns.is_empty() {
        lines.push(format!(
            "a pattern of the catalogue: {}",
            patterns.join(", ")
        ));
    }
    if !hints.is_empty() {
        let s = if hints.len() == 1 { "" } else { "s" };
        lines.push(format!("supporting word{s} {}", hints.join(", ")));
    }
    lines
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
        "why" => {
            let computed;
            let why = if finding.why.is_empty() {
                computed = explain(cat, sym, finding);
                &computed
            } else {
                &finding.why
            };
            if why.is_empty() {
                out.push_str("(no direct evidence)");
            } else {
                out.push_str(&why.join("; "));
            }
        }
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
    fn explain_names_each_rule_in_words() {
        let cat = Catalog::from_sources(&[(
            "cat.toml".to_string(),
            r#"
[catalogue]
name = "demo"
version = "1"

[terms]
pin = ["pin"]
seckey = ["yubikey"]
locked = ["blocked"]

[term_labels]
seckey = "a security key"
locked = "locked"

[[symptom]]
id = "pin-locked"
title = "PIN locked"
keywords = ["pin blocked"]
hints = ["reset"]
patterns = ['\bpuk\b']
together = [
  { all = ["@seckey", "@locked"], within = 60 },
  { all = ["@pin", ["too many", "many tries"]] },
]
checks = ["Ask how many attempts"]
fix = "Reset the key"
"#
            .to_string(),
        )])
        .unwrap();
        let sym = &cat.symptoms[0];
        let finding = Finding {
            index: 0,
            id: sym.id.clone(),
            title: sym.title.clone(),
            score: 4.5,
            evidence: vec![
                ev("subject", 0, 7, "YubiKey", "together:0:0:@seckey"),
                ev("subject", 8, 19, "PIN blocked", "keyword:pin blocked"),
                ev("subject", 12, 19, "blocked", "together:0:1:@locked"),
                ev("body", 0, 3, "PIN", "together:1:0:@pin"),
                ev("body", 4, 12, "too many", "together:1:1:too many"),
                ev("body", 13, 16, "PUK", "pattern:0"),
                ev("body", 17, 22, "reset", "hint:reset"),
                ev("body", 30, 37, "Passkey", "context:@passkey"),
            ],
            why: Vec::new(),
        };
        assert_eq!(
            explain(&cat, sym, &finding),
            vec![
                "the phrase \u{201c}PIN blocked\u{201d}".to_string(),
                "a security key + locked, within 60 characters: \u{201c}YubiKey\u{201d}, \u{201c}blocked\u{201d}".to_string(),
                // An unlabelled set goes by its name; a plain phrase by the text it matched.
                "pin + \u{201c}too many\u{201d}, in one sentence: \u{201c}PIN\u{201d}".to_string(),
                "a pattern of the catalogue: \u{201c}PUK\u{201d}".to_string(),
                "supporting word \u{201c}reset\u{201d}".to_string(),
            ]
        );
        // A hit shown under another rule leaves its group to be named from the catalogue.
        let mut shared = finding.clone();
        shared.evidence = vec![
            ev("subject", 0, 7, "YubiKey", "together:0:0:@seckey"),
            ev("body", 0, 3, "PIN", "together:1:0:@pin"),
        ];
        assert_eq!(
            explain(&cat, sym, &shared),
            vec![
                "a security key + locked, within 60 characters: \u{201c}YubiKey\u{201d}"
                    .to_string(),
                "pin + \u{201c}too many\u{201d}, in one sentence: \u{201c}PIN\u{201d}".to_string(),
            ]
        );
        // The note says the same on its Why line.
        let note = render(&cat, &[finding]);
        assert!(
            note.contains("Why: the phrase \u{201c}PIN blocked\u{201d}; a security key + locked"),
            "{note}"
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
