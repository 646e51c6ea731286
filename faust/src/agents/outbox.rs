//! What an actor's events sent, until the broker has it.
//!
//! A send from agent code (`faust::send`, `Sink::send`, `group_by`) only queues a
//! message; the event that sent it is acknowledged (and may be committed) once every
//! message it sent is delivered. One acker task per actor
//! awaits those deliveries in order, so an agent forwards at the producer's pace
//! instead of waiting a round trip per event. A message that cannot be delivered (the
//! producer gave up after its retries) leaves its event unacknowledged and stops the
//! worker: the event runs again after the restart.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{error, warn};

use crate::{
    event::{self, Message},
    transport::producer::{Delivery, Producer, Record},
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
    let queued = Instant::now();
    let (kept, owed) = producer
        .enqueue_async(topic, record, event::in_event())
        .await?
        .share();
    owe(producer, topic, queued, owed, true);
    Ok(kept)
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
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
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
    // After a failed delivery nothing is acknowledged any more (the worker is stopping),
    // and the failures of the messages queued behind it are not logged one by one.
    let mut failed = false;
    while let Some((pending, messages)) = events.recv().await {
        let Some(message) = messages.last() else {
            continue;
        };
        for Pending {
            topic,
            queued,
            delivery,
            essential,
        } in pending
        {
            let outcome = producer.settle(&topic, queued, delivery).await;
            if let (Err(error), false) = (&outcome, essential) {
                warn!(%topic, event = %message.position(), %error, "a reply to an ask was not delivered (is the asker's reply topic gone?); the event is acknowledged");
                continue;
            }
            if let (Err(error), false) = (outcome, failed) {
                failed = true;
                error!(%topic, event = %message.position(), %error, "a message this event sent was not delivered");
                let _ = fatal.send(Error::Send(format!(
                    "a message for topic '{topic}' sent by the event at {} was not delivered \
                     ({error}); stopping so that the event, and those after it, run again \
                     after a restart",
                    message.position()
                )));
            }
        }
        if !failed {
            messages.into_iter().for_each(Message::ack);
        }
    }
}
