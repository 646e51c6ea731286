//! In-memory channels (Python Faust's `app.channel()`): names the app declares, which
//! its agents read and its code sends to like topics, handed from sender to agents
//! inside the worker without a broker. Nothing is stored, so a channel message has no
//! offset to commit: instead its [`Delivery`] completes once every agent reading the
//! channel acknowledged it, and a message sent while an event is processed is owed by
//! that event like any other send (see `agents::outbox`). A crash then loses nothing
//! that came from a topic: the event was not acknowledged, so it runs again.

use std::sync::{
    atomic::{AtomicI64, AtomicUsize, Ordering},
    Arc, Mutex,
};

use futures_util::FutureExt as _;
use tokio::sync::{oneshot, Notify};

use super::{
    consumer::Routes,
    producer::{Delivery, Producer, Record},
};
use crate::{
    event::{Ack, Acknowledge, Message, CHANNEL_PARTITION},
    time::Clock,
    Error, Result,
};

/// The app's channels and the inboxes of the agents reading them.
pub(crate) struct Channels {
    routes: Routes,
    /// Numbers the messages (their "offsets", for logs and `Sent::delivered`).
    next: AtomicI64,
    clock: Clock,
    /// Keeps a copy of each message in a test context's log.
    producer: Producer,
    busy: Arc<Busy>,
}

/// How many channel messages are not processed yet (the test context waits for none).
#[derive(Default)]
pub(crate) struct Busy {
    count: AtomicUsize,
    pub(crate) changed: Notify,
}

impl Busy {
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Channels {
    /// The app's channels, read through `routes` (which channels there are is the
    /// config's to say).
    pub(crate) fn new(routes: Routes, clock: Clock, producer: Producer) -> Channels {
        Channels {
            routes,
            next: AtomicI64::new(0),
            clock,
            producer,
            busy: Arc::default(),
        }
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn busy(&self) -> &Arc<Busy> {
        &self.busy
    }

    /// Hands `record` to every agent reading the channel `name`; the delivery completes
    /// once each has acknowledged it. Records of one channel reach an agent's actors in
    /// turn (a channel has no partitions to keep apart).
    pub(crate) fn send(&self, name: &str, record: &Record<'_>) -> Result<Delivery> {
        let readers = self.routes.readers(name).unwrap_or(0);
        if readers == 0 {
            return Err(Error::Send(format!(
                "no agent reads the channel '{name}': a channel's values are handed to its \
                 agents in memory, so one must read it (`topic = \"{name}\"`)"
            )));
        }
        let offset = self.next.fetch_add(1, Ordering::SeqCst);
        let (done, processed) = oneshot::channel();
        self.busy.count.fetch_add(1, Ordering::SeqCst);
        let processing = Arc::new(Processing {
            remaining: AtomicUsize::new(readers),
            done: Mutex::new(Some(done)),
            busy: self.busy.clone(),
        });
        let timestamp = record.timestamp.unwrap_or_else(|| self.clock.now_ms());
        self.producer.tap(
            name,
            &Record {
                timestamp: Some(timestamp),
                ..*record
            },
        );
        // Actors in turn: the message's number picks the actor.
        let turn = (offset % i64::from(i32::MAX)) as i32;
        self.routes.deliver(name, turn, |topic| Message {
            topic,
            partition: CHANNEL_PARTITION,
            offset,
            timestamp: Some(timestamp),
            key: record.key.map(<[u8]>::to_vec),
            payload: record.value.map(<[u8]>::to_vec),
            headers: record.headers.to_vec(),
            ack: Ack {
                sink: processing.clone(),
                generation: 0,
            },
        });
        Ok(Delivery::Channel {
            processed: processed.shared(),
            offset,
        })
    }
}

/// One channel message, handed to `remaining` agents: done when each acknowledged it.
/// Dropped before that (the worker stopped), its delivery fails.
struct Processing {
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
    busy: Arc<Busy>,
}

impl Acknowledge for Processing {
    fn begin(&self, _: &Arc<str>, _: i32, _: u64, _: i64) -> bool {
        true
    }

    fn acknowledge(&self, _: &Arc<str>, _: i32, _: u64, _: i64) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }
}

impl Drop for Processing {
    fn drop(&mut self) {
        self.busy.count.fetch_sub(1, Ordering::SeqCst);
        self.busy.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    fn record(value: &[u8]) -> Record<'_> {
        Record {
            value: Some(value),
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn a_message_is_delivered_once_every_reader_acknowledged_it_and_fails_if_dropped() {
        let mut routes = Routes::default();
        let (a, mut inbox_a) = mpsc::unbounded_channel();
        let (b, mut inbox_b) = mpsc::unbounded_channel();
        routes.add("actions", "first", vec![a]);
        routes.add("actions", "second", vec![b]);
        let producer = Producer::in_memory(
            Arc::new(super::super::memory::MemoryLog::new(1, Clock::system())),
            crate::sensors::Sensors::new(Arc::default(), &[]),
        );
        let channels = Channels::new(routes, Clock::system(), producer.clone());

        let delivery = channels.send("actions", &record(b"1")).unwrap();
        let (first, second) = (inbox_a.recv().await.unwrap(), inbox_b.recv().await.unwrap());
        assert_eq!(first.payload.as_deref(), Some(&b"1"[..]));
        assert_eq!(channels.busy().count(), 1);
        first.ack();
        let mut delivery = std::pin::pin!(delivery.wait());
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), delivery.as_mut());
        assert!(waited.await.is_err(), "one reader is not done");
        second.ack();
        assert_eq!(delivery.await.unwrap().offset, 0);
        assert_eq!(channels.busy().count(), 0);

        let dropped = channels.send("actions", &record(b"2")).unwrap();
        drop((inbox_a.recv().await, inbox_b.recv().await));
        assert!(matches!(
            dropped.wait().await,
            Err(super::super::producer::Undelivered::Unprocessed)
        ));

        let unread = Channels::new(Routes::default(), Clock::system(), producer);
        let Err(error) = unread.send("lonely", &record(b"3")) else {
            panic!("a channel nobody reads takes no messages");
        };
        let error = error.to_string();
        assert!(
            error.contains("no agent reads the channel 'lonely'"),
            "{error}"
        );
    }
}
