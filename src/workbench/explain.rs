//! Why a ticket got its symptoms, for people: the ticket cut into spans that carry the evidence
//! covering them (one colour per symptom, the rule named in words) and the words that a
//! negation, an exclusion, a quoted reply or an ignore phrase cancelled; and the note as each
//! help desk receives it.
//!
//! Evidence is the classifier's own. Cancelled words are found here, beside it, with the
//! engine's public pieces (normalisation, zones, negation cues, sentences): a catalogue phrase
//! that occurs in the text but is no evidence of its symptom is shown as cancelled when one of
//! those reasons applies to it. It is an explanation for the page, not a second classifier:
//! what counts is always the evidence.

use serde::Serialize;

use crate::catalog::{Catalog, Phrase, Symptom};
use crate::classify::negation::Negation;
use crate::classify::normalize::Normalized;
use crate::classify::{self, zones, Classification, Classifier, TicketText, EXCLUDE_REACH};
use crate::decision::Decision;
use crate::sink::note::{self, Markup};
use crate::ticket::Ticket;

/// A symptom found, as the page shows it.
#[derive(Debug, Serialize)]
pub struct Found {
    /// Symptom id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Score reached.
    pub score: f32,
    /// Score needed.
    pub threshold: f32,
    /// Its colour: the index among the catalogue's symptoms.
    pub colour: usize,
    /// Where it is defined, as `path:line`.
    pub defined_at: String,
    /// Its evidence, in words.
    pub evidence: Vec<EvidenceView>,
}

/// One piece of evidence.
#[derive(Debug, Serialize)]
pub struct EvidenceView {
    /// `subject` or `body`.
    pub field: &'static str,
    /// The ticket's words.
    pub text: String,
    /// The rule as the engine names it (`keyword:pin blocked`).
    pub rule: String,
    /// The rule in words.
    pub words: String,
}

/// A stretch of a field with what covers it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Span {
    /// The ticket's text.
    pub text: String,
    /// Evidence covering it: (index into [`Explained::symptoms`], rule in words).
    pub marks: Vec<(usize, String)>,
    /// Why catalogue words here did not count, if they did not.
    pub cancelled: Option<String>,
}

/// One field cut into spans.
#[derive(Debug, Serialize)]
pub struct FieldView {
    /// `subject` or `body`.
    pub name: &'static str,
    /// The spans, in order; their texts joined are the field.
    pub spans: Vec<Span>,
}

/// A note as one help desk receives it.
#[derive(Debug, Serialize)]
pub struct NoteView {
    /// The help desks that receive it so.
    pub system: &'static str,
    /// `text`, `html`, `jira` or `servicenow`.
    pub markup: &'static str,
    /// What is sent.
    pub source: String,
}

/// Everything the try view shows.
#[derive(Debug, Serialize)]
pub struct Explained {
    /// Ticket id (given, or `pasted`).
    pub id: String,
    /// Its labels, when it comes from the labelled file.
    pub labels: Option<Vec<String>>,
    /// Symptoms found, strongest first.
    pub symptoms: Vec<Found>,
    /// Subject and body.
    pub fields: Vec<FieldView>,
    /// Cancelled words, in order.
    pub cancelled: Vec<CancelledView>,
    /// Tags the ticket gets.
    pub tags: Vec<String>,
    /// The note per help desk.
    pub notes: Vec<NoteView>,
}

/// A catalogue phrase in the ticket that did not count, and why.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct CancelledView {
    /// `subject` or `body`.
    pub field: &'static str,
    /// The ticket's words.
    pub text: String,
    /// Why they did not count.
    pub why: String,
    #[serde(skip)]
    start: usize,
    #[serde(skip)]
    end: usize,
}

/// The rule of a piece of evidence in words.
pub fn rule_words(sym: Option<&Symptom>, rule: &str) -> String {
    let (kind, rest) = rule.split_once(':').unwrap_or((rule, ""));
    match kind {
        "keyword" => format!("keyword “{rest}” (score 1)"),
        "hint" => format!("hint “{rest}” (score 0.5)"),
        "context" => format!("topic word “{rest}” (requires)"),
        "pattern" => format!("regular expression {rest} (score 1)"),
        "together" => {
            let mut it = rest.splitn(3, ':');
            let (r, k, term) = (it.next(), it.next(), it.next().unwrap_or(""));
            let r: Option<usize> = r.and_then(|r| r.parse().ok());
            let k: Option<usize> = k.and_then(|k| k.parse().ok());
            let weight = r
                .and_then(|r| sym.and_then(|s| s.together.get(r)))
                .map(|t| t.weight);
            let groups = r
                .and_then(|r| sym.and_then(|s| s.together.get(r)))
                .map_or(0, |t| t.groups.len());
            format!(
                "“{term}”: group {} of {groups} of co-occurrence rule {} (together, score {})",
                k.map_or(0, |k| k + 1),
                r.map_or(0, |r| r + 1),
                weight.map_or("?".to_string(), |w| format!("{w}"))
            )
        }
        _ => rule.to_string(),
    }
}

/// Explain the classification of one ticket.
pub fn explain(c: &Classifier, t: &Ticket) -> Explained {
    let cat = c.catalog();
    let cls = c.classify(t.text());
    let decision = Decision::new(cat, t, cls.clone());
    let symptoms: Vec<Found> = cls
        .findings
        .iter()
        .map(|f| {
            let sym = cat.symptom(&f.id);
            Found {
                id: f.id.clone(),
                title: f.title.clone(),
                score: f.score,
                threshold: sym.map_or(1.0, |s| s.threshold),
                colour: f.index,
                defined_at: sym.map_or(String::new(), |s| format!("{}:{}", s.source, s.line)),
                evidence: f
                    .evidence
                    .iter()
                    .map(|e| EvidenceView {
                        field: e.field,
                        text: e.text.clone(),
                        rule: e.rule.clone(),
                        words: rule_words(sym, &e.rule),
                    })
                    .collect(),
            }
        })
        .collect();
    let cancelled = cancelled(c, t.text(), &cls);
    let fields = [("subject", t.subject.as_str()), ("body", t.body.as_str())]
        .into_iter()
        .map(|(name, text)| FieldView {
            name,
            spans: spans(name, text, &cls, cat, &cancelled),
        })
        .collect();
    let notes = [
        (
            "Plain text: Request Tracker (a Comment), webhook, stdout, decisions topic",
            "text",
            Markup::Plain,
        ),
        ("Zendesk, Freshdesk (HTML)", "html", Markup::Html),
        (
            "Jira Service Management (wiki markup)",
            "jira",
            Markup::JiraWiki,
        ),
        ("ServiceNow (journal)", "servicenow", Markup::ServiceNow),
    ]
    .into_iter()
    .map(|(system, markup, m)| NoteView {
        system,
        markup,
        source: if decision.symptoms.is_empty() {
            String::new()
        } else {
            note::render(cat, &decision, m)
        },
    })
    .collect();
    Explained {
        id: t.id.clone(),
        labels: t.labels.clone(),
        symptoms,
        fields,
        cancelled,
        tags: decision.tags,
        notes,
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Cut `text` at every evidence and cancelled boundary.
fn spans(
    field: &str,
    text: &str,
    cls: &Classification,
    cat: &Catalog,
    cancelled: &[CancelledView],
) -> Vec<Span> {
    let mut marks: Vec<(usize, usize, usize, String)> = Vec::new();
    for (i, f) in cls.findings.iter().enumerate() {
        let sym = cat.symptom(&f.id);
        for e in f.evidence.iter().filter(|e| e.field == field) {
            let (s, en) = (floor_char(text, e.start), floor_char(text, e.end));
            if s < en {
                marks.push((s, en, i, rule_words(sym, &e.rule)));
            }
        }
    }
    let cancels: Vec<&CancelledView> = cancelled.iter().filter(|c| c.field == field).collect();
    let mut cuts = vec![0, text.len()];
    for m in &marks {
        cuts.extend([m.0, m.1]);
    }
    for c in &cancels {
        cuts.extend([c.start, c.end]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Span> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a >= b {
            continue;
        }
        let mut on: Vec<(usize, String)> = marks
            .iter()
            .filter(|m| m.0 <= a && b <= m.1)
            .map(|m| (m.2, m.3.clone()))
            .collect();
        on.dedup();
        let cancelled = cancels
            .iter()
            .find(|c| c.start <= a && b <= c.end)
            .map(|c| c.why.clone());
        // Join plain stretches.
        if let Some(last) = out.last_mut() {
            if last.marks == on && last.cancelled == cancelled {
                last.text.push_str(&text[a..b]);
                continue;
            }
        }
        out.push(Span {
            text: text[a..b].to_string(),
            marks: on,
            cancelled,
        });
    }
    out
}

/// Occurrences of `p` in normalised `hay`, on word boundaries as the engine matches them
/// (a trailing plural `s`/`es`; `regist*` continues).
fn occurrences(hay: &str, p: &Phrase) -> Vec<(usize, usize)> {
    let b = hay.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c >= 0x80;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = hay[from..].find(p.text.as_str()) {
        let s = from + i;
        from = s + 1;
        while from < hay.len() && !hay.is_char_boundary(from) {
            from += 1;
        }
        if s > 0 && word(b[s - 1]) {
            continue;
        }
        let mut e = s + p.text.len();
        if p.prefix {
            while e < b.len() && word(b[e]) {
                e += 1;
            }
        } else if e < b.len() && word(b[e]) {
            let plural = match b[e] {
                b's' => 1,
                b'e' if b.get(e + 1) == Some(&b's') => 2,
                _ => continue,
            };
            if b.get(e + plural).is_some_and(|&c| word(c)) {
                continue;
            }
            e += plural;
        }
        out.push((s, e));
    }
    out
}

/// Catalogue phrases in the ticket that are no evidence, with the reason.
fn cancelled(c: &Classifier, t: TicketText<'_>, cls: &Classification) -> Vec<CancelledView> {
    let cat = c.catalog();
    let negation = Negation::new(cat.negations.iter().map(String::as_str));
    let forwarded = classify::is_forward_subject(t.subject);
    let reply_subject = classify::is_reply_subject(t.subject);
    let mut out: Vec<CancelledView> = Vec::new();
    for (field, text) in [("subject", t.subject), ("body", t.body)] {
        let norm: Normalized = c.normalize(text, true);
        let hay = norm.text.as_str();
        let quoted: Vec<zones::Range> = if field == "subject" {
            if reply_subject {
                vec![(0, hay.len() as u32)]
            } else {
                Vec::new()
            }
        } else if norm.lines.len() > 1 {
            let sig = zones::signature_line(text, &norm);
            let (ign, _) = zones::ignored_ranges_and_history(&norm, sig, forwarded);
            let structure = zones::structure_ranges(text, &norm);
            zones::merge(&ign, &structure)
        } else {
            Vec::new()
        };
        let find_in_sentence = |phrases: Vec<&Phrase>, s: usize| {
            let (lo, hi) = classify::sentence(hay, s);
            let (lo, hi) = (
                lo.max(s.saturating_sub(EXCLUDE_REACH)),
                hi.min(s + EXCLUDE_REACH),
            );
            phrases
                .into_iter()
                .find(|p| {
                    occurrences(&hay[..hi.min(hay.len())], p)
                        .iter()
                        .any(|&(a, _)| a >= lo)
                })
                .map(|p| p.text.clone())
        };
        for sym in cat.symptoms.iter() {
            // Words that are evidence of any symptom are shown as evidence, never as cancelled.
            let evidence: Vec<(usize, usize)> = cls
                .findings
                .iter()
                .flat_map(|f| f.evidence.iter())
                .filter(|e| e.field == field)
                .map(|e| (e.start, e.end))
                .collect();
            let groups = sym.together.iter().flat_map(|t| t.groups.iter().flatten());
            let own = sym.keywords.len() + sym.hints.len();
            let mut seen = std::collections::HashSet::new();
            for (ti, term) in sym
                .keywords
                .iter()
                .chain(&sym.hints)
                .chain(groups)
                .enumerate()
            {
                if !seen.insert(&term.phrase) {
                    continue;
                }
                // Co-occurrence groups hold topic words (`@passkey`) that many symptoms share:
                // an exclusion, a resolved phrase or a neighbouring domain of one symptom is
                // shown only for its keywords and hints, which are its own.
                let sentence_reasons = ti < own;
                for (s, e) in occurrences(hay, &term.phrase) {
                    let (ss, se) = norm.source_span(s, e);
                    let (ss, se) = (floor_char(text, ss), floor_char(text, se));
                    if ss >= se || evidence.iter().any(|&(a, b)| a < se && ss < b) {
                        continue;
                    }
                    let why = if zones::contains(&quoted, s as u32) {
                        Some("quoted reply, signature, form field or log: not the writer's words, never evidence".to_string())
                    } else if let Some(&cue) = negation.cues_before(hay, s).first() {
                        let w: String = hay[cue..]
                            .split(|ch: char| !ch.is_alphanumeric() && ch != '\'')
                            .next()
                            .unwrap_or("")
                            .to_string();
                        Some(format!("negated by “{w}”"))
                    } else if let Some(ig) = cat
                        .ignore
                        .iter()
                        .find(|ig| occurrences(hay, ig).iter().any(|&(a, b)| a <= s && e <= b))
                    {
                        Some(format!(
                            "inside “{}”, which [settings] ignore lists",
                            ig.text
                        ))
                    } else if !sentence_reasons {
                        None
                    } else if let Some(x) =
                        find_in_sentence(sym.exclude.iter().map(|t| &t.phrase).collect(), s)
                    {
                        Some(format!(
                            "excluded for {}: “{x}” in the same sentence",
                            sym.id
                        ))
                    } else if let Some(r) = find_in_sentence(cat.resolved.iter().collect(), s) {
                        Some(format!("said to work now (“{r}”)"))
                    } else {
                        find_in_sentence(cat.near_domain.iter().collect(), s)
                            .map(|d| format!("a neighbouring domain (“{d}”) in its sentence"))
                    };
                    let Some(why) = why else { continue };
                    if out
                        .iter()
                        .any(|o| o.field == field && o.start < se && ss < o.end)
                    {
                        continue;
                    }
                    out.push(CancelledView {
                        field,
                        text: text[ss..se].to_string(),
                        why,
                        start: ss,
                        end: se,
                    });
                }
            }
        }
    }
    out.sort_by_key(|c| (c.field != "subject", c.start));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::new(Catalog::builtin()).unwrap()
    }

    fn ticket(subject: &str, body: &str) -> Ticket {
        Ticket {
            id: "t".into(),
            subject: subject.into(),
            body: body.into(),
            ..Ticket::default()
        }
    }

    #[test]
    fn spans_rebuild_the_text_and_carry_the_evidence() {
        let c = classifier();
        let t = ticket(
            "YubiKey PIN blocked",
            "my YubiKey PIN is blocked after too many tries",
        );
        let x = explain(&c, &t);
        assert!(x.symptoms.iter().any(|s| s.id == "pin-locked"), "{x:?}");
        for (f, text) in x.fields.iter().zip([&t.subject, &t.body]) {
            let joined: String = f.spans.iter().map(|s| s.text.as_str()).collect();
            assert_eq!(&joined, text);
        }
        let marked: Vec<&Span> = x.fields[1]
            .spans
            .iter()
            .filter(|s| !s.marks.is_empty())
            .collect();
        assert!(!marked.is_empty());
        assert!(marked
            .iter()
            .any(|s| s.marks.iter().any(|m| m.1.contains('“'))));
        assert!(x.tags.iter().any(|t| t.contains("pin")));
        let html = x.notes.iter().find(|n| n.markup == "html").unwrap();
        assert!(html.source.contains("<p>"), "{}", html.source);
    }

    #[test]
    fn a_negated_phrase_is_shown_as_cancelled() {
        let c = classifier();
        let t = ticket(
            "",
            "My YubiKey PIN is not blocked, the passkey works fine otherwise.",
        );
        let x = explain(&c, &t);
        assert!(
            x.cancelled
                .iter()
                .any(|c| c.why.starts_with("negated by “not”")),
            "{:?}",
            x.cancelled
        );
        let span = x.fields[1]
            .spans
            .iter()
            .find(|s| s.cancelled.is_some())
            .unwrap();
        assert!(t.body.contains(&span.text));
    }

    #[test]
    fn quoted_words_are_shown_as_cancelled() {
        let c = classifier();
        let t = ticket(
            "",
            "Thanks, all good now.\n\nOn Mon, Jan 5, 2026 at 10:00 Alex wrote:\n> my YubiKey PIN is blocked after too many attempts\n",
        );
        let x = explain(&c, &t);
        assert!(x.symptoms.is_empty(), "{:?}", x.symptoms);
        assert!(
            x.cancelled.iter().any(|c| c.why.starts_with("quoted")),
            "{:?}",
            x.cancelled
        );
    }

    #[test]
    fn rules_in_words() {
        assert_eq!(
            rule_words(None, "keyword:pin blocked"),
            "keyword “pin blocked” (score 1)"
        );
        assert!(rule_words(None, "together:0:1:@pin").contains("group 2"));
        assert!(rule_words(None, "pattern:\\bpin\\b").starts_with("regular expression"));
    }
}
