//! The catalogue author's tools.
//!
//! - `triage workbench` ([`serve`]): a local web page to try a ticket and see why it got its
//!   symptoms and what each help desk receives ([`explain`]), to edit the catalogue with the
//!   same `path:line:` problems as `triage check`, and to measure an edit on a labelled file
//!   before it is saved. The page (HTML, CSS and a little JavaScript, `assets/`) is compiled
//!   into the binary; nothing is fetched at run time and no ticket text leaves the machine.
//!   The HTTP API is in [`api`].
//! - `triage schema` ([`schema`]): a JSON Schema of the catalogue format.
//! - `triage suggest` ([`suggest`]): phrases from labelled tickets the catalogue gets wrong.
//!
//! Edits live in the page's session (the server's memory) until they are written, which only
//! a server started with `--write` does; otherwise the page shows the change as a diff.

pub mod api;
pub mod diff;
pub mod explain;
pub mod schema;
pub mod suggest;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::catalog::{self, Catalog, CatalogError, BUILTIN_PASSKEYS, BUILTIN_PATH};
use crate::classify::Classifier;
use crate::eval::{self, Report};
use crate::ticket::Ticket;

/// Environment variable holding the access token.
pub const TOKEN_ENV: &str = "TRIAGE_WORKBENCH_TOKEN";

/// Why the workbench cannot start or an edit cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalogue on disk does not load.
    #[error("{0}\n(run `triage check` for every problem)")]
    Catalogue(#[from] CatalogError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// One catalogue file: where it lives and its text.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct File {
    /// Its path, as `triage check` names it.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// A problem of the session's catalogue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProblemView {
    /// File.
    pub path: String,
    /// Line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// `path:line: message`, as `triage check` prints it.
    pub text: String,
}

fn problems_of(e: &CatalogError) -> Vec<ProblemView> {
    match e {
        CatalogError::Invalid(ps) => ps
            .iter()
            .map(|p| ProblemView {
                path: p.path.clone(),
                line: p.line,
                message: p.message.clone(),
                text: p.to_string(),
            })
            .collect(),
        other => vec![ProblemView {
            path: String::new(),
            line: 0,
            message: other.to_string(),
            text: other.to_string(),
        }],
    }
}

/// The session's state of the catalogue.
struct Session {
    files: Vec<File>,
    /// The last valid edit's classifier (the saved one until an edit is valid).
    classifier: Classifier,
    problems: Vec<ProblemView>,
    /// Counts edits, so a measure of an older edit is not taken for the current one.
    generation: u64,
    measured: Option<(u64, Arc<Report>)>,
}

/// The workbench: catalogue files on disk, the session's edit, the labelled tickets.
pub struct Bench {
    /// Where the catalogue lives (`None`: the built-in one, read-only).
    dir: Option<PathBuf>,
    write: bool,
    labels_name: Option<String>,
    tickets: Arc<Vec<Ticket>>,
    saved: Mutex<(Vec<File>, Classifier, Option<Arc<Report>>)>,
    session: Mutex<Session>,
    prepared: Mutex<Option<(u64, Arc<suggest::Prepared>)>>,
}

/// The catalogue's files: a directory's `*.toml`, one file, or the built-in one.
fn read_files(path: Option<&Path>) -> Result<Vec<File>, Error> {
    let Some(p) = path else {
        return Ok(vec![File {
            path: BUILTIN_PATH.into(),
            text: BUILTIN_PASSKEYS.into(),
        }]);
    };
    let paths = if p.is_dir() {
        catalog::catalogue_files(p)?
    } else {
        vec![p.to_path_buf()]
    };
    paths
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| Error::Other(format!("{}: cannot read: {e}", f.display())))?;
            Ok(File {
                path: f.display().to_string(),
                text,
            })
        })
        .collect()
}

fn build(files: &[File]) -> Result<Classifier, Vec<ProblemView>> {
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect();
    let cat = Catalog::from_sources(&sources).map_err(|e| problems_of(&e))?;
    Classifier::new(cat).map_err(|e| {
        vec![ProblemView {
            path: String::new(),
            line: 0,
            message: e.to_string(),
            text: e.to_string(),
        }]
    })
}

/// Per symptom, the measure of the saved catalogue beside the session's.
#[derive(Debug, Serialize)]
pub struct SymptomDelta {
    /// Symptom id.
    pub id: String,
    /// Saved catalogue's figures (absent for a new symptom).
    pub saved: Option<eval::SymptomStats>,
    /// Session's figures (absent for a removed symptom).
    pub session: Option<eval::SymptomStats>,
}

/// What the measure view shows.
#[derive(Debug, Serialize)]
pub struct Measure {
    /// The session's report, the same as `triage eval --json` on the session's catalogue.
    #[serde(serialize_with = "report_ser")]
    pub report: Arc<Report>,
    /// The saved catalogue's report.
    #[serde(serialize_with = "report_ser")]
    pub saved: Arc<Report>,
    /// Whether the session differs from the saved catalogue.
    pub edited: bool,
    /// Per symptom, saved and session side by side.
    pub symptoms: Vec<SymptomDelta>,
    /// Tickets wrong with the saved catalogue and right with the session's.
    pub fixes: Vec<String>,
    /// Tickets right with the saved catalogue and wrong with the session's.
    pub breaks: Vec<String>,
    /// Milliseconds the session's evaluation took (0 when it was at hand).
    pub elapsed_ms: u64,
}

fn report_ser<S: serde::Serializer>(r: &Arc<Report>, s: S) -> Result<S::Ok, S::Error> {
    r.as_ref().serialize(s)
}

impl Bench {
    /// Load the catalogue (a directory, one file, or the built-in one with `None`) and the
    /// labelled tickets.
    pub fn open(
        patterns: Option<&Path>,
        labels: Option<&Path>,
        write: bool,
    ) -> Result<Bench, Error> {
        if write && patterns.is_none() {
            return Err(Error::Other(
                "--write needs a catalogue on disk: give --patterns DIR (the built-in one cannot be written)".into(),
            ));
        }
        let files = read_files(patterns)?;
        let classifier = build(&files).map_err(|p| {
            Error::Other(format!(
                "{}\n(the catalogue is invalid; run `triage check` for every problem)",
                p.iter()
                    .map(|p| p.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
        })?;
        let (labels_name, tickets) = match labels {
            Some(p) => (Some(p.display().to_string()), read_labelled(p)?),
            None => (None, Vec::new()),
        };
        Ok(Bench {
            dir: patterns.map(Path::to_path_buf),
            write,
            labels_name,
            tickets: Arc::new(tickets),
            saved: Mutex::new((files.clone(), classifier.clone(), None)),
            session: Mutex::new(Session {
                files,
                classifier,
                problems: Vec::new(),
                generation: 0,
                measured: None,
            }),
            prepared: Mutex::new(None),
        })
    }

    /// Whether the server may write the files.
    pub fn can_write(&self) -> bool {
        self.write
    }

    /// The labelled file's name and tickets.
    pub fn labels(&self) -> Option<(&str, &[Ticket])> {
        self.labels_name
            .as_deref()
            .map(|n| (n, self.tickets.as_slice()))
    }

    /// The classifier in use in the session (the last valid edit).
    pub fn classifier(&self) -> Classifier {
        self.session.lock().unwrap().classifier.clone()
    }

    /// The session's files and problems.
    pub fn files(&self) -> (Vec<File>, Vec<ProblemView>) {
        let s = self.session.lock().unwrap();
        (s.files.clone(), s.problems.clone())
    }

    /// The saved files.
    pub fn saved_files(&self) -> Vec<File> {
        self.saved.lock().unwrap().0.clone()
    }

    /// Take an edit into the session: every problem, as `triage check` prints them; when there
    /// are none, the session classifies with it from now on. Files are matched by path; an
    /// unknown path is refused.
    pub fn edit(&self, files: Vec<File>) -> Result<Vec<ProblemView>, Error> {
        let saved = self.saved_files();
        if files.len() != saved.len() || files.iter().zip(&saved).any(|(a, b)| a.path != b.path) {
            return Err(Error::Other(
                "an edit must give every catalogue file, by the paths the workbench listed".into(),
            ));
        }
        let result = build(&files);
        let mut s = self.session.lock().unwrap();
        s.files = files;
        s.generation += 1;
        match result {
            Ok(c) => {
                s.classifier = c;
                s.problems.clear();
            }
            Err(p) => s.problems = p,
        }
        Ok(s.problems.clone())
    }

    /// Unified diffs of the session against the files as saved.
    pub fn diff(&self) -> String {
        let saved = self.saved_files();
        let (files, _) = self.files();
        saved
            .iter()
            .zip(&files)
            .map(|(a, b)| diff::unified(&a.path, &a.text, &b.text))
            .collect()
    }

    /// Write the session's files (only with `--write`, only a valid edit).
    pub fn write_files(&self) -> Result<usize, Error> {
        if !self.write {
            return Err(Error::Other(
                "this workbench was started without --write: copy the diff instead".into(),
            ));
        }
        let (files, problems) = self.files();
        if !problems.is_empty() {
            return Err(Error::Other(format!(
                "the edit has {} problem(s); fix them first",
                problems.len()
            )));
        }
        let saved = self.saved_files();
        let mut written = 0;
        for (f, old) in files.iter().zip(&saved) {
            if f.text != old.text {
                let tmp = format!("{}.workbench-tmp", f.path);
                std::fs::write(&tmp, &f.text)
                    .and_then(|()| std::fs::rename(&tmp, &f.path))
                    .map_err(|e| Error::Other(format!("{}: cannot write: {e}", f.path)))?;
                written += 1;
            }
        }
        let reread = read_files(self.dir.as_deref())?;
        let c = build(&reread).map_err(|p| {
            Error::Other(
                p.iter()
                    .map(|p| p.text.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        *self.saved.lock().unwrap() = (reread, c, None);
        Ok(written)
    }

    fn saved_report(&self) -> Arc<Report> {
        let (c, cached) = {
            let s = self.saved.lock().unwrap();
            (s.1.clone(), s.2.clone())
        };
        if let Some(r) = cached {
            return r;
        }
        let r = Arc::new(eval::evaluate(&c, &self.tickets, |_| {}));
        self.saved.lock().unwrap().2 = Some(r.clone());
        r
    }

    /// Measure the session's catalogue on the labelled tickets, beside the saved one.
    pub fn measure(&self) -> Result<Measure, Error> {
        if self.labels_name.is_none() {
            return Err(Error::Other(
                "no labelled tickets: start the workbench with --labels FILE".into(),
            ));
        }
        let saved = self.saved_report();
        let (generation, classifier, cached) = {
            let s = self.session.lock().unwrap();
            (s.generation, s.classifier.clone(), s.measured.clone())
        };
        let edited = self.saved_files() != self.files().0;
        let started = std::time::Instant::now();
        let report = match cached {
            Some((g, r)) if g == generation => r,
            _ if !edited => saved.clone(),
            _ => {
                let r = Arc::new(eval::evaluate(&classifier, &self.tickets, |_| {}));
                let mut s = self.session.lock().unwrap();
                if s.generation == generation {
                    s.measured = Some((generation, r.clone()));
                }
                r
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let wrong = |r: &Report| -> std::collections::HashSet<String> {
            r.misclassified.iter().map(|m| m.id.clone()).collect()
        };
        let (was, now) = (wrong(&saved), wrong(&report));
        let in_order = |pick: &dyn Fn(&str) -> bool| -> Vec<String> {
            self.tickets
                .iter()
                .filter(|t| t.labels.is_some() && pick(&t.id))
                .map(|t| t.id.clone())
                .collect()
        };
        let fixes = in_order(&|id| was.contains(id) && !now.contains(id));
        let breaks = in_order(&|id| !was.contains(id) && now.contains(id));
        let mut symptoms: Vec<SymptomDelta> = report
            .symptoms
            .iter()
            .map(|s| SymptomDelta {
                id: s.id.clone(),
                saved: saved.symptoms.iter().find(|o| o.id == s.id).cloned(),
                session: Some(s.clone()),
            })
            .collect();
        for s in &saved.symptoms {
            if !report.symptoms.iter().any(|n| n.id == s.id) {
                symptoms.push(SymptomDelta {
                    id: s.id.clone(),
                    saved: Some(s.clone()),
                    session: None,
                });
            }
        }
        Ok(Measure {
            report,
            saved,
            edited,
            symptoms,
            fixes,
            breaks,
            elapsed_ms,
        })
    }

    /// Suggestions from the labelled tickets for the session's catalogue.
    pub fn suggest(&self, symptom: Option<&str>) -> Result<Vec<suggest::Suggestion>, Error> {
        if self.labels_name.is_none() {
            return Err(Error::Other(
                "no labelled tickets: start the workbench with --labels FILE".into(),
            ));
        }
        let (generation, c) = {
            let s = self.session.lock().unwrap();
            (s.generation, s.classifier.clone())
        };
        let cached = self.prepared.lock().unwrap().clone();
        let prepared = match cached {
            Some((g, p)) if g == generation => p,
            _ => {
                let p = Arc::new(suggest::Prepared::new(&c, &self.tickets));
                *self.prepared.lock().unwrap() = Some((generation, p.clone()));
                p
            }
        };
        Ok(suggest::suggest(&c, &self.tickets, &prepared, symptom, 5))
    }

    /// A labelled ticket by id.
    pub fn ticket(&self, id: &str) -> Option<&Ticket> {
        self.tickets.iter().find(|t| t.id == id)
    }
}

/// Read a labelled JSON Lines file; a bad line is an error naming it.
pub fn read_labelled(p: &Path) -> Result<Vec<Ticket>, Error> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| Error::Other(format!("{}: cannot read: {e}", p.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t = Ticket::from_json(line)
            .map_err(|e| Error::Other(format!("{}:{}: {e}", p.display(), i + 1)))?;
        out.push(t);
    }
    if !out.iter().any(|t| t.labels.is_some()) {
        return Err(Error::Other(format!(
            "{}: no ticket has `labels`; expected labelled tickets",
            p.display()
        )));
    }
    Ok(out)
}

/// How the workbench is served.
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The access token, required on any address but loopback.
    pub token: Option<String>,
}

/// Check the address and token: loopback needs none; any other address refuses to start
/// without one (and a short one).
pub fn check_access(listen: SocketAddr, token: Option<&str>) -> Result<(), Error> {
    if let Some(t) = token {
        if t.len() < 16 {
            return Err(Error::Other(
                "the access token is shorter than 16 characters; use a long random one".into(),
            ));
        }
    }
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(Error::Other(format!(
            "{listen} is not a loopback address: anyone who reaches it could read the labelled tickets. \
             Give an access token in the environment ({TOKEN_ENV}) or with --token-file FILE, or listen on 127.0.0.1"
        )));
    }
    Ok(())
}

/// Serve the workbench until `shutdown` resolves.
pub async fn serve(
    bench: Arc<Bench>,
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_access(opts.listen, opts.token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", opts.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    let app = api::router(bench, local, opts.token);
    ready(local);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Other(e.to_string()))
}
