//! The HTTP API driven in-process: requests go to the router, no socket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::router;
use crate::classify::Classifier;
use crate::workbench::{check_access, Bench};

const LOCAL: &str = "127.0.0.1:8070";

fn labels() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tickets.jsonl"
    ))
}

fn patterns_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("patterns");
    std::fs::create_dir(&p).unwrap();
    std::fs::write(p.join("passkeys.toml"), crate::catalog::BUILTIN_PASSKEYS).unwrap();
    (dir, p)
}

fn app(write: bool, token: Option<&str>) -> (axum::Router, Arc<Bench>, tempfile::TempDir) {
    let (dir, p) = patterns_copy();
    let bench = Arc::new(Bench::open(Some(&p), Some(labels()), write).unwrap());
    let local: SocketAddr = LOCAL.parse().unwrap();
    (
        router(bench.clone(), local, token.map(String::from)),
        bench,
        dir,
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(path);
    if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(header::HOST, LOCAL);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, headers)
}

#[tokio::test]
async fn the_page_is_served_with_a_policy_against_inline_script() {
    let (app, _, _d) = app(false, None);
    let (status, body, headers) = call(&app, "GET", "/", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_str().unwrap().contains("<script src=\"/app.js\""));
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let (status, js, _) = call(&app, "GET", "/app.js", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!js.as_str().unwrap().contains(".innerHTML"));
}

#[tokio::test]
async fn a_pasted_ticket_shows_symptoms_evidence_tags_and_notes() {
    let (app, _, _d) = app(false, None);
    let (status, x, _) = call(
        &app,
        "POST",
        "/api/try",
        Some(json!({"subject": "YubiKey PIN blocked", "body": "my YubiKey PIN is blocked after too many tries <script>alert(1)</script>"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{x}");
    assert_eq!(x["symptoms"][0]["id"], "pin-locked", "{x}");
    let spans = x["fields"][1]["spans"].as_array().unwrap();
    assert!(spans
        .iter()
        .any(|s| !s["marks"].as_array().unwrap().is_empty()));
    // The page gets the text as text: the script is a string to show, not markup.
    let joined: String = spans.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert!(joined.ends_with("<script>alert(1)</script>"));
    assert!(
        x["tags"].as_array().unwrap().iter().any(|t| t == "passkey"),
        "{x}"
    );
    let html = x["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["markup"] == "html")
        .unwrap();
    assert!(html["source"].as_str().unwrap().contains("<p>"));
    assert!(!html["source"].as_str().unwrap().contains("<script>"));
}

#[tokio::test]
async fn a_labelled_ticket_is_tried_by_id() {
    let (app, bench, _d) = app(false, None);
    let first = bench.labels().unwrap().1[0].id.clone();
    let (status, x, _) = call(&app, "POST", "/api/try", Some(json!({"id": first})), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(x["id"], first.as_str());
    assert!(x["labels"].is_array());
    let (status, _, _) = call(
        &app,
        "POST",
        "/api/try",
        Some(json!({"id": "no-such"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list, _) = call(&app, "GET", "/api/tickets", None, &[]).await;
    assert_eq!(list["tickets"][0]["id"], first.as_str());
}

fn edited(state: &Value, from: &str, to: &str) -> Value {
    let mut files = state["files"].clone();
    let text = files[0]["text"].as_str().unwrap().replacen(from, to, 1);
    files[0]["text"] = Value::String(text);
    json!({ "files": files })
}

#[tokio::test]
async fn an_invalid_edit_names_its_line_and_the_session_keeps_the_last_valid_catalogue() {
    let (app, _, _d) = app(false, None);
    let (_, state, _) = call(&app, "GET", "/api/state", None, &[]).await;
    assert_eq!(state["problems"].as_array().unwrap().len(), 0);
    assert_eq!(state["write"], false);
    assert!(state["browse"]["symptoms"].as_array().unwrap().len() >= 10);
    assert!(!state["browse"]["terms"].as_array().unwrap().is_empty());
    let text = state["files"][0]["text"].as_str().unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("id = \"pin-locked\""))
        .unwrap()
        + 1;
    let (status, s, _) = call(
        &app,
        "PUT",
        "/api/session",
        Some(edited(&state, "id = \"pin-locked\"", "id = \"Pin_Locked\"")),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let p = &s["problems"][0];
    assert_eq!(p["line"], line);
    let path = state["files"][0]["path"].as_str().unwrap();
    assert!(
        p["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{path}:{line}: symptom `Pin_Locked`: field `id`")),
        "{p}"
    );
    // Still classifies with the saved catalogue.
    let (_, x, _) = call(
        &app,
        "POST",
        "/api/try",
        Some(json!({"body": "my YubiKey PIN is blocked"})),
        &[],
    )
    .await;
    assert_eq!(x["symptoms"][0]["id"], "pin-locked");
    assert!(s["diff"].as_str().unwrap().contains("+id = \"Pin_Locked\""));
}

#[tokio::test]
async fn measure_equals_eval_and_an_edit_shows_what_it_fixes_and_breaks() {
    let (app, bench, _d) = app(false, None);
    let (status, m, _) = call(&app, "GET", "/api/measure", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    let c = Classifier::new(crate::catalog::Catalog::builtin()).unwrap();
    let expected = crate::eval::evaluate(&c, bench.labels().unwrap().1, |_| {});
    // Both through the same JSON text, as `triage eval --json` prints it.
    let expected: Value = serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
    assert_eq!(m["report"], expected);
    assert_eq!(m["edited"], false);
    assert!(m["fixes"].as_array().unwrap().is_empty());
    // Remove the pin-locked symptom's keywords and co-occurrences: it is found less.
    let (_, state, _) = call(&app, "GET", "/api/state", None, &[]).await;
    let text = state["files"][0]["text"].as_str().unwrap().to_string();
    let start = text.find("id = \"pin-locked\"").unwrap();
    let threshold_edit = format!("{}threshold = 100\n{}", &text[..start], &text[start..]);
    let mut files = state["files"].clone();
    files[0]["text"] = Value::String(threshold_edit);
    let (_, s, _) = call(
        &app,
        "PUT",
        "/api/session",
        Some(json!({"files": files})),
        &[],
    )
    .await;
    assert_eq!(
        s["problems"].as_array().unwrap().len(),
        0,
        "{}",
        s["problems"]
    );
    let (_, m, _) = call(&app, "GET", "/api/measure", None, &[]).await;
    assert_eq!(m["edited"], true);
    let row = m["symptoms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "pin-locked")
        .unwrap();
    assert!(row["saved"]["tp"].as_u64().unwrap() > 0);
    assert_eq!(row["session"]["tp"], 0);
    assert!(!m["breaks"].as_array().unwrap().is_empty());
    assert!(m["report"]["macro_f1"].as_f64() < m["saved"]["macro_f1"].as_f64());
}

#[tokio::test]
async fn writing_needs_the_write_flag() {
    let (router_ro, _, _d) = app(false, None);
    let (status, _, _) = call(&router_ro, "POST", "/api/write", Some(json!({})), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (app, _, dir) = app(true, None);
    let (_, state, _) = call(&app, "GET", "/api/state", None, &[]).await;
    let body = edited(&state, "version = \"", "version = \"9.");
    let (_, s, _) = call(&app, "PUT", "/api/session", Some(body), &[]).await;
    assert_eq!(s["problems"].as_array().unwrap().len(), 0);
    let (status, w, _) = call(&app, "POST", "/api/write", Some(json!({})), &[]).await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["written"], 1);
    let on_disk = std::fs::read_to_string(dir.path().join("patterns/passkeys.toml")).unwrap();
    assert!(on_disk.contains("version = \"9."));
    assert_eq!(w["state"]["diff"], "");
}

#[tokio::test]
async fn requests_from_elsewhere_are_refused() {
    let (app, _, _d) = app(false, None);
    // DNS rebinding: another host name for this address.
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/state",
        None,
        &[("host", "evil.example:8070")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another site's page posting here.
    let (status, _, _) = call(
        &app,
        "POST",
        "/api/try",
        Some(json!({"body": "x"})),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A form post (no JSON content type).
    let req = Request::builder()
        .method("POST")
        .uri("/api/try")
        .header(header::HOST, LOCAL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("body=x"))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The page's own origin is fine.
    let (status, _, _) = call(
        &app,
        "POST",
        "/api/try",
        Some(json!({"body": "x"})),
        &[("origin", "http://127.0.0.1:8070")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn with_a_token_every_api_request_needs_it() {
    let token = "0123456789abcdef-token";
    let (app, _, _d) = app(false, Some(token));
    let (status, _, _) = call(&app, "GET", "/api/state", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/state",
        None,
        &[("x-workbench-token", "wrong")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        "GET",
        "/api/state",
        None,
        &[("x-workbench-token", token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The page itself holds no data and loads without it.
    let (status, _, _) = call(&app, "GET", "/", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn only_loopback_may_go_without_a_token() {
    assert!(check_access("127.0.0.1:8070".parse().unwrap(), None).is_ok());
    assert!(check_access("[::1]:8070".parse().unwrap(), None).is_ok());
    let e = check_access("0.0.0.0:8070".parse().unwrap(), None).unwrap_err();
    assert!(e.to_string().contains("TRIAGE_WORKBENCH_TOKEN"), "{e}");
    assert!(check_access("0.0.0.0:8070".parse().unwrap(), Some("short")).is_err());
    assert!(check_access("0.0.0.0:8070".parse().unwrap(), Some("0123456789abcdef")).is_ok());
}

#[tokio::test]
async fn suggestions_are_offered_with_their_figures() {
    let (app, _, _d) = app(false, None);
    let (status, s, _) = call(&app, "POST", "/api/suggest", Some(json!({})), &[]).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    for x in s["suggestions"].as_array().unwrap() {
        assert!(x["toml"].as_str().unwrap().starts_with('"'));
        assert!(!x["suggestion"]["fixes"].as_array().unwrap().is_empty());
    }
}
