//! Secrets, read from an environment variable or a file, never written in the file itself.
//!
//! [`Secret`] keeps a value out of `Debug` output; [`SecretRef`] says where to read one later.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, Ctx};

/// A secret value: shown as `***` by `Debug` and `Display`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value itself: for handing to a client library, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is read from, kept unread until the part of triage that needs it starts:
/// `triage run` never reads the webhook secrets of `[ingest]`, and `triage ingest` reads
/// them at start-up (and `--check-config`). Errors name the file, line and key.
#[derive(Debug, Clone)]
pub struct SecretRef {
    /// The variable, the file, or the value itself.
    from: SecretFrom,
    /// The file the reference is in (for errors).
    path: String,
    /// Its line there, when known.
    line: Option<usize>,
    /// Its key, dotted.
    field: String,
}

#[derive(Debug, Clone)]
enum SecretFrom {
    Env(String),
    File(PathBuf),
    Value(Secret),
}

impl SecretRef {
    /// A secret already in hand (for embedding triage as a library, and tests).
    pub fn value(secret: Secret) -> SecretRef {
        SecretRef {
            from: SecretFrom::Value(secret),
            path: "<value>".into(),
            line: None,
            field: String::new(),
        }
    }

    /// Read the secret now.
    pub fn read(&self) -> Result<Secret, ConfigError> {
        let r = match &self.from {
            SecretFrom::Value(s) => Ok(s.clone()),
            SecretFrom::Env(var) => read_env(var),
            SecretFrom::File(file) => read_file(file),
        };
        r.map_err(|message| ConfigError::Invalid {
            path: self.path.clone(),
            line: self.line,
            field: self.field.clone(),
            message,
        })
    }
}

fn read_env(var: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(_) => Err(format!(
            "environment variable {var} is not set (export it before starting triage)"
        )),
    }
}

fn read_file(file: &Path) -> Result<Secret, String> {
    match std::fs::read_to_string(file) {
        Ok(v) => {
            let v = v.trim_end_matches(['\r', '\n']).to_string();
            if v.is_empty() {
                Err(format!("{} is empty", file.display()))
            } else {
                Ok(Secret(v))
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

impl Ctx<'_> {
    /// A secret given as `{key}_env` or `{key}_file` (not both), if any.
    pub(crate) fn one_secret(
        &self,
        section: &str,
        key: &str,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(self.err(
                &format!("{section}.{key}_env"),
                format!("set {key}_env or {key}_file, not both"),
            )),
            (Some(env), None) => Ok(Some(
                self.secret_env(&format!("{section}.{key}_env"), &env)?,
            )),
            (None, Some(file)) => Ok(Some(
                self.secret_file(&format!("{section}.{key}_file"), &file)?,
            )),
            (None, None) => Ok(None),
        }
    }

    /// `<name>_env` / `<name>_file` in `section`: at most one of them.
    pub(crate) fn secret_pair(
        &self,
        section: &str,
        name: &str,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<SecretRef>, ConfigError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(self.err(
                &format!("{section}.{name}_env"),
                format!("set {name}_env or {name}_file, not both"),
            )),
            (Some(env), None) => {
                if env.is_empty() {
                    return Err(self.err(
                        &format!("{section}.{name}_env"),
                        "must name an environment variable",
                    ));
                }
                Ok(Some(self.secret_ref(
                    &format!("{section}.{name}_env"),
                    SecretFrom::Env(env),
                )))
            }
            (None, Some(file)) => Ok(Some(
                self.secret_ref(&format!("{section}.{name}_file"), SecretFrom::File(file)),
            )),
            (None, None) => Ok(None),
        }
    }

    pub(super) fn secret_env(&self, field: &str, var: &str) -> Result<Secret, ConfigError> {
        read_env(var).map_err(|m| self.err(field, m))
    }

    pub(super) fn secret_file(&self, field: &str, file: &Path) -> Result<Secret, ConfigError> {
        read_file(file).map_err(|m| self.err(field, m))
    }

    /// A reference to a secret, to be read when needed.
    fn secret_ref(&self, field: &str, from: SecretFrom) -> SecretRef {
        SecretRef {
            from,
            path: self.path.clone(),
            line: self.line_of(field),
            field: field.to_string(),
        }
    }
}
