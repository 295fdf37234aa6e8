//! `triage run` without Kafka: JSON Lines through the same pipeline, and `--check-config`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn triage(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn run_on_a_file_prints_what_classify_prints() {
    let run = triage(&["run", "--input", "samples/tickets.jsonl"], b"");
    let classify = triage(&["classify", "samples/tickets.jsonl"], b"");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        String::from_utf8(classify.stdout).unwrap()
    );
}

#[test]
fn bad_lines_are_reported_with_their_line_and_the_rest_is_decided() {
    let input = b"{\"id\": \"a\", \"body\": \"my security key PIN is blocked\"}\nnot json\n\n{\"id\": \"b\"}\n{\"id\": \"c\", \"body\": \"caf\xe9\"}\n{\"id\": \"d\", \"body\": \"printer jam\"}\n";
    let out = triage(&["run", "--input", "-"], input);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["a", "d"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("<stdin>:2: invalid_json:"), "{stderr}");
    assert!(stderr.contains("<stdin>:4: missing_body:"), "{stderr}");
    assert!(stderr.contains("<stdin>:5: invalid_utf8:"), "{stderr}");
    assert!(
        !stderr.contains("<stdin>:3"),
        "blank lines are no records: {stderr}"
    );
}

#[test]
fn check_config_accepts_the_example_and_names_file_line_and_key_of_errors() {
    let ok = triage(
        &["run", "--check-config", "deploy/triage.example.toml"],
        b"",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: deploy/triage.example.toml"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("triage.toml");
    std::fs::write(&bad, "[worker]\nmax_in_flight = 100\ndrain_timeout = 5\n").unwrap();
    let out = triage(&["run", "--check-config", bad.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{}:3: worker", bad.display())),
        "{err}"
    );
    assert!(err.contains("unknown field `drain_timeout`"), "{err}");
}

#[test]
fn run_without_input_or_kafka_says_what_to_give() {
    let out = triage(&["run"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to read"));
}
