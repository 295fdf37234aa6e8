//! The post-back sinks against local servers holding each vendor's documented contract
//! (tests/support/ticketing.rs): exact requests (method, path, auth, JSON body), and the
//! faults: 429 with `Retry-After`, a run of 503s (and the circuit breaker), a 400 that is
//! dead-lettered with its body, a hung connection, redelivery, a marker already there, a
//! half-done ticket, and two workers racing.
//!
//! The sinks run inside the real pipeline (JSON Lines in, a recording dead-letter sink), so
//! retries, waits and dead letters are the worker's own.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::watch;

use support::serve_on_loopback;
use support::ticketing::{strip_html, zendesk_stamp, Fault, Server, Tk, Vendor};
use triage::catalog::Catalog;
use triage::classify::Classifier;
use triage::config::{Settings, WorkerSettings};
use triage::decision::{Decision, SourceRef};
use triage::pipeline::{Pipeline, Summary};
use triage::sink::dead_letter::{DeadLetter, DeadLetterSink};
use triage::sink::note::{render, Markup};
use triage::sink::{Delivery, SinkError, TicketSink};
use triage::source::jsonl::JsonlSource;
use triage::ticket::{Preset, Ticket, TicketShape};
use triage::worker::ticketing_sinks;

const MARKER: &str = "triage-done";
const BODY: &str = "My security key PIN is blocked after too many wrong attempts.";

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// One vendor under test: its server, a sink talking to it, and its ticket id.
struct Kit {
    vendor: Vendor,
    server: Server,
    id: &'static str,
    dir: tempfile::TempDir,
    extra: String,
}

impl Kit {
    async fn new(vendor: Vendor) -> Kit {
        Kit::with(vendor, "").await
    }

    /// `extra`: more keys for the sink's section (e.g. `mode = "tag"`).
    async fn with(vendor: Vendor, extra: &str) -> Kit {
        let (auth, id) = match vendor {
            Vendor::Zendesk => (basic("agent@example.com/token:zd-secret"), "101"),
            Vendor::Jira => (basic("agent@example.com:jira-secret"), "HD-7"),
            Vendor::ServiceNow => (
                basic("triage:sn-secret"),
                "0123456789abcdef0123456789abcdef",
            ),
            Vendor::Freshdesk => (basic("fd-key:X"), "55"),
        };
        Kit {
            vendor,
            server: Server::start(vendor, &auth).await,
            id,
            dir: tempfile::tempdir().unwrap(),
            extra: extra.to_string(),
        }
    }

    /// The settings file for this vendor (secrets in files, short timeouts for tests).
    fn settings(&self) -> Settings {
        let secret = |name: &str, value: &str| {
            let p = self.dir.path().join(name);
            std::fs::write(&p, format!("{value}\n")).unwrap();
            p.display().to_string()
        };
        let section = match self.vendor {
            Vendor::Zendesk => format!(
                "[sink.zendesk]\nemail = \"agent@example.com\"\napi_token_file = \"{}\"\n",
                secret("zd", "zd-secret")
            ),
            Vendor::Jira => format!(
                "[sink.jira]\nemail = \"agent@example.com\"\napi_token_file = \"{}\"\n",
                secret("jira", "jira-secret")
            ),
            Vendor::ServiceNow => format!(
                "[sink.servicenow]\nusername = \"triage\"\npassword_file = \"{}\"\nsymptom_field = \"u_triage_symptom\"\n",
                secret("sn", "sn-secret")
            ),
            Vendor::Freshdesk => format!(
                "[sink.freshdesk]\napi_key_file = \"{}\"\n",
                secret("fd", "fd-key")
            ),
        };
        let text = format!(
            "[worker]\nmarker_tag = \"{MARKER}\"\n{section}base_url = \"{}\"\ntimeout_ms = 300\nrequests_per_minute = 6000\ncircuit_breaker_failures = 3\ncircuit_breaker_open_ms = 300\n{}",
            self.server.base(),
            self.extra
        );
        Settings::parse(&text, std::path::Path::new("sinks-test.toml")).unwrap()
    }

    fn sink(&self) -> Arc<dyn TicketSink> {
        let s = self.settings();
        let mut sinks = ticketing_sinks(&s, &classifier()).unwrap();
        assert_eq!(sinks.len(), 1);
        sinks.pop().unwrap()
    }

    fn line(&self, stamp: Option<&str>) -> String {
        let mut v = json!({"id": self.id, "subject": "Security key", "body": BODY});
        if let Some(s) = stamp {
            v["updated_at"] = json!(s);
        }
        v.to_string()
    }

    fn notes(&self) -> usize {
        self.server.ticket(self.id).notes.len()
    }

    /// Whether the ticket carries the marker (ServiceNow: its symptom field is filled).
    fn marked(&self) -> bool {
        let t = self.server.ticket(self.id);
        match self.vendor {
            Vendor::ServiceNow => !t.field.is_empty(),
            _ => t.tags.iter().any(|x| x == MARKER),
        }
    }

    /// The method and path fragment of the first write (the note).
    fn note_write(&self) -> (&'static str, &'static str) {
        match self.vendor {
            Vendor::Zendesk => ("PUT", "/api/v2/tickets/101.json"),
            Vendor::Jira => ("POST", "/comment"),
            Vendor::ServiceNow => ("PATCH", "/api/now/table/incident/"),
            Vendor::Freshdesk => ("POST", "/notes"),
        }
    }

    fn markup(&self) -> Markup {
        match self.vendor {
            Vendor::Zendesk | Vendor::Freshdesk => Markup::Html,
            Vendor::Jira => Markup::JiraWiki,
            Vendor::ServiceNow => Markup::ServiceNow,
        }
    }
}

fn classifier() -> Classifier {
    Classifier::new(Catalog::builtin()).unwrap()
}

fn decision_for(id: &str) -> Decision {
    let c = classifier();
    let t = Ticket {
        id: id.into(),
        subject: "Security key".into(),
        body: BODY.into(),
        ..Default::default()
    };
    let d = Decision::new(c.catalog(), &t, c.classify(t.text()));
    assert!(
        !d.symptoms.is_empty(),
        "the test ticket must show a symptom"
    );
    d
}

/// Dead letters as (class, message).
#[derive(Default)]
struct Letters(Mutex<Vec<(String, String)>>);

#[async_trait]
impl DeadLetterSink for Letters {
    async fn send(&self, l: DeadLetter<'_>) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap()
            .push((l.class.to_string(), l.message.to_string()));
        Ok(())
    }
}

fn worker(retry_initial_ms: u64, retry_max_ms: u64) -> WorkerSettings {
    WorkerSettings {
        max_in_flight: 100,
        retry_initial: Duration::from_millis(retry_initial_ms),
        retry_max: Duration::from_millis(retry_max_ms),
        marker_tag: MARKER.into(),
        ..WorkerSettings::default()
    }
}

/// Run `lines` through the pipeline into `sink`; the summary and the dead letters.
async fn run(
    sink: Arc<dyn TicketSink>,
    lines: &[String],
    w: WorkerSettings,
) -> (Summary, Vec<(String, String)>) {
    let letters = Arc::new(Letters::default());
    let p = Pipeline::new(
        classifier(),
        TicketShape::preset(Preset::Plain, 1 << 20),
        vec![sink],
        letters.clone(),
        w,
    );
    let text = lines.join("\n") + "\n";
    let mut src = JsonlSource::from_reader("t.jsonl", std::io::Cursor::new(text.into_bytes()));
    let (_tx, rx) = watch::channel(false);
    let s = tokio::time::timeout(Duration::from_secs(60), p.run(&mut src, rx))
        .await
        .expect("pipeline finished")
        .unwrap();
    let l = letters.0.lock().unwrap().clone();
    (s, l)
}

fn decided(n: u64) -> Summary {
    Summary {
        received: n,
        decided: n,
        ..Summary::default()
    }
}

// ----- exact contracts ------------------------------------------------------------------------

#[tokio::test]
async fn zendesk_contract_read_look_note_then_tags() {
    let k = Kit::new(Vendor::Zendesk).await;
    let (s, letters) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1), "{letters:?}");
    let d = decision_for("101");
    let html = render(&Catalog::builtin(), &d, Markup::Html);
    let mut tags = d.tags.clone();
    tags.push(MARKER.into());
    let log = k.server.log();
    let lines: Vec<String> = log.iter().map(|s| s.line()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /api/v2/tickets/101.json",
            "GET /api/v2/tickets/101/comments.json?sort_order=desc",
            "PUT /api/v2/tickets/101.json",
            "PUT /api/v2/tickets/101/tags.json",
        ]
    );
    assert_eq!(
        log[2].body,
        Some(
            json!({"ticket": {"comment": {"html_body": html, "public": false}, "safe_update": true, "updated_stamp": zendesk_stamp(0)}})
        )
    );
    assert_eq!(
        log[3].body,
        Some(json!({"tags": tags, "safe_update": "true", "updated_stamp": zendesk_stamp(1)}))
    );
    assert!(log.iter().all(|s| s.status == 200));
    k.server.assert_clean();
    let t = k.server.ticket("101");
    assert_eq!(t.notes.len(), 1);
    assert!(!t.notes[0].public, "an internal note");
    let text = strip_html(&t.notes[0].text);
    let sym = &Catalog::builtin().symptoms[d.symptoms[0].index];
    assert!(
        text.contains(&sym.title) && text.contains("1. ") && text.contains(sym.fix.trim()),
        "{text}"
    );
    assert_eq!(t.tags, tags);
}

#[tokio::test]
async fn zendesk_uses_the_event_stamp_and_rereads_on_409() {
    let k = Kit::new(Vendor::Zendesk).await;
    // The event's stamp is current: no read, the note is a safe update on that stamp.
    let (s, _) = run(
        k.sink(),
        &[k.line(Some(&zendesk_stamp(0)))],
        worker(10, 100),
    )
    .await;
    assert_eq!(s, decided(1));
    let lines: Vec<String> = k.server.log().iter().map(|s| s.line()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /api/v2/tickets/101/comments.json?sort_order=desc",
            "PUT /api/v2/tickets/101.json",
            "PUT /api/v2/tickets/101/tags.json",
        ]
    );

    // A stale stamp (an agent replied since the event): 409, read again, write once.
    let k = Kit::new(Vendor::Zendesk).await;
    k.server.seed(
        "101",
        Tk {
            stamp: 5,
            tags: vec!["vip".into()],
            ..Tk::default()
        },
    );
    let (s, _) = run(
        k.sink(),
        &[k.line(Some(&zendesk_stamp(2)))],
        worker(10, 100),
    )
    .await;
    assert_eq!(s, decided(1));
    let log = k.server.log();
    let statuses: Vec<(String, u16)> = log.iter().map(|s| (s.line(), s.status)).collect();
    assert_eq!(
        statuses[1],
        ("PUT /api/v2/tickets/101.json".to_string(), 409),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[2].0, "GET /api/v2/tickets/101.json",
        "{statuses:?}"
    );
    assert_eq!(k.notes(), 1);
    let t = k.server.ticket("101");
    assert_eq!(t.tags[0], "vip", "existing tags are kept");
    assert!(k.marked());
    k.server.assert_clean();
}

#[tokio::test]
async fn zendesk_two_workers_racing_write_one_note() {
    let k = Kit::new(Vendor::Zendesk).await;
    // Both look at the comments at the same time and find none: only the safe update decides.
    k.server.fail(
        Some("GET"),
        Some("comments"),
        2,
        Fault::Delay(Duration::from_millis(150)),
    );
    let (a, b) = (k.sink(), k.sink());
    let d = decision_for("101");
    let t = Ticket {
        id: "101".into(),
        body: BODY.into(),
        updated_stamp: Some(zendesk_stamp(0)),
        ..Default::default()
    };
    let src = SourceRef {
        topic: "t".into(),
        partition: 0,
        offset: 1,
    };
    let del = Delivery {
        ticket: &t,
        decision: &d,
        source: &src,
    };
    let (ra, rb) = tokio::join!(a.post(del), b.post(del));
    ra.unwrap();
    rb.unwrap();
    let conflicts = k.server.log().iter().filter(|s| s.status == 409).count();
    assert!(conflicts >= 1, "the race happened: {:?}", k.server.log());
    assert_eq!(k.notes(), 1, "one note despite the race");
    assert!(k.marked());
    k.server.assert_clean();
}

#[tokio::test]
async fn jira_contract_labels_comment_then_labels_added() {
    let k = Kit::new(Vendor::Jira).await;
    k.server.seed(
        "HD-7",
        Tk {
            tags: vec!["it".into()],
            ..Tk::default()
        },
    );
    let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    let d = decision_for("HD-7");
    let text = render(&Catalog::builtin(), &d, Markup::JiraWiki);
    let log = k.server.log();
    let lines: Vec<String> = log.iter().map(|s| s.line()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /rest/api/3/issue/HD-7?fields=labels",
            "GET /rest/servicedeskapi/request/HD-7/comment?start=0&limit=100",
            "POST /rest/servicedeskapi/request/HD-7/comment",
            "PUT /rest/api/3/issue/HD-7",
        ]
    );
    assert_eq!(log[2].body, Some(json!({"body": text, "public": false})));
    let mut adds: Vec<Value> = d.tags.iter().map(|t| json!({ "add": t })).collect();
    adds.push(json!({ "add": MARKER }));
    assert_eq!(log[3].body, Some(json!({"update": {"labels": adds}})));
    k.server.assert_clean();
    let t = k.server.ticket("HD-7");
    assert_eq!(t.notes.len(), 1);
    assert!(!t.notes[0].public);
    assert_eq!(t.tags[0], "it", "existing labels are kept");
}

#[tokio::test]
async fn jira_per_issue_limit_delays_only_that_issue() {
    let k = Kit::new(Vendor::Jira).await;
    k.server.fail(
        Some("POST"),
        Some("HD-7/comment"),
        1,
        Fault::status(429)
            .with_header("retry-after", "2")
            .with_header("ratelimit-reason", "jira-per-issue-on-write"),
    );
    let sink = k.sink();
    let d7 = decision_for("HD-7");
    let d8 = decision_for("HD-8");
    let t7 = Ticket {
        id: "HD-7".into(),
        body: BODY.into(),
        ..Default::default()
    };
    let t8 = Ticket {
        id: "HD-8".into(),
        body: BODY.into(),
        ..Default::default()
    };
    let src = SourceRef {
        topic: "t".into(),
        partition: 0,
        offset: 1,
    };
    let t0 = Instant::now();
    let slow = async {
        sink.post(Delivery {
            ticket: &t7,
            decision: &d7,
            source: &src,
        })
        .await
        .unwrap();
        t0.elapsed()
    };
    let fast = async {
        // Start once HD-7 has met its limit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sink.post(Delivery {
            ticket: &t8,
            decision: &d8,
            source: &src,
        })
        .await
        .unwrap();
        t0.elapsed()
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert!(
        fast < Duration::from_millis(1500),
        "HD-8 was held up: {fast:?}"
    );
    assert!(
        slow >= Duration::from_secs(2),
        "HD-7 did not wait: {slow:?}"
    );
    let log = k.server.log();
    let i = log.iter().position(|s| s.status == 429).unwrap();
    let next7 = log[i + 1..]
        .iter()
        .find(|s| s.path.contains("HD-7"))
        .unwrap();
    assert!(
        next7.at - log[i].at >= Duration::from_secs(2),
        "HD-7 retried too soon"
    );
    assert_eq!(k.server.ticket("HD-7").notes.len(), 1);
    assert_eq!(k.server.ticket("HD-8").notes.len(), 1);
    k.server.assert_clean();
}

#[tokio::test]
async fn servicenow_contract_one_patch_with_note_and_field() {
    let k = Kit::new(Vendor::ServiceNow).await;
    let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    let d = decision_for(k.id);
    let text = render(&Catalog::builtin(), &d, Markup::ServiceNow);
    let ids: Vec<&str> = d.symptoms.iter().map(|f| f.id.as_str()).collect();
    let log = k.server.log();
    let lines: Vec<String> = log.iter().map(|s| s.line()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /api/now/table/incident/0123456789abcdef0123456789abcdef?sysparm_fields=u_triage_symptom&sysparm_exclude_reference_link=true".to_string(),
            "PATCH /api/now/table/incident/0123456789abcdef0123456789abcdef".to_string(),
        ]
    );
    assert_eq!(
        log[1].body,
        Some(json!({"u_triage_symptom": ids.join(", "), "work_notes": text}))
    );
    k.server.assert_clean();
}

#[tokio::test]
async fn servicenow_numbers_are_looked_up_then_patched_by_sys_id() {
    let k = Kit::with(Vendor::ServiceNow, "ticket_id = \"number\"\n").await;
    let sys_id = "89abcdef0123456789abcdef01234567";
    k.server.seed(
        sys_id,
        Tk {
            number: "INC0010001".into(),
            ..Tk::default()
        },
    );
    let line = |id: &str| json!({"id": id, "subject": "Security key", "body": BODY}).to_string();
    let (s, dead) = run(
        k.sink(),
        &[line("INC0010001"), line("INC0099999")],
        worker(10, 100),
    )
    .await;
    assert_eq!((s.decided, s.dead_lettered), (1, 1), "{s:?}");
    assert!(
        dead[0].1.contains("no incident record numbered INC0099999"),
        "{dead:?}"
    );
    // The two tickets are handled concurrently: keep the known one's requests.
    let lines: Vec<String> = k.server.log().iter().map(|s| s.line()).collect();
    let known: Vec<&String> = lines.iter().filter(|l| !l.contains("INC0099999")).collect();
    assert_eq!(
        known,
        [
            "GET /api/now/table/incident?sysparm_query=number%3DINC0010001&sysparm_fields=sys_id%2Cu_triage_symptom&sysparm_limit=1&sysparm_exclude_reference_link=true",
            &format!("PATCH /api/now/table/incident/{sys_id}"),
        ]
    );
    let t = k.server.ticket(sys_id);
    assert_eq!(t.notes.len(), 1);
    assert!(!t.field.is_empty());
    k.server.assert_clean();
}

#[tokio::test]
async fn freshdesk_contract_note_then_read_merge_write_tags() {
    let k = Kit::new(Vendor::Freshdesk).await;
    k.server.seed(
        "55",
        Tk {
            tags: vec!["billing".into()],
            ..Tk::default()
        },
    );
    let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    let d = decision_for("55");
    let html = render(&Catalog::builtin(), &d, Markup::Html);
    let log = k.server.log();
    let lines: Vec<String> = log.iter().map(|s| s.line()).collect();
    assert_eq!(
        lines,
        vec![
            "GET /api/v2/tickets/55",
            "GET /api/v2/tickets/55/conversations?page=1&per_page=100",
            "POST /api/v2/tickets/55/notes",
            "GET /api/v2/tickets/55",
            "PUT /api/v2/tickets/55",
        ]
    );
    assert_eq!(log[2].body, Some(json!({"body": html, "private": true})));
    let mut tags = vec!["billing".to_string()];
    tags.extend(d.tags.iter().cloned());
    tags.push(MARKER.into());
    assert_eq!(log[4].body, Some(json!({ "tags": tags })));
    assert_eq!(k.server.ticket("55").tags, tags, "existing tags kept");
    k.server.assert_clean();
}

#[tokio::test]
async fn modes_shadow_writes_nothing_and_tag_writes_no_note() {
    for v in [
        Vendor::Zendesk,
        Vendor::Jira,
        Vendor::ServiceNow,
        Vendor::Freshdesk,
    ] {
        let k = Kit::with(v, "mode = \"shadow\"\n").await;
        let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
        assert_eq!(s, decided(1));
        assert!(
            k.server.log().is_empty(),
            "{v:?} shadow sent {:?}",
            k.server.log()
        );

        let k = Kit::with(v, "mode = \"tag\"\n").await;
        let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
        assert_eq!(s, decided(1));
        assert_eq!(k.notes(), 0, "{v:?}: no note in tag mode");
        assert!(k.marked(), "{v:?}: the marker goes with the tags");
        k.server.assert_clean();
    }
}

// ----- faults, the same for every vendor ------------------------------------------------------

/// 429 with `Retry-After: 2` on the note: the next request comes no sooner than 2 s later.
async fn retry_after_is_honoured(v: Vendor) {
    let k = Kit::new(v).await;
    let (m, p) = k.note_write();
    k.server.fail(
        Some(m),
        Some(p),
        1,
        Fault::status(429).with_header("retry-after", "2"),
    );
    let (s, letters) = run(k.sink(), &[k.line(None)], worker(10, 5000)).await;
    assert_eq!(s, decided(1), "{letters:?}");
    let log = k.server.log();
    let i = log
        .iter()
        .position(|s| s.status == 429)
        .expect("the 429 was sent");
    let gap = log[i + 1].at - log[i].at;
    assert!(
        gap >= Duration::from_secs(2),
        "{v:?}: next request after {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(4),
        "{v:?}: waited far too long: {gap:?}"
    );
    assert_eq!(k.notes(), 1);
    assert!(k.marked());
    k.server.assert_clean();
}

/// Five 503s, then success; the breaker (3 failures, 300 ms) spaces the last attempts.
async fn five_503s_then_success(v: Vendor) {
    let k = Kit::new(v).await;
    k.server.fail(None, None, 5, Fault::status(503));
    // Pipeline backoff of at most 20 ms: any longer gap is the breaker's doing.
    let (s, letters) = run(k.sink(), &[k.line(None)], worker(1, 20)).await;
    assert_eq!(s, decided(1), "{letters:?}");
    let log = k.server.log();
    let statuses: Vec<u16> = log.iter().map(|s| s.status).collect();
    assert_eq!(&statuses[..5], &[503; 5], "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|&s| (200..300).contains(&s)),
        "{statuses:?}"
    );
    for i in 3..6 {
        let gap = log[i].at - log[i - 1].at;
        assert!(
            gap >= Duration::from_millis(290),
            "{v:?}: request {i} came {gap:?} after the previous one while the breaker was open"
        );
    }
    assert!(
        log[2].at - log[1].at < Duration::from_millis(250),
        "closed breaker: quick retries"
    );
    assert_eq!(k.notes(), 1);
    assert!(k.marked());
    k.server.assert_clean();
}

/// A 400 on the note: dead-lettered with the status and the body, not retried.
async fn bad_request_is_dead_lettered_with_the_body(v: Vendor) {
    let k = Kit::new(v).await;
    let (m, p) = k.note_write();
    k.server.fail(
        Some(m),
        Some(p),
        1,
        Fault::status(400)
            .with_body("{\"error\":\"RecordInvalid\",\"details\":\"Comment body is too long\"}"),
    );
    let (s, letters) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s.dead_lettered, 1, "{s:?}");
    assert_eq!(s.decided, 0);
    assert_eq!(letters.len(), 1);
    let (class, msg) = &letters[0];
    assert_eq!(class, "sink_rejected");
    assert!(
        msg.contains("HTTP 400") && msg.contains("Comment body is too long"),
        "{msg}"
    );
    let tries = k
        .server
        .log()
        .iter()
        .filter(|s| s.method == m && s.path.contains(p))
        .count();
    assert_eq!(tries, 1, "{v:?}: a 400 is not retried");
    assert_eq!(k.notes(), 0);
    assert!(!k.marked(), "no marker without the note");
}

/// A request that never gets an answer: the 300 ms timeout, then a retry that works.
async fn hung_connection_times_out(v: Vendor) {
    let k = Kit::new(v).await;
    k.server
        .fail(None, None, 1, Fault::Hang(Duration::from_secs(5)));
    let t0 = Instant::now();
    let (s, letters) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1), "{letters:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "waited for the hung request: {:?}",
        t0.elapsed()
    );
    let log = k.server.log();
    let gap = log[1].at - log[0].at;
    assert!(
        gap >= Duration::from_millis(300),
        "{v:?}: retried before the timeout: {gap:?}"
    );
    assert_eq!(k.notes(), 1);
    k.server.assert_clean();
}

/// The same ticket twice at once, then again after a "restart" (a new sink): one note.
async fn redelivery_writes_one_note(v: Vendor) {
    let k = Kit::new(v).await;
    let line = k.line(None);
    let (s, _) = run(k.sink(), &[line.clone(), line.clone()], worker(10, 100)).await;
    assert_eq!(s, decided(2));
    assert_eq!(k.notes(), 1, "{v:?}: two events of one ticket");
    assert!(k.marked());
    k.server.clear_log();
    let (s, _) = run(k.sink(), &[line], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    assert_eq!(k.notes(), 1, "{v:?}: redelivered after a restart");
    assert!(
        k.server.writes().is_empty(),
        "{v:?}: wrote {:?}",
        k.server.writes()
    );
    k.server.assert_clean();
}

/// A ticket already carrying the marker: read, nothing written.
async fn marker_present_writes_nothing(v: Vendor) {
    let k = Kit::new(v).await;
    let mut t = Tk {
        tags: vec!["vip".into(), MARKER.into()],
        ..Tk::default()
    };
    if v == Vendor::ServiceNow {
        t.field = "pin-locked".into();
    }
    k.server.seed(k.id, t);
    let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    let log = k.server.log();
    assert!(!log.is_empty(), "the sink looked");
    assert!(
        log.iter().all(|s| s.method == "GET"),
        "{v:?}: wrote {log:?}"
    );
    assert_eq!(k.notes(), 0);
    k.server.assert_clean();
}

/// A crash after the note, before the marker: redelivery adds the tags, not a second note.
async fn half_done_ticket_gets_tags_only(v: Vendor) {
    let k = Kit::new(v).await;
    let d = decision_for(k.id);
    let mut note = render(&Catalog::builtin(), &d, k.markup());
    if v == Vendor::Zendesk || v == Vendor::Freshdesk {
        // As the system keeps it; the sink reads the plain rendering.
        note = format!("<div class=\"zd-comment\">{note}</div>");
    }
    k.server.seed(
        k.id,
        Tk {
            notes: vec![support::ticketing::NoteRec {
                text: note,
                public: false,
            }],
            stamp: 1,
            ..Tk::default()
        },
    );
    let (s, _) = run(k.sink(), &[k.line(None)], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    assert_eq!(k.notes(), 1, "{v:?}: no second note");
    assert!(k.marked(), "{v:?}: the marker was added");
    k.server.assert_clean();
}

macro_rules! fault_tests {
    ($($name:ident),* $(,)?) => {
        mod zendesk { use super::*; $( #[tokio::test] async fn $name() { super::$name(Vendor::Zendesk).await } )* }
        mod jira { use super::*; $( #[tokio::test] async fn $name() { super::$name(Vendor::Jira).await } )* }
        mod servicenow { use super::*; $( #[tokio::test] async fn $name() { super::$name(Vendor::ServiceNow).await } )* }
        mod freshdesk { use super::*; $( #[tokio::test] async fn $name() { super::$name(Vendor::Freshdesk).await } )* }
    };
}

fault_tests!(
    retry_after_is_honoured,
    five_503s_then_success,
    bad_request_is_dead_lettered_with_the_body,
    hung_connection_times_out,
    redelivery_writes_one_note,
    marker_present_writes_nothing,
);

#[tokio::test]
async fn half_done_zendesk() {
    half_done_ticket_gets_tags_only(Vendor::Zendesk).await
}
#[tokio::test]
async fn half_done_jira() {
    half_done_ticket_gets_tags_only(Vendor::Jira).await
}
#[tokio::test]
async fn half_done_freshdesk() {
    half_done_ticket_gets_tags_only(Vendor::Freshdesk).await
}

// ----- the generic webhook --------------------------------------------------------------------

#[tokio::test]
async fn webhook_posts_the_decision_signed_with_hmac_sha256() {
    use hmac::{Hmac, Mac};
    type Got = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;
    let got: Got = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((h, b.to_vec()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let port = serve_on_loopback(app).await.port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "hook-key\n").unwrap();
    let cfg = |mode: &str| {
        Settings::parse(
            &format!(
                "[sink.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nsigning_secret_file = \"{}\"\nmode = \"{mode}\"\n",
                key.display()
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    };
    let sinks = ticketing_sinks(&cfg("shadow"), &classifier()).unwrap();
    let line = json!({"id": "9", "body": BODY}).to_string();
    let (s, _) = run(
        sinks[0].clone(),
        std::slice::from_ref(&line),
        worker(10, 100),
    )
    .await;
    assert_eq!(s, decided(1));
    assert!(got.lock().unwrap().is_empty(), "shadow mode posted");

    let sinks = ticketing_sinks(&cfg("tag+note"), &classifier()).unwrap();
    let (s, _) = run(sinks[0].clone(), &[line], worker(10, 100)).await;
    assert_eq!(s, decided(1));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (h, body) = &got[0];
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["id"], "9");
    assert_eq!(
        v["source"],
        json!({"topic": "t.jsonl", "partition": 0, "offset": 1})
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hook-key").unwrap();
    mac.update(body);
    let sig = h["x-triage-signature-256"].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    mac.verify_slice(&bytes)
        .expect("the signature verifies over the raw body");
    assert_eq!(h["idempotency-key"], "triage-t.jsonl-0-1");
    assert_eq!(h["content-type"], "application/json");
}
