//! Data-driven tests of the matching engine: every `[[case]]` in `tests/data/engine/**/*.toml`
//! is a ticket and the exact set of symptoms it must produce. `generic/` carries its own small
//! catalogue (engine behaviour, no product knowledge); `passkeys/` runs the built-in catalogue.
//! A failing case is reported by file and name with what was found and why.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use triage_engine::catalog::Catalog;
use triage_engine::classify::{Classifier, TicketText};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    expect: Vec<String>,
    #[serde(default)]
    evidence: Vec<String>,
}

fn data(dir: &str) -> PathBuf {
    // The cases are the workspace's test data, two levels above this crate.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    root.join("tests/data/engine").join(dir)
}

fn run_cases(classifier: &Classifier, file: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let cases: Cases = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for c in &cases.case {
        assert!(
            names.insert(c.name.clone()),
            "{}: duplicate case name {}",
            file.display(),
            c.name
        );
        let found = classifier.classify(TicketText {
            subject: &c.subject,
            body: &c.body,
        });
        let mut got: Vec<&str> = found.ids();
        got.sort();
        let mut want: Vec<&str> = c.expect.iter().map(String::as_str).collect();
        want.sort();
        let mut problems = Vec::new();
        if got != want {
            problems.push(format!("expected {want:?}, found {got:?}"));
        }
        for e in &c.evidence {
            if !found
                .findings
                .iter()
                .flat_map(|f| &f.evidence)
                .any(|ev| &ev.text == e)
            {
                problems.push(format!("no evidence with text {e:?}"));
            }
        }
        // Evidence offsets always point at the text they quote.
        for f in &found.findings {
            for ev in &f.evidence {
                let src = if ev.field == "subject" {
                    &c.subject
                } else {
                    &c.body
                };
                if src.get(ev.start..ev.end) != Some(ev.text.as_str()) {
                    problems.push(format!(
                        "evidence {:?} does not match {}..{}",
                        ev.text, ev.start, ev.end
                    ));
                }
            }
        }
        if !problems.is_empty() {
            let detail: Vec<String> = found
                .findings
                .iter()
                .map(|f| {
                    let ev: Vec<String> = f
                        .evidence
                        .iter()
                        .map(|e| format!("{} {:?}", e.rule, e.text))
                        .collect();
                    format!("      {} {:.2}: {}", f.id, f.score, ev.join("; "))
                })
                .collect();
            failures.push(format!(
                "{}: case {}: {}\n{}",
                file.display(),
                c.name,
                problems.join("; "),
                detail.join("\n")
            ));
        }
    }
    (cases.case.len(), failures)
}

fn run_dir(classifier: &Classifier, dir: &str) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cases"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {dir}");
    let mut total = 0;
    let mut failures = Vec::new();
    for f in &files {
        let (n, mut fails) = run_cases(classifier, f);
        total += n;
        failures.append(&mut fails);
    }
    assert!(total > 0);
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn generic_engine_cases() {
    let cat = Catalog::load(&data("generic/catalogue.toml")).unwrap();
    run_dir(&Classifier::new(cat).unwrap(), "generic");
}

#[test]
fn passkey_catalogue_cases() {
    run_dir(&Classifier::new(Catalog::builtin()).unwrap(), "passkeys");
}

#[test]
fn classifier_is_shared_across_threads() {
    let c = Classifier::new(Catalog::builtin()).unwrap();
    let text = "my YubiKey PIN is blocked";
    let expected = c.classify(TicketText {
        subject: "",
        body: text,
    });
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                c.classify(TicketText {
                    subject: "",
                    body: text,
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
    assert_eq!(expected.ids(), vec!["pin-locked"]);
}
