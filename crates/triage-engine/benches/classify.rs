//! Classification speed over a realistic ticket mix, beside its ceiling: one pass of one
//! Aho-Corasick automaton holding the same phrases over the same raw text.
//!
//! The mix is the labelled corpus and the hold-out set in `tests/data/` (e-mail threads, HTML,
//! chat transcripts, phone notes, four languages, one third off-topic). Throughput is in bytes
//! of subject + body. `scripts/bench-classify` runs this and prints MB/s, tickets/s and the
//! ratio to the raw scan. With `TRIAGE_BENCH_PHRASES=FILE` it also writes the phrase list there
//! (one a line), for the peers that scripts/bench-peers measures over the same corpus.

use std::hint::black_box;

use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use triage_engine::catalog::Catalog;
use triage_engine::classify::Classifier;
use triage_engine::ticket::Ticket;

fn corpus() -> Vec<Ticket> {
    let mut out = Vec::new();
    for f in ["tests/data/tickets.jsonl", "tests/data/holdout.jsonl"] {
        // The labelled data is the workspace's, two levels above this crate.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2);
        let path = root.expect("workspace root").join(f);
        let text = std::fs::read_to_string(&path).expect("corpus file");
        out.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Ticket::from_json(l).expect("ticket")),
        );
    }
    out
}

fn bench(c: &mut Criterion) {
    let tickets = corpus();
    let bytes: usize = tickets.iter().map(|t| t.subject.len() + t.body.len()).sum();
    let classifier = Classifier::new(Catalog::builtin()).unwrap();
    let raw = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::DFA))
        .ascii_case_insensitive(true)
        .build(classifier.phrases())
        .unwrap();
    // The same phrase list for the peers of scripts/bench-peers, one phrase a line.
    if let Some(path) = std::env::var_os("TRIAGE_BENCH_PHRASES") {
        std::fs::write(path, classifier.phrases().join("\n") + "\n").expect("phrase list");
    }

    let mut g = c.benchmark_group("passkeys");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("classify", |b| {
        b.iter(|| {
            let mut found = 0;
            for t in &tickets {
                found += classifier.classify(black_box(t.text())).findings.len();
            }
            found
        })
    });
    let off_topic: Vec<&Ticket> = tickets
        .iter()
        .filter(|t| t.labels.as_ref().is_some_and(|l| l.is_empty()))
        .collect();
    let off_bytes: usize = off_topic
        .iter()
        .map(|t| t.subject.len() + t.body.len())
        .sum();
    g.bench_function("normalize", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &tickets {
                n += classifier.normalize(black_box(&t.body), true).text.len();
            }
            n
        })
    });
    g.bench_function("normalize_no_typos", |b| {
        b.iter(|| {
            let mut n = 0;
            for t in &tickets {
                n += classifier.normalize(black_box(&t.body), false).text.len();
            }
            n
        })
    });
    g.bench_function("raw_scan", |b| {
        b.iter(|| {
            let mut found = 0;
            for t in &tickets {
                found += raw.find_overlapping_iter(black_box(&t.subject)).count();
                found += raw.find_overlapping_iter(black_box(&t.body)).count();
            }
            found
        })
    });
    g.finish();
    // Most of a help desk's traffic is about none of the catalogue's symptoms.
    let mut g = c.benchmark_group("passkeys_off_topic");
    g.throughput(Throughput::Bytes(off_bytes as u64));
    g.bench_function("classify", |b| {
        b.iter(|| {
            let mut found = 0;
            for t in &off_topic {
                found += classifier.classify(black_box(t.text())).findings.len();
            }
            found
        })
    });
    g.bench_function("raw_scan", |b| {
        b.iter(|| {
            let mut found = 0;
            for t in &off_topic {
                found += raw.find_overlapping_iter(black_box(&t.subject)).count();
                found += raw.find_overlapping_iter(black_box(&t.body)).count();
            }
            found
        })
    });
    g.finish();
    eprintln!("corpus: {} tickets, {} bytes", tickets.len(), bytes);
}

criterion_group!(benches, bench);
criterion_main!(benches);
