//! The decision record: what triage decided about one ticket, as written by `triage classify`
//! and sent downstream.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::classify::{Classification, Finding};
use crate::ticket::{Ticket, Truncation};

/// Which catalogue decided.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CatalogueRef {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Content digest.
    pub digest: String,
}

/// One ticket's decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    /// The ticket id.
    pub id: String,
    /// Symptoms found, strongest first.
    pub symptoms: Vec<Finding>,
    /// Tags to add: every found symptom's tags, in order, without repeats.
    pub tags: Vec<String>,
    /// The suggested reply (empty when nothing was found).
    pub reply: String,
    /// The catalogue that decided.
    pub catalogue: CatalogueRef,
    /// Present when the ticket's text was over the scan limit and only its beginning was
    /// scanned (`worker.oversize = "scan-prefix"`): symptoms described further down were
    /// not looked for. Absent when the whole text was scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncation>,
}

impl Decision {
    /// Build the decision for `ticket` from its classification.
    pub fn new(catalog: &Catalog, ticket: &Ticket, c: Classification) -> Decision {
        let mut tags: Vec<String> = Vec::new();
        for f in &c.findings {
            if let Some(s) = catalog.symptoms.get(f.index) {
                for t in &s.tags {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
            }
        }
        let mut findings = c.findings;
        for f in &mut findings {
            if let Some(s) = catalog.symptoms.get(f.index) {
                f.why = crate::reply::explain(catalog, s, f);
            }
        }
        let reply = crate::reply::render(catalog, &findings);
        Decision {
            id: ticket.id.clone(),
            symptoms: findings,
            tags,
            reply,
            catalogue: CatalogueRef {
                name: catalog.name.clone(),
                version: catalog.version.clone(),
                digest: catalog.digest.clone(),
            },
            truncated: ticket.truncated,
        }
    }
}

/// Where a ticket event came from: the Kafka topic, partition and offset of its message (or,
/// for JSON Lines input, the file name, partition 0 and the line number).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
pub struct SourceRef {
    /// Topic (or input file name).
    pub topic: String,
    /// Partition (0 for a file).
    pub partition: i32,
    /// Offset (or 1-based line number).
    pub offset: i64,
}

/// A decision as sent downstream by the worker: the `triage classify` shape plus `source`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRecord<'a> {
    /// The decision.
    #[serde(flatten)]
    pub decision: &'a Decision,
    /// The message the decision was made for.
    pub source: &'a SourceRef,
}
