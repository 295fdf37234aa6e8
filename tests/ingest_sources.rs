//! `triage ingest` against the real Kafka broker started by `scripts/test`: a signed request
//! from each help desk lands on the input topic keyed by ticket id, in the shape `triage run`
//! reads, and `triage run` decides it: the whole path from webhook to decision.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::ingest::*;
use support::*;
use triage::ticket::{Preset, TicketShape};

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

const PIN: &str =
    "I typed my security key PIN wrong too many times and now it says the PIN is blocked.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_lands_keyed_by_ticket_id_and_triage_run_decides_it() {
    let _serial = serial().await;
    let s = Setup::new("ingest-src", 3, &[]).await;
    let cfg = s.config("c.toml", &ingest_section(""));
    let mut server = IngestServer::start(&cfg, "ingest", "info");
    let input = Collector::start(&s.input);
    let client = reqwest::Client::new();
    let now = now_secs();

    let hooks = [
        ("35436", zendesk("35436", "Security key", PIN, now - 1)),
        (
            "HD-12",
            jira(
                "HD-12",
                "Passkey",
                "My passkey did not sync to my new phone, the site says there are no passkeys available.",
            ),
        ),
        (
            "9d385017c611228701d22104cc95c371",
            servicenow(
                "9d385017c611228701d22104cc95c371",
                "VPN",
                "I forgot my password after the holidays, please reset it so I can use the VPN again.",
            ),
        ),
        (
            "77",
            freshdesk(
                77,
                "Printer",
                "The printer on the third floor shows a paper jam in tray 2 again.",
            ),
        ),
        (
            "G-1",
            generic(
                "G-1",
                "QR",
                "Scanning the QR code with my phone to sign in on the kiosk PC fails with 'something went wrong'.",
                now,
            ),
        ),
        // A second event of the first ticket: same key, so same partition, after the first.
        (
            "35436",
            zendesk("35436", "Security key", &format!("{PIN} Still blocked."), now),
        ),
    ];
    for (id, hook) in &hooks {
        let a = hook.send(&client, &server.base).await;
        assert_eq!(a.status, 200, "{}: {:?}", hook.path, a);
        assert_eq!(a.json["status"], "produced");
        assert_eq!(a.json["ticket"], *id);
    }

    input.wait_for("6 records", Duration::from_secs(30), |c| c.len() >= 6);
    let mut got = input.snapshot();
    got.sort_by_key(|g| (g.partition, g.offset));
    assert_eq!(got.len(), 6);
    let by_id: HashMap<String, Vec<&Got>> = got.iter().fold(HashMap::new(), |mut m, g| {
        let v = json(g.payload.as_deref().unwrap());
        m.entry(v["id"].as_str().unwrap().to_string())
            .or_default()
            .push(g);
        m
    });
    for (id, hook) in &hooks {
        let g = by_id[*id][0];
        assert_eq!(g.key.as_deref(), Some(id.as_bytes()), "keyed by ticket id");
        let source = hook.path.trim_start_matches("/webhooks/");
        assert_eq!(g.headers["triage-source"], source);
        let v = json(g.payload.as_deref().unwrap());
        if source == "generic" {
            // Its payload already is the plain shape: it is produced as received.
            assert_eq!(g.payload.as_deref(), Some(hook.body.as_slice()));
        } else {
            assert_eq!(v["source"], source, "{v}");
        }
        assert!(
            v["body"].as_str().is_some_and(|b| !b.is_empty()),
            "{source}: {v}"
        );
    }
    // The plain shape, field by field, from each payload format.
    let zd = json(by_id["35436"][0].payload.as_deref().unwrap());
    assert_eq!(zd["subject"], "Security key");
    assert_eq!(zd["body"], PIN);
    assert_eq!(zd["tags"], serde_json::json!(["vip", "hardware"]));
    assert_eq!(zd["author"], "900");
    assert_eq!(zd["updated_at"], rfc3339(now - 1));
    assert!(by_id["35436"][0].headers["triage-delivery-id"].starts_with("inv-"));
    let ji = json(by_id["HD-12"][0].payload.as_deref().unwrap());
    assert_eq!(
        ji["body"],
        "My passkey did not sync to my new phone, the site says there are no passkeys available.",
        "Atlassian Document Format flattened to text"
    );
    assert_eq!(ji["tags"], serde_json::json!(["it"]));
    assert_eq!(ji["author"], "5b10ac8d82e05b22cc7d4ef5");
    let sn = json(
        by_id["9d385017c611228701d22104cc95c371"][0]
            .payload
            .as_deref()
            .unwrap(),
    );
    assert_eq!(sn["subject"], "VPN");
    assert_eq!(sn["author"], "admin");
    let fd = json(by_id["77"][0].payload.as_deref().unwrap());
    assert_eq!(fd["tags"], serde_json::json!(["printer", "floor-3"]));
    // One ticket's events: one partition, in the order they were received.
    let events = &by_id["35436"];
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].partition, events[1].partition);
    assert!(events[0].offset < events[1].offset);
    assert!(json(events[1].payload.as_deref().unwrap())["body"]
        .as_str()
        .unwrap()
        .ends_with("Still blocked."));

    // The other half of the path: `triage run` on the same configuration decides them all.
    let decisions = Collector::start(&s.decisions);
    let mut worker = Worker::start(&cfg, "worker");
    decisions.wait_for("6 decisions", Duration::from_secs(60), |c| c.len() >= 6);
    let decided = decisions.decided();
    assert_eq!(decided.len(), 5, "{decided:?}");
    assert_eq!(decided["35436"], 2);
    let pin = decisions
        .snapshot()
        .into_iter()
        .map(|g| json(g.payload.as_deref().unwrap()))
        .find(|v| v["id"] == "35436")
        .unwrap();
    assert_eq!(pin["symptoms"][0]["id"], "pin-locked", "{pin}");

    worker.signal(libc::SIGTERM);
    server.signal(libc::SIGTERM);
    let w = worker.wait(Duration::from_secs(30)).expect("worker stops");
    assert!(w.success(), "{}", worker.log_text());
    let i = server.wait(Duration::from_secs(30)).expect("ingest stops");
    assert!(i.success(), "{}", server.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_pass_through_unchanged_when_triage_run_reads_them_as_they_are() {
    let _serial = serial().await;
    let s = Setup::new("ingest-raw", 1, &[]).await;
    let cfg = s.config(
        "c.toml",
        "[input]\npreset = \"jira\"\n[ingest]\nlisten = \"127.0.0.1:0\"\n[ingest.jira]\nsecret_env = \"T_JIRA_SECRET\"\n",
    );
    let server = IngestServer::start(&cfg, "ingest", "info");
    assert!(
        server.log_text().contains("route=\"/webhooks/jira\"")
            && server.log_text().contains("payload as received"),
        "{}",
        server.log_text()
    );
    let input = Collector::start(&s.input);
    let hook = jira("HD-99", "PIN", PIN);
    let a = hook.send(&reqwest::Client::new(), &server.base).await;
    assert_eq!(a.status, 200, "{a:?}");
    input.wait_for("1 record", Duration::from_secs(30), |c| c.len() >= 1);
    let got = input.snapshot();
    assert_eq!(got[0].key.as_deref(), Some(&b"HD-99"[..]));
    assert_eq!(
        got[0].payload.as_deref(),
        Some(hook.body.as_slice()),
        "the body exactly as received"
    );
    // ... which is what the worker's [input] preset decodes.
    let t = TicketShape::preset(Preset::Jira, 1 << 20)
        .decode(got[0].payload.as_deref().unwrap())
        .unwrap();
    assert_eq!((t.id.as_str(), t.body.as_str()), ("HD-99", PIN));
}
