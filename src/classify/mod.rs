//! The matching engine: finds a catalogue's symptoms in ticket text, with evidence.
//!
//! A [`Classifier`] is built once from a [`Catalog`]: every phrase of every symptom (keywords,
//! hints, co-occurrence terms, context terms, exclusions, ignore phrases) goes into **one**
//! Aho-Corasick automaton; the typo lexicon and the regexes are compiled beside it. It holds no
//! mutable state and does no I/O, and cloning it is one reference-count increment, so one
//! build serves every thread.
//!
//! Classifying a ticket, field by field (subject, body):
//! 1. [`normalize`] the text (case, accents, HTML, typography, contractions, typos), keeping a
//!    map back to the original bytes;
//! 2. find the body's quoted replies, signatures and disclaimers ([`zones`]): hits there may
//!    set the topic (`requires`) but are never evidence;
//! 3. scan once with the automaton; keep hits that sit on word boundaries (a trailing plural `s`
//!    is allowed; `regist*` phrases may continue) and drop hits inside ignore phrases;
//! 4. per symptom: no context, no symptom; drop negated hits ([`negation`]) and hits in a
//!    sentence that holds one of the symptom's exclusions; score keywords (1), hints (0.5),
//!    co-occurrences (their weight, when all groups meet in one sentence) and regexes (1, run
//!    only once the context is there);
//! 5. report symptoms whose score reaches their threshold, with evidence as byte offsets into
//!    the original field, strongest first; a symptom that `overrides` another hides it unless
//!    the other scores higher.

pub mod fuzzy;
pub mod negation;
pub mod normalize;
pub mod zones;

use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::catalog::{Catalog, Phrase, Term};
use fuzzy::Lexicon;
use negation::Negation;
use normalize::Normalized;

/// Largest distance, in bytes of normalised text, between the hits of one co-occurrence.
pub const MAX_TOGETHER_SPAN: usize = 160;
/// How far, in bytes, an exclusion reaches either side of itself within its sentence.
pub const EXCLUDE_REACH: usize = 100;
/// How far a sentence may reach either side of a hit before it is cut.
const MAX_SENTENCE_REACH: usize = 400;

/// Words typo correction never touches, whatever the catalogue says: real words one edit away
/// from common catalogue words.
const BUILTIN_KEEP: &[&str] = &[
    "blocker", "blockers", "window", "clocked", "flocked", "allowed", "enables", "connects",
    "sighed", "singed", "resigned", "designed", "inserts",
];

/// The fields of a ticket that are classified, in the order evidence reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TicketText<'a> {
    /// The subject line.
    pub subject: &'a str,
    /// The body: plain text or HTML.
    pub body: &'a str,
}

/// One piece of evidence: which rule matched which text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evidence {
    /// `subject` or `body`.
    pub field: &'static str,
    /// Byte offset into the original field.
    pub start: usize,
    /// Byte offset (exclusive) into the original field.
    pub end: usize,
    /// The original text at `start..end`.
    pub text: String,
    /// The rule: `keyword:<as written>`, `hint:…`, `together:<n>:<term>`, `pattern:<n>`,
    /// or `context:<term>` for the hit that satisfied `requires`.
    pub rule: String,
}

/// A symptom found in a ticket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    /// Index into the catalogue's symptoms.
    #[serde(skip)]
    pub index: usize,
    /// The symptom id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Sum of the weights of the distinct rules that matched.
    pub score: f32,
    /// Why.
    pub evidence: Vec<Evidence>,
}

/// The symptoms found in one ticket, strongest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    /// Found symptoms.
    pub findings: Vec<Finding>,
}

impl Classification {
    /// The ids found.
    pub fn ids(&self) -> Vec<&str> {
        self.findings.iter().map(|f| f.id.as_str()).collect()
    }
}

/// What an automaton pattern is used for.
#[derive(Debug, Clone, Copy)]
enum Use {
    Ignore,
    Requires { s: u32 },
    Keyword { s: u32 },
    Hint { s: u32 },
    Group { s: u32, rule: u32, group: u32 },
    Exclude { s: u32 },
    Unless { s: u32 },
    /// A catalogue-wide "this part works now" phrase: excludes like `Exclude`, for every symptom.
    Resolved,
}

#[derive(Debug, Clone)]
struct PatInfo {
    prefix: bool,
    uses: Vec<Use>,
    /// Author's name for it, per use (parallel to `uses`).
    origins: Vec<Arc<str>>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    ac: AhoCorasick,
    pats: Vec<PatInfo>,
    lexicon: Lexicon,
    negation: Negation,
    /// For each symptom, indexes of the symptoms it overrides.
    overrides: Vec<Vec<usize>>,
}

/// A compiled catalogue, ready to classify. Cheap to clone and share across threads.
#[derive(Debug, Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

/// A classifier could not be built. Not retryable: the catalogue must change.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The automaton could not be built (too many or too long phrases).
    #[error("cannot build the keyword automaton: {0}")]
    Automaton(String),
}

impl Classifier {
    /// Compile `catalog`.
    pub fn new(catalog: Catalog) -> Result<Classifier, BuildError> {
        Classifier::from_arc(Arc::new(catalog))
    }

    /// Compile a shared catalogue.
    pub fn from_arc(catalog: Arc<Catalog>) -> Result<Classifier, BuildError> {
        let mut index: std::collections::HashMap<Phrase, usize> = Default::default();
        let mut pats: Vec<PatInfo> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut add = |p: &Phrase, u: Use, origin: &str| {
            let i = *index.entry(p.clone()).or_insert_with(|| {
                texts.push(p.text.clone());
                pats.push(PatInfo {
                    prefix: p.prefix,
                    uses: Vec::new(),
                    origins: Vec::new(),
                });
                pats.len() - 1
            });
            pats[i].uses.push(u);
            pats[i].origins.push(origin.into());
        };
        for p in &catalog.ignore {
            add(p, Use::Ignore, "ignore");
        }
        for p in &catalog.resolved {
            add(p, Use::Resolved, "resolved");
        }
        for (si, s) in catalog.symptoms.iter().enumerate() {
            let s32 = si as u32;
            let each = |ts: &[Term], u: Use, add: &mut dyn FnMut(&Phrase, Use, &str)| {
                for t in ts {
                    add(&t.phrase, u, &t.origin);
                }
            };
            each(&s.requires, Use::Requires { s: s32 }, &mut add);
            each(&s.keywords, Use::Keyword { s: s32 }, &mut add);
            each(&s.hints, Use::Hint { s: s32 }, &mut add);
            each(&s.exclude, Use::Exclude { s: s32 }, &mut add);
            each(&s.unless, Use::Unless { s: s32 }, &mut add);
            for (ri, t) in s.together.iter().enumerate() {
                for (gi, g) in t.groups.iter().enumerate() {
                    each(
                        g,
                        Use::Group {
                            s: s32,
                            rule: ri as u32,
                            group: gi as u32,
                        },
                        &mut add,
                    );
                }
            }
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&texts)
            .or_else(|_| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .build(&texts)
            })
            .map_err(|e| BuildError::Automaton(e.to_string()))?;
        let words = texts
            .iter()
            .flat_map(|t| t.split(|c: char| !c.is_ascii_lowercase()))
            .filter(|w| w.len() >= fuzzy::MIN_LEN);
        let keep: Vec<&str> = BUILTIN_KEEP
            .iter()
            .copied()
            .chain(catalog.keep_words.iter().map(String::as_str))
            .collect();
        let lexicon = Lexicon::new(words, keep);
        let negation = Negation::new(catalog.negations.iter().map(String::as_str));
        let overrides = catalog
            .symptoms
            .iter()
            .map(|s| {
                s.overrides
                    .iter()
                    .filter_map(|o| catalog.symptoms.iter().position(|x| &x.id == o))
                    .collect()
            })
            .collect();
        Ok(Classifier {
            inner: Arc::new(Inner {
                catalog,
                ac,
                pats,
                lexicon,
                negation,
                overrides,
            }),
        })
    }

    /// The catalogue this classifier was built from.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// Every phrase in the automaton (for benchmarks that compare against a raw scan).
    pub fn phrases(&self) -> Vec<String> {
        let mut v: Vec<(usize, String)> = Vec::new();
        // Reconstruct in pattern order from the automaton is not exposed; rebuild from catalogue.
        let c = &self.inner.catalog;
        let mut push = |p: &Phrase| v.push((v.len(), p.text.clone()));
        c.ignore.iter().for_each(&mut push);
        for s in &c.symptoms {
            for t in s
                .requires
                .iter()
                .chain(&s.keywords)
                .chain(&s.hints)
                .chain(&s.exclude)
                .chain(&s.unless)
                .chain(c.resolved.iter().map(|p| Term { phrase: p.clone(), origin: String::new() }).collect::<Vec<_>>().iter())
                .chain(s.together.iter().flat_map(|t| t.groups.iter().flatten()))
            {
                push(&t.phrase);
            }
        }
        let mut out: Vec<String> = v.into_iter().map(|(_, s)| s).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Number of words in the typo lexicon.
    pub fn lexicon_len(&self) -> usize {
        self.inner.lexicon.len()
    }

    /// Find the catalogue's symptoms in a ticket.
    pub fn classify(&self, ticket: TicketText<'_>) -> Classification {
        let inner = &*self.inner;
        let fields: [(&'static str, &str); 2] = [("subject", ticket.subject), ("body", ticket.body)];
        let mut scanned: Vec<Field> = Vec::with_capacity(2);
        let mut hits: Vec<Hit> = Vec::new();
        let forwarded = is_forward_subject(ticket.subject);
        // A reply's subject names the thread's first problem, which may be solved by now.
        let reply_subject = is_reply_subject(ticket.subject);
        for (fi, (name, text)) in fields.iter().enumerate() {
            if text.is_empty() {
                scanned.push(Field::empty(name, text));
                continue;
            }
            let norm = normalize::normalize_auto(text, Some(&inner.lexicon));
            let ignored = if fi == 1 {
                zones::ignored_ranges(&norm, zones::signature_line(text, &norm), forwarded)
            } else {
                Vec::new()
            };
            let hay = norm.text.as_bytes();
            for m in inner.ac.find_overlapping_iter(&norm.text) {
                let (s, e) = (m.start(), m.end());
                let info = &inner.pats[m.pattern().as_usize()];
                if s > 0 && is_word(hay[s - 1]) {
                    continue;
                }
                let mut end = e;
                if !info.prefix && e < hay.len() && is_word(hay[e]) {
                    // A plural `s`/`es` may follow.
                    let plural = if hay[e] == b's' {
                        1
                    } else if hay[e] == b'e' && hay.get(e + 1) == Some(&b's') {
                        2
                    } else {
                        0
                    };
                    if plural == 0 || hay.get(e + plural).is_some_and(|&b| is_word(b)) {
                        continue;
                    }
                    end = e + plural;
                }
                if info.prefix {
                    while end < hay.len() && is_word(hay[end]) {
                        end += 1;
                    }
                }
                let quoted = (fi == 0 && reply_subject)
                    || (!ignored.is_empty() && zones::contains(&ignored, s as u32));
                hits.push(Hit {
                    field: fi as u8,
                    start: s as u32,
                    end: end as u32,
                    pat: m.pattern().as_u32(),
                    quoted,
                });
            }
            scanned.push(Field {
                name,
                source: text,
                norm,
                ignored,
            });
        }
        if hits.is_empty() && !inner.catalog.symptoms.iter().any(|s| s.requires.is_empty() && !s.patterns.is_empty()) {
            return Classification::default();
        }
        self.score(&scanned, hits)
    }

    fn score(&self, fields: &[Field], mut hits: Vec<Hit>) -> Classification {
        let inner = &*self.inner;
        let cat = &inner.catalog;
        // Ignore phrases hide the hits inside them.
        let ignores: Vec<Hit> = hits
            .iter()
            .copied()
            .filter(|h| inner.pats[h.pat as usize].uses.iter().any(|u| matches!(u, Use::Ignore)))
            .collect();
        if !ignores.is_empty() {
            hits.retain(|h| {
                !ignores.iter().any(|g| {
                    g.field == h.field
                        && g.start <= h.start
                        && h.end <= g.end
                        && (g.start, g.end) != (h.start, h.end)
                })
            });
        }
        // Group hits by symptom.
        let n = cat.symptoms.len();
        let mut per: Vec<Vec<(Hit, Use, Arc<str>)>> = vec![Vec::new(); n];
        let mut resolved: Vec<Hit> = Vec::new();
        for h in &hits {
            let info = &inner.pats[h.pat as usize];
            for (u, o) in info.uses.iter().zip(&info.origins) {
                let s = match *u {
                    Use::Ignore => continue,
                    Use::Resolved => {
                        if !h.quoted {
                            resolved.push(*h);
                        }
                        continue;
                    }
                    // Quoted text may set the topic, never provide evidence.
                    Use::Requires { s } => s,
                    _ if h.quoted => continue,
                    Use::Unless { s } => s,
                    Use::Keyword { s }
                    | Use::Hint { s }
                    | Use::Group { s, .. }
                    | Use::Exclude { s } => s,
                };
                per[s as usize].push((*h, *u, o.clone()));
            }
        }
        let mut findings = Vec::new();
        for (si, sym) in cat.symptoms.iter().enumerate() {
            let own = &per[si];
            if own.is_empty() && !(sym.requires.is_empty() && !sym.patterns.is_empty()) {
                continue;
            }
            // A ticket-wide exclusion in the ticket's own words rules the symptom out.
            if own
                .iter()
                .any(|(h, u, _)| matches!(u, Use::Unless { .. }) && !h.quoted)
            {
                continue;
            }
            // Context: a topic word not itself negated ("not a security key problem").
            let context = own
                .iter()
                .filter(|(h, u, _)| {
                    matches!(u, Use::Requires { .. }) && !negated(&own, fields, h, &inner.negation)
                })
                .min_by_key(|(h, _, _)| h.quoted);
            if !sym.requires.is_empty() && context.is_none() {
                continue;
            }
            // An exclusion inside the symptom's own evidence ("sign in" inside "add sign-in
            // method") excludes nothing.
            let inside_own = |x: &Hit| {
                own.iter().any(|(h, u, _)| {
                    !matches!(u, Use::Exclude { .. } | Use::Requires { .. } | Use::Unless { .. })
                        && h.field == x.field
                        && h.start <= x.start
                        && x.end <= h.end
                })
            };
            let excluded: Vec<(u8, usize, usize)> = own
                .iter()
                .filter(|(h, u, _)| matches!(u, Use::Exclude { .. }) && !inside_own(h))
                .map(|(h, _, _)| h)
                .chain(resolved.iter())
                .map(|h| {
                    // The exclusion's sentence, but no further than EXCLUDE_REACH either side:
                    // unpunctuated text makes for very long sentences.
                    let (a, b) = sentence(&fields[h.field as usize].norm.text, h.start as usize);
                    let lo = (h.start as usize).saturating_sub(EXCLUDE_REACH).max(a);
                    let hi = (h.end as usize + EXCLUDE_REACH).min(b.max(a));
                    (h.field, lo, hi)
                })
                .collect();
            let counts = |field: u8, start: usize, end: usize| -> bool {
                let f = &fields[field as usize];
                if excluded
                    .iter()
                    .any(|&(ef, a, b)| ef == field && a <= start && start < b.max(a + 1))
                {
                    return false;
                }
                let _ = f;
                let probe = Hit {
                    field,
                    start: start as u32,
                    end: end as u32,
                    pat: 0,
                    quoted: false,
                };
                !negated(&own, fields, &probe, &inner.negation) || end == start
            };
            let mut evidence: Vec<Evidence> = Vec::new();
            let mut score = 0f32;
            let mut seen_rules: Vec<(u8, u32)> = Vec::new();
            // Keywords and hints.
            for (h, u, origin) in own {
                let (w, kind, tag) = match u {
                    Use::Keyword { .. } => (1.0, "keyword", 0u8),
                    Use::Hint { .. } => (0.5, "hint", 1u8),
                    _ => continue,
                };
                if !counts(h.field, h.start as usize, h.end as usize) {
                    continue;
                }
                let key = (tag, h.pat);
                if !seen_rules.contains(&key) {
                    seen_rules.push(key);
                    score += w;
                }
                evidence.push(fields[h.field as usize].evidence(h.start as usize, h.end as usize, format!("{kind}:{origin}")));
            }
            // Co-occurrences.
            for (ri, t) in sym.together.iter().enumerate() {
                let ri = ri as u32;
                let groups = t.groups.len() as u32;
                let valid: Vec<(&Hit, u32, &Arc<str>)> = own
                    .iter()
                    .filter_map(|(h, u, o)| match u {
                        Use::Group { rule, group, .. } if *rule == ri => Some((h, *group, o)),
                        _ => None,
                    })
                    .filter(|(h, _, _)| counts(h.field, h.start as usize, h.end as usize))
                    .collect();
                if (0..groups).any(|g| !valid.iter().any(|(_, vg, _)| *vg == g)) {
                    continue;
                }
                'anchor: for (a, ag, _) in valid.iter().filter(|(_, g, _)| *g == 0) {
                    let _ = ag;
                    let text = &fields[a.field as usize].norm.text;
                    let (ss, se) = match t.within {
                        Some(_) => (0, text.len()),
                        None => sentence(text, a.start as usize),
                    };
                    let max_span = t.within.unwrap_or(MAX_TOGETHER_SPAN);
                    let mut chosen = vec![*a];
                    for g in 1..groups {
                        let pick = valid.iter().find(|(h, vg, _)| {
                            *vg == g
                                && h.field == a.field
                                && (h.start as usize) >= ss
                                && (h.end as usize) <= se.max(ss)
                                && span(a, h) <= max_span
                        });
                        match pick {
                            Some((h, _, _)) => chosen.push(h),
                            None => continue 'anchor,
                        }
                    }
                    score += t.weight;
                    for (k, h) in chosen.iter().enumerate() {
                        let o = valid.iter().find(|(x, _, _)| std::ptr::eq(*x, *h)).map(|v| v.2.as_ref()).unwrap_or("");
                        evidence.push(fields[h.field as usize].evidence(
                            h.start as usize,
                            h.end as usize,
                            format!("together:{ri}:{k}:{o}"),
                        ));
                    }
                    break;
                }
            }
            // Regexes, once the context is there.
            for (pi, p) in sym.patterns.iter().enumerate() {
                let mut matched = false;
                for (fi, f) in fields.iter().enumerate() {
                    for m in p.regex.find_iter(&f.norm.text) {
                        if m.start() == m.end() || zones::contains(&f.ignored, m.start() as u32) {
                            continue;
                        }
                        if !counts(fi as u8, m.start(), m.end()) {
                            continue;
                        }
                        evidence.push(f.evidence(m.start(), m.end(), format!("pattern:{pi}")));
                        matched = true;
                        break;
                    }
                    if matched {
                        break;
                    }
                }
                if matched {
                    score += 1.0;
                }
            }
            if score + f32::EPSILON < sym.threshold || score == 0.0 {
                continue;
            }
            if let Some((h, _, o)) = context {
                evidence.push(fields[h.field as usize].evidence(h.start as usize, h.end as usize, format!("context:{o}")));
            }
            evidence.sort_by(|a, b| (a.field != "subject", a.start, a.end).cmp(&(b.field != "subject", b.start, b.end)));
            evidence.dedup_by(|a, b| a.field == b.field && a.start == b.start && a.end == b.end);
            findings.push(Finding {
                index: si,
                id: sym.id.clone(),
                title: sym.title.clone(),
                score: (score * 100.0).round() / 100.0,
                evidence,
            });
        }
        // Overrides.
        let scores: Vec<(usize, f32)> = findings.iter().map(|f| (f.index, f.score)).collect();
        findings.retain(|f| {
            !scores.iter().any(|&(o, score)| {
                o != f.index && inner.overrides[o].contains(&f.index) && score >= f.score
            })
        });
        // A weak finding (less than twice its threshold) beside a much stronger one is
        // usually a side remark.
        let top = findings.iter().map(|f| f.score).fold(0f32, f32::max);
        let floor = top * cat.relative_threshold;
        findings.retain(|f| {
            f.score + f32::EPSILON >= floor
                || f.score + f32::EPSILON >= 2.0 * cat.symptoms[f.index].threshold
        });
        findings.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        Classification { findings }
    }
}

/// Whether `hit` is negated: a cue stands before it that is not part of the symptom's own
/// evidence ("no passkey option" is evidence, not a negation of "passkey option").
fn negated(own: &[(Hit, Use, Arc<str>)], fields: &[Field], hit: &Hit, negation: &Negation) -> bool {
    let text = &fields[hit.field as usize].norm.text;
    let cues = negation.cues_before(text, hit.start as usize);
    cues.iter().any(|&c| {
        !own.iter().any(|(h, u, _)| {
            !matches!(u, Use::Exclude { .. } | Use::Unless { .. } | Use::Requires { .. })
                && h.field == hit.field
                && (h.start as usize) <= c
                && c < h.end as usize
        })
    })
}

fn span(a: &Hit, b: &Hit) -> usize {
    let lo = a.start.min(b.start) as usize;
    let hi = a.end.max(b.end) as usize;
    hi - lo
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    field: u8,
    start: u32,
    end: u32,
    pat: u32,
    /// In a quoted reply, signature or disclaimer: context only, never evidence.
    quoted: bool,
}

struct Field<'a> {
    name: &'static str,
    source: &'a str,
    norm: Normalized,
    ignored: Vec<zones::Range>,
}

impl<'a> Field<'a> {
    fn empty(name: &'static str, source: &'a str) -> Field<'a> {
        Field {
            name,
            source,
            norm: Normalized::default(),
            ignored: Vec::new(),
        }
    }

    fn evidence(&self, start: usize, end: usize, rule: String) -> Evidence {
        let (s, e) = self.norm.source_span(start, end);
        let (s, e) = normalize::clamp_to_chars(self.source, s, e);
        Evidence {
            field: self.name,
            start: s,
            end: e,
            text: self.source[s..e].to_string(),
            rule,
        }
    }
}

/// Whether a subject line marks a reply: `Re:`, `AW:`, `RE :`, `RV:` is a forward elsewhere.
pub fn is_reply_subject(subject: &str) -> bool {
    let lower: String = subject.trim_start().chars().take(4).collect::<String>().to_ascii_lowercase();
    lower.starts_with("re:") || lower.starts_with("aw:") || lower.starts_with("re :")
}

/// Whether a subject line marks a forward: `Fw:`, `Fwd:`, `WG:`, `TR:`, `RV:`, possibly after
/// `Re:` prefixes.
pub fn is_forward_subject(subject: &str) -> bool {
    let mut s = subject.trim_start();
    loop {
        let lower: String = s.chars().take(5).collect::<String>().to_ascii_lowercase();
        if lower.starts_with("re:") || lower.starts_with("aw:") {
            s = s[3..].trim_start();
            continue;
        }
        return ["fw:", "fwd:", "wg:", "tr:", "rv:", "fw :", "tr :"]
            .iter()
            .any(|p| lower.starts_with(p));
    }
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// The sentence around `pos`: bounded by `. ! ? ;` (a `.` only before a space or the end),
/// a blank line, or [`MAX_SENTENCE_REACH`] bytes either way.
pub fn sentence(text: &str, pos: usize) -> (usize, usize) {
    let b = text.as_bytes();
    let is_end = |i: usize| -> bool {
        match b[i] {
            b'!' | b'?' | b';' | b'\n' => true,
            b'.' => i + 1 >= b.len() || matches!(b[i + 1], b' ' | b'\n'),
            _ => false,
        }
    };
    let lo_limit = pos.saturating_sub(MAX_SENTENCE_REACH);
    let mut start = pos.min(b.len());
    while start > lo_limit && !is_end(start - 1) {
        start -= 1;
    }
    let hi_limit = (pos + MAX_SENTENCE_REACH).min(b.len());
    let mut end = pos;
    while end < hi_limit && !is_end(end) {
        end += 1;
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_bounds() {
        let t = "first one. the pin is locked; third";
        let p = t.find("pin").unwrap();
        assert_eq!(&t[sentence(t, p).0..sentence(t, p).1], " the pin is locked");
        let t = "see aka.ms/x now";
        assert_eq!(sentence(t, 5), (0, t.len()));
    }

    #[test]
    fn classifier_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Classifier>();
    }
}
