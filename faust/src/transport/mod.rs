//! Kafka transport: the broker connection (real or embedded), the producer and the consumer.

pub(crate) mod broker;
pub(crate) mod channel;
pub(crate) mod connection;
pub(crate) mod consumer;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod memory;
pub(crate) mod partitioner;
pub(crate) mod producer;
pub(crate) mod record;
pub(crate) mod replies;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use rdkafka::{config::RDKafkaLogLevel, types::RDKafkaErrorCode};
use tracing::{debug, error, info, trace, warn};

/// While Kafka keeps failing, how often the worker says it still does.
const REMINDER_EVERY: Duration = Duration::from_secs(60);
/// A trouble that lasted this long is reported as over when the broker answers again.
const NOTABLE_TROUBLE: Duration = Duration::from_secs(2);

/// How a worker's Kafka clients are doing. While the broker is unreachable every client
/// (consumer, producer, readers) reports it, again and again: the worker says it once,
/// reminds once a minute, and says when the broker is back; the repeats go to the debug
/// log. Each worker has its own (clones share it), so two workers in one process, on two
/// clusters maybe, report each their own.
#[derive(Clone, Default)]
pub(crate) struct KafkaHealth(Arc<Health>);

#[derive(Default)]
struct Health {
    trouble: Mutex<Option<Trouble>>,
    /// Mirrors `trouble.is_some()`, so the all-is-well path takes no lock.
    troubled: AtomicBool,
    /// The last message warned about, and when: an error that comes back while the
    /// brokers stay connected (a refused group join) is not warned about again each time.
    warned: Mutex<Option<(String, Instant)>>,
    /// The last authentication or TLS failure: start-up stops on it.
    refused: Mutex<Option<Refusal>>,
}

/// Why a broker turned a client away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: RDKafkaErrorCode,
    pub(crate) reason: String,
}

/// The fix for a broker certificate this client does not trust.
const UNTRUSTED: &str = "the broker's certificate is not trusted: give the CA that signed it \
                         with --broker-ca (FAUST_BROKER_CA), and reach the broker by a name \
                         its certificate holds";

impl Refusal {
    /// Which setting to check, in the user's words.
    pub(crate) fn fix(&self) -> &'static str {
        // OpenSSL's own words for a server chain this client does not trust; librdkafka
        // reports it under the SSL code, or at times as a transport failure.
        let untrusted = self.reason.contains("certificate verify failed");
        match self.code {
            RDKafkaErrorCode::Authentication => {
                "check the SASL user name and password (--broker-username, FAUST_BROKER_PASSWORD) \
                 and mechanism (--broker-sasl)"
            }
            RDKafkaErrorCode::SSL => UNTRUSTED,
            _ if untrusted => UNTRUSTED,
            _ => {
                "the TLS connection failed: if the broker asks for a client certificate, give \
                 it with --broker-cert and --broker-key (FAUST_BROKER_CERT, FAUST_BROKER_KEY); \
                 is --broker-tls right for this listener?"
            }
        }
    }
}

struct Trouble {
    since: Instant,
    reminded: Instant,
}

impl KafkaHealth {
    /// Reports a Kafka error.
    pub(crate) fn error(&self, message: &str) {
        let mut trouble = self.0.trouble.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match &mut *trouble {
            None => {
                let mut warned = self.0.warned.lock().unwrap_or_else(|e| e.into_inner());
                let again = warned
                    .as_ref()
                    .is_some_and(|(m, at)| m == message && at.elapsed() < REMINDER_EVERY);
                if again {
                    debug!("Kafka: {message}");
                } else {
                    warn!("Kafka: {message} (retrying; repeats of this are logged at debug level)");
                    *warned = Some((message.to_owned(), now));
                }
                *trouble = Some(Trouble {
                    since: now,
                    reminded: now,
                });
                self.0.troubled.store(true, Ordering::Relaxed);
            }
            Some(t) if t.reminded.elapsed() >= REMINDER_EVERY => {
                let failing_for = format!("{:.0}s", t.since.elapsed().as_secs_f64());
                warn!(failing_for, "Kafka: still failing: {message}");
                t.reminded = now;
            }
            Some(_) => debug!("Kafka: {message}"),
        }
    }

    /// Records a refusal (an authentication or TLS failure), and reports it as an error.
    pub(crate) fn refused(&self, refusal: Refusal) {
        self.error(&refusal.reason);
        *self.0.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(refusal);
    }

    /// The last refusal, if a broker turned a client away.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.0
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether a Kafka error was reported since every known broker was last connected.
    pub(crate) fn troubled(&self) -> bool {
        self.0.troubled.load(Ordering::Relaxed)
    }

    /// Reports that every known broker is connected: ends a trouble, saying so if it
    /// lasted.
    pub(crate) fn healthy(&self) {
        if !self.0.troubled.load(Ordering::Relaxed) {
            return;
        }
        let ended = self
            .0
            .trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.0.troubled.store(false, Ordering::Relaxed);
        if let Some(t) = ended.filter(|t| t.since.elapsed() >= NOTABLE_TROUBLE) {
            let after = format!("{:.1}s", t.since.elapsed().as_secs_f64());
            info!(after, "Kafka: the broker is reachable again");
        }
    }

    /// Routes a librdkafka log line to `tracing`, errors and warnings through
    /// [`KafkaHealth::error`].
    pub(crate) fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                error!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => self.error(message),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                debug!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => trace!(facility, "librdkafka: {message}"),
        }
    }
}

/// Whether librdkafka's statistics show every broker it learned of connected.
pub(crate) fn all_brokers_up(statistics: &rdkafka::Statistics) -> bool {
    let mut learned = statistics
        .brokers
        .values()
        .filter(|b| b.nodeid >= 0)
        .peekable();
    learned.peek().is_some() && learned.all(|b| b.state == "UP")
}

/// A client context that only logs, for the producer and admin clients.
pub(crate) struct LogContext(pub(crate) KafkaHealth);

impl rdkafka::ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // A TLS alert from the broker (a client certificate it wanted) arrives as a
        // transport failure naming SSL.
        let refused = |code| match code {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL => true,
            RDKafkaErrorCode::BrokerTransportFailure => reason.contains("SSL routines"),
            _ => false,
        };
        match error.rdkafka_error_code() {
            Some(code) if refused(code) => self.0.refused(Refusal {
                code,
                reason: reason.to_owned(),
            }),
            _ => self.0.error(&format!("{error}: {reason}")),
        }
    }
}

/// For the start-up probe, a producer that sends nothing.
impl rdkafka::producer::ProducerContext for LogContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn an_untrusted_broker_certificate_is_named_whatever_code_librdkafka_gives_it() {
        let verify = "ssl://127.0.0.1:1/bootstrap: error:0A000086:SSL routines::certificate \
                      verify failed (after 7ms in state SSL_HANDSHAKE)";
        for code in [
            RDKafkaErrorCode::SSL,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            let refusal = Refusal {
                code,
                reason: verify.into(),
            };
            assert!(refusal.fix().contains("not trusted"), "{code:?}");
        }
        // A client certificate the broker wanted: an alert, no verify failure.
        let alert = Refusal {
            code: RDKafkaErrorCode::BrokerTransportFailure,
            reason: "SSL routines::tlsv13 alert certificate required".into(),
        };
        assert!(alert.fix().contains("--broker-cert"));
    }

    /// The lines logged at WARN while `run` runs.
    fn warnings(run: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn an_error_that_keeps_coming_back_between_healthy_spells_is_warned_about_once() {
        let health = KafkaHealth::default();
        let logged = warnings(|| {
            for _ in 0..5 {
                // A refused group join every 3 s, while the brokers stay connected.
                health.error("JoinGroup failed: Broker: Inconsistent group protocol");
                health.healthy();
            }
            health.error("Connect to ipv4#127.0.0.1:9092 failed");
        });
        assert_eq!(logged.len(), 2, "{logged:#?}");
        assert!(
            logged[0].contains("Inconsistent group protocol"),
            "{logged:#?}"
        );
        assert!(logged[1].contains("Connect to"), "{logged:#?}");
    }
}
