//! triage's engine: finds a catalogue's symptoms in help-desk tickets, with evidence, and
//! writes the suggested reply and the decision record. No async runtime, no Kafka, no HTTP, no
//! I/O beyond reading catalogue files: the worker, the command line, the benchmark and the fuzz
//! targets all build on it.
//!
//! # Layout
//! - [`catalog`]: reads and validates catalogue files into a [`catalog::Catalog`]; errors as
//!   `path:line: message`. The passkey catalogue (`patterns/passkeys.toml` in the workspace) is
//!   built in as [`catalog::BUILTIN_PASSKEYS`].
//! - [`text`]: normalisation and the typo lexicon, shared by the catalogue (which normalises its
//!   phrases as it loads them) and the classifier, so that neither imports the other.
//! - [`classify`]: quoted-reply and signature zones, negation, matching and scoring (it
//!   re-exports [`text`]'s modules as `classify::normalize` and `classify::fuzzy`).
//! - [`reply`]: turns found symptoms into the suggested reply / internal note.
//! - [`ticket`]: the [`ticket::Ticket`] type and its decoding from JSON Lines input.
//! - [`decision`]: the decision record written for each ticket (the `classify` output shape).
//! - [`eval`]: precision, recall and F1 of a catalogue over labelled tickets.

pub mod catalog;
pub mod classify;
pub mod decision;
pub mod eval;
pub mod reply;
pub mod text;
pub mod ticket;
