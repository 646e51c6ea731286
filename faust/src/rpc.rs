//! Agent RPC, as Python Faust's `agent.ask`, `cast`, `map`, `kvmap`, `join` and `kvjoin`:
//! a request goes to the agent's topic with the address of this worker's reply topic,
//! the agent answers with [`Stream::reply`](crate::Stream::reply), and the answer comes
//! back through the reply topic. The wire format is Faust's, so a faust-rs worker can
//! ask a Faust agent and be asked by one.
//!
//! ```no_run
//! use faust::prelude::*;
//! use faust::Agent;
//!
//! #[faust::agent(topic = "RPC__mul")]
//! async fn mul(mut stream: Stream<f64>) -> faust::Result<()> {
//!     while let Some(value) = stream.next().await {
//!         stream.reply(&(value * 100.0)).await?;
//!     }
//!     Ok(())
//! }
//!
//! # async fn demo() -> faust::Result<()> {
//! let product: f64 = Agent::named("mul").ask(&3.0).await?;
//! let products: Vec<f64> = Agent::named("mul").join([1.0, 2.0]).await?;
//! # Ok(()) }
//! ```

use std::{any::type_name, collections::HashMap, marker::PhantomData, sync::Arc, time::Duration};

use futures_util::FutureExt as _;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    agents::outbox,
    codec::KeyCodec,
    context::{self, WorkerContext},
    request::{self, ReplyAddress},
    send::{self, Sent},
    transport::{
        producer::{Delivery, Record},
        replies::{Reply, Waiter},
    },
    Error, Result,
};

/// An agent to ask (or cast to), by its name or the topic it reads, as Faust's agent
/// object is: `Agent::named("mul").ask(&3.0)`. It works wherever `faust::send` does:
/// in agents, tasks, timers, commands given a broker, web handlers and test contexts.
#[derive(Debug, Clone)]
pub struct Agent {
    name: String,
    key: Option<std::result::Result<Vec<u8>, String>>,
    timeout: Option<Duration>,
}

impl Agent {
    /// The agent `name` (or any topic an agent reads).
    pub fn named(name: &str) -> Agent {
        Agent {
            name: name.to_owned(),
            key: None,
            timeout: None,
        }
    }

    /// Sends the requests with this key (written as [`crate::send`] writes keys), so
    /// they go to the key's partition, as Faust's `ask(value, key=...)`.
    pub fn key<K: Serialize + ?Sized>(mut self, key: &K) -> Agent {
        self.key = Some(KeyCodec::Raw.encode(key));
        self
    }

    /// How long to wait for a reply (for `join` and `map`: for each next one) instead
    /// of the worker's `reply_timeout` (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Agent {
        self.timeout = Some(timeout);
        self
    }

    /// Sends `value` without asking for a reply (Faust's `cast`); queued like
    /// [`crate::send`].
    pub async fn cast<V: Serialize + ?Sized>(&self, value: &V) -> Result<Sent> {
        let key = self.encoded_key()?;
        let value = encode(&self.name, value)?;
        send::send_bytes(&self.name, key.as_deref(), Some(&value), None).await
    }

    /// Sends `value` and waits for the agent's reply to it.
    pub async fn ask<V, R>(&self, value: &V) -> Result<R>
    where
        V: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let mut replies: Vec<R> = self.join([value]).await?;
        replies
            .pop()
            .ok_or_else(|| Error::msg("an ask ended without its reply"))
    }

    /// Sends every value and returns the replies in the order of the values, once all
    /// came (Faust's `join`).
    pub async fn join<V, R>(&self, values: impl IntoIterator<Item = V>) -> Result<Vec<R>>
    where
        V: Serialize,
        R: DeserializeOwned,
    {
        let requests = self.requests(values)?;
        self.collect_in_order(requests).await
    }

    /// [`join`](Agent::join) for `(key, value)` pairs, each request with its own key
    /// (Faust's `kvjoin`).
    pub async fn kvjoin<K, V, R>(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<Vec<R>>
    where
        K: Serialize,
        V: Serialize,
        R: DeserializeOwned,
    {
        let requests = self.keyed_requests(items)?;
        self.collect_in_order(requests).await
    }

    /// Sends every value and returns its replies as they come, in any order (Faust's
    /// `map`).
    pub async fn map<V, R>(&self, values: impl IntoIterator<Item = V>) -> Result<Replies<R>>
    where
        V: Serialize,
        R: DeserializeOwned,
    {
        let requests = self.requests(values)?;
        Ok(Replies::new(self.request(requests).await?))
    }

    /// [`map`](Agent::map) for `(key, value)` pairs (Faust's `kvmap`).
    pub async fn kvmap<K, V, R>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Replies<R>>
    where
        K: Serialize,
        V: Serialize,
        R: DeserializeOwned,
    {
        let requests = self.keyed_requests(items)?;
        Ok(Replies::new(self.request(requests).await?))
    }

    async fn collect_in_order<R: DeserializeOwned>(
        &self,
        requests: Vec<Request>,
    ) -> Result<Vec<R>> {
        let mut pending = self.request(requests).await?;
        let mut replies: Vec<Option<R>> = (0..pending.asked).map(|_| None).collect();
        while pending.missing > 0 {
            let (at, reply) = pending.next().await?;
            replies[at] = Some(reply);
        }
        Ok(replies.into_iter().flatten().collect())
    }

    /// The values as requests, each with this handle's key (if any).
    fn requests<V: Serialize>(&self, values: impl IntoIterator<Item = V>) -> Result<Vec<Request>> {
        let key = self.encoded_key()?;
        values
            .into_iter()
            .map(|value| Ok((key.clone(), encode(&self.name, &value)?)))
            .collect()
    }

    /// The pairs as requests, each with its own key.
    fn keyed_requests<K: Serialize, V: Serialize>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Vec<Request>> {
        items
            .into_iter()
            .map(|(key, value)| {
                let key = KeyCodec::Raw.encode(&key).map_err(|m| self.key_error(m))?;
                Ok((Some(key), encode(&self.name, &value)?))
            })
            .collect()
    }

    fn encoded_key(&self) -> Result<Option<Vec<u8>>> {
        self.key.clone().transpose().map_err(|m| self.key_error(m))
    }

    fn key_error(&self, message: String) -> Error {
        Error::Encode {
            target: self.name.clone(),
            message: format!("key: {message}"),
        }
    }

    /// Queues one request per `(key, value)`, each with the reply address of its own.
    async fn request(&self, requests: Vec<Request>) -> Result<Pending> {
        let worker = context::current().ok_or_else(|| Error::Send(send::NO_WORKER.into()))?;
        let topic = worker.topic(&self.name);
        let (addresses, waiter) = worker.replies.expect(requests.len()).await?;
        let mut deliveries = Vec::with_capacity(requests.len());
        for ((key, value), address) in requests.iter().zip(&addresses) {
            let headers = request::request_headers(address);
            let record = Record {
                key: key.as_deref(),
                value: Some(value),
                headers: &headers,
                ..Record::default()
            };
            let (_, delivery) = outbox::queue_to(&worker, &topic, record).await?;
            deliveries.push(delivery);
        }
        Ok(Pending {
            agent: self.name.clone(),
            timeout: self.timeout.unwrap_or(worker.config.reply_timeout),
            positions: addresses
                .into_iter()
                .enumerate()
                .map(|(at, ReplyAddress { correlation_id, .. })| (correlation_id, at))
                .collect(),
            asked: requests.len(),
            missing: requests.len(),
            topic,
            worker,
            waiter,
            deliveries,
        })
    }
}

/// A request's key and value, encoded.
type Request = (Option<Vec<u8>>, Vec<u8>);

fn encode<V: Serialize + ?Sized>(target: &str, value: &V) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Encode {
        target: target.to_owned(),
        message: format!("value: {e}"),
    })
}

/// Requests sent, and their replies still to come.
struct Pending {
    agent: String,
    topic: Arc<str>,
    worker: Arc<WorkerContext>,
    timeout: Duration,
    /// Correlation id -> the request's position.
    positions: HashMap<String, usize>,
    asked: usize,
    missing: usize,
    waiter: Waiter,
    deliveries: Vec<Delivery>,
}

impl Pending {
    /// The next reply and the position of its request, decoded as `R`.
    async fn next<R: DeserializeOwned>(&mut self) -> Result<(usize, R)> {
        loop {
            let Some(Reply {
                correlation_id,
                value,
            }) = self.waiter.next(self.timeout).await
            else {
                return Err(self.no_reply());
            };
            // A second reply to one request (a redelivered request) is not counted again.
            let Some(at) = self.positions.remove(&correlation_id) else {
                continue;
            };
            self.missing -= 1;
            let reply = serde_json::from_str(value.get()).map_err(|e| {
                Error::msg(format!(
                    "the reply of agent '{}' is not a {}: {e} (the reply: {})",
                    self.agent,
                    type_name::<R>(),
                    value.get()
                ))
            })?;
            return Ok((at, reply));
        }
    }

    /// Why the replies stopped: a request that could not be delivered, or none came.
    fn no_reply(&mut self) -> Error {
        for delivery in self.deliveries.drain(..) {
            if let Some(Err(undelivered)) = delivery.now_or_never() {
                return undelivered.into_error(&self.topic);
            }
        }
        Error::NoReply {
            agent: self.agent.clone(),
            topic: self.topic.to_string(),
            reply_to: self.worker.replies.topic().to_string(),
            waited: self.timeout,
            missing: self.missing,
            asked: self.asked,
        }
    }
}

/// The replies of a [`map`](Agent::map), as they come.
pub struct Replies<R> {
    pending: Pending,
    failed: bool,
    _reply: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Replies<R> {
    fn new(pending: Pending) -> Replies<R> {
        Replies {
            pending,
            failed: false,
            _reply: PhantomData,
        }
    }

    /// The next reply; `None` once every request has its reply (or after an error: a
    /// reply that did not come in time, or could not be decoded).
    pub async fn next(&mut self) -> Option<Result<R>> {
        if self.failed || self.pending.missing == 0 {
            return None;
        }
        let next = self.pending.next().await.map(|(_, reply)| reply);
        self.failed = next.is_err();
        Some(next)
    }

    /// Replies still to come.
    pub fn remaining(&self) -> usize {
        if self.failed {
            0
        } else {
            self.pending.missing
        }
    }
}

impl<R> std::fmt::Debug for Replies<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("agent", &self.pending.agent)
            .field("missing", &self.pending.missing)
            .finish()
    }
}
