//! Local HTTP servers that hold the ticketing systems' documented contracts (Zendesk, Jira
//! Service Management, ServiceNow Table API, Freshdesk), with faults injected on request.
//!
//! Each server keeps its tickets in memory (tags, an update stamp, notes, a ServiceNow field),
//! answers only the requests the vendor documents (anything else is a 404 and is recorded),
//! checks the `Authorization` header on every request, and records every request it saw.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Which vendor's contract a server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Zendesk,
    Jira,
    ServiceNow,
    Freshdesk,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub auth: Option<String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
}

impl Seen {
    /// `METHOD /path?query`.
    pub fn line(&self) -> String {
        match &self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// A note or comment on a ticket.
#[derive(Debug, Clone)]
pub struct NoteRec {
    /// As sent (HTML, wiki or plain).
    pub text: String,
    pub public: bool,
}

/// A ticket held by the server.
#[derive(Debug, Clone, Default)]
pub struct Tk {
    pub tags: Vec<String>,
    /// Bumped on every change (Zendesk `updated_at`).
    pub stamp: u64,
    pub notes: Vec<NoteRec>,
    /// ServiceNow: the symptom field.
    pub field: String,
    /// ServiceNow: the record's number (`INC0010001`), found by `sysparm_query=number=...`.
    pub number: String,
}

/// What a fault does to a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, headers and body instead.
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Answer nothing for this long (the client times out first), then a 503.
    Hang(Duration),
    /// Wait this long, then answer as the contract says.
    Delay(Duration),
}

impl Fault {
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            headers: vec![],
            body: format!("{{\"error\": \"injected {code}\"}}"),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Fault {
        if let Fault::Status { headers, .. } = &mut self {
            headers.push((k.to_string(), v.to_string()));
        }
        self
    }
    pub fn with_body(mut self, b: &str) -> Fault {
        if let Fault::Status { body, .. } = &mut self {
            *body = b.to_string();
        }
        self
    }
}

/// A fault for the next `remaining` requests that match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path_contains: Option<String>,
    pub remaining: usize,
    pub fault: Fault,
}

/// Faults injected by rate: every `n`th request gets `fault` (for the end-to-end test).
#[derive(Debug, Clone)]
pub struct Every {
    pub n: usize,
    pub fault: Fault,
}

pub struct St {
    pub vendor: Vendor,
    pub auth: String,
    pub log: Mutex<Vec<Seen>>,
    pub rules: Mutex<Vec<Rule>>,
    pub every: Mutex<Vec<Every>>,
    pub counter: Mutex<usize>,
    pub tickets: Mutex<HashMap<String, Tk>>,
    /// Requests the contract does not know (should stay empty).
    pub unknown: Mutex<Vec<String>>,
    /// Contract violations seen (e.g. `ticket.tags` sent to Zendesk).
    pub violations: Mutex<Vec<String>>,
    /// Zendesk reads that found triage's work already done: a ticket already carrying the
    /// marker tag, or a comment list already holding a note. Each is a repeat delivery that
    /// the sink suppressed instead of writing a second note.
    pub repeats_seen: AtomicUsize,
    /// Keep every request in `log` (turned off for runs of many thousand requests).
    pub keep_log: AtomicBool,
    /// When each request arrived, by method and path only (light enough for runs of many
    /// thousand requests; the paced latency run reads it). Off unless turned on.
    pub arrivals: Mutex<Vec<Arrival>>,
    pub keep_arrivals: AtomicBool,
}

/// When a request arrived (its headers and body read), and what it was.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub method: Method,
    pub path: String,
}

/// The marker tag triage writes after the note (its default `worker.marker_tag`).
pub const MARKER: &str = "triage-processed";

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub st: Arc<St>,
}

impl Server {
    /// Start a server for `vendor` expecting `Authorization: {auth}`.
    pub async fn start(vendor: Vendor, auth: &str) -> Server {
        let st = Arc::new(St {
            vendor,
            auth: auth.to_string(),
            log: Mutex::default(),
            rules: Mutex::default(),
            every: Mutex::default(),
            counter: Mutex::new(0),
            tickets: Mutex::default(),
            unknown: Mutex::default(),
            violations: Mutex::default(),
            repeats_seen: AtomicUsize::new(0),
            keep_log: AtomicBool::new(true),
            arrivals: Mutex::default(),
            keep_arrivals: AtomicBool::new(false),
        });
        let app = axum::Router::new().fallback(handle).with_state(st.clone());
        let addr = super::serve_on_loopback(app).await;
        Server { addr, st }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Inject `fault` into the next `n` requests (optionally only `method` on paths containing
    /// `path`).
    pub fn fail(&self, method: Option<&'static str>, path: Option<&str>, n: usize, fault: Fault) {
        self.st.rules.lock().unwrap().push(Rule {
            method,
            path_contains: path.map(str::to_string),
            remaining: n,
            fault,
        });
    }

    pub fn every(&self, n: usize, fault: Fault) {
        self.st.every.lock().unwrap().push(Every { n, fault });
    }

    pub fn seed(&self, id: &str, t: Tk) {
        self.st.tickets.lock().unwrap().insert(id.to_string(), t);
    }

    pub fn ticket(&self, id: &str) -> Tk {
        self.st
            .tickets
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn log(&self) -> Vec<Seen> {
        self.st.log.lock().unwrap().clone()
    }

    pub fn clear_log(&self) {
        self.st.log.lock().unwrap().clear();
    }

    /// Writes the server accepted (2xx PUT/POST/PATCH).
    pub fn writes(&self) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.is_write() && (200..300).contains(&s.status))
            .collect()
    }

    /// Panics if the server saw a request outside the contract, a contract violation, or a
    /// request without the right credentials.
    pub fn assert_clean(&self) {
        let unknown = self.st.unknown.lock().unwrap().clone();
        assert!(
            unknown.is_empty(),
            "requests outside the contract: {unknown:?}"
        );
        let v = self.st.violations.lock().unwrap().clone();
        assert!(v.is_empty(), "contract violations: {v:?}");
        for s in self.log() {
            assert_eq!(
                s.auth.as_deref(),
                Some(self.st.auth.as_str()),
                "{}",
                s.line()
            );
            if s.body.is_some() {
                assert_eq!(
                    s.content_type.as_deref(),
                    Some("application/json"),
                    "{}",
                    s.line()
                );
            }
        }
    }
}

/// Zendesk's `updated_at` for a stamp number.
pub fn zendesk_stamp(n: u64) -> String {
    format!("2024-05-01T10:{:02}:{:02}Z", (n / 60) % 60, n % 60)
}

/// Tags out, text only (a stand-in for the vendors' plain-text renderings).
pub fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    url_pairs(q.unwrap_or(""))
}

fn url_pairs(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn reply(code: u16, body: Value) -> Response {
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

async fn handle(
    State(st): State<Arc<St>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if st.keep_arrivals.load(Ordering::Acquire) {
        st.arrivals.lock().unwrap().push(Arrival {
            at: Instant::now(),
            method: method.clone(),
            path: uri.path().to_string(),
        });
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&body).unwrap_or(Value::String("<not json>".into())))
    };
    if !st.keep_log.load(Ordering::Acquire) {
        return respond(&st, &method, &uri, h("authorization"), parsed).await;
    }
    let idx = {
        let mut log = st.log.lock().unwrap();
        log.push(Seen {
            at: Instant::now(),
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            auth: h("authorization"),
            content_type: h("content-type"),
            body: parsed.clone(),
            status: 0,
        });
        log.len() - 1
    };
    let resp = respond(&st, &method, &uri, h("authorization"), parsed).await;
    st.log.lock().unwrap()[idx].status = resp.status().as_u16();
    resp
}

async fn respond(
    st: &St,
    method: &Method,
    uri: &Uri,
    auth: Option<String>,
    body: Option<Value>,
) -> Response {
    if auth.as_deref() != Some(st.auth.as_str()) {
        return reply(401, json!({"error": "Couldn't authenticate you"}));
    }
    // Injected faults first.
    let fault = {
        let mut rules = st.rules.lock().unwrap();
        let hit = rules.iter_mut().find(|r| {
            r.remaining > 0
                && r.method.is_none_or(|m| m == method.as_str())
                && r.path_contains
                    .as_deref()
                    .is_none_or(|p| uri.path().contains(p))
        });
        match hit {
            Some(r) => {
                r.remaining -= 1;
                Some(r.fault.clone())
            }
            None => {
                let mut c = st.counter.lock().unwrap();
                *c += 1;
                let n = *c;
                st.every
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|e| n % e.n == 0)
                    .map(|e| e.fault.clone())
            }
        }
    };
    match fault {
        Some(Fault::Status {
            code,
            headers,
            body,
        }) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), body).into_response();
            for (k, v) in headers {
                r.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            return r;
        }
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            return reply(503, json!({"error": "hung"}));
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let path = uri.path().to_string();
    let q = query_map(uri.query());
    let r = match st.vendor {
        Vendor::Zendesk => zendesk(st, method, &path, &q, body),
        Vendor::Jira => jira(st, method, &path, &q, body),
        Vendor::ServiceNow => servicenow(st, method, &path, &q, body),
        Vendor::Freshdesk => freshdesk(st, method, &path, &q, body),
    };
    match r {
        Some(r) => r,
        None => {
            st.unknown.lock().unwrap().push(format!("{method} {}", uri));
            reply(404, json!({"error": "RecordNotFound"}))
        }
    }
}

fn violation(st: &St, what: String) -> Response {
    st.violations.lock().unwrap().push(what.clone());
    reply(400, json!({"error": "RecordInvalid", "description": what}))
}

fn zendesk(
    st: &St,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Option<Response> {
    let rest = path.strip_prefix("/api/v2/tickets/")?;
    let mut tickets = st.tickets.lock().unwrap();
    if let Some(id) = rest.strip_suffix(".json").filter(|i| !i.contains('/')) {
        let t = tickets.entry(id.to_string()).or_default();
        let show = |t: &Tk| json!({"id": id.parse::<u64>().unwrap(), "tags": t.tags, "updated_at": zendesk_stamp(t.stamp)});
        return Some(match *method {
            Method::GET => {
                if t.tags.iter().any(|x| x == MARKER) {
                    st.repeats_seen.fetch_add(1, Ordering::AcqRel);
                }
                reply(200, json!({ "ticket": show(t) }))
            }
            Method::PUT => {
                let b = body.unwrap_or(Value::Null);
                let tk = &b["ticket"];
                if tk.get("tags").is_some() {
                    return Some(violation(
                        st,
                        "ticket.tags sent: it replaces every tag".into(),
                    ));
                }
                if tk["safe_update"] == json!(true)
                    && tk["updated_stamp"] != json!(zendesk_stamp(t.stamp))
                {
                    return Some(reply(
                        409,
                        json!({"error": "UpdateConflict", "description": "Ticket has been updated since you last viewed it"}),
                    ));
                }
                let c = &tk["comment"];
                let text = c["html_body"]
                    .as_str()
                    .or(c["body"].as_str())
                    .unwrap_or("")
                    .to_string();
                if !text.is_empty() {
                    // `public` defaults to true in Zendesk.
                    let public = c["public"].as_bool().unwrap_or(true);
                    t.notes.push(NoteRec { text, public });
                }
                t.stamp += 1;
                reply(200, json!({"ticket": show(t), "audit": {"events": []}}))
            }
            _ => return None,
        });
    }
    let (id, tail) = rest.split_once('/')?;
    let t = tickets.entry(id.to_string()).or_default();
    match (method.clone(), tail) {
        (Method::GET, "comments.json") => {
            if !t.notes.is_empty() {
                st.repeats_seen.fetch_add(1, Ordering::AcqRel);
            }
            let mut list: Vec<Value> = t
                .notes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let plain = strip_html(&n.text);
                    json!({"id": i + 1, "body": plain, "html_body": n.text, "plain_body": plain, "public": n.public})
                })
                .collect();
            if q.get("sort_order").map(String::as_str) == Some("desc") {
                list.reverse();
            }
            list.truncate(100);
            Some(reply(
                200,
                json!({"comments": list, "next_page": null, "count": t.notes.len()}),
            ))
        }
        (Method::PUT, "tags.json") => {
            let b = body.unwrap_or(Value::Null);
            let safe = b["safe_update"] == json!("true") || b["safe_update"] == json!(true);
            if safe && b["updated_stamp"] != json!(zendesk_stamp(t.stamp)) {
                return Some(reply(409, json!({"error": "UpdateConflict"})));
            }
            for tag in b["tags"].as_array().cloned().unwrap_or_default() {
                let tag = tag.as_str().unwrap().to_string();
                if !t.tags.contains(&tag) {
                    t.tags.push(tag);
                }
            }
            t.stamp += 1;
            Some(reply(200, json!({ "tags": t.tags })))
        }
        _ => None,
    }
}

fn jira(
    st: &St,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Option<Response> {
    let mut tickets = st.tickets.lock().unwrap();
    if let Some(key) = path.strip_prefix("/rest/api/3/issue/") {
        if key.contains('/') {
            return None;
        }
        let t = tickets.entry(key.to_string()).or_default();
        return match *method {
            Method::GET => Some(reply(
                200,
                json!({"key": key, "fields": {"labels": t.tags}}),
            )),
            Method::PUT => {
                let b = body.unwrap_or(Value::Null);
                if b.get("fields").is_some() {
                    return Some(violation(st, "fields sent: it replaces labels".into()));
                }
                for op in b["update"]["labels"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let l = op["add"].as_str().unwrap().to_string();
                    if !t.tags.contains(&l) {
                        t.tags.push(l);
                    }
                }
                t.stamp += 1;
                Some(StatusCode::NO_CONTENT.into_response())
            }
            _ => None,
        };
    }
    let key = path
        .strip_prefix("/rest/servicedeskapi/request/")?
        .strip_suffix("/comment")?;
    let t = tickets.entry(key.to_string()).or_default();
    match *method {
        Method::GET => {
            let start: usize = q.get("start").map_or(0, |s| s.parse().unwrap());
            let limit: usize = q.get("limit").map_or(50, |s| s.parse().unwrap());
            let page: Vec<Value> = t
                .notes
                .iter()
                .enumerate()
                .skip(start)
                .take(limit)
                .map(
                    |(i, n)| json!({"id": (i + 1).to_string(), "body": n.text, "public": n.public}),
                )
                .collect();
            let last = start + page.len() >= t.notes.len();
            Some(reply(
                200,
                json!({"size": page.len(), "start": start, "limit": limit, "isLastPage": last, "values": page}),
            ))
        }
        Method::POST => {
            let b = body.unwrap_or(Value::Null);
            let text = b["body"].as_str().unwrap_or("").to_string();
            // The servicedesk API's `public` defaults to true.
            let public = b["public"].as_bool().unwrap_or(true);
            t.notes.push(NoteRec {
                text: text.clone(),
                public,
            });
            t.stamp += 1;
            Some(reply(
                201,
                json!({"id": t.notes.len().to_string(), "body": text, "public": public}),
            ))
        }
        _ => None,
    }
}

fn servicenow(
    st: &St,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Option<Response> {
    let mut tickets = st.tickets.lock().unwrap();
    if path == "/api/now/table/incident" && *method == Method::GET {
        // A query by number: a list of at most `sysparm_limit` records.
        let number = q.get("sysparm_query")?.strip_prefix("number=")?;
        let fields = q.get("sysparm_fields").cloned().unwrap_or_default();
        let found: Vec<Value> = tickets
            .iter()
            .filter(|(_, t)| !t.number.is_empty() && t.number == number)
            .map(|(sys_id, t)| {
                let mut rec = serde_json::Map::new();
                for f in fields.split(',') {
                    match f {
                        "sys_id" => rec.insert(f.into(), json!(sys_id)),
                        "u_triage_symptom" => rec.insert(f.into(), json!(t.field)),
                        _ => None,
                    };
                }
                Value::Object(rec)
            })
            .collect();
        return Some(reply(200, json!({ "result": found })));
    }
    let sys_id = path.strip_prefix("/api/now/table/incident/")?;
    let t = tickets.entry(sys_id.to_string()).or_default();
    match *method {
        Method::GET => {
            let fields = q.get("sysparm_fields").cloned().unwrap_or_default();
            let mut rec = serde_json::Map::new();
            for f in fields.split(',') {
                if f == "u_triage_symptom" {
                    rec.insert(f.into(), json!(t.field));
                } else if f == "sys_id" {
                    rec.insert(f.into(), json!(sys_id));
                }
            }
            Some(reply(200, json!({ "result": rec })))
        }
        Method::PATCH => {
            let b = body.unwrap_or(Value::Null);
            for (k, v) in b.as_object().cloned().unwrap_or_default() {
                let v = v.as_str().unwrap_or("").to_string();
                match k.as_str() {
                    // Journal fields append.
                    "work_notes" => t.notes.push(NoteRec {
                        text: v,
                        public: false,
                    }),
                    "comments" => t.notes.push(NoteRec {
                        text: v,
                        public: true,
                    }),
                    "u_triage_symptom" => t.field = v,
                    other => {
                        return Some(violation(st, format!("unknown field {other}")));
                    }
                }
            }
            t.stamp += 1;
            Some(reply(
                200,
                json!({"result": {"sys_id": sys_id, "u_triage_symptom": t.field}}),
            ))
        }
        _ => None,
    }
}

fn freshdesk(
    st: &St,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: Option<Value>,
) -> Option<Response> {
    let rest = path.strip_prefix("/api/v2/tickets/")?;
    let mut tickets = st.tickets.lock().unwrap();
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let t = tickets.entry(id.to_string()).or_default();
    let nid: u64 = id.parse().ok()?;
    match (method.clone(), tail) {
        (Method::GET, "") => Some(reply(
            200,
            json!({"id": nid, "tags": t.tags, "subject": "x"}),
        )),
        (Method::PUT, "") => {
            let b = body.unwrap_or(Value::Null);
            // Freshdesk replaces the tags with the list sent.
            t.tags = b["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            t.stamp += 1;
            Some(reply(200, json!({"id": nid, "tags": t.tags})))
        }
        (Method::GET, "conversations") => {
            let page: usize = q.get("page").map_or(1, |s| s.parse().unwrap());
            let per: usize = q.get("per_page").map_or(30, |s| s.parse().unwrap());
            let list: Vec<Value> = t
                .notes
                .iter()
                .skip((page - 1) * per)
                .take(per)
                .map(|n| json!({"body": n.text, "body_text": strip_html(&n.text), "private": !n.public}))
                .collect();
            Some(reply(200, Value::Array(list)))
        }
        (Method::POST, "notes") => {
            let b = body.unwrap_or(Value::Null);
            let text = b["body"].as_str().unwrap_or("").to_string();
            // Freshdesk notes are private unless told otherwise... but the sink must say so.
            let private = b["private"].as_bool().unwrap_or(false);
            t.notes.push(NoteRec {
                text: text.clone(),
                public: !private,
            });
            Some(reply(
                201,
                json!({"id": t.notes.len(), "body": text, "private": private}),
            ))
        }
        (Method::POST, "reply") => {
            let b = body.unwrap_or(Value::Null);
            let text = b["body"].as_str().unwrap_or("").to_string();
            t.notes.push(NoteRec { text, public: true });
            Some(reply(201, json!({"id": t.notes.len()})))
        }
        _ => None,
    }
}
