//! Any bytes: decoded to a ticket, or refused with a reason and a class. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match triage_engine::ticket::Ticket::from_json(&text) {
        Ok(t) => assert!(!t.id.is_empty()),
        Err(e) => assert!(!e.class().is_empty() && !e.to_string().is_empty()),
    }
});
