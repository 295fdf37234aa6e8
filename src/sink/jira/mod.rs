//! Jira Service Management: the symptoms' labels and an internal comment on each request.
//!
//! Requests (`{base}` is `https://{site}.atlassian.net`):
//! - `GET  {base}/rest/api/3/issue/{key}?fields=labels`: the labels (is the marker there?).
//! - `GET  {base}/rest/servicedeskapi/request/{key}/comment?start=…&limit=100`: is triage's
//!   comment for this catalogue version already there?
//! - `POST {base}/rest/servicedeskapi/request/{key}/comment` with
//!   `{"body": "…", "public": false}`: the comment, internal (plain text in wiki markup, with
//!   quoted ticket text escaped). Public only if the catalogue asks and the config allows.
//! - `PUT  {base}/rest/api/3/issue/{key}` with `{"update": {"labels": [{"add": "…"}, …]}}`:
//!   adds labels; `fields.labels` would replace them and is never sent.
//!
//! Rate limits: a 429 is retried after its `Retry-After`. When `RateLimit-Reason` is
//! `jira-per-issue-on-write`, only that issue waits (inside its own task), other issues go on
//! and intake is not paused; any other reason holds the whole sink.
//!
//! # Why no request gets two comments
//! Jira has no idempotency key and no compare-and-set for comments. The order is: read the
//! labels (marker there: write nothing), look through the request's comments for triage's
//! comment of this catalogue version, comment only if it is missing, then add the labels with
//! the marker. A marker therefore always means the comment exists, and a crash between the
//! two is finished on redelivery by finding the comment and adding only the labels. Inside one
//! worker a per-issue lock keeps two events of the same issue apart. Across workers, Kafka
//! gives each issue's partition to one worker at a time, and a worker that loses a partition
//! finishes its tickets (the drain) before the next owner starts; the only remaining window is
//! a ticket still being written after the drain timeout, between the look and the comment.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use self::config::JiraSettings;
use super::http::{Api, Call};
use super::note::{is_triage_note, Markup, Writer};
use super::{Delivery, SinkError, TicketSink};
use crate::catalog::Catalog;

/// Comments per page when looking for triage's comment.
const PAGE: usize = 100;
/// Pages looked through at most.
const MAX_PAGES: usize = 20;

/// Labels and an internal comment in Jira Service Management.
#[derive(Debug)]
pub struct JiraSink {
    /// Client, credentials, limits.
    api: Api,
    /// Catalogue, marker, mode, locks.
    writer: Writer,
}

#[derive(Deserialize)]
struct Issue {
    fields: IssueFields,
}

#[derive(Deserialize)]
struct IssueFields {
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentPage {
    #[serde(default)]
    values: Vec<RequestComment>,
    #[serde(default = "yes")]
    is_last_page: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RequestComment {
    #[serde(default)]
    body: String,
}

/// Whether a 429 is Jira's per-issue write limit.
fn per_issue(headers: &HeaderMap) -> bool {
    headers
        .get("ratelimit-reason")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("jira-per-issue-on-write"))
}

/// An issue key (`HD-12`) or id (`10042`): letters, digits, `_` and `-` only.
fn issue_key(key: &str) -> Result<&str, SinkError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(key)
    } else {
        Err(SinkError::permanent(format!(
            "jira: `{}` is not an issue key",
            key.chars().take(40).collect::<String>()
        )))
    }
}

impl JiraSink {
    /// A sink for `settings`, writing comments from `catalog` and the `marker` label.
    pub fn new(
        settings: &JiraSettings,
        catalog: Arc<Catalog>,
        marker: &str,
    ) -> Result<JiraSink, SinkError> {
        let a = &settings.api;
        Ok(JiraSink {
            api: Api::new("jira", a.base_url.clone(), &a.auth, &a.limits)?
                .with_scoped_limit(per_issue),
            writer: Writer::new("jira", catalog, marker, a.mode, a.allow_public_reply),
        })
    }

    async fn labels(&self, key: &str) -> Result<Vec<String>, SinkError> {
        let mut url = self.api.url(&["rest", "api", "3", "issue", key]);
        url.query_pairs_mut().append_pair("fields", "labels");
        let r = self
            .api
            .send(&Call::new(Method::GET, url, format!("GET issue {key}")).scope(key))
            .await?;
        Ok(r.json::<Issue>("jira issue")?.fields.labels)
    }

    async fn has_comment(&self, key: &str, d: &Delivery<'_>) -> Result<bool, SinkError> {
        for page in 0..MAX_PAGES {
            let mut url = self
                .api
                .url(&["rest", "servicedeskapi", "request", key, "comment"]);
            url.query_pairs_mut()
                .append_pair("start", &(page * PAGE).to_string())
                .append_pair("limit", &PAGE.to_string());
            let r = self
                .api
                .send(&Call::new(Method::GET, url, format!("GET comments of {key}")).scope(key))
                .await?;
            let p: CommentPage = r.json("jira comments")?;
            if p.values.iter().any(|c| is_triage_note(&c.body, d.decision)) {
                return Ok(true);
            }
            if p.is_last_page || p.values.is_empty() {
                return Ok(false);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl TicketSink for JiraSink {
    fn name(&self) -> &str {
        "jira"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let Some(plan) = self.writer.plan(d.decision) else {
            return Ok(());
        };
        let key = issue_key(&d.ticket.id)?;
        let _one_at_a_time = self.writer.locks.lock(key).await;
        if self.writer.marked(&self.labels(key).await?) {
            debug!(
                sink = "jira",
                ticket = key,
                "marker present: nothing to write"
            );
            return Ok(());
        }
        if plan.note {
            if self.has_comment(key, &d).await? {
                debug!(
                    sink = "jira",
                    ticket = key,
                    "comment already there: adding the labels only"
                );
            } else {
                let url = self
                    .api
                    .url(&["rest", "servicedeskapi", "request", key, "comment"]);
                let body = json!({
                    "body": self.writer.note(d.decision, Markup::JiraWiki),
                    "public": plan.public,
                });
                self.api
                    .send(
                        &Call::new(Method::POST, url, format!("POST comment on {key}"))
                            .json(&body)
                            .scope(key),
                    )
                    .await?;
            }
        }
        let url = self.api.url(&["rest", "api", "3", "issue", key]);
        let adds: Vec<_> = plan.tags.iter().map(|t| json!({ "add": t })).collect();
        let body = json!({"update": {"labels": adds}});
        self.api
            .send(
                &Call::new(Method::PUT, url, format!("PUT labels on {key}"))
                    .json(&body)
                    .scope(key),
            )
            .await?;
        Ok(())
    }
}
