//! The HTTP API behind the workbench page, and the page itself.
//!
//! | route | does |
//! |---|---|
//! | `GET /` , `/app.js`, `/app.css` | the page (compiled in) |
//! | `GET /api/state` | catalogue files (session), problems, diff, symptoms and term sets to browse, what the server allows |
//! | `PUT /api/session` | `{files: [{path, text}]}`: validate an edit; when valid, the session classifies with it |
//! | `POST /api/try` | `{subject, body}` or `{id}` of a labelled ticket: symptoms, spans, cancelled words, tags, notes |
//! | `GET /api/tickets` | the labelled tickets' ids, subjects and labels |
//! | `GET /api/measure` | the session's evaluation beside the saved catalogue's: +/- per symptom, fixes, breaks |
//! | `POST /api/suggest` | `{symptom?}`: phrases from the tickets the session gets wrong |
//! | `POST /api/write` | write the session's files (only with `--write`) |
//!
//! Every request is checked before it is served: the `Host` must be the loopback address the
//! server listens on (unless it listens elsewhere, behind a token), so a web page elsewhere
//! cannot reach it by DNS rebinding; a request that changes something must come from the page
//! itself (`Origin`, when sent, must match) as JSON; and with an access token every `/api/`
//! request must carry it in `X-Workbench-Token`. Responses forbid inline script
//! (Content-Security-Policy), framing and sniffing. Ticket text is never logged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{explain, Bench, File};
use crate::ticket::Ticket;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Header that carries the access token.
pub const TOKEN_HEADER: &str = "x-workbench-token";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct App {
    bench: Arc<Bench>,
    hosts: Arc<Vec<String>>,
    token: Option<Arc<str>>,
}

/// The routes. `local` is the address served (for the `Host` check); `token`, when given, is
/// required on every `/api/` request.
pub fn router(bench: Arc<Bench>, local: SocketAddr, token: Option<String>) -> Router {
    let port = local.port();
    let hosts = if local.ip().is_loopback() {
        vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
            local.to_string(),
        ]
    } else {
        Vec::new()
    };
    let app = App {
        bench,
        hosts: Arc::new(hosts),
        token: token.map(Into::into),
    };
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/state", get(state))
        .route("/api/session", put(session))
        .route("/api/try", post(try_ticket))
        .route("/api/tickets", get(tickets))
        .route("/api/measure", get(measure))
        .route("/api/suggest", post(suggest))
        .route("/api/write", post(write))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn reply(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            b,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid request: {e}"),
        ))
    })
}

/// Host, origin, content type and token checks; security headers on every answer.
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut refused = None;
    if !app.hosts.is_empty() && !app.hosts.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        refused = Some((
            StatusCode::FORBIDDEN,
            "unexpected Host: open the workbench at the address it printed",
        ));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if refused.is_none() && changes {
        if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
                refused = Some((StatusCode::FORBIDDEN, "request from another site refused"));
            }
        }
        let json_body = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if refused.is_none() && !json_body {
            refused = Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
    }
    if refused.is_none() && req.uri().path().starts_with("/api/") {
        if let Some(token) = &app.token {
            let given = h
                .get(TOKEN_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !bool::from(given.ct_eq(token.as_bytes())) {
                refused = Some((StatusCode::UNAUTHORIZED, "access token missing or wrong"));
            }
        }
    }
    let mut resp = match refused {
        Some((status, why)) => error(status, why),
        None => next.run(req).await,
    };
    let hs = resp.headers_mut();
    hs.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    hs.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Symptoms and term sets to browse, from the session's files (term sets as written).
fn browse(bench: &Bench) -> Value {
    let c = bench.classifier();
    let cat = c.catalog();
    let symptoms: Vec<Value> = cat
        .symptoms
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let phrases = |ts: &[crate::catalog::Term]| -> Vec<String> {
                let mut v: Vec<String> = ts.iter().map(|t| t.origin.clone()).collect();
                v.dedup();
                v
            };
            json!({
                "id": s.id, "title": s.title, "colour": i, "path": s.source, "line": s.line,
                "tags": s.tags, "threshold": s.threshold,
                "requires": phrases(&s.requires), "keywords": phrases(&s.keywords),
                "hints": phrases(&s.hints),
                "patterns": s.patterns.iter().map(|p| p.source.clone()).collect::<Vec<_>>(),
                "together": s.together.len(), "exclude": phrases(&s.exclude),
                "unless": phrases(&s.unless),
            })
        })
        .collect();
    let (files, _) = bench.files();
    let mut terms = Vec::new();
    for f in &files {
        let Ok(v) = toml::from_str::<toml::Value>(&f.text) else {
            continue;
        };
        if let Some(t) = v.get("terms").and_then(|t| t.as_table()) {
            for (name, items) in t {
                let line = f
                    .text
                    .lines()
                    .position(|l| {
                        let l = l.trim_start();
                        l.starts_with(name.as_str())
                            && l[name.len()..].trim_start().starts_with('=')
                    })
                    .map_or(0, |i| i + 1);
                let phrases: Vec<String> = items
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                terms.push(
                    json!({ "name": name, "path": f.path, "line": line, "phrases": phrases }),
                );
            }
        }
    }
    json!({ "symptoms": symptoms, "terms": terms })
}

fn state_value(bench: &Bench) -> Value {
    let (files, problems) = bench.files();
    let c = bench.classifier();
    let cat = c.catalog();
    json!({
        "catalogue": { "name": cat.name, "version": cat.version, "digest": cat.digest },
        "files": files,
        "saved": bench.saved_files(),
        "problems": problems,
        "diff": bench.diff(),
        "write": bench.can_write(),
        "labels": bench.labels().map(|(n, t)| json!({
            "name": n, "tickets": t.iter().filter(|t| t.labels.is_some()).count()
        })),
        "browse": browse(bench),
    })
}

async fn state(State(app): State<App>) -> Response {
    reply(StatusCode::OK, &state_value(&app.bench))
}

#[derive(Deserialize)]
struct EditRequest {
    files: Vec<File>,
}

async fn session(State(app): State<App>, body: Bytes) -> Response {
    let req: EditRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let bench = app.bench.clone();
    let done =
        tokio::task::spawn_blocking(move || bench.edit(req.files).map(|_| state_value(&bench)))
            .await;
    match done {
        Ok(Ok(v)) => reply(StatusCode::OK, &v),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct TryRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
}

async fn try_ticket(State(app): State<App>, body: Bytes) -> Response {
    let req: TryRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let ticket = match &req.id {
        Some(id) => match app.bench.ticket(id) {
            Some(t) => t.clone(),
            None => return error(StatusCode::NOT_FOUND, "no labelled ticket with this id"),
        },
        None => Ticket {
            id: "pasted".into(),
            subject: req.subject,
            body: req.body,
            ..Ticket::default()
        },
    };
    let c = app.bench.classifier();
    reply(StatusCode::OK, &explain::explain(&c, &ticket))
}

async fn tickets(State(app): State<App>) -> Response {
    let Some((_, ts)) = app.bench.labels() else {
        return reply(StatusCode::OK, &json!({ "tickets": [] }));
    };
    let list: Vec<Value> = ts
        .iter()
        .filter(|t| t.labels.is_some())
        .map(|t| {
            let subject: String = t.subject.chars().take(120).collect();
            json!({ "id": t.id, "subject": subject, "labels": t.labels })
        })
        .collect();
    reply(StatusCode::OK, &json!({ "tickets": list }))
}

async fn measure(State(app): State<App>) -> Response {
    let bench = app.bench.clone();
    match tokio::task::spawn_blocking(move || bench.measure()).await {
        Ok(Ok(m)) => reply(StatusCode::OK, &m),
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct SuggestRequest {
    #[serde(default)]
    symptom: Option<String>,
}

async fn suggest(State(app): State<App>, body: Bytes) -> Response {
    let req: SuggestRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let bench = app.bench.clone();
    let done = tokio::task::spawn_blocking(move || {
        bench.suggest(req.symptom.as_deref()).map(|s| {
            s.into_iter()
                .map(|s| {
                    let line = s.toml_line();
                    json!({ "suggestion": s, "toml": line })
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    match done {
        Ok(Ok(v)) => reply(StatusCode::OK, &json!({ "suggestions": v })),
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn write(State(app): State<App>, _headers: HeaderMap) -> Response {
    if !app.bench.can_write() {
        return error(
            StatusCode::FORBIDDEN,
            "this workbench was started without --write: copy the diff instead",
        );
    }
    let bench = app.bench.clone();
    match tokio::task::spawn_blocking(move || bench.write_files().map(|n| (n, state_value(&bench))))
        .await
    {
        Ok(Ok((n, v))) => reply(StatusCode::OK, &json!({ "written": n, "state": v })),
        Ok(Err(e)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests;
