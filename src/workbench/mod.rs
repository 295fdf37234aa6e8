//! The catalogue author's tools: `triage schema` (a JSON Schema of the catalogue format).

pub mod schema;
