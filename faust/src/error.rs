//! The runtime's one error type. Each message says what happened and what to do.

use std::time::Duration;

/// Everything that can go wrong in faust-rs, from configuration to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (code, `FAUST_*` environment variable or CLI flag) is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The compile-time registry of agents, tables, tasks and commands is unusable.
    #[error("{0}")]
    Registry(String),

    /// The broker could not be reached or refused a request.
    #[error("Kafka error while {context}: {source}")]
    Kafka {
        /// What the worker was doing.
        context: String,
        /// What the Kafka client reported.
        #[source]
        source: KafkaError,
    },

    /// The broker could not be reached at start.
    #[error("could not reach the broker at {broker} ({reason}); is it running, and is --broker / FAUST_BROKER right?")]
    Unreachable {
        /// The bootstrap address tried.
        broker: String,
        /// Why it failed.
        reason: String,
    },

    /// The broker turned the connection away: a wrong credential or an untrusted
    /// certificate, which retrying cannot mend.
    #[error("the broker at {broker} refused this worker: {reason}; {fix}")]
    Refused {
        /// The bootstrap address.
        broker: String,
        /// What librdkafka reported.
        reason: String,
        /// Which setting to check.
        fix: String,
    },

    /// The broker did not answer in time.
    #[error("timed out after {timeout:?} while {context}; is the broker at {broker} running and reachable?")]
    Timeout {
        /// What the worker was doing.
        context: String,
        /// The bootstrap address.
        broker: String,
        /// How long it waited.
        timeout: Duration,
    },

    /// Topics the app reads or writes do not exist, and the policy says not to create them.
    #[error("these topics do not exist: {}; create them as their producers need them, or declare them in code to be created (faust::Topic::new(name).create(true)), or let the worker create every topic it uses with --create-topics all (FAUST_CREATE_TOPICS=all; it creates {creating} now)", topics.join(", "))]
    MissingTopics {
        /// The missing topics, each with what uses it.
        topics: Vec<String>,
        /// What the creation policy in force creates.
        creating: &'static str,
    },

    /// A value could not be encoded for sending.
    #[error("could not encode the value for '{target}': {message}")]
    Encode {
        /// Where the value was going.
        target: String,
        /// What the encoder said.
        message: String,
    },

    /// `send` was called for a topic or agent the app does not know, or outside a worker.
    #[error("{0}")]
    Send(String),

    /// An ask (or a `join`/`map`) got no reply in time.
    #[error("agent '{agent}' sent no reply within {waited:?} ({missing} of {asked} replies missing; asked on topic '{topic}', replies expected on '{reply_to}'); is a worker running the agent, and does it answer with stream.reply()? Wait longer with .timeout() or --reply-timeout (FAUST_REPLY_TIMEOUT)")]
    NoReply {
        /// The agent (or topic) asked.
        agent: String,
        /// The topic the requests went to.
        topic: String,
        /// The topic replies were expected on.
        reply_to: String,
        /// How long the last reply was waited for.
        waited: std::time::Duration,
        /// Requests still without a reply.
        missing: usize,
        /// Requests sent.
        asked: usize,
    },

    /// A table write from an event whose partition was revoked while it ran (the drain
    /// timeout passed): the write is refused, since the partition's next owner, maybe
    /// this worker again, processes the event anew from the committed offset.
    #[error("table '{table}' refused a write from the event {event}: the partition was revoked while the event ran, and its next owner processes the event again")]
    Revoked {
        /// The table written.
        table: String,
        /// The event (`topic[partition]@offset`).
        event: String,
    },

    /// An agent kept failing faster than the restart limit allows.
    #[error("agent '{agent}' failed {restarts} times within {window:?}; the worker stops so that a supervisor can restart it. Last error: {last_error}")]
    AgentCrashLoop {
        /// The agent's name.
        agent: String,
        /// How often it failed...
        restarts: usize,
        /// ...within this long.
        window: Duration,
        /// Its last failure.
        last_error: String,
    },

    /// The worker's own machinery failed (a thread died, the embedded broker stopped).
    #[error("{0}")]
    Worker(String),

    /// An error raised by user code (an agent, task or command).
    #[error("{0}")]
    User(String),

    /// A table store's directory is held by another process.
    #[error("the table store {path} is locked by another process ({message}); two workers probably share one datadir: give each worker its own --datadir")]
    StoreLocked {
        /// The store's directory.
        path: std::path::PathBuf,
        /// What RocksDB said.
        message: String,
    },

    /// Another worker of the app holds the datadir.
    #[error("the datadir {path} is in use by another running worker of this app; give each worker its own --datadir (FAUST_DATADIR), or stop the other one first")]
    DatadirLocked {
        /// The datadir.
        path: std::path::PathBuf,
    },

    /// A table store failed.
    #[error("table store {path}: {message}")]
    Store {
        /// The store's directory.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A table was used wrongly (outside event processing, an unheld partition...).
    #[error("{0}")]
    Table(String),

    /// The local disk refused an operation.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the worker was doing.
        context: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// An error the Kafka client (librdkafka) reported; its text says what went wrong.
#[derive(Debug)]
pub struct KafkaError(rdkafka::error::KafkaError);

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for KafkaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// An error from user code, for agents and commands that want to fail with a message.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Error::User(message.to_string())
    }

    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source: KafkaError(source),
        }
    }

    /// The broker refused a message for its size: sending it again cannot succeed.
    pub fn is_message_too_large(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge;
        matches!(self, Error::Kafka { source, .. }
            if source.0.rdkafka_error_code() == Some(MessageSizeTooLarge))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::User(format!("JSON error: {e}"))
    }
}

/// `Result` with the runtime's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a panic said, from its payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}
