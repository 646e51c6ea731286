//! Exact results across internal topics without transactions.
//!
//! An event that runs again after a crash sends its outputs again: a word count that
//! splits posts and counts the words in another agent would count a replayed post's
//! words twice. So every record an agent sends while processing an event carries its
//! origin (the `faust-origin` header): the topic it was sent to, the topic and partition
//! of the event that sent it (`via`), the source event its chain of agents began with
//! (`root`: topic, partition, offset) and its index among the outputs of each stage on
//! the way (`path`). One agent processes a partition's events in order, so the records
//! one partition sends to one topic, from one root partition, reach each partition of
//! that topic in the order of their marks (root offset, then path), replays aside. A
//! table-writing agent keeps, per such stream, the highest mark it applied (a key of its
//! table partition, written with the event's table writes, so it is in the changelog and
//! recovered with them) and drops a record at or below it: a replay.
//!
//! What it needs: an event's outputs are the same, in the same order, when it runs
//! again. What it leaves alone: agents with `concurrency` above 1 (their events finish
//! out of order), `take()` batches (a batch's bounds depend on timing), requests of
//! agent RPC, in-memory channels, and records from outside the app.

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, OnceLock,
    },
};

/// The header naming a record's origin.
pub(crate) const HEADER: &str = "faust-origin";

/// Table keys under this prefix hold marks (not JSON, so no user key collides with one);
/// stores leave them out of their keys.
pub(crate) const KEY_PREFIX: &[u8] = b"\0faust-origin ";

/// Whether a table key is a mark's, not the user's.
pub(crate) fn is_mark_key(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

/// A record's place in the stream of records one partition sent from one root
/// partition: later records have higher marks.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark {
    offset: i64,
    path: Vec<u32>,
}

impl Clone for Mark {
    fn clone(&self) -> Mark {
        Mark {
            offset: self.offset,
            path: self.path.clone(),
        }
    }

    /// Reuses the path's buffer: a stream's applied mark is overwritten per event.
    fn clone_from(&mut self, source: &Mark) {
        self.offset = source.offset;
        self.path.clone_from(&source.path);
    }
}

impl Mark {
    /// `offset path` (the path's indices joined by dots), as stored.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = String::with_capacity(24);
        let _ = write!(text, "{} ", self.offset);
        push_path(&mut text, &self.path);
        text.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Mark> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (offset, path) = text.split_once(' ')?;
        Some(Mark {
            offset: offset.parse().ok()?,
            path: parse_path(path)?,
        })
    }
}

fn push_path(text: &mut String, path: &[u32]) {
    for (i, index) in path.iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        let _ = write!(text, "{index}");
    }
}

fn parse_path(text: &str) -> Option<Vec<u32>> {
    text.split('.').map(|i| i.parse().ok()).collect()
}

/// A record's origin, read from its header without copying.
#[derive(Debug)]
struct Origin<'a> {
    to: &'a str,
    /// `via_topic via_partition root_topic root_partition`: the stream the record is in.
    stream: &'a str,
    root_topic: &'a str,
    root_partition: i32,
    mark: Mark,
}

impl Origin<'_> {
    /// `to via_topic via_partition root_topic root_partition root_offset path`: topic
    /// names hold no spaces.
    fn parse(bytes: &[u8]) -> Option<Origin<'_>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (to, rest) = text.split_once(' ')?;
        let mut fields = rest.splitn(6, ' ');
        let mut next = || fields.next();
        let (via_topic, via_partition) = (next()?, next()?);
        let (root_topic, root_partition) = (next()?, next()?);
        let (offset, path) = (next()?, next()?);
        via_partition.parse::<i32>().ok()?;
        let stream_len = [via_topic, via_partition, root_topic, root_partition]
            .iter()
            .map(|field| field.len() + 1)
            .sum::<usize>()
            - 1;
        Some(Origin {
            to,
            stream: &rest[..stream_len],
            root_topic,
            root_partition: root_partition.parse().ok()?,
            mark: Mark {
                offset: offset.parse().ok()?,
                // A sixth space would be in the path, which then does not parse.
                path: parse_path(path)?,
            },
        })
    }
}

/// The lineage of an event being processed by an agent: its place in its chain (the
/// root it began with and its mark), under which table key its effects are applied, and
/// the origin of what it sends.
#[derive(Debug)]
pub(crate) struct Lineage {
    /// The table key of its stream, when it came with an origin (a root event has none).
    key: Option<Box<[u8]>>,
    via_topic: Arc<str>,
    via_partition: i32,
    /// The root's topic: the event's own (`Arc`, no copy) for a root event.
    root_topic: Arc<str>,
    root_partition: i32,
    /// The root offset and the path to this event (empty for the root itself).
    mark: Mark,
    /// How many records it has sent so far: the index of the next.
    sent: AtomicU32,
    /// What the origin of every record it sends shares after its `to`, built at the
    /// first send (most events that are applied send nothing).
    origin_tail: OnceLock<Box<[u8]>>,
}

impl PartialEq for Lineage {
    /// Equal in everything but what each has sent.
    fn eq(&self, other: &Lineage) -> bool {
        fn place(l: &Lineage) -> (Option<&[u8]>, &str, i32, &str, i32, &Mark) {
            (
                l.key.as_deref(),
                &l.via_topic,
                l.via_partition,
                &l.root_topic,
                l.root_partition,
                &l.mark,
            )
        }
        place(self) == place(other)
    }
}

impl Eq for Lineage {}

impl Lineage {
    /// The lineage of the event at `topic`[`partition`]@`offset` whose origin header
    /// says `origin`, as processed by `agent`. An origin sent to another topic (a record
    /// copied on by another app, headers and all) is not this record's: the event
    /// begins a chain, as one without an origin does.
    pub(crate) fn of(
        agent: &str,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        origin: Option<&[u8]>,
    ) -> Lineage {
        let origin = origin.and_then(Origin::parse).filter(|o| o.to == &**topic);
        let (key, root_topic, root_partition, mark) = match origin {
            Some(origin) => {
                // `\0faust-origin {agent} {topic} {stream}`
                let mut key = Vec::with_capacity(
                    KEY_PREFIX.len() + agent.len() + topic.len() + origin.stream.len() + 2,
                );
                key.extend_from_slice(KEY_PREFIX);
                for part in [agent, " ", topic, " ", origin.stream] {
                    key.extend_from_slice(part.as_bytes());
                }
                let root_topic = if origin.root_topic == &**topic {
                    topic.clone()
                } else {
                    Arc::from(origin.root_topic)
                };
                (
                    Some(key.into_boxed_slice()),
                    root_topic,
                    origin.root_partition,
                    origin.mark,
                )
            }
            None => (
                None,
                topic.clone(),
                partition,
                Mark {
                    offset,
                    path: Vec::new(),
                },
            ),
        };
        Lineage {
            key,
            via_topic: topic.clone(),
            via_partition: partition,
            root_topic,
            root_partition,
            mark,
            sent: AtomicU32::new(0),
            origin_tail: OnceLock::new(),
        }
    }

    /// The table key and mark this event's effects are applied under, if it has an
    /// origin.
    pub(crate) fn applied(&self) -> Option<(&[u8], &Mark)> {
        Some((self.key.as_deref()?, &self.mark))
    }

    /// Whether a record with this origin `header` value was sent by this event.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn sent(&self, header: &[u8]) -> bool {
        Origin::parse(header).is_some_and(|o| {
            let stream = format!(
                "{} {} {} {}",
                self.via_topic, self.via_partition, self.root_topic, self.root_partition
            );
            o.stream == stream
                && o.mark.offset == self.mark.offset
                && o.mark.path.len() == self.mark.path.len() + 1
                && o.mark.path.starts_with(&self.mark.path)
        })
    }

    /// The origin (header value) of the next record this event sends, to `to`.
    pub(crate) fn next_origin(&self, to: &str) -> Vec<u8> {
        let index = self.sent.fetch_add(1, Ordering::Relaxed);
        let tail = self.origin_tail.get_or_init(|| {
            // ` via_topic via_partition root_topic root_partition root_offset path` and
            // the dot before the index, if the path is not empty.
            let mut text = format!(
                " {} {} {} {} {} ",
                self.via_topic,
                self.via_partition,
                self.root_topic,
                self.root_partition,
                self.mark.offset
            );
            push_path(&mut text, &self.mark.path);
            if !self.mark.path.is_empty() {
                text.push('.');
            }
            text.into_bytes().into_boxed_slice()
        });
        let mut origin = Vec::with_capacity(to.len() + tail.len() + 10);
        origin.extend_from_slice(to.as_bytes());
        origin.extend_from_slice(tail);
        let _ = write!(origin, "{index}");
        origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage(topic: &str, partition: i32, offset: i64, origin: Option<&[u8]>) -> Lineage {
        Lineage::of("count", &Arc::from(topic), partition, offset, origin)
    }

    #[test]
    fn outputs_carry_marks_in_the_order_they_are_sent_and_through_each_stage() {
        let posts = lineage("posts", 2, 40, None);
        assert!(posts.applied().is_none(), "a source event begins a chain");
        let first = posts.next_origin("words");
        let second = posts.next_origin("words");
        assert_eq!(first, b"words posts 2 posts 2 40 0");
        assert_eq!(second, b"words posts 2 posts 2 40 1");

        // The second word, read from words[1]@7, goes on to a third stage.
        let word = lineage("words", 1, 7, Some(&second));
        let (key, mark) = word.applied().unwrap();
        assert_eq!(
            key,
            b"\0faust-origin count words posts 2 posts 2".as_slice()
        );
        assert_eq!(
            mark,
            &Mark {
                offset: 40,
                path: vec![1]
            }
        );
        assert!(posts.sent(&second));
        assert!(!word.sent(&second));
        let on = word.next_origin("initials");
        assert!(word.sent(&on));
        assert_eq!(on, b"initials words 1 posts 2 40 1.0");
        let last = lineage("initials", 0, 3, Some(&on));
        assert_eq!(
            last.applied().unwrap().1,
            &Mark {
                offset: 40,
                path: vec![1, 0]
            }
        );

        // Marks order by offset, then path.
        let mark = |offset, path: &[u32]| Mark {
            offset,
            path: path.to_vec(),
        };
        assert!(mark(40, &[1]) < mark(40, &[2]));
        assert!(mark(40, &[9, 9]) < mark(41, &[0]));
        assert!(mark(40, &[1, 0]) < mark(40, &[1, 1]));
        assert_eq!(
            Mark::decode(&mark(40, &[1, 0]).encode()),
            Some(mark(40, &[1, 0]))
        );
    }

    #[test]
    fn an_origin_sent_elsewhere_or_unreadable_begins_a_chain() {
        let copied = lineage("other", 0, 5, Some(b"words posts 2 posts 2 40 0"));
        assert!(copied.applied().is_none());
        for bad in [
            b"words posts 2 posts 2 40".as_slice(),
            b"words posts x posts 2 40 0",
            b"words posts 2 posts 2 40 0 extra",
            b"words posts 2 posts 2 40 0..1",
            b"\xff",
        ] {
            assert!(
                lineage("words", 0, 5, Some(bad)).applied().is_none(),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::property_test_config())]

        /// Headers come from anyone: any bytes give a lineage, never a panic.
        #[test]
        fn any_origin_header_parses_without_panic(value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = lineage("words", 0, 1, Some(&value));
            let _ = Mark::decode(&value);
        }
    }
}
