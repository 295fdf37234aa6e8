//! Helpers for the `triage ingest` tests: the server as a child process, and requests signed
//! the way each help desk signs them.

use super::{signal_child, wait_child};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use triage::ingest::verify::{hmac_sha256, to_hex};

/// Secrets the test configurations name (passed to the server through its environment).
pub const ZENDESK_SECRET: &str = "zendesk-signing-secret-4711";
pub const JIRA_SECRET: &str = "jira-webhook-secret-0815";
pub const GENERIC_SECRET: &str = "generic-hmac-secret-1234";
pub const SERVICENOW_TOKEN: &str = "servicenow-shared-token-42";
pub const FRESHDESK_PASSWORD: &str = "freshdesk-basic-password-7";

/// An `[ingest]` section with every source; `extra` goes into `[ingest]` itself.
pub fn ingest_section(extra: &str) -> String {
    format!(
        "[ingest]\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         [ingest.zendesk]\nsecret_env = \"T_ZENDESK_SECRET\"\n\
         [ingest.jira]\nsecret_env = \"T_JIRA_SECRET\"\n\
         [ingest.servicenow]\ntoken_header = \"X-Triage-Token\"\ntoken_env = \"T_SERVICENOW_TOKEN\"\n\
         [ingest.freshdesk]\nusername = \"freshdesk\"\npassword_env = \"T_FRESHDESK_PASSWORD\"\n\
         [ingest.generic]\nsecret_env = \"T_GENERIC_SECRET\"\n"
    )
}

/// `triage ingest --config FILE` as a child process, its log (stderr) in a file.
pub struct IngestServer {
    pub child: Child,
    pub log: std::path::PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl IngestServer {
    /// Start the server and wait until it logs the address it listens on.
    pub fn start(config: &Path, name: &str, log_level: &str) -> IngestServer {
        let log = config.with_file_name(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_triage"))
            .args(["ingest", "--config"])
            .arg(config)
            .env("TRIAGE_LOG", log_level)
            .env("T_ZENDESK_SECRET", ZENDESK_SECRET)
            .env("T_JIRA_SECRET", JIRA_SECRET)
            .env("T_GENERIC_SECRET", GENERIC_SECRET)
            .env("T_SERVICENOW_TOKEN", SERVICENOW_TOKEN)
            .env("T_FRESHDESK_PASSWORD", FRESHDESK_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start triage ingest");
        let mut s = IngestServer {
            child,
            log,
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = s.log_text();
            if let Some(rest) = text.split("listening addr=").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                s.base = format!("http://{addr}");
                return s;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("triage ingest exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "triage ingest did not listen within 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        signal_child(&self.child, sig);
    }

    /// Wait for the exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// The value of a metric series (e.g. `triage_ingest_requests_total{outcome="produced",source="jira"}`).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One webhook request: route, headers and body, ready to send (and to send again).
#[derive(Clone, Debug)]
pub struct Hook {
    pub path: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub www_authenticate: Option<String>,
    pub json: serde_json::Value,
}

impl Hook {
    pub async fn send(&self, client: &reqwest::Client, base: &str) -> Answer {
        let mut r = client
            .post(format!("{base}{}", self.path))
            .header("content-type", "application/json")
            .body(self.body.clone());
        for (k, v) in &self.headers {
            r = r.header(k, v);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let retry_after = header("retry-after");
        let www_authenticate = header("www-authenticate");
        let bytes = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            retry_after,
            www_authenticate,
            json,
        }
    }

    /// The same request with one header replaced.
    pub fn with_header(mut self, name: &str, value: &str) -> Hook {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3339 in UTC, as Zendesk writes its signature timestamps.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A Zendesk ticket event, signed at `at` (Unix seconds).
pub fn zendesk(id: &str, subject: &str, description: &str, at: i64) -> Hook {
    let body = serde_json::to_vec(&serde_json::json!({
        "type": "zen:event-type:ticket.created",
        "account_id": 123456,
        "id": format!("evt-{id}-{at}"),
        "time": rfc3339(at),
        "zendesk_event_version": "2022-11-06",
        "subject": format!("zen:ticket:{id}"),
        "detail": {
            "id": id,
            "subject": subject,
            "description": description,
            "tags": ["vip", "hardware"],
            "actor_id": "900",
            "updated_at": rfc3339(at),
            "status": "NEW"
        },
        "event": {}
    }))
    .unwrap();
    zendesk_signed(body, at)
}

/// Sign a body the way Zendesk does, with the timestamp `at`.
pub fn zendesk_signed(body: Vec<u8>, at: i64) -> Hook {
    let ts = rfc3339(at);
    let sig = b64(&hmac_sha256(
        ZENDESK_SECRET.as_bytes(),
        &[ts.as_bytes(), &body],
    ));
    Hook {
        path: "/webhooks/zendesk",
        headers: vec![
            ("X-Zendesk-Webhook-Signature".into(), sig),
            ("X-Zendesk-Webhook-Signature-Timestamp".into(), ts),
            (
                "X-Zendesk-Webhook-Invocation-Id".into(),
                format!("inv-{at}"),
            ),
        ],
        body,
    }
}

/// A Jira issue event, signed (the signature covers the body only).
pub fn jira(key: &str, summary: &str, text: &str) -> Hook {
    let body = serde_json::to_vec(&serde_json::json!({
        "timestamp": now_secs() * 1000,
        "webhookEvent": "jira:issue_created",
        "issue_event_type_name": "issue_created",
        "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Agent"},
        "issue": {
            "id": "10001",
            "key": key,
            "fields": {
                "summary": summary,
                "description": {
                    "type": "doc",
                    "version": 1,
                    "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}]
                },
                "labels": ["it"],
                "updated": "2026-11-25T10:00:00.000+0000"
            }
        }
    }))
    .unwrap();
    jira_signed(body)
}

pub fn jira_signed(body: Vec<u8>) -> Hook {
    let sig = to_hex(&hmac_sha256(JIRA_SECRET.as_bytes(), &[&body]));
    Hook {
        path: "/webhooks/jira",
        headers: vec![
            ("X-Hub-Signature".into(), format!("sha256={sig}")),
            (
                "X-Atlassian-Webhook-Identifier".into(),
                format!("{}", now_secs()),
            ),
        ],
        body,
    }
}

/// A ServiceNow outbound REST message (the documented content template) with the token.
pub fn servicenow(sys_id: &str, short: &str, description: &str) -> Hook {
    let body = serde_json::to_vec(&serde_json::json!({
        "sys_id": sys_id,
        "number": "INC0010001",
        "short_description": short,
        "description": description,
        "sys_updated_by": "admin",
        "sys_updated_on": "2026-11-25 10:00:00"
    }))
    .unwrap();
    Hook {
        path: "/webhooks/servicenow",
        headers: vec![("X-Triage-Token".into(), SERVICENOW_TOKEN.into())],
        body,
    }
}

/// A Freshdesk automation webhook (the documented JSON template) with basic auth.
pub fn freshdesk(id: u64, subject: &str, description: &str) -> Hook {
    freshdesk_as(id, subject, description, "freshdesk", FRESHDESK_PASSWORD)
}

pub fn freshdesk_as(id: u64, subject: &str, description: &str, user: &str, pw: &str) -> Hook {
    let body = serde_json::to_vec(&serde_json::json!({
        "ticket": {"id": id, "subject": subject, "description": description, "tags": "printer, floor-3"}
    }))
    .unwrap();
    Hook {
        path: "/webhooks/freshdesk",
        headers: vec![(
            "Authorization".into(),
            format!("Basic {}", b64(format!("{user}:{pw}").as_bytes())),
        )],
        body,
    }
}

/// A generic JSON POST in the plain shape, signed over `<at>.<body>`.
pub fn generic(id: &str, subject: &str, body_text: &str, at: i64) -> Hook {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": id, "subject": subject, "body": body_text
    }))
    .unwrap();
    generic_signed(body, at)
}

pub fn generic_signed(body: Vec<u8>, at: i64) -> Hook {
    let ts = at.to_string();
    let sig = to_hex(&hmac_sha256(
        GENERIC_SECRET.as_bytes(),
        &[ts.as_bytes(), b".", &body],
    ));
    Hook {
        path: "/webhooks/generic",
        headers: vec![
            ("X-Triage-Signature".into(), format!("sha256={sig}")),
            ("X-Triage-Timestamp".into(), ts),
        ],
        body,
    }
}
