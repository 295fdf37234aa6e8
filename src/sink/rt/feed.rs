//! Request Tracker as a source: RT has no signed webhooks, so `triage ingest` follows its
//! transactions by id ([`crate::ingest::pull`]) and produces each new ticket.
//!
//! Requests (`{base}` is RT's `WebBaseURL`, auth `Authorization: token …`):
//! - `GET {base}/REST/2.0/transactions?query=ObjectType = 'RT::Ticket' AND Type = 'Create' AND id > {cursor}&orderby=id&order=ASC`:
//!   the tickets created since the cursor, oldest first;
//! - `GET {base}/REST/2.0/ticket/{id}`: subject and the tags field's values;
//! - `GET {base}/REST/2.0/transaction/{tx}/attachments`: the text the ticket was created with.
//!
//! Only creations are work: triage's own Comments, and the custom-field changes it makes, are
//! other transaction types and never come back; a ticket created by triage's own user (it
//! creates none) would be skipped too. The record is the plain shape (`id`, `subject`,
//! `body`, `tags`, `author`); its tags let the worker skip a ticket that already has the marker.
//!
//! RT on SQLite writes one transaction at a time, so ids appear in order. On a database that
//! commits concurrently, an id could become visible after a higher one; the cursor would then
//! have moved past it. Such an RT should be followed with a poll interval of seconds, and the
//! gap is a known limit of following by id.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::RtSourceSettings;
use crate::config::ConfigError;
use crate::ingest::pull::{PullFeed, Pulled, PulledRecord};

/// Request Tracker's transactions feed.
pub struct RtFeed {
    client: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    tags_field: String,
    user: String,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Value>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `{"id": …}` objects (RT's links to users) or plain strings, as text.
fn link_id(v: &Value) -> Option<String> {
    v.get("id").and_then(text).or_else(|| text(v))
}

impl RtFeed {
    /// A feed for `s`; reads the token now.
    pub fn new(s: &RtSourceSettings) -> Result<RtFeed, ConfigError> {
        let token = s.token.read()?;
        let mut auth =
            HeaderValue::from_str(&format!("token {}", token.expose())).map_err(|_| {
                ConfigError::Invalid {
                    path: String::new(),
                    line: None,
                    field: "ingest.rt.token".into(),
                    message: "the token holds characters not allowed in an HTTP header".into(),
                }
            })?;
        auth.set_sensitive(true);
        let client = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("triage/", env!("CARGO_PKG_VERSION")))
            .https_only(s.base_url.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid {
                path: String::new(),
                line: None,
                field: "ingest.rt".into(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(RtFeed {
            client,
            base: s.base_url.clone(),
            auth,
            tags_field: s.tags_field.clone(),
            user: s.user.clone(),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut p = url
                .path_segments_mut()
                .expect("a checked http(s) base URL can take path segments");
            p.pop_if_empty();
            p.push("REST").push("2.0");
            for s in segments {
                p.push(s);
            }
        }
        url
    }

    async fn get(&self, url: Url, what: &str) -> Result<Value, String> {
        let r = self
            .client
            .get(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {what}: {}", without_url(&e)))?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("GET {what}: HTTP {status}"));
        }
        r.json::<Value>()
            .await
            .map_err(|e| format!("GET {what}: unexpected answer: {}", without_url(&e)))
    }

    /// The record for ticket `id` created by transaction `tx`.
    async fn record(
        &self,
        tx: &str,
        id: &str,
        author: Option<String>,
    ) -> Result<Option<PulledRecord>, String> {
        let t = self
            .get(self.url(&["ticket", id]), &format!("ticket {id}"))
            .await?;
        let subject = t.get("Subject").and_then(text).unwrap_or_default();
        let tags: Vec<String> = t
            .get("CustomFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.get("name").and_then(Value::as_str) == Some(self.tags_field.as_str()))
            .flat_map(|f| {
                f.get("values")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| text(&v))
            .collect();
        let mut url = self.url(&["transaction", tx, "attachments"]);
        url.query_pairs_mut()
            .append_pair("fields", "Content,ContentType")
            .append_pair("per_page", "20");
        let a: Page = serde_json::from_value(
            self.get(url, &format!("attachments of transaction {tx}"))
                .await?,
        )
        .map_err(|e| format!("attachments of transaction {tx}: {e}"))?;
        let part = |kind: &str| {
            a.items.iter().find_map(|i| {
                let ct = i.get("ContentType").and_then(Value::as_str)?;
                let c = i.get("Content").and_then(Value::as_str)?;
                (ct.eq_ignore_ascii_case(kind) && !c.trim().is_empty()).then(|| c.to_string())
            })
        };
        let body = part("text/plain")
            .or_else(|| part("text/html"))
            .unwrap_or_default();
        if subject.trim().is_empty() && body.trim().is_empty() {
            return Ok(None);
        }
        let mut rec = json!({"id": id, "subject": subject, "body": body, "tags": tags});
        if let Some(a) = author {
            rec["author"] = json!(a);
        }
        Ok(Some(PulledRecord {
            key: id.to_string(),
            payload: serde_json::to_vec(&rec).expect("a JSON value always serialises"),
        }))
    }
}

/// A reqwest error's message without its URL (which holds no secret here, but keeps logs short).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "…");
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        s
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl PullFeed for RtFeed {
    fn name(&self) -> &'static str {
        "rt"
    }

    async fn fetch(&self, after: u64, limit: usize) -> Result<Vec<Pulled>, String> {
        let mut url = self.url(&["transactions"]);
        url.query_pairs_mut()
            .append_pair(
                "query",
                &format!("ObjectType = 'RT::Ticket' AND Type = 'Create' AND id > {after}"),
            )
            .append_pair("orderby", "id")
            .append_pair("order", "ASC")
            .append_pair("per_page", &limit.to_string())
            .append_pair("fields", "ObjectId,Creator,Type");
        let page: Page = serde_json::from_value(self.get(url, "transactions").await?)
            .map_err(|e| format!("transactions: {e}"))?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in page.items {
            let tx = item.get("id").and_then(text).unwrap_or_default();
            let ticket = item.get("ObjectId").and_then(text).unwrap_or_default();
            if !digits(&tx) || !digits(&ticket) {
                return Err("transactions: an item without a numeric id".into());
            }
            let position: u64 = tx.parse().map_err(|_| "transactions: id out of range")?;
            if position <= after {
                continue;
            }
            let creator = item.get("Creator").and_then(link_id);
            let record = if creator.as_deref() == Some(self.user.as_str()) {
                None
            } else {
                self.record(&tx, &ticket, creator).await?
            };
            out.push(Pulled { position, record });
        }
        out.sort_by_key(|p| p.position);
        Ok(out)
    }
}
