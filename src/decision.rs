//! The decision record: what triage decided about one ticket, as written by `triage classify`
//! and sent downstream.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::classify::{Classification, Finding};
use crate::ticket::Ticket;

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
        let reply = crate::reply::render(catalog, &c.findings);
        Decision {
            id: ticket.id.clone(),
            symptoms: c.findings,
            tags,
            reply,
            catalogue: CatalogueRef {
                name: catalog.name.clone(),
                version: catalog.version.clone(),
                digest: catalog.digest.clone(),
            },
        }
    }
}
