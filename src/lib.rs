//! triage finds known symptoms in help-desk tickets, tags the tickets and writes the agent a
//! suggested first reply.
//!
//! A catalogue of symptoms (`patterns/*.toml`: keyword phrases, regexes, co-occurrence and
//! exclusion rules, first checks, likely fix, reply template) is compiled once into a
//! [`classify::Classifier`]. Each ticket's subject and body are normalised, scanned with one
//! Aho-Corasick automaton, and scored per symptom; every symptom found carries its evidence as
//! byte offsets into the original text. The engine knows nothing of any particular product:
//! the passkey catalogue built into the binary is data like any other.
//!
//! # Layout
//! The engine is the crate `triage-engine` (`crates/triage-engine/`): no async runtime, no
//! Kafka, no HTTP. Its modules are re-exported here under the same names, so
//! `triage::classify::Classifier` and `triage_engine::classify::Classifier` are one type.
//! - [`catalog`]: reads and validates catalogue files into a [`catalog::Catalog`]; errors as
//!   `path:line: message`. The passkey catalogue (`patterns/passkeys.toml`) is embedded.
//! - [`text`]: normalisation and the typo lexicon, shared by the catalogue and the classifier.
//! - [`classify`]: zones (quoted replies, signatures), negation, matching and scoring. No I/O.
//! - [`reply`]: turns found symptoms into the suggested reply / internal note.
//! - [`ticket`]: the [`ticket::Ticket`] type and its decoding from JSON Lines input.
//! - [`decision`]: the decision record written for each ticket (the `classify` output shape).
//! - [`eval`]: precision, recall and F1 of a catalogue over labelled tickets.
//!
//! The rest is this crate: the worker, the ingest server and what they share.
//! - [`config`]: `triage.toml` -> [`config::Settings`] for the worker, and the sections every
//!   part shares (`[kafka]`, `[input]`, `[worker]`, `[server]`, `[log]`, `[catalogue]`);
//!   `config/locate.rs` words every error as `path:line: key: message`, `config/secret.rs`
//!   reads secrets from the environment or files. Other sections are read next to their code.
//! - [`worker`]: wiring for `triage run`: settings -> source, sinks, dead letters, server and
//!   catalogue reload, then the pipeline.
//! - [`pipeline`]: the run loop of `triage run`: recv -> decode -> classify -> post -> store
//!   offset, with back-pressure, retries, dead letters and a bounded drain on shutdown.
//! - [`shutdown`]: SIGTERM / SIGINT -> the shutdown token passed to the worker and to
//!   `triage ingest`; the binary decides what a second signal does.
//! - [`source`]: where records come from (the [`source::Source`] trait and its acks): a Kafka
//!   consumer group, or JSON Lines.
//! - [`kafka`]: the Kafka side: client configuration (`config`), the start-up probe (`probe`),
//!   the offset tracker that carries the at-least-once guarantee (`offsets`), and the consumer
//!   with its rebalance callbacks (`consumer`).
//! - [`sink`]: where decisions go (the [`sink::TicketSink`] trait): decisions topic, signed
//!   webhook, stdout, and the post-back sinks that write tags and an internal note to Zendesk,
//!   Jira Service Management, ServiceNow, Freshdesk and Request Tracker (shared HTTP layer:
//!   rate limiter, `Retry-After` holds, circuit breaker); and dead letters. `sink/mod.rs` reads
//!   `[sink]` and builds the sinks, the one place that names them all; each
//!   `sink/<name>/config.rs` reads and checks `[sink.<name>]`, and `sink/config.rs` what those
//!   sections share.
//! - [`ingest`]: `triage ingest`, the HTTP server that verifies help-desk webhooks and
//!   produces them to the input topic, answering 2xx only once Kafka has acknowledged;
//!   `ingest/config.rs` reads and checks the `[ingest]` tables.
//! - [`metrics`]: the Prometheus registry and one named method per event
//!   (`ticket_classified`, `dead_lettered`, …); call sites never build metric names.
//! - [`server`]: `/metrics`, `/healthz` and `/readyz` over HTTP, and the readiness state.
//! - [`reload`]: the catalogue in service, swapped atomically on SIGHUP or a file change
//!   after the new one is validated.
//! - [`workbench`]: the catalogue author's tools: `triage workbench` (a local page to try
//!   tickets and edits and measure them), `triage schema`, `triage suggest`.
//! - `main.rs`: the `triage` command line.

// The engine is its own crate (crates/triage-engine); its modules keep their paths here.
pub use triage_engine::{catalog, classify, decision, eval, reply, text, ticket};

pub mod config;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod workbench;
pub mod worker;
