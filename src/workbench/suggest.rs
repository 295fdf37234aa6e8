//! `triage suggest`: phrases that would make a catalogue right on more labelled tickets.
//!
//! For a symptom, among the tickets the catalogue gets wrong:
//! - **missed** tickets (labelled with it, not found): word sequences (one to three words of
//!   normalised text, not starting or ending with a filler word) that many of them share and
//!   that appear mostly in tickets labelled with the symptom are offered as `keywords`;
//! - **false positives** (found, not labelled): word sequences they share and that tickets
//!   labelled with the symptom rarely hold are offered as `unless` phrases.
//!
//! Support is how many of those wrong tickets hold the phrase; precision is, over the whole
//! labelled file, the share of tickets holding it that are labelled with the symptom (for a
//! keyword) or not (for an `unless`). Each offer is then tried for real: the symptom gets the
//! phrase, every ticket holding it is classified again, and the ticket ids it fixes and
//! breaks are listed. Nothing is changed: a person reads the list and decides.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Serialize;

use crate::catalog::{Catalog, Phrase, Term};
use crate::classify::Classifier;
use crate::ticket::Ticket;

/// Words that neither start nor end a suggested phrase.
const FILLER: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "to", "of", "in", "on", "at", "for", "with", "from",
    "by", "is", "are", "was", "were", "be", "been", "it", "its", "it's", "this", "that", "my", "i",
    "i'm", "me", "we", "you", "your", "our", "he", "she", "they", "them", "as", "so", "if", "then",
    "when", "hi", "hello", "thanks", "thank", "please", "regards", "can", "can't", "do", "don't",
    "have", "has", "had", "not", "no", "any", "some", "all", "just", "also", "still", "there",
    "here", "what", "which", "who", "how", "again", "now", "get", "got", "will", "would", "could",
    "should", "der", "die", "das", "und", "ich", "ist", "le", "la", "les", "et", "de", "el", "y",
    "en", "que",
];

/// How many candidate phrases per symptom and kind are tried for real.
const TRIED: usize = 12;

/// What the suggestion adds to the symptom.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// Evidence on its own (score 1).
    Keywords,
    /// Rules the symptom out.
    Unless,
}

impl Field {
    /// The catalogue field's name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Keywords => "keywords",
            Field::Unless => "unless",
        }
    }
}

/// One suggested phrase.
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// Symptom id.
    pub symptom: String,
    /// Where it would go.
    pub field: Field,
    /// The phrase (normalised).
    pub phrase: String,
    /// Wrong tickets of this symptom holding it.
    pub support: usize,
    /// Share of labelled tickets holding it that agree with the field (see the module docs).
    pub precision: f64,
    /// Ticket ids it makes right.
    pub fixes: Vec<String>,
    /// Ticket ids it makes wrong.
    pub breaks: Vec<String>,
}

impl Suggestion {
    /// A TOML line to paste into the symptom's array, with the figures as a comment.
    pub fn toml_line(&self) -> String {
        let quoted = toml::Value::String(self.phrase.clone()).to_string();
        format!(
            "{quoted},  # support {}, precision {:.2}; fixes {}{}; breaks {}{}",
            self.support,
            self.precision,
            self.fixes.len(),
            list(&self.fixes),
            self.breaks.len(),
            list(&self.breaks)
        )
    }
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = ids.iter().take(8).map(String::as_str).collect();
    let more = if ids.len() > 8 {
        format!(", … {} more", ids.len() - 8)
    } else {
        String::new()
    };
    format!(": {}{more}", shown.join(", "))
}

/// Labelled tickets prepared once: normalised text and the current result.
pub struct Prepared {
    texts: Vec<String>,
    labels: Vec<Vec<String>>,
    found: Vec<Vec<String>>,
}

impl Prepared {
    /// Classify and normalise every labelled ticket.
    pub fn new(c: &Classifier, tickets: &[Ticket]) -> Prepared {
        let mut p = Prepared {
            texts: Vec::new(),
            labels: Vec::new(),
            found: Vec::new(),
        };
        for t in tickets {
            let Some(l) = &t.labels else { continue };
            let norm = format!(
                "{}\n{}",
                c.normalize(&t.subject, true).text,
                c.normalize(&t.body, true).text
            );
            p.texts.push(norm);
            p.labels.push(l.clone());
            p.found.push(
                c.classify(t.text())
                    .ids()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            );
        }
        p
    }
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'\''
}

/// Candidate phrases of one text: 1 to 3 words, no filler at either end, 4+ letters.
fn candidates(text: &str, out: &mut HashSet<String>) {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    for n in 1..=3 {
        for w in words.windows(n) {
            if FILLER.contains(&w[0]) || FILLER.contains(&w[n - 1]) {
                continue;
            }
            if w.iter().any(|x| x.bytes().all(|b| b.is_ascii_digit())) {
                continue;
            }
            let p = w.join(" ");
            if p.chars().filter(|c| c.is_alphabetic()).count() >= 4 {
                out.insert(p);
            }
        }
    }
}

/// Which texts hold each phrase on word boundaries.
fn holders(phrases: &[String], texts: &[String]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); phrases.len()];
    if phrases.is_empty() {
        return out;
    }
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(phrases)
        .expect("phrases build an automaton");
    for (ti, t) in texts.iter().enumerate() {
        let b = t.as_bytes();
        let mut seen = HashSet::new();
        for m in ac.find_overlapping_iter(t) {
            let (s, e) = (m.start(), m.end());
            if (s > 0 && word_byte(b[s - 1])) || (e < b.len() && word_byte(b[e])) {
                continue;
            }
            if seen.insert(m.pattern().as_usize()) {
                out[m.pattern().as_usize()].push(ti);
            }
        }
    }
    out
}

fn right(labels: &[String], found: &[String]) -> bool {
    let mut a: Vec<&String> = labels.iter().collect();
    let mut b: Vec<&String> = found.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// Suggestions for `symptom` (or every symptom), best first per symptom and field.
pub fn suggest(
    c: &Classifier,
    tickets: &[Ticket],
    prepared: &Prepared,
    symptom: Option<&str>,
    per_symptom: usize,
) -> Vec<Suggestion> {
    let cat = c.catalog();
    let ids: Vec<String> = tickets
        .iter()
        .filter(|t| t.labels.is_some())
        .map(|t| t.id.clone())
        .collect();
    let labelled: Vec<&Ticket> = tickets.iter().filter(|t| t.labels.is_some()).collect();
    let mut out = Vec::new();
    for (si, sym) in cat.symptoms.iter().enumerate() {
        if symptom.is_some_and(|s| s != sym.id) {
            continue;
        }
        let has = |v: &[String]| v.contains(&sym.id);
        for field in [Field::Keywords, Field::Unless] {
            let wrong: Vec<usize> = (0..prepared.texts.len())
                .filter(|&i| {
                    let (l, f) = (has(&prepared.labels[i]), has(&prepared.found[i]));
                    match field {
                        Field::Keywords => l && !f,
                        Field::Unless => !l && f,
                    }
                })
                .collect();
            if wrong.is_empty() {
                continue;
            }
            let mut df: HashMap<String, usize> = HashMap::new();
            for &i in &wrong {
                let mut set = HashSet::new();
                candidates(&prepared.texts[i], &mut set);
                for p in set {
                    *df.entry(p).or_default() += 1;
                }
            }
            let min_support = if wrong.len() >= 4 { 2 } else { 1 };
            let existing: HashSet<&str> = match field {
                Field::Keywords => sym.keywords.iter(),
                Field::Unless => sym.unless.iter(),
            }
            .map(|t| t.phrase.text.as_str())
            .collect();
            let mut cands: Vec<(String, usize)> = df
                .into_iter()
                .filter(|(p, n)| *n >= min_support && !existing.contains(p.as_str()))
                .collect();
            cands.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then(b.0.len().cmp(&a.0.len()))
                    .then(a.0.cmp(&b.0))
            });
            cands.truncate(TRIED * 5);
            let phrases: Vec<String> = cands.iter().map(|c| c.0.clone()).collect();
            let hold = holders(&phrases, &prepared.texts);
            let mut scored: Vec<(usize, f64, usize)> = Vec::new();
            for (pi, (_, support)) in cands.iter().enumerate() {
                let n = hold[pi].len();
                if n == 0 {
                    continue;
                }
                let agree = hold[pi]
                    .iter()
                    .filter(|&&i| has(&prepared.labels[i]) == (field == Field::Keywords))
                    .count();
                let precision = agree as f64 / n as f64;
                if precision >= 0.5 {
                    scored.push((pi, precision, *support));
                }
            }
            scored.sort_by(|a, b| {
                let ka = a.2 as f64 * a.1;
                let kb = b.2 as f64 * b.1;
                kb.total_cmp(&ka).then(a.0.cmp(&b.0))
            });
            let mut found_here = Vec::new();
            for &(pi, precision, support) in scored.iter().take(TRIED) {
                let phrase = &phrases[pi];
                let Some((fixes, breaks)) =
                    try_phrase(cat, si, field, phrase, &hold[pi], prepared, &labelled, &ids)
                else {
                    continue;
                };
                if fixes.is_empty() {
                    continue;
                }
                found_here.push(Suggestion {
                    symptom: sym.id.clone(),
                    field,
                    phrase: phrase.clone(),
                    support,
                    precision,
                    fixes,
                    breaks,
                });
            }
            found_here.sort_by(|a, b| {
                (b.fixes.len() as isize - b.breaks.len() as isize)
                    .cmp(&(a.fixes.len() as isize - a.breaks.len() as isize))
                    .then(b.precision.total_cmp(&a.precision))
            });
            found_here.truncate(per_symptom);
            out.extend(found_here);
        }
    }
    out
}

/// Add `phrase` to the symptom's `field` and classify again the tickets holding it.
#[allow(clippy::too_many_arguments)]
fn try_phrase(
    cat: &Catalog,
    si: usize,
    field: Field,
    phrase: &str,
    holding: &[usize],
    prepared: &Prepared,
    labelled: &[&Ticket],
    ids: &[String],
) -> Option<(Vec<String>, Vec<String>)> {
    let mut edited = cat.clone();
    let term = Term {
        phrase: Phrase {
            text: phrase.to_string(),
            prefix: false,
        },
        origin: phrase.to_string(),
    };
    match field {
        Field::Keywords => edited.symptoms[si].keywords.push(term),
        Field::Unless => edited.symptoms[si].unless.push(term),
    }
    let c = Classifier::new(edited).ok()?;
    let (mut fixes, mut breaks) = (Vec::new(), Vec::new());
    for &i in holding {
        let now: Vec<String> = c
            .classify(labelled[i].text())
            .ids()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let before = right(&prepared.labels[i], &prepared.found[i]);
        let after = right(&prepared.labels[i], &now);
        if !before && after {
            fixes.push(ids[i].clone());
        } else if before && !after {
            breaks.push(ids[i].clone());
        }
    }
    Some((fixes, breaks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, body: &str, labels: &[&str]) -> Ticket {
        Ticket {
            id: id.into(),
            body: body.into(),
            labels: Some(labels.iter().map(|s| s.to_string()).collect()),
            ..Ticket::default()
        }
    }

    #[test]
    fn a_shared_phrase_of_missed_tickets_is_offered_with_what_it_fixes() {
        let c = Classifier::new(Catalog::builtin()).unwrap();
        let tickets = vec![
            t(
                "m1",
                "my yubikey shows an amber blink pattern after many tries",
                &["pin-locked"],
            ),
            t(
                "m2",
                "security key: amber blink pattern, cannot sign in",
                &["pin-locked"],
            ),
            t(
                "m3",
                "the yubikey went into amber blink pattern mode",
                &["pin-locked"],
            ),
            t("ok", "my YubiKey PIN is blocked", &["pin-locked"]),
            t("off", "printer toner is empty", &[]),
        ];
        let p = Prepared::new(&c, &tickets);
        let s = suggest(&c, &tickets, &p, Some("pin-locked"), 5);
        let best = s
            .iter()
            .find(|s| s.field == Field::Keywords)
            .expect("a keyword");
        assert!(best.phrase.contains("amber blink"), "{s:?}");
        assert_eq!(best.support, 3);
        assert_eq!(best.precision, 1.0);
        assert_eq!(best.fixes, vec!["m1", "m2", "m3"]);
        assert!(best.breaks.is_empty());
        assert!(best.toml_line().starts_with('"'), "{}", best.toml_line());
        assert!(best.toml_line().contains("fixes 3: m1, m2, m3"));
    }
}
