//! Catalogue hot reload in the real binary: `triage run` reading tickets from a pipe, its
//! catalogue directory changed under it, SIGHUP, and an invalid catalogue refused while the
//! old one keeps serving. No broker needed: JSON Lines input goes through the same pipeline.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http_get, sample, server_addr};

const PRINTERS: &str = r#"[catalogue]
name = "printers"
version = "1"

[[symptom]]
id = "printer-jam"
title = "Printer jam"
keywords = ["paper jam", "paper jammed"]
checks = ["Open tray 2 and remove the paper."]
fix = "Clear the jam."
"#;

/// `triage run --input -` with decisions read back line by line.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    decisions: mpsc::Receiver<Value>,
    log: std::path::PathBuf,
}

impl Running {
    fn start(dir: &Path, config: &str) -> Running {
        let cfg = dir.join("triage.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("triage.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
            .args(["run", "--input", "-", "--config"])
            .arg(&cfg)
            .arg("--patterns")
            .arg(dir.join("patterns"))
            .env("TRIAGE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start triage run");
        let stdout = child.stdout.take().unwrap();
        let (tx, decisions) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Running {
            stdin: child.stdin.take(),
            child,
            decisions,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log holds `needle` `n` times.
    fn wait_log(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log_text().matches(needle).count() < n {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("triage exited ({s}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} (x{n}) in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send one ticket and return its decision.
    fn decide(&mut self, id: &str, body: &str) -> Value {
        let line = serde_json::json!({"id": id, "body": body}).to_string();
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let d = self
            .decisions
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no decision for {id}:\n{}", self.log_text()));
        assert_eq!(d["id"], id);
        d
    }

    fn addr(&mut self) -> String {
        self.wait_log("serving /metrics", 1);
        server_addr(&self.log_text()).unwrap()
    }

    fn signal(&self, sig: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Close the input and wait for a clean exit.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "{s}\n{}", self.log_text());
                return self.log_text();
            }
            assert!(
                Instant::now() < deadline,
                "did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ids(d: &Value) -> Vec<&str> {
    d["symptoms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

fn digest(d: &Value) -> String {
    d["catalogue"]["digest"].as_str().unwrap().to_string()
}

/// A catalogue directory with the project's catalogue in it.
fn catalogue_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let patterns = dir.path().join("patterns");
    std::fs::create_dir(&patterns).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns");
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, patterns.join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

const JAM: &str = "The printer on floor 3 reports a paper jam in tray 2 again.";
const PIN: &str = "I typed my security key PIN wrong too many times and now it is blocked.";

#[tokio::test]
async fn changed_files_and_sighup_reload_the_catalogue_and_an_invalid_one_is_refused() {
    let dir = catalogue_dir();
    let printers = dir.path().join("patterns/printers.toml");
    let mut w = Running::start(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[catalogue]\nwatch_interval_ms = 100\n",
    );
    let addr = w.addr();
    let metrics = || async { http_get(&addr, "/metrics").await.1 };

    let d0 = w.decide("t1", JAM);
    assert!(
        ids(&d0).is_empty(),
        "the passkey catalogue knows no printers"
    );
    assert_eq!(ids(&w.decide("t2", PIN)), ["pin-locked"]);

    // A new catalogue file: picked up without a signal, and used for the next ticket.
    std::fs::write(&printers, PRINTERS).unwrap();
    w.wait_log("catalogue reloaded", 1);
    let d1 = w.decide("t3", JAM);
    assert_eq!(ids(&d1), ["printer-jam"]);
    assert_ne!(digest(&d1), digest(&d0));
    assert_eq!(d1["catalogue"]["name"], "passkeys+printers");
    assert_eq!(ids(&w.decide("t4", PIN)), ["pin-locked"]);
    let m = metrics().await;
    assert_eq!(
        sample(&m, "triage_catalogue_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "triage_tickets_classified_total{symptom=\"printer-jam\"}"
        ),
        Some(1.0)
    );
    assert!(m.contains(&format!("digest=\"{}\"", digest(&d1))), "{m}");
    assert!(!m.contains(&format!("digest=\"{}\"", digest(&d0))), "{m}");

    // An invalid file: refused with path:line: problems; the previous catalogue still serves.
    let broken = PRINTERS.replace("keywords = [", "keywords = 3 [");
    let bad_line = broken.lines().position(|l| l.contains("= 3 [")).unwrap() + 1;
    std::fs::write(&printers, &broken).unwrap();
    w.wait_log("catalogue reload refused", 1);
    let log = w.log_text();
    assert!(
        log.contains(&format!("{}:{bad_line}: ", printers.display())),
        "{log}"
    );
    let d2 = w.decide("t5", JAM);
    assert_eq!(ids(&d2), ["printer-jam"]);
    assert_eq!(digest(&d2), digest(&d1));
    let m = metrics().await;
    assert_eq!(
        sample(&m, "triage_catalogue_reloads_total{result=\"error\"}"),
        Some(1.0)
    );
    assert!(m.contains(&format!("digest=\"{}\"", digest(&d1))), "{m}");
    assert_eq!(http_get(&addr, "/readyz").await.0, 200, "still ready");

    // Fixed again (a new version), then SIGHUP reloads the same files once more.
    std::fs::write(
        &printers,
        PRINTERS.replace("version = \"1\"", "version = \"2\""),
    )
    .unwrap();
    w.wait_log("catalogue reloaded", 2);
    let d3 = w.decide("t6", JAM);
    assert_eq!(d3["catalogue"]["version"], "1.0.0+2");
    w.signal(libc::SIGHUP);
    w.wait_log("catalogue reloaded", 3);
    assert!(w.log_text().contains("reason=\"SIGHUP\""));
    let m = metrics().await;
    assert_eq!(
        sample(&m, "triage_catalogue_reloads_total{result=\"ok\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "triage_tickets_classified_total{symptom=\"printer-jam\"}"
        ),
        Some(3.0)
    );
    assert_eq!(sample(&m, "triage_tickets_unmatched_total"), Some(1.0));
    let log = w.finish();
    assert!(log.contains("received=6 decided=6"), "{log}");
}

#[tokio::test]
async fn without_watching_only_sighup_reloads() {
    let dir = catalogue_dir();
    let printers = dir.path().join("patterns/printers.toml");
    let mut w = Running::start(
        dir.path(),
        "[catalogue]\nwatch = false\nwatch_interval_ms = 100\n",
    );
    assert!(ids(&w.decide("t1", JAM)).is_empty());
    std::fs::write(&printers, PRINTERS).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ids(&w.decide("t2", JAM)).is_empty(), "not watching");
    w.signal(libc::SIGHUP);
    w.wait_log("catalogue reloaded", 1);
    assert_eq!(ids(&w.decide("t3", JAM)), ["printer-jam"]);
    w.finish();
}
