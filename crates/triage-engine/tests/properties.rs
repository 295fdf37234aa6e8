//! Hostile input: property tests of the decoder, the normaliser, the classifier and the
//! catalogue parser. Whatever the bytes, nothing panics, a ticket is decoded or refused with a
//! reason, and every piece of evidence points at the text it quotes.

use proptest::prelude::*;
use triage_engine::catalog::{Catalog, BUILTIN_PASSKEYS};
use triage_engine::classify::{Classifier, TicketText};
use triage_engine::ticket::Ticket;

fn classifier() -> &'static Classifier {
    static C: std::sync::OnceLock<Classifier> = std::sync::OnceLock::new();
    C.get_or_init(|| Classifier::new(Catalog::builtin()).unwrap())
}

/// Text built from the pieces that make the normaliser and the matcher branch: catalogue
/// words, markup, entities, quote markers, odd Unicode, line breaks.
fn ticketish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("passkey ".to_string()),
        Just("YubiKey PIN blocked ".to_string()),
        Just("not ".to_string()),
        Just("QR code fails ".to_string()),
        Just("<p>".to_string()),
        Just("</blockquote>".to_string()),
        Just("<blockquote>".to_string()),
        Just("&nbsp;".to_string()),
        Just("&#x1F600;".to_string()),
        Just("&bogus".to_string()),
        Just("\n> ".to_string()),
        Just("\nOn Mon, 3 Nov 2025 wrote:\n".to_string()),
        Just("\n-- \n".to_string()),
        Just("\u{00A0}".to_string()),
        Just("\u{200B}".to_string()),
        Just("\u{0301}".to_string()),
        Just("ß".to_string()),
        Just("İ".to_string()),
        Just("😀".to_string()),
        Just("\r\n".to_string()),
        Just("cannot".to_string()),
        Just("secuirty ".to_string()),
        "\\PC{0,12}",
    ];
    prop::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

fn check_evidence(subject: &str, body: &str) {
    let c = classifier().classify(TicketText { subject, body });
    for f in &c.findings {
        assert!(f.score > 0.0);
        for e in &f.evidence {
            let src = if e.field == "subject" { subject } else { body };
            assert!(e.start <= e.end && e.end <= src.len(), "{e:?}");
            assert_eq!(src.get(e.start..e.end), Some(e.text.as_str()), "{e:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn classify_any_unicode_never_panics(subject in "\\PC{0,40}", body in "\\PC{0,400}") {
        check_evidence(&subject, &body);
    }

    #[test]
    fn classify_ticketish_text_keeps_evidence_honest(subject in ticketish(), body in ticketish()) {
        check_evidence(&subject, &body);
    }

    #[test]
    fn normalised_spans_stay_in_bounds(text in ticketish(), a in 0usize..2000, b in 0usize..2000) {
        let n = classifier().normalize(&text, true);
        let (lo, hi) = (a.min(b).min(n.text.len()), a.max(b).min(n.text.len()));
        let (s, e) = n.source_span(lo, hi);
        prop_assert!(s <= e && e <= text.len());
    }

    #[test]
    fn decoder_refuses_with_a_reason_or_decodes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        match Ticket::from_json(&text) {
            Ok(t) => prop_assert!(!t.id.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty() && !e.class().is_empty()),
        }
    }

    #[test]
    fn decoder_on_json_values(id in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), "\\PC{0,10}".prop_map(serde_json::Value::from)],
                              body in prop_oneof![Just(serde_json::Value::Null), "\\PC{0,50}".prop_map(serde_json::Value::from), any::<bool>().prop_map(serde_json::Value::from)]) {
        let v = serde_json::json!({"id": id, "subject": "", "body": body});
        let _ = Ticket::from_json(&v.to_string());
    }

    #[test]
    fn catalogue_parser_never_panics_on_mutations(cut in 0usize..40_000, insert in "\\PC{0,20}") {
        let mut text = BUILTIN_PASSKEYS.to_string();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &insert);
        match Catalog::from_sources(&[("m.toml".to_string(), text)]) {
            Ok(c) => prop_assert!(!c.symptoms.is_empty()),
            Err(e) => {
                for p in e.problems() {
                    prop_assert!(p.starts_with("m.toml:"), "{}", p);
                }
            }
        }
    }
}

#[test]
fn huge_body_is_classified() {
    let mut body = "lorem ipsum dolor sit amet, ".repeat(200_000);
    body.push_str("my YubiKey PIN is blocked");
    let c = classifier().classify(TicketText {
        subject: "",
        body: &body,
    });
    assert_eq!(c.ids(), vec!["pin-locked"]);
}

#[test]
fn deeply_nested_json_is_refused_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Ticket::from_json(&deep).is_err());
    let deep_obj = format!(
        r#"{{"id": "x", "body": "b", "extra": {}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(Ticket::from_json(&deep_obj).is_err());
}

#[test]
fn unpunctuated_megabyte_is_linear_enough() {
    // One "sentence" of a megabyte: sentence lookups are capped, so this finishes quickly.
    let body = "pin locked security key ".repeat(40_000);
    let c = classifier().classify(TicketText {
        subject: "",
        body: &body,
    });
    assert!(c.ids().contains(&"pin-locked"));
}
