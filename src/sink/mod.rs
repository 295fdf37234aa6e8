//! Where decisions go: the [`TicketSink`] trait and its implementations, one module each.
//!
//! This module is the one place that names every sink: [`SinkSettings`] (the `[sink]`
//! section, each sink's table read by its own `config.rs`) and [`build`].
//!
//! A sink receives every decided ticket and must be idempotent: after a crash or a retry the
//! same ticket event may come again. Its error says what the pipeline should do next:
//! [`SinkError::Retryable`] (pause intake, wait, try again), [`SinkError::Permanent`] (this
//! ticket can never be delivered: dead-letter it with the reason and move on), or
//! [`SinkError::Fatal`] (the sink itself is gone: stop the worker without acknowledging).
//!
//! - [`decisions_topic`]: the decision JSON on a Kafka topic, keyed by ticket id.
//! - [`webhook`]: the decision JSON POSTed to an HTTP endpoint, HMAC-signed.
//! - [`zendesk`], [`jira`], [`servicenow`], [`freshdesk`], [`rt`]: tags and an internal note
//!   written back to the ticketing system.
//! - [`config`]: what every post-back sink's section shares (base-URL checks, mode,
//!   credentials, limits).
//! - [`http`]: what the HTTP sinks share (rate limiter, `Retry-After` holds, circuit breaker,
//!   status mapping, per-ticket locks).
//! - [`note`]: the note's text, escaped for each system's markup, and its signature.
//! - [`stdout`]: one JSON line per decision on standard output.
//! - [`dead_letter`]: where records go that cannot be handled (a Kafka topic, or stderr).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::config::{ConfigError, Ctx};
use crate::decision::{Decision, SourceRef};
use crate::ticket::Ticket;

pub mod config;
pub mod dead_letter;
pub mod decisions_topic;
pub mod freshdesk;
pub mod http;
pub mod jira;
pub mod note;
pub mod rt;
pub mod servicenow;
pub mod stdout;
pub mod webhook;
pub mod zendesk;

/// The `[sink]` section: every sink configured here runs, each decision goes to all of them.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// Print each decision on standard output as one JSON line.
    pub stdout: bool,
    /// POST each decision to an HTTP endpoint.
    pub webhook: Option<webhook::config::WebhookSettings>,
    /// Tags and an internal note in Zendesk.
    pub zendesk: Option<zendesk::config::ZendeskSettings>,
    /// Labels and an internal comment in Jira Service Management.
    pub jira: Option<jira::config::JiraSettings>,
    /// A work note and a symptom field in ServiceNow.
    pub servicenow: Option<servicenow::config::ServiceNowSettings>,
    /// Tags and a private note in Freshdesk.
    pub freshdesk: Option<freshdesk::config::FreshdeskSettings>,
    /// Tags (a custom field) and a comment in Request Tracker.
    pub rt: Option<rt::config::RtSettings>,
}

impl SinkSettings {
    /// Whether any sink besides the decisions topic is configured.
    pub fn any(&self) -> bool {
        self.stdout
            || self.webhook.is_some()
            || self.zendesk.is_some()
            || self.jira.is_some()
            || self.servicenow.is_some()
            || self.freshdesk.is_some()
            || self.rt.is_some()
    }
}

/// `[sink]` as written: one table per sink.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    stdout: Option<bool>,
    webhook: Option<webhook::config::RawWebhook>,
    zendesk: Option<zendesk::config::RawZendesk>,
    jira: Option<jira::config::RawJira>,
    servicenow: Option<servicenow::config::RawServiceNow>,
    freshdesk: Option<freshdesk::config::RawFreshdesk>,
    rt: Option<rt::config::RawRt>,
}

impl RawSink {
    /// The `[sink]` section; `stdout` defaults to `default_stdout` (on without Kafka).
    pub(crate) fn validate(
        self,
        ctx: &Ctx<'_>,
        default_stdout: bool,
    ) -> Result<SinkSettings, ConfigError> {
        let webhook = self.webhook.map(|w| w.validate(ctx)).transpose()?;
        let zendesk = self.zendesk.map(|r| r.validate(ctx)).transpose()?;
        let jira = self.jira.map(|r| r.validate(ctx)).transpose()?;
        let servicenow = self.servicenow.map(|r| r.validate(ctx)).transpose()?;
        let freshdesk = self.freshdesk.map(|r| r.validate(ctx)).transpose()?;
        Ok(SinkSettings {
            stdout: self.stdout.unwrap_or(default_stdout),
            webhook,
            zendesk,
            jira,
            servicenow,
            freshdesk,
            rt: self.rt.map(|r| r.validate(ctx)).transpose()?,
        })
    }
}

/// The sinks configured in `[sink]` that post over HTTP: webhook, Zendesk, Jira, ServiceNow,
/// Freshdesk, RT. Post-back sinks render notes with `catalog` and mark tickets with `marker`.
pub fn build(
    settings: &SinkSettings,
    catalog: &Arc<Catalog>,
    marker: &str,
) -> Result<Vec<Arc<dyn TicketSink>>, SinkError> {
    let mut sinks: Vec<Arc<dyn TicketSink>> = Vec::new();
    if let Some(w) = &settings.webhook {
        sinks.push(Arc::new(webhook::WebhookSink::new(w)?));
    }
    if let Some(z) = &settings.zendesk {
        sinks.push(Arc::new(zendesk::ZendeskSink::new(
            z,
            catalog.clone(),
            marker,
        )?));
    }
    if let Some(j) = &settings.jira {
        sinks.push(Arc::new(jira::JiraSink::new(j, catalog.clone(), marker)?));
    }
    if let Some(n) = &settings.servicenow {
        sinks.push(Arc::new(servicenow::ServiceNowSink::new(
            n,
            catalog.clone(),
            marker,
        )?));
    }
    if let Some(f) = &settings.freshdesk {
        sinks.push(Arc::new(freshdesk::FreshdeskSink::new(
            f,
            catalog.clone(),
            marker,
        )?));
    }
    if let Some(r) = &settings.rt {
        sinks.push(Arc::new(rt::RtSink::new(r, catalog.clone(), marker)?));
    }
    Ok(sinks)
}

/// One decided ticket, as handed to each sink.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The ticket as decoded (id, text, tags, author, update stamp).
    pub ticket: &'a Ticket,
    /// What triage decided.
    pub decision: &'a Decision,
    /// The message it came from; with the ticket id, a key for de-duplication downstream.
    pub source: &'a SourceRef,
}

/// Why a sink did not take a decision, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later (rate limit, timeout, 5xx, broker unavailable).
    #[error("{message} (will retry)")]
    Retryable {
        /// What happened, without ticket text.
        message: String,
        /// How long the other side asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// This ticket cannot be delivered, ever (rejected as invalid, not found, too large).
    #[error("{message}")]
    Permanent {
        /// Why, without ticket text; it becomes the dead letter's message.
        message: String,
    },
    /// The sink cannot take anything any more (its output was closed): stop the worker.
    #[error("{message}")]
    Fatal {
        /// What happened.
        message: String,
    },
}

impl SinkError {
    /// A retryable error without a server-given delay.
    pub fn retry(message: impl Into<String>) -> SinkError {
        SinkError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> SinkError {
        SinkError::Permanent {
            message: message.into(),
        }
    }

    /// Whether trying the same ticket again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable { .. })
    }

    /// The delay the other side asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable class name for logs and dead-letter headers.
    pub fn class(&self) -> &'static str {
        match self {
            SinkError::Retryable { .. } => "sink_retryable",
            SinkError::Permanent { .. } => "sink_rejected",
            SinkError::Fatal { .. } => "sink_fatal",
        }
    }
}

/// Somewhere a decision is delivered. Object safe: the pipeline holds `Arc<dyn TicketSink>`.
#[async_trait]
pub trait TicketSink: Send + Sync {
    /// A short name for logs and dead-letter messages (`decisions-topic`, `webhook`, …).
    fn name(&self) -> &str;

    /// Deliver one decision. Called again for the same ticket after a retryable error, and
    /// possibly after a restart: implementations must not duplicate visible effects.
    async fn post(&self, delivery: Delivery<'_>) -> Result<(), SinkError>;

    /// Make everything posted so far durable (flush buffers); called once at shutdown.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
