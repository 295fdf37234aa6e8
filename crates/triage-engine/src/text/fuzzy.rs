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
//! bucketed by their first two letters and length, and filtered by a 32-bit letter-set mask
//! (one edit changes at most two bits of it) and by their common prefix and suffix before the
//! distance is computed. A typo in the first two letters is therefore not corrected.

use std::collections::HashSet;

/// Shortest word that takes part in correction.
pub const MIN_LEN: usize = 7;
/// Longest word that takes part in correction.
pub const MAX_LEN: usize = 40;
/// Words at least this long may be two edits away.
pub const TWO_EDIT_LEN: usize = 10;

/// The catalogue's correctable vocabulary.
#[derive(Debug, Default, Clone)]
pub struct Lexicon {
    /// Candidates, grouped by first two letters and length (see [`bucket`]).
    entries: Vec<Entry>,
    /// `entries[offsets[b]..offsets[b + 1]]` is bucket `b`.
    offsets: Vec<u32>,
    /// Per first two letters, bit `len` set when some candidate has that length: most ticket
    /// words are turned away with one load, before any bucket is read.
    lengths: Vec<u64>,
    /// Every lexicon word, for the exact-match early exit.
    words: HashSet<Box<[u8]>>,
    /// Words that must never be corrected (real words near a catalogue word).
    keep: HashSet<Box<[u8]>>,
    /// Help-desk shorthand: a word and the words it stands for.
    shorthand: std::collections::HashMap<Box<[u8]>, Box<str>>,
    /// Bit `len` set when some shorthand word has that length: most words are turned away
    /// without hashing.
    shorthand_lengths: u64,
    /// Per first byte, bit `len` set when some shorthand word starting with that byte has that
    /// length; and the same per last byte. Together they turn away nearly every ticket word
    /// that passes `shorthand_lengths` (`please`, `security`) with two loads instead of a hash.
    shorthand_first: Vec<u64>,
    shorthand_last: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Entry {
    word: Box<str>,
    mask: u32,
}

fn eb_prefix_of(a: &[u8], b: &[u8]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Number of buckets: 26 first letters x 26 second letters x lengths 0..=MAX_LEN.
const BUCKETS: usize = 26 * 26 * (MAX_LEN + 1);

/// Candidates share the first two letters: typos rarely touch them, and it keeps each bucket
/// to a handful of words.
fn bucket(first: u8, second: u8, len: usize) -> usize {
    prefix(first, second) * (MAX_LEN + 1) + len
}

/// Index of a two-letter prefix.
fn prefix(first: u8, second: u8) -> usize {
    (first - b'a') as usize * 26 + (second - b'a') as usize
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
        let mut lex = Lexicon::default();
        let mut by_bucket: Vec<(usize, Entry)> = Vec::new();
        for w in words {
            if w.len() < MIN_LEN || w.len() > MAX_LEN || !w.bytes().all(|c| c.is_ascii_lowercase())
            {
                continue;
            }
            if lex.words.insert(w.as_bytes().into()) {
                let b = w.as_bytes();
                by_bucket.push((
                    bucket(b[0], b[1], w.len()),
                    Entry {
                        word: w.into(),
                        mask: mask(b),
                    },
                ));
            }
        }
        by_bucket.sort_by(|a, b| (a.0, &a.1.word).cmp(&(b.0, &b.1.word)));
        lex.offsets = vec![0; BUCKETS + 1];
        for (b, _) in &by_bucket {
            lex.offsets[b + 1] += 1;
        }
        for i in 0..BUCKETS {
            lex.offsets[i + 1] += lex.offsets[i];
        }
        lex.lengths = vec![0; 26 * 26];
        for (_, e) in &by_bucket {
            let b = e.word.as_bytes();
            lex.lengths[prefix(b[0], b[1])] |= 1 << b.len();
        }
        lex.entries = by_bucket.into_iter().map(|(_, e)| e).collect();
        lex.keep = keep.into_iter().map(|w| w.as_bytes().into()).collect();
        lex
    }

    /// Read each `(word, words)` pair's word as the words it stands for (`pk` -> `passkey`).
    pub fn with_shorthand<'a>(
        mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Lexicon {
        for (short, long) in pairs {
            if short.is_empty() || short.len() > 63 {
                continue;
            }
            self.shorthand_lengths |= 1 << short.len();
            if self.shorthand_first.is_empty() {
                self.shorthand_first = vec![0; 256];
                self.shorthand_last = vec![0; 256];
            }
            let b = short.as_bytes();
            self.shorthand_first[b[0] as usize] |= 1 << b.len();
            self.shorthand_last[b[b.len() - 1] as usize] |= 1 << b.len();
            self.shorthand.insert(short.as_bytes().into(), long.into());
        }
        self
    }

    /// The words a shorthand word stands for, if it is one.
    #[inline]
    pub fn expand(&self, word: &[u8]) -> Option<&str> {
        if word.len() > 63 || self.shorthand_lengths & (1 << word.len()) == 0 {
            return None;
        }
        // A non-empty word of a listed length: the tables exist (a pair was added).
        let bit = 1 << word.len();
        if self.shorthand_first[word[0] as usize] & bit == 0
            || self.shorthand_last[word[word.len() - 1] as usize] & bit == 0
        {
            return None;
        }
        self.shorthand.get(word).map(|w| &**w)
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
        let n = word.len();
        if !(MIN_LEN - 1..=MAX_LEN).contains(&n)
            || !word[0].is_ascii_lowercase()
            || !word[1].is_ascii_lowercase()
            || self.entries.is_empty()
        {
            return None;
        }
        let bound = if n >= TWO_EDIT_LEN { 2 } else { 1 };
        let lo = n.saturating_sub(bound).max(MIN_LEN);
        let hi = (n + bound).min(MAX_LEN);
        // No candidate of any length in lo..=hi: nothing to compare.
        let wanted = (u64::MAX << lo) & (u64::MAX >> (63 - hi));
        if self.lengths[prefix(word[0], word[1])] & wanted == 0 {
            return None;
        }
        // A lexicon word is never corrected (the end of this function says so too): find it
        // first, by binary search in its own bucket (sorted by word), before comparing it with
        // its neighbours.
        if n >= MIN_LEN {
            let b = bucket(word[0], word[1], n);
            let own = &self.entries[self.offsets[b] as usize..self.offsets[b + 1] as usize];
            if own
                .binary_search_by(|e| e.word.as_bytes().cmp(word))
                .is_ok()
            {
                return None;
            }
        }
        let m = mask(word);
        let mut best: Option<(&Entry, usize)> = None;
        for len in lo..=hi {
            let b = bucket(word[0], word[1], len);
            for e in &self.entries[self.offsets[b] as usize..self.offsets[b + 1] as usize] {
                let el = e.word.len();
                let bound = if el.max(word.len()) >= TWO_EDIT_LEN {
                    2
                } else {
                    1
                };
                if el.abs_diff(word.len()) > bound || (e.mask ^ m).count_ones() > 2 * bound as u32 {
                    continue;
                }
                // One word continuing the other is another form of it (method / methode,
                // option / options), not a typo.
                if eb_prefix_of(e.word.as_bytes(), word) {
                    continue;
                }
                // k edits leave at least max_len - 2k bytes in a common prefix plus suffix.
                let eb = e.word.as_bytes();
                let pre = eb.iter().zip(word).take_while(|(a, b)| a == b).count();
                let suf = eb[pre..]
                    .iter()
                    .rev()
                    .zip(word[pre.min(word.len())..].iter().rev())
                    .take_while(|(a, b)| a == b)
                    .count();
                if pre + suf + 2 * bound < el.max(word.len()) {
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
    // A common prefix and suffix change nothing in the distance (also with transpositions):
    // only the differing middle goes through the table, usually a byte or two.
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[pre..], &b[pre..]);
    let suf = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suf], &b[..b.len() - suf]);
    let n = b.len();
    // Three rows: two back (for transpositions), one back, current; on the stack for the
    // lengths the lexicon holds.
    const ROW: usize = MAX_LEN + 3;
    if n >= ROW {
        let mut rows = vec![0usize; 3 * (n + 1)];
        return distance_in(a, b, bound, &mut rows);
    }
    let mut rows = [0usize; 3 * ROW];
    distance_in(a, b, bound, &mut rows[..3 * (n + 1)])
}

/// [`distance`] with its three rows in `rows` (`3 * (b.len() + 1)` long).
fn distance_in(a: &[u8], b: &[u8], bound: usize, rows: &mut [usize]) -> Option<usize> {
    let n = b.len();
    let (prev2, rest) = rows.split_at_mut(n + 1);
    let (prev, cur) = rest.split_at_mut(n + 1);
    let (mut prev2, mut prev, mut cur) = (prev2, prev, cur);
    for (j, v) in prev.iter_mut().enumerate() {
        *v = j;
    }
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

    /// The table over the whole words, as a reference for the affix-stripping shortcut.
    fn full_table(a: &[u8], b: &[u8]) -> usize {
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, v) in d[0].iter_mut().enumerate() {
            *v = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[i - 2][j - 2] + 1);
                }
                d[i][j] = v;
            }
        }
        d[a.len()][b.len()]
    }

    #[test]
    fn distance_matches_the_full_table() {
        // Every pair of words up to 5 letters over a 3-letter alphabet, where shared prefixes,
        // suffixes and swaps are frequent.
        let mut words: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = words.clone();
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|w| {
                    b"abc".iter().map(move |&c| {
                        let mut w = w.clone();
                        w.push(c);
                        w
                    })
                })
                .collect();
            words.extend(last.iter().cloned());
        }
        for a in &words {
            for b in &words {
                let full = full_table(a, b);
                for bound in 0..=3 {
                    assert_eq!(
                        distance(a, b, bound),
                        (full <= bound).then_some(full),
                        "{:?} {:?} bound {bound}",
                        std::str::from_utf8(a),
                        std::str::from_utf8(b)
                    );
                }
            }
        }
    }

    #[test]
    fn corrects_typos_of_long_words() {
        let l = lex();
        assert_eq!(l.correct(b"secuirty"), Some("security"));
        assert_eq!(l.correct(b"yubikye"), Some("yubikey"));
        assert_eq!(l.correct(b"paskey"), Some("passkey"));
        assert_eq!(l.correct(b"passkeys"), None, "an inflection, not a typo");
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

    #[test]
    fn shorthand_filter_turns_away_only_non_shorthand() {
        let pairs = [
            ("pk", "passkey"),
            ("pks", "passkeys"),
            ("fido2key", "fido2 key"),
            ("whfb", "windows hello for business"),
            ("authr", "authenticator"),
        ];
        let l = lex().with_shorthand(pairs);
        let map: std::collections::HashMap<&[u8], &str> =
            pairs.iter().map(|(k, v)| (k.as_bytes(), *v)).collect();
        let mut words: Vec<Vec<u8>> = vec![Vec::new()];
        for w in [
            "pk", "pks", "pkz", "ppk", "fido2key", "fido2kez", "whfb", "whfc", "authr",
        ] {
            words.push(w.as_bytes().to_vec());
        }
        // Every word of up to 3 bytes over an alphabet that shares first and last bytes with
        // the shorthand.
        let alphabet = b"pkszwhbf2r";
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..3 {
            last = last
                .iter()
                .flat_map(|w| {
                    alphabet.iter().map(move |&c| {
                        let mut w = w.clone();
                        w.push(c);
                        w
                    })
                })
                .collect();
            words.extend(last.iter().cloned());
        }
        for w in &words {
            assert_eq!(l.expand(w), map.get(w.as_slice()).copied(), "{w:?}");
        }
        assert_eq!(lex().expand(b"pk"), None);
        assert_eq!(lex().expand(b""), None);
    }
}
