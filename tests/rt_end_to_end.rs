//! A real help desk in the loop: Request Tracker 5 (deploy/rt/rt.sh), the real Kafka broker,
//! `triage ingest` following RT's transactions and two `triage run` workers writing back.
//!
//! 200 tickets are created through RT's REST 2.0 API, as a web form would: the sample tickets
//! and off-topic ones. Agents set tags of their own on some tickets at creation, and keep
//! changing others while triage writes (412s). Midway the poller is killed and started again,
//! and RT itself is stopped for 30 s. In the end every ticket was read from the feed; each
//! ticket with a symptom has exactly one Comment with the note and the tags, every agent value
//! is still there, tickets without a symptom have no comment, and nothing is a Correspond.
// A tier of its own: needs RT at RT_URL and the Kafka broker that scripts/test starts.
#![cfg(feature = "test-rt")]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use support::ingest::IngestServer;
use support::*;

const N: usize = 200;
const MARKER: &str = "triage-processed";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs Request Tracker. Run it with `scripts/test` (it starts \
             deploy/rt/rt.sh), or run `deploy/rt/rt.sh start` and export what it prints"
        )
    })
}

/// RT's REST 2.0 API as an agent (root's token).
#[derive(Clone)]
struct Rt {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl Rt {
    fn new() -> Rt {
        let token = std::fs::read_to_string(env("RT_ADMIN_TOKEN_FILE")).unwrap();
        Rt {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: format!("{}/REST/2.0", env("RT_URL").trim_end_matches('/')),
            auth: format!("token {}", token.trim()),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<(StatusCode, Option<String>, Value), String> {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", &self.auth);
        if let Some(b) = body {
            r = r.json(&b);
        }
        if let Some(e) = if_match {
            r = r.header("If-Match", e);
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            etag,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get(&self, path: &str) -> (Option<String>, Value) {
        let (s, e, v) = self
            .call(reqwest::Method::GET, path, None, None)
            .await
            .unwrap();
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        (e, v)
    }

    /// Create a ticket (retrying while RT is away); its id.
    async fn create(&self, subject: &str, body: &str, tags: &[&str]) -> u64 {
        let mut payload = json!({
            "Queue": "General",
            "Subject": subject,
            "Requestor": "someone@example.org",
            "Content": body,
            "ContentType": "text/plain",
        });
        if !tags.is_empty() {
            payload["CustomFields"] = json!({ "Tags": tags });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self
                .call(
                    reqwest::Method::POST,
                    "/ticket",
                    Some(payload.clone()),
                    None,
                )
                .await
            {
                Ok((StatusCode::CREATED, _, v)) => {
                    return v["id"].as_str().unwrap().parse().unwrap();
                }
                other => {
                    assert!(Instant::now() < deadline, "creating a ticket: {other:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn tags(&self, id: u64) -> (String, Vec<String>, Option<String>) {
        // Retried while RT is away (the test stops it once).
        let deadline = Instant::now() + Duration::from_secs(120);
        let (etag, t) = loop {
            match self
                .call(reqwest::Method::GET, &format!("/ticket/{id}"), None, None)
                .await
            {
                Ok((StatusCode::OK, e, v)) => break (e, v),
                other => {
                    assert!(Instant::now() < deadline, "GET ticket {id}: {other:?}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let field = |name: &str| -> Vec<String> {
            t["CustomFields"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["name"] == name)
                .flat_map(|f| f["values"].as_array().cloned().unwrap_or_default())
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        (
            etag.expect("RT sends an ETag"),
            field("Tags"),
            field("TriageNote").into_iter().next(),
        )
    }

    /// An agent adds a tag the way triage does: read, merge, write with If-Match; a 412 means
    /// read again. Returns how many 412s it met.
    async fn agent_adds(&self, id: u64, tag: &str) -> usize {
        let mut conflicts = 0;
        loop {
            let (etag, mut tags, _) = self.tags(id).await;
            tags.push(tag.to_string());
            match self
                .call(
                    reqwest::Method::PUT,
                    &format!("/ticket/{id}"),
                    Some(json!({"CustomFields": {"Tags": tags}})),
                    Some(&etag),
                )
                .await
            {
                Ok((StatusCode::OK, _, _)) => return conflicts,
                Ok((StatusCode::PRECONDITION_FAILED, _, _)) => conflicts += 1,
                Ok((s, _, v)) if s.is_server_error() => eprintln!("agent PUT: {s} {v}"),
                Ok(other) => panic!("agent PUT: {other:?}"),
                // RT is away for a while: try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    /// The ticket's Comment and Correspond texts.
    async fn messages(&self, id: u64) -> (Vec<String>, usize) {
        let (_, h) = self
            .get(&format!("/ticket/{id}/history?fields=Type&per_page=100"))
            .await;
        let mut comments = Vec::new();
        let mut corresponds = 0;
        for tx in h["items"].as_array().unwrap() {
            match tx["Type"].as_str() {
                Some("Comment") => {
                    let (_, a) = self
                        .get(&format!(
                            "/transaction/{}/attachments?fields=Content,ContentType",
                            tx["id"].as_str().unwrap()
                        ))
                        .await;
                    comments.push(
                        a["items"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter_map(|i| i["Content"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
                Some("Correspond") => corresponds += 1,
                _ => {}
            }
        }
        (comments, corresponds)
    }

    /// The id of the newest transaction (the feed starts after it).
    async fn last_transaction(&self) -> u64 {
        let (_, v) = self
            .get("/transactions?query=id%20%3E%200&orderby=id&order=DESC&per_page=1&fields=Type")
            .await;
        v["items"][0]["id"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .unwrap_or(0)
    }
}

/// Ticket `i`: the sample tickets (with a number, so that subjects differ) and, every fourth,
/// an off-topic one.
fn ticket(i: usize, samples: &[Value]) -> (String, String) {
    const OFF_TOPIC: &[&str] = &[
        "Could we get more coffee for the kitchen on the second floor? The machine is empty again.",
        "Please book the large meeting room for Thursday afternoon, twelve people.",
        "The printer on the third floor shows a paper jam in tray 2 again.",
        "When is the next fire drill? I will be out of the office on Friday.",
        "My monitor stand wobbles, can facilities send a new one?",
    ];
    if i % 4 == 3 {
        (
            format!("Office request {i}"),
            OFF_TOPIC[i % OFF_TOPIC.len()].to_string(),
        )
    } else {
        let s = &samples[i % samples.len()];
        (
            format!("{} (#{i})", s["subject"].as_str().unwrap()),
            s["body"].as_str().unwrap().to_string(),
        )
    }
}

/// deploy/rt/rt.sh COMMAND for the RT the test uses (its state dir is where the tokens are).
fn rt_sh(cmd: &str) {
    let dir = PathBuf::from(env("RT_TOKEN_FILE"))
        .parent()
        .unwrap()
        .to_path_buf();
    let port = env("RT_URL")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rt/rt.sh"))
        .arg(cmd)
        .env("TRIAGE_RT_DIR", &dir)
        .env("RT_PORT", &port)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rt.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_tracker_end_to_end() {
    let _serial = serial().await;
    let started = Instant::now();
    let rt_down_for = Duration::from_secs(30);
    let rt = Rt::new();
    let samples: Vec<Value> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/tickets.jsonl"
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();

    let s = Setup::new("rt", 3, &[]).await;
    // The feed starts after what earlier runs left in this RT.
    let cursor = s.dir.path().join("rt.cursor");
    std::fs::write(&cursor, format!("{}\n", rt.last_transaction().await)).unwrap();
    let ingest_cfg = s.config(
        "ingest.toml",
        &format!(
            "[ingest]\nlisten = \"127.0.0.1:0\"\n\
             [ingest.rt]\nbase_url = \"{}\"\ntoken_file = \"{}\"\ncursor_file = \"{}\"\n\
             poll_interval_ms = 500\nbatch = 10\ntimeout_ms = 5000\n",
            env("RT_URL"),
            env("RT_TOKEN_FILE"),
            cursor.display()
        ),
    );
    let worker_cfg = s.config(
        "worker.toml",
        &format!(
            "[worker]\nmax_in_flight = 200\nretry_initial_ms = 100\nretry_max_ms = 2000\nmarker_tag = \"{MARKER}\"\n\
             [sink.rt]\nbase_url = \"{}\"\ntoken_file = \"{}\"\n\
             timeout_ms = 5000\nrequests_per_minute = 6000\ncircuit_breaker_failures = 5\n\
             circuit_breaker_open_ms = 1000\nclaim_lease_ms = 10000\n",
            env("RT_URL"),
            env("RT_TOKEN_FILE"),
        ),
    );
    let decisions = Collector::start(&s.decisions);
    let inputs = Collector::start(&s.input);
    let mut ingest = IngestServer::start(&ingest_cfg, "ingest", "info,triage::ingest=debug");
    let log_env = [("TRIAGE_LOG", "info,triage::sink::rt=debug")];
    let mut w1 = Worker::start_with(&worker_cfg, "w1", &[], &log_env);
    let mut w2 = Worker::start_with(&worker_cfg, "w2", &[], &log_env);

    // Agents: tags of their own on every fifth ticket from the start, and, on every twentieth,
    // a new tag every 100 ms until triage has written (a storm of compare-and-set writes).
    let agent_412s = Arc::new(AtomicUsize::new(0));
    let storm_on = Arc::new(AtomicBool::new(true));
    let (storm_tx, mut storm_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let storm = {
        let (rt, agent_412s, storm_on) = (rt.clone(), agent_412s.clone(), storm_on.clone());
        tokio::spawn(async move {
            // One agent, going round the tickets triage has not written yet, one write every
            // 250 ms (RT on two shared cores must keep serving triage too).
            let mut active: Vec<(u64, usize)> = Vec::new();
            let mut done: Vec<(u64, usize)> = Vec::new();
            let mut open = true;
            let mut turn = 0;
            while storm_on.load(Ordering::Relaxed) && (open || !active.is_empty()) {
                loop {
                    match storm_rx.try_recv() {
                        Ok(id) => active.push((id, 0)),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                if active.is_empty() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                turn = (turn + 1) % active.len();
                let (id, k) = active[turn];
                let c = rt.agent_adds(id, &format!("agent-late-{k}")).await;
                agent_412s.fetch_add(c, Ordering::Relaxed);
                active[turn].1 += 1;
                if rt.tags(id).await.2.as_deref() == Some("noted") {
                    done.push(active.swap_remove(turn));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done.extend(active);
            done
        })
    };

    let mut ids: Vec<u64> = Vec::with_capacity(N);
    let mut texts: HashMap<u64, (String, String)> = HashMap::new();
    let create_started = Instant::now();
    let mut restarted_poller = false;
    let mut stopped_rt = None;
    for chunk in 0..N / 10 {
        let base = chunk * 10;
        // Ten at a time, as several web forms would.
        let mut batch = Vec::new();
        for i in base..base + 10 {
            let (subject, body) = ticket(i, &samples);
            let tags: Vec<&str> = if i % 5 == 0 {
                vec!["agent-vip"]
            } else {
                vec![]
            };
            let rt = rt.clone();
            batch.push(tokio::spawn(async move {
                let tags_ref: Vec<&str> = tags.to_vec();
                (
                    i,
                    rt.create(&subject, &body, &tags_ref).await,
                    subject,
                    body,
                )
            }));
        }
        for b in batch {
            let (i, id, subject, body) = b.await.unwrap();
            ids.push(id);
            texts.insert(id, (subject, body));
            if i % 20 == 0 {
                storm_tx.send(id).unwrap();
            }
        }
        // Fault: the poller killed, and started again 40 tickets later.
        if base == 60 {
            ingest.signal(libc::SIGKILL);
            let _ = ingest.child.wait();
        }
        if base == 100 {
            ingest = IngestServer::start(&ingest_cfg, "ingest2", "info,triage::ingest=debug");
            restarted_poller = true;
        }
        // A nudge now and then, as RT's scrip would send.
        if chunk % 5 == 0 && !(60..100).contains(&base) {
            let r = reqwest::Client::new()
                .post(ingest.url("/rt/nudge"))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        // Fault: RT stopped (workers and poller see refused connections), then started.
        if base == 140 {
            rt_sh("stop");
            let t = Instant::now();
            tokio::time::sleep(rt_down_for).await;
            rt_sh("start");
            stopped_rt = Some(t.elapsed());
        }
    }
    let create_time = create_started.elapsed();
    drop(storm_tx);
    assert!(restarted_poller && stopped_rt.is_some());

    // Every ticket is read from the feed and decided.
    let want: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    let mut last_report = Instant::now();
    loop {
        let decided = decisions.decided();
        if want.iter().all(|id| decided.contains_key(id)) {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(20) {
            last_report = Instant::now();
            eprintln!(
                "waiting: {} of {N} decided after {:?}",
                want.iter().filter(|id| decided.contains_key(*id)).count(),
                started.elapsed()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not every ticket was decided; missing {:?}\ningest:\n{}\nw1:\n{}",
            want.iter()
                .filter(|id| !decided.contains_key(*id))
                .collect::<Vec<_>>(),
            ingest.log_text(),
            w1.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let decided_at = started.elapsed();
    let by_id: HashMap<String, Value> = decisions
        .snapshot()
        .iter()
        .map(|g| {
            let v: Value = serde_json::from_slice(g.payload.as_deref().unwrap()).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let with_symptoms: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| {
            by_id[&id.to_string()]["symptoms"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .collect();
    // Wait until triage has written back every ticket with a symptom.
    loop {
        let mut pending = 0;
        for id in &with_symptoms {
            if rt.tags(*id).await.2.as_deref() != Some("noted") {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(720),
            "{pending} tickets not written back\nw1:\n{}\nw2:\n{}",
            w1.log_text(),
            w2.log_text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    storm_on.store(false, Ordering::Relaxed);
    let stormed = storm.await.unwrap();
    let written_at = started.elapsed();
    // Anything written twice would show by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for w in [&mut w1, &mut w2] {
        w.signal(libc::SIGTERM);
    }
    for w in [&mut w1, &mut w2] {
        let status = w.wait(Duration::from_secs(30)).expect("worker stopped");
        assert!(status.success(), "{status}\n{}", w.log_text());
    }
    ingest.signal(libc::SIGTERM);
    let _ = ingest.child.wait();

    // What RT holds now.
    let stormed: HashMap<u64, usize> = stormed.into_iter().collect();
    let mut comments_total = 0;
    for id in &ids {
        let d = &by_id[&id.to_string()];
        let (subject, body) = &texts[id];
        let (comments, corresponds) = rt.messages(*id).await;
        assert_eq!(corresponds, 0, "ticket {id}: a Correspond was posted");
        let (_, tags, note) = rt.tags(*id).await;
        let tags: BTreeSet<String> = tags.into_iter().collect();
        let n: usize = subject
            .rsplit_once('#')
            .map(|(_, n)| n.trim_end_matches(')').parse().unwrap())
            .unwrap_or_else(|| subject.rsplit(' ').next().unwrap().parse().unwrap());
        if n % 5 == 0 {
            assert!(
                tags.contains("agent-vip"),
                "ticket {id}: agent's tag lost: {tags:?}"
            );
        }
        if let Some(k) = stormed.get(id) {
            for j in 0..*k {
                assert!(
                    tags.contains(&format!("agent-late-{j}")),
                    "ticket {id}: agent's late tag {j} lost: {tags:?}"
                );
            }
        }
        if n % 4 == 3 {
            assert!(
                d["symptoms"].as_array().unwrap().is_empty(),
                "off-topic ticket {id} ({subject}) was found to have a symptom: {d}"
            );
        }
        if d["symptoms"].as_array().unwrap().is_empty() {
            assert!(
                comments.is_empty(),
                "ticket {id}: no symptom, yet comments {comments:?}"
            );
            assert!(
                !tags.contains(MARKER),
                "ticket {id}: marked without a symptom"
            );
            assert!(note.is_none(), "ticket {id}: note field {note:?}");
            continue;
        }
        assert_eq!(comments.len(), 1, "ticket {id}: comments {comments:#?}");
        comments_total += 1;
        let c = &comments[0];
        assert!(c.starts_with("Triage note:"), "ticket {id}: {c}");
        assert!(!c.contains('<'), "ticket {id}: the note is plain text: {c}");
        for t in d["tags"].as_array().unwrap() {
            assert!(
                tags.contains(t.as_str().unwrap()),
                "ticket {id}: tag {t} missing from {tags:?}"
            );
        }
        assert!(tags.contains(MARKER), "ticket {id}: no marker in {tags:?}");
        assert_eq!(note.as_deref(), Some("noted"));
        let _ = body;
    }
    assert!(
        with_symptoms.len() >= N / 2,
        "only {} of {N} tickets with a symptom: too few to test anything",
        with_symptoms.len()
    );

    // Every ticket reached the input topic; at most the one record in flight at the kill
    // twice.
    let produced: HashMap<String, usize> = inputs.decided();
    let twice: Vec<_> = produced.iter().filter(|(_, n)| **n > 1).collect();
    assert!(want.iter().all(|id| produced.contains_key(id)));
    assert!(twice.len() <= 1, "produced more than once: {twice:?}");
    assert!(
        produced.keys().all(|k| want.contains(k)),
        "records for tickets this test did not create: {:?}",
        produced
            .keys()
            .filter(|k| !want.contains(*k))
            .collect::<Vec<_>>()
    );

    // The agent and triage wrote the same tickets at the same time: 412s on one side or the
    // other (triage's are in its log), and, as checked above, no value was lost.
    let logs = format!("{}\n{}", w1.log_text(), w2.log_text());
    let triage_412s = logs.matches("412 on the").count();
    assert!(
        triage_412s + agent_412s.load(Ordering::Relaxed) > 0,
        "no write met a 412: the agent and triage never wrote a ticket at the same time"
    );
    assert!(!logs.contains(
        &std::fs::read_to_string(env("RT_TOKEN_FILE"))
            .unwrap()
            .trim()
            .to_string()
    ));
    let ingest_log = ingest.log_text();
    assert!(ingest_log.contains("following the feed"), "{ingest_log}");

    let per_minute = N as f64 / (decided_at.as_secs_f64() / 60.0);
    let figures = format!(
        "rt end to end: {N} tickets ({} with a symptom, {comments_total} comments), created in {:.1} s, \
         all decided after {:.1} s, all written back after {:.1} s ({per_minute:.0} tickets/min through RT); \
         412s: triage {triage_412s}, agents {}; RT stopped {:.0} s, poller killed once\n",
        with_symptoms.len(),
        create_time.as_secs_f64(),
        decided_at.as_secs_f64(),
        written_at.as_secs_f64(),
        agent_412s.load(Ordering::Relaxed),
        stopped_rt.unwrap().as_secs_f64(),
    );
    support::faults::append_figures(figures.trim_end());
}
