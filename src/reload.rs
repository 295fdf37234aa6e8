//! Catalogue hot reload: the catalogue in service, and what replaces it.
//!
//! [`LiveCatalogue`] holds the compiled catalogue behind an atomic pointer. A ticket takes the
//! current one when its classification starts and keeps it to the end, so a reload never
//! changes the catalogue under a ticket in flight. A reload (SIGHUP, or a change to the
//! catalogue files noticed by [`watch()`]) reads, validates and compiles the files first; only
//! a catalogue that passes goes into service. An invalid one is refused: its `path:line:`
//! problems are logged, `triage_catalogue_reloads_total{result="error"}` counts it, and the
//! old catalogue keeps serving.
//!
//! The files are polled (content, not timestamps) rather than watched with inotify: a
//! Kubernetes ConfigMap volume swaps a symbolic link when it changes, editors replace files,
//! and network file systems send no events; polling a few kilobytes every few seconds
//! sees all of them. A change is acted on once two polls in a row agree, so a file caught
//! half-written is not reported as an error.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{interval, MissedTickBehavior};
use tracing::{error, info, warn};

use crate::catalog::{catalogue_files, Catalog, CatalogError};
use crate::classify::{BuildError, Classifier};
use crate::metrics::{CatalogueMetrics, Metrics};

/// One catalogue in service: the compiled classifier and its per-symptom metric handles.
pub struct Active {
    /// Classifies tickets; its `catalog()` is the catalogue decisions name.
    pub classifier: Classifier,
    /// Counts what `classifier` finds (symptom indexes of this catalogue).
    pub metrics: CatalogueMetrics,
}

/// The catalogue in service, swappable while tickets are being classified. Cheap to clone.
#[derive(Clone)]
pub struct LiveCatalogue {
    /// The current catalogue; readers take a reference-counted snapshot.
    current: Arc<ArcSwap<Active>>,
    /// Where it is read from; `None` for the built-in catalogue (nothing to reload).
    path: Option<Arc<Path>>,
    /// Where reloads and per-symptom counts are reported.
    metrics: Metrics,
}

/// Why a reload was refused. Never retryable unchanged: the files must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The catalogue in service is the built-in one; there are no files to read again.
    #[error("the built-in catalogue cannot be reloaded (start with --patterns DIR for that)")]
    Builtin,
    /// The files are unreadable or invalid.
    #[error("{0}")]
    Invalid(#[from] CatalogError),
    /// The catalogue is valid but cannot be compiled.
    #[error("{0}")]
    Build(#[from] BuildError),
}

impl ReloadError {
    /// Never: a person must fix the files first.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// Each problem as `path:line: message`.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(e) => e.problems(),
            other => vec![other.to_string()],
        }
    }
}

impl LiveCatalogue {
    /// Put `classifier` into service; `path` is where to reload it from (`None`: built in).
    pub fn new(classifier: Classifier, path: Option<PathBuf>, metrics: &Metrics) -> LiveCatalogue {
        let active = Active {
            metrics: metrics.catalogue_loaded(classifier.catalog()),
            classifier,
        };
        LiveCatalogue {
            current: Arc::new(ArcSwap::from_pointee(active)),
            path: path.map(Arc::from),
            metrics: metrics.clone(),
        }
    }

    /// A catalogue that is never reloaded, counted in a registry of its own.
    pub fn fixed(classifier: Classifier) -> LiveCatalogue {
        LiveCatalogue::new(classifier, None, &Metrics::new())
    }

    /// The catalogue in service now. Hold the snapshot for as long as one ticket takes.
    pub fn current(&self) -> Arc<Active> {
        self.current.load_full()
    }

    /// Where the catalogue is reloaded from (`None`: built in).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Read, validate and compile the catalogue files again and, only if that succeeds, put
    /// the result into service. Blocking (file reads, compilation): call it off the runtime's
    /// worker threads. Logs and counts the result; `why` says what asked for it.
    pub fn reload(&self, why: &str) -> Result<Arc<Catalog>, ReloadError> {
        let result = self.load();
        let old = self.current.load();
        let old = old.classifier.catalog();
        match result {
            Ok(classifier) => {
                let new = classifier.catalog().clone();
                let active = Active {
                    metrics: self.metrics.catalogue_loaded(&new),
                    classifier,
                };
                self.current.store(Arc::new(active));
                self.metrics.catalogue_reloaded(true);
                info!(
                    reason = why,
                    name = %new.name,
                    version = %new.version,
                    digest = %new.digest,
                    previous_digest = %old.digest,
                    symptoms = new.symptoms.len(),
                    "catalogue reloaded"
                );
                Ok(new)
            }
            Err(ReloadError::Builtin) => {
                warn!(reason = why, "{}", ReloadError::Builtin);
                Err(ReloadError::Builtin)
            }
            Err(e) => {
                self.metrics.catalogue_reloaded(false);
                let problems = e.problems();
                for p in &problems {
                    error!("{p}");
                }
                error!(
                    reason = why,
                    problems = problems.len(),
                    "catalogue reload refused ({} problem(s), see above); still serving {} {} ({})",
                    problems.len(),
                    old.name,
                    old.version,
                    old.digest
                );
                Err(e)
            }
        }
    }

    fn load(&self) -> Result<Classifier, ReloadError> {
        let path = self.path.as_deref().ok_or(ReloadError::Builtin)?;
        let catalog = Catalog::load(path)?;
        Ok(Classifier::new(catalog)?)
    }
}

/// A fingerprint of the catalogue files' names and contents (or of why they cannot be read).
fn fingerprint(path: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    let files = if path.is_dir() {
        catalogue_files(path)
    } else {
        Ok(vec![path.to_path_buf()])
    };
    match files {
        Ok(files) => {
            for f in files {
                f.hash(&mut h);
                match std::fs::read(&f) {
                    Ok(bytes) => bytes.hash(&mut h),
                    Err(e) => e.kind().hash(&mut h),
                }
            }
        }
        Err(e) => e.to_string().hash(&mut h),
    }
    h.finish()
}

/// Reload on SIGHUP, and (every `poll`, if given) when the catalogue files change; until
/// `shutdown` turns true. Must be called inside the runtime.
pub fn watch(
    live: LiveCatalogue,
    poll: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let path = live.path().map(Path::to_path_buf);
    let poll = poll.filter(|_| path.is_some());
    if let (Some(p), Some(every)) = (&path, poll) {
        info!(
            path = %p.display(),
            interval_ms = every.as_millis() as u64,
            "watching the catalogue files; SIGHUP reloads them too"
        );
    }
    Ok(tokio::spawn(async move {
        let fp = |p: PathBuf| async move {
            tokio::task::spawn_blocking(move || fingerprint(&p))
                .await
                .unwrap_or_default()
        };
        let mut seen = match &path {
            Some(p) => fp(p.clone()).await,
            None => 0,
        };
        let mut candidate: Option<u64> = None;
        let mut tick = interval(poll.unwrap_or(Duration::from_secs(3600)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                _ = shutdown.changed() => return,
                s = hup.recv() => match s {
                    Some(()) => "SIGHUP",
                    None => return,
                },
                _ = tick.tick(), if poll.is_some() => {
                    let Some(p) = &path else { continue };
                    let now = fp(p.clone()).await;
                    if now == seen {
                        candidate = None;
                        continue;
                    }
                    if candidate != Some(now) {
                        // Changed: act once the next poll sees the same files.
                        candidate = Some(now);
                        continue;
                    }
                    "the catalogue files changed"
                }
            };
            candidate = None;
            if let Some(p) = &path {
                seen = fp(p.clone()).await;
            }
            let l = live.clone();
            let _ = tokio::task::spawn_blocking(move || l.reload(why)).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
[catalogue]
name = "mini"
version = "1"

[[symptom]]
id = "printer-jam"
title = "Printer jam"
keywords = ["paper jam"]
checks = ["Open the tray."]
fix = "Remove the paper."
"#;

    fn render(m: &Metrics) -> String {
        m.render()
    }

    #[test]
    fn a_valid_catalogue_is_swapped_in_and_an_invalid_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mini.toml");
        std::fs::write(&file, MINI).unwrap();
        let metrics = Metrics::new();
        let c = Classifier::new(Catalog::load(dir.path()).unwrap()).unwrap();
        let live = LiveCatalogue::new(c, Some(dir.path().to_path_buf()), &metrics);
        let before = live.current();
        assert_eq!(before.classifier.catalog().version, "1");

        std::fs::write(&file, MINI.replace("version = \"1\"", "version = \"2\"")).unwrap();
        let new = live.reload("test").unwrap();
        assert_eq!(new.version, "2");
        assert_eq!(live.current().classifier.catalog().version, "2");
        assert_eq!(
            before.classifier.catalog().version,
            "1",
            "a snapshot taken before keeps its catalogue"
        );

        std::fs::write(&file, MINI.replace("keywords = [", "keywords = 3 [")).unwrap();
        let e = live.reload("test").unwrap_err();
        let problems = e.problems();
        assert!(
            problems[0].starts_with(&format!("{}:", file.display())),
            "{problems:?}"
        );
        assert_eq!(
            live.current().classifier.catalog().version,
            "2",
            "old one serves"
        );
        let text = render(&metrics);
        assert!(
            text.contains("triage_catalogue_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("triage_catalogue_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("version=\"2\"} 1"), "{text}");
    }

    #[test]
    fn the_builtin_catalogue_has_nothing_to_reload() {
        let live = LiveCatalogue::fixed(Classifier::new(Catalog::builtin()).unwrap());
        assert!(matches!(live.reload("test"), Err(ReloadError::Builtin)));
    }

    #[test]
    fn fingerprints_see_content_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mini.toml");
        std::fs::write(&file, MINI).unwrap();
        let a = fingerprint(dir.path());
        std::fs::write(&file, MINI).unwrap();
        assert_eq!(
            a,
            fingerprint(dir.path()),
            "rewriting the same bytes is no change"
        );
        std::fs::write(&file, format!("{MINI}\n# note\n")).unwrap();
        assert_ne!(a, fingerprint(dir.path()));
        std::fs::write(dir.path().join("README.md"), "not a catalogue").unwrap();
        let b = fingerprint(dir.path());
        std::fs::write(dir.path().join("README.md"), "still not").unwrap();
        assert_eq!(b, fingerprint(dir.path()), "only *.toml files count");
    }
}
