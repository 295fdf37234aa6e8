//! How well a catalogue does on labelled tickets: per-symptom precision, recall and F1,
//! micro and macro F1, the false-positive rate on tickets about none of the symptoms, and the
//! tickets it got wrong, with their evidence.

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
}
