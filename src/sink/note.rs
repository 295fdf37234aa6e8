//! The note triage writes on a ticket, in the markup each ticketing system expects.
//!
//! A note has a header that names it and the catalogue that decided
//! (`Triage note: 1 possible symptom (catalogue passkeys 1.2)`), then one section per symptom
//! rendered from the catalogue's reply template (title, the matched evidence, the first checks
//! numbered, the likely fix). The header doubles as the note's signature: before writing, a
//! sink looks for it among the ticket's comments to learn whether a note for this catalogue
//! version is already there (see the sinks' idempotency comments).
//!
//! Ticket text appears in a note only as quoted evidence, and it is escaped for the target:
//! - [`Markup::Html`] (Zendesk `html_body`, Freshdesk): the whole note is HTML-escaped, then
//!   paragraphs become `<p>` and line breaks `<br>`: no ticket text can add markup. Braces
//!   become entities too, so quoted `{{placeholder}}` or `{% tag %}` text is never taken for
//!   the help desk's own template syntax.
//! - [`Markup::JiraWiki`] (Jira Service Management comments, rendered as wiki markup): the
//!   characters that start wiki markup are backslash-escaped in quoted ticket text.
//! - [`Markup::ServiceNow`] (journal fields, which honour `[code]…[/code]` HTML): square
//!   brackets in quoted ticket text become parentheses.
//! - [`Markup::Plain`]: as is.
//!
//! In every markup, quoted ticket text is on one line ([`reply::quote`]), so it cannot start
//! a line-level construct (a wiki heading `h1.`, a quote `bq.`, a list).

use std::sync::Arc;

use tracing::info;

use super::config::Mode;
use super::http::TicketLocks;
use crate::catalog::Catalog;
use crate::decision::Decision;
use crate::reply;

/// The markup a system renders notes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// Plain text.
    Plain,
    /// HTML.
    Html,
    /// Jira wiki markup.
    JiraWiki,
    /// ServiceNow journal text (plain, but `[code]` tags are HTML).
    ServiceNow,
}

/// The header's first words; with the catalogue part it identifies a triage note.
pub const HEADER: &str = "Triage note:";

/// What identifies a note of this catalogue version: `(catalogue NAME VERSION)`.
pub fn signature(d: &Decision) -> String {
    format!("(catalogue {} {})", d.catalogue.name, d.catalogue.version)
}

/// Whether a comment's text (plain, HTML or wiki) is triage's note for this decision's
/// catalogue version.
pub fn is_triage_note(comment: &str, d: &Decision) -> bool {
    let sig = signature(d);
    comment.contains(HEADER) && (comment.contains(&sig) || comment.contains(&html_escape(&sig)))
}

/// What a sink writes for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Tags/labels to add (the symptoms' tags when the mode tags, and the marker).
    pub tags: Vec<String>,
    /// Whether to write a note.
    pub note: bool,
    /// Whether the note goes out as a public reply (the catalogue asks and the config allows).
    pub public: bool,
}

impl Plan {
    /// What to write: nothing in shadow mode or when no symptom was found; otherwise the
    /// mode's share plus the marker tag (which always goes with whatever is written).
    pub fn new(
        mode: Mode,
        catalog: &Catalog,
        d: &Decision,
        marker: &str,
        allow_public: bool,
    ) -> Option<Plan> {
        if mode == Mode::Shadow || d.symptoms.is_empty() {
            return None;
        }
        let mut tags = Vec::new();
        if mode.tags() {
            tags.extend(d.tags.iter().cloned());
        }
        if !tags.iter().any(|t| t == marker) {
            tags.push(marker.to_string());
        }
        let public = allow_public
            && d.symptoms
                .iter()
                .all(|f| catalog.symptom(&f.id).is_some_and(|s| s.public_reply));
        Some(Plan {
            tags,
            note: mode.note(),
            public: mode.note() && public,
        })
    }
}

/// What every ticketing-system sink knows besides its API: the catalogue (templates, public
/// reply flags), the marker tag, the mode, whether public replies are allowed, and the
/// per-ticket locks.
#[derive(Debug)]
pub struct Writer {
    /// The sink's name, for logs.
    pub sink: &'static str,
    /// The catalogue that decides (its templates render the note).
    pub catalog: Arc<Catalog>,
    /// The tag written with every change triage makes (`worker.marker_tag`).
    pub marker: String,
    /// What to write.
    pub mode: Mode,
    /// Whether a catalogue may turn the note into a public reply.
    pub allow_public: bool,
    /// One task per ticket at a time.
    pub locks: TicketLocks,
}

impl Writer {
    /// A writer for `sink`.
    pub fn new(
        sink: &'static str,
        catalog: Arc<Catalog>,
        marker: &str,
        mode: Mode,
        allow_public: bool,
    ) -> Writer {
        Writer {
            sink,
            catalog,
            marker: marker.to_string(),
            mode,
            allow_public,
            locks: TicketLocks::default(),
        }
    }

    /// What to write for `d`, or `None` (nothing found, or shadow mode: logged, not written).
    pub fn plan(&self, d: &Decision) -> Option<Plan> {
        let plan = Plan::new(
            if self.mode == Mode::Shadow {
                Mode::TagAndNote
            } else {
                self.mode
            },
            &self.catalog,
            d,
            &self.marker,
            self.allow_public,
        )?;
        if self.mode == Mode::Shadow {
            info!(
                sink = self.sink,
                ticket = %d.id,
                tags = ?plan.tags,
                symptoms = d.symptoms.len(),
                "shadow mode: would add the tags and a note; nothing written"
            );
            return None;
        }
        Some(plan)
    }

    /// The note for `d` in `markup`.
    pub fn note(&self, d: &Decision, markup: Markup) -> String {
        render(&self.catalog, d, markup)
    }

    /// Whether `tags` hold the marker.
    pub fn marked<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        tags.iter()
            .any(|t| t.as_ref().eq_ignore_ascii_case(&self.marker))
    }
}

/// The note for `d`, rendered from `catalog`'s templates in `markup`.
pub fn render(catalog: &Catalog, d: &Decision, markup: Markup) -> String {
    let n = d.symptoms.len();
    let mut out = format!(
        "{HEADER} {n} possible symptom{} {}",
        if n == 1 { "" } else { "s" },
        signature(d)
    );
    for f in &d.symptoms {
        // By id, not index: after a catalogue reload the symptoms' order may differ.
        let Some(sym) = catalog.symptom(&f.id) else {
            continue;
        };
        let mut f = f.clone();
        for ev in &mut f.evidence {
            ev.text = escape_quoted(&ev.text, markup);
        }
        // The evidence named in words quotes the same text: made again from the escaped one.
        f.why.clear();
        out.push_str("\n\n");
        out.push_str(reply::render_symptom(catalog, sym, &f).trim_end());
    }
    if let Some(t) = &d.truncated {
        out.push_str(&format!(
            "\n\nOnly the first {} of this ticket's {} of text were scanned (worker.oversize = \"scan-prefix\"): symptoms described further down were not looked for.",
            size(t.scanned_bytes),
            size(t.total_bytes)
        ));
    }
    match markup {
        Markup::Html => to_html(&out),
        _ => out,
    }
}

/// A byte count for people: `812 bytes`, `64 KiB`, `3.2 MiB`.
fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    match bytes {
        b if b < KIB => format!("{b} bytes"),
        b if b < KIB * KIB => format!("{} KiB", b / KIB),
        b => format!("{:.1} MiB", b as f64 / (KIB * KIB) as f64),
    }
}

/// Ticket text escaped for quoting in a note of `markup` (HTML is escaped later, whole).
fn escape_quoted(text: &str, markup: Markup) -> String {
    match markup {
        Markup::Plain | Markup::Html => text.to_string(),
        Markup::JiraWiki => {
            let mut s = String::with_capacity(text.len() + 8);
            for c in text.chars() {
                if "\\*_?-+^~{}[]|!#".contains(c) {
                    s.push('\\');
                }
                s.push(c);
            }
            s
        }
        Markup::ServiceNow => text.replace('[', "(").replace(']', ")"),
    }
}

/// `& < > " '` as entities.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Plain text as HTML: escaped, blank-line-separated paragraphs in `<p>`, line breaks `<br>`.
fn to_html(text: &str) -> String {
    text.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let lines: Vec<String> = p
                .lines()
                .map(|l| html_escape(l).replace('{', "&#123;").replace('}', "&#125;"))
                .collect();
            format!("<p>{}</p>", lines.join("<br>"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Evidence, TicketText};
    use crate::ticket::Ticket;

    fn decision(body: &str) -> (std::sync::Arc<Catalog>, Decision) {
        let c = Classifier::new(Catalog::builtin()).unwrap();
        let t = Ticket {
            id: "1".into(),
            body: body.into(),
            ..Default::default()
        };
        let cl = c.classify(TicketText { subject: "", body });
        let d = Decision::new(c.catalog(), &t, cl);
        (c.catalog().clone(), d)
    }

    fn with_evidence(d: &mut Decision, text: &str) {
        d.symptoms[0].evidence = vec![Evidence {
            field: "body",
            start: 0,
            end: text.len(),
            text: text.into(),
            rule: "keyword:x".into(),
        }];
        // The evidence named in words is made again from the new evidence.
        d.symptoms[0].why.clear();
    }

    #[test]
    fn a_note_on_a_truncated_ticket_says_how_much_was_scanned() {
        let (cat, mut d) = decision("My security key PIN is blocked after too many attempts.");
        let whole = render(&cat, &d, Markup::Plain);
        assert!(!whole.contains("were scanned"), "{whole}");
        d.truncated = Some(crate::ticket::Truncation {
            scanned_bytes: 1 << 20,
            total_bytes: 5 << 20,
        });
        let note = render(&cat, &d, Markup::Plain);
        assert!(
            note.ends_with("Only the first 1.0 MiB of this ticket's 5.0 MiB of text were scanned (worker.oversize = \"scan-prefix\"): symptoms described further down were not looked for."),
            "{note}"
        );
        assert_eq!(size(812), "812 bytes");
        assert_eq!(size(64 * 1024 + 3), "64 KiB");
    }

    #[test]
    fn the_note_names_catalogue_symptom_checks_and_fix() {
        let (cat, d) = decision("My security key PIN is blocked after too many attempts.");
        assert!(!d.symptoms.is_empty());
        let sym = &cat.symptoms[d.symptoms[0].index];
        let note = render(&cat, &d, Markup::Plain);
        let first = note.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "Triage note: {} possible symptom{} (catalogue {} {})",
                d.symptoms.len(),
                if d.symptoms.len() == 1 { "" } else { "s" },
                cat.name,
                cat.version
            )
        );
        assert!(note.contains(&sym.title), "{note}");
        assert!(
            note.contains(&format!("1. {}", sym.checks[0].trim())),
            "{note}"
        );
        assert!(note.contains(sym.fix.trim()), "{note}");
        assert!(is_triage_note(&note, &d));
        let html = render(&cat, &d, Markup::Html);
        assert!(html.starts_with("<p>Triage note: "), "{html}");
        assert!(is_triage_note(&html, &d));
        let mut other = d.clone();
        other.catalogue.version = "0.0.0-other".into();
        assert!(
            !is_triage_note(&note, &other),
            "another version's note does not count"
        );
    }

    #[test]
    fn quoted_ticket_text_cannot_add_markup() {
        let (cat, mut d) = decision("My security key PIN is blocked.");
        with_evidence(
            &mut d,
            "<img src=x onerror=alert(1)> PIN & [code]<b>x</b>[/code] *b* {color:red}",
        );
        let html = render(&cat, &d, Markup::Html);
        assert!(!html.contains("<img") && !html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt; PIN &amp;"),
            "{html}"
        );
        let tags: Vec<&str> = html
            .match_indices('<')
            .map(|(i, _)| &html[i..i + 3])
            .collect();
        assert!(
            tags.iter().all(|t| ["<p>", "</p", "<br"].contains(t)),
            "{tags:?}"
        );

        let sn = render(&cat, &d, Markup::ServiceNow);
        assert!(!sn.to_lowercase().contains("[code]"), "{sn}");
        assert!(sn.contains("(code)<b>x</b>(/code)"), "{sn}");

        let wiki = render(&cat, &d, Markup::JiraWiki);
        assert!(wiki.contains("\\[code\\]"), "{wiki}");
        assert!(wiki.contains("\\*b\\* \\{color:red\\}"), "{wiki}");
    }

    /// Ticket text written to break out of a quote in each markup a help desk renders.
    const HOSTILE: &[&str] = &[
        "<script>alert(document.cookie)</script>",
        "</p></div><h1>Pay here</h1><p>",
        "<img src=x onerror=alert(1)>",
        "<a href=\"javascript:alert(1)\">click</a>",
        "{code}x{code}",
        "{noformat}",
        "{color:red}x{color}",
        "[text|http://evil.example]",
        "[~accountid:123]",
        "!http://evil.example/i.png!",
        "*bold* _it_ -del- +ins+ ^sup^ ~sub~ ??cite??",
        "{{ticket.requester.email}}",
        "{% if x %}y{% endif %}",
        "[code]<b>x</b>[/code]",
        "[CODE]<iframe src=x>[/CODE]",
        "&amp; &lt;already escaped&gt;",
        "line\nh1. Heading\nbq. quote\n# list\n----",
    ];

    /// The note for `d` with `text` quoted as its only evidence.
    fn note_quoting(text: &str, markup: Markup) -> String {
        let (cat, mut d) = decision("My security key PIN is blocked.");
        with_evidence(&mut d, text);
        render(&cat, &d, markup)
    }

    #[test]
    fn hostile_ticket_text_is_inert_in_html_notes() {
        // Zendesk html_body and Freshdesk notes.
        for text in HOSTILE {
            let html = note_quoting(text, Markup::Html);
            let tags: Vec<&str> = html
                .match_indices('<')
                .map(|(i, _)| &html[i..(i + 4).min(html.len())])
                .collect();
            assert!(
                tags.iter()
                    .all(|t| ["<p>", "</p>", "<br>"].iter().any(|ok| t.starts_with(ok))),
                "{text:?} added markup: {html}"
            );
            assert!(!html.contains("{{") && !html.contains("{%"), "{html}");
            // The text is still there for the agent to read, escaped.
            let shown = html_escape(&text.replace('\n', " "))
                .replace('{', "&#123;")
                .replace('}', "&#125;");
            assert!(html.contains(&shown), "{text:?} not quoted: {html}");
        }
    }

    #[test]
    fn hostile_ticket_text_is_inert_in_jira_wiki_notes() {
        for text in HOSTILE {
            let wiki = note_quoting(text, Markup::JiraWiki);
            let quoted = wiki
                .split('“')
                .nth(1)
                .and_then(|q| q.split('”').next())
                .unwrap_or_else(|| panic!("no quote in {wiki}"));
            let chars: Vec<char> = quoted.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if "*_?-+^~{}[]|!#".contains(*c) {
                    let backslashes = chars[..i].iter().rev().take_while(|b| **b == '\\').count();
                    assert!(
                        backslashes % 2 == 1,
                        "{c:?} at {i} of {quoted:?} is not escaped (from {text:?})"
                    );
                }
            }
            assert!(!quoted.contains('\n'), "one line: {quoted:?}");
            let unescaped: String = quoted
                .replace("\\\\", "\u{0}")
                .replace('\\', "")
                .replace('\u{0}', "\\");
            assert_eq!(
                unescaped,
                text.replace('\n', " "),
                "the text itself is kept"
            );
        }
    }

    #[test]
    fn hostile_ticket_text_is_inert_in_servicenow_journal_notes() {
        for text in HOSTILE {
            let sn = note_quoting(text, Markup::ServiceNow);
            let quoted = sn
                .split('“')
                .nth(1)
                .and_then(|q| q.split('”').next())
                .unwrap();
            assert!(!quoted.contains('[') && !quoted.contains(']'), "{quoted:?}");
            assert!(!sn.to_ascii_lowercase().contains("[code]"), "{sn}");
            assert!(!quoted.contains('\n'), "one line: {quoted:?}");
        }
    }

    #[test]
    fn plans_follow_the_mode_and_always_carry_the_marker() {
        let (cat, d) = decision("My security key PIN is blocked.");
        let p = |m| Plan::new(m, &cat, &d, "triage-done", true);
        assert_eq!(p(Mode::Shadow), None);
        let tn = p(Mode::TagAndNote).unwrap();
        assert!(tn.note);
        assert_eq!(tn.tags.last().unwrap(), "triage-done");
        assert_eq!(tn.tags.len(), d.tags.len() + 1);
        let n = p(Mode::Note).unwrap();
        assert_eq!(n.tags, vec!["triage-done"]);
        let t = p(Mode::Tag).unwrap();
        assert!(!t.note && !t.public);
        // The built-in catalogue asks for no public reply: internal even when allowed.
        assert!(!tn.public);
        let (_, none) = decision("The printer on floor 3 is out of toner.");
        assert!(none.symptoms.is_empty());
        assert_eq!(Plan::new(Mode::TagAndNote, &cat, &none, "m", false), None);
    }

    #[test]
    fn public_only_when_the_catalogue_asks_and_the_config_allows() {
        let (cat, d) = decision("My security key PIN is blocked.");
        let mut cat = (*cat).clone();
        for s in &mut cat.symptoms {
            s.public_reply = true;
        }
        assert!(Plan::new(Mode::Note, &cat, &d, "m", true).unwrap().public);
        assert!(!Plan::new(Mode::Note, &cat, &d, "m", false).unwrap().public);
    }
}
