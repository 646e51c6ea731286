//! What a table's changelog records carry besides key and value: headers naming the
//! event that caused them (recovery leaves out the effects of events the group has not
//! committed: they run again) and, on global tables, the worker that wrote them.

use crate::event::Header;

/// Headers on changelog records naming the event that caused them, so that recovery can
/// leave out the effects of events the group has not committed (they will run again).
pub(crate) const SOURCE_TOPIC: &str = "faust-source-topic";
pub(crate) const SOURCE_PARTITION: &str = "faust-source-partition";
pub(crate) const SOURCE_OFFSET: &str = "faust-source-offset";
/// On global tables' records: the worker that wrote it (its follower skips its own).
pub(crate) const WRITER: &str = "faust-writer";

/// The headers naming the event a changelog record reflects.
pub(super) fn source_headers(topic: &str, partition: i32, offset: i64) -> Vec<Header> {
    vec![
        header(SOURCE_TOPIC, topic.as_bytes()),
        header(SOURCE_PARTITION, partition.to_string().as_bytes()),
        header(SOURCE_OFFSET, offset.to_string().as_bytes()),
    ]
}

pub(super) fn header(key: &str, value: &[u8]) -> Header {
    Header {
        key: key.to_owned(),
        value: Some(value.to_vec()),
    }
}
