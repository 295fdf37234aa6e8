//! Negation: "the PIN is NOT locked" must not count as evidence that the PIN is locked.
//!
//! A hit is negated when a negation cue stands at most [`WINDOW`] words before it, in the same
//! clause. Clauses end at sentence punctuation, commas, colons and contrastive conjunctions
//! ("but", "aber", "mais", "pero"), so "I don't know why, but my PIN is locked" stays
//! positive. Cues in English, German, French and Spanish are built in; a catalogue may add
//! more. Pseudo-negations ("not sure", "not only", "no idea") are not cues.
//!
//! Where the absence *is* the symptom ("no passkey option"), the catalogue writes the
//! negation into its keyword, and the matcher does not let a cue that is itself part of the
//! symptom's own evidence negate it (see `Classifier`).

/// How many words before a hit a cue may stand.
pub const WINDOW: usize = 2;

/// Built-in negation cues (normalised spelling).
pub const CUES: &[&str] = &[
    // English
    "not",
    "no",
    "never",
    "without",
    "nor",
    "neither",
    "can't",
    "don't",
    "doesn't",
    "didn't",
    "isn't",
    "won't",
    "wasn't",
    "aren't",
    "weren't",
    "couldn't",
    "wouldn't",
    "haven't",
    "hasn't",
    "shouldn't",
    "ain't",
    "nothing", // German
    "nicht",
    "kein",
    "keine",
    "keinen",
    "keiner",
    "nie",
    "niemals",
    "ohne", // French
    "pas",
    "jamais",
    "aucun",
    "aucune",
    "sans",
    "ni", // Spanish ("no" above)
    "nunca",
    "ningun",
    "ninguna",
    "ninguno",
    "sin",
    "tampoco",
];

/// Words that close a clause, and articles (which do not count toward the window), are listed
/// in `Negation::kind`.
/// Words that, right after a cue, make it no negation at all.
const PSEUDO_AFTER: &[&str] = &[
    "only",
    "sure",
    "just",
    "idea",
    "matter",
    "clue",
    "doubt",
    "problem",
    "nur",
    "seulement",
    "solo",
    "solamente",
];

enum Kind {
    Clause,
    Article,
    Word,
}

/// Negation cues, built-in plus a catalogue's own.
#[derive(Debug, Clone)]
pub struct Negation {
    cues: Vec<Box<str>>,
    /// The cues of at most eight bytes (and no NUL), each packed into a `u64`, sorted: a word
    /// is looked up with integer comparisons.
    short: Vec<u64>,
    /// Bytes that start some cue: most words are rejected on their first byte.
    first: [bool; 256],
}

impl Default for Negation {
    fn default() -> Self {
        Negation::new(std::iter::empty::<&str>())
    }
}

impl Negation {
    /// The built-in cues plus `extra`.
    pub fn new<'a>(extra: impl IntoIterator<Item = &'a str>) -> Negation {
        let mut cues: Vec<Box<str>> = CUES.iter().map(|s| (*s).into()).collect();
        cues.extend(extra.into_iter().map(Into::into));
        cues.sort();
        cues.dedup();
        let mut first = [false; 256];
        for c in &cues {
            if let Some(&b) = c.as_bytes().first() {
                first[b as usize] = true;
            }
        }
        let mut short: Vec<u64> = cues.iter().filter_map(|c| pack(c.as_bytes())).collect();
        short.sort_unstable();
        Negation { cues, short, first }
    }

    /// `w` is a word of normalised text: no NUL byte.
    fn is_cue(&self, w: &str) -> bool {
        let b = w.as_bytes();
        if !b.first().is_some_and(|&b| self.first[b as usize]) {
            return false;
        }
        match pack(b) {
            Some(p) => self.short.binary_search(&p).is_ok(),
            None => self.cues.binary_search_by(|c| (**c).cmp(w)).is_ok(),
        }
    }

    /// What a word does to the window: ends the clause, does not count, or counts.
    fn kind(w: &str) -> Kind {
        match w {
            "but" | "however" | "although" | "though" | "yet" | "except" | "aber" | "sondern"
            | "jedoch" | "mais" | "pourtant" | "pero" | "sino" | "aunque" => Kind::Clause,
            "the" | "a" | "an" | "der" | "die" | "das" | "den" | "dem" | "ein" | "eine" | "le"
            | "la" | "les" | "l" | "un" | "une" | "el" | "los" | "las" | "una" => Kind::Article,
            _ => Kind::Word,
        }
    }

    /// Start offsets of the cues that negate a hit starting at `start` in `text`.
    ///
    /// Returns every cue found within the window (nearest first), so the caller can discard
    /// cues that are part of the symptom's own evidence.
    pub fn cues_before(&self, text: &str, start: usize) -> Vec<usize> {
        self.cues_before_inline(text, start).as_slice().to_vec()
    }

    /// [`Negation::cues_before`] without allocating: there are at most [`WINDOW`] cues.
    pub fn cues_before_inline(&self, text: &str, start: usize) -> Cues {
        let bytes = text.as_bytes();
        let mut found = Cues::default();
        let mut pos = start;
        let mut next_word: Option<&str> = None;
        let mut words = 0;
        while words < WINDOW {
            // Skip white space backwards; stop at clause punctuation.
            while pos > 0 && bytes[pos - 1] == b' ' {
                pos -= 1;
            }
            if pos == 0 {
                break;
            }
            let c = bytes[pos - 1];
            if matches!(c, b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\n' | b'>') {
                break;
            }
            let end = pos;
            while pos > 0 && is_word_byte(bytes[pos - 1]) {
                pos -= 1;
            }
            if pos == end {
                break;
            }
            let w = &text[pos..end];
            match Negation::kind(w) {
                Kind::Clause => break,
                Kind::Article => continue,
                Kind::Word => {}
            }
            words += 1;
            let contracted = w.ends_with("n't");
            if (self.is_cue(w) || contracted)
                && !next_word.is_some_and(|n| PSEUDO_AFTER.contains(&n))
            {
                found.push(pos);
            }
            next_word = Some(w);
        }
        found
    }
}

/// Up to eight bytes without NUL, packed into one integer (different strings, different
/// integers); `None` for anything else.
fn pack(w: &[u8]) -> Option<u64> {
    if w.len() > 8 || w.contains(&0) {
        return None;
    }
    Some(w.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

/// The cues before one hit, nearest first: at most one per word of the window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cues {
    at: [usize; WINDOW],
    len: u8,
}

impl Cues {
    fn push(&mut self, pos: usize) {
        self.at[self.len as usize] = pos;
        self.len += 1;
    }

    /// The cue offsets.
    pub fn as_slice(&self) -> &[usize] {
        &self.at[..self.len as usize]
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negated(text: &str, word: &str) -> bool {
        let start = text.find(word).unwrap();
        !Negation::default().cues_before(text, start).is_empty()
    }

    #[test]
    fn direct_negation() {
        assert!(negated(
            "the pin is not locked, i can still type it",
            "locked"
        ));
        assert!(negated("pin isn't locked", "locked"));
        assert!(negated("the pin is never blocked", "blocked"));
        assert!(negated("die pin ist nicht gesperrt", "gesperrt"));
        assert!(negated("le pin n'est pas bloque", "bloque"));
        assert!(negated("el pin no esta bloqueado", "bloqueado"));
    }

    #[test]
    fn clause_boundaries_stop_negation() {
        assert!(!negated("i don't know why, my pin is locked", "locked"));
        assert!(!negated("not the printer but the pin locked", "pin"));
        assert!(!negated("no. locked", "locked"));
    }

    #[test]
    fn articles_do_not_count() {
        assert!(negated("it's not about the qr code", "qr"));
        assert!(negated("das ist nicht die pin", "pin"));
    }

    #[test]
    fn window_is_two_words() {
        assert!(!negated("i can't use my passkey", "passkey"));
        assert!(negated("it is not really locked", "locked"));
    }

    #[test]
    fn pseudo_negations_are_not_cues() {
        assert!(!negated("not sure locked", "locked"));
        assert!(!negated("no idea, locked", "locked"));
        assert!(!negated("not only locked", "locked"));
    }

    #[test]
    fn packed_cue_lookup_matches_the_list() {
        let n = Negation::new(["nope", "never ever", "ab\0", "a"]);
        let words = [
            "not",
            "no",
            "nope",
            "never",
            "never ever",
            "shouldn't",
            "couldn't",
            "nicht",
            "nothin",
            "nothing",
            "nothings",
            "a",
            "ab",
            "n",
            "sans",
            "sin",
            "tampoco",
            "x",
            "n't",
        ];
        for w in words {
            assert_eq!(n.is_cue(w), n.cues.iter().any(|c| &**c == w), "{w:?}");
        }
    }

    #[test]
    fn catalogue_cues_extend_the_list() {
        let n = Negation::new(["nope"]);
        assert!(!n.cues_before("nope locked", 5).is_empty());
    }
}
