//! Any catalogue text: loaded, or refused with `path:line:` problems. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    match triage_engine::catalog::Catalog::from_sources(&[("f.toml".to_string(), text)]) {
        Ok(c) => {
            let _ = triage_engine::classify::Classifier::new(c);
        }
        Err(e) => {
            for p in e.problems() {
                assert!(p.starts_with("f.toml:"), "{p}");
            }
        }
    }
});
