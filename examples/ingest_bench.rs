//! Helper of `scripts/bench-ingest`: a load generator for `triage ingest` on loopback.
//!
//!   ingest_bench ADDR COUNT CONNECTIONS MAX_SECONDS BOOTSTRAP TOPIC
//!
//! Signs COUNT distinct Zendesk ticket events (each its own body, timestamp and signature;
//! secret from the variable BENCH_ZENDESK_SECRET) before the clock starts, then sends them
//! over CONNECTIONS keep-alive HTTP/1.1 connections to ADDR (127.0.0.1:PORT only), each
//! connection one request at a time, and stops after COUNT requests or MAX_SECONDS. It
//! prints `requests=… ok=… other=… seconds=… rate=… p50_ms=… p99_ms=… max_ms=…`, then
//! checks that TOPIC on BOOTSTRAP holds exactly one record per 200 (`on_topic=…`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::net::TcpStream;
use triage::ingest::verify::hmac_sha256;

const BODIES: &[&str] = &[
    "I typed my security key PIN wrong too many times and now it says the PIN is blocked.",
    "The browser keeps asking me to insert my security key but it is plugged in, the light does not blink.",
    "Scanning the QR code with my phone to sign in on the kiosk PC fails with 'something went wrong'.",
    "I forgot my password after the holidays, please reset it so I can use the VPN again.",
    "My passkey did not sync to my new phone, the site says there are no passkeys available.",
    "The printer on the third floor shows a paper jam in tray 2 again.",
];

struct Prepared {
    body: Bytes,
    timestamp: String,
    signature: String,
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn prepare(count: usize, secret: &str) -> Vec<Prepared> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ts = rfc3339(now);
    let run = now % 1_000_000;
    (0..count)
        .map(|i| {
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "zen:event-type:ticket.created",
                "account_id": 123456,
                "id": format!("evt-{run}-{i}"),
                "time": ts,
                "zendesk_event_version": "2022-11-06",
                "subject": format!("zen:ticket:{i}"),
                "detail": {
                    "id": format!("{run}{i:07}"),
                    "subject": format!("Ticket {i}"),
                    "description": BODIES[i % BODIES.len()],
                    "tags": ["hardware"],
                    "actor_id": "900",
                    "updated_at": ts,
                    "status": "NEW"
                },
                "event": {}
            }))
            .unwrap();
            let sig = hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), &body]);
            Prepared {
                body: Bytes::from(body),
                timestamp: ts.clone(),
                signature: base64::engine::general_purpose::STANDARD.encode(sig),
            }
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, count, conns, max_s, bootstrap, topic] = args.as_slice() else {
        eprintln!("usage: ingest_bench ADDR COUNT CONNECTIONS MAX_SECONDS BOOTSTRAP TOPIC");
        std::process::exit(2);
    };
    let ip: std::net::SocketAddr = addr.parse().expect("ADDR is IP:PORT");
    assert!(
        ip.ip().is_loopback(),
        "the load generator only targets loopback"
    );
    let count: usize = count.parse().expect("COUNT");
    let conns: usize = conns.parse().expect("CONNECTIONS");
    let max = Duration::from_secs(max_s.parse().expect("MAX_SECONDS"));
    let secret = std::env::var("BENCH_ZENDESK_SECRET").expect("BENCH_ZENDESK_SECRET");

    let requests = Arc::new(prepare(count, &secret));
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (requests, next, ok, addr) = (requests.clone(), next.clone(), ok.clone(), ip);
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            let mut other = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() || Instant::now() >= deadline {
                    break;
                }
                let r = &requests[i];
                let req = Request::post("/webhooks/zendesk")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("x-zendesk-webhook-signature", &r.signature)
                    .header("x-zendesk-webhook-signature-timestamp", &r.timestamp)
                    .body(Full::new(r.body.clone()))
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.expect("request");
                let status = resp.status();
                resp.into_body().collect().await.expect("body");
                latencies.push(t.elapsed());
                if status.as_u16() == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    other += 1;
                    if other <= 3 {
                        eprintln!("answer {status}");
                    }
                }
            }
            (latencies, other)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut other = 0;
    for t in tasks {
        let (l, o) = t.await.unwrap();
        latencies.extend(l);
        other += o;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "requests={} ok={ok} other={other} seconds={seconds:.2} rate={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );

    // Every 200 is on the topic, once.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let on_topic: i64 = (0..partitions)
        .map(|p| {
            let (lo, hi) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            hi - lo
        })
        .sum();
    println!("on_topic={on_topic}");
    if on_topic != ok as i64 {
        eprintln!("MISMATCH: {ok} requests answered 200, {on_topic} records on {topic}");
        std::process::exit(1);
    }
}
