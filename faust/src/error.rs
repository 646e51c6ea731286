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
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// The broker could not be reached at start.
    #[error("could not reach the broker at {broker} ({reason}); is it running, and is --broker / FAUST_BROKER right?")]
    Unreachable { broker: String, reason: String },

    /// The broker did not answer in time.
    #[error("timed out after {timeout:?} while {context}; is the broker at {broker} running and reachable?")]
    Timeout {
        context: String,
        broker: String,
        timeout: Duration,
    },

    /// Topics the app reads or writes do not exist and topic creation is turned off.
    #[error("topic creation is off (create_topics = false) and these topics do not exist: {}; create them, or turn creation on with --create-topics true / FAUST_CREATE_TOPICS=true", topics.join(", "))]
    MissingTopics { topics: Vec<String> },

    /// A value could not be encoded for sending.
    #[error("could not encode the value for '{target}': {message}")]
    Encode { target: String, message: String },

    /// `send` was called for a topic or agent the app does not know, or outside a worker.
    #[error("{0}")]
    Send(String),

    /// An agent kept failing faster than the restart limit allows.
    #[error("agent '{agent}' failed {restarts} times within {window:?}; the worker stops so that a supervisor can restart it. Last error: {last_error}")]
    AgentCrashLoop {
        agent: String,
        restarts: usize,
        window: Duration,
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
        path: std::path::PathBuf,
        message: String,
    },

    /// Another worker of the app holds the datadir.
    #[error("the datadir {path} is in use by another running worker of this app; give each worker its own --datadir (FAUST_DATADIR), or stop the other one first")]
    DatadirLocked { path: std::path::PathBuf },

    /// A table store failed.
    #[error("table store {path}: {message}")]
    Store {
        path: std::path::PathBuf,
        message: String,
    },

    /// A table was used wrongly (outside event processing, an unheld partition...).
    #[error("{0}")]
    Table(String),

    /// The local disk refused an operation.
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An error from user code, for agents and commands that want to fail with a message.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Error::User(message.to_string())
    }

    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    /// The broker refused a message for its size: sending it again cannot succeed.
    pub fn is_message_too_large(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge;
        matches!(self, Error::Kafka { source, .. }
            if source.rdkafka_error_code() == Some(MessageSizeTooLarge))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::User(format!("JSON error: {e}"))
    }
}

/// `Result` with the runtime's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
