//! How well a catalogue does on labelled tickets: per-symptom precision, recall and F1,
//! micro and macro F1, the false-positive rate on tickets about none of the symptoms, and the
//! tickets it got wrong, with their evidence.
//!
//! Two views say where the errors go, so the next gap is visible at a glance:
//! - [`Report::confusion`]: for each pair of symptoms X != Y, the tickets labelled X (and not
//!   Y) on which Y was found, whether instead of X or as well. Only non-zero pairs are listed,
//!   most tickets first. A ticket counts once per pair; a ticket with two labels and two wrong
//!   findings counts in four pairs.
//! - [`Report::off_topic_by_symptom`]: the tickets labelled `[]` on which something was found,
//!   grouped by each symptom found, most tickets first. A ticket on which two symptoms were
//!   found is in both groups, so the counts add up to the false positives of those symptoms on
//!   off-topic tickets, not to [`Report::off_topic_false_positives`].
//!
//! Ticket ids in both views are in input order. Ties are ordered by symptom id, so the same
//! input always gives the same report. A label or finding given twice on a ticket counts once.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classify::{Classifier, Finding};
use crate::ticket::Ticket;

/// Counts and scores for one symptom.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SymptomStats {
    /// Symptom id.
    pub id: String,
    /// Tickets labelled with it.
    pub support: usize,
    /// Found and labelled.
    pub tp: usize,
    /// Found, not labelled.
    pub fp: usize,
    /// Labelled, not found.
    pub fn_: usize,
    /// tp / (tp + fp), 1 when nothing was found.
    pub precision: f64,
    /// tp / (tp + fn), 1 when nothing was labelled.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// A ticket whose found symptoms differ from its labels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Miss {
    /// Ticket id.
    pub id: String,
    /// Labels.
    pub expected: Vec<String>,
    /// Found.
    pub found: Vec<String>,
    /// The findings, with evidence.
    pub findings: Vec<Finding>,
}

/// Tickets labelled with one symptom on which another, not labelled, was found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Confusion {
    /// The label (symptom id).
    pub expected: String,
    /// The symptom found though not labelled.
    pub found: String,
    /// Tickets labelled `expected` on which `found` was found.
    pub count: usize,
    /// Of those, tickets on which `expected` was not found: `found` came instead, not as well.
    pub instead: usize,
    /// Their ids, in input order.
    pub tickets: Vec<String>,
}

/// Off-topic tickets (labelled `[]`) on which one symptom was found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OffTopicGroup {
    /// The symptom found.
    pub symptom: String,
    /// How many off-topic tickets it was found on.
    pub count: usize,
    /// Their ids, in input order.
    pub tickets: Vec<String>,
}

/// The evaluation of a catalogue over labelled tickets.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Tickets evaluated.
    pub tickets: usize,
    /// Per symptom, in catalogue order.
    pub symptoms: Vec<SymptomStats>,
    /// F1 over all decisions pooled.
    pub micro_f1: f64,
    /// Mean of the per-symptom F1 over symptoms with support or predictions.
    pub macro_f1: f64,
    /// Tickets labelled `[]`.
    pub off_topic: usize,
    /// Of those, tickets where something was found.
    pub off_topic_false_positives: usize,
    /// off_topic_false_positives / off_topic (0 when there are none).
    pub false_positive_rate: f64,
    /// Tickets whose result differs from the labels.
    pub misclassified: Vec<Miss>,
    /// Which symptoms were found on tickets labelled with another, most tickets first (see
    /// the module docs).
    pub confusion: Vec<Confusion>,
    /// Off-topic false positives grouped by the symptom found, most tickets first.
    pub off_topic_by_symptom: Vec<OffTopicGroup>,
}

/// Collects [`Report::confusion`] and [`Report::off_topic_by_symptom`] ticket by ticket.
#[derive(Default)]
struct Errors {
    confusion: BTreeMap<(String, String), Confusion>,
    off_topic: BTreeMap<String, OffTopicGroup>,
}

impl Errors {
    /// Record one ticket: its labels and the symptoms found (duplicates in either count once).
    fn add(&mut self, id: &str, labels: &[&str], found: &[&str]) {
        let mut labels = labels.to_vec();
        labels.sort_unstable();
        labels.dedup();
        let mut found = found.to_vec();
        found.sort_unstable();
        found.dedup();
        if labels.is_empty() {
            for y in &found {
                let g = self
                    .off_topic
                    .entry(y.to_string())
                    .or_insert_with(|| OffTopicGroup {
                        symptom: y.to_string(),
                        count: 0,
                        tickets: Vec::new(),
                    });
                g.count += 1;
                g.tickets.push(id.to_string());
            }
            return;
        }
        for x in &labels {
            let missed = !found.contains(x);
            for y in found.iter().filter(|y| !labels.contains(y)) {
                let c = self
                    .confusion
                    .entry((x.to_string(), y.to_string()))
                    .or_insert_with(|| Confusion {
                        expected: x.to_string(),
                        found: y.to_string(),
                        count: 0,
                        instead: 0,
                        tickets: Vec::new(),
                    });
                c.count += 1;
                c.instead += usize::from(missed);
                c.tickets.push(id.to_string());
            }
        }
    }

    /// Both views, most tickets first; ties keep the maps' order (by symptom ids).
    fn finish(self) -> (Vec<Confusion>, Vec<OffTopicGroup>) {
        let mut confusion: Vec<Confusion> = self.confusion.into_values().collect();
        confusion.sort_by_key(|c| std::cmp::Reverse(c.count));
        let mut off: Vec<OffTopicGroup> = self.off_topic.into_values().collect();
        off.sort_by_key(|g| std::cmp::Reverse(g.count));
        (confusion, off)
    }
}

fn ratio(a: usize, b: usize, empty: f64) -> f64 {
    if b == 0 {
        empty
    } else {
        a as f64 / b as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Labels that name no symptom of the catalogue, as `(ticket id, label)`.
pub fn unknown_labels<'a>(c: &Classifier, tickets: &'a [Ticket]) -> Vec<(&'a str, &'a str)> {
    let cat = c.catalog();
    tickets
        .iter()
        .flat_map(|t| {
            t.labels
                .iter()
                .flatten()
                .filter(|l| cat.symptom(l).is_none())
                .map(move |l| (t.id.as_str(), l.as_str()))
        })
        .collect()
}

/// Evaluate `c` on `tickets` (those without labels are skipped). `progress` is called with
/// the number done so far.
pub fn evaluate(c: &Classifier, tickets: &[Ticket], mut progress: impl FnMut(usize)) -> Report {
    let cat = c.catalog();
    let n = cat.symptoms.len();
    let (mut tp, mut fp, mut fn_, mut support) = (vec![0; n], vec![0; n], vec![0; n], vec![0; n]);
    let mut off_topic = 0;
    let mut off_fp = 0;
    let mut misclassified = Vec::new();
    let mut errors = Errors::default();
    let mut count = 0;
    for (i, t) in tickets.iter().enumerate() {
        let Some(labels) = &t.labels else { continue };
        count += 1;
        let found = c.classify(t.text());
        let got: Vec<&str> = found.ids();
        for (si, s) in cat.symptoms.iter().enumerate() {
            let want = labels.iter().any(|l| l == &s.id);
            let have = got.contains(&s.id.as_str());
            support[si] += usize::from(want);
            match (want, have) {
                (true, true) => tp[si] += 1,
                (false, true) => fp[si] += 1,
                (true, false) => fn_[si] += 1,
                _ => {}
            }
        }
        if labels.is_empty() {
            off_topic += 1;
            off_fp += usize::from(!got.is_empty());
        }
        let mut a: Vec<&str> = labels.iter().map(String::as_str).collect();
        errors.add(&t.id, &a, &got);
        let mut b = got.clone();
        a.sort();
        b.sort();
        if a != b {
            misclassified.push(Miss {
                id: t.id.clone(),
                expected: labels.clone(),
                found: got.iter().map(|s| s.to_string()).collect(),
                findings: found.findings.clone(),
            });
        }
        if i % 64 == 0 {
            progress(i);
        }
    }
    progress(tickets.len());
    let mut symptoms = Vec::new();
    let mut macro_sum = 0.0;
    let mut macro_n = 0;
    for (si, s) in cat.symptoms.iter().enumerate() {
        let p = ratio(tp[si], tp[si] + fp[si], 1.0);
        let r = ratio(tp[si], tp[si] + fn_[si], 1.0);
        let f = f1(p, r);
        if support[si] > 0 || fp[si] > 0 {
            macro_sum += f;
            macro_n += 1;
        }
        symptoms.push(SymptomStats {
            id: s.id.clone(),
            support: support[si],
            tp: tp[si],
            fp: fp[si],
            fn_: fn_[si],
            precision: p,
            recall: r,
            f1: f,
        });
    }
    let (stp, sfp, sfn): (usize, usize, usize) =
        (tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    let micro = f1(ratio(stp, stp + sfp, 1.0), ratio(stp, stp + sfn, 1.0));
    let (confusion, off_topic_by_symptom) = errors.finish();
    Report {
        tickets: count,
        symptoms,
        micro_f1: micro,
        macro_f1: if macro_n == 0 {
            1.0
        } else {
            macro_sum / macro_n as f64
        },
        off_topic,
        off_topic_false_positives: off_fp,
        false_positive_rate: ratio(off_fp, off_topic, 0.0),
        misclassified,
        confusion,
        off_topic_by_symptom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_of_perfect_and_empty() {
        assert_eq!(f1(1.0, 1.0), 1.0);
        assert_eq!(f1(0.0, 0.0), 0.0);
        assert!((f1(0.5, 1.0) - 2.0 / 3.0).abs() < 1e-9);
    }

    fn pairs(c: &[Confusion]) -> Vec<(&str, &str, usize, usize, Vec<&str>)> {
        c.iter()
            .map(|c| {
                let ids = c.tickets.iter().map(String::as_str).collect();
                (
                    c.expected.as_str(),
                    c.found.as_str(),
                    c.count,
                    c.instead,
                    ids,
                )
            })
            .collect()
    }

    fn groups(g: &[OffTopicGroup]) -> Vec<(&str, usize, Vec<&str>)> {
        g.iter()
            .map(|g| {
                let ids = g.tickets.iter().map(String::as_str).collect();
                (g.symptom.as_str(), g.count, ids)
            })
            .collect()
    }

    #[test]
    fn confusion_counts_pairs_instead_and_as_well() {
        let mut e = Errors::default();
        // Right: no pair.
        e.add("t1", &["a"], &["a"]);
        // b instead of a.
        e.add("t2", &["a"], &["b"]);
        // b as well as a; c instead of d: pairs a->b, a->c, d->b, d->c.
        e.add("t3", &["a", "d"], &["a", "b", "c"]);
        // Nothing found: a miss, but no confusion.
        e.add("t4", &["a"], &[]);
        // Duplicates count once.
        e.add("t5", &["c", "c"], &["b", "b"]);
        let (c, off) = e.finish();
        assert_eq!(
            pairs(&c),
            vec![
                ("a", "b", 2, 1, vec!["t2", "t3"]),
                ("a", "c", 1, 0, vec!["t3"]),
                ("c", "b", 1, 1, vec!["t5"]),
                ("d", "b", 1, 1, vec!["t3"]),
                ("d", "c", 1, 1, vec!["t3"]),
            ]
        );
        assert!(off.is_empty());
    }

    #[test]
    fn off_topic_false_positives_are_grouped_by_each_symptom_found() {
        let mut e = Errors::default();
        e.add("r1", &[], &["x"]);
        e.add("r2", &[], &[]);
        e.add("r3", &[], &["y", "x"]);
        e.add("r4", &[], &["z"]);
        e.add("r5", &[], &["x"]);
        // A labelled ticket is no off-topic false positive.
        e.add("r6", &["y"], &["x"]);
        let (c, off) = e.finish();
        assert_eq!(
            groups(&off),
            vec![
                ("x", 3, vec!["r1", "r3", "r5"]),
                ("y", 1, vec!["r3"]),
                ("z", 1, vec!["r4"]),
            ]
        );
        assert_eq!(pairs(&c), vec![("y", "x", 1, 1, vec!["r6"])]);
    }

    #[test]
    fn evaluate_reports_confusion_and_off_topic_groups() {
        let c = Classifier::new(crate::catalog::Catalog::builtin()).unwrap();
        let ticket = |id: &str, body: &str, labels: &[&str]| Ticket {
            id: id.into(),
            body: body.into(),
            labels: Some(labels.iter().map(|l| l.to_string()).collect()),
            ..Ticket::default()
        };
        let tickets = [
            ticket("1", "my YubiKey PIN is blocked", &[]),
            ticket("2", "the QR code passkey sign-in fails", &["sync-failed"]),
            ticket("3", "printer out of toner", &[]),
            ticket("4", "my YubiKey PIN is blocked again", &[]),
            ticket("5", "my YubiKey PIN is blocked", &["pin-locked"]),
        ];
        let r = evaluate(&c, &tickets, |_| {});
        assert_eq!(
            pairs(&r.confusion),
            vec![("sync-failed", "cross-device-failed", 1, 1, vec!["2"])]
        );
        assert_eq!(
            groups(&r.off_topic_by_symptom),
            vec![("pin-locked", 2, vec!["1", "4"])]
        );
        assert_eq!(r.off_topic_false_positives, 2);
    }
}
