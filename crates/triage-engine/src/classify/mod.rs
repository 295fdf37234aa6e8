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
//!    only once the context is there); in a short reply (fewer than [`SHORT_REPLY`] bytes of
//!    its own words), a subject or quoted hit naming the symptom's object (one of its topic
//!    words) may complete a co-occurrence whose state is in the reply's own words;
//! 5. report symptoms whose score reaches their threshold, with evidence as byte offsets into
//!    the original field, strongest first; a symptom that `overrides` another hides it unless
//!    the other scores higher; a weak finding beside a much stronger one is dropped as a side
//!    remark unless it is the strongest (within the relative threshold) of its own segment: a
//!    list item or a user's chat turn ([`zones::segments`]).

pub mod negation;
pub mod zones;

// Normalisation and the typo lexicon are shared with the catalogue, which normalises its
// phrases as it loads them: they live in `text`, which neither module depends on.
pub use crate::text::{fuzzy, normalize};

use std::hash::BuildHasherDefault;
use std::sync::Arc;

use aho_corasick::automaton::Automaton;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Anchored, MatchKind};

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
/// A reply whose own words (normalised, quoted history left out) are fewer bytes than this is
/// a short reply: "still not there after the update". Its topic may come from the thread.
pub const SHORT_REPLY: usize = 200;

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
    /// The evidence named for people, one line per rule ("security key + locked, within 60
    /// characters: “YubiKey”, “locked”"); filled by [`crate::reply::explain`] when a decision
    /// is made, empty until then.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub why: Vec<String>,
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
    Requires {
        s: u32,
    },
    Keyword {
        s: u32,
    },
    Hint {
        s: u32,
    },
    Group {
        s: u32,
        rule: u32,
        group: u32,
    },
    Exclude {
        s: u32,
    },
    Unless {
        s: u32,
    },
    /// A catalogue-wide "this part works now" phrase: excludes like `Exclude`, for every symptom.
    Resolved,
    /// A neighbouring domain named (smart card, GPG): excludes like `Resolved`; in the subject,
    /// the whole ticket.
    NearDomain,
}

#[derive(Debug, Clone)]
struct PatInfo {
    /// `regist*`: the last word may continue.
    prefix: bool,
    /// Whether it is a catalogue-wide ignore phrase.
    ignore: bool,
    /// What the phrase is used for, by which symptom.
    uses: Vec<Use>,
    /// Author's name for it, per use (parallel to `uses`).
    origins: Vec<Box<str>>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    ac: Scanner,
    pats: Vec<PatInfo>,
    lexicon: Lexicon,
    negation: Negation,
    /// For each symptom, indexes of the symptoms it overrides.
    overrides: Vec<Vec<usize>>,
    /// Some symptom has regexes and no context: every ticket must be scored.
    always_run: bool,
    /// The automaton's phrases, in pattern order.
    texts: Vec<String>,
}

/// The keyword automaton. Normally a DFA that [`Scanner::for_each_match`] walks itself, one
/// table look-up per byte and no call per match; the library's own search when the phrases
/// are too many for a DFA.
#[derive(Debug)]
enum Scanner {
    Dfa(Box<aho_corasick::dfa::DFA>),
    Other(AhoCorasick),
}

impl Scanner {
    fn build(texts: &[String]) -> Result<Scanner, BuildError> {
        let dfa = aho_corasick::dfa::DFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(texts);
        match dfa {
            Ok(dfa) if dfa.start_state(Anchored::No).is_ok() => Ok(Scanner::Dfa(Box::new(dfa))),
            _ => Scanner::build_library(texts),
        }
    }

    /// The library's own overlapping search, for phrase sets too large for a DFA.
    fn build_library(texts: &[String]) -> Result<Scanner, BuildError> {
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(texts)
            .map(Scanner::Other)
            .map_err(|e| BuildError::Automaton(e.to_string()))
    }

    /// Calls `f(start, end, pattern)` for every occurrence of every phrase in `hay`,
    /// overlapping ones included, in the order of the library's overlapping search: by end
    /// offset, then in the order the automaton state lists its matches.
    #[inline]
    fn for_each_match(&self, hay: &[u8], mut f: impl FnMut(usize, usize, u32)) {
        let dfa = match self {
            Scanner::Dfa(dfa) => dfa,
            Scanner::Other(ac) => {
                for m in ac.find_overlapping_iter(hay) {
                    f(m.start(), m.end(), m.pattern().as_u32());
                }
                return;
            }
        };
        #[inline(always)]
        fn report(
            dfa: &aho_corasick::dfa::DFA,
            sid: aho_corasick::automaton::StateID,
            end: usize,
            f: &mut impl FnMut(usize, usize, u32),
        ) {
            for k in 0..dfa.match_len(sid) {
                let pid = dfa.match_pattern(sid, k);
                f(end - dfa.pattern_len(pid), end, pid.as_u32());
            }
        }
        // Checked when the scanner was built.
        let Ok(mut sid) = dfa.start_state(Anchored::No) else {
            return;
        };
        if dfa.is_match(sid) {
            report(dfa, sid, 0, &mut f);
        }
        for (i, &b) in hay.iter().enumerate() {
            sid = dfa.next_state(Anchored::No, sid, b);
            if dfa.is_special(sid) {
                if dfa.is_dead(sid) {
                    return;
                }
                if dfa.is_match(sid) {
                    report(dfa, sid, i + 1, &mut f);
                }
            }
        }
    }
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
                    ignore: false,
                    uses: Vec::new(),
                    origins: Vec::new(),
                });
                pats.len() - 1
            });
            pats[i].ignore |= matches!(u, Use::Ignore);
            pats[i].uses.push(u);
            pats[i].origins.push(origin.into());
        };
        for p in &catalog.ignore {
            add(p, Use::Ignore, "ignore");
        }
        for p in &catalog.resolved {
            add(p, Use::Resolved, "resolved");
        }
        for p in &catalog.near_domain {
            add(p, Use::NearDomain, "near-domain");
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
        let ac = Scanner::build(&texts)?;
        let words = texts
            .iter()
            .flat_map(|t| t.split(|c: char| !c.is_ascii_lowercase()))
            .filter(|w| w.len() >= fuzzy::MIN_LEN);
        let keep: Vec<&str> = BUILTIN_KEEP
            .iter()
            .copied()
            .chain(catalog.keep_words.iter().map(String::as_str))
            .collect();
        let lexicon = Lexicon::new(words, keep).with_shorthand(
            catalog
                .shorthand
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let negation = Negation::new(catalog.negations.iter().map(String::as_str));
        let always_run = catalog
            .symptoms
            .iter()
            .any(|s| s.requires.is_empty() && !s.patterns.is_empty());
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
                always_run,
                texts,
            }),
        })
    }

    /// The catalogue this classifier was built from.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// Every phrase in the automaton, in pattern order (for benchmarks that compare against a
    /// raw scan of the same phrases).
    pub fn phrases(&self) -> &[String] {
        &self.inner.texts
    }

    /// The normalised form of one field, as the automaton sees it (for `--explain`-style
    /// tooling and benchmarks). `typos: false` skips typo correction.
    pub fn normalize(&self, text: &str, typos: bool) -> Normalized {
        normalize::normalize_auto(text, typos.then_some(&self.inner.lexicon))
    }

    /// Number of words in the typo lexicon.
    pub fn lexicon_len(&self) -> usize {
        self.inner.lexicon.len()
    }

    /// Find the catalogue's symptoms in a ticket.
    pub fn classify(&self, ticket: TicketText<'_>) -> Classification {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.classify_with(ticket, &mut scratch),
            Err(_) => self.classify_with(ticket, &mut Scratch::default()),
        })
    }

    fn classify_with(&self, ticket: TicketText<'_>, scratch: &mut Scratch) -> Classification {
        let inner = &*self.inner;
        let forwarded = is_forward_subject(ticket.subject);
        // A reply's subject names the thread's first problem, which may be solved by now.
        let reply_subject = is_reply_subject(ticket.subject);
        let texts = [ticket.subject, ticket.body];
        let Scratch {
            norms,
            ignored,
            hits,
            cues,
            segments,
        } = scratch;
        hits.clear();
        let mut history = false;
        for fi in 0..2 {
            let text = texts[fi];
            let norm = &mut norms[fi];
            let ign = &mut ignored[fi];
            ign.clear();
            // 1. Normalise.
            normalize::normalize_auto_into(text, Some(&inner.lexicon), norm);
            // 2. Zones: quoted replies, signatures, disclaimers.
            if fi == 1 && norm.lines.len() > 1 {
                let sig = zones::signature_line(text, norm);
                (*ign, history) = zones::ignored_ranges_and_history(norm, sig, forwarded);
                // Issue-form fields, code blocks, logs: context, never evidence.
                let structure = zones::structure_ranges(text, norm);
                if !structure.is_empty() {
                    *ign = zones::merge(ign, &structure);
                }
            }
            // 3. One scan of the automaton.
            let hay = norm.text.as_bytes();
            inner.ac.for_each_match(hay, |s, e, pat| {
                if s > 0 && is_word(hay[s - 1]) {
                    return;
                }
                let info = &inner.pats[pat as usize];
                let mut end = e;
                if info.prefix {
                    while end < hay.len() && is_word(hay[end]) {
                        end += 1;
                    }
                } else if e < hay.len() && is_word(hay[e]) {
                    // A plural `s`/`es` may follow.
                    let plural = match hay[e] {
                        b's' => 1,
                        b'e' if hay.get(e + 1) == Some(&b's') => 2,
                        _ => return,
                    };
                    if hay.get(e + plural).is_some_and(|&b| is_word(b)) {
                        return;
                    }
                    end = e + plural;
                }
                let quoted = (fi == 0 && reply_subject)
                    || (!ign.is_empty() && zones::contains(ign, s as u32));
                hits.push(Hit {
                    field: fi as u8,
                    start: s as u32,
                    end: end as u32,
                    pat,
                    quoted,
                });
            });
        }
        if hits.is_empty() && !inner.always_run {
            return Classification::default();
        }
        let fields = [
            Field {
                name: "subject",
                source: texts[0],
                norm: &norms[0],
                ignored: &ignored[0],
            },
            Field {
                name: "body",
                source: texts[1],
                norm: &norms[1],
                ignored: &ignored[1],
            },
        ];
        // A short reply: the thread (subject, quoted history) may name the object, while the
        // state must come from the reply's own words.
        let thread = (reply_subject || history) && {
            let quoted: u32 = ignored[1].iter().map(|r| r.1 - r.0).sum();
            (norms[1].text.len() as u32).saturating_sub(quoted) < SHORT_REPLY as u32
        };
        cues.clear();
        self.score(&fields, hits, cues, segments, thread)
    }

    /// Steps 4 and 5: per-symptom evidence, scores, and the final choice.
    ///
    /// `thread`: the ticket is a short reply, whose quoted hits naming a symptom's object may
    /// complete that symptom's co-occurrences.
    fn score(
        &self,
        fields: &[Field; 2],
        hits: &mut Vec<Hit>,
        cues: &mut CueCache,
        segments: &mut Vec<zones::Segment>,
        thread: bool,
    ) -> Classification {
        let inner = &*self.inner;
        let cat = &inner.catalog;
        // Ignore phrases hide the hits inside them.
        let has_ignore = hits.iter().any(|h| inner.pats[h.pat as usize].ignore);
        if has_ignore {
            let ignores: Vec<Hit> = hits
                .iter()
                .copied()
                .filter(|h| inner.pats[h.pat as usize].ignore)
                .collect();
            hits.retain(|h| {
                !ignores.iter().any(|g| {
                    g.field == h.field
                        && g.start <= h.start
                        && h.end <= g.end
                        && (g.start, g.end) != (h.start, h.end)
                })
            });
        }
        // Every use of every hit, grouped by symptom.
        let mut uses: Vec<Own> = Vec::with_capacity(hits.len() * 2);
        let mut resolved: Vec<Hit> = Vec::new();
        let mut elsewhere = false;
        for h in hits.iter() {
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
                    Use::NearDomain => {
                        if h.field == 0 {
                            elsewhere = true;
                        } else if !h.quoted {
                            resolved.push(*h);
                        }
                        continue;
                    }
                    // Quoted text may set the topic, never provide evidence.
                    Use::Requires { s } => s,
                    // In a short reply, a quoted word that names the symptom's object (one of
                    // its topic words) may stand in for the object of a co-occurrence.
                    Use::Group { s, .. } if h.quoted => {
                        let object = info
                            .uses
                            .iter()
                            .any(|u| matches!(*u, Use::Requires { s: r } if r == s));
                        if !(thread && object) {
                            continue;
                        }
                        s
                    }
                    _ if h.quoted => continue,
                    Use::Unless { s }
                    | Use::Keyword { s }
                    | Use::Hint { s }
                    | Use::Group { s, .. }
                    | Use::Exclude { s } => s,
                };
                uses.push(Own {
                    sym: s,
                    hit: *h,
                    use_: *u,
                    origin: o,
                });
            }
        }
        // Group by symptom, keeping each symptom's uses in hit order (a stable counting sort).
        let uses = group_by_symptom(&uses, cat.symptoms.len());
        // A resolved phrase excludes through its stretch of sentence for every symptom alike.
        let mut resolved: Vec<(u8, usize, usize)> = resolved
            .iter()
            .map(|h| exclusion_reach(fields, h))
            .collect();
        // A subject naming a neighbouring domain makes the whole ticket that domain's.
        if elsewhere {
            resolved.extend((0..2u8).map(|f| (f, 0, fields[f as usize].norm.text.len())));
        }
        let mut findings = Vec::new();
        let mut bufs = ScoreBufs::default();
        let mut rest: &[Own] = &uses;
        for (si, sym) in cat.symptoms.iter().enumerate() {
            let n = rest.iter().take_while(|o| o.sym as usize == si).count();
            let (own, tail) = rest.split_at(n);
            rest = tail;
            // A symptom with regexes and no context is scored on every ticket.
            let always = sym.requires.is_empty() && !sym.patterns.is_empty();
            if own.is_empty() && !always {
                continue;
            }
            if let Some(f) = self.score_symptom(si, own, fields, &resolved, cues, &mut bufs) {
                findings.push(f);
            }
        }
        // Overrides: a symptom that overrides another hides it unless the other scores higher.
        let scores: Vec<(usize, f32)> = findings.iter().map(|f| (f.index, f.score)).collect();
        findings.retain(|f| {
            !scores.iter().any(|&(o, score)| {
                o != f.index && inner.overrides[o].contains(&f.index) && score >= f.score
            })
        });
        // A weak finding (less than twice its threshold) beside a much stronger one in the same
        // segment (list item, chat turn) is usually a side remark; in a segment of its own it
        // is another problem.
        let rel = cat.relative_threshold;
        let top = findings.iter().map(|f| f.score).fold(0f32, f32::max);
        let strong = |f: &Finding, top: f32| {
            f.score + f32::EPSILON >= top * rel
                || f.score + f32::EPSILON >= 2.0 * cat.symptoms[f.index].threshold
        };
        if findings.iter().any(|f| !strong(f, top)) {
            let homes = home_segments(&fields[1], &findings, segments);
            // A segment's strongest: of the findings with any evidence there.
            let segs = &*segments;
            let keep: Vec<bool> = findings
                .iter()
                .zip(&homes)
                .map(|(f, &home)| {
                    strong(f, top)
                        || (home != NO_SEGMENT && {
                            let seg_top = findings
                                .iter()
                                .filter(|g| g.evidence.iter().any(|e| segment_of(segs, e) == home))
                                .map(|g| g.score)
                                .fold(0f32, f32::max);
                            strong(f, seg_top)
                        })
                })
                .collect();
            let mut k = keep.iter();
            findings.retain(|_| *k.next().unwrap());
        }
        findings.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        Classification { findings }
    }

    /// Score one symptom from its own hits; `None` when it does not reach its threshold.
    fn score_symptom<'s>(
        &'s self,
        si: usize,
        own: &[Own<'s>],
        fields: &[Field; 2],
        resolved: &[(u8, usize, usize)],
        cues: &mut CueCache,
        bufs: &mut ScoreBufs<'s>,
    ) -> Option<Finding> {
        let ScoreBufs {
            excluded,
            evidence,
            seen_rules,
            valid,
            chosen,
        } = bufs;
        let inner = &*self.inner;
        let sym = &inner.catalog.symptoms[si];
        // Nothing but context and exclusions: nothing to score.
        let evidence_hits = own.iter().any(|o| {
            matches!(
                o.use_,
                Use::Keyword { .. } | Use::Hint { .. } | Use::Group { .. }
            )
        });
        if !evidence_hits && sym.patterns.is_empty() {
            return None;
        }
        // A ticket-wide exclusion in the ticket's own words rules the symptom out.
        if own.iter().any(|o| matches!(o.use_, Use::Unless { .. })) {
            return None;
        }
        // Context: a topic word, not itself negated ("not a security key problem"); the
        // ticket's own words first, then quoted ones.
        let is_context = |o: &&Own| matches!(o.use_, Use::Requires { .. });
        let context = own
            .iter()
            .filter(is_context)
            .filter(|o| !o.hit.quoted)
            .find(|o| !negated(own, fields, &o.hit, &inner.negation, cues))
            .or_else(|| {
                own.iter()
                    .filter(is_context)
                    .find(|o| o.hit.quoted && !negated(own, fields, &o.hit, &inner.negation, cues))
            });
        if !sym.requires.is_empty() && context.is_none() {
            return None;
        }
        // Exclusions reach through their sentence, but no further than EXCLUDE_REACH either
        // side; one inside the symptom's own evidence ("sign in" inside "add sign-in method")
        // excludes nothing.
        let inside_own = |x: &Hit| {
            own.iter().any(|o| {
                !matches!(
                    o.use_,
                    Use::Exclude { .. } | Use::Requires { .. } | Use::Unless { .. }
                ) && o.hit.field == x.field
                    && o.hit.start <= x.start
                    && x.end <= o.hit.end
            })
        };
        excluded.clear();
        excluded.extend(
            own.iter()
                .filter(|o| matches!(o.use_, Use::Exclude { .. }) && !inside_own(&o.hit))
                .map(|o| exclusion_reach(fields, &o.hit))
                .chain(resolved.iter().copied()),
        );
        let excluded = &*excluded;
        let counts = |h: &Hit, cues: &mut CueCache| -> bool {
            let start = h.start as usize;
            if excluded
                .iter()
                .any(|&(f, a, b)| f == h.field && a <= start && start < b.max(a + 1))
            {
                return false;
            }
            h.end == h.start || !negated(own, fields, h, &inner.negation, cues)
        };
        // Evidence is kept as hits and rules, and turned into text only if the symptom is found.
        evidence.clear();
        let mut score = 0f32;
        seen_rules.clear();
        // Keywords and hints.
        for o in own {
            let (w, rule, tag) = match o.use_ {
                Use::Keyword { .. } => (1.0, Rule::Keyword(o.origin), 0u8),
                Use::Hint { .. } => (0.5, Rule::Hint(o.origin), 1u8),
                _ => continue,
            };
            if !counts(&o.hit, cues) {
                continue;
            }
            let key = (tag, o.hit.pat);
            if !seen_rules.contains(&key) {
                seen_rules.push(key);
                score += w;
            }
            evidence.push((o.hit, rule));
        }
        // Co-occurrences. Which groups of which rule have some hit at all, in one pass.
        let mut present_groups = [0u64; 16];
        let small = sym.together.len() <= present_groups.len()
            && sym.together.iter().all(|t| t.groups.len() <= 64);
        if small {
            for o in own {
                if let Use::Group { rule, group, .. } = o.use_ {
                    present_groups[rule as usize] |= 1 << group;
                }
            }
        }
        for (ri, t) in sym.together.iter().enumerate() {
            let ri = ri as u32;
            let groups = t.groups.len() as u32;
            // Cheap test first: every group has some hit at all.
            let present = if small {
                let all = if groups == 64 {
                    u64::MAX
                } else {
                    (1u64 << groups) - 1
                };
                present_groups[ri as usize] & all == all
            } else {
                (0..groups).all(|g| {
                    own.iter().any(
                        |o| matches!(o.use_, Use::Group { rule, group, .. } if rule == ri && group == g),
                    )
                })
            };
            if !present {
                continue;
            }
            valid.clear();
            valid.extend(
                own.iter()
                    .filter_map(|o| match o.use_ {
                        Use::Group { rule, group, .. } if rule == ri => {
                            Some((o.hit, group, o.origin))
                        }
                        _ => None,
                    })
                    .filter(|(h, _, _)| counts(h, cues)),
            );
            if (0..groups).any(|g| !valid.iter().any(|(_, vg, _)| *vg == g)) {
                continue;
            }
            let max_span = t.within.unwrap_or(MAX_TOGETHER_SPAN);
            // The hits of the groups close enough to `a` (in its sentence, within the span),
            // one per group, into `chosen`; quoted hits (a short reply's thread) only where
            // the reply's own words have none. Whether all groups were filled.
            let fill =
                |a: &Hit, a_group: u32, a_origin: &'s str, chosen: &mut Vec<(Hit, &'s str)>| {
                    let text = &fields[a.field as usize].norm.text;
                    let (ss, se) = match t.within {
                        Some(_) => (0, text.len()),
                        None => sentence(text, a.start as usize),
                    };
                    chosen.clear();
                    chosen.push((*a, a_origin));
                    for g in (0..groups).filter(|&g| g != a_group) {
                        // Each group needs its own words: "iCloud Keychain" cannot be both the
                        // sync term and the account term.
                        let pick = valid
                            .iter()
                            .find(|(h, vg, _)| {
                                *vg == g
                                    && !h.quoted
                                    && h.field == a.field
                                    && (h.start as usize) >= ss
                                    && (h.end as usize) <= se.max(ss)
                                    && span(a, h) <= max_span
                                    && !chosen
                                        .iter()
                                        .any(|(c, _)| c.start < h.end && h.start < c.end)
                            })
                            .or_else(|| valid.iter().find(|(h, vg, _)| *vg == g && h.quoted));
                        match pick {
                            Some(&(h, _, o)) => chosen.push((h, o)),
                            None => return false,
                        }
                    }
                    // Back in group order.
                    chosen[..=a_group as usize].rotate_left(1);
                    true
                };
            // The reply's own words anchor: group 0 first, as written; then, in a short
            // reply, any of its state words (a hit that is not one of the topic words), the
            // thread giving the object.
            let topic = |h: &Hit| {
                inner.pats[h.pat as usize]
                    .uses
                    .iter()
                    .any(|u| matches!(*u, Use::Requires { s } if s as usize == si))
            };
            let thread = valid.iter().any(|(h, _, _)| h.quoted);
            let found = valid
                .iter()
                .filter(|(a, g, _)| *g == 0 && !a.quoted)
                .chain(
                    valid
                        .iter()
                        .filter(|(a, g, _)| thread && *g != 0 && !a.quoted && !topic(a)),
                )
                .any(|&(a, a_group, a_origin)| {
                    // The state comes from the reply's own words.
                    fill(&a, a_group, a_origin, chosen)
                        && (chosen.iter().all(|(h, _)| !h.quoted)
                            || chosen.iter().any(|(h, _)| !h.quoted && !topic(h)))
                });
            if found {
                score += t.weight;
                for (k, &(h, o)) in chosen.iter().enumerate() {
                    evidence.push((h, Rule::Together(ri, k, o)));
                }
            }
        }
        // Regexes, once the context is there.
        for (pi, p) in sym.patterns.iter().enumerate() {
            let found = fields.iter().enumerate().find_map(|(fi, f)| {
                p.regex.find_iter(&f.norm.text).find_map(|m| {
                    let h = Hit {
                        field: fi as u8,
                        start: m.start() as u32,
                        end: m.end() as u32,
                        pat: u32::MAX,
                        quoted: false,
                    };
                    let usable = m.start() != m.end()
                        && !zones::contains(f.ignored, m.start() as u32)
                        && counts(&h, cues);
                    usable.then_some(h)
                })
            });
            if let Some(h) = found {
                evidence.push((h, Rule::Pattern(pi)));
                score += 1.0;
            }
        }
        if score == 0.0 || score + f32::EPSILON < sym.threshold {
            return None;
        }
        if let Some(o) = context {
            evidence.push((o.hit, Rule::Context(o.origin)));
        }
        evidence.sort_by_key(|(h, _)| (h.field, h.start, h.end));
        evidence.dedup_by_key(|(h, _)| (h.field, h.start, h.end));
        let evidence = evidence
            .iter()
            .map(|(h, r)| fields[h.field as usize].evidence(h, r.name()))
            .collect();
        Some(Finding {
            index: si,
            id: sym.id.clone(),
            title: sym.title.clone(),
            score: (score * 100.0).round() / 100.0,
            evidence,
            why: Vec::new(),
        })
    }
}

/// Working lists of [`Classifier::score_symptom`], allocated once per ticket rather than once
/// per symptom and rule.
#[derive(Default)]
struct ScoreBufs<'s> {
    /// Where exclusions reach: `(field, from, to)`.
    excluded: Vec<(u8, usize, usize)>,
    /// Evidence so far, as hits and rules.
    evidence: Vec<(Hit, Rule<'s>)>,
    /// Keyword and hint rules already scored.
    seen_rules: Vec<(u8, u32)>,
    /// Hits of one co-occurrence rule that count: hit, group, origin.
    valid: Vec<(Hit, u32, &'s str)>,
    /// One hit per group of the co-occurrence being tried.
    chosen: Vec<(Hit, &'s str)>,
}

/// Which rule a piece of evidence matched, until it is written out.
enum Rule<'a> {
    Keyword(&'a str),
    Hint(&'a str),
    Together(u32, usize, &'a str),
    Pattern(usize),
    Context(&'a str),
}

impl Rule<'_> {
    /// The rule as evidence shows it (same text as `Display`), built in one allocation.
    fn name(&self) -> String {
        let (kind, origin) = match self {
            Rule::Keyword(o) => ("keyword:", *o),
            Rule::Hint(o) => ("hint:", *o),
            Rule::Context(o) => ("context:", *o),
            Rule::Together(r, k, o) => {
                let mut out = String::with_capacity(32 + o.len());
                out.push_str("together:");
                push_number(&mut out, *r as usize);
                out.push(':');
                push_number(&mut out, *k);
                out.push(':');
                out.push_str(o);
                return out;
            }
            Rule::Pattern(_) => return self.to_string(),
        };
        let mut out = String::with_capacity(kind.len() + origin.len());
        out.push_str(kind);
        out.push_str(origin);
        out
    }
}

/// Append `n` in decimal.
fn push_number(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

impl std::fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Keyword(o) => write!(f, "keyword:{o}"),
            Rule::Hint(o) => write!(f, "hint:{o}"),
            Rule::Together(r, k, o) => write!(f, "together:{r}:{k}:{o}"),
            Rule::Pattern(p) => write!(f, "pattern:{p}"),
            Rule::Context(o) => write!(f, "context:{o}"),
        }
    }
}

/// Buffers reused from one ticket to the next on the same thread.
#[derive(Default)]
struct Scratch {
    norms: [Normalized; 2],
    ignored: [Vec<zones::Range>; 2],
    hits: Vec<Hit>,
    cues: CueCache,
    /// The body's segments, when a ticket needs them.
    segments: Vec<zones::Segment>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// One use of one hit by one symptom.
#[derive(Clone, Copy)]
struct Own<'a> {
    sym: u32,
    hit: Hit,
    use_: Use,
    origin: &'a str,
}

/// Negation cues found before each hit, computed once per ticket whatever the symptom.
#[derive(Default)]
struct CueCache {
    /// `(field, start)` packed in a `u64` -> cue start offsets.
    seen: std::collections::HashMap<u64, negation::Cues, BuildHasherDefault<KeyHasher>>,
}

impl CueCache {
    fn clear(&mut self) {
        self.seen.clear();
    }

    fn get(&mut self, fields: &[Field; 2], hit: &Hit, negation: &Negation) -> &[usize] {
        let key = (u64::from(hit.field) << 32) | u64::from(hit.start);
        self.seen
            .entry(key)
            .or_insert_with(|| {
                let text = &fields[hit.field as usize].norm.text;
                negation.cues_before_inline(text, hit.start as usize)
            })
            .as_slice()
    }
}

/// Hashes the cue cache's packed `u64` keys with one multiplication: they are small offsets,
/// not attacker-chosen, and the map lives for one ticket.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `uses` grouped by symptom, each symptom's uses in their original order.
fn group_by_symptom<'a>(uses: &[Own<'a>], symptoms: usize) -> Vec<Own<'a>> {
    let mut starts = vec![0usize; symptoms + 1];
    for o in uses {
        starts[o.sym as usize + 1] += 1;
    }
    for i in 0..symptoms {
        starts[i + 1] += starts[i];
    }
    // Every slot is written below; the first use only fills the vector to its length.
    let mut out: Vec<Own<'a>> = match uses.first() {
        Some(&o) => vec![o; uses.len()],
        None => return Vec::new(),
    };
    for o in uses {
        let slot = &mut starts[o.sym as usize];
        out[*slot] = *o;
        *slot += 1;
    }
    out
}

/// No segment: the finding's evidence is mostly in no one segment of the user's.
const NO_SEGMENT: u32 = u32::MAX;

/// Each finding's home segment of the body ([`zones::segments`]): the one holding most (more
/// than half) of its evidence, its context aside; [`NO_SEGMENT`] when there is none, or when
/// it is a turn of the help desk's. `segs` is a working buffer.
fn home_segments(body: &Field, findings: &[Finding], segs: &mut Vec<zones::Segment>) -> Vec<u32> {
    segs.clear();
    if body.norm.lines.len() > 1 {
        zones::segments(body.source, body.norm, segs);
    }
    if segs.len() < 2 {
        return vec![NO_SEGMENT; findings.len()];
    }
    // Evidence is in source offsets: so are the segments from here on.
    for s in segs.iter_mut() {
        s.start = body
            .norm
            .source_span(s.start as usize, s.start as usize + 1)
            .0 as u32;
    }
    findings
        .iter()
        .map(|f| {
            // Evidence is sorted by position: count runs of evidence in one segment.
            let (mut best, mut run, mut total) = ((0, NO_SEGMENT), (0, NO_SEGMENT), 0);
            let own = f
                .evidence
                .iter()
                .filter(|e| !e.rule.starts_with("context:"));
            for e in own {
                total += 1;
                if e.field != "body" {
                    continue;
                }
                let seg = segment_of(segs, e);
                run = if seg == run.1 {
                    (run.0 + 1, seg)
                } else {
                    (1, seg)
                };
                if run.0 > best.0 {
                    best = run;
                }
            }
            match best {
                (n, seg) if 2 * n > total && !segs[seg as usize].agent => seg,
                _ => NO_SEGMENT,
            }
        })
        .collect()
}

/// The body segment (by source offsets) that holds a piece of evidence; [`NO_SEGMENT`] for
/// the subject and for context.
fn segment_of(segs: &[zones::Segment], e: &Evidence) -> u32 {
    if e.field != "body" || e.rule.starts_with("context:") {
        return NO_SEGMENT;
    }
    segs.partition_point(|s| s.start as usize <= e.start)
        .saturating_sub(1) as u32
}

/// How far an exclusion reaches: its sentence, but no more than [`EXCLUDE_REACH`] either side.
fn exclusion_reach(fields: &[Field; 2], h: &Hit) -> (u8, usize, usize) {
    let text = &fields[h.field as usize].norm.text;
    let (start, end) = (h.start as usize, h.end as usize);
    // Only the sentence bounds within the reach matter: look no further than that.
    let lo_limit = start.saturating_sub(EXCLUDE_REACH.min(MAX_SENTENCE_REACH));
    let hi_limit = (start + MAX_SENTENCE_REACH)
        .min(end + EXCLUDE_REACH)
        .min(text.len());
    let (a, b) = sentence_within(text.as_bytes(), start, lo_limit, hi_limit);
    let lo = start.saturating_sub(EXCLUDE_REACH).max(a);
    let hi = (end + EXCLUDE_REACH).min(b.max(a));
    (h.field, lo, hi)
}

/// Whether `hit` is negated: a cue stands before it that is not part of the symptom's own
/// evidence ("no passkey option" is evidence, not a negation of "passkey option").
fn negated(
    own: &[Own],
    fields: &[Field; 2],
    hit: &Hit,
    negation: &Negation,
    cues: &mut CueCache,
) -> bool {
    let found = cues.get(fields, hit, negation);
    found.iter().any(|&c| {
        !own.iter().any(|o| {
            !matches!(
                o.use_,
                Use::Exclude { .. } | Use::Unless { .. } | Use::Requires { .. }
            ) && o.hit.field == hit.field
                && (o.hit.start as usize) <= c
                && c < o.hit.end as usize
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

/// One classified field: its source, normalised text and ignored ranges.
struct Field<'a> {
    /// `subject` or `body`, for evidence.
    name: &'static str,
    /// The original text, for evidence offsets and text.
    source: &'a str,
    /// What the automaton scanned.
    norm: &'a Normalized,
    /// Quoted replies, signatures and disclaimers (body only).
    ignored: &'a [zones::Range],
}

impl Field<'_> {
    fn evidence(&self, h: &Hit, rule: String) -> Evidence {
        let (s, e) = self.norm.source_span(h.start as usize, h.end as usize);
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
    let s = subject.trim_start().as_bytes();
    starts_with_ci(s, b"re:") || starts_with_ci(s, b"aw:") || starts_with_ci(s, b"re :")
}

/// Whether `s` starts with the lower-case ASCII `prefix`, ignoring ASCII case. (A prefix of
/// ASCII bytes is also a prefix of characters, so no allocation is needed to compare.)
#[inline]
fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether a subject line marks a forward: `Fw:`, `Fwd:`, `WG:`, `TR:`, `RV:`, possibly after
/// `Re:` prefixes.
pub fn is_forward_subject(subject: &str) -> bool {
    let mut s = subject.trim_start();
    loop {
        let b = s.as_bytes();
        if starts_with_ci(b, b"re:") || starts_with_ci(b, b"aw:") {
            s = s[3..].trim_start();
            continue;
        }
        return [
            &b"fw:"[..],
            b"fwd:",
            b"wg:",
            b"tr:",
            b"rv:",
            b"fw :",
            b"tr :",
        ]
        .iter()
        .any(|p| starts_with_ci(b, p));
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
    let lo_limit = pos.saturating_sub(MAX_SENTENCE_REACH);
    let hi_limit = (pos + MAX_SENTENCE_REACH).min(b.len());
    sentence_within(b, pos, lo_limit, hi_limit)
}

/// [`sentence`], looking back no further than `lo_limit` and ahead no further than `hi_limit`.
fn sentence_within(b: &[u8], pos: usize, lo_limit: usize, hi_limit: usize) -> (usize, usize) {
    let is_end = |i: usize| -> bool {
        match b[i] {
            b'!' | b'?' | b';' | b'\n' => true,
            b'.' => i + 1 >= b.len() || matches!(b[i + 1], b' ' | b'\n'),
            _ => false,
        }
    };
    let mut start = pos.min(b.len());
    while start > lo_limit && !is_end(start - 1) {
        start -= 1;
    }
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
    fn rule_names_match_their_display() {
        for r in [
            Rule::Keyword("pin locked"),
            Rule::Hint("@x"),
            Rule::Context("@passkey"),
            Rule::Together(0, 0, "a"),
            Rule::Together(12, 345, "@sync"),
            Rule::Together(u32::MAX, usize::MAX, ""),
            Rule::Pattern(7),
        ] {
            assert_eq!(r.name(), r.to_string());
        }
    }

    #[test]
    fn dfa_walk_reports_what_the_library_search_reports() {
        let classifier = Classifier::new(Catalog::builtin()).unwrap();
        let texts = classifier.phrases();
        let dfa = Scanner::build(texts).unwrap();
        assert!(matches!(dfa, Scanner::Dfa(_)));
        let library = Scanner::build_library(texts).unwrap();
        let all = |s: &Scanner, hay: &str| {
            let mut out = Vec::new();
            s.for_each_match(hay.as_bytes(), |a, b, p| out.push((a, b, p)));
            out
        };
        let corpus = concat!(
            include_str!("../../../../tests/data/tickets.jsonl"),
            include_str!("../../../../tests/data/holdout.jsonl")
        );
        let mut matches = 0;
        for line in corpus.lines().filter(|l| !l.trim().is_empty()) {
            let t = crate::ticket::Ticket::from_json(line).unwrap();
            for field in [&t.subject, &t.body] {
                let norm = classifier.normalize(field, true);
                let found = all(&dfa, &norm.text);
                assert_eq!(found, all(&library, &norm.text), "{}", t.id);
                matches += found.len();
            }
        }
        assert!(
            matches > 1000,
            "the corpus should hit the catalogue often: {matches}"
        );
        assert!(all(&dfa, "").is_empty());
    }

    #[test]
    fn classifier_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Classifier>();
    }
}
