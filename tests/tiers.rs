//! Prints one line saying which test tiers this `cargo test` leaves out and how to run them,
//! so that a plain run never looks like the whole suite. `scripts/test` turns every tier on
//! and checks this line.

/// (tier, cargo feature, what it needs)
const TIERS: &[(&str, bool, &str, &str)] = &[
    (
        "broker",
        cfg!(feature = "test-broker"),
        "test-broker",
        "a Kafka broker at KAFKA_BOOTSTRAP_SERVERS",
    ),
    (
        "prometheus",
        cfg!(feature = "test-prometheus"),
        "test-prometheus",
        "promtool and prometheus on PATH",
    ),
    (
        "browser",
        cfg!(feature = "test-browser"),
        "test-browser",
        "chromium, chromium-driver and Selenium",
    ),
    (
        "rt",
        cfg!(feature = "test-rt"),
        "test-rt",
        "Request Tracker at RT_URL (deploy/rt/rt.sh) and the Kafka broker",
    ),
];

fn main() {
    let off: Vec<_> = TIERS.iter().filter(|t| !t.1).collect();
    if off.is_empty() {
        let names: Vec<_> = TIERS.iter().map(|t| t.0).collect();
        println!("test tiers: all run ({})", names.join(", "));
        return;
    }
    let names: Vec<_> = off.iter().map(|t| format!("{} ({})", t.0, t.3)).collect();
    let features: Vec<_> = off.iter().map(|t| t.2).collect();
    println!(
        "test tiers NOT RUN: {}; run `scripts/test` (starts what they need), or `cargo test --features {}` with them at hand",
        names.join(", "),
        features.join(",")
    );
}
