//! Security against the real Kafka broker started by `scripts/test`, reached on its SASL_SSL
//! listener (TLS with the CA `deploy/kafka/kafka.sh` made, SCRAM-SHA-512):
//! - `triage run` logs in with the password from an environment variable and decides tickets
//!   end to end, posting to Zendesk and a signed webhook; its whole output at the default log
//!   level, its /metrics page and the `Debug` of its settings hold no secret and no ticket text;
//! - `triage ingest` does the same for webhooks, with every source's secret configured;
//! - a wrong password or a CA that did not sign the broker's certificate stops both commands
//!   at start-up, within seconds, with a message naming the broker, the user and mechanism
//!   (or the CA setting) to check, instead of retrying for ever.
// Most of these need the Kafka broker that scripts/test starts (cargo feature test-broker);
// the note-quoting test needs none.
#![cfg_attr(not(feature = "test-broker"), allow(dead_code, unused_imports))]

#[path = "support/security.rs"]
mod secure;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use secure::*;
use support::ingest::{self, ingest_section};
use support::ticketing::{Server, Vendor};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
/// How long a refused start may take at most (the check gives up on silence after 30 s; a
/// refusal is reported in about a second).
const REFUSAL_WITHIN: Duration = Duration::from_secs(20);

/// Words only the tickets hold.
const BODY_WORDS: &str = "Grandmother Ottilie's rosewood laptop";
const SUBJECT_WORDS: &str = "Quillfeather lodge booking";

/// Secrets of the sinks (given through environment variables).
const ZENDESK_TOKEN: &str = "zd-api-token-3f9a77c1";
const WEBHOOK_TOKEN: &str = "webhook-bearer-8e21b4d0";
const WEBHOOK_SIGNING: &str = "webhook-signing-55c0ffee";

/// A ticket that matches a symptom (so a note is written) and carries the marked words.
fn ticket(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": format!("{}", 9100 + i),
        "subject": format!("{SUBJECT_WORDS} {i}"),
        "body": format!(
            "Hello,\nmy security key fell off the desk and now the PIN is blocked on \
             {BODY_WORDS}. Could you reset it?\nThanks"
        ),
    }))
    .unwrap()
}

/// A receiver for the webhook sink: counts requests carrying the bearer token.
#[derive(Default)]
struct Hook {
    authorised: AtomicUsize,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    headers: axum::http::HeaderMap,
) -> axum::http::StatusCode {
    let bearer = format!("Bearer {WEBHOOK_TOKEN}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    assert!(headers.contains_key("x-triage-signature-256"), "signed");
    h.authorised.fetch_add(1, Ordering::AcqRel);
    axum::http::StatusCode::NO_CONTENT
}

#[cfg(feature = "test-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_sasl_ssl_decides_tickets_and_shows_no_secret_and_no_ticket_text() {
    let _serial = serial().await;
    let kafka = SecureKafka::from_env();
    let password = kafka.password();
    const N: usize = 12;

    let zendesk = Server::start(
        Vendor::Zendesk,
        &format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("bot@example.com/token:{ZENDESK_TOKEN}"))
        ),
    )
    .await;
    let receiver = Arc::new(Hook::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(receiver.clone());
    let hook_port = serve_on_loopback(app).await.port();

    let s = Setup::new("secure-run", 2, &[]).await;
    let text = format!(
        "{}[sink.zendesk]\nbase_url = \"{}\"\nemail = \"bot@example.com\"\napi_token_env = \"T_ZENDESK_TOKEN\"\n\
         [sink.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nbearer_token_env = \"T_WEBHOOK_TOKEN\"\n\
         signing_secret_env = \"T_WEBHOOK_SIGNING\"\n[server]\nlisten = \"127.0.0.1:0\"\n",
        kafka.kafka_section(&s, &kafka.ca, "T_KAFKA_PASSWORD"),
        zendesk.base(),
    );
    let cfg = write_config(s.dir.path(), "run.toml", &text);
    let env = [
        ("T_KAFKA_PASSWORD", password.as_str()),
        ("T_ZENDESK_TOKEN", ZENDESK_TOKEN),
        ("T_WEBHOOK_TOKEN", WEBHOOK_TOKEN),
        ("T_WEBHOOK_SIGNING", WEBHOOK_SIGNING),
    ];

    let decisions = Collector::start(&s.decisions);
    let mut w = Triage::start("run", &cfg, "run", &env);
    w.wait_err("partitions assigned", MINUTE);
    produce(
        &s.input,
        (0..N)
            .map(|i| (Some(format!("{}", 9100 + i).into_bytes()), Some(ticket(i))))
            .collect(),
    )
    .await;
    decisions.wait_for("every ticket decided", 2 * MINUTE, |c| c.len() >= N);
    let deadline = Instant::now() + MINUTE;
    while receiver.authorised.load(Ordering::Acquire) < N || zendesk.writes().len() < N {
        assert!(
            Instant::now() < deadline,
            "webhook took {}, zendesk {} writes\n{}",
            receiver.authorised.load(Ordering::Acquire),
            zendesk.writes().len(),
            w.err_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pin = decisions
        .snapshot()
        .iter()
        .filter(|g| {
            let v: serde_json::Value =
                serde_json::from_slice(g.payload.as_deref().unwrap()).unwrap();
            v["symptoms"].to_string().contains("pin-locked")
        })
        .count();
    assert_eq!(pin, N, "every ticket decided as pin-locked");

    let addr = server_addr(&w.err_text()).expect("metrics address logged");
    let (status, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    w.signal(libc::SIGTERM);
    let status = w.wait(MINUTE).expect("triage run stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", w.err_text());

    // The run reached the SASL_SSL listener (not the plaintext one).
    let output = w.output();
    assert!(output.contains(&kafka.bootstrap), "{output}");

    // The same settings, loaded here: their Debug shows no secret either.
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let settings = triage::config::Settings::load(&cfg).unwrap();
    let debug = format!("{settings:?} {:#?}", settings.kafka);
    assert!(debug.contains("sasl.password"), "the key is shown: {debug}");

    let needles = [
        ("SASL password", password.as_str()),
        ("Zendesk API token", ZENDESK_TOKEN),
        ("webhook bearer token", WEBHOOK_TOKEN),
        ("webhook signing secret", WEBHOOK_SIGNING),
        ("ticket body", BODY_WORDS),
        ("ticket body word", "Ottilie"),
        ("ticket subject", SUBJECT_WORDS),
        ("ticket subject word", "Quillfeather"),
    ];
    assert_holds_none("the output of triage run", &output, &needles);
    assert_holds_none("/metrics", &metrics, &needles);
    assert_holds_none("Debug of Settings", &debug, &needles[..4]);
}

#[cfg(feature = "test-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_sasl_ssl_takes_webhooks_and_shows_no_secret_and_no_ticket_text() {
    let _serial = serial().await;
    let kafka = SecureKafka::from_env();
    let password = kafka.password();

    let s = Setup::new("secure-ingest", 1, &[]).await;
    let text = format!(
        "{}{}",
        kafka.kafka_section(&s, &kafka.ca, "T_KAFKA_PASSWORD"),
        ingest_section("")
    );
    let cfg = write_config(s.dir.path(), "ingest.toml", &text);
    let env = [
        ("T_KAFKA_PASSWORD", password.as_str()),
        ("T_ZENDESK_SECRET", ingest::ZENDESK_SECRET),
        ("T_JIRA_SECRET", ingest::JIRA_SECRET),
        ("T_GENERIC_SECRET", ingest::GENERIC_SECRET),
        ("T_SERVICENOW_TOKEN", ingest::SERVICENOW_TOKEN),
        ("T_FRESHDESK_PASSWORD", ingest::FRESHDESK_PASSWORD),
    ];
    let received = Collector::start(&s.input);
    let mut server = Triage::start("ingest", &cfg, "ingest", &env);
    let log = server.wait_err("listening", Duration::from_secs(30));
    let base = format!("http://{}", addr_after(&log, "listening").expect("address"));

    let client = reqwest::Client::new();
    let now = ingest::now_secs();
    let hooks = [
        ingest::generic("G-1", SUBJECT_WORDS, BODY_WORDS, now),
        ingest::zendesk("9201", SUBJECT_WORDS, BODY_WORDS, now),
        ingest::jira("SEC-1", SUBJECT_WORDS, BODY_WORDS),
        ingest::servicenow("a1b2c3", SUBJECT_WORDS, BODY_WORDS),
        ingest::freshdesk(9202, SUBJECT_WORDS, BODY_WORDS),
    ];
    for h in &hooks {
        let a = h.send(&client, &base).await;
        assert!(
            (200..300).contains(&a.status),
            "{} answered {a:?}\n{}",
            h.path,
            server.err_text()
        );
    }
    received.wait_for("every webhook produced", MINUTE, |c| c.len() >= hooks.len());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.signal(libc::SIGTERM);
    let status = server.wait(MINUTE).expect("triage ingest stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", server.err_text());

    let needles = [
        ("SASL password", password.as_str()),
        ("Zendesk signing secret", ingest::ZENDESK_SECRET),
        ("Jira secret", ingest::JIRA_SECRET),
        ("generic signing secret", ingest::GENERIC_SECRET),
        ("ServiceNow token", ingest::SERVICENOW_TOKEN),
        ("Freshdesk password", ingest::FRESHDESK_PASSWORD),
        ("ticket body", BODY_WORDS),
        ("ticket body word", "Ottilie"),
        ("ticket subject", SUBJECT_WORDS),
        ("ticket subject word", "Quillfeather"),
    ];
    assert_holds_none("the output of triage ingest", &server.output(), &needles);
    assert_holds_none("/metrics of triage ingest", &metrics, &needles);
}

/// Start `triage SUBCOMMAND` expecting a refusal; returns its output.
fn refused(subcommand: &str, cfg: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut p = Triage::start(subcommand, cfg, subcommand, env);
    let status = p.wait(REFUSAL_WITHIN).unwrap_or_else(|| {
        panic!(
            "triage {subcommand} still runs after {REFUSAL_WITHIN:?} (retrying for ever?):\n{}",
            p.err_text()
        )
    });
    assert!(!status.success(), "triage {subcommand} must fail: {status}");
    p.output()
}

/// Start `triage run` and `triage ingest` against the TLS listener with `ca` and `password`:
/// each must stop at start-up, saying every one of `needed`, and never print `secret`.
fn both_refuse(
    kafka: &SecureKafka,
    s: &Setup,
    ca: &std::path::Path,
    password: &str,
    needed: &[&str],
    secret: (&str, &str),
) {
    let section = kafka.kafka_section(s, ca, "T_KAFKA_PASSWORD");
    let run = write_config(s.dir.path(), "run.toml", &section);
    let both = write_config(
        s.dir.path(),
        "ingest.toml",
        &format!("{section}{}", ingest_section("")),
    );
    let env = [
        ("T_KAFKA_PASSWORD", password),
        ("T_ZENDESK_SECRET", ingest::ZENDESK_SECRET),
        ("T_JIRA_SECRET", ingest::JIRA_SECRET),
        ("T_GENERIC_SECRET", ingest::GENERIC_SECRET),
        ("T_SERVICENOW_TOKEN", ingest::SERVICENOW_TOKEN),
        ("T_FRESHDESK_PASSWORD", ingest::FRESHDESK_PASSWORD),
    ];
    for (subcommand, cfg) in [("run", &run), ("ingest", &both)] {
        let out = refused(subcommand, cfg, &env);
        for needed in needed {
            assert!(
                out.contains(needed),
                "triage {subcommand}: no {needed:?} in:\n{out}"
            );
        }
        assert_holds_none(
            &format!("the output of triage {subcommand}"),
            &out,
            &[secret],
        );
    }
}

#[cfg(feature = "test-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_run_and_ingest_at_start_with_what_to_check() {
    let _serial = serial().await;
    let kafka = SecureKafka::from_env();
    const WRONG: &str = "not-the-password-61d2";
    let s = Setup::new("secure-wrong-pw", 1, &[]).await;
    let user = format!("user \"{}\"", kafka.user);
    let needed = [
        kafka.bootstrap.as_str(),
        "refused to authenticate",
        &user,
        &kafka.mechanism,
        "sasl.password",
    ];
    both_refuse(
        &kafka,
        &s,
        &kafka.ca,
        WRONG,
        &needed,
        ("wrong password", WRONG),
    );
}

#[cfg(feature = "test-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_did_not_sign_the_broker_stops_run_and_ingest_with_what_to_check() {
    let _serial = serial().await;
    let kafka = SecureKafka::from_env();
    let password = kafka.password();
    let s = Setup::new("secure-bad-ca", 1, &[]).await;
    let ca = unrelated_ca(s.dir.path());
    let needed = [
        kafka.bootstrap.as_str(),
        "TLS with Kafka",
        "certificate verify failed",
        "ssl.ca.location",
    ];
    both_refuse(
        &kafka,
        &s,
        &ca,
        &password,
        &needed,
        ("SASL password", &password),
    );
}

// ----- notes: quoted ticket text cannot add markup, whichever help desk renders it ---------

/// A ticket whose matched evidence carries wiki and bracket markup (`security [key`,
/// `PIN is *blocked`) next to HTML, wiki and template markup that is not evidence.
const HOSTILE_BODY: &str = "My security [key|http://evil.example] PIN is *blocked* {code}x{code} \
     [code]<b>x</b>[/code] <script>alert(1)</script> {{ticket.requester.email}} !http://evil.example/i.png!";

/// Dead letters are a failure here.
struct NoDeadLetters;

#[async_trait::async_trait]
impl triage::sink::dead_letter::DeadLetterSink for NoDeadLetters {
    async fn send(
        &self,
        l: triage::sink::dead_letter::DeadLetter<'_>,
    ) -> Result<(), triage::sink::SinkError> {
        panic!("dead letter: {} {}", l.class, l.message);
    }
}

/// The note the sink for `vendor` posted for one hostile ticket, as the server received it.
async fn posted_note(vendor: Vendor) -> String {
    use triage::ticket::{Preset, TicketShape};
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (auth, id, section) = match vendor {
        Vendor::Zendesk => (
            format!("Basic {}", b64("agent@example.com/token:zd-secret")),
            "101",
            "[sink.zendesk]\nemail = \"agent@example.com\"\napi_token_file = \"SECRET\"\n",
        ),
        Vendor::Jira => (
            format!("Basic {}", b64("agent@example.com:zd-secret")),
            "HD-7",
            "[sink.jira]\nemail = \"agent@example.com\"\napi_token_file = \"SECRET\"\n",
        ),
        Vendor::ServiceNow => (
            format!("Basic {}", b64("triage:zd-secret")),
            "0123456789abcdef0123456789abcdef",
            "[sink.servicenow]\nusername = \"triage\"\npassword_file = \"SECRET\"\nsymptom_field = \"u_triage_symptom\"\n",
        ),
        Vendor::Freshdesk => (
            format!("Basic {}", b64("zd-secret:X")),
            "55",
            "[sink.freshdesk]\napi_key_file = \"SECRET\"\n",
        ),
    };
    let server = Server::start(vendor, &auth).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "zd-secret\n").unwrap();
    let text = format!(
        "{}base_url = \"{}\"\ntimeout_ms = 2000\n",
        section.replace("SECRET", &secret.display().to_string()),
        server.base()
    );
    let settings =
        triage::config::Settings::parse(&text, std::path::Path::new("notes.toml")).unwrap();
    let classifier =
        triage::classify::Classifier::new(triage::catalog::Catalog::builtin()).unwrap();
    let sinks = triage::worker::ticketing_sinks(&settings, &classifier).unwrap();
    let p = triage::pipeline::Pipeline::new(
        classifier,
        TicketShape::preset(Preset::Plain, 1 << 20),
        sinks,
        Arc::new(NoDeadLetters),
        settings.worker.clone(),
    );
    let line = serde_json::json!({"id": id, "subject": "Security key", "body": HOSTILE_BODY});
    let mut src = triage::source::jsonl::JsonlSource::from_reader(
        "t.jsonl",
        std::io::Cursor::new(format!("{line}\n").into_bytes()),
    );
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = tokio::time::timeout(MINUTE, p.run(&mut src, rx))
        .await
        .expect("pipeline finished")
        .unwrap();
    assert_eq!(summary.decided, 1, "{summary:?}");
    server.assert_clean();
    let notes = server.ticket(id).notes;
    assert_eq!(notes.len(), 1, "one note on {vendor:?}");
    notes[0].text.clone()
}

#[tokio::test]
async fn notes_posted_to_every_help_desk_quote_hostile_ticket_text_inertly() {
    for vendor in [Vendor::Zendesk, Vendor::Freshdesk] {
        let html = posted_note(vendor).await;
        let tags: Vec<&str> = html.match_indices('<').map(|(i, _)| &html[i..]).collect();
        assert!(
            tags.iter()
                .all(|t| ["<p>", "</p>", "<br>"].iter().any(|ok| t.starts_with(ok))),
            "{vendor:?}: markup beyond <p> and <br>: {html}"
        );
        assert!(
            html.contains("security [key") && html.contains("PIN is *blocked"),
            "{vendor:?}: evidence quoted: {html}"
        );
        assert!(!html.contains("{{"), "{vendor:?}: {html}");
    }

    let wiki = posted_note(Vendor::Jira).await;
    assert!(
        wiki.contains("security \\[key") && wiki.contains("PIN is \\*blocked"),
        "Jira: wiki markup in evidence escaped: {wiki}"
    );
    for raw in ["{code}", "[code]", "<script", "{{", "!http", "|http"] {
        assert!(!wiki.contains(raw), "Jira: {raw:?} in {wiki}");
    }

    let journal = posted_note(Vendor::ServiceNow).await;
    assert!(
        journal.contains("security (key") && !journal.contains('['),
        "ServiceNow: no [code] can open from quoted text: {journal}"
    );
    assert!(!journal.contains("<script"), "{journal}");
}
