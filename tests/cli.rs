//! The `triage classify | check | eval` command line, run as a user would run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn triage(args: &[&str], stdin: &str, dir: &std::path::Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe: that is not an error here.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn classify_writes_one_decision_per_ticket_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = concat!(
        r#"{"id": "t1", "subject": "YubiKey", "body": "my YubiKey PIN is blocked", "extra": true}"#,
        "\n",
        r#"{"id": 2, "subject": "printer", "body": "the printer on floor 3 is out of toner"}"#,
        "\n"
    );
    let out = triage(&["classify"], input, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], "t1");
    assert_eq!(lines[1]["id"], "2");
    let s = &lines[0]["symptoms"][0];
    assert_eq!(s["id"], "pin-locked");
    assert!(s["score"].as_f64().unwrap() >= 1.0);
    let ev = &s["evidence"][0];
    for key in ["field", "start", "end", "text", "rule"] {
        assert!(!ev[key].is_null(), "evidence lacks {key}: {ev}");
    }
    assert!(lines[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "passkey-pin-locked"));
    let reply = lines[0]["reply"].as_str().unwrap();
    assert!(reply.contains("1. "), "numbered checks: {reply}");
    assert!(reply.contains("factory reset"), "likely fix: {reply}");
    assert_eq!(lines[0]["catalogue"]["name"], "passkeys");
    assert!(lines[0]["catalogue"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(lines[1]["symptoms"].as_array().unwrap().len(), 0);
    assert_eq!(lines[1]["reply"], "");
}

#[test]
fn bad_lines_are_reported_with_their_number_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let input = "{\"id\": \"a\", \"body\": \"pin locked on my security key\"}\nnot json\n{\"body\": \"no id\"}\n{\"id\": \"b\", \"body\": \"\"}\n{\"id\": \"c\", \"body\": \"fine\"}\n";
    let out = triage(&["classify", "-"], input, dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "skipped lines make the exit status 1"
    );
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>:2: invalid JSON"), "{err}");
    assert!(err.contains("<stdin>:3: missing `id`"), "{err}");
    assert!(err.contains("<stdin>:4: ticket b: no text"), "{err}");
    let ids: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["a", "c"]);
}

#[test]
fn text_mode_treats_input_as_one_body() {
    let dir = tempfile::tempdir().unwrap();
    let out = triage(
        &["classify", "--text"],
        "Mein Sicherheitsschlüssel:\nPIN gesperrt.",
        dir.path(),
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["symptoms"][0]["id"], "pin-locked");
}

#[test]
fn human_format_highlights_evidence_only_with_colour() {
    let dir = tempfile::tempdir().unwrap();
    let input = r#"{"id": "h1", "body": "my YubiKey PIN is blocked"}"#;
    let plain = triage(
        &["classify", "--format", "human", "--color", "never"],
        input,
        dir.path(),
    );
    let out = text(&plain.stdout);
    assert!(out.contains("ticket h1"), "{out}");
    assert!(out.contains("pin-locked"), "{out}");
    assert!(out.contains("suggested reply"), "{out}");
    assert!(!out.contains('\x1b'), "no escape codes with --color never");
    let coloured = triage(
        &["classify", "--format", "human", "--color", "always"],
        input,
        dir.path(),
    );
    assert!(
        text(&coloured.stdout).contains("\x1b[1;31m"),
        "evidence highlighted"
    );
}

#[test]
fn check_passes_the_shipped_catalogue() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = triage(
        &["check", &format!("{root}/patterns")],
        "",
        std::path::Path::new(root),
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).starts_with("ok: "));
}

#[test]
fn check_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("patterns");
    std::fs::create_dir(&pat).unwrap();
    std::fs::write(
        pat.join("a.toml"),
        "[catalogue]\nname = \"a\"\nversion = \"1\"\n\n[[symptom]]\nid = \"Bad\"\ntitle = \"t\"\nkeywords = [\"\"]\nchecks = [\"c\"]\nfix = \"f\"\n",
    )
    .unwrap();
    std::fs::write(pat.join("b.toml"), "[catalogue\n").unwrap();
    let out = triage(&["check", "patterns"], "", dir.path());
    assert_eq!(out.status.code(), Some(1));
    let o = text(&out.stdout);
    assert!(
        o.contains("patterns/a.toml:6: symptom `Bad`: field `id`"),
        "{o}"
    );
    assert!(
        o.contains("patterns/a.toml:8: symptom `Bad`: field `keywords`"),
        "{o}"
    );
    assert!(o.contains("patterns/b.toml:1: "), "{o}");
    // classify refuses to run on it, and says how to see every problem.
    let out = triage(&["classify", "--text"], "x", dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("triage check patterns"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_reports_scores_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.jsonl");
    std::fs::write(
        &labels,
        concat!(
            r#"{"id": "1", "body": "my YubiKey PIN is blocked", "labels": ["pin-locked"]}"#,
            "\n",
            r#"{"id": "2", "body": "printer out of toner", "labels": []}"#,
            "\n",
            r#"{"id": "3", "body": "the QR code passkey sign-in fails", "labels": ["sync-failed"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = triage(
        &["eval", "--labels", labels.to_str().unwrap()],
        "",
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("macro F1"), "{o}");
    assert!(
        o.contains("3: expected [sync-failed], found [cross-device-failed]"),
        "{o}"
    );
    let pair = o
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("sync-failed -> cross-device-failed")
        })
        .unwrap_or_else(|| panic!("no confusion pair in:\n{o}"));
    assert!(pair.ends_with("1 (1 instead): 3"), "{pair}");
    assert!(
        o.find("confusion (").unwrap() < o.find("misclassified").unwrap(),
        "{o}"
    );
    let gated = triage(
        &[
            "eval",
            "--labels",
            labels.to_str().unwrap(),
            "--min-macro-f1",
            "0.99",
        ],
        "",
        dir.path(),
    );
    assert_eq!(gated.status.code(), Some(1));
    assert!(text(&gated.stderr).contains("gate failed: macro F1"));
    let json = triage(
        &["eval", "--labels", labels.to_str().unwrap(), "--json"],
        "",
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["tickets"], 3);
    assert_eq!(v["off_topic"], 1);
    assert_eq!(v["false_positive_rate"], 0.0);
    assert_eq!(
        v["confusion"],
        serde_json::json!([{"expected": "sync-failed", "found": "cross-device-failed",
                            "count": 1, "instead": 1, "tickets": ["3"]}])
    );
    assert_eq!(v["off_topic_by_symptom"], serde_json::json!([]));
}

#[test]
fn eval_rejects_unknown_labels() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("l.jsonl");
    std::fs::write(
        &labels,
        r#"{"id": "1", "body": "x y z", "labels": ["no-such-symptom"]}"#,
    )
    .unwrap();
    let out = triage(
        &["eval", "--labels", labels.to_str().unwrap()],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("label `no-such-symptom` is no symptom"));
}
