//! Post-back end to end: tickets on the real Kafka broker (started by `scripts/test`), the real
//! `triage run` binary, and a local server holding Zendesk's contract that answers with 429s
//! and 503s along the way. Every ticket with a symptom gets exactly one internal note and the
//! right tags, even though every ticket event arrives twice.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;

use support::ticketing::{Fault, Server, Vendor};
use support::*;
use triage::catalog::Catalog;
use triage::classify::Classifier;
use triage::decision::Decision;
use triage::ticket::Ticket;

const N: usize = 40;

/// Ticket `i` as the classifier sees it (the same bodies as `ticket_json`).
fn expected(c: &Classifier, i: usize) -> Decision {
    let v: serde_json::Value = serde_json::from_slice(&ticket_json(i)).unwrap();
    let t = Ticket {
        id: zid(i),
        subject: v["subject"].as_str().unwrap().into(),
        body: v["body"].as_str().unwrap().into(),
        ..Default::default()
    };
    Decision::new(c.catalog(), &t, c.classify(t.text()))
}

/// Zendesk ids are numeric.
fn zid(i: usize) -> String {
    format!("{}", 7000 + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_gets_one_note_and_the_tags_per_ticket_through_429s_and_503s() {
    let _serial = serial().await;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot@example.com/token:e2e-token")
    );
    let server = Server::start(Vendor::Zendesk, &auth).await;
    server.every(15, Fault::status(429).with_header("retry-after", "1"));
    server.every(7, Fault::status(503));

    let s = Setup::new("sinks", 3, &[]).await;
    let token = s.dir.path().join("zendesk-token");
    std::fs::write(&token, "e2e-token\n").unwrap();
    let cfg = s.config(
        "w.toml",
        &format!(
            "[worker]\nmax_in_flight = 500\nretry_initial_ms = 50\nretry_max_ms = 2000\n\
             [sink.zendesk]\nbase_url = \"{}\"\nemail = \"bot@example.com\"\napi_token_file = \"{}\"\n\
             timeout_ms = 2000\nrequests_per_minute = 1200\ncircuit_breaker_failures = 5\ncircuit_breaker_open_ms = 500\n",
            server.base(),
            token.display()
        ),
    );
    let decisions = Collector::start(&s.decisions);
    let mut w = Worker::start(&cfg, "w");
    // Every ticket event twice: the second must not add a second note.
    let records: Vec<Rec> = (0..N)
        .map(|i| {
            let mut v: serde_json::Value = serde_json::from_slice(&ticket_json(i)).unwrap();
            v["id"] = serde_json::json!(zid(i));
            (
                Some(zid(i).into_bytes()),
                Some(serde_json::to_vec(&v).unwrap()),
            )
        })
        .collect();
    produce(&s.input, records.clone()).await;
    produce(&s.input, records).await;

    decisions.wait_for("every event decided", Duration::from_secs(120), |c| {
        c.len() >= 2 * N
    });
    // The decisions topic comes first; wait until Zendesk has every marker, then a little
    // longer for anything written twice to show.
    let c = Classifier::new(Catalog::builtin()).unwrap();
    let want: Vec<usize> = (0..N)
        .filter(|&i| !expected(&c, i).symptoms.is_empty())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !want.iter().all(|&i| {
        server
            .ticket(&zid(i))
            .tags
            .iter()
            .any(|t| t == "triage-processed")
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every ticket was written back in time\n{}",
            w.log_text()
        );
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "worker exited\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(30)).expect("worker stopped");
    assert!(status.success(), "{status}\n{}", w.log_text());

    let mut with_symptoms = 0;
    for i in 0..N {
        let d = expected(&c, i);
        let t = server.ticket(&zid(i));
        if d.symptoms.is_empty() {
            assert!(
                t.notes.is_empty() && t.tags.is_empty(),
                "ticket {i}: nothing to write, got {t:?}"
            );
            continue;
        }
        with_symptoms += 1;
        assert_eq!(t.notes.len(), 1, "ticket {i}: notes {:?}", t.notes);
        assert!(!t.notes[0].public, "ticket {i}: internal note");
        let mut tags = d.tags.clone();
        tags.push("triage-processed".into());
        let mut got = t.tags.clone();
        got.sort();
        tags.sort();
        assert_eq!(got, tags, "ticket {i}");
    }
    assert!(
        with_symptoms >= N / 2,
        "too few tickets with symptoms to test anything"
    );
    let log = server.log();
    let by_status: HashMap<u16, usize> = log.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.status).or_default() += 1;
        m
    });
    assert!(
        by_status.get(&429).copied().unwrap_or(0) >= 5,
        "{by_status:?}"
    );
    assert!(
        by_status.get(&503).copied().unwrap_or(0) >= 5,
        "{by_status:?}"
    );
    // After a 429 with Retry-After: 1, nothing was sent for a second.
    for (i, s) in log.iter().enumerate() {
        if s.status == 429 {
            if let Some(next) = log.get(i + 1) {
                assert!(
                    next.at - s.at >= Duration::from_millis(1000),
                    "a request {:?} after a 429",
                    next.at - s.at
                );
            }
        }
    }
    server.assert_clean();
    let log = w.log_text();
    assert!(
        log.contains("sink=\"zendesk\"") || log.contains("sink=zendesk"),
        "{log}"
    );
    assert!(!log.contains("e2e-token"), "the token leaked into the log");
    eprintln!("end to end: {} requests, {by_status:?}", server.log().len());
}
