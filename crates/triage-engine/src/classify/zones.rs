//! Which parts of a ticket body speak for the ticket, and which only repeat or decorate it.
//!
//! E-mail bodies carry earlier messages (quoted replies, Outlook header blocks), signatures,
//! "Sent from my phone" lines and legal disclaimers. Their words must not drive the result: an
//! agent's earlier reply listing five passkey checks says nothing about today's problem. This
//! module finds them, line by line, in the normalised text and returns the byte ranges to
//! ignore. A forwarded message is different: its header lines are ignored, but its content is
//! usually the very problem being forwarded, so it counts.

use super::normalize::Normalized;

/// A half-open byte range of normalised text.
pub type Range = (u32, u32);

/// Reply headers: `On <date>, <name> wrote:` and its German, French and Spanish forms.
fn is_reply_intro(line: &str, next: &str) -> bool {
    // The intro may be wrapped over two lines: look at this line and the next.
    let either = |w: &str| line.contains(w) || (line.len() < 200 && next.contains(w));
    let b = line.as_bytes();
    match b.get(..3) {
        Some(b"on ") => either("wrote"),
        Some(b"am ") => either("schrieb"),
        Some(b"le ") => either("a ecrit"),
        Some(b"el ") => either("escribi"),
        _ => line.ends_with(" wrote:") && line.len() < 160,
    }
}

fn is_original_message(line: &str) -> bool {
    let l = line.trim_matches(|c: char| c == ' ' || c == ':');
    matches!(
        l,
        "original message"
            | "ursprungliche nachricht"
            | "urspr ngliche nachricht"
            | "message d'origine"
            | "mensaje original"
            | "reply message"
    )
}

fn is_forward_marker(line: &str) -> bool {
    let l = line.trim_matches(|c: char| c == ' ' || c == ':');
    if l.len() > 80 {
        return false;
    }
    // Runs on every line: searchers built once, not per call as `str::contains` does.
    static MARKERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 4]> =
        std::sync::LazyLock::new(|| {
            [
                "forwarded message",
                "weitergeleitete nachricht",
                "message transfere",
                "mensaje reenviado",
            ]
            .map(memchr::memmem::Finder::new)
        });
    let b = l.as_bytes();
    MARKERS[0].find(b).is_some()
        || l.starts_with("begin forwarded message")
        || MARKERS[1].find(b).is_some()
        || MARKERS[2].find(b).is_some()
        || MARKERS[3].find(b).is_some()
        || l == "forwarded"
}

/// Header keys of a quoted or forwarded message, in the four languages.
fn header_key(line: &str) -> Option<&'static str> {
    const KEYS: &[(&str, &str)] = &[
        ("from:", "from"),
        ("from :", "from"),
        ("von:", "from"),
        ("de:", "from"),
        ("de :", "from"),
        ("sent:", "date"),
        ("date:", "date"),
        ("datum:", "date"),
        ("gesendet:", "date"),
        ("envoye :", "date"),
        ("envoye:", "date"),
        ("enviado el:", "date"),
        ("enviado:", "date"),
        ("fecha:", "date"),
        ("to:", "to"),
        ("an:", "to"),
        ("a :", "to"),
        ("a:", "to"),
        ("para:", "to"),
        ("cc:", "to"),
        ("subject:", "subject"),
        ("betreff:", "subject"),
        ("objet :", "subject"),
        ("objet:", "subject"),
        ("asunto:", "subject"),
    ];
    KEYS.iter()
        .find(|(k, _)| line.starts_with(k))
        .map(|(_, v)| *v)
}

fn is_sign_off(line: &str) -> bool {
    let l = line.trim_matches(|c: char| c == ' ' || c == ',' || c == '!' || c == '.' || c == '-');
    matches!(
        l,
        "thanks"
            | "thank you"
            | "thanks in advance"
            | "thanks again"
            | "many thanks"
            | "thx"
            | "ty"
            | "regards"
            | "best regards"
            | "kind regards"
            | "warm regards"
            | "best wishes"
            | "best"
            | "cheers"
            | "br"
            | "mit freundlichen grussen"
            | "freundliche grusse"
            | "viele grusse"
            | "beste grusse"
            | "liebe grusse"
            | "gruss"
            | "grusse"
            | "danke"
            | "vielen dank"
            | "lg"
            | "vg"
            | "mfg"
            | "cordialement"
            | "bien cordialement"
            | "merci"
            | "merci d'avance"
            | "bonne journee"
            | "saludos"
            | "un saludo"
            | "saludos cordiales"
            | "atentamente"
            | "gracias"
            | "muchas gracias"
    )
}

fn is_device_footer(line: &str) -> bool {
    line.starts_with("sent from my ")
        || line.starts_with("von meinem ")
        || line.starts_with("envoye de mon ")
        || line.starts_with("enviado desde mi ")
        || line.starts_with("get outlook for ")
}

fn is_disclaimer(line: &str) -> bool {
    static CONF: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("confiden"));
    static VERT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("vertraul"));
    let b = line.as_bytes();
    if CONF.find(b).is_none() && VERT.find(b).is_none() {
        return false;
    }
    let conf = line.contains("confidential")
        || line.contains("vertraulich")
        || line.contains("confidentiel")
        || line.contains("confidencial");
    let who = line.contains("intended")
        || line.contains("recipient")
        || line.contains("addressee")
        || line.contains("privileged")
        || line.contains("empfanger")
        || line.contains("destinataire")
        || line.contains("destinatario");
    conf && who
}

/// Line `i` of `n`, trimmed of the space a line break left behind.
fn line_text(n: &Normalized, i: usize) -> &str {
    let start = n.lines[i] as usize;
    let end = n
        .lines
        .get(i + 1)
        .map(|&e| e as usize)
        .unwrap_or(n.text.len());
    n.text[start..end].trim_matches(|c: char| c == ' ' || c == '\n')
}

/// Byte ranges of `n.text` that are quoted, headers, signatures or disclaimers.
///
/// `signature_lines` lists the indexes of lines that follow a `-- ` signature delimiter in the
/// source (the delimiter itself normalises to nothing, so the caller finds it in the source).
///
/// `forwarded` says the ticket is a forward (its subject starts `Fw:`, `Fwd:`, `WG:`, `TR:`, `RV:`):
/// then an `-----Original Message-----` or `From:/Sent:` block is the forwarded message, whose
/// headers are ignored but whose content counts.
pub fn ignored_ranges(
    n: &Normalized,
    signature_line: Option<usize>,
    forwarded: bool,
) -> Vec<Range> {
    ignored_ranges_and_history(n, signature_line, forwarded).0
}

/// As [`ignored_ranges`], and whether the body carries an earlier message of its thread (a
/// quoted reply, an `On … wrote:` block, an `Original Message`): then it is a reply, and its
/// own words may be only a few.
pub fn ignored_ranges_and_history(
    n: &Normalized,
    signature_line: Option<usize>,
    forwarded: bool,
) -> (Vec<Range>, bool) {
    let count = n.lines.len();
    if n.text.is_empty() {
        return (Vec::new(), false);
    }
    let mut history = false;
    let line_end = |i: usize| n.lines.get(i + 1).copied().unwrap_or(n.text.len() as u32);
    let mut out: Vec<Range> = Vec::new();
    let mut push = |s: u32, e: u32| {
        if let Some(last) = out.last_mut() {
            if last.1 >= s {
                last.1 = last.1.max(e);
                return;
            }
        }
        out.push((s, e));
    };
    let end_of_text = n.text.len() as u32;
    let mut quoted = n.quoted_lines.iter().peekable();
    let mut fresh_end = signature_line.map(|i| n.lines[i]).unwrap_or(end_of_text);
    let mut i = 0;
    let mut in_forward_headers = false;
    while i < count {
        let start = n.lines[i];
        if start >= fresh_end {
            break;
        }
        let line = line_text(n, i);
        let next = if i + 1 < count {
            line_text(n, i + 1)
        } else {
            ""
        };
        while quoted.peek().is_some_and(|&&q| (q as usize) < i) {
            quoted.next();
        }
        if quoted.peek().is_some_and(|&&q| q as usize == i) || line.starts_with('>') {
            history = true;
            push(start, line_end(i));
            i += 1;
            continue;
        }
        let outlook_block = header_key(line) == Some("from")
            && (1..=4).any(|k| {
                i + k < count && matches!(header_key(line_text(n, i + k)), Some("date" | "to"))
            });
        if is_forward_marker(line) || (forwarded && (is_original_message(line) || outlook_block)) {
            push(start, line_end(i));
            in_forward_headers = true;
            i += 1;
            continue;
        }
        if in_forward_headers {
            if header_key(line).is_some() {
                push(start, line_end(i));
                i += 1;
                continue;
            }
            in_forward_headers = false;
        }
        // An earlier message: from here to the end is not the sender's own words.
        if is_reply_intro(line, next) || is_original_message(line) || outlook_block {
            history = true;
            fresh_end = start;
            break;
        }
        if is_disclaimer(line) {
            fresh_end = start;
            break;
        }
        if is_device_footer(line) {
            push(start, line_end(i));
            i += 1;
            continue;
        }
        if is_sign_off(line) && i > 0 {
            // A sign-off: what follows is a name, a title, a phone number, up to the end or to
            // a forwarded message, whose content counts again.
            let next_forward = (i + 1..count).find(|&k| {
                let l = line_text(n, k);
                is_forward_marker(l)
                    || (forwarded && is_original_message(l))
                    || (forwarded && header_key(l) == Some("from"))
            });
            let stop = next_forward.unwrap_or(count);
            let remaining = (i + 1..stop)
                .take_while(|&k| n.lines[k] < fresh_end)
                .count();
            if remaining <= 12 {
                match next_forward {
                    Some(k) => {
                        push(start, n.lines[k]);
                        i = k;
                        continue;
                    }
                    None => {
                        fresh_end = start;
                        break;
                    }
                }
            }
        }
        i += 1;
    }
    if fresh_end < end_of_text {
        push(fresh_end, end_of_text);
        // A sign-off or disclaimer ended the sender's words: the thread may follow it.
        if !history {
            let from = n.lines.partition_point(|&l| l < fresh_end);
            history = (from..count.min(from + 20)).any(|k| {
                let line = line_text(n, k);
                let next = if k + 1 < count {
                    line_text(n, k + 1)
                } else {
                    ""
                };
                line.starts_with('>')
                    || n.quoted_lines.contains(&(k as u32))
                    || is_reply_intro(line, next)
                    || is_original_message(line)
            });
        }
    }
    (out, history)
}

/// One segment of a body: a list item or a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Start offset into the normalised text.
    pub start: u32,
    /// A chat or phone turn of the help desk's side (`Agent:`, `[10:02] Support:`): its
    /// questions and suggestions are no problem of the user's.
    pub agent: bool,
}

/// The body's segments, in order, into `out`: the text's start, every numbered or bulleted
/// item and every chat turn (`[10:02] User: …`, `Agent: …`). A multi-problem ticket usually
/// puts each problem in an item or a turn of its own. A blank-line paragraph is no segment:
/// an e-mail's paragraphs usually tell one story, and its side remarks are their own
/// paragraphs (measured: taking paragraphs as segments lost more than it found).
///
/// `source` is the field `n` was made from: list markers and time stamps are read there, as
/// normalisation drops bullets and brackets.
pub fn segments(source: &str, n: &Normalized, out: &mut Vec<Segment>) {
    out.clear();
    let src = source.as_bytes();
    for (i, &start) in n.lines.iter().enumerate() {
        let (s, _) = n.source_span(start as usize, start as usize + 1);
        let line_start = memchr::memrchr(b'\n', &src[..s.min(src.len())]).map_or(0, |i| i + 1);
        let line_end = (line_start + 64).min(src.len());
        let opens = opens_item(&src[line_start..line_end]);
        if let Some(agent) = opens.or((i == 0).then_some(false)) {
            if out.last().is_some_and(|l| l.start == start) {
                out.pop();
            }
            out.push(Segment { start, agent });
        }
    }
}

/// Speakers of a chat or phone transcript on the help desk's side, lower case.
const AGENTS: &[&[u8]] = &[
    b"agent",
    b"support",
    b"tech",
    b"technician",
    b"helpdesk",
    b"help desk",
    b"service desk",
    b"servicedesk",
    b"analyst",
    b"it",
    b"it support",
    b"technicien",
    b"agente",
    b"soporte",
    b"operator",
    b"bot",
    b"assistant",
    b"virtual agent",
];

/// Speakers on the user's side, lower case (a time stamp marks a turn whatever the name).
const USERS: &[&[u8]] = &[
    b"user",
    b"customer",
    b"caller",
    b"client",
    b"me",
    b"kunde",
    b"benutzer",
    b"mitarbeiter",
    b"utilisateur",
    b"usuario",
    b"cliente",
    b"employee",
];

/// Whether a source line (its first bytes) opens a list item (`Some(false)`) or a chat turn
/// (`Some(agent)`).
fn opens_item(line: &[u8]) -> Option<bool> {
    let l = line.trim_ascii_start();
    let &first = l.first()?;
    let spaced = |rest: &[u8]| rest.first().is_some_and(|b| b.is_ascii_whitespace());
    // Bullets: `-`, `*`, `+`, `•`, `–`, `·`, `▪`, each followed by a space.
    if matches!(first, b'-' | b'*' | b'+') && spaced(&l[1..]) {
        return Some(false);
    }
    for bullet in ["•", "–", "·", "▪", "◦"] {
        if let Some(rest) = l.strip_prefix(bullet.as_bytes()) {
            return spaced(rest).then_some(false);
        }
    }
    // Numbered items: `1.`, `2)`, `(3)`, `#4`, `a)`, then a space.
    let body = l
        .strip_prefix(b"(")
        .or_else(|| l.strip_prefix(b"#"))
        .unwrap_or(l);
    let digits = body.iter().take_while(|b| b.is_ascii_digit()).count();
    if (1..=2).contains(&digits) {
        let rest = &body[digits..];
        if matches!(rest.first(), Some(b'.' | b')')) && spaced(&rest[1..]) {
            return Some(false);
        }
    }
    if l.len() > 2 && l[0].is_ascii_lowercase() && l[1] == b')' && spaced(&l[2..]) {
        return Some(false);
    }
    // Chat turns: a time stamp (`[10:02]`, `10:02 -`), then perhaps a speaker and a colon.
    let stamp = l.strip_prefix(b"[").unwrap_or(l);
    let hour = stamp.iter().take_while(|b| b.is_ascii_digit()).count();
    let stamped = (1..=2).contains(&hour)
        && stamp.get(hour) == Some(&b':')
        && stamp.get(hour + 1).is_some_and(u8::is_ascii_digit);
    let rest = if stamped {
        let after = stamp
            .iter()
            .position(|&b| b == b']' || b == b' ')
            .unwrap_or(stamp.len());
        stamp[after..].trim_ascii_start()
    } else {
        l
    };
    let rest = rest.strip_prefix(b"]").unwrap_or(rest).trim_ascii_start();
    let rest = rest.strip_prefix(b"-").unwrap_or(rest).trim_ascii_start();
    let speaker = rest.iter().take(20).position(|&b| b == b':').map(|c| {
        let who = rest[..c].trim_ascii();
        let is = |names: &[&[u8]]| names.iter().any(|s| who.eq_ignore_ascii_case(s));
        (is(AGENTS), is(USERS))
    });
    match speaker {
        Some((true, _)) => Some(true),
        Some((_, true)) => Some(false),
        _ => stamped.then_some(false),
    }
}

/// Issue-form fields whose value is a fact about the set-up (`Browser / Version: Firefox 68`),
/// normalised (lower case, words only): the whole line is the form's, not the writer's words.
const VALUE_LABELS: &[&str] = &[
    "affected browsers",
    "app version",
    "application version",
    "browser",
    "browser version",
    "browsers",
    "build",
    "build version",
    "client version",
    "desktop",
    "device",
    "device model",
    "extension version",
    "firmware",
    "firmware version",
    "installation method",
    "javascript",
    "kernel",
    "model",
    "os",
    "os version",
    "operating system",
    "platform",
    "problem type",
    "reproduces how often",
    "revision",
    "server version",
    "smartphone",
    "system information",
    "system info",
    "tested another browser",
    "url",
    "user agent",
    "version",
    "version channel information",
    "versions",
];

/// Section headings of issue forms: the heading line alone is the form's words; what follows
/// it is the writer's (except under an expected-behaviour heading).
const SECTION_LABELS: &[&str] = &[
    "actual behavior",
    "actual behaviour",
    "actual result",
    "actual results",
    "additional context",
    "additional information",
    "additional info",
    "bug description",
    "checklist",
    "current behavior",
    "current behaviour",
    "describe the bug",
    "description",
    "environment",
    "how to reproduce",
    "log output",
    "logs",
    "prerequisites",
    "relevant log output",
    "reproduction steps",
    "screenshot",
    "screenshots",
    "steps to reproduce",
    "to reproduce",
    "what happened",
];

/// Section headings that say what should happen: their lines are not the problem either.
const EXPECTED_LABELS: &[&str] = &[
    "expected behavior",
    "expected behaviour",
    "expected result",
    "expected results",
    "what did you expect to happen",
    "what is the expected behavior",
    "what should happen",
];

/// `line` as a form label would read: lower-case words, a bracketed aside dropped.
fn label_words(line: &str) -> String {
    let line = line.split('(').next().unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    for w in line
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

/// What an issue-form line is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FormLine {
    /// A set-up fact (`OS: Windows 11`): the whole line.
    Value,
    /// A section heading standing alone (`### Steps to reproduce`).
    Heading,
    /// An expected-behaviour heading, alone or with its text on the line.
    Expected,
}

/// Whether a field's text reads as a set-up fact (`Firefox 68.0`, `Windows 11 laptop`) rather
/// than a sentence (`the key doesn't light up`): a few words, or a version number in a short line.
fn looks_like_a_value(v: &str) -> bool {
    let words = v.split_whitespace().count();
    words <= 3 || (words <= 8 && v.bytes().any(|b| b.is_ascii_digit()))
}

/// Whether a raw line is an issue-form field or heading, and which kind.
fn form_line(line: &str) -> Option<FormLine> {
    let t = line.trim().trim_start_matches(['#', '-', '*', '>', ' ']);
    let (head, rest) = match t.find(':') {
        Some(i) if i <= 60 => (&t[..i], t[i + 1..].trim_matches(['*', ' ', '_'])),
        Some(_) => return None,
        None if t.len() <= 60 => (t, ""),
        None => return None,
    };
    let words = label_words(head);
    if words.is_empty() {
        return None;
    }
    let is = |list: &[&str]| list.contains(&words.as_str());
    if is(EXPECTED_LABELS) {
        Some(FormLine::Expected)
    } else if is(VALUE_LABELS) && looks_like_a_value(rest) {
        Some(FormLine::Value)
    } else if is(SECTION_LABELS) && rest.is_empty() {
        Some(FormLine::Heading)
    } else {
        None
    }
}

/// A log or stack-trace line: starts with a date and a time, or is a frame
/// (`at pkg.Class.method(File.java:12)`).
fn is_log_line(line: &str) -> bool {
    let t = line.trim_start().trim_start_matches('[').as_bytes();
    let digits =
        |r: std::ops::Range<usize>| t.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    // A date and a time (`2023-05-13T20:17:16`, `2023-05-13 20:17`): a log, not a chat turn.
    let stamped = digits(0..4)
        && t.get(4) == Some(&b'-')
        && digits(5..7)
        && t.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(t.get(10), Some(b'T' | b' '))
        && digits(11..13)
        && t.get(13) == Some(&b':');
    // A time-stamped line is a log's only with a level or key=value fields: a help-desk note
    // may also start with the time of a call.
    let machine = || {
        line.contains('=')
            || line.split(|c: char| !c.is_ascii_alphabetic()).any(|w| {
                matches!(
                    w,
                    "INFO"
                        | "INF"
                        | "WARN"
                        | "WARNING"
                        | "WRN"
                        | "ERROR"
                        | "ERR"
                        | "DEBUG"
                        | "DBG"
                        | "TRACE"
                        | "FATAL"
                )
            })
    };
    let frame = t.starts_with(b"at ") && line.contains('(') && line.trim_end().ends_with(')');
    (stamped && machine()) || frame
}

/// The lines of an issue form, code block, log or table in a plain-text body: field names,
/// fenced blocks, log lines, table rows and the "expected behaviour" section. They are the
/// template's words or a machine's, not the writer's account of the problem: like quoted text,
/// they may give context (the browser, the product) but are never evidence. Returns sorted,
/// disjoint ranges of normalised text, whole lines.
pub fn structure_ranges(source: &str, n: &Normalized) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    if n.text.is_empty() || n.lines.len() < 2 {
        return out;
    }
    // Which raw lines are structure, in order (a fence or a section spans lines).
    let mut raw_starts: Vec<usize> = Vec::new();
    let mut flags: Vec<bool> = Vec::new();
    let mut fence = false;
    let mut expected_left = 0u32;
    let mut pos = 0;
    for raw in source.split('\n') {
        raw_starts.push(pos);
        pos += raw.len() + 1;
        let t = raw.trim();
        let structure = if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            true
        } else if fence {
            true
        } else if let Some(kind) = form_line(t) {
            expected_left = if kind == FormLine::Expected { 15 } else { 0 };
            true
        } else if (t.starts_with('|') && t.matches('|').count() >= 2) || is_log_line(t) {
            true
        } else if t.starts_with('#') {
            // Another heading ends an expected-behaviour section.
            expected_left = 0;
            false
        } else if expected_left > 0 && !t.is_empty() {
            expected_left -= 1;
            true
        } else {
            false
        };
        flags.push(structure);
    }
    if !flags.iter().any(|&f| f) {
        return out;
    }
    let count = n.lines.len();
    for i in 0..count {
        let start = n.lines[i];
        let end = n.lines.get(i + 1).copied().unwrap_or(n.text.len() as u32);
        if start >= end {
            continue;
        }
        let (src, _) = n.source_span(start as usize, start as usize + 1);
        let raw = raw_starts.partition_point(|&s| s <= src).saturating_sub(1);
        if flags.get(raw).copied().unwrap_or(false) {
            match out.last_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(end),
                _ => out.push((start, end)),
            }
        }
    }
    out
}

/// Two sorted, disjoint range lists as one.
pub fn merge(a: &[Range], b: &[Range]) -> Vec<Range> {
    let mut all: Vec<Range> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<Range> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if last.1 >= r.0 => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
    }
    out
}

/// Whether `pos` falls in one of the sorted, disjoint `ranges`.
pub fn contains(ranges: &[Range], pos: u32) -> bool {
    let i = ranges.partition_point(|r| r.1 <= pos);
    ranges.get(i).is_some_and(|r| r.0 <= pos)
}

/// The line index that holds the first content after a `-- ` signature delimiter, if any.
pub fn signature_line(source: &str, n: &Normalized) -> Option<usize> {
    static DELIM: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new("\n--"));
    let b = source.as_bytes();
    // `\n--` followed by an optional space, an optional `\r`, and the end of the line.
    let at = DELIM.find_iter(b).find(|&p| {
        let rest = &b[p + 3..];
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        let rest = rest.strip_prefix(b"\r").unwrap_or(rest);
        rest.first() == Some(&b'\n')
    })?;
    // The first recorded line whose source start lies after the delimiter.
    n.lines.iter().position(|&l| {
        let (s, _) = n.source_span(l as usize, l as usize + 1);
        s > at
    })
}

#[cfg(test)]
mod tests {
    use super::super::normalize::{normalize, normalize_auto};
    use super::*;

    fn kept(src: &str) -> String {
        let n = normalize_auto(src, None);
        let sig = signature_line(src, &n);
        let r = ignored_ranges(&n, sig, false);
        let mut out = String::new();
        for (i, ch) in n.text.char_indices() {
            if !contains(&r, i as u32) {
                out.push(ch);
            }
        }
        out.trim().to_string()
    }

    #[test]
    fn gmail_reply_is_ignored() {
        let t = "My key blinks now.\n\nOn Mon, 3 Nov 2025 at 09:12, Help Desk <hd@example.com> wrote:\n> Is your PIN locked?\n> Try the QR code.";
        assert_eq!(kept(t), "my key blinks now.");
    }

    #[test]
    fn wrapped_reply_intro_is_ignored() {
        let t = "Still broken\n\nOn Mon, Nov 3, 2025 at 9:12 AM Help Desk\n<hd@example.com> wrote:\n\nold text";
        assert_eq!(kept(t), "still broken");
    }

    #[test]
    fn outlook_block_is_ignored() {
        let t = "New problem here\n\nFrom: Service Desk\nSent: Monday, 3 November 2025 09:12\nTo: Jane\nSubject: RE: passkey\n\nold reply about PIN";
        assert_eq!(kept(t), "new problem here");
    }

    #[test]
    fn german_and_french_headers_are_ignored() {
        assert_eq!(
            kept("Neu\n\nVon: IT\nGesendet: Montag\nAn: Max\nBetreff: x\n\nalt"),
            "neu"
        );
        assert_eq!(
            kept("Nouveau\n\nLe lun. 3 nov. 2025 à 09:12, Support <s@x.fr> a écrit :\n> ancien"),
            "nouveau"
        );
        assert_eq!(
            kept("Nuevo\n\nEl lun, 3 nov 2025 a las 9:12, Soporte escribió:\n> viejo"),
            "nuevo"
        );
    }

    #[test]
    fn original_message_separator() {
        assert_eq!(kept("top\n-----Original Message-----\nFrom: a\nold"), "top");
    }

    #[test]
    fn forwarded_content_counts_but_headers_do_not() {
        let t = "FYI see below\n\n---------- Forwarded message ---------\nFrom: Bob <b@x.com>\nDate: Mon, 3 Nov\nSubject: key\nTo: IT\n\nMy YubiKey is not detected.";
        assert_eq!(kept(t), "fyi see below\nmy yubikey is not detected.");
    }

    #[test]
    fn signature_and_disclaimer_are_ignored() {
        let t = "PIN is blocked.\n\nKind regards,\nJane Doe\nFinance | +1 555 0100\n\nCONFIDENTIAL: this e-mail is intended only for the named recipient.";
        assert_eq!(kept(t), "pin is blocked.");
        let t = "Key not found\n-- \nJane\nSecurity key team lead";
        assert_eq!(kept(t), "key not found");
        let t = "Key not found\n\nSent from my iPhone";
        assert_eq!(kept(t), "key not found");
    }

    #[test]
    fn html_blockquote_is_ignored() {
        let t = "<div>new text</div><blockquote type=\"cite\"><div>old PIN text</div></blockquote>";
        assert_eq!(kept(t), "new text");
    }

    #[test]
    fn forwarded_after_a_sign_off_counts() {
        let t = "Can you help her?\n\nThanks,\nColin\nTeam Lead\n\n---------- Forwarded message ---------\nFrom: Ines <i@x.com>\nDate: Wed\nSubject: passkey\n\nThe passkey setup shows an error.";
        assert_eq!(
            kept(t),
            "can you help her?\nthe passkey setup shows an error."
        );
    }

    #[test]
    fn outlook_forward_counts_when_the_subject_says_so() {
        let t = "Please look at this.\n\n-----Original Message-----\nFrom: Richard\nSent: Monday\nTo: Amelia\nSubject: Face ID error\n\nThe new sign-in fails.";
        let n = normalize_auto(t, None);
        let kept_text = |r: Vec<Range>| {
            n.text
                .char_indices()
                .filter(|(i, _)| !contains(&r, *i as u32))
                .map(|(_, c)| c)
                .collect::<String>()
        };
        assert_eq!(
            kept_text(ignored_ranges(&n, None, false)),
            "please look at this.\n"
        );
        assert_eq!(
            kept_text(ignored_ranges(&n, None, true)),
            "please look at this.\nthe new sign in fails."
        );
    }

    #[test]
    fn thanks_at_the_start_is_kept() {
        let t = "Thanks\nfor looking. My passkey fails.";
        // "thanks" alone is a sign-off only when little follows; here the message follows.
        assert!(kept(t).contains("passkey fails"));
        let _ = normalize(t, None);
    }
}

#[cfg(test)]
mod structure_tests {
    use super::super::normalize::normalize_auto;
    use super::*;

    /// The normalised text that structure leaves as evidence.
    fn evidence(src: &str) -> String {
        let n = normalize_auto(src, None);
        let r = structure_ranges(src, &n);
        n.text
            .char_indices()
            .filter(|&(i, _)| !contains(&r, i as u32))
            .map(|(_, c)| c)
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn form_fields_code_logs_and_tables_are_not_evidence() {
        let src = "**Browser / Version**: Firefox 68.0\n### Operating System\nWindows 11\n\n\
                   ### Describe the bug\nMy key is not detected.\n\n\
                   ```\nerror: security key not recognized\n```\n\
                   2023-05-13T20:17:16 INFO auth failed user=[user]\n\
                   | Browser | Works |\n|---|---|\n\
                   ### Expected behavior\nThe key should be detected.\n\n\
                   ### Additional context\nIt worked last week.";
        assert_eq!(
            evidence(src),
            "windows 11 my key is not detected. it worked last week."
        );
    }

    #[test]
    fn the_writers_words_after_a_label_stay_evidence() {
        // A portal's "Description:" carries the problem itself; a field that reads as a
        // sentence is the writer's too; a time-stamped call note is not a log.
        let src = "Category: Hardware\nDescription: the key doesn't light up\n\
                   Device: my key is not detected at all\n\
                   2024-03-05 10:02 called user, key still dead";
        let kept = evidence(src);
        assert!(kept.contains("the key doesn't light up"), "{kept}");
        assert!(kept.contains("my key is not detected at all"), "{kept}");
        assert!(kept.contains("key still dead"), "{kept}");
    }

    #[test]
    fn nothing_structured_leaves_everything() {
        let src = "Hi,\nmy passkey fails.\nThanks";
        let n = normalize_auto(src, None);
        assert!(structure_ranges(src, &n).is_empty());
    }

    #[test]
    fn merge_joins_overlaps_in_order() {
        assert_eq!(
            merge(&[(0, 5), (20, 30)], &[(3, 8), (10, 12), (29, 40)]),
            vec![(0, 8), (10, 12), (20, 40)]
        );
    }

    #[test]
    fn segments_are_items_and_turns() {
        let starts = |src: &str| {
            let n = normalize_auto(src, None);
            let mut out = Vec::new();
            segments(src, &n, &mut out);
            out.iter().map(|s| (s.start, s.agent)).collect::<Vec<_>>()
        };
        assert_eq!(starts("one line only"), vec![(0, false)]);
        assert_eq!(starts("intro\n1. first\n2) second").len(), 3);
        assert_eq!(starts("intro\n- first\n\u{2022} second").len(), 3);
        let chat = starts("[10:02] User: hi\n[10:03] Agent: hello\nJo: more");
        // An unknown name without a time stamp is no turn.
        assert_eq!(chat.iter().map(|s| s.1).collect::<Vec<_>>(), [false, true]);
        // A paragraph or a form field is no segment.
        assert_eq!(
            starts("first paragraph\n\nsecond\nBrowser: Firefox").len(),
            1
        );
    }
}
