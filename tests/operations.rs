//! Operating the worker against the real Kafka broker started by `scripts/test`: a real
//! Prometheus server (Debian's package) scrapes a running `triage run` and sees the symptom
//! counts of the tickets sent; the dashboard's and the rules' queries run on that data; the
//! output passes `promtool check metrics`; and the logs of a full run hold ticket ids but no
//! ticket text and no secret.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature
// test-broker); the Prometheus test also needs Debian's prometheus (test-prometheus).
#![cfg(feature = "test-broker")]
#![cfg_attr(not(feature = "test-prometheus"), allow(dead_code, unused_imports))]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use triage::catalog::Catalog;
use triage::classify::Classifier;
use triage::ticket::Ticket;

const MINUTE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Prometheus server on loopback scraping one target every second, with the project's
/// rules loaded; stopped when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str) -> Prometheus {
        let bin = tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: triage\n    static_configs:\n      - targets: ['{target}']\n",
                root().join("deploy/prometheus/alerts.yml").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + MINUTE;
        loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                panic!("prometheus exited ({s}):\n{}", p.log());
            }
            let ready = reqwest::get(format!("http://{}/-/ready", p.addr)).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API: the `data` object (fails on an error status).
    async fn query(&self, expr: &str) -> Value {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", query_value(expr)),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(
            (status, v["status"].as_str()),
            (200, Some("success")),
            "query {expr}: {body}"
        );
        v["data"].clone()
    }

    /// An instant query's result as label value (of `by`) -> sample value.
    async fn by(&self, expr: &str, by: &str) -> BTreeMap<String, f64> {
        let data = self.query(expr).await;
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"][by].as_str().unwrap_or_default().to_string(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    async fn scalar(&self, expr: &str) -> Option<f64> {
        self.by(expr, "-").await.into_values().next()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every query of the Grafana dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/grafana/triage-dashboard.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$job", "triage");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

/// Every expression of the alert and recording rules.
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let v: Value = serde_norway::from_str(&text).unwrap();
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

#[cfg(feature = "test-prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_the_worker_sees_the_symptoms_of_the_tickets_sent() {
    let _serial = serial().await;
    let s = Setup::new("ops1", 3, &[]).await;
    let cfg = s.config(
        "w.toml",
        "[kafka.consumer_properties]\n\"statistics.interval.ms\" = 1000\n[server]\nlisten = \"127.0.0.1:0\"\n",
    );
    // What the worker will find, by the same catalogue (./patterns, the worker's default).
    const N: usize = 600;
    let records = tickets(0, N);
    let classifier = Classifier::new(Catalog::load(&root().join("patterns")).unwrap()).unwrap();
    let mut expected: BTreeMap<String, f64> = classifier
        .catalog()
        .symptoms
        .iter()
        .map(|s| (s.id.clone(), 0.0))
        .collect();
    let mut unmatched = 0.0;
    for (_, v) in &records {
        let t = Ticket::from_json(std::str::from_utf8(v.as_deref().unwrap()).unwrap()).unwrap();
        let found = classifier.classify(t.text());
        if found.findings.is_empty() {
            unmatched += 1.0;
        }
        for id in found.ids() {
            *expected.get_mut(id).unwrap() += 1.0;
        }
    }
    assert!(unmatched > 0.0 && expected.values().filter(|&&n| n > 0.0).count() >= 3);

    let decisions = Collector::start(&s.decisions);
    let mut w = Worker::start(&cfg, "w");
    let addr = w.metrics_addr(MINUTE);
    let prom = Prometheus::start(&addr).await;
    // A first scrape before any ticket, so that Prometheus sees the counters rise.
    let deadline = Instant::now() + MINUTE;
    while prom.scalar("up{job=\"triage\"}").await != Some(1.0) {
        assert!(Instant::now() < deadline, "never scraped:\n{}", prom.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all = records;
    for bad in ["not json", "{\"id\": \"x\"}", "{\"body\": \"no id\"}"] {
        all.push((None, Some(bad.as_bytes().to_vec())));
    }
    produce(&s.input, all).await;
    decisions.wait_for("every decision", 2 * MINUTE, |c| c.len() >= N);

    // Prometheus sees, per symptom, exactly what was sent (a scrape or two later).
    let deadline = Instant::now() + MINUTE;
    let classified = "sum by (symptom) (triage_tickets_classified_total{job=\"triage\"})";
    loop {
        let seen = prom.by(classified, "symptom").await;
        let rest = (
            prom.scalar("sum(triage_tickets_unmatched_total{job=\"triage\"})")
                .await,
            prom.scalar("sum(triage_tickets_consumed_total{job=\"triage\"})")
                .await,
            prom.scalar("sum(triage_dead_letters_total{job=\"triage\"})")
                .await,
            prom.scalar("sum(triage_consumer_lag{job=\"triage\"})")
                .await,
        );
        let want = (Some(unmatched), Some((N + 3) as f64), Some(3.0), Some(0.0));
        if seen == expected && rest == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus sees {seen:?}, (unmatched, consumed, dead letters, lag) {rest:?};\nexpected {expected:?}, {want:?}\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let up = prom.by("up{job=\"triage\"}", "instance").await;
    assert_eq!(up, BTreeMap::from([(addr.clone(), 1.0)]));
    let sinks = prom
        .by(
            "sum by (sink) (triage_sink_requests_total{outcome=\"ok\"})",
            "sink",
        )
        .await;
    assert_eq!(sinks["decisions-topic"], N as f64);
    assert_eq!(sinks["dead-letters"], 3.0);

    // Every dashboard panel's and every rule's query runs on the real data.
    for (title, expr) in dashboard_queries() {
        let data = prom.query(&expr).await;
        assert!(data["result"].is_array(), "{title}: {expr}: {data}");
    }
    for expr in rule_exprs() {
        prom.query(&expr).await;
    }
    let symptom_volume = prom
        .by(
            "sum by (symptom) (increase(triage_tickets_classified_total{job=~\"triage\"}[5m]))",
            "symptom",
        )
        .await;
    assert!(symptom_volume["pin-locked"] > 0.0, "{symptom_volume:?}");
    // The rules loaded into a real server, none broken.
    let (_, rules) = http_get(&prom.addr, "/api/v1/rules").await;
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .collect();
    assert_eq!(loaded.len(), rule_exprs().len());
    assert!(loaded.iter().all(|r| r["health"] != "err"), "{rules}");

    // The exposition passes promtool's checks, and the probes answer.
    let (status, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http_get(&addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http_get(&addr, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(
        sample(&metrics, "triage_inflight_tickets"),
        Some(0.0),
        "{metrics}"
    );

    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(30)).expect("worker stops");
    assert!(status.success(), "{status}\n{}", w.log_text());
    drop(prom);
}

/// A webhook receiver that checks the bearer token, answers 503 to its first few requests,
/// and refuses one ticket for good.
#[derive(Default)]
struct Hook {
    token: String,
    requests: AtomicUsize,
    authorised: AtomicUsize,
    accepted: Mutex<Vec<String>>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let n = h.requests.fetch_add(1, Ordering::AcqRel);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", h.token))
    {
        h.authorised.fetch_add(1, Ordering::AcqRel);
    } else {
        return StatusCode::UNAUTHORIZED;
    }
    if n < 3 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    if id == "REJECT-1" {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    h.accepted.lock().unwrap().push(id);
    StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_a_full_run_name_tickets_but_hold_no_ticket_text_and_no_secret() {
    let _serial = serial().await;
    // Words that appear only in ticket text, and two secrets.
    const SENTENCE: &str =
        "Whiskers knocked my security key off the desk and now the PIN is blocked";
    const SUBJECT: &str = "Mirabelle quarterly offsite";
    const PASSWORD: &str = "sasl-pw-5ad1c0ffee";
    const TOKEN: &str = "hook-token-9b7e4f00d";

    let state = Arc::new(Hook {
        token: TOKEN.into(),
        ..Hook::default()
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    let port = serve_on_loopback(app).await.port();

    let s = Setup::new("ops2", 3, &[]).await;
    let cfg = s.config(
        "w.toml",
        &format!(
            "[kafka.secret_properties]\n\"sasl.password\" = {{ env = \"TRIAGE_TEST_SASL_PASSWORD\" }}\n\
             [sink.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout_ms = 2000\nbearer_token_env = \"TRIAGE_TEST_WEBHOOK_TOKEN\"\n\
             [worker]\nretry_initial_ms = 50\nretry_max_ms = 200\n\
             [server]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n"
        ),
    );
    let mut records: Vec<Rec> = (0..40)
        .map(|i| {
            let id = if i == 7 {
                "REJECT-1".to_string()
            } else {
                format!("L{i:03}")
            };
            let body = serde_json::json!({
                "id": id,
                "subject": format!("{SUBJECT} {i}"),
                "body": format!("Hello,\n{SENTENCE}. Could you help?\nThanks"),
            });
            (
                Some(id.into_bytes()),
                Some(serde_json::to_vec(&body).unwrap()),
            )
        })
        .collect();
    // Bad records carrying the text too: their dead-letter reasons must not quote it.
    records.push((
        None,
        Some(format!("{{\"id\": \"bad-1\", \"body\": \"{SENTENCE}").into_bytes()),
    ));
    records.push((
        None,
        Some(format!("{{\"subject\": \"{SENTENCE}\"}}").into_bytes()),
    ));
    let dead = Collector::start(&s.dead_letters);
    let mut w = Worker::start_with(
        &cfg,
        "w",
        &[],
        &[
            ("TRIAGE_LOG", "info"),
            ("TRIAGE_TEST_SASL_PASSWORD", PASSWORD),
            ("TRIAGE_TEST_WEBHOOK_TOKEN", TOKEN),
        ],
    );
    w.wait_log("partitions assigned", MINUTE);
    produce(&s.input, records).await;
    let deadline = Instant::now() + 2 * MINUTE;
    while state.accepted.lock().unwrap().len() < 39 || dead.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "webhook accepted {}, {} dead letters\n{}",
            state.accepted.lock().unwrap().len(),
            dead.len(),
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr = server_addr(&w.log_text()).unwrap();
    let (_, metrics) = http_get(&addr, "/metrics").await;
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(30)).expect("worker stops");
    assert!(status.success(), "{status}\n{}", w.log_text());
    assert!(
        state.authorised.load(Ordering::Acquire) >= 42,
        "the token was used"
    );

    // Nothing of the ticket text, and neither secret, anywhere in the output or the metrics.
    let log = w.log_text();
    let out = w.out_text();
    for (what, text) in [("log", &log), ("stdout", &out), ("metrics", &metrics)] {
        for needle in [
            SENTENCE,
            "Whiskers",
            "knocked",
            SUBJECT,
            "Mirabelle",
            PASSWORD,
            TOKEN,
        ] {
            assert!(
                !text.contains(needle),
                "{what} contains {needle:?}:\n{text}"
            );
        }
    }

    // JSON lines, one per ticket with its id, place, symptoms and outcome.
    let mut handled = BTreeMap::new();
    for line in log.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["message"] == "ticket handled" {
            for f in [
                "ticket",
                "topic",
                "partition",
                "offset",
                "symptoms",
                "outcome",
            ] {
                assert!(!v[f].is_null(), "{f} missing: {line}");
            }
            assert_eq!(v["topic"], s.input.as_str());
            handled.insert(
                (
                    v["partition"].as_i64().unwrap(),
                    v["offset"].as_i64().unwrap(),
                ),
                v,
            );
        }
    }
    assert_eq!(handled.len(), 42, "one line per record:\n{log}");
    let by_id = |id: &str| {
        handled
            .values()
            .find(|v| v["ticket"] == id)
            .unwrap_or_else(|| panic!("no line for {id}"))
    };
    let pin = by_id("L000");
    assert_eq!(
        (pin["symptoms"].as_str(), pin["outcome"].as_str()),
        (Some("pin-locked"), Some("decided"))
    );
    let rejected = by_id("REJECT-1");
    assert_eq!(rejected["outcome"], "dead_lettered");
    assert_eq!(rejected["reason"], "sink_rejected");
    let undecoded: Vec<&Value> = handled.values().filter(|v| v["ticket"] == "").collect();
    assert_eq!(undecoded.len(), 2);
    assert!(undecoded.iter().all(|v| v["outcome"] == "dead_lettered"));
    assert!(
        log.contains("pausing intake"),
        "the retry path was taken:\n{log}"
    );
}
