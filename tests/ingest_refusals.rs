//! `triage ingest` refuses what it must, and none of it reaches Kafka: wrong or missing
//! signatures and credentials (401), stale timestamps (401), replays (409), malformed bodies
//! (400), oversized bodies (413), slow clients (408), too many at once (503). Each test ends
//! by producing one valid request and checking the topic holds exactly the accepted ones, so
//! "nothing else was produced" is checked against a topic that demonstrably fills.
//! Also: graceful shutdown finishes a request in flight.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::ingest::*;
use support::*;

/// Text that must never appear in a log.
const MARKER: &str = "Confidential-ticket-text-Quokka";

/// Send `head` (request line and headers, without the blank line) and `body` over a fresh
/// connection; return the status and the raw response.
async fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
    read_response(&mut s).await
}

async fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0, // reset after the answer: what was read is the answer
            Err(_) => panic!("no response within 30 s"),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

/// Request line and headers of a hook, for sending over a raw connection.
fn head_of(hook: &Hook, content_length: Option<usize>) -> String {
    let mut h = format!("POST {} HTTP/1.1\r\nHost: test", hook.path);
    for (k, v) in &hook.headers {
        h += &format!("\r\n{k}: {v}");
    }
    match content_length {
        Some(n) => h += &format!("\r\nContent-Length: {n}"),
        None => h += "\r\nTransfer-Encoding: chunked",
    }
    h
}

/// Wait a moment for anything produced by mistake to show up, then check the topic holds
/// exactly the records keyed `want` (a key twice: two records).
fn settle_and_expect(c: &Collector, want: &[&str]) {
    std::thread::sleep(Duration::from_secs(2));
    let mut got: Vec<String> = c
        .snapshot()
        .iter()
        .map(|g| String::from_utf8(g.key.clone().unwrap()).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_never_reach_kafka_and_are_counted() {
    let _serial = serial().await;
    let s = Setup::new("ingest-refuse", 1, &[]).await;
    let cfg = s.config("c.toml", &ingest_section("max_body_bytes = 4096\n"));
    // Debug level: even then, no ticket text and no secret may be logged.
    let server = IngestServer::start(&cfg, "ingest", "debug");
    let input = Collector::start(&s.input);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let now = now_secs();
    let text = format!("my security key PIN is blocked. {MARKER}");

    let mut cases: Vec<(&str, Hook, u16, &str)> = Vec::new();
    let zd = zendesk("Z-1", "PIN", &text, now);
    let mut tampered = zd.clone();
    tampered.body = tampered.body.replace_marker();
    cases.push((
        "zendesk: signature made with another secret",
        zd.clone().with_header(
            "X-Zendesk-Webhook-Signature",
            "9pN0cYb6Wc1F0ZJb8z8l8sG4I3B2r4Kf0u0mJH2p0mU=",
        ),
        401,
        "unauthorized",
    ));
    cases.push((
        "zendesk: body changed after signing",
        tampered,
        401,
        "unauthorized",
    ));
    let mut unsigned = zd.clone();
    unsigned
        .headers
        .retain(|(k, _)| k != "X-Zendesk-Webhook-Signature");
    cases.push(("zendesk: no signature", unsigned, 401, "unauthorized"));
    cases.push((
        "zendesk: correctly signed 10 minutes ago",
        zendesk("Z-2", "PIN", &text, now - 600),
        401,
        "stale",
    ));
    cases.push((
        "zendesk: correctly signed 10 minutes ahead",
        zendesk("Z-3", "PIN", &text, now + 600),
        401,
        "stale",
    ));
    let ji = jira("HD-1", "PIN", &text);
    cases.push((
        "jira: wrong signature",
        ji.clone().with_header(
            "X-Hub-Signature",
            "sha256=0000000000000000000000000000000000000000000000000000000000000000",
        ),
        401,
        "unauthorized",
    ));
    let mut unsigned = ji.clone();
    unsigned.headers.retain(|(k, _)| k != "X-Hub-Signature");
    cases.push(("jira: no signature", unsigned, 401, "unauthorized"));
    cases.push((
        "generic: correctly signed an hour ago",
        generic("G-2", "PIN", &text, now - 3600),
        401,
        "stale",
    ));
    cases.push((
        "servicenow: wrong token",
        servicenow("sn-1", "PIN", &text).with_header("X-Triage-Token", "guess"),
        401,
        "unauthorized",
    ));
    let mut no_token = servicenow("sn-1", "PIN", &text);
    no_token.headers.clear();
    cases.push(("servicenow: no token", no_token, 401, "unauthorized"));
    cases.push((
        "freshdesk: wrong password",
        freshdesk_as(5, "PIN", &text, "freshdesk", "wrong"),
        401,
        "unauthorized",
    ));
    cases.push((
        "jira: signed, not JSON",
        jira_signed(format!("{{not json {MARKER}").into_bytes()),
        400,
        "malformed",
    ));
    cases.push((
        "jira: signed, no issue key",
        jira_signed(
            format!(r#"{{"issue": {{"fields": {{"description": "{MARKER}"}}}}}}"#).into_bytes(),
        ),
        400,
        "malformed",
    ));
    cases.push((
        "zendesk: signed, no text",
        zendesk("Z-4", "", "", now),
        400,
        "malformed",
    ));
    let big = format!("{MARKER} ").repeat(200);
    cases.push((
        "generic: signed, over max_body_bytes",
        generic("G-3", "big", &big, now),
        413,
        "too_large",
    ));

    for (what, hook, status, outcome) in &cases {
        let a = hook.send(&client, &base).await;
        assert_eq!(a.status, *status, "{what}: {a:?}");
        assert_eq!(a.json["status"], *outcome, "{what}: {a:?}");
        assert!(a.json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // Basic auth says how to authenticate.
    let a = freshdesk_as(5, "PIN", &text, "freshdesk", "wrong")
        .send(&client, &base)
        .await;
    assert!(
        a.www_authenticate
            .as_deref()
            .is_some_and(|c| c.starts_with("Basic realm=")),
        "{a:?}"
    );

    // Oversized without a Content-Length (chunked): cut off at the limit.
    let hook = generic("G-4", "big", &big, now);
    let mut chunked = Vec::new();
    for part in hook.body.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, resp) = raw(server.addr(), &head_of(&hook, None), &chunked).await;
    assert_eq!(status, 413, "{resp}");

    // Routes and methods.
    let r = client
        .get(server.url("/webhooks/jira"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = ji.send(&client, &format!("{base}/nowhere")).await;
    assert_eq!(r.status, 404);

    // Replays: the first delivery is produced, the same signed delivery again is not.
    for hook in [&zd, &ji] {
        let first = hook.send(&client, &base).await;
        assert_eq!(first.status, 200, "{first:?}");
        let again = hook.send(&client, &base).await;
        assert_eq!(again.status, 409, "{again:?}");
        assert_eq!(again.json["status"], "replayed");
    }
    // A new delivery of the same ticket (a new timestamp, so a new signature) is accepted.
    let update = zendesk("Z-1", "PIN", &text, now + 1);
    assert_eq!(update.send(&client, &base).await.status, 200);

    // Z-1 twice (two deliveries), HD-1 once; nothing refused.
    settle_and_expect(&input, &["HD-1", "Z-1", "Z-1"]);
    // The collector sees what is produced: one more valid request shows up.
    assert_eq!(
        freshdesk(77, "PIN", &text)
            .send(&client, &base)
            .await
            .status,
        200
    );
    input.wait_for("the valid request", Duration::from_secs(30), |c| {
        c.len() >= 4
    });
    settle_and_expect(&input, &["HD-1", "Z-1", "Z-1", "77"]);

    // Counted per source and outcome.
    let m = |source: &str, outcome: &str| {
        format!("triage_ingest_requests_total{{outcome=\"{outcome}\",source=\"{source}\"}}")
    };
    assert_eq!(server.metric(&m("zendesk", "unauthorized")).await, 3.0);
    assert_eq!(server.metric(&m("zendesk", "stale")).await, 2.0);
    assert_eq!(server.metric(&m("zendesk", "replayed")).await, 1.0);
    assert_eq!(server.metric(&m("zendesk", "produced")).await, 2.0);
    assert_eq!(server.metric(&m("zendesk", "malformed")).await, 1.0);
    assert_eq!(server.metric(&m("jira", "unauthorized")).await, 2.0);
    assert_eq!(server.metric(&m("jira", "malformed")).await, 2.0);
    assert_eq!(server.metric(&m("jira", "replayed")).await, 1.0);
    assert_eq!(server.metric(&m("generic", "stale")).await, 1.0);
    assert_eq!(server.metric(&m("generic", "too_large")).await, 2.0);
    assert_eq!(server.metric(&m("servicenow", "unauthorized")).await, 2.0);
    assert_eq!(server.metric(&m("freshdesk", "unauthorized")).await, 2.0);
    assert_eq!(server.metric(&m("freshdesk", "produced")).await, 1.0);
    assert_eq!(
        server
            .metric("triage_ingest_produce_duration_seconds_count{result=\"ok\"}")
            .await,
        4.0
    );

    // The log: refusals are there, ticket text and secrets are not.
    let log = server.log_text();
    assert!(log.contains("refused"), "{log}");
    for secret in [
        MARKER,
        ZENDESK_SECRET,
        JIRA_SECRET,
        GENERIC_SECRET,
        SERVICENOW_TOKEN,
        FRESHDESK_PASSWORD,
        "guess",
    ] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
}

trait ReplaceMarker {
    fn replace_marker(self) -> Vec<u8>;
}

impl ReplaceMarker for Vec<u8> {
    /// The same body with the marker's first letter changed (same length).
    fn replace_marker(self) -> Vec<u8> {
        let s = String::from_utf8(self).unwrap();
        s.replacen("Confidential", "Konfidential", 1).into_bytes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_and_excess_requests_get_503() {
    let _serial = serial().await;
    let s = Setup::new("ingest-slow", 1, &[]).await;
    let cfg = s.config(
        "c.toml",
        &ingest_section(
            "request_timeout_ms = 1000\nmax_concurrent_requests = 1\nretry_after_s = 3\n",
        ),
    );
    let server = IngestServer::start(&cfg, "ingest", "info");
    let input = Collector::start(&s.input);
    let client = reqwest::Client::new();

    // A client that sends its headers and a little of its body, then stalls: it holds the
    // only request slot.
    let slow = jira("HD-SLOW", "PIN", "my security key PIN is blocked");
    let mut conn = TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(format!("{}\r\n\r\n", head_of(&slow, Some(slow.body.len()))).as_bytes())
        .await
        .unwrap();
    conn.write_all(&slow.body[..10]).await.unwrap();
    let stalled_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Meanwhile: no slot, so 503 at once, with Retry-After.
    let other = freshdesk(9, "PIN", "my security key PIN is blocked");
    let a = other.send(&client, &server.base).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.json["status"], "overloaded");
    assert_eq!(a.retry_after.as_deref(), Some("3"));

    // The slow client gets 408 after request_timeout_ms, and its request is not produced.
    let (status, resp) = read_response(&mut conn).await;
    assert_eq!(status, 408, "{resp}");
    let waited = stalled_at.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // The slot is free again.
    assert_eq!(other.send(&client, &server.base).await.status, 200);
    input.wait_for("the accepted request", Duration::from_secs(30), |c| {
        c.len() >= 1
    });
    settle_and_expect(&input, &["9"]);
    let m = |o: &str| {
        format!(
            "triage_ingest_requests_total{{outcome=\"{o}\",source=\"{}\"}}",
            "jira"
        )
    };
    assert_eq!(server.metric(&m("timeout")).await, 1.0);
    assert_eq!(
        server
            .metric("triage_ingest_requests_total{outcome=\"overloaded\",source=\"freshdesk\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_finishes_the_request_in_flight() {
    let _serial = serial().await;
    let s = Setup::new("ingest-drain", 1, &[]).await;
    let cfg = s.config("c.toml", &ingest_section(""));
    let mut server = IngestServer::start(&cfg, "ingest", "info");
    let input = Collector::start(&s.input);
    let addr = server.addr().to_string();

    // A request half sent when the stop is requested.
    let hook = jira("HD-DRAIN", "PIN", "my security key PIN is blocked");
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(format!("{}\r\n\r\n", head_of(&hook, Some(hook.body.len()))).as_bytes())
        .await
        .unwrap();
    conn.write_all(&hook.body[..20]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // New connections are no longer accepted...
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "still accepting connections after SIGTERM"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    // ... and the request in flight is finished: produced and answered 200.
    conn.write_all(&hook.body[20..]).await.unwrap();
    let (status, resp) = read_response(&mut conn).await;
    assert_eq!(status, 200, "{resp}");
    let exit = server
        .wait(Duration::from_secs(15))
        .expect("exits after the drain");
    assert!(exit.success(), "{exit}\n{}", server.log_text());
    input.wait_for("the drained request", Duration::from_secs(30), |c| {
        c.len() >= 1
    });
    settle_and_expect(&input, &["HD-DRAIN"]);
}
