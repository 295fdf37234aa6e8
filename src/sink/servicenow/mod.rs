//! ServiceNow (Table API): a work note and the symptom ids in a field of their own.
//!
//! Requests (`{base}` is `https://{instance}.service-now.com`, `{table}` e.g. `incident`):
//! - `GET   {base}/api/now/table/{table}/{sys_id}?sysparm_fields={field}`, or, when tickets
//!   are identified by number, `GET {base}/api/now/table/{table}?sysparm_query=number={n}
//!   &sysparm_fields=sys_id,{field}&sysparm_limit=1`: the record's symptom field.
//! - `PATCH {base}/api/now/table/{table}/{sys_id}` with
//!   `{"work_notes": "…", "{field}": "id-1, id-2"}`: the note (plain text; `comments`, the
//!   customer-visible journal, only if the catalogue asks and the config allows) and the
//!   symptoms, in ONE request.
//!
//! # Why no record gets two notes
//! The Table API has no tags, so the symptom field is the marker: a record whose field is
//! filled has been handled and nothing is written. The note and the field go in one PATCH, so
//! they are written together or not at all; there is no half-done state. Journal fields
//! append, so a PATCH that timed out but was applied would duplicate the note if simply sent
//! again: every attempt, including retries, therefore first reads the field and skips when it
//! is filled. Inside one worker a per-record lock keeps two events of one record apart; across
//! workers the same partition-ownership argument as for Jira applies (no compare-and-set
//! exists in the Table API).

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Map, Value};
use tracing::debug;

use self::config::{ServiceNowId, ServiceNowSettings};
use super::http::{Api, Call};
use super::note::{Markup, Writer};
use super::{Delivery, SinkError, TicketSink};
use crate::catalog::Catalog;

/// A work note and a symptom field in ServiceNow.
#[derive(Debug)]
pub struct ServiceNowSink {
    /// Client, credentials, limits.
    api: Api,
    /// Catalogue, mode, locks.
    writer: Writer,
    /// The table.
    table: String,
    /// The field for the symptom ids (and the marker).
    field: String,
    /// Whether ticket ids are sys_ids or numbers.
    id_kind: ServiceNowId,
}

impl ServiceNowSink {
    /// A sink for `settings`, writing notes from `catalog`.
    pub fn new(
        settings: &ServiceNowSettings,
        catalog: Arc<Catalog>,
        marker: &str,
    ) -> Result<ServiceNowSink, SinkError> {
        let a = &settings.api;
        Ok(ServiceNowSink {
            api: Api::new("servicenow", a.base_url.clone(), &a.auth, &a.limits)?,
            writer: Writer::new("servicenow", catalog, marker, a.mode, a.allow_public_reply),
            table: settings.table.clone(),
            field: settings.symptom_field.clone(),
            id_kind: settings.ticket_id,
        })
    }

    /// The record's sys_id and its symptom field.
    async fn read(&self, id: &str) -> Result<(String, String), SinkError> {
        let field_of = |rec: &Map<String, Value>| -> String {
            match rec.get(&self.field) {
                Some(Value::String(s)) => s.trim().to_string(),
                Some(Value::Object(o)) => o
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .to_string(),
                _ => String::new(),
            }
        };
        // A sys_id names the record itself; a number is looked up with a query.
        let by_number = matches!(self.id_kind, ServiceNowId::Number);
        let mut url = if by_number {
            self.api.url(&["api", "now", "table", &self.table])
        } else {
            self.api.url(&["api", "now", "table", &self.table, id])
        };
        {
            let mut q = url.query_pairs_mut();
            if by_number {
                q.append_pair("sysparm_query", &format!("number={id}"))
                    .append_pair("sysparm_fields", &format!("sys_id,{}", self.field))
                    .append_pair("sysparm_limit", "1");
            } else {
                q.append_pair("sysparm_fields", &self.field);
            }
            q.append_pair("sysparm_exclude_reference_link", "true");
        }
        let what = format!("GET {} {id}", self.table);
        let r = self.api.send(&Call::new(Method::GET, url, what)).await?;
        let v: Value = r.json("servicenow record")?;
        let result = v.get("result");
        if !by_number {
            let rec = result.and_then(Value::as_object).ok_or_else(|| {
                SinkError::permanent("servicenow: the response has no `result` object")
            })?;
            return Ok((id.to_string(), field_of(rec)));
        }
        let rec = result
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_object)
            .ok_or_else(|| {
                SinkError::permanent(format!(
                    "servicenow: no {} record numbered {id}",
                    self.table
                ))
            })?;
        let sys_id = rec
            .get("sys_id")
            .and_then(Value::as_str)
            .filter(|s| is_sys_id(s))
            .ok_or_else(|| SinkError::permanent("servicenow: the record has no sys_id"))?;
        Ok((sys_id.to_string(), field_of(rec)))
    }
}

fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A ticket id as configured: a 32-digit hex sys_id, or a number like `INC0010001`.
fn check_id(kind: ServiceNowId, id: &str) -> Result<&str, SinkError> {
    let ok = match kind {
        ServiceNowId::SysId => is_sys_id(id),
        ServiceNowId::Number => {
            !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        }
    };
    if ok {
        Ok(id)
    } else {
        Err(SinkError::permanent(format!(
            "servicenow: ticket id `{}` is not a {}",
            id.chars().take(40).collect::<String>(),
            match kind {
                ServiceNowId::SysId => "sys_id (32 hex digits)",
                ServiceNowId::Number => "record number (letters and digits)",
            }
        )))
    }
}

#[async_trait]
impl TicketSink for ServiceNowSink {
    fn name(&self) -> &str {
        "servicenow"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let Some(plan) = self.writer.plan(d.decision) else {
            return Ok(());
        };
        let id = check_id(self.id_kind, &d.ticket.id)?;
        let _one_at_a_time = self.writer.locks.lock(id).await;
        let (sys_id, current) = self.read(id).await?;
        if !current.is_empty() {
            debug!(
                sink = "servicenow",
                ticket = id,
                "symptom field filled: nothing to write"
            );
            return Ok(());
        }
        let ids: Vec<&str> = d.decision.symptoms.iter().map(|f| f.id.as_str()).collect();
        let mut body = Map::new();
        body.insert(self.field.clone(), json!(ids.join(", ")));
        if plan.note {
            let journal = if plan.public {
                "comments"
            } else {
                "work_notes"
            };
            body.insert(
                journal.into(),
                json!(self.writer.note(d.decision, Markup::ServiceNow)),
            );
        }
        let url = self.api.url(&["api", "now", "table", &self.table, &sys_id]);
        self.api
            .send(
                &Call::new(Method::PATCH, url, format!("PATCH {} {id}", self.table))
                    .json(&Value::Object(body)),
            )
            .await?;
        Ok(())
    }
}
