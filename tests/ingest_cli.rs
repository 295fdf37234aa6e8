//! `triage ingest` on the command line: help, --check-config, and start-up errors.

mod support;

use std::process::{Command, Output};

use support::ingest::ingest_section;

fn triage(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triage"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SECRETS: &[(&str, &str)] = &[
    ("T_ZENDESK_SECRET", "cli-zendesk-secret-value"),
    ("T_JIRA_SECRET", "cli-jira-secret-value"),
    ("T_GENERIC_SECRET", "cli-generic-secret-value"),
    ("T_SERVICENOW_TOKEN", "cli-servicenow-token-value"),
    ("T_FRESHDESK_PASSWORD", "cli-freshdesk-password-value"),
];

fn config(dir: &std::path::Path, extra: &str) -> String {
    let path = dir.join("triage.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ngroup_id = \"g\"\ninput_topic = \"tickets\"\ndecisions_topic = \"decisions\"\ndead_letter_topic = \"dlq\"\n{extra}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn help_teaches_the_routes_and_the_answers() {
    let out = triage(&["ingest", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for route in [
        "/webhooks/zendesk",
        "/webhooks/jira",
        "/webhooks/servicenow",
        "/webhooks/freshdesk",
        "/webhooks/generic",
        "/metrics",
        "Retry-After",
        "409",
        "deploy/triage.example.toml",
    ] {
        assert!(help.contains(route), "--help lacks {route}:\n{help}");
    }
    let out = triage(&["ingest"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_reads_the_secrets_and_describes_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &ingest_section(""));

    let out = triage(&["ingest", "--check-config", &cfg], SECRETS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("ok: {cfg}")), "{stdout}");
    assert!(stdout.contains("POST /webhooks/jira"), "{stdout}");
    assert!(stdout.contains("basic auth (user freshdesk)"), "{stdout}");
    for (_, secret) in SECRETS {
        assert!(!stdout.contains(secret) && !text(&out.stderr).contains(secret));
    }

    // A secret that is not there: the file, line and key, and what to do.
    let out = triage(&["ingest", "--check-config", &cfg], &SECRETS[..1]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{cfg}:13: ingest.jira.secret_env: environment variable T_JIRA_SECRET is not set"
        )),
        "{err}"
    );

    // The worker reads the same file without the webhook secrets.
    let out = triage(&["run", "--check-config", &cfg], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_file_without_an_ingest_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let out = triage(&["ingest", "--config", &cfg], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no [ingest] section"),
        "{}",
        text(&out.stderr)
    );
}

#[cfg(feature = "test-broker")]
#[test]
fn a_missing_topic_stops_start_up_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("triage.toml");
    let topic = support::unique("no-such-topic");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"g\"\ninput_topic = \"{topic}\"\ndead_letter_topic = \"dlq\"\n[sink]\nstdout = true\n{}",
            support::bootstrap(),
            ingest_section("")
        ),
    )
    .unwrap();
    let out = triage(&["ingest", "--config", path.to_str().unwrap()], SECRETS);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("topic {topic} does not exist")),
        "{err}"
    );
    assert!(err.contains("kafka.sh topics --create"), "{err}");
}
