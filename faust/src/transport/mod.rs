//! Kafka transport: the broker connection (real or embedded), the producer and the consumer.

pub(crate) mod broker;
pub(crate) mod consumer;
pub(crate) mod partitioner;
pub mod producer;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use rdkafka::config::RDKafkaLogLevel;
use tracing::{debug, error, trace, warn};

/// How long an identical client error stays quiet after it was logged once.
const REPEAT_QUIET: Duration = Duration::from_secs(60);

/// Routes librdkafka's logs and errors to `tracing`, logging a repeated error once a
/// minute instead of flooding the log while, say, the broker is down.
#[derive(Default)]
pub(crate) struct KafkaLog {
    last_error: Mutex<Option<(String, Instant)>>,
}

impl KafkaLog {
    pub(crate) fn error(&self, message: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        let repeated =
            matches!(&*last, Some((m, at)) if m == message && at.elapsed() < REPEAT_QUIET);
        if repeated {
            debug!("Kafka: {message}");
        } else {
            warn!("Kafka: {message}");
            *last = Some((message.to_owned(), Instant::now()));
        }
    }

    pub(crate) fn client_log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
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

/// A client context that only logs, for the producer and admin clients.
#[derive(Default)]
pub(crate) struct LogContext {
    log: KafkaLog,
}

impl rdkafka::ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.client_log(level, facility, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(&format!("{error}: {reason}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_remembered_once() {
        let log = KafkaLog::default();
        log.error("broker down");
        let first = log.last_error.lock().unwrap().clone().unwrap().1;
        log.error("broker down");
        assert_eq!(
            log.last_error.lock().unwrap().clone().unwrap().1,
            first,
            "not logged again"
        );
        log.error("other");
        assert_eq!(log.last_error.lock().unwrap().clone().unwrap().0, "other");
    }
}
