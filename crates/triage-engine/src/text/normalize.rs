//! Text normalisation: one pass from a raw ticket field to the text the matcher reads.
//!
//! What it does, in one pass over the bytes:
//! - lower-cases, folds Latin accents (`é` -> `e`, `ß` -> `ss`) and typographic punctuation
//!   (curly quotes, dashes, non-breaking and zero-width spaces);
//! - turns hyphens, slashes, brackets, quotes and symbols (emoji included) into word breaks and
//!   collapses runs of white space, so `Wi-Fi`, `wi fi` and `WI  FI` read the same;
//! - in HTML mode, drops tags, `<script>`/`<style>` content and decodes entities, and marks the
//!   lines inside `<blockquote>` as quoted;
//! - spells contractions one way (`cant`, `cannot`, `can’t` -> `can't`) and, when given a
//!   [`Lexicon`], corrects longer words that are a small edit away from a catalogue word.
//!
//! A single line break becomes a space (mail clients wrap sentences); a blank line becomes `\n`,
//! which the matcher treats as a sentence break. Every output byte can be traced back to the
//! byte range of the original field it came from ([`Normalized::source_span`]), so evidence
//! can be shown on the text the agent sees. The map is sparse: one entry each time the
//! correspondence changes, not one per byte.

use super::fuzzy::Lexicon;

/// A line shorter than this (in bytes) ends its sentence at its line break.
pub const SHORT_LINE: usize = 48;

/// The normalised form of one ticket field.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    /// The normalised text: lower case, mostly ASCII, valid UTF-8.
    pub text: String,
    /// Start offsets (into `text`) of the original lines, in order; the first is 0.
    pub lines: Vec<u32>,
    /// Line indexes that HTML marked as quoted (inside `<blockquote>`).
    pub quoted_lines: Vec<u32>,
    /// Sparse map from `text` offsets to the original field's offsets.
    segments: Vec<Segment>,
    /// Length of the original field, for spans that end at the end.
    source_len: u32,
}

/// One stretch of the offset map: from `norm` on, output bytes correspond to source bytes.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// First output offset this segment covers.
    norm: u32,
    /// Source offset of that first output byte.
    src: u32,
    /// `0` for a one-to-one stretch; otherwise the source length of a single unit that all
    /// output bytes of the segment were made from (an entity, a folded letter, a corrected word).
    unit_len: u32,
}

impl Normalized {
    /// The byte range of the original field that produced `text[start..end]`.
    pub fn source_span(&self, start: usize, end: usize) -> (usize, usize) {
        if self.text.is_empty() || start >= end {
            let s = self.source_pos(start);
            return (s, s);
        }
        let s = self.source_pos(start);
        let last = end - 1;
        let seg = self.segment_at(last);
        let e = if seg.unit_len == 0 {
            let src = seg.src as usize + (last - seg.norm as usize);
            // A one-to-one byte may still be part of a multi-byte character: extend to the end
            // of that character.
            src + 1
        } else {
            (seg.src + seg.unit_len) as usize
        };
        (s, e.min(self.source_len as usize).max(s))
    }

    fn source_pos(&self, pos: usize) -> usize {
        if self.segments.is_empty() {
            return pos.min(self.source_len as usize);
        }
        if pos >= self.text.len() {
            return self.source_len as usize;
        }
        let seg = self.segment_at(pos);
        if seg.unit_len == 0 {
            seg.src as usize + (pos - seg.norm as usize)
        } else {
            seg.src as usize
        }
    }

    fn segment_at(&self, pos: usize) -> Segment {
        let i = self.segments.partition_point(|s| s.norm as usize <= pos);
        self.segments[i.saturating_sub(1)]
    }
}

/// Widen `(start, end)` in `source` so it starts and ends on character boundaries.
pub fn clamp_to_chars(source: &str, start: usize, end: usize) -> (usize, usize) {
    let mut s = start.min(source.len());
    while !source.is_char_boundary(s) {
        s -= 1;
    }
    let mut e = end.min(source.len()).max(s);
    while !source.is_char_boundary(e) {
        e += 1;
    }
    (s, e)
}

/// Does this field look like HTML? Cheap: a tag-like `<x` or `</` or a known entity.
pub fn looks_like_html(s: &str) -> bool {
    let b = s.as_bytes();
    let mut found = 0;
    for i in memchr::memchr_iter(b'<', b) {
        match b.get(i + 1) {
            Some(c) if c.is_ascii_alphabetic() || *c == b'/' || *c == b'!' => {
                if let Some(j) = memchr::memchr(b'>', &b[i..]) {
                    if j < 400 {
                        found += 1;
                        if found >= 1 {
                            return true;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    static NBSP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("&nbsp;"));
    static AMP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("&amp;"));
    memchr::memchr(b'&', b).is_some() && (NBSP.find(b).is_some() || AMP.find(b).is_some())
}

/// Byte classes for the ASCII fast path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Letter or digit: kept, lower-cased.
    Word,
    /// Space or tab.
    Space,
    /// Line feed.
    Newline,
    /// Dropped entirely (carriage return, control bytes).
    Drop,
    /// Kept as itself: sentence punctuation, `'`, `>`, `:`, `&`, `<`.
    Keep,
    /// Becomes a word break: hyphen, slash, brackets, quotes, symbols.
    Break,
}

const fn class_table() -> [Class; 128] {
    let mut t = [Class::Break; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphanumeric() {
            Class::Word
        } else if c == b' ' || c == b'\t' || c == 0x0b || c == 0x0c {
            Class::Space
        } else if c == b'\n' {
            Class::Newline
        } else if c < 0x20 || c == 0x7f {
            Class::Drop
        } else {
            match c {
                b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'>' | b'&' | b'<' | b'@'
                | b'#' | b'%' | b'+' | b'=' => Class::Keep,
                _ => Class::Break,
            }
        };
        i += 1;
    }
    t
}

static CLASS: [Class; 128] = class_table();

/// In [`WORD_BITS`]: the byte is an ASCII letter or digit.
const WORD_ANY: u8 = 1;
/// In [`WORD_BITS`]: the byte is an ASCII capital.
const WORD_UPPER: u8 = 2;
/// In [`WORD_BITS`]: the byte is an ASCII digit.
const WORD_DIGIT: u8 = 4;

/// Per byte, what the word fast path needs to know: `0` ends the run (anything but an ASCII
/// letter or digit, every non-ASCII byte included).
const fn word_bits() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_lowercase() {
            WORD_ANY
        } else if c.is_ascii_uppercase() {
            WORD_ANY | WORD_UPPER
        } else if c.is_ascii_digit() {
            WORD_ANY | WORD_DIGIT
        } else {
            0
        };
        i += 1;
    }
    t
}

static WORD_BITS: [u8; 256] = word_bits();

/// How a non-ASCII character is treated.
enum Fold {
    /// Replace with this lower-case ASCII text (`é` -> `e`, `’` -> `'`).
    Ascii(&'static str),
    /// A word break (white space, dashes, emoji, symbols).
    Break,
    /// Dropped (zero-width characters, soft hyphen).
    Drop,
    /// A letter without an ASCII fold: kept, lower-cased.
    Letter,
}

fn fold(c: char) -> Fold {
    use Fold::*;
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å'
        | 'Ā' | 'Ă' | 'Ą' => Ascii("a"),
        'æ' | 'Æ' => Ascii("ae"),
        'ç' | 'ć' | 'č' | 'Ç' | 'Ć' | 'Č' => Ascii("c"),
        'ď' | 'đ' | 'Ď' | 'Đ' => Ascii("d"),
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' | 'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę'
        | 'Ě' => Ascii("e"),
        'ğ' | 'Ğ' => Ascii("g"),
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => {
            Ascii("i")
        }
        'ł' | 'ľ' | 'Ł' | 'Ľ' => Ascii("l"),
        'ñ' | 'ń' | 'ň' | 'Ñ' | 'Ń' | 'Ň' => Ascii("n"),
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō'
        | 'Ő' => Ascii("o"),
        'œ' | 'Œ' => Ascii("oe"),
        'ř' | 'Ř' => Ascii("r"),
        'ś' | 'š' | 'ş' | 'Ś' | 'Š' | 'Ş' => Ascii("s"),
        'ß' | 'ẞ' => Ascii("ss"),
        'ť' | 'ţ' | 'Ť' | 'Ţ' => Ascii("t"),
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű'
        | 'Ų' => Ascii("u"),
        'ý' | 'ÿ' | 'Ý' | 'Ÿ' => Ascii("y"),
        'ź' | 'ż' | 'ž' | 'Ź' | 'Ż' | 'Ž' => Ascii("z"),
        '‘' | '’' | '‚' | '‛' | '′' | 'ʼ' | '`' | '´' => Ascii("'"),
        '…' => Ascii("."),
        '¿' | '¡' => Break,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => Drop,
        c if c.is_alphanumeric() => Letter,
        _ => Break,
    }
}

/// Contractions and their one spelling, so catalogues write `can't` once.
#[inline]
fn canonical_contraction(word: &[u8]) -> Option<&'static str> {
    // Every form below ends in `t` and is 4 to 9 bytes long: one compare turns away most words.
    if !(4..=9).contains(&word.len()) || word[word.len() - 1] != b't' {
        return None;
    }
    Some(match word {
        b"cant" | b"cannot" => "can't",
        b"dont" => "don't",
        b"doesnt" => "doesn't",
        b"didnt" => "didn't",
        b"isnt" => "isn't",
        b"wont" => "won't",
        b"wasnt" => "wasn't",
        b"arent" => "aren't",
        b"werent" => "weren't",
        b"couldnt" => "couldn't",
        b"wouldnt" => "wouldn't",
        b"havent" => "haven't",
        b"hasnt" => "hasn't",
        b"shouldnt" => "shouldn't",
        _ => return None,
    })
}

/// Decode an HTML entity body (between `&` and `;`).
fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let v = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        return char::from_u32(v);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
        "rsquo" | "lsquo" => '\'',
        "ldquo" | "rdquo" | "laquo" | "raquo" => '"',
        "ndash" | "mdash" => '-',
        "hellip" => '…',
        "eacute" => 'é',
        "egrave" => 'è',
        "ecirc" => 'ê',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        "szlig" => 'ß',
        "ccedil" => 'ç',
        "ntilde" => 'ñ',
        "iacute" => 'í',
        "oacute" => 'ó',
        "uacute" => 'ú',
        "ocirc" => 'ô',
        "icirc" => 'î',
        "ucirc" => 'û',
        "Eacute" => 'É',
        "zwnj" | "zwj" | "shy" => '\u{200B}',
        _ => return None,
    })
}

/// HTML block-level tags: each one starts a new line.
fn is_block_tag(name: &[u8]) -> bool {
    matches!(
        name,
        b"p" | b"br"
            | b"div"
            | b"li"
            | b"ul"
            | b"ol"
            | b"tr"
            | b"td"
            | b"th"
            | b"table"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"hr"
            | b"blockquote"
            | b"pre"
            | b"body"
            | b"html"
            | b"section"
            | b"article"
            | b"header"
            | b"footer"
    )
}

/// Builds a [`Normalized`]; holds the pending white space and the current word.
struct Builder<'a> {
    out: Normalized,
    lexicon: Option<&'a Lexicon>,
    /// Source offset of the first pending white-space byte, if any.
    pending_ws: Option<u32>,
    /// Line breaks seen in the pending white space.
    pending_newlines: u32,
    /// Output offset where the current word started, and its source offset.
    word_start: Option<(usize, u32)>,
    /// Whether the current word is plain ASCII letters (fuzzy correction applies only then).
    word_plain: bool,
    /// Output offset minus source offset, for the current one-to-one stretch.
    delta: i64,
    /// Whether the last segment is one-to-one.
    identity: bool,
    /// Depth of `<blockquote>` in HTML mode.
    quote_depth: u32,
}

impl<'a> Builder<'a> {
    fn new(mut out: Normalized, source_len: usize, lexicon: Option<&'a Lexicon>) -> Self {
        out.text.clear();
        out.text.reserve(source_len + 16);
        out.lines.clear();
        out.quoted_lines.clear();
        out.segments.clear();
        out.source_len = source_len as u32;
        out.lines.push(0);
        out.segments.push(Segment {
            norm: 0,
            src: 0,
            unit_len: 0,
        });
        Builder {
            out,
            lexicon,
            pending_ws: None,
            pending_newlines: 0,
            word_start: None,
            word_plain: true,
            delta: 0,
            identity: true,
            quote_depth: 0,
        }
    }

    #[inline]
    fn space(&mut self, src: u32, newline: bool) {
        self.end_word();
        if self.pending_ws.is_none() {
            self.pending_ws = Some(src);
        }
        if newline {
            self.pending_newlines += 1;
        }
    }

    /// Emit pending white space before a visible byte.
    #[inline]
    fn flush_ws(&mut self) {
        if let Some(src) = self.pending_ws.take() {
            let nl = std::mem::take(&mut self.pending_newlines);
            if !self.out.text.is_empty() {
                // A blank line ends a sentence; so does a single line break after a short line
                // (chat messages, list items, form fields), while a break in a long line is
                // a mail client's wrapping.
                let line_len = self.out.text.len() - *self.out.lines.last().unwrap() as usize;
                let byte = if nl >= 2 || (nl == 1 && line_len < SHORT_LINE) {
                    b'\n'
                } else {
                    b' '
                };
                self.push_mapped(byte, src, 1);
            }
            if nl >= 1 || self.out.text.is_empty() {
                let pos = self.out.text.len() as u32;
                if *self.out.lines.last().unwrap() != pos {
                    self.out.lines.push(pos);
                }
                if self.quote_depth > 0 {
                    self.out.quoted_lines.push(self.out.lines.len() as u32 - 1);
                }
            }
        }
    }

    /// The next output bytes copy source bytes one for one from `src` on: start a new map
    /// segment only if the offset between the two changed.
    #[inline]
    fn map_identity(&mut self, src: u32) {
        let norm = self.out.text.len();
        let d = norm as i64 - src as i64;
        if !self.identity || d != self.delta {
            self.out.segments.push(Segment {
                norm: norm as u32,
                src,
                unit_len: 0,
            });
            self.identity = true;
            self.delta = d;
        }
    }

    /// The next output bytes all come from one source unit of `src_len` bytes at `src`.
    #[inline]
    fn map_unit(&mut self, src: u32, src_len: u32) {
        self.out.segments.push(Segment {
            norm: self.out.text.len() as u32,
            src,
            unit_len: src_len,
        });
        self.identity = false;
    }

    /// A word starts at `src` unless one is already under way.
    #[inline]
    fn start_word(&mut self, src: u32) {
        if self.word_start.is_none() {
            self.word_start = Some((self.out.text.len(), src));
            self.word_plain = true;
        }
    }

    /// Push one output byte made from `src_len` source bytes at `src`.
    #[inline]
    fn push_mapped(&mut self, byte: u8, src: u32, src_len: u32) {
        if src_len == 1 {
            self.map_identity(src);
        } else {
            self.map_unit(src, src_len);
        }
        // Pushing ASCII keeps the String valid.
        self.out.text.push(byte as char);
    }

    /// Push a string made from one source unit of `src_len` bytes at `src`.
    fn push_unit(&mut self, s: &str, src: u32, src_len: u32, word: bool) {
        self.flush_ws();
        if word {
            self.start_word(src);
        } else {
            self.end_word();
        }
        if s.len() as u32 == src_len && s.is_ascii() && src_len == 1 {
            self.push_mapped(s.as_bytes()[0], src, 1);
            return;
        }
        self.map_unit(src, src_len);
        self.out.text.push_str(s);
    }

    /// A run of ASCII letters and digits, lower-cased on the way; `flags` is the union of its
    /// bytes' [`WORD_BITS`], so a run of lower-case letters is copied as it is.
    #[inline]
    fn word_run(&mut self, run: &str, src: u32, flags: u8) {
        self.flush_ws();
        self.start_word(src);
        self.map_identity(src);
        if flags & WORD_DIGIT != 0 {
            self.word_plain = false;
        }
        let norm = self.out.text.len();
        self.out.text.push_str(run);
        if flags & WORD_UPPER != 0 {
            self.out.text[norm..].make_ascii_lowercase();
        }
    }

    #[inline]
    fn word_byte(&mut self, b: u8, src: u32) {
        self.flush_ws();
        self.start_word(src);
        if !b.is_ascii_lowercase() && b != b'\'' {
            self.word_plain = false;
        }
        self.push_mapped(b, src, 1);
    }

    fn keep_byte(&mut self, b: u8, src: u32) {
        self.flush_ws();
        self.end_word();
        self.push_mapped(b, src, 1);
    }

    /// The current word ended: spell contractions one way and fix near-miss catalogue words.
    fn end_word(&mut self) {
        let Some((start, src_start)) = self.word_start.take() else {
            return;
        };
        let word = &self.out.text.as_bytes()[start..];
        let replacement: Option<&'a str> = if let Some(c) = canonical_contraction(word) {
            Some(c)
        } else if let Some(long) = self.lexicon.and_then(|lex| lex.expand(word)) {
            Some(long)
        } else if self.word_plain {
            self.lexicon.and_then(|lex| lex.correct(word))
        } else {
            None
        };
        if let Some(rep) = replacement {
            // The source span of the word: from its first byte to the end of its last byte.
            let end_norm = self.out.text.len();
            let (_, src_end) = self.out.source_span(end_norm - 1, end_norm);
            self.truncate_to(start);
            self.map_unit(src_start, src_end as u32 - src_start);
            self.out.text.push_str(rep);
        }
    }

    /// Cut the output back to `len`, dropping map segments past it.
    fn truncate_to(&mut self, len: usize) {
        self.out.text.truncate(len);
        while self.out.segments.len() > 1 && self.out.segments.last().unwrap().norm as usize >= len
        {
            self.out.segments.pop();
        }
    }

    fn finish(mut self) -> Normalized {
        self.end_word();
        self.out.quoted_lines.dedup();
        self.out
    }
}

/// Normalise a plain-text field.
pub fn normalize(source: &str, lexicon: Option<&Lexicon>) -> Normalized {
    run(source, false, lexicon, Normalized::default())
}

/// Normalise a field, choosing HTML mode when the text looks like HTML.
pub fn normalize_auto(source: &str, lexicon: Option<&Lexicon>) -> Normalized {
    run(
        source,
        looks_like_html(source),
        lexicon,
        Normalized::default(),
    )
}

/// As [`normalize_auto`], reusing the buffers of `into` (which is overwritten).
pub fn normalize_auto_into(source: &str, lexicon: Option<&Lexicon>, into: &mut Normalized) {
    let buf = std::mem::take(into);
    *into = run(source, looks_like_html(source), lexicon, buf);
}

fn run(source: &str, html: bool, lexicon: Option<&Lexicon>, buf: Normalized) -> Normalized {
    let bytes = source.as_bytes();
    let mut b = Builder::new(buf, bytes.len(), lexicon);
    let mut i = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        let src = i as u32;
        if c < 0x80 {
            if html && c == b'<' {
                if let Some(next) = html_tag(bytes, i, &mut b) {
                    i = next;
                    continue;
                }
            }
            if html && c == b'&' {
                if let Some((ch, next)) = html_entity(bytes, i) {
                    push_char(&mut b, ch, src, (next - i) as u32);
                    i = next;
                    continue;
                }
            }
            match CLASS[c as usize] {
                Class::Word => {
                    // Fast path: a run of ASCII letters and digits in one go, one table load a
                    // byte, noting on the way whether it holds capitals or digits.
                    let mut flags = WORD_BITS[c as usize];
                    let mut j = i + 1;
                    while j < bytes.len() {
                        let f = WORD_BITS[bytes[j] as usize];
                        if f == 0 {
                            break;
                        }
                        flags |= f;
                        j += 1;
                    }
                    b.word_run(&source[i..j], src, flags);
                    i = j;
                    continue;
                }
                Class::Space => b.space(src, false),
                Class::Newline => b.space(src, true),
                Class::Drop => {}
                Class::Keep => {
                    if c == b'\'' && b.word_start.is_some() {
                        // An apostrophe inside a word (can't, l'option) belongs to it.
                        b.word_byte(c, src);
                    } else {
                        b.keep_byte(c, src)
                    }
                }
                Class::Break => b.space(src, false),
            }
            i += 1;
        } else {
            let ch = source[i..].chars().next().unwrap();
            let len = ch.len_utf8();
            push_char(&mut b, ch, src, len as u32);
            i += len;
        }
    }
    b.finish()
}

fn push_char(b: &mut Builder, ch: char, src: u32, src_len: u32) {
    if ch.is_ascii() {
        let c = ch as u8;
        match CLASS[c as usize] {
            Class::Word => {
                let lc = c.to_ascii_lowercase();
                if src_len == 1 {
                    b.word_byte(lc, src)
                } else {
                    let s = [lc];
                    b.push_unit(std::str::from_utf8(&s).unwrap(), src, src_len, true)
                }
            }
            Class::Space | Class::Break => b.space(src, false),
            Class::Newline => b.space(src, true),
            Class::Drop => {}
            Class::Keep => {
                let s = [c];
                let word = c == b'\'' && b.word_start.is_some();
                b.push_unit(std::str::from_utf8(&s).unwrap(), src, src_len, word)
            }
        }
        return;
    }
    match fold(ch) {
        Fold::Ascii(s) => {
            let word =
                s.as_bytes()[0].is_ascii_alphanumeric() || (s == "'" && b.word_start.is_some());
            b.push_unit(s, src, src_len, word);
        }
        Fold::Break => b.space(src, false),
        Fold::Drop => {}
        Fold::Letter => {
            let mut buf = [0u8; 16];
            let mut n = 0;
            for lc in ch.to_lowercase() {
                n += lc.encode_utf8(&mut buf[n..]).len();
                if n > 12 {
                    break;
                }
            }
            let s = std::str::from_utf8(&buf[..n]).unwrap_or("");
            b.push_unit(s, src, src_len, true);
            b.word_plain = false;
        }
    }
}

/// Handle a tag starting at `i`; returns the index after it, or `None` if `<` is literal.
fn html_tag(bytes: &[u8], i: usize, b: &mut Builder) -> Option<usize> {
    let rest = &bytes[i + 1..];
    let first = *rest.first()?;
    if first == b'!' {
        // Comment or doctype.
        if rest.starts_with(b"!--") {
            let end = memchr::memmem::find(&rest[3..], b"-->")
                .map(|j| i + 1 + 3 + j + 3)
                .unwrap_or(bytes.len());
            return Some(end);
        }
        let end = memchr::memchr(b'>', rest)?;
        return Some(i + 1 + end + 1);
    }
    let closing = first == b'/';
    let name_start = if closing { 1 } else { 0 };
    let name_len = rest[name_start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 {
        return None;
    }
    let end = memchr::memchr(b'>', rest)?;
    // Every tag name handled below is short: a longer one is an inline tag, whatever it is.
    let mut name_buf = [0u8; 16];
    let name: &[u8] = if name_len <= name_buf.len() {
        for (d, c) in name_buf
            .iter_mut()
            .zip(&rest[name_start..name_start + name_len])
        {
            *d = c.to_ascii_lowercase();
        }
        &name_buf[..name_len]
    } else {
        b"-"
    };
    let mut next = i + 1 + end + 1;
    if !closing && (name == b"script" || name == b"style" || name == b"head") {
        let close = format!("</{}", String::from_utf8_lossy(name));
        let hay = &bytes[next..];
        let found = hay
            .windows(close.len())
            .position(|w| w.eq_ignore_ascii_case(close.as_bytes()));
        next = match found {
            Some(j) => {
                let after = next + j;
                memchr::memchr(b'>', &bytes[after..])
                    .map(|k| after + k + 1)
                    .unwrap_or(bytes.len())
            }
            None => bytes.len(),
        };
        b.space(i as u32, false);
        return Some(next);
    }
    if name == b"blockquote" {
        if closing {
            b.quote_depth = b.quote_depth.saturating_sub(1);
        } else {
            b.quote_depth += 1;
        }
    }
    if is_block_tag(name) {
        // Two breaks for paragraphs and blocks, one for <br>.
        b.space(i as u32, true);
        if name != b"br" {
            b.space(i as u32, true);
        }
    } else {
        // Inline tags separate nothing: `<b>pass</b>key` stays one word.
    }
    Some(next)
}

/// Decode an entity at `i` (`&...;`), returning the character and the index after it.
fn html_entity(bytes: &[u8], i: usize) -> Option<(char, usize)> {
    let rest = &bytes[i + 1..];
    let semi = rest.iter().take(12).position(|&c| c == b';')?;
    let name = std::str::from_utf8(&rest[..semi]).ok()?;
    let ch = decode_entity(name)?;
    Some((ch, i + 1 + semi + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s, None).text
    }

    #[test]
    fn lowercases_and_collapses_space() {
        assert_eq!(norm("  My   PASSKEY\tfails  "), "my passkey fails");
    }

    #[test]
    fn single_newline_is_space_blank_line_is_break() {
        let long = "a long line of text that a mail client wrapped in the middle of a";
        assert_eq!(
            norm(&format!("{long}\nsentence\n\nnext")),
            format!("{long} sentence\nnext")
        );
        // A short line (a chat message) ends its sentence.
        assert_eq!(norm("user: hi\nagent: hello"), "user: hi\nagent: hello");
        let n = normalize("a\nb\n\nc", None);
        assert_eq!(n.lines, vec![0, 2, 4]);
    }

    #[test]
    fn folds_accents_and_typography() {
        assert_eq!(norm("Clé de sécurité"), "cle de securite");
        assert_eq!(
            norm("Sicherheitsschlüssel gesperrt"),
            "sicherheitsschlussel gesperrt"
        );
        assert_eq!(norm("Straße"), "strasse");
        assert_eq!(norm("it doesn’t work"), "it doesn't work");
        assert_eq!(norm("“Use a passkey”"), "use a passkey");
        assert_eq!(norm("security\u{00A0}key"), "security key");
        assert_eq!(norm("pass\u{200B}key"), "passkey");
        assert_eq!(norm("Wi-Fi — QR"), "wi fi qr");
    }

    #[test]
    fn emoji_is_a_word_break() {
        assert_eq!(norm("key😡broken"), "key broken");
        assert_eq!(norm("HELP 🙏🙏"), "help");
    }

    #[test]
    fn contractions_are_spelled_one_way() {
        assert_eq!(norm("I CANT register"), "i can't register");
        assert_eq!(norm("it cannot"), "it can't");
        assert_eq!(norm("it doesnt"), "it doesn't");
        assert_eq!(norm("it won’t"), "it won't");
    }

    #[test]
    fn html_tags_entities_and_scripts() {
        let n = normalize_auto(
            "<html><style>p{color:red}</style><p>My&nbsp;YubiKey &amp; PIN</p><p>is <b>blocked</b></p></html>",
            None,
        );
        assert_eq!(n.text, "my yubikey & pin\nis blocked");
    }

    #[test]
    fn html_blockquote_lines_are_marked() {
        let n = normalize_auto(
            "<div>fresh text</div><blockquote><div>old text</div></blockquote><div>after</div>",
            None,
        );
        assert_eq!(n.text, "fresh text\nold text\nafter");
        assert_eq!(n.quoted_lines, vec![1]);
    }

    #[test]
    fn plain_text_with_angle_bracket_is_not_html() {
        assert!(!looks_like_html("if x < 5 then"));
        assert!(looks_like_html("hello <br> there"));
        assert!(looks_like_html("a&nbsp;b"));
    }

    #[test]
    fn spans_map_back_to_source() {
        let src = "Ma clé   de SÉCURITÉ est bloquée";
        let n = normalize(src, None);
        assert_eq!(n.text, "ma cle de securite est bloquee");
        let start = n.text.find("securite").unwrap();
        let (s, e) = n.source_span(start, start + "securite".len());
        assert_eq!(&src[s..e], "SÉCURITÉ");
        let start = n.text.find("bloquee").unwrap();
        let (s, e) = n.source_span(start, start + "bloquee".len());
        assert_eq!(&src[s..e], "bloquée");
    }

    #[test]
    fn spans_map_back_through_entities() {
        let src = "<p>PIN&nbsp;blocked &amp; done</p>";
        let n = normalize_auto(src, None);
        assert_eq!(n.text, "pin blocked & done");
        let (s, e) = n.source_span(0, "pin blocked".len());
        assert_eq!(&src[s..e], "PIN&nbsp;blocked");
        let amp = n.text.find('&').unwrap();
        let (s, e) = n.source_span(amp, amp + 1);
        assert_eq!(&src[s..e], "&amp;");
    }

    #[test]
    fn spans_cover_corrected_contractions() {
        let src = "it CANNOT work";
        let n = normalize(src, None);
        let start = n.text.find("can't").unwrap();
        let (s, e) = n.source_span(start, start + 5);
        assert_eq!(&src[s..e], "CANNOT");
        let w = n.text.find("work").unwrap();
        let (s, e) = n.source_span(w, w + 4);
        assert_eq!(&src[s..e], "work");
    }

    /// The contraction table without its length and last-byte shortcut.
    fn contraction_reference(word: &[u8]) -> Option<&'static str> {
        const FORMS: [(&str, &str); 15] = [
            ("cant", "can't"),
            ("cannot", "can't"),
            ("dont", "don't"),
            ("doesnt", "doesn't"),
            ("didnt", "didn't"),
            ("isnt", "isn't"),
            ("wont", "won't"),
            ("wasnt", "wasn't"),
            ("arent", "aren't"),
            ("werent", "weren't"),
            ("couldnt", "couldn't"),
            ("wouldnt", "wouldn't"),
            ("havent", "haven't"),
            ("hasnt", "hasn't"),
            ("shouldnt", "shouldn't"),
        ];
        FORMS
            .iter()
            .find(|(f, _)| f.as_bytes() == word)
            .map(|(_, c)| *c)
    }

    #[test]
    fn contraction_shortcut_keeps_the_table() {
        let mut words: Vec<&[u8]> = vec![b"", b"t", b"nt", b"cannt", b"shouldnt", b"shouldntt"];
        let table = [
            "cant", "cannot", "dont", "doesnt", "didnt", "isnt", "wont", "wasnt", "arent",
            "werent", "couldnt", "wouldnt", "havent", "hasnt", "shouldnt", "can't", "cannon",
        ];
        words.extend(table.iter().map(|w| w.as_bytes()));
        for w in words {
            assert_eq!(canonical_contraction(w), contraction_reference(w), "{w:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn contraction_shortcut_on_random_words(w in "[a-z']{0,12}") {
            proptest::prop_assert_eq!(
                canonical_contraction(w.as_bytes()),
                contraction_reference(w.as_bytes())
            );
        }
    }

    #[test]
    fn word_bits_agree_with_the_classes() {
        for c in 0..=255u8 {
            let word = c < 0x80 && CLASS[c as usize] == Class::Word;
            assert_eq!(WORD_BITS[c as usize] & WORD_ANY != 0, word, "{c}");
            assert_eq!(
                WORD_BITS[c as usize] & WORD_UPPER != 0,
                c.is_ascii_uppercase()
            );
            assert_eq!(WORD_BITS[c as usize] & WORD_DIGIT != 0, c.is_ascii_digit());
        }
    }

    fn test_lexicon() -> Lexicon {
        Lexicon::new(
            [
                "security",
                "yubikey",
                "passkey",
                "registration",
                "fingerprint",
            ],
            ["securely"],
        )
        .with_shorthand([
            ("pk", "passkey"),
            ("yk", "yubikey"),
            ("fido2key", "fido2 key"),
        ])
    }

    /// Text, spans and lines of a normalisation, for comparing two of them.
    fn shape(n: &Normalized) -> (String, Vec<u32>, Vec<(usize, usize)>) {
        let spans = (0..=n.text.len())
            .map(|i| n.source_span(i, (i + 1).min(n.text.len())))
            .collect();
        (n.text.clone(), n.lines.clone(), spans)
    }

    proptest::proptest! {
        /// Capitals take the lower-casing path, lower case the plain copy: both must give the
        /// same text, lines and spans (ASCII lower-casing keeps every byte offset).
        #[test]
        fn capitals_and_lower_case_normalise_alike(
            s in "([A-Za-z0-9]{1,12}|[ \\n\\t.,'’-]|é|É|ß|ü|😡|&amp;|<b>|<p>|cant|CANNOT|PK|Yk|fido2KEY|SECUIRTY|yubikye|regsitration|passkey){0,40}",
            html in proptest::bool::ANY,
        ) {
            let lex = test_lexicon();
            let lower = s.to_ascii_lowercase();
            let a = run(&s, html, Some(&lex), Normalized::default());
            let b = run(&lower, html, Some(&lex), Normalized::default());
            proptest::prop_assert_eq!(shape(&a), shape(&b));
        }
    }
}
