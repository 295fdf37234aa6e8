//! Zendesk: the symptoms' tags and an internal note on each decided ticket.
//!
//! Requests (`{base}` is `https://{subdomain}.zendesk.com`):
//! - `GET  {base}/api/v2/tickets/{id}.json`: tags and `updated_at` (when the event has no
//!   update stamp, and after a 409).
//! - `GET  {base}/api/v2/tickets/{id}/comments.json?sort_order=desc`: is triage's note for
//!   this catalogue version already there?
//! - `PUT  {base}/api/v2/tickets/{id}.json` with
//!   `{"ticket": {"comment": {"html_body": …, "public": false}, "safe_update": true,
//!   "updated_stamp": …}}`: the note (an internal note unless the catalogue asks for a public
//!   reply and `allow_public_reply` is set).
//! - `PUT  {base}/api/v2/tickets/{id}/tags.json` with `{"tags": […], "safe_update": "true",
//!   "updated_stamp": …}`: adds the tags and the marker. Never `ticket.tags`, which would
//!   replace every tag the agents set.
//!
//! # Why no ticket gets two notes
//! Zendesk has no idempotency key for updates, so the sink relies on three things:
//! 1. **Order: the note first, the marker after.** A marker on a ticket therefore always means
//!    the note is there; a crash between the two leaves a note without a marker, never a
//!    marker without a note (nothing is lost).
//! 2. **Look before writing.** Unless the marker is already there (then nothing is written),
//!    the sink reads the latest comments and writes the note only if none of them is
//!    triage's note for this catalogue version. This is what finishes a half-done ticket after
//!    a crash or a redelivery: the note is found, only the tags are added.
//! 3. **Compare and set.** Every write is a safe update carrying the `updated_at` the sink
//!    based its decision on (the event's stamp, or the one it read). If anything changed the
//!    ticket since (another worker's note, an agent's reply), Zendesk answers 409 and nothing
//!    is written; the sink reads the ticket again and decides afresh. Two workers racing on
//!    one ticket cannot both succeed: the first write changes `updated_at`, so the second's
//!    stamp no longer matches. Inside one worker, a per-ticket lock keeps two events of the
//!    same ticket from interleaving.
//!
//! The look-back covers the 100 most recent comments.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tracing::debug;

use self::config::ZendeskSettings;
use super::http::{Api, Call};
use super::note::{is_triage_note, Markup, Writer};
use super::{Delivery, SinkError, TicketSink};
use crate::catalog::Catalog;

/// How many 409 Conflicts in a row one delivery accepts before it retries later.
const MAX_CONFLICTS: usize = 5;

/// Tags and an internal note in Zendesk.
#[derive(Debug)]
pub struct ZendeskSink {
    /// Client, credentials, limits.
    api: Api,
    /// Catalogue, marker, mode, locks.
    writer: Writer,
}

#[derive(Deserialize)]
struct TicketEnvelope {
    ticket: TicketState,
}

#[derive(Deserialize)]
struct TicketState {
    #[serde(default)]
    tags: Vec<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct Comments {
    #[serde(default)]
    comments: Vec<Comment>,
}

#[derive(Deserialize)]
struct Comment {
    body: Option<String>,
    html_body: Option<String>,
    plain_body: Option<String>,
}

/// The outcome of a safe update.
enum Write {
    /// Done; the ticket's new `updated_at`, when the response says.
    Done(Option<String>),
    /// 409: the ticket changed since the stamp.
    Conflict,
}

impl ZendeskSink {
    /// A sink for `settings`, writing notes from `catalog` and the `marker` tag.
    pub fn new(
        settings: &ZendeskSettings,
        catalog: Arc<Catalog>,
        marker: &str,
    ) -> Result<ZendeskSink, SinkError> {
        let a = &settings.api;
        Ok(ZendeskSink {
            api: Api::new("zendesk", a.base_url.clone(), &a.auth, &a.limits)?,
            writer: Writer::new("zendesk", catalog, marker, a.mode, a.allow_public_reply),
        })
    }

    async fn read(&self, id: &str) -> Result<TicketState, SinkError> {
        let url = self
            .api
            .url(&["api", "v2", "tickets", &format!("{id}.json")]);
        let r = self
            .api
            .send(&Call::new(Method::GET, url, format!("GET ticket {id}")))
            .await?;
        Ok(r.json::<TicketEnvelope>("zendesk ticket")?.ticket)
    }

    async fn has_note(&self, id: &str, d: &Delivery<'_>) -> Result<bool, SinkError> {
        let mut url = self.api.url(&["api", "v2", "tickets", id, "comments.json"]);
        url.query_pairs_mut().append_pair("sort_order", "desc");
        let r = self
            .api
            .send(&Call::new(
                Method::GET,
                url,
                format!("GET comments of ticket {id}"),
            ))
            .await?;
        let c: Comments = r.json("zendesk comments")?;
        Ok(c.comments.iter().any(|c| {
            [&c.plain_body, &c.body, &c.html_body]
                .into_iter()
                .flatten()
                .any(|b| is_triage_note(b, d.decision))
        }))
    }

    async fn write_note(
        &self,
        id: &str,
        html: &str,
        public: bool,
        stamp: &str,
    ) -> Result<Write, SinkError> {
        let url = self
            .api
            .url(&["api", "v2", "tickets", &format!("{id}.json")]);
        let body = json!({"ticket": {
            "comment": {"html_body": html, "public": public},
            "safe_update": true,
            "updated_stamp": stamp,
        }});
        let r = self
            .api
            .send(
                &Call::new(Method::PUT, url, format!("PUT note on ticket {id}"))
                    .json(&body)
                    .expect(&[StatusCode::CONFLICT]),
            )
            .await?;
        if r.status == StatusCode::CONFLICT {
            return Ok(Write::Conflict);
        }
        let stamp = serde_json::from_slice::<TicketEnvelope>(&r.body)
            .ok()
            .and_then(|t| t.ticket.updated_at);
        Ok(Write::Done(stamp))
    }

    async fn add_tags(
        &self,
        id: &str,
        tags: &[String],
        stamp: Option<&str>,
    ) -> Result<Write, SinkError> {
        let url = self.api.url(&["api", "v2", "tickets", id, "tags.json"]);
        let body = match stamp {
            Some(s) => json!({"tags": tags, "safe_update": "true", "updated_stamp": s}),
            None => json!({ "tags": tags }),
        };
        let r = self
            .api
            .send(
                &Call::new(Method::PUT, url, format!("PUT tags on ticket {id}"))
                    .json(&body)
                    .expect(&[StatusCode::CONFLICT]),
            )
            .await?;
        Ok(if r.status == StatusCode::CONFLICT {
            Write::Conflict
        } else {
            Write::Done(None)
        })
    }
}

/// A Zendesk ticket id: digits only (it goes into URL paths).
pub fn numeric_id<'a>(sink: &str, id: &'a str) -> Result<&'a str, SinkError> {
    if !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(SinkError::permanent(format!(
            "{sink}: ticket id `{}` is not numeric",
            id.chars().take(40).collect::<String>()
        )))
    }
}

#[async_trait]
impl TicketSink for ZendeskSink {
    fn name(&self) -> &str {
        "zendesk"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let Some(plan) = self.writer.plan(d.decision) else {
            return Ok(());
        };
        let id = numeric_id("zendesk", &d.ticket.id)?;
        let _one_at_a_time = self.writer.locks.lock(id).await;
        let note = plan
            .note
            .then(|| self.writer.note(d.decision, Markup::Html));
        // The stamp every write is based on: the event's, until a conflict makes us read.
        let mut stamp = d.ticket.updated_stamp.clone();
        for _ in 0..MAX_CONFLICTS {
            if stamp.is_none() {
                let t = self.read(id).await?;
                if self.writer.marked(&t.tags) {
                    debug!(
                        sink = "zendesk",
                        ticket = id,
                        "marker present: nothing to write"
                    );
                    return Ok(());
                }
                stamp = t.updated_at;
            }
            if let Some(html) = &note {
                if self.has_note(id, &d).await? {
                    debug!(
                        sink = "zendesk",
                        ticket = id,
                        "note already there: adding the tags only"
                    );
                } else {
                    let Some(s) = stamp.as_deref() else {
                        return Err(SinkError::permanent(format!(
                            "zendesk: ticket {id} has no updated_at to base a safe update on"
                        )));
                    };
                    match self.write_note(id, html, plan.public, s).await? {
                        Write::Done(new) => stamp = new,
                        Write::Conflict => {
                            debug!(
                                sink = "zendesk",
                                ticket = id,
                                "409 on the note: reading again"
                            );
                            stamp = None;
                            continue;
                        }
                    }
                }
            }
            match self.add_tags(id, &plan.tags, stamp.as_deref()).await? {
                Write::Done(_) => return Ok(()),
                Write::Conflict => {
                    debug!(
                        sink = "zendesk",
                        ticket = id,
                        "409 on the tags: reading again"
                    );
                    stamp = None;
                }
            }
        }
        Err(SinkError::retry(format!(
            "zendesk: ticket {id} kept changing while triage wrote to it (409 Conflict {MAX_CONFLICTS} times)"
        )))
    }
}
