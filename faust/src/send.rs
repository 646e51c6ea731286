//! Sending from user code: `faust::send` and `faust::send_bytes`, through the producer
//! of the worker the caller runs in.

use serde::Serialize;

use crate::{
    context,
    transport::producer::{Delivered, Record},
    Error, Result,
};

/// Sends `value` (as JSON) with an optional `key` (as JSON, like Python Faust) to a topic,
/// or to an agent by its name, and waits for the broker's acknowledgement.
///
/// ```no_run
/// # async fn demo() -> faust::Result<()> {
/// faust::send("orders", Some(&"alice"), &serde_json::json!({"amount": 3})).await?;
/// # Ok(()) }
/// ```
pub async fn send<K, V>(target: &str, key: Option<&K>, value: &V) -> Result<Delivered>
where
    K: Serialize + ?Sized,
    V: Serialize + ?Sized,
{
    let encode = |what: &str, e: serde_json::Error| Error::Encode {
        target: target.to_owned(),
        message: format!("{what}: {e}"),
    };
    let key = key
        .map(serde_json::to_vec)
        .transpose()
        .map_err(|e| encode("key", e))?;
    let value = serde_json::to_vec(value).map_err(|e| encode("value", e))?;
    send_bytes(target, key.as_deref(), Some(&value), None).await
}

/// Sends raw bytes to a topic or agent, optionally to a given partition.
pub async fn send_bytes(
    target: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    partition: Option<i32>,
) -> Result<Delivered> {
    let worker = context::current().ok_or_else(|| {
        Error::Send(
            "send needs a broker: it works inside a running worker (agents, tasks, timers; \
             a task you spawn yourself keeps the worker with faust::spawn), and in commands \
             given --broker kafka://host:port (or FAUST_BROKER)"
                .into(),
        )
    })?;
    let topic = worker.resolve(target);
    let record = Record {
        key,
        value,
        partition,
        headers: &[],
        timestamp: None,
    };
    worker.producer.send_record(topic, record).await
}
