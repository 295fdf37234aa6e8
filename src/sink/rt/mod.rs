//! Request Tracker (RT 5, REST 2.0): the symptoms' tags in a multi-value custom field and the
//! note as a Comment on each decided ticket.
//!
//! Requests (`{base}` is RT's `WebBaseURL`, auth `Authorization: token …`):
//! - `GET  {base}/REST/2.0/ticket/{id}`: the custom fields' values, and the `ETag` every write
//!   is based on.
//! - `PUT  {base}/REST/2.0/ticket/{id}` with `{"CustomFields": {…}}` and `If-Match: {ETag}`:
//!   the tags and the note field. RT replaces all of a field's values with the list sent, so
//!   the sink sends the values it read plus its own; if anything changed the ticket since the
//!   read (an agent's tag, another worker's claim), RT answers 412 and nothing is written: the
//!   sink reads again and merges again. No agent's value is ever lost.
//! - `POST {base}/REST/2.0/ticket/{id}/comment` with `{"Content": …, "ContentType":
//!   "text/plain"}`: the note, a **Comment** (requestors do not see it, no mail goes out). The
//!   sink never calls `…/correspond`.
//! - `GET  {base}/REST/2.0/ticket/{id}/history` and `GET {base}/REST/2.0/transaction/{tx}/attachments`:
//!   is triage's note already there (only after an interrupted attempt, see below)?
//!
//! # Why no ticket gets two notes
//! RT has no idempotency key, and a comment cannot be made conditional (`If-Match` applies to
//! the ticket, not to its comments). The sink therefore takes a lease in a single-value custom
//! field of its own (`note_field`) before it comments, with a compare-and-set:
//! 1. **Read** the ticket: its `ETag`, the tags, the note field.
//! 2. The note field says `noted`: the note is there; only missing tags are added.
//! 3. It holds another worker's unexpired claim (`claimed {owner} {unix time}`): that worker
//!    is writing the note now; retry later (after the rest of the lease).
//! 4. Otherwise **claim**: write `claimed {this sink's owner id} {now}` (with the tags) under
//!    `If-Match`. Of two workers that read the same ticket, only one write succeeds; the other
//!    gets 412, reads again and finds the claim (step 3).
//! 5. **Comment**, then set the note field to `noted`.
//!
//! A crash between claim and comment leaves a claim without a note: when it has expired (or
//! it is this sink's own, after a retry), the sink looks through the ticket's comments for
//! triage's note of this catalogue version before it claims again, so a crash between comment
//! and `noted` never produces a second note either. The lease (`claim_lease_ms`, 30 s) must
//! outlast one request (`timeout_ms`); configuration refuses anything shorter. RT itself checks
//! `If-Match` and writes in two steps, so two writes within the same few milliseconds could in
//! principle both pass; inside one worker a per-ticket lock keeps two events of one ticket
//! apart, and across workers a ticket's events share a partition (keyed by ticket id).

pub mod config;
pub mod feed;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::debug;

use self::config::RtSettings;
use super::http::{body_excerpt, Api, Call};
use super::note::{is_triage_note, Markup, Writer};
use super::zendesk::numeric_id;
use super::{Delivery, SinkError, TicketSink};
use crate::catalog::Catalog;

/// How many 412s in a row one delivery accepts before it retries later.
const MAX_CONFLICTS: usize = 10;
/// History entries per page, and pages looked through at most.
const PAGE: usize = 100;
const MAX_PAGES: usize = 20;
/// The note field's value once the note is written.
const NOTED: &str = "noted";

/// Tags and a comment in Request Tracker.
#[derive(Debug)]
pub struct RtSink {
    /// Client, token, limits.
    api: Api,
    /// Catalogue, marker, mode, locks.
    writer: Writer,
    /// The multi-value custom field for tags.
    tags_field: String,
    /// The single-value custom field for the claim and the `noted` mark.
    note_field: String,
    /// How long a claim holds.
    lease: Duration,
    /// Who this sink is in its claims (process id, start time): unique per running sink.
    owner: String,
}

#[derive(Deserialize)]
struct TicketJson {
    #[serde(rename = "CustomFields", default)]
    custom_fields: Vec<FieldJson>,
}

#[derive(Deserialize)]
struct FieldJson {
    name: String,
    #[serde(default)]
    values: Vec<Value>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    next_page: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    id: Value,
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Content", default)]
    content: Option<String>,
}

/// A ticket as the sink needs it.
#[derive(Debug)]
struct State {
    /// What a write must carry in `If-Match`.
    etag: HeaderValue,
    /// The tags field's values.
    tags: Vec<String>,
    /// The note field's value.
    note: NoteState,
}

/// What the note field says.
#[derive(Debug, PartialEq, Eq)]
enum NoteState {
    /// Empty (or something triage did not write): no note, no claim.
    Free,
    /// Someone is writing the note; `left` is the rest of the lease (zero: expired).
    Claimed { owner: String, left: Duration },
    /// The note is there.
    Noted,
}

impl NoteState {
    fn parse(value: Option<&str>, now: u64, lease: Duration) -> NoteState {
        let Some(v) = value.map(str::trim) else {
            return NoteState::Free;
        };
        if v == NOTED {
            return NoteState::Noted;
        }
        let mut parts = v.split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("claimed"), Some(owner), Some(at), None) => match at.parse::<u64>() {
                Ok(at) => NoteState::Claimed {
                    owner: owner.to_string(),
                    left: Duration::from_secs(at.saturating_add(lease.as_secs()))
                        .saturating_sub(Duration::from_secs(now)),
                },
                Err(_) => NoteState::Free,
            },
            _ => NoteState::Free,
        }
    }
}

/// The outcome of a conditional write.
enum Write {
    Done,
    /// 412: the ticket changed since the read.
    Conflict,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `existing` plus those of `add` not already in it (compared without case).
fn merge(existing: &[String], add: &[String]) -> Vec<String> {
    let mut out = existing.to_vec();
    for t in add {
        if !out.iter().any(|e| e.eq_ignore_ascii_case(t)) {
            out.push(t.clone());
        }
    }
    out
}

/// A custom field value as text (RT sends strings; numbers are tolerated).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RT answers a PUT with 200 and one message per change, also for changes it refused; a
/// refusal of a custom field is a configuration problem (rights, field not applied).
fn refused(body: &[u8]) -> Option<String> {
    let msgs: Vec<Value> = serde_json::from_slice(body).ok()?;
    msgs.iter().filter_map(Value::as_str).find_map(|m| {
        let l = m.to_ascii_lowercase();
        (l.contains("permission denied")
            || l.contains("not a valid")
            || l.contains("could not")
            || l.contains("can't"))
        .then(|| m.chars().take(200).collect())
    })
}

impl RtSink {
    /// A sink for `settings`, writing notes from `catalog` and the `marker` tag.
    pub fn new(
        settings: &RtSettings,
        catalog: Arc<Catalog>,
        marker: &str,
    ) -> Result<RtSink, SinkError> {
        let a = &settings.api;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(RtSink {
            api: Api::new("rt", a.base_url.clone(), &a.auth, &a.limits)?,
            writer: Writer::new("rt", catalog, marker, a.mode, false),
            tags_field: settings.tags_field.clone(),
            note_field: settings.note_field.clone(),
            lease: settings.claim_lease,
            owner: format!("{}-{:x}", std::process::id(), started % (1 << 48)),
        })
    }

    fn rest(&self, path: &[&str]) -> reqwest::Url {
        let mut segs = vec!["REST", "2.0"];
        segs.extend_from_slice(path);
        self.api.url(&segs)
    }

    async fn read(&self, id: &str) -> Result<State, SinkError> {
        let r = self
            .api
            .send(&Call::new(
                Method::GET,
                self.rest(&["ticket", id]),
                format!("GET ticket {id}"),
            ))
            .await?;
        let etag = r.headers.get("etag").cloned().ok_or_else(|| {
            SinkError::permanent(format!(
                "rt: GET ticket {id}: no ETag in the answer (is this RT 5's REST 2.0?)"
            ))
        })?;
        let t: TicketJson = r.json("rt ticket")?;
        let values = |name: &str| -> Vec<String> {
            t.custom_fields
                .iter()
                .filter(|f| f.name == name)
                .flat_map(|f| f.values.iter().filter_map(value_text))
                .collect()
        };
        if !t.custom_fields.iter().any(|f| f.name == self.tags_field) {
            return Err(SinkError::permanent(format!(
                "rt: ticket {id} has no custom field `{}` (sink.rt.tags_field): create it and apply it to the ticket's queue",
                self.tags_field
            )));
        }
        if self.writer.mode.note() && !t.custom_fields.iter().any(|f| f.name == self.note_field) {
            return Err(SinkError::permanent(format!(
                "rt: ticket {id} has no custom field `{}` (sink.rt.note_field): create it and apply it to the ticket's queue",
                self.note_field
            )));
        }
        let note = values(&self.note_field);
        Ok(State {
            etag,
            tags: values(&self.tags_field),
            note: NoteState::parse(note.first().map(String::as_str), unix_now(), self.lease),
        })
    }

    /// `PUT ticket/{id}` with these custom field values, under `If-Match` when given.
    async fn put(
        &self,
        id: &str,
        fields: Map<String, Value>,
        etag: Option<&HeaderValue>,
    ) -> Result<Write, SinkError> {
        let mut call = Call::new(
            Method::PUT,
            self.rest(&["ticket", id]),
            format!("PUT custom fields of ticket {id}"),
        )
        .json(&json!({ "CustomFields": fields }))
        .expect(&[StatusCode::PRECONDITION_FAILED]);
        if let Some(e) = etag {
            call.headers.push((IF_MATCH, e.clone()));
        }
        let r = self.api.send(&call).await?;
        if r.status == StatusCode::PRECONDITION_FAILED {
            return Ok(Write::Conflict);
        }
        if let Some(m) = refused(&r.body) {
            return Err(SinkError::permanent(format!(
                "rt: PUT custom fields of ticket {id}: RT refused: {m}"
            )));
        }
        Ok(Write::Done)
    }

    async fn comment(&self, id: &str, text: &str) -> Result<(), SinkError> {
        let r = self
            .api
            .send(
                &Call::new(
                    Method::POST,
                    self.rest(&["ticket", id, "comment"]),
                    format!("POST comment on ticket {id}"),
                )
                .json(&json!({"Content": text, "ContentType": "text/plain"})),
            )
            .await?;
        if r.status != StatusCode::CREATED {
            return Err(SinkError::permanent(format!(
                "rt: POST comment on ticket {id}: HTTP {}: {}",
                r.status,
                body_excerpt(&r.body)
            )));
        }
        Ok(())
    }

    /// Whether one of the ticket's comments is triage's note for this catalogue version.
    async fn has_note(&self, id: &str, d: &Delivery<'_>) -> Result<bool, SinkError> {
        for page in 1..=MAX_PAGES {
            let mut url = self.rest(&["ticket", id, "history"]);
            url.query_pairs_mut()
                .append_pair("fields", "Type")
                .append_pair("per_page", &PAGE.to_string())
                .append_pair("page", &page.to_string());
            let r = self
                .api
                .send(&Call::new(
                    Method::GET,
                    url,
                    format!("GET history of ticket {id}"),
                ))
                .await?;
            let p: Page = r.json("rt history")?;
            for tx in p
                .items
                .iter()
                .filter(|i| i.kind.as_deref() == Some("Comment"))
            {
                let Some(tx_id) = value_text(&tx.id) else {
                    continue;
                };
                let tx_id = numeric_id("rt", &tx_id)?;
                let mut url = self.rest(&["transaction", tx_id, "attachments"]);
                url.query_pairs_mut()
                    .append_pair("fields", "Content,ContentType");
                let r = self
                    .api
                    .send(&Call::new(
                        Method::GET,
                        url,
                        format!("GET attachments of transaction {tx_id}"),
                    ))
                    .await?;
                let a: Page = r.json("rt attachments")?;
                if a.items
                    .iter()
                    .filter_map(|i| i.content.as_deref())
                    .any(|c| is_triage_note(c, d.decision))
                {
                    return Ok(true);
                }
            }
            if p.next_page.is_none() || p.items.len() < PAGE {
                break;
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl TicketSink for RtSink {
    fn name(&self) -> &str {
        "rt"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let Some(plan) = self.writer.plan(d.decision) else {
            return Ok(());
        };
        let id = numeric_id("rt", &d.ticket.id)?;
        let _one_at_a_time = self.writer.locks.lock(id).await;
        let note = plan
            .note
            .then(|| self.writer.note(d.decision, Markup::Plain));
        for _ in 0..MAX_CONFLICTS {
            let st = self.read(id).await?;
            let tags = merge(&st.tags, &plan.tags);
            let mut fields = Map::new();
            if tags.len() != st.tags.len() {
                fields.insert(self.tags_field.clone(), json!(tags));
            }
            let Some(text) = note.as_deref().filter(|_| st.note != NoteState::Noted) else {
                // Tags only: the mode writes no note, or it is there already.
                if fields.is_empty() {
                    debug!(sink = "rt", ticket = id, "nothing to write");
                    return Ok(());
                }
                match self.put(id, fields, Some(&st.etag)).await? {
                    Write::Done => return Ok(()),
                    Write::Conflict => {
                        debug!(sink = "rt", ticket = id, "412 on the tags: reading again");
                        continue;
                    }
                }
            };
            let mut retried = false;
            if let NoteState::Claimed { owner, left } = &st.note {
                if owner != &self.owner && !left.is_zero() {
                    return Err(SinkError::Retryable {
                        message: format!(
                            "rt: ticket {id}: another worker is writing its note (claim held for {} s more)",
                            left.as_secs()
                        ),
                        retry_after: Some(*left + Duration::from_secs(1)),
                    });
                }
                retried = true;
            }
            // After an interrupted attempt (ours, or an expired claim) the note may be there.
            let already = retried && self.has_note(id, &d).await?;
            let value = if already {
                NOTED.to_string()
            } else {
                format!("claimed {} {}", self.owner, unix_now())
            };
            fields.insert(self.note_field.clone(), json!(value));
            match self.put(id, fields, Some(&st.etag)).await? {
                Write::Done => {}
                Write::Conflict => {
                    debug!(sink = "rt", ticket = id, "412 on the claim: reading again");
                    continue;
                }
            }
            if already {
                debug!(
                    sink = "rt",
                    ticket = id,
                    "note found after an interrupted attempt"
                );
                return Ok(());
            }
            self.comment(id, text).await?;
            let mut done = Map::new();
            done.insert(self.note_field.clone(), json!(NOTED));
            // Only the note field, unconditionally: it is ours, the claim guards it.
            self.put(id, done, None).await?;
            return Ok(());
        }
        Err(SinkError::retry(format!(
            "rt: ticket {id} kept changing while triage wrote to it (412 Precondition Failed {MAX_CONFLICTS} times)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_field_states() {
        let lease = Duration::from_secs(30);
        assert_eq!(NoteState::parse(None, 100, lease), NoteState::Free);
        assert_eq!(
            NoteState::parse(Some("noted"), 100, lease),
            NoteState::Noted
        );
        assert_eq!(
            NoteState::parse(Some("claimed w1 90"), 100, lease),
            NoteState::Claimed {
                owner: "w1".into(),
                left: Duration::from_secs(20)
            }
        );
        assert_eq!(
            NoteState::parse(Some("claimed w1 10"), 100, lease),
            NoteState::Claimed {
                owner: "w1".into(),
                left: Duration::ZERO
            }
        );
        assert_eq!(
            NoteState::parse(Some("claimed w1"), 100, lease),
            NoteState::Free
        );
        assert_eq!(
            NoteState::parse(Some("whatever"), 100, lease),
            NoteState::Free
        );
    }

    #[test]
    fn merge_keeps_every_existing_value_and_adds_once() {
        let have = vec!["agent-a".to_string(), "VPN".to_string()];
        let add = vec![
            "vpn".to_string(),
            "triage".to_string(),
            "triage".to_string(),
        ];
        assert_eq!(merge(&have, &add), vec!["agent-a", "VPN", "triage"]);
    }

    #[test]
    fn refusals_in_a_200_are_errors() {
        assert!(refused(br#"["Permission Denied"]"#).is_some());
        assert!(refused(br#"["x added as a value for Tags"]"#).is_none());
        assert!(refused(b"not json").is_none());
    }
}
