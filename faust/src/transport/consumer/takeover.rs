//! `copy-offsets`: starts the app's consumer group at another group's committed offsets.
//!
//! The takeover path from a Python Faust app: Kafka lets a librdkafka member into the
//! group a Faust worker left, but tansu keeps an empty group on Faust's assignor protocol
//! and refuses it (InconsistentGroupProtocol). A faust-rs worker then runs in a group of
//! its own (`group_id`), which this copy starts where Faust's stopped. Reading a group's
//! offsets (OffsetFetch) and committing for a group no member holds need no join.

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer as _},
    ClientConfig, Offset, TopicPartitionList,
};

use super::super::{broker::Broker, connection::Role};
use crate::{config::Config, Error, Result};

const ASK: Duration = Duration::from_secs(10);

/// One partition's offset, copied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Copied {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Commits, for the app's group, the offsets group `from` committed on `topics`. Refuses
/// when the app's group has commits of its own there (it is not starting), or when
/// `from` has none (a misspelt group).
pub(crate) fn copy_offsets(
    broker: &Broker,
    config: &Config,
    from: &str,
    topics: &[String],
) -> Result<Vec<Copied>> {
    let ours = config.group();
    if from == ours {
        return Err(Error::Config(format!(
            "the app's group is '{ours}' already; give the app a group of its own \
             (--group-id) to copy '{from}' into"
        )));
    }
    let reader = group_client(broker, config, from)?;
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = reader
            .fetch_metadata(Some(topic), ASK)
            .map_err(|e| Error::kafka(format!("reading the partitions of '{topic}'"), e))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            partitions.add_partition(topic, partition.id());
        }
    }
    let theirs = committed(&reader, &partitions, from)?;
    if theirs.is_empty() {
        return Err(Error::Config(format!(
            "group '{from}' has no committed offsets on this app's topics ({}); check the \
             group name (Faust's is its app id, with -v{{version}} when the version is over 1)",
            topics.join(", ")
        )));
    }
    let writer = group_client(broker, config, ours)?;
    let already = committed(&writer, &partitions, ours)?;
    if let Some(c) = already.first() {
        return Err(Error::Config(format!(
            "group '{ours}' has committed offsets already ({}[{}] at {}): copying would \
             move a running app; copy into a group that has not started",
            c.topic, c.partition, c.offset
        )));
    }
    let mut list = TopicPartitionList::new();
    for c in &theirs {
        list.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.offset))
            .map_err(|e| Error::kafka("listing the offsets to commit", e))?;
    }
    writer
        .commit(&list, CommitMode::Sync)
        .map_err(|e| Error::kafka(format!("committing the offsets for group '{ours}'"), e))?;
    Ok(theirs)
}

/// A client of `group` that never joins it.
fn group_client(broker: &Broker, config: &Config, group: &str) -> Result<BaseConsumer> {
    let mut client = ClientConfig::new();
    client
        .set("group.id", group)
        .set("client.id", format!("{}-copy-offsets", config.id))
        .set("enable.auto.commit", "false");
    broker
        .connection()
        .apply(Role::Consumer, &mut client)
        .create()
        .map_err(|e| Error::kafka("creating a consumer", e))
}

/// The offsets `group` committed on `partitions` (those it has).
fn committed(
    consumer: &BaseConsumer,
    partitions: &TopicPartitionList,
    group: &str,
) -> Result<Vec<Copied>> {
    let committed = consumer
        .committed_offsets(partitions.clone(), ASK)
        .map_err(|e| Error::kafka(format!("reading the offsets of group '{group}'"), e))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some(Copied {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset,
            }),
            _ => None,
        })
        .collect())
}
