//! Typo tolerance: correct a ticket word to a catalogue word a small edit away.
//!
//! The lexicon holds the catalogue's longer words (7 bytes or more, ASCII letters). A ticket
//! word that is not itself in the lexicon is corrected to a lexicon word when they share the
//! first letter and their Damerau-Levenshtein distance (a swap of neighbours counts as one
//! edit) is at most 1, or at most 2 for words of 10 bytes or more. Short words are never
//! corrected: at that length one edit turns a word into another real word too often
//! (`locked` / `looked`).
//!
//! Lookup cost matters, since it runs on every longer word of every ticket: candidates are
//! bucketed by first letter and filtered by length and by a 32-bit letter-set mask before the
//! distance is computed (one edit changes at most two bits of the mask).

use std::collections::HashSet;

/// Shortest word that takes part in correction.
pub const MIN_LEN: usize = 7;
/// Words at least this long may be two edits away.
pub const TWO_EDIT_LEN: usize = 10;

/// The catalogue's correctable vocabulary.
#[derive(Debug, Default, Clone)]
pub struct Lexicon {
    /// Candidates by first letter (`a`..=`z`).
    buckets: Vec<Vec<Entry>>,
    /// Every lexicon word, for the exact-match early exit.
    words: HashSet<Box<[u8]>>,
    /// Words that must never be corrected (real words near a catalogue word).
    keep: HashSet<Box<[u8]>>,
}

#[derive(Debug, Clone)]
struct Entry {
    word: Box<str>,
    mask: u32,
}

fn mask(word: &[u8]) -> u32 {
    word.iter()
        .fold(0u32, |m, &c| m | (1 << ((c.wrapping_sub(b'a')) % 32)))
}

impl Lexicon {
    /// Build from catalogue words; `keep` lists real words that must stay as written.
    pub fn new<'a>(
        words: impl IntoIterator<Item = &'a str>,
        keep: impl IntoIterator<Item = &'a str>,
    ) -> Lexicon {
        let mut lex = Lexicon {
            buckets: vec![Vec::new(); 26],
            ..Default::default()
        };
        for w in words {
            if w.len() < MIN_LEN || !w.bytes().all(|c| c.is_ascii_lowercase()) {
                continue;
            }
            if lex.words.insert(w.as_bytes().into()) {
                lex.buckets[(w.as_bytes()[0] - b'a') as usize].push(Entry {
                    word: w.into(),
                    mask: mask(w.as_bytes()),
                });
            }
        }
        lex.keep = keep.into_iter().map(|w| w.as_bytes().into()).collect();
        lex
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the lexicon is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The lexicon word `word` is a typo of, if any (never `word` itself).
    pub fn correct(&self, word: &[u8]) -> Option<&str> {
        if word.len() < MIN_LEN - 1 || !word[0].is_ascii_lowercase() {
            return None;
        }
        let bucket = &self.buckets[(word[0] - b'a') as usize];
        if bucket.is_empty() {
            return None;
        }
        let m = mask(word);
        let mut best: Option<(&Entry, usize)> = None;
        for e in bucket {
            let el = e.word.len();
            let bound = if el.max(word.len()) >= TWO_EDIT_LEN {
                2
            } else {
                1
            };
            if el.abs_diff(word.len()) > bound || (e.mask ^ m).count_ones() > 2 * bound as u32 {
                continue;
            }
            if el == word.len() && e.word.as_bytes() == word {
                return None;
            }
            if let Some(d) = distance(word, e.word.as_bytes(), bound) {
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((e, d));
                }
            }
        }
        let (entry, _) = best?;
        if self.keep.contains(word) || self.words.contains(word) {
            return None;
        }
        Some(&entry.word)
    }
}

/// Optimal-string-alignment distance between `a` and `b`, or `None` if it exceeds `bound`.
pub fn distance(a: &[u8], b: &[u8], bound: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    let n = b.len();
    // Three rows: two back (for transpositions), one back, current.
    let mut prev2 = vec![0usize; n + 1];
    let mut prev: Vec<usize> = (0..=n).collect();
    let mut cur = vec![0usize; n + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[n];
    (d <= bound).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex() -> Lexicon {
        Lexicon::new(
            [
                "security",
                "yubikey",
                "passkey",
                "biometric",
                "registration",
                "fingerprint",
                "locked",
            ],
            ["securely"],
        )
    }

    #[test]
    fn distance_counts_swaps_as_one() {
        assert_eq!(distance(b"secuirty", b"security", 2), Some(1));
        assert_eq!(distance(b"yubikye", b"yubikey", 1), Some(1));
        assert_eq!(distance(b"abc", b"abc", 0), Some(0));
        assert_eq!(distance(b"kitten", b"sitting", 2), None);
        assert_eq!(distance(b"kitten", b"sitting", 3), Some(3));
    }

    #[test]
    fn corrects_typos_of_long_words() {
        let l = lex();
        assert_eq!(l.correct(b"secuirty"), Some("security"));
        assert_eq!(l.correct(b"yubikye"), Some("yubikey"));
        assert_eq!(l.correct(b"paskey"), Some("passkey"));
        assert_eq!(l.correct(b"biometirc"), Some("biometric"));
        assert_eq!(l.correct(b"registraiton"), Some("registration"));
        assert_eq!(l.correct(b"fingerprnt"), Some("fingerprint"));
    }

    #[test]
    fn leaves_real_and_distant_words_alone() {
        let l = lex();
        assert_eq!(l.correct(b"security"), None);
        assert_eq!(l.correct(b"securely"), None);
        // Short words are not in the lexicon at all.
        assert_eq!(l.correct(b"looked"), None);
        // Different first letter.
        assert_eq!(l.correct(b"xecurity"), None);
        // Too far.
        assert_eq!(l.correct(b"sanctity"), None);
    }
}
