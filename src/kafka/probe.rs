//! The start-up probe: can the cluster be reached, does it accept our login and certificate,
//! do the topics exist, before the worker or `triage ingest` starts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientContext;
use tracing::debug;

use crate::config::KafkaSettings;
use crate::source::SourceError;

use super::config::producer_config;

// ----- start-up connection check ------------------------------------------------------------

/// Why the cluster cannot be used, found before the worker (or `triage ingest`) starts: a
/// wrong password or an untrusted certificate otherwise shows only as an endless stream of
/// librdkafka retries. Every message says where, as whom, and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused the login (SASL): wrong password, unknown user or mechanism.
    #[error(
        "Kafka at {bootstrap} refused to authenticate user {user} with SASL mechanism {mechanism}: {reason}. \
         Check the password (kafka.secret_properties \"sasl.password\" and the variable or file it names), \
         \"sasl.username\" and \"sasl.mechanism\" in [kafka.properties] against the user on the cluster"
    )]
    Authentication {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// `sasl.mechanism` (librdkafka's default when unset).
        mechanism: String,
        /// `sasl.username`, quoted, or a note that none is set.
        user: String,
        /// What librdkafka said.
        reason: String,
    },
    /// The TLS handshake failed: a CA that did not sign the broker's certificate, a
    /// certificate for another host name, or TLS spoken to a plaintext port.
    #[error(
        "TLS with Kafka at {bootstrap} failed: {reason}. Check \"ssl.ca.location\" in [kafka.properties] \
         (the CA that signed the broker's certificate), that the certificate names the host in \
         kafka.bootstrap_servers, and that \"security.protocol\" matches the broker's listener"
    )]
    Tls {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// What librdkafka said.
        reason: String,
    },
    /// No answer in time: the cluster is down or unreachable, or the address is wrong.
    #[error(
        "Kafka at {bootstrap} did not answer within {timeout_ms} ms: {reason}. Check \
         kafka.bootstrap_servers, that the brokers run, and \"security.protocol\""
    )]
    Unreachable {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// How long the check waited.
        timeout_ms: u128,
        /// The last thing librdkafka said.
        reason: String,
    },
    /// The client cannot be created from the configured properties.
    #[error("Kafka client properties: {0}")]
    Properties(String),
}

impl ConnectError {
    /// Whether starting again unchanged may work: only when the cluster did not answer.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

impl From<ConnectError> for SourceError {
    fn from(e: ConnectError) -> SourceError {
        SourceError::Fatal(e.to_string())
    }
}

/// The check client's callbacks: remember the first login or TLS failure, keep librdkafka's
/// own log lines (which repeat every retry) at debug level.
#[derive(Default)]
struct ProbeCtx {
    /// The first authentication or TLS failure reported, if any.
    refused: Mutex<Option<(Refusal, String)>>,
    /// The last error reported (for the message when nothing answers).
    last: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Authentication,
    Tls,
}

/// Which kind of refusal a librdkafka client error is, if any.
fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Refusal> {
    let r = reason.to_ascii_lowercase();
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(Refusal::Authentication)
        }
        Some(RDKafkaErrorCode::SSL) => Some(Refusal::Tls),
        _ if r.contains("sasl authentication") => Some(Refusal::Authentication),
        _ if r.contains("ssl handshake") || r.contains("certificate verify") => Some(Refusal::Tls),
        _ => None,
    }
}

impl ClientContext for ProbeCtx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        debug!(?level, fac, "librdkafka: {message}");
    }

    fn error(&self, e: KafkaError, reason: &str) {
        let text = format!("{e}: {reason}");
        if let Some(kind) = refusal(e.rdkafka_error_code(), reason) {
            let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            r.get_or_insert((kind, reason.to_string()));
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

impl rdkafka::producer::ProducerContext for ProbeCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// A property as configured for the producer (and so for the check), if set.
fn property<'a>(k: &'a KafkaSettings, key: &str) -> Option<&'a str> {
    k.properties
        .get(key)
        .or_else(|| k.producer_properties.get(key))
        .map(String::as_str)
}

/// Ask the cluster for metadata once, as the configured clients would, and fail within
/// `timeout` with a message naming the broker, the user and what to check when the login
/// or the TLS handshake is refused or nothing answers. Blocking (run it off the runtime).
pub fn check_connection(k: &KafkaSettings, timeout: Duration) -> Result<(), ConnectError> {
    let ctx = ProbeCtx::default();
    let client: rdkafka::producer::BaseProducer<ProbeCtx> = producer_config(k)
        .create_with_context(ctx)
        .map_err(|e| ConnectError::Properties(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let step = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(500));
        let last_err = match client.client().fetch_metadata(Some(&k.input_topic), step) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        // Serves the queued events (every one of them until the short deadline), among them
        // the error callbacks where the reason of a refusal is reported.
        client.poll(Duration::from_millis(100));
        let ctx = client.context();
        let refused = ctx
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((kind, reason)) = refused {
            let bootstrap = k.bootstrap_servers.clone();
            return Err(match kind {
                Refusal::Authentication => ConnectError::Authentication {
                    bootstrap,
                    mechanism: property(k, "sasl.mechanism")
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            "GSSAPI (librdkafka's default; set \"sasl.mechanism\")".into()
                        }),
                    user: match property(k, "sasl.username") {
                        Some(u) => format!("\"{u}\""),
                        None if k.secret_properties.contains_key("sasl.username") => {
                            "(sasl.username from kafka.secret_properties)".into()
                        }
                        None => "(none: \"sasl.username\" is not set)".into(),
                    },
                    reason,
                },
                Refusal::Tls => ConnectError::Tls { bootstrap, reason },
            });
        }
        if Instant::now() >= deadline {
            let reason = ctx
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or(last_err);
            return Err(ConnectError::Unreachable {
                bootstrap: k.bootstrap_servers.clone(),
                timeout_ms: timeout.as_millis(),
                reason,
            });
        }
    }
}

/// [`check_connection`] from async code.
pub async fn check_connection_async(
    k: &KafkaSettings,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let k = k.clone();
    tokio::task::spawn_blocking(move || check_connection(&k, timeout))
        .await
        .map_err(|e| ConnectError::Properties(format!("the connection check panicked: {e}")))?
}

/// Fail early, with a message saying what to do, when a configured topic does not exist.
pub async fn check_topics(
    producer: &FutureProducer,
    topics: Vec<String>,
    timeout: Duration,
) -> Result<(), SourceError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || {
        for t in topics {
            let md = p
                .client()
                .fetch_metadata(Some(&t), timeout)
                .map_err(|e| SourceError::Fatal(format!("cannot reach Kafka to look up topic {t}: {e}")))?;
            let missing = md
                .topics()
                .iter()
                .find(|mt| mt.name() == t)
                .map(|mt| mt.error().is_some() || mt.partitions().is_empty())
                .unwrap_or(true);
            if missing {
                return Err(SourceError::Fatal(format!(
                    "topic {t} does not exist (create it first, e.g. deploy/kafka/kafka.sh topics --create --topic {t} --partitions 3)"
                )));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| SourceError::Fatal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(props: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "127.0.0.1:1".into(),
            group_id: "g".into(),
            input_topic: "in".into(),
            decisions_topic: None,
            dead_letter_topic: "dlq".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            consumer_properties: Default::default(),
            producer_properties: Default::default(),
            secret_properties: [(
                "sasl.password".to_string(),
                crate::config::Secret::new("pw-never-shown"),
            )]
            .into(),
        }
    }

    #[test]
    fn refusals_are_told_from_other_client_errors() {
        use RDKafkaErrorCode as C;
        let sasl = "sasl_ssl://h:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        assert_eq!(
            refusal(Some(C::Authentication), sasl),
            Some(Refusal::Authentication)
        );
        assert_eq!(
            refusal(Some(C::BrokerTransportFailure), sasl),
            Some(Refusal::Authentication)
        );
        let tls = "sasl_ssl://h:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert_eq!(refusal(Some(C::SSL), tls), Some(Refusal::Tls));
        assert_eq!(
            refusal(
                Some(C::BrokerTransportFailure),
                "h:9094/bootstrap: error:0A000086:SSL routines::certificate verify failed"
            ),
            Some(Refusal::Tls)
        );
        assert_eq!(
            refusal(
                Some(C::BrokerTransportFailure),
                "h:9094/bootstrap: Connect to ipv4#127.0.0.1:9094 failed: Connection refused"
            ),
            None
        );
        assert_eq!(
            refusal(Some(C::AllBrokersDown), "1/1 brokers are down"),
            None
        );
    }

    #[test]
    fn refusal_messages_say_where_as_whom_and_what_to_check_without_the_secret() {
        let e = ConnectError::Authentication {
            bootstrap: "kafka:9094".into(),
            mechanism: "SCRAM-SHA-512".into(),
            user: "\"triage\"".into(),
            reason: "invalid credentials".into(),
        };
        let m = e.to_string();
        for needed in [
            "kafka:9094",
            "user \"triage\"",
            "SCRAM-SHA-512",
            "sasl.password",
            "invalid credentials",
        ] {
            assert!(m.contains(needed), "{needed:?} missing: {m}");
        }
        assert!(!e.is_retryable());
        let t = ConnectError::Tls {
            bootstrap: "kafka:9094".into(),
            reason: "certificate verify failed".into(),
        };
        assert!(t.to_string().contains("ssl.ca.location") && !t.is_retryable());
        let u = ConnectError::Unreachable {
            bootstrap: "kafka:9094".into(),
            timeout_ms: 5000,
            reason: "Connection refused".into(),
        };
        assert!(u.to_string().contains("5000 ms") && u.is_retryable());
    }

    #[test]
    fn nothing_listening_is_unreachable_within_the_timeout() {
        let k = settings(&[]);
        let t0 = Instant::now();
        let e = check_connection(&k, Duration::from_millis(1500)).unwrap_err();
        assert!(matches!(e, ConnectError::Unreachable { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(!format!("{e} {e:?}").contains("pw-never-shown"));
    }
}
