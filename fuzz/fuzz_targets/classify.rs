//! Any subject and body: classified without panic, and every piece of evidence quotes exactly
//! the original bytes it points at.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use triage_engine::catalog::Catalog;
use triage_engine::classify::{Classifier, TicketText};

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| Classifier::new(Catalog::builtin()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let split = text.find('\u{1}').unwrap_or(0);
    let (subject, body) = text.split_at(split);
    let found = classifier().classify(TicketText { subject, body });
    for f in &found.findings {
        for e in &f.evidence {
            let src = if e.field == "subject" { subject } else { body };
            assert_eq!(src.get(e.start..e.end), Some(e.text.as_str()));
        }
    }
});
