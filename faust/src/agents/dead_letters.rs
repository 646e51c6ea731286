//! Dead letters: where an agent copies a message it cannot decode (or forward) before
//! skipping it, with headers saying why and where it came from (the
//! `dead_letter_topic` setting).

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::warn;

use crate::{
    event::{source_headers, Header, Message},
    transport::producer::{Producer, Record},
};

/// Where undecodable messages are copied (the `dead_letter_topic` setting).
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pub(crate) topic: Arc<str>,
    pub(crate) producer: Producer,
}

/// Header of a dead letter saying why it could not be processed.
pub(crate) const ERROR_HEADER: &str = "faust-error";
/// Header of a dead letter sent without its value, saying why.
pub(crate) const OMITTED_HEADER: &str = "faust-value-omitted";

impl DeadLetters {
    /// Copies an undecodable message of `agent` to the dead-letter topic, retrying
    /// until the broker has it: it is acknowledged only then, so none is lost. Returns
    /// false if the worker began stopping first.
    pub(super) async fn bury(
        &self,
        agent: &str,
        message: &Message,
        payload: Option<&[u8]>,
        error: &str,
        stopping: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut headers = message.headers.clone();
        headers.extend([
            Header::new(ERROR_HEADER, error.as_bytes()),
            Header::new("faust-agent", agent.as_bytes()),
        ]);
        headers.extend(source_headers(
            &message.topic,
            message.partition,
            message.offset,
        ));
        let mut value = payload;
        loop {
            let record = Record {
                key: message.key.as_deref(),
                value,
                partition: None,
                headers: &headers,
                timestamp: message.timestamp,
            };
            match self.producer.send_record(&self.topic, record).await {
                Ok(_) => return true,
                // Retrying cannot help: send the letter without the value, which stays
                // in the source topic at the offset the headers give.
                Err(e) if e.is_message_too_large() && value.is_some() => {
                    let size = value.map_or(0, <[u8]>::len);
                    let note = format!("the value ({size} bytes) is over the broker's message size limit; read it at the source offset");
                    headers.push(Header::new(OMITTED_HEADER, note.as_bytes()));
                    value = None;
                    continue;
                }
                Err(e) => warn!(
                    agent,
                    topic = %message.topic,
                    partition = message.partition,
                    offset = message.offset,
                    error = %e,
                    "could not copy an undecodable message to dead-letter topic '{}'; retrying (it stays unacknowledged)",
                    self.topic
                ),
            }
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => return false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
