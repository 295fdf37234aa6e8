//! Helpers for the security tests: the broker's SASL_SSL listener as `deploy/kafka/kafka.sh
//! start` describes it (exported by `scripts/test`), configurations that reach it, an
//! unrelated CA, `triage run` / `triage ingest` as child processes with their whole output
//! kept, and the check that a text holds none of a list of secrets.
#![allow(dead_code)]

use super::{signal_child, wait_child};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::Setup;

/// The SASL_SSL listener of the test broker.
pub struct SecureKafka {
    /// `host:port` of the SASL_SSL listener.
    pub bootstrap: String,
    /// The CA that signed the broker's certificate (PEM).
    pub ca: PathBuf,
    /// The SASL mechanism (SCRAM-SHA-512).
    pub mechanism: String,
    /// The SCRAM user.
    pub user: String,
    /// The file holding the user's password (one line).
    pub password_file: PathBuf,
}

fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the security tests need the SASL_SSL listener of the local Kafka \
             broker. Run them with `scripts/test` (it starts deploy/kafka/kafka.sh and exports \
             every KAFKA_* line that `kafka.sh start` prints), or export those lines yourself"
        ),
    }
}

impl SecureKafka {
    /// From the variables `kafka.sh start` prints; a missing one fails with what to do.
    pub fn from_env() -> SecureKafka {
        SecureKafka {
            bootstrap: var("KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"),
            ca: var("KAFKA_SSL_CA_LOCATION").into(),
            mechanism: var("KAFKA_SASL_MECHANISM"),
            user: var("KAFKA_SASL_USERNAME"),
            password_file: var("KAFKA_SASL_PASSWORD_FILE").into(),
        }
    }

    /// The user's password.
    pub fn password(&self) -> String {
        let text = std::fs::read_to_string(&self.password_file).unwrap_or_else(|e| {
            panic!(
                "cannot read the SASL password file {}: {e}",
                self.password_file.display()
            )
        });
        text.trim_end_matches(['\r', '\n']).to_string()
    }

    /// A `[kafka]` section for `setup`'s topics over SASL_SSL, trusting `ca`, the password
    /// read from the environment variable `password_env`.
    pub fn kafka_section(&self, setup: &Setup, ca: &Path, password_env: &str) -> String {
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\ninput_topic = \"{}\"\n\
             decisions_topic = \"{}\"\ndead_letter_topic = \"{}\"\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"{}\"\n\
             \"sasl.username\" = \"{}\"\n\"ssl.ca.location\" = \"{}\"\n\
             [kafka.secret_properties]\n\"sasl.password\" = {{ env = \"{password_env}\" }}\n",
            self.bootstrap,
            setup.group,
            setup.input,
            setup.decisions,
            setup.dead_letters,
            self.mechanism,
            self.user,
            ca.display(),
        )
    }
}

/// Write `text` to `dir/file`.
pub fn write_config(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// A CA of its own (self-signed, made with openssl) that signed nothing the broker has.
pub fn unrelated_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("unrelated-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=a CA the broker never heard of"])
        .arg("-keyout")
        .arg(dir.join("unrelated-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("run openssl (it is needed by deploy/kafka/kafka.sh too)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca
}

/// `triage SUBCOMMAND --config FILE` as a child process at the default log level (TRIAGE_LOG
/// removed), standard output and standard error each kept in a file beside the config.
pub struct Triage {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
}

impl Triage {
    pub fn start(subcommand: &str, config: &Path, name: &str, env: &[(&str, &str)]) -> Triage {
        let stdout = config.with_file_name(format!("{name}.out"));
        let stderr = config.with_file_name(format!("{name}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_triage"))
            .arg(subcommand)
            .arg("--config")
            .arg(config)
            .env_remove("TRIAGE_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start triage {subcommand}: {e}"));
        Triage {
            child,
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    pub fn out_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn err_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything it printed: standard output, then standard error.
    pub fn output(&self) -> String {
        format!("{}{}", self.out_text(), self.err_text())
    }

    /// Wait until standard error contains `needle`; fails if the process exits first.
    pub fn wait_err(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.err_text();
            if text.contains(needle) {
                return text;
            }
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("triage exited ({s}) before printing {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "triage did not print {needle:?} within {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the exit, at most `timeout`; `None` if it still runs.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn signal(&self, sig: i32) {
        signal_child(&self.child, sig);
    }
}

impl Drop for Triage {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `addr=HOST:PORT` after `marker` in a log.
pub fn addr_after(log: &str, marker: &str) -> Option<String> {
    let rest = log.split(marker).nth(1)?;
    let rest = &rest[rest.find("addr=")? + 5..];
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect(),
    )
}

/// Fail, naming the place and the needle (never printing a secret itself), if `text`
/// contains any of `needles`.
pub fn assert_holds_none(what: &str, text: &str, needles: &[(&str, &str)]) {
    for (name, needle) in needles {
        assert!(!needle.is_empty(), "empty needle {name}");
        if let Some(at) = text.find(needle) {
            let line = text[..at].lines().count().max(1);
            panic!("{what} contains the {name} (line {line})");
        }
    }
}
