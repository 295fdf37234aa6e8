//! Freshdesk: the symptoms' tags and a private note on each decided ticket.
//!
//! Requests (`{base}` is `https://{domain}.freshdesk.com`; basic auth `{api_key}:X`):
//! - `GET  {base}/api/v2/tickets/{id}`: the tags (is the marker there?).
//! - `GET  {base}/api/v2/tickets/{id}/conversations?page=…&per_page=100`: is triage's note for
//!   this catalogue version already there?
//! - `POST {base}/api/v2/tickets/{id}/notes` with `{"body": "<p>…</p>", "private": true}`: the
//!   note, HTML with everything escaped. (`POST …/reply` instead, only if the catalogue asks
//!   for a public reply and the config allows it.)
//! - `PUT  {base}/api/v2/tickets/{id}` with `{"tags": […]}`: Freshdesk replaces the tags with
//!   the list sent, so the sink reads the current tags right before and sends them all plus
//!   the new ones (read, merge, write).
//!
//! # Why no ticket gets two notes
//! The order is: read the tags (marker there: write nothing), look through the conversations
//! for triage's note of this catalogue version, write the note only if it is missing, then
//! write the tags with the marker. A marker always means the note exists; a crash in between is
//! finished on redelivery by finding the note and writing only the tags. Inside one worker a
//! per-ticket lock keeps two events of one ticket apart; across workers the partition-ownership
//! argument of the Jira sink applies (Freshdesk offers no compare-and-set).
//!
//! Read-merge-write of tags can lose a tag an agent adds in the moment between the read and the
//! write; the read is therefore done immediately before the write (after the note), which keeps
//! that moment as short as one round trip.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use self::config::FreshdeskSettings;
use super::http::{Api, Call};
use super::note::{is_triage_note, Markup, Writer};
use super::zendesk::numeric_id;
use super::{Delivery, SinkError, TicketSink};
use crate::catalog::Catalog;

/// Conversations per page.
const PAGE: usize = 100;
/// Pages looked through at most.
const MAX_PAGES: usize = 20;

/// Tags and a private note in Freshdesk.
#[derive(Debug)]
pub struct FreshdeskSink {
    /// Client, credentials, limits.
    api: Api,
    /// Catalogue, marker, mode, locks.
    writer: Writer,
}

#[derive(Deserialize)]
struct TicketState {
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct Conversation {
    body: Option<String>,
    body_text: Option<String>,
}

impl FreshdeskSink {
    /// A sink for `settings`, writing notes from `catalog` and the `marker` tag.
    pub fn new(
        settings: &FreshdeskSettings,
        catalog: Arc<Catalog>,
        marker: &str,
    ) -> Result<FreshdeskSink, SinkError> {
        let a = &settings.api;
        Ok(FreshdeskSink {
            api: Api::new("freshdesk", a.base_url.clone(), &a.auth, &a.limits)?,
            writer: Writer::new("freshdesk", catalog, marker, a.mode, a.allow_public_reply),
        })
    }

    async fn tags(&self, id: &str) -> Result<Vec<String>, SinkError> {
        let url = self.api.url(&["api", "v2", "tickets", id]);
        let r = self
            .api
            .send(&Call::new(Method::GET, url, format!("GET ticket {id}")))
            .await?;
        Ok(r.json::<TicketState>("freshdesk ticket")?.tags)
    }

    async fn has_note(&self, id: &str, d: &Delivery<'_>) -> Result<bool, SinkError> {
        for page in 1..=MAX_PAGES {
            let mut url = self.api.url(&["api", "v2", "tickets", id, "conversations"]);
            url.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("per_page", &PAGE.to_string());
            let r = self
                .api
                .send(&Call::new(
                    Method::GET,
                    url,
                    format!("GET conversations of ticket {id}"),
                ))
                .await?;
            let list: Vec<Conversation> = r.json("freshdesk conversations")?;
            let found = list.iter().any(|c| {
                [&c.body_text, &c.body]
                    .into_iter()
                    .flatten()
                    .any(|b| is_triage_note(b, d.decision))
            });
            if found {
                return Ok(true);
            }
            if list.len() < PAGE {
                return Ok(false);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl TicketSink for FreshdeskSink {
    fn name(&self) -> &str {
        "freshdesk"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let Some(plan) = self.writer.plan(d.decision) else {
            return Ok(());
        };
        let id = numeric_id("freshdesk", &d.ticket.id)?;
        let _one_at_a_time = self.writer.locks.lock(id).await;
        let mut current = self.tags(id).await?;
        if self.writer.marked(&current) {
            debug!(
                sink = "freshdesk",
                ticket = id,
                "marker present: nothing to write"
            );
            return Ok(());
        }
        if plan.note {
            if self.has_note(id, &d).await? {
                debug!(
                    sink = "freshdesk",
                    ticket = id,
                    "note already there: writing the tags only"
                );
            } else {
                let html = self.writer.note(d.decision, Markup::Html);
                let (url, body) = if plan.public {
                    (
                        self.api.url(&["api", "v2", "tickets", id, "reply"]),
                        json!({ "body": html }),
                    )
                } else {
                    (
                        self.api.url(&["api", "v2", "tickets", id, "notes"]),
                        json!({"body": html, "private": true}),
                    )
                };
                self.api
                    .send(
                        &Call::new(Method::POST, url, format!("POST note on ticket {id}"))
                            .json(&body),
                    )
                    .await?;
                // Read again right before the write: the note took a round trip.
                current = self.tags(id).await?;
            }
        }
        let mut merged = current;
        for t in &plan.tags {
            if !merged.iter().any(|c| c.eq_ignore_ascii_case(t)) {
                merged.push(t.clone());
            }
        }
        let url = self.api.url(&["api", "v2", "tickets", id]);
        self.api
            .send(
                &Call::new(Method::PUT, url, format!("PUT tags on ticket {id}"))
                    .json(&json!({ "tags": merged })),
            )
            .await?;
        Ok(())
    }
}
