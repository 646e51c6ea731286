//! Sensors observe the worker. The [`Monitor`] counts what happens; the monitoring issue
//! grows it into per-topic metrics served over HTTP. Counting is a relaxed atomic add,
//! cheap enough for the hot path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The worker's built-in counters.
#[derive(Debug, Default)]
pub struct Monitor {
    messages_received: AtomicU64,
    events_processed: AtomicU64,
    decode_errors: AtomicU64,
    agent_errors: AtomicU64,
    messages_sent: AtomicU64,
    send_errors: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_received: u64,
    pub events_processed: u64,
    pub decode_errors: u64,
    pub agent_errors: u64,
    pub messages_sent: u64,
    pub send_errors: u64,
}

impl Monitor {
    pub(crate) fn message_received(&self) {
        self.messages_received.fetch_add(1, Relaxed);
    }
    pub(crate) fn event_processed(&self) {
        self.events_processed.fetch_add(1, Relaxed);
    }
    pub(crate) fn decode_error(&self) {
        self.decode_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn agent_error(&self) {
        self.agent_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn message_sent(&self) {
        self.messages_sent.fetch_add(1, Relaxed);
    }
    pub(crate) fn send_failed(&self) {
        self.send_errors.fetch_add(1, Relaxed);
    }

    pub fn counters(&self) -> Counters {
        Counters {
            messages_received: self.messages_received.load(Relaxed),
            events_processed: self.events_processed.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            agent_errors: self.agent_errors.load(Relaxed),
            messages_sent: self.messages_sent.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
        }
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received={} processed={} decode_errors={} agent_errors={} sent={} send_errors={}",
            self.messages_received,
            self.events_processed,
            self.decode_errors,
            self.agent_errors,
            self.messages_sent,
            self.send_errors
        )
    }
}
