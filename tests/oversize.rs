//! Tickets over `worker.max_ticket_bytes`, end to end on the real Kafka broker started by
//! `scripts/test`: dead-lettered whole (`worker.oversize = "dead-letter"`, the default), or
//! decided on their beginning with the decision marked `truncated` (`"scan-prefix"`), and
//! dead-lettered in both modes above the hard record limit. `triage ingest` accepts what the
//! worker decodes in either mode.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::ingest::*;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The scan limit of both workers.
const CAP: usize = 64 * 1024;

/// What is on the input topic of each run: (key, record).
fn records() -> Vec<Rec> {
    let filler = "Forwarded thread, nothing useful in it. ".repeat(200 * 1024 / 40);
    let rec = |id: &str, body: &str| -> Rec {
        (
            Some(id.as_bytes().to_vec()),
            Some(
                serde_json::to_vec(&serde_json::json!({
                    "id": id, "subject": "Help", "body": body
                }))
                .unwrap(),
            ),
        )
    };
    vec![
        // Under the cap: decided whole, in both modes.
        rec(
            "small",
            "I typed my security key PIN wrong and now the PIN is blocked.",
        ),
        // Over the cap, the symptom at the start: found when the prefix is scanned.
        rec(
            "pin-first",
            &format!("I typed my security key PIN wrong and now the PIN is blocked. {filler}"),
        ),
        // Over the cap, the symptom only at the end: beyond what is scanned.
        rec(
            "pin-last",
            &format!("{filler} I typed my security key PIN wrong and now the PIN is blocked."),
        ),
        // Over the cap with two-byte characters all the way: the cut falls between two.
        rec("accents", &format!("x{}", "é".repeat(CAP))),
        // Over the hard record limit of the scan-prefix worker (2 MiB): dead-lettered.
        rec("huge", &"x".repeat(3 << 20)),
    ]
}

struct Outcome {
    /// Decision JSON by ticket id.
    decisions: HashMap<String, serde_json::Value>,
    /// Dead-letter error class by record key.
    dead: HashMap<String, String>,
    /// The worker's /metrics text just before it stopped.
    metrics: String,
}

/// Run one worker with `worker_toml` over [`records`] until `decided` + `dead` are out.
async fn run(name: &str, worker_toml: &str, decided: usize, dead: usize) -> Outcome {
    let big = [("max.message.bytes", "8388608")];
    let s = Setup::new(name, 1, &big).await;
    let cfg = s.config(
        "w.toml",
        &format!(
            "[kafka.producer_properties]\n\"message.max.bytes\" = 10485760\n[server]\nlisten = \"127.0.0.1:0\"\n[worker]\nmax_ticket_bytes = {CAP}\n{worker_toml}"
        ),
    );
    let decisions = Collector::start(&s.decisions);
    let letters = Collector::start(&s.dead_letters);
    let mut w = Worker::start(&cfg, "w");
    let addr = w.metrics_addr(MINUTE);
    produce(&s.input, records()).await;
    decisions.wait_for("the decisions", 2 * MINUTE, |c| c.len() >= decided);
    letters.wait_for("the dead letters", MINUTE, |c| c.len() >= dead);
    std::thread::sleep(Duration::from_secs(1));
    let (_, metrics) = http_get(&addr, "/metrics").await;
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(30))
        .expect("worker did not stop");
    assert!(status.success(), "{status}\n{}", w.log_text());
    assert_eq!(decisions.len(), decided, "decisions");
    assert_eq!(letters.len(), dead, "dead letters");
    Outcome {
        decisions: decisions
            .snapshot()
            .iter()
            .map(|g| {
                let v: serde_json::Value =
                    serde_json::from_slice(g.payload.as_deref().unwrap()).expect("decision JSON");
                (v["id"].as_str().unwrap().to_string(), v)
            })
            .collect(),
        dead: letters
            .snapshot()
            .iter()
            .map(|g| {
                (
                    String::from_utf8(g.key.clone().unwrap()).unwrap(),
                    g.headers["triage.error.class"].clone(),
                )
            })
            .collect(),
        metrics,
    }
}

fn symptoms(d: &serde_json::Value) -> Vec<&str> {
    d["symptoms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_tickets_are_dead_lettered_by_default() {
    let _serial = serial().await;
    let o = run("over-dl", "", 1, 4).await;
    assert_eq!(symptoms(&o.decisions["small"]), ["pin-locked"]);
    assert!(o.decisions["small"].get("truncated").is_none());
    for key in ["pin-first", "pin-last", "accents", "huge"] {
        assert_eq!(o.dead[key], "too_large", "{key}");
    }
    assert_eq!(
        sample(
            &o.metrics,
            "triage_dead_letters_total{reason=\"too_large\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(&o.metrics, "triage_tickets_truncated_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_prefix_decides_on_the_beginning_and_says_so() {
    let _serial = serial().await;
    let o = run(
        "over-scan",
        "oversize = \"scan-prefix\"\nmax_record_bytes = 2097152\n",
        4,
        1,
    )
    .await;
    let d = &o.decisions;
    assert!(d["small"].get("truncated").is_none(), "{}", d["small"]);
    assert_eq!(symptoms(&d["small"]), ["pin-locked"]);

    assert_eq!(
        symptoms(&d["pin-first"]),
        ["pin-locked"],
        "{}",
        d["pin-first"]
    );
    assert_eq!(
        symptoms(&d["pin-last"]),
        Vec::<&str>::new(),
        "beyond the scanned prefix"
    );
    for id in ["pin-first", "pin-last"] {
        let t = &d[id]["truncated"];
        assert_eq!(t["scanned_bytes"], CAP, "{id}: {t}");
        assert!(t["total_bytes"].as_u64().unwrap() > 200 * 1000, "{id}: {t}");
    }
    // "Help" (4 bytes), then "x" and two-byte characters: byte 65,536 would split one, so
    // the cut is one byte earlier.
    let t = &d["accents"]["truncated"];
    assert_eq!(t["scanned_bytes"], CAP - 1, "{t}");
    assert_eq!(t["total_bytes"], 4 + 1 + 2 * CAP, "{t}");

    assert_eq!(o.dead["huge"], "too_large");
    assert_eq!(
        sample(&o.metrics, "triage_tickets_truncated_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &o.metrics,
            "triage_dead_letters_total{reason=\"too_large\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_accepts_what_the_worker_decodes_and_the_worker_scans_its_beginning() {
    let _serial = serial().await;
    let s = Setup::new("over-ingest", 1, &[]).await;
    let long = format!(
        "My security key PIN is blocked after too many attempts. {}",
        "Quoted thread below. ".repeat(200)
    );
    let client = reqwest::Client::new();

    // dead-letter (the default): ingest refuses what the worker would dead-letter.
    let strict = s.config(
        "strict.toml",
        &format!("[worker]\nmax_ticket_bytes = 1024\n{}", ingest_section("")),
    );
    let server = IngestServer::start(&strict, "strict", "info");
    let a = generic("G-1", "Key", &long, now_secs())
        .send(&client, &server.base)
        .await;
    assert_eq!(
        (a.status, a.json["status"].as_str()),
        (413, Some("too_large")),
        "{a:?}"
    );
    drop(server);

    // scan-prefix: up to max_record_bytes is taken; larger is still refused.
    let cfg = s.config(
        "scan.toml",
        &format!(
            "[worker]\nmax_ticket_bytes = 1024\noversize = \"scan-prefix\"\nmax_record_bytes = 16384\n{}",
            ingest_section("")
        ),
    );
    let server = IngestServer::start(&cfg, "scan", "info");
    let a = generic("G-1", "Key", &long, now_secs())
        .send(&client, &server.base)
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let huge = "x".repeat(20_000);
    let a = generic("G-2", "Key", &huge, now_secs())
        .send(&client, &server.base)
        .await;
    assert_eq!(a.status, 413, "{a:?}");

    let decisions = Collector::start(&s.decisions);
    let mut w = Worker::start(&cfg, "w");
    decisions.wait_for("the decision", MINUTE, |c| c.len() >= 1);
    w.signal(libc::SIGTERM);
    assert!(w
        .wait(Duration::from_secs(30))
        .is_some_and(|st| st.success()));
    let d: serde_json::Value =
        serde_json::from_slice(decisions.snapshot()[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(d["id"], "G-1");
    assert_eq!(symptoms(&d), ["pin-locked"], "{d}");
    assert_eq!(d["truncated"]["scanned_bytes"], 1024, "{d}");
    assert_eq!(d["truncated"]["total_bytes"], 3 + long.len(), "{d}");
}
