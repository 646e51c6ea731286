//! What an actor's events sent, until the broker has it.
//!
//! A send from agent code (`faust::send`, `Sink::send`, `group_by`) only queues a
//! message; the event that sent it is acknowledged (and may be committed) once every
//! message it sent is delivered. One acker task per actor awaits those deliveries, the
//! events side by side, so an agent forwards at the producer's pace instead of waiting
//! a round trip per event. A message that cannot be delivered (the
//! producer gave up after its retries) leaves its event unacknowledged and stops the
//! worker: the event runs again after the restart.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use futures_util::{stream::FuturesUnordered, StreamExt as _};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{error, warn};

use crate::{
    context::WorkerContext,
    event::{self, Header, Message},
    origin,
    transport::{
        channel::Channels,
        producer::{Delivery, Producer, Record, Undelivered},
    },
    Error, Result,
};

tokio::task_local! {
    /// The outbox of the actor the caller runs in.
    static OUTBOX: Outbox;
}

/// Runs `future` (an actor) with `outbox` as its outbox.
pub(crate) async fn scope<F: std::future::Future>(outbox: Outbox, future: F) -> F::Output {
    OUTBOX.scope(outbox, future).await
}

/// Queues `record` for `topic` without waiting for the broker. Sent while an actor
/// processes an event, the delivery is owed by that event (it is acknowledged once the
/// broker has the record); otherwise the producer watches it.
pub(crate) async fn queue(producer: &Producer, topic: &Arc<str>, record: Record<'_>) -> Result<()> {
    let headers = origin_headers(topic, &record);
    let record = with_headers(record, headers.as_deref());
    let queued = Instant::now();
    let delivery = producer
        .enqueue_async(topic, record, event::in_event())
        .await?;
    owe(producer, topic, queued, delivery, true);
    Ok(())
}

/// [`queue`] for a reply to an ask: the event still waits for its delivery, but a reply
/// that cannot be delivered (the asker's reply topic is gone) is logged, not fatal, so
/// one asker cannot stop the agents it asks.
pub(crate) async fn queue_reply(producer: &Producer, topic: &Arc<str>, record: Record<'_>) {
    let queued = Instant::now();
    // A full queue is waited out inside; what is left cannot be sent at all (a reply
    // topic name or a reply the broker refuses): the asker's problem, logged.
    match producer
        .enqueue_async(topic, record, event::in_event())
        .await
    {
        Ok(delivery) => owe(producer, topic, queued, delivery, false),
        Err(error) => {
            warn!(%topic, %error, "a reply to an ask cannot be sent; the event is acknowledged without it")
        }
    }
}

/// [`queue`], and a handle on the delivery for the caller.
pub(crate) async fn queue_kept(
    producer: &Producer,
    topic: &Arc<str>,
    record: Record<'_>,
) -> Result<Delivery> {
    let headers = origin_headers(topic, &record);
    let record = with_headers(record, headers.as_deref());
    let queued = Instant::now();
    let (kept, owed) = producer
        .enqueue_async(topic, record, event::in_event())
        .await?
        .share();
    owe(producer, topic, queued, owed, true);
    Ok(kept)
}

/// Queues `record` for `target` (one of the app's channels, an agent's name, or a
/// topic) as [`queue_kept`] does; returns where it went and a handle on its delivery.
pub(crate) async fn queue_to(
    worker: &WorkerContext,
    target: &str,
    record: Record<'_>,
) -> Result<(Arc<str>, Delivery)> {
    // An agent's name stands for what it reads, which may be a channel.
    let topic = worker.topic(target);
    if let Some(channels) = worker.channel(&topic)? {
        let delivery = queue_channel(channels, &worker.producer, &topic, record)?;
        return Ok((topic, delivery));
    }
    let delivery = queue_kept(&worker.producer, &topic, record).await?;
    Ok((topic, delivery))
}

/// [`queue_kept`] for an in-memory channel: hands `record` to the channel's agents; the
/// event being processed is acknowledged once they are done with it.
pub(crate) fn queue_channel(
    channels: &Channels,
    producer: &Producer,
    channel: &Arc<str>,
    record: Record<'_>,
) -> Result<Delivery> {
    let (kept, owed) = channels.send(channel, &record)?.share();
    owe(producer, channel, Instant::now(), owed, true);
    Ok(kept)
}

/// The headers of `record` sent to `topic` with the origin of the event being processed
/// (see `origin`), or without the origin it copied from another record; `None`: as they
/// are.
fn origin_headers(topic: &str, record: &Record<'_>) -> Option<Vec<Header>> {
    let stamp = event::stamp(topic);
    let copied = record.headers.iter().any(|h| h.key == origin::HEADER);
    (stamp.is_some() || copied).then(|| event::with_origin(record.headers, stamp))
}

fn with_headers<'a>(record: Record<'a>, headers: Option<&'a [Header]>) -> Record<'a> {
    match headers {
        Some(headers) => Record { headers, ..record },
        None => record,
    }
}

/// Hands a delivery to the event being processed, or else to the producer's watcher.
fn owe(
    producer: &Producer,
    topic: &Arc<str>,
    queued: Instant,
    delivery: Delivery,
    essential: bool,
) {
    let mut pending = Some(Pending {
        topic: topic.clone(),
        queued,
        delivery,
        essential,
    });
    if event::in_event() {
        let _ = OUTBOX.try_with(|outbox| pending.take().map(|p| outbox.add(p)));
    }
    if let Some(Pending {
        topic,
        queued,
        delivery,
        ..
    }) = pending
    {
        producer.watch(topic, queued, delivery);
    }
}

/// A queued message, not yet delivered.
pub(crate) struct Pending {
    pub(crate) topic: Arc<str>,
    pub(crate) queued: Instant,
    pub(crate) delivery: Delivery,
    /// Whether its failure stops the worker (everything but replies to asks).
    pub(crate) essential: bool,
}

/// Shared by an actor's stream and sinks: the sinks add, the stream hands over.
#[derive(Clone)]
pub(crate) struct Outbox {
    pending: Arc<Mutex<Vec<Pending>>>,
    acker: mpsc::UnboundedSender<(Vec<Pending>, Vec<Message>)>,
}

impl Outbox {
    /// An outbox and the task acknowledging its events; the task ends once every clone
    /// of the outbox is gone and the last delivery was awaited.
    pub(crate) fn start(
        producer: Producer,
        fatal: mpsc::UnboundedSender<Error>,
    ) -> (Outbox, JoinHandle<()>) {
        let (acker, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(acknowledge(events, producer, fatal));
        let outbox = Outbox {
            pending: Arc::default(),
            acker,
        };
        (outbox, task)
    }

    pub(crate) fn add(&self, pending: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pending);
    }

    /// The actor is done with `messages` (one event, or a batch): acknowledge them now,
    /// or once what they sent is delivered.
    pub(crate) fn finish(&self, messages: Vec<Message>) {
        self.finish_with(self.take_pending(), messages);
    }

    /// What the event being processed sent so far, taken to be owed by it later (an
    /// event held past the loop).
    pub(crate) fn take_pending(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Acknowledges `messages` now, or once `pending` is delivered.
    pub(crate) fn finish_with(&self, pending: Vec<Pending>, messages: Vec<Message>) {
        if pending.is_empty() {
            messages.into_iter().for_each(Message::ack);
        } else if self.acker.send((pending, messages)).is_err() {
            // The acker is gone (the worker is going away): the event stays
            // unacknowledged and runs again after a restart.
        }
    }
}

async fn acknowledge(
    mut events: mpsc::UnboundedReceiver<(Vec<Pending>, Vec<Message>)>,
    producer: Producer,
    fatal: mpsc::UnboundedSender<Error>,
) {
    // Events settle side by side, not in line: one that sent to a channel its own actor
    // reads waits for an acknowledgement queued behind it. Acknowledging out of order is
    // safe: the consumer commits only a partition's acknowledged prefix.
    let failed = AtomicBool::new(false);
    let mut settling = FuturesUnordered::new();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some((pending, messages)) => {
                    settling.push(settle(pending, messages, &producer, &fatal, &failed));
                }
                None => break,
            },
            Some(()) = settling.next(), if !settling.is_empty() => {}
        }
    }
    while settling.next().await.is_some() {}
}

/// Acknowledges `messages` once `pending` is delivered. After a failed delivery nothing
/// is acknowledged any more (the worker is stopping), and the failures of the messages
/// after it are not logged one by one.
async fn settle(
    pending: Vec<Pending>,
    messages: Vec<Message>,
    producer: &Producer,
    fatal: &mpsc::UnboundedSender<Error>,
    failed: &AtomicBool,
) {
    let Some(message) = messages.last() else {
        return;
    };
    // A channel message dropped unprocessed: the worker is stopping; the event stays
    // unacknowledged, to run again after the restart.
    let mut unprocessed = false;
    for Pending {
        topic,
        queued,
        delivery,
        essential,
    } in pending
    {
        let outcome = producer.settle(&topic, queued, delivery).await;
        if let Err(Undelivered::Unprocessed) = outcome {
            unprocessed = true;
            continue;
        }
        if let (Err(error), false) = (&outcome, essential) {
            warn!(%topic, event = %message.position(), %error, "a reply to an ask was not delivered (is the asker's reply topic gone?); the event is acknowledged");
            continue;
        }
        if let Err(error) = outcome {
            if !failed.swap(true, Ordering::SeqCst) {
                error!(%topic, event = %message.position(), %error, "a message this event sent was not delivered");
                let _ = fatal.send(Error::Send(format!(
                    "a message for topic '{topic}' sent by the event at {} was not delivered \
                     ({error}); stopping so that the event, and those after it, run again \
                     after a restart",
                    message.position()
                )));
            }
        }
    }
    if !failed.load(Ordering::SeqCst) && !unprocessed {
        messages.into_iter().for_each(Message::ack);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use tokio::sync::Notify;

    use super::*;
    use crate::{
        event::{Ack, Acknowledge},
        sensors::Sensors,
        time::Clock,
        transport::{consumer::Routes, memory::MemoryLog},
    };

    /// Counts acknowledgements.
    #[derive(Default)]
    struct Acked {
        count: AtomicUsize,
        changed: Notify,
    }

    impl Acknowledge for Acked {
        fn begin(&self, _: &Arc<str>, _: i32, _: u64, _: i64) -> bool {
            true
        }

        fn acknowledge(&self, _: &Arc<str>, _: i32, _: u64, _: i64) {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.changed.notify_waiters();
        }
    }

    impl Acked {
        /// Whether an acknowledgement comes within `within`.
        async fn comes(&self, within: Duration) -> bool {
            let changed = self.changed.notified();
            self.count.load(Ordering::SeqCst) > 0
                || tokio::time::timeout(within, changed).await.is_ok()
        }
    }

    fn event(offset: i64, acked: &Arc<Acked>) -> Message {
        Message {
            topic: Arc::from("source"),
            partition: 0,
            offset,
            timestamp: None,
            key: None,
            payload: None,
            headers: Vec::new(),
            ack: Ack {
                sink: acked.clone(),
                generation: 0,
            },
        }
    }

    /// Runs `send` as the actor processing `message`, then finishes the event.
    async fn process(outbox: &Outbox, message: Message, send: impl std::future::Future) {
        let slot = Arc::new(Mutex::new(Some(message.position())));
        scope(outbox.clone(), event::scope(slot, send)).await;
        outbox.finish(vec![message]);
    }

    #[tokio::test]
    async fn an_event_that_sent_to_a_channel_is_acknowledged_only_once_its_agent_is_done() {
        let log = Arc::new(MemoryLog::new(1, Clock::system()));
        let producer = Producer::in_memory(log, Sensors::new(Arc::default(), &[]));
        let (fatal, mut fatal_errors) = mpsc::unbounded_channel();
        let (outbox, _acker) = Outbox::start(producer.clone(), fatal);
        let mut routes = Routes::default();
        let (inbox, mut channel) = mpsc::unbounded_channel();
        routes.add("relay", "reader", vec![inbox]);
        let channels = Channels::new(routes, Clock::system(), producer.clone());
        let relay = Arc::from("relay");
        let record = Record {
            value: Some(b"x"),
            ..Record::default()
        };

        let acked = Arc::new(Acked::default());
        process(&outbox, event(7, &acked), async {
            queue_channel(&channels, &producer, &relay, record.clone()).unwrap();
        })
        .await;
        let relayed = channel.recv().await.unwrap();
        assert!(
            !acked.comes(Duration::from_millis(50)).await,
            "the event waits for the channel's agent"
        );
        relayed.ack();
        assert!(acked.comes(Duration::from_secs(5)).await);

        // Dropped unprocessed (the worker stopping): the event stays unacknowledged, to
        // run again after a restart, and that is not a fatal error.
        let dropped = Arc::new(Acked::default());
        process(&outbox, event(8, &dropped), async {
            queue_channel(&channels, &producer, &relay, record.clone()).unwrap();
        })
        .await;
        drop(channel.recv().await);
        let later = Arc::new(Acked::default());
        process(&outbox, event(9, &later), async {
            queue_channel(&channels, &producer, &relay, record.clone()).unwrap();
        })
        .await;
        channel.recv().await.unwrap().ack();
        assert!(
            later.comes(Duration::from_secs(5)).await,
            "later events go on"
        );
        assert_eq!(dropped.count.load(Ordering::SeqCst), 0);
        assert!(fatal_errors.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_event_waiting_on_a_channel_its_own_actor_reads_is_not_stuck_behind_it() {
        let log = Arc::new(MemoryLog::new(1, Clock::system()));
        let producer = Producer::in_memory(log, Sensors::new(Arc::default(), &[]));
        let (fatal, _fatal_errors) = mpsc::unbounded_channel();
        let (outbox, _acker) = Outbox::start(producer.clone(), fatal);
        let mut routes = Routes::default();
        let (inbox, mut channel) = mpsc::unbounded_channel();
        routes.add("loop", "same-actor", vec![inbox]);
        let channels = Channels::new(routes, Clock::system(), producer.clone());
        let record = Record {
            value: Some(b"x"),
            ..Record::default()
        };

        // The event sends to the channel; the same actor then processes the channel's
        // message, which sends to a topic: its acknowledgement is queued after the
        // event's, which waits for it.
        let acked = Arc::new(Acked::default());
        process(&outbox, event(1, &acked), async {
            queue_channel(&channels, &producer, &Arc::from("loop"), record.clone()).unwrap();
        })
        .await;
        let looped = channel.recv().await.unwrap();
        let out: Arc<str> = Arc::from("out");
        process(&outbox, looped, async {
            queue_kept(&producer, &out, record.clone()).await.unwrap();
        })
        .await;
        assert!(acked.comes(Duration::from_secs(5)).await, "not deadlocked");
    }
}
