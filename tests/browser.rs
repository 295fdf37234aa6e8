//! The workbench page in a real browser: Debian's chromium driven through chromium-driver by
//! Selenium (tests/browser/workbench.py). Test tier `browser` (cargo feature `test-browser`;
//! `scripts/test` installs chromium, chromium-driver and Selenium in a virtualenv).
//!
//! The Python interpreter with Selenium: `TRIAGE_SELENIUM_PYTHON`, else
//! `$CARGO_TARGET_DIR/selenium-venv/bin/python` (or `target/…`). Screenshots of the three views
//! go to `TRIAGE_SCREENSHOT_DIR`, else to the target directory (`docs/` holds copies).
#![cfg(feature = "test-browser")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[test]
fn the_workbench_page_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("TRIAGE_SELENIUM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("selenium-venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run scripts/test, or `python3 -m venv {0}/../.. && pip install selenium`, or set TRIAGE_SELENIUM_PYTHON",
        python.display()
    );
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} not found: apt-get install chromium chromium-driver (scripts/test does)"
        );
    }
    let labels = root.join("tests/data/tickets.jsonl");
    let patterns = root.join("patterns");
    let work = tempfile::tempdir().unwrap();
    let shots = std::env::var_os("TRIAGE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("browser-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // The numbers the measure view must show.
    let eval = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(["eval", "--json", "--patterns"])
        .arg(&patterns)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    let eval_path = work.path().join("eval.json");
    std::fs::write(&eval_path, &eval.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert!(report["tickets"].as_u64().unwrap() >= 100);

    let mut server = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(["workbench", "--listen", "127.0.0.1:0", "--patterns"])
        .arg(&patterns)
        .arg("--labels")
        .arg(&labels)
        .env_remove("TRIAGE_WORKBENCH_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let out = Command::new(&python)
        .arg(root.join("tests/browser/workbench.py"))
        .arg(&url)
        .arg(&eval_path)
        .arg(&shots)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser checks failed:\n{stdout}");
    assert!(stdout.contains("browser: all checks passed"));
    for view in ["try", "edit", "measure"] {
        let png = std::fs::read(shots.join(format!("workbench-{view}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{view} screenshot");
    }
}
