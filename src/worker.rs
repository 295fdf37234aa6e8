//! Wiring for `triage run`: settings -> source, sinks, dead letters, server and catalogue
//! reload, then [`Pipeline::run`] until the shutdown token says stop.
//!
//! With `--input` the source is JSON Lines and dead letters go to standard error; with a
//! `[kafka]` section the start-up probe runs first (a refused login or an untrusted
//! certificate stops here, with what to check), then the topics are checked, the decisions
//! and dead-letter topics share one producer, and the consumer joins the group. The post-back
//! sinks come from [`crate::sink::build`], the one place that names them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use crate::classify::Classifier;
use crate::config::Settings;
use crate::kafka::{self, KafkaSource};
use crate::pipeline::{Pipeline, RunError, Summary};
use crate::reload::{self, LiveCatalogue};
use crate::server::{Server, Telemetry};
use crate::sink::dead_letter::{DeadLetterSink, DeadLetterTopic, StderrDeadLetters};
use crate::sink::decisions_topic::DecisionsTopic;
use crate::sink::stdout::StdoutSink;
use crate::sink::TicketSink;
use crate::source::jsonl::JsonlSource;
use crate::source::Source;

/// Run the worker as `settings` say: Kafka when there is a `[kafka]` section and no `input`,
/// otherwise JSON Lines from `input` (a file, or `-` for standard input). The catalogue has
/// no files to reload and the metrics are this run's own; see [`run_with`].
pub async fn run(
    settings: &Settings,
    classifier: Classifier,
    input: Option<&Path>,
    shutdown: watch::Receiver<bool>,
) -> Result<Summary, RunError> {
    let telemetry = Telemetry::default();
    let catalogue = LiveCatalogue::new(classifier, None, &telemetry.metrics);
    run_with(settings, catalogue, &telemetry, input, shutdown).await
}

/// [`run`], with the catalogue in service (reloaded on SIGHUP, and on file changes when
/// `[catalogue] watch` is on) and the metrics and health in `telemetry`, served over HTTP when
/// `[server] listen` is set.
pub async fn run_with(
    settings: &Settings,
    catalogue: LiveCatalogue,
    telemetry: &Telemetry,
    input: Option<&Path>,
    shutdown: watch::Receiver<bool>,
) -> Result<Summary, RunError> {
    // The server comes first: liveness answers while the input is still being set up.
    let server = match settings.server.listen {
        Some(addr) => Some(
            Server::start(addr, telemetry.clone())
                .await
                .map_err(|e| RunError::Setup(e.to_string()))?,
        ),
        None => None,
    };
    telemetry.health.catalogue_loaded();
    let poll = settings
        .catalogue
        .watch
        .then_some(settings.catalogue.watch_interval);
    let watcher = reload::watch(catalogue.clone(), poll, shutdown.clone())
        .map_err(|e| RunError::Setup(format!("cannot handle SIGHUP: {e}")))?;
    let result = run_pipeline(settings, catalogue, telemetry, input, shutdown).await;
    watcher.abort();
    if let Some(s) = server {
        s.stop().await;
    }
    result
}

async fn run_pipeline(
    settings: &Settings,
    catalogue: LiveCatalogue,
    telemetry: &Telemetry,
    input: Option<&Path>,
    shutdown: watch::Receiver<bool>,
) -> Result<Summary, RunError> {
    let mut sinks: Vec<Arc<dyn TicketSink>> = Vec::new();
    let (mut source, dead_letters): (Box<dyn Source>, Arc<dyn DeadLetterSink>) = match (input, &settings.kafka) {
        (Some(path), _) => {
            let source = JsonlSource::open(path)?;
            telemetry.health.input_assigned(true);
            (Box::new(source), Arc::new(StderrDeadLetters))
        }
        (None, Some(k)) => {
            // A refused login or TLS handshake stops the worker here, with what to check,
            // instead of an endless stream of client retries.
            kafka::check_connection_async(k, Duration::from_secs(30))
                .await
                .map_err(|e| RunError::Setup(e.to_string()))?;
            let producer = kafka::producer(k)?;
            let mut topics = vec![k.input_topic.clone(), k.dead_letter_topic.clone()];
            topics.extend(k.decisions_topic.clone());
            kafka::check_topics(&producer, topics, Duration::from_secs(30)).await?;
            if let Some(t) = &k.decisions_topic {
                sinks.push(Arc::new(DecisionsTopic::new(producer.clone(), t)));
            }
            let dlq = Arc::new(
                DeadLetterTopic::new(producer, &k.dead_letter_topic)
                    .skipping_earlier(kafka::reader_config(k)),
            );
            info!(
                bootstrap = %k.bootstrap_servers,
                group = %k.group_id,
                input = %k.input_topic,
                decisions = ?k.decisions_topic,
                dead_letters = %k.dead_letter_topic,
                "joining the consumer group"
            );
            let source = KafkaSource::subscribe_observed(k, &settings.worker, telemetry.clone())?;
            // A partition taken over from a worker that crashed between a dead letter and its
            // commit: read the letters written since start-up before handling its records.
            let read_back = dlq.read_back();
            source.on_assign(move || read_back.request());
            (Box::new(source), dlq)
        }
        (None, None) => {
            return Err(RunError::Setup(
                "nothing to read: give --input FILE (or - for standard input), or a config with a [kafka] section".into(),
            ))
        }
    };
    // Post-back sinks render notes with the catalogue in service at start; symptoms are looked
    // up by id, so a reloaded catalogue's new order cannot mix them up.
    sinks.extend(ticketing_sinks(settings, &catalogue.current().classifier)?);
    if settings.sink.stdout || input.is_some() && sinks.is_empty() {
        sinks.push(Arc::new(StdoutSink::new()));
    }
    let pipeline = Pipeline::with_telemetry(
        catalogue,
        settings.input.clone(),
        sinks,
        dead_letters,
        settings.worker.clone(),
        telemetry.clone(),
    );
    pipeline.run(source.as_mut(), shutdown).await
}

/// The HTTP sinks configured in `[sink]`: webhook, Zendesk, Jira, ServiceNow, Freshdesk, RT.
pub fn ticketing_sinks(
    settings: &Settings,
    classifier: &Classifier,
) -> Result<Vec<Arc<dyn TicketSink>>, RunError> {
    let sinks = crate::sink::build(
        &settings.sink,
        classifier.catalog(),
        &settings.worker.marker_tag,
    )
    .map_err(|e| RunError::Setup(e.to_string()))?;
    for sink in &sinks {
        info!(sink = sink.name(), "posting decisions back");
    }
    Ok(sinks)
}
