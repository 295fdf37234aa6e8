//! Symptom catalogues: `patterns/*.toml` read, checked and turned into a [`Catalog`].
//!
//! The format is documented for authors in `patterns/README.md`. Every problem found is
//! reported as `path:line: message` naming the field and what was expected, and all of a
//! file's problems are reported at once, not only the first: a syntax error stops that file,
//! but each symptom is checked on its own, so one bad symptom does not hide another.

mod template;

pub use template::{Template, TemplateError, PLACEHOLDERS};

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::text::normalize::normalize;

/// The passkey catalogue shipped inside the binary, used when no `patterns/` is found.
pub const BUILTIN_PASSKEYS: &str = include_str!("../../../../patterns/passkeys.toml");

/// Name under which the built-in catalogue is reported.
pub const BUILTIN_PATH: &str = "<built-in>/passkeys.toml";

/// Largest compiled size of one pattern, so that a catalogue cannot exhaust memory.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The default suggested reply, used when neither the symptom nor the catalogue has one.
pub const DEFAULT_REPLY: &str = "\
Possible match: {title} ({id})
Why: {why}

First checks:
{checks}

Likely fix: {fix}";

/// A loaded, validated set of symptoms from one or more catalogue files.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The catalogue's name (names joined with `+` when several files are loaded).
    pub name: String,
    /// The catalogue's version (joined with `+` likewise).
    pub version: String,
    /// What the catalogue covers.
    pub description: String,
    /// `sha256:` and the first 16 hex digits of the hash of every file, in path order:
    /// two workers with the same digest decide the same way.
    pub digest: String,
    /// Files it was read from.
    pub sources: Vec<String>,
    /// The symptoms, in file order.
    pub symptoms: Vec<Symptom>,
    /// Phrases whose inner matches do not count (`network security key` hides `security key`).
    pub ignore: Vec<Phrase>,
    /// Extra negation cues.
    pub negations: Vec<String>,
    /// Words that typo correction must leave alone.
    pub keep_words: Vec<String>,
    /// Help-desk shorthand: a ticket word (`pk`) read as the words it stands for (`passkey`).
    pub shorthand: Vec<(String, String)>,
    /// Phrases saying something works now or is fine: evidence near them does not count.
    pub resolved: Vec<Phrase>,
    /// Phrases naming a neighbouring domain (smart cards, GPG, one-time codes): evidence in
    /// their stretch of sentence does not count, and one in the subject makes the whole ticket
    /// that other domain's.
    pub near_domain: Vec<Phrase>,
    /// A finding scoring below this fraction of the ticket's strongest finding is dropped.
    pub relative_threshold: f32,
    /// What each term set means in words (`@locked` -> "locked"), keyed by `@name`, for
    /// evidence named for people ("security key + locked, within 60 characters").
    pub term_labels: BTreeMap<String, String>,
}

/// A phrase to find: normalised words, matched on word boundaries unless `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phrase {
    /// Normalised text.
    pub text: String,
    /// `regist*`: the last word may continue.
    pub prefix: bool,
}

/// A phrase together with how the author wrote it (`@pin` or the phrase itself), for evidence.
#[derive(Debug, Clone)]
pub struct Term {
    /// What to match.
    pub phrase: Phrase,
    /// The author's name for it, shown in evidence (`@pin`, or the keyword as written).
    pub origin: String,
}

/// A regular expression over normalised text.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written in the catalogue.
    pub source: String,
    /// Compiled.
    pub regex: Regex,
}

/// Terms that must all appear in one sentence.
#[derive(Debug, Clone)]
pub struct Together {
    /// Each group must have a hit.
    pub groups: Vec<Vec<Term>>,
    /// Score added when all groups meet.
    pub weight: f32,
    /// `None`: all in one sentence. `Some(n)`: all within `n` bytes of normalised text,
    /// across sentence breaks (for "I touched the sensor. Then: something went wrong").
    pub within: Option<usize>,
}

/// One symptom of a catalogue.
#[derive(Debug, Clone)]
pub struct Symptom {
    /// Stable kebab-case id: tags, metrics and evaluations use it.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Tags to add to the ticket.
    pub tags: Vec<String>,
    /// Score at which the symptom is reported.
    pub threshold: f32,
    /// At least one of these must appear somewhere in the ticket's own text.
    pub requires: Vec<Term>,
    /// Each is enough on its own (weight 1).
    pub keywords: Vec<Term>,
    /// Each counts half.
    pub hints: Vec<Term>,
    /// Each match counts 1.
    pub patterns: Vec<Pattern>,
    /// Co-occurrence rules.
    pub together: Vec<Together>,
    /// Evidence in a sentence holding any of these does not count.
    pub exclude: Vec<Term>,
    /// Any of these anywhere in the ticket's own words rules the symptom out.
    pub unless: Vec<Term>,
    /// Symptoms this one replaces when both are found.
    pub overrides: Vec<String>,
    /// First checks, in order.
    pub checks: Vec<String>,
    /// The likely fix.
    pub fix: String,
    /// The suggested reply.
    pub reply: Template,
    /// Whether the catalogue asks for the reply to be public (a sink's config must allow it).
    pub public_reply: bool,
    /// Where it is defined.
    pub source: String,
    /// Line of its `[[symptom]]` header.
    pub line: usize,
}

/// One problem in a catalogue, as `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// Why a catalogue could not be loaded. None of these is worth retrying unchanged: the files
/// must be fixed (or made readable) first.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// What could not be read.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory holds no `*.toml` file.
    #[error(
        "{0}: no catalogue files (*.toml) found; expected at least one, see patterns/README.md"
    )]
    Empty(String),
    /// One or more problems in the files.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

fn display_problems(p: &[Problem]) -> String {
    let mut s = String::new();
    for (i, p) in p.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&p.to_string());
    }
    s
}

impl CatalogError {
    /// The individual problems (one for an I/O error).
    pub fn problems(&self) -> Vec<String> {
        match self {
            CatalogError::Invalid(p) => p.iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw file shape (what serde reads).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    catalogue: RawMeta,
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    terms: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    term_labels: BTreeMap<String, String>,
    #[serde(default)]
    symptom: Vec<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    negations: Vec<String>,
    #[serde(default)]
    keep_words: Vec<String>,
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    relative_threshold: Option<f32>,
    #[serde(default)]
    resolved: Vec<String>,
    #[serde(default)]
    near_domain: Vec<String>,
    #[serde(default)]
    shorthand: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymptom {
    id: String,
    title: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    together: Vec<RawTogether>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    unless: Vec<String>,
    #[serde(default)]
    overrides: Vec<String>,
    checks: Vec<String>,
    fix: String,
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    public_reply: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTogether {
    all: Vec<OneOrMany>,
    #[serde(default = "one")]
    weight: f32,
    #[serde(default)]
    within: Option<usize>,
}

fn one() -> f32 {
    1.0
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

/// One file's text, kept for line numbers.
struct Source<'a> {
    path: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// The line where `needle` (a quoted value or a `key =`) first appears in `within`.
    fn find_line(&self, within: &Range<usize>, needle: &str) -> Option<usize> {
        let hay = &self.text[within.clone()];
        for cand in [
            format!("\"{needle}\""),
            format!("'{needle}'"),
            format!("{needle} ="),
            format!("{needle}="),
        ] {
            if let Some(p) = hay.find(&cand) {
                return Some(self.line_of(within.start + p));
            }
        }
        hay.find(needle).map(|p| self.line_of(within.start + p))
    }

    fn problem(&self, line: usize, message: impl Into<String>) -> Problem {
        Problem {
            path: self.path.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl Catalog {
    /// The passkey catalogue compiled into the binary.
    pub fn builtin() -> Catalog {
        Catalog::from_sources(&[(BUILTIN_PATH.to_string(), BUILTIN_PASSKEYS.to_string())])
            .expect("the built-in catalogue is valid (checked by tests)")
    }

    /// Load every `*.toml` file in `dir` (sorted by name) as one catalogue set.
    pub fn load_dir(dir: &Path) -> Result<Catalog, CatalogError> {
        let files = catalogue_files(dir)?;
        let mut sources = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| CatalogError::Io {
                path: f.display().to_string(),
                source: e,
            })?;
            sources.push((f.display().to_string(), text));
        }
        Catalog::from_sources(&sources)
    }

    /// Load a single file, or every file of a directory.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        if path.is_dir() {
            Catalog::load_dir(path)
        } else {
            let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
            Catalog::from_sources(&[(path.display().to_string(), text)])
        }
    }

    /// Build from `(path, text)` pairs; every problem of every file is collected.
    pub fn from_sources(files: &[(String, String)]) -> Result<Catalog, CatalogError> {
        let mut problems = Vec::new();
        let mut parts = Vec::new();
        for (path, text) in files {
            let src = Source { path, text };
            if let Some(part) = parse_file(&src, &mut problems) {
                parts.push(part);
            }
        }
        // Ids must be unique across files.
        let mut seen: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
        for p in &parts {
            for s in &p.symptoms {
                if let Some((path, line)) = seen.get(s.id.as_str()) {
                    problems.push(Problem {
                        path: s.source.clone(),
                        line: s.line,
                        message: format!(
                            "symptom `{}`: field `id`: duplicate id, first defined at {}:{}; expected ids unique across all catalogues",
                            s.id, path, line
                        ),
                    });
                } else {
                    seen.insert(&s.id, (&s.source, s.line));
                }
            }
        }
        let all_ids: HashSet<&str> = seen.keys().copied().collect();
        for p in &parts {
            for s in &p.symptoms {
                for o in &s.overrides {
                    if !all_ids.contains(o.as_str()) || o == &s.id {
                        problems.push(Problem {
                            path: s.source.clone(),
                            line: s.line,
                            message: format!(
                                "symptom `{}`: field `overrides`: `{o}` is not another symptom's id",
                                s.id
                            ),
                        });
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(CatalogError::Invalid(problems));
        }
        let mut hasher = Sha256::new();
        for (path, text) in files {
            hasher.update(Path::new(path).file_name().map_or(path.as_bytes(), |f| {
                f.to_str().map_or(path.as_bytes(), str::as_bytes)
            }));
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        let hash = hasher.finalize();
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let join =
            |f: &dyn Fn(&FilePart) -> &str| parts.iter().map(f).collect::<Vec<_>>().join("+");
        Ok(Catalog {
            name: join(&|p| &p.name),
            version: join(&|p| &p.version),
            description: parts
                .iter()
                .map(|p| p.description.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            digest: format!("sha256:{hex}"),
            sources: files.iter().map(|(p, _)| p.clone()).collect(),
            ignore: parts.iter().flat_map(|p| p.ignore.clone()).collect(),
            resolved: parts.iter().flat_map(|p| p.resolved.clone()).collect(),
            near_domain: parts.iter().flat_map(|p| p.near_domain.clone()).collect(),
            negations: parts.iter().flat_map(|p| p.negations.clone()).collect(),
            keep_words: parts.iter().flat_map(|p| p.keep_words.clone()).collect(),
            shorthand: parts.iter().flat_map(|p| p.shorthand.clone()).collect(),
            term_labels: parts
                .iter()
                .rev()
                .flat_map(|p| p.term_labels.clone())
                .collect(),
            relative_threshold: parts
                .iter()
                .map(|p| p.relative_threshold)
                .fold(0.0, f32::max),
            symptoms: parts.into_iter().flat_map(|p| p.symptoms).collect(),
        })
    }

    /// The symptom with this id.
    pub fn symptom(&self, id: &str) -> Option<&Symptom> {
        self.symptoms.iter().find(|s| s.id == id)
    }
}

/// `*.toml` files in `dir`, sorted.
pub fn catalogue_files(dir: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CatalogError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CatalogError::Empty(dir.display().to_string()));
    }
    Ok(files)
}

struct FilePart {
    resolved: Vec<Phrase>,
    near_domain: Vec<Phrase>,
    relative_threshold: f32,
    name: String,
    version: String,
    description: String,
    ignore: Vec<Phrase>,
    negations: Vec<String>,
    keep_words: Vec<String>,
    shorthand: Vec<(String, String)>,
    term_labels: BTreeMap<String, String>,
    symptoms: Vec<Symptom>,
}

fn parse_file(src: &Source, problems: &mut Vec<Problem>) -> Option<FilePart> {
    let raw: RawFile = match toml::from_str(src.text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| src.line_of(s.start)).unwrap_or(1);
            let msg = e.message().trim().replace('\n', " ");
            problems.push(src.problem(
                line,
                format!("{msg}; see patterns/README.md for the format"),
            ));
            return None;
        }
    };
    let whole = 0..src.text.len();
    let start_problems = problems.len();
    let check_nonempty = |field: &str, value: &str, problems: &mut Vec<Problem>| {
        if value.trim().is_empty() {
            let line = src.find_line(&whole, field).unwrap_or(1);
            problems.push(src.problem(
                line,
                format!("[catalogue]: field `{field}` is empty; expected text"),
            ));
        }
    };
    check_nonempty("name", &raw.catalogue.name, problems);
    check_nonempty("version", &raw.catalogue.version, problems);

    // Named term sets.
    let mut sets: BTreeMap<String, Vec<Term>> = BTreeMap::new();
    for (name, items) in &raw.terms {
        let ctx = format!("[terms]: set `{name}`");
        if !is_kebab(name) && !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            let line = src.find_line(&whole, name).unwrap_or(1);
            problems.push(src.problem(
                line,
                format!("{ctx}: name must be lower-case letters, digits, `-` or `_`"),
            ));
        }
        let mut terms = Vec::new();
        for it in items {
            if it.starts_with('@') {
                let line = src.find_line(&whole, it).unwrap_or(1);
                problems.push(src.problem(
                    line,
                    format!(
                        "{ctx}: `{it}`: a term set cannot refer to another set; list the phrases"
                    ),
                ));
                continue;
            }
            match phrase(it) {
                Ok(p) => terms.push(Term {
                    phrase: p,
                    origin: format!("@{name}"),
                }),
                Err(m) => {
                    let line = src.find_line(&whole, it).unwrap_or(1);
                    problems.push(src.problem(line, format!("{ctx}: {m}")));
                }
            }
        }
        if terms.is_empty() && items.is_empty() {
            let line = src.find_line(&whole, name).unwrap_or(1);
            problems.push(src.problem(line, format!("{ctx}: is empty; expected phrases")));
        }
        sets.insert(name.clone(), terms);
    }
    // What the sets mean, in words.
    let mut term_labels = BTreeMap::new();
    let labels_table = src.text.find("[term_labels]").unwrap_or(0)..src.text.len();
    for (name, label) in &raw.term_labels {
        let line = || src.find_line(&labels_table, name).unwrap_or(1);
        if !sets.contains_key(name) {
            problems.push(src.problem(
                line(),
                format!(
                    "[term_labels]: `{name}` names no term set; expected one of [terms]: {}",
                    sets.keys().map(|k| format!("@{k}")).collect::<Vec<_>>().join(", ")
                ),
            ));
        } else if label.trim().is_empty() || label.contains('\n') {
            problems.push(src.problem(
                line(),
                format!("[term_labels]: `{name}`: expected a few words on one line saying what the set means"),
            ));
        } else {
            term_labels.insert(format!("@{name}"), label.trim().to_string());
        }
    }

    let phrases = |field: &str, items: &[String], problems: &mut Vec<Problem>| {
        let mut out = Vec::new();
        for it in items {
            match phrase(it) {
                Ok(p) => out.push(p),
                Err(m) => {
                    let line = src.find_line(&whole, it).unwrap_or(1);
                    problems.push(src.problem(line, format!("[settings]: field `{field}`: {m}")));
                }
            }
        }
        out
    };
    let ignore = phrases("ignore", &raw.settings.ignore, problems);
    let resolved = phrases("resolved", &raw.settings.resolved, problems);
    let near_domain = phrases("near_domain", &raw.settings.near_domain, problems);
    let mut shorthand = Vec::new();
    for (short, long) in &raw.settings.shorthand {
        let key = normalize(short, None).text;
        let value = normalize(long, None).text;
        let line = src.find_line(&whole, short).unwrap_or(1);
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            problems.push(src.problem(
                line,
                format!("[settings.shorthand]: `{short}`: expected one word of letters or digits, as tickets write it"),
            ));
        } else if value.is_empty() || value == key {
            problems.push(src.problem(
                line,
                format!("[settings.shorthand]: `{short}`: expected the words it stands for"),
            ));
        } else {
            shorthand.push((key, value));
        }
    }
    let default_reply = match &raw.settings.reply {
        Some(r) => match Template::parse(r) {
            Ok(t) => t,
            Err(e) => {
                let line = src.find_line(&whole, "reply").unwrap_or(1);
                problems.push(src.problem(line, format!("[settings]: field `reply`: {e}")));
                Template::parse(DEFAULT_REPLY).unwrap()
            }
        },
        None => Template::parse(DEFAULT_REPLY).unwrap(),
    };

    let mut symptoms = Vec::new();
    for value in &raw.symptom {
        let span = value.span();
        // The span of a table in an array of tables covers its body; widen to its header.
        let start = src.text[..span.start].rfind("[[").unwrap_or(span.start);
        let range = start..span.end.max(start);
        let line = src.line_of(start);
        if let Some(s) = parse_symptom(
            src,
            &range,
            line,
            value.get_ref(),
            &sets,
            &default_reply,
            problems,
        ) {
            symptoms.push(s);
        }
    }
    let mut ids = HashSet::new();
    for s in &symptoms {
        if !ids.insert(s.id.clone()) {
            // Reported across files later; within a file report here too.
        }
    }
    // A phrase with a shorthand word in it never matches: tickets read that word expanded.
    if !shorthand.is_empty() {
        let mut seen = HashSet::new();
        for sym in &symptoms {
            let groups = sym.together.iter().flat_map(|t| t.groups.iter().flatten());
            let terms = sym
                .requires
                .iter()
                .chain(&sym.keywords)
                .chain(&sym.hints)
                .chain(&sym.exclude)
                .chain(&sym.unless)
                .chain(groups);
            for t in terms {
                let text = &t.phrase.text;
                let Some((short, long)) = shorthand
                    .iter()
                    .find(|(k, _)| text.split(' ').any(|w| w == k))
                else {
                    continue;
                };
                if seen.insert(text.clone()) {
                    let line = src.find_line(&whole, text).unwrap_or(sym.line);
                    problems.push(src.problem(
                        line,
                        format!("symptom `{}`: phrase `{text}` uses `{short}`, which [settings.shorthand] reads as `{long}`: write `{}`", sym.id, text.split(' ').map(|w| if w == short { long.as_str() } else { w }).collect::<Vec<_>>().join(" ")),
                    ));
                }
            }
        }
    }
    if problems.len() > start_problems {
        return None;
    }
    let relative_threshold = raw.settings.relative_threshold.unwrap_or(0.0);
    if !(0.0..1.0).contains(&relative_threshold) {
        let line = src.find_line(&whole, "relative_threshold").unwrap_or(1);
        problems.push(src.problem(
            line,
            format!("[settings]: field `relative_threshold` is {relative_threshold}; expected a fraction from 0 to below 1"),
        ));
        return None;
    }
    Some(FilePart {
        resolved,
        near_domain,
        relative_threshold,
        name: raw.catalogue.name,
        version: raw.catalogue.version,
        description: raw.catalogue.description,
        ignore,
        negations: raw
            .settings
            .negations
            .iter()
            .map(|n| normalize(n, None).text)
            .collect(),
        keep_words: raw
            .settings
            .keep_words
            .iter()
            .map(|n| normalize(n, None).text)
            .collect(),
        shorthand,
        term_labels,
        symptoms,
    })
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Parse a phrase as an author writes it: words, optionally ending in `*` for a prefix.
fn phrase(raw: &str) -> Result<Phrase, String> {
    let trimmed = raw.trim();
    let (body, prefix) = match trimmed.strip_suffix('*') {
        Some(b) => (b, true),
        None => (trimmed, false),
    };
    if body.contains('*') {
        return Err(format!(
            "`{raw}`: `*` may only end a phrase (as in `regist*`)"
        ));
    }
    let text = normalize(body, None).text;
    if text.is_empty() {
        return Err(format!(
            "`{raw}`: phrase is empty after normalisation; expected at least one letter or digit"
        ));
    }
    if prefix && text.len() < 3 {
        return Err(format!(
            "`{raw}`: a prefix needs at least 3 characters before `*`, or it matches almost anything"
        ));
    }
    if !text.bytes().any(|b| b.is_ascii_alphanumeric() || b >= 0x80) {
        return Err(format!("`{raw}`: phrase has no letters or digits"));
    }
    Ok(Phrase { text, prefix })
}

/// Resolve a list of phrases and `@set` references.
fn terms(
    items: &[&str],
    sets: &BTreeMap<String, Vec<Term>>,
    ctx: &str,
    src: &Source,
    range: &Range<usize>,
    sym_line: usize,
    problems: &mut Vec<Problem>,
) -> Vec<Term> {
    let mut out = Vec::new();
    for it in items {
        let line = src.find_line(range, it).unwrap_or(sym_line);
        if let Some(name) = it.strip_prefix('@') {
            match sets.get(name) {
                Some(ts) => out.extend(ts.iter().cloned()),
                None => {
                    let known: Vec<_> = sets.keys().map(|k| format!("@{k}")).collect();
                    problems.push(src.problem(
                        line,
                        format!(
                            "{ctx}: `{it}` names no term set; expected one of [terms]: {}",
                            if known.is_empty() {
                                "(none defined)".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
        } else {
            match phrase(it) {
                Ok(p) => out.push(Term {
                    phrase: p,
                    origin: it.to_string(),
                }),
                Err(m) => problems.push(src.problem(line, format!("{ctx}: {m}"))),
            }
        }
    }
    out
}

fn parse_symptom(
    src: &Source,
    range: &Range<usize>,
    line: usize,
    value: &toml::Value,
    sets: &BTreeMap<String, Vec<Term>>,
    default_reply: &Template,
    problems: &mut Vec<Problem>,
) -> Option<Symptom> {
    let label = value
        .get("id")
        .and_then(|v| v.as_str())
        .map(|s| format!("symptom `{s}`"))
        .unwrap_or_else(|| "symptom".to_string());
    let raw: RawSymptom = match RawSymptom::deserialize(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string().trim().replace('\n', " ");
            // Point at the field the message names, if any.
            let field = msg
                .split('`')
                .nth(1)
                .and_then(|f| src.find_line(range, f))
                .unwrap_or(line);
            let hint = if msg.contains("missing field") {
                "; every symptom needs id, title, checks and fix"
            } else {
                ""
            };
            problems.push(src.problem(field, format!("{label}: {msg}{hint}")));
            return None;
        }
    };
    let before = problems.len();
    let at = |needle: &str| src.find_line(range, needle).unwrap_or(line);
    let ctx = |field: &str| format!("{label}: field `{field}`");
    if !is_kebab(&raw.id) {
        problems.push(src.problem(
            at("id"),
            format!(
                "{}: `{}` is not kebab-case; expected lower-case words joined by `-`, like `pin-locked`",
                ctx("id"),
                raw.id
            ),
        ));
    }
    if raw.title.trim().is_empty() {
        problems.push(src.problem(
            at("title"),
            format!("{}: is empty; expected a short title", ctx("title")),
        ));
    }
    let tags = raw.tags.clone().unwrap_or_else(|| vec![raw.id.clone()]);
    if tags.is_empty() {
        problems.push(src.problem(
            at("tags"),
            format!("{}: is empty; expected at least one tag", ctx("tags")),
        ));
    }
    for t in &tags {
        if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c == ',') {
            problems.push(src.problem(
                at(t),
                format!(
                    "{}: `{t}` is not a valid tag; expected one word without spaces or commas",
                    ctx("tags")
                ),
            ));
        }
    }
    let threshold = raw.threshold.unwrap_or(1.0);
    if !(threshold > 0.0 && threshold.is_finite()) {
        problems.push(src.problem(
            at("threshold"),
            format!("{}: must be a positive number", ctx("threshold")),
        ));
    }
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let requires = terms(
        &refs(&raw.requires),
        sets,
        &ctx("requires"),
        src,
        range,
        line,
        problems,
    );
    let keywords = terms(
        &refs(&raw.keywords),
        sets,
        &ctx("keywords"),
        src,
        range,
        line,
        problems,
    );
    let hints = terms(
        &refs(&raw.hints),
        sets,
        &ctx("hints"),
        src,
        range,
        line,
        problems,
    );
    let exclude = terms(
        &refs(&raw.exclude),
        sets,
        &ctx("exclude"),
        src,
        range,
        line,
        problems,
    );
    let unless = terms(
        &refs(&raw.unless),
        sets,
        &ctx("unless"),
        src,
        range,
        line,
        problems,
    );
    let mut patterns = Vec::new();
    for p in &raw.patterns {
        match regex::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(regex) => patterns.push(Pattern {
                source: p.clone(),
                regex,
            }),
            Err(e) => {
                let why = match &e {
                    regex::Error::CompiledTooBig(n) => format!(
                        "compiles to more than the limit of {n} bytes; simplify it or split it"
                    ),
                    other => other.to_string().replace('\n', " "),
                };
                problems.push(src.problem(at(p), format!("{}: `{p}`: {why}", ctx("patterns"))));
            }
        }
    }
    let mut together = Vec::new();
    for (i, t) in raw.together.iter().enumerate() {
        let c = ctx(&format!("together[{i}]"));
        if t.all.len() < 2 {
            problems.push(src.problem(
                at("together"),
                format!(
                    "{c}: `all` has {} group(s); expected at least 2 (use `keywords` for one)",
                    t.all.len()
                ),
            ));
        }
        if !(t.weight > 0.0 && t.weight.is_finite()) {
            problems.push(src.problem(
                at("weight"),
                format!("{c}: `weight` must be a positive number"),
            ));
        }
        let mut groups = Vec::new();
        for g in &t.all {
            let items = g.items();
            if items.is_empty() {
                problems.push(src.problem(
                    at("together"),
                    format!("{c}: an empty group; expected phrases or @sets"),
                ));
            }
            groups.push(terms(&items, sets, &c, src, range, line, problems));
        }
        if let Some(w) = t.within {
            if !(10..=2000).contains(&w) {
                problems.push(src.problem(
                    at("within"),
                    format!(
                        "{c}: `within` is {w}; expected a number of characters from 10 to 2000"
                    ),
                ));
            }
        }
        together.push(Together {
            groups,
            weight: t.weight,
            within: t.within,
        });
    }
    if keywords.is_empty()
        && hints.is_empty()
        && patterns.is_empty()
        && together.is_empty()
        && raw.patterns.is_empty()
    {
        problems.push(src.problem(
            line,
            format!("{label}: has no evidence; expected at least one of `keywords`, `hints`, `patterns`, `together`"),
        ));
    }
    if raw.checks.is_empty() || raw.checks.iter().any(|c| c.trim().is_empty()) {
        problems.push(src.problem(
            at("checks"),
            format!(
                "{}: expected a list of non-empty first checks",
                ctx("checks")
            ),
        ));
    }
    if raw.fix.trim().is_empty() {
        problems.push(src.problem(
            at("fix"),
            format!("{}: is empty; expected the likely fix", ctx("fix")),
        ));
    }
    let reply = match &raw.reply {
        Some(r) => match Template::parse(r) {
            Ok(t) => t,
            Err(e) => {
                problems.push(src.problem(at("reply"), format!("{}: {e}", ctx("reply"))));
                default_reply.clone()
            }
        },
        None => default_reply.clone(),
    };
    if problems.len() > before {
        return None;
    }
    Some(Symptom {
        id: raw.id,
        title: raw.title,
        tags,
        threshold,
        requires,
        keywords,
        hints,
        patterns,
        together,
        exclude,
        unless,
        overrides: raw.overrides,
        checks: raw.checks,
        fix: raw.fix,
        reply,
        public_reply: raw.public_reply,
        source: src.path.to_string(),
        line,
    })
}

#[cfg(test)]
mod tests;
