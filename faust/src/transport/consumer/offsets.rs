//! Which offsets may be committed: only the contiguous acknowledged prefix of each
//! partition, never past an event still in flight, whatever order actors finish in.
//!
//! Python Faust's best-known bug is committing past unprocessed events; here the commit
//! point of a partition is always the lowest offset still in flight (or one past the
//! highest seen when nothing is), so an out-of-order acknowledgement cannot move it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::event::Acknowledge;

/// A topic partition, as the tracker keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicPartition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
}

impl TopicPartition {
    /// The partition an element of a librdkafka partition list names.
    pub(crate) fn of(element: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>) -> Self {
        TopicPartition {
            topic: Arc::from(element.topic()),
            partition: element.partition(),
        }
    }
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Distinguishes this assignment from earlier ones of the same partition, so that a
    /// late acknowledgement from before a revocation cannot touch the new state.
    generation: u64,
    /// Offset -> acknowledgements still owed (one per agent subscribed to the topic).
    in_flight: BTreeMap<i64, u32>,
    /// Events an actor has started (and not yet acknowledged), by offset.
    started: BTreeMap<i64, u32>,
    /// Set when a revocation begins: actors take no further events of the partition.
    revoking: bool,
    /// One past the highest offset handed out.
    next: Option<i64>,
    /// Where this assignment starts (the committed offset its tables were recovered for):
    /// an event before it is done already.
    start: Option<i64>,
    /// The last offset the broker confirmed as committed.
    committed: Option<i64>,
    paused: bool,
}

impl PartitionState {
    /// The offset to commit: the oldest event still in flight, or one past the newest.
    fn commit_point(&self) -> Option<i64> {
        self.in_flight.keys().next().copied().or(self.next)
    }
}

#[derive(Debug, Default)]
struct State {
    partitions: HashMap<TopicPartition, PartitionState>,
    next_generation: u64,
    acked_since_commit: u64,
}

/// What the consumer should do after handing out an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// Deliver it with this generation.
    Deliver { generation: u64, pause: bool },
    /// The partition is not assigned to us (any more): drop the event.
    NotAssigned,
    /// The event comes before where this assignment starts, or was handed out in it
    /// already: done (or being done), drop it.
    Done,
}

#[derive(Debug)]
pub(crate) struct OffsetTracker {
    state: Mutex<State>,
    changed: Condvar,
    /// Pause a partition at this many events in flight; resume at half.
    max_in_flight: usize,
}

impl OffsetTracker {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        OffsetTracker {
            state: Mutex::default(),
            changed: Condvar::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic in a caller: every method leaves it whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation the next [`Self::assign`] gives: events fetched from now on carry
    /// it or a later one, events fetched before carry an earlier one.
    pub(crate) fn next_generation(&self) -> u64 {
        self.lock().next_generation + 1
    }

    /// Tracks `tp` from `start` on (where known): events before it are dropped.
    pub(crate) fn assign(&self, tp: TopicPartition, start: Option<i64>) {
        let mut state = self.lock();
        state.next_generation += 1;
        let generation = state.next_generation;
        state.partitions.insert(
            tp,
            PartitionState {
                generation,
                start,
                ..PartitionState::default()
            },
        );
    }

    /// Forgets a revoked partition; returns the offset still to commit for it, if any.
    pub(crate) fn revoke(&self, tp: &TopicPartition) -> Option<i64> {
        let mut state = self.lock();
        let partition = state.partitions.remove(tp)?;
        self.changed.notify_all();
        let point = partition.commit_point()?;
        (Some(point) > partition.committed).then_some(point)
    }

    /// Forgets every partition (after the final commit); returns them.
    pub(crate) fn clear(&self) -> Vec<TopicPartition> {
        let forgotten = self.lock().partitions.drain().map(|(tp, _)| tp).collect();
        self.changed.notify_all();
        forgotten
    }

    /// Records an event handed to `acks_owed` agents.
    pub(crate) fn track(&self, tp: &TopicPartition, offset: i64, acks_owed: u32) -> Tracked {
        let mut state = self.lock();
        let Some(partition) = state.partitions.get_mut(tp) else {
            return Tracked::NotAssigned;
        };
        // Before the assignment's start, or handed out already in this assignment (a
        // fetch that went back, after a pause): done, or being done, once.
        if partition.start.is_some_and(|start| offset < start)
            || partition.next.is_some_and(|next| offset < next)
        {
            return Tracked::Done;
        }
        partition.in_flight.insert(offset, acks_owed);
        partition.next = Some(partition.next.map_or(offset + 1, |n| n.max(offset + 1)));
        let pause = !partition.paused && partition.in_flight.len() >= self.max_in_flight;
        partition.paused |= pause;
        Tracked::Deliver {
            generation: partition.generation,
            pause,
        }
    }

    fn ack(&self, tp: &TopicPartition, generation: u64, offset: i64) {
        let mut state = self.lock();
        let Some(partition) = state.partitions.get_mut(tp) else {
            return; // revoked meanwhile: the new owner processes it again
        };
        if partition.generation != generation {
            return;
        }
        if let Some(started) = partition.started.get_mut(&offset) {
            *started -= 1;
            if *started == 0 {
                partition.started.remove(&offset);
            }
        }
        let Some(owed) = partition.in_flight.get_mut(&offset) else {
            return;
        };
        *owed -= 1;
        if *owed == 0 {
            partition.in_flight.remove(&offset);
            state.acked_since_commit += 1;
            self.changed.notify_all();
        }
    }

    /// Partitions to commit now, with their commit points, for those that moved.
    pub(crate) fn commit_points(&self) -> Vec<(TopicPartition, i64)> {
        let mut state = self.lock();
        state.acked_since_commit = 0;
        let mut points: Vec<_> = state
            .partitions
            .iter()
            .filter_map(|(tp, p)| {
                let point = p.commit_point()?;
                (Some(point) > p.committed).then(|| (tp.clone(), point))
            })
            .collect();
        points.sort();
        points
    }

    /// Records what the broker confirmed.
    pub(crate) fn committed(&self, tp: &TopicPartition, offset: i64) {
        if let Some(p) = self.lock().partitions.get_mut(tp) {
            p.committed = p.committed.max(Some(offset));
        }
    }

    /// Events acknowledged since the last call to [`Self::commit_points`].
    pub(crate) fn acked_since_commit(&self) -> u64 {
        self.lock().acked_since_commit
    }

    /// Stops handing out the events of `partitions` (a revocation began): events already
    /// started still finish, queued ones are left for the partitions' next owner.
    pub(crate) fn stop_starting(&self, partitions: &[TopicPartition]) {
        let mut state = self.lock();
        for tp in partitions {
            if let Some(p) = state.partitions.get_mut(tp) {
                p.revoking = true;
            }
        }
        self.changed.notify_all();
    }

    fn begin(&self, tp: &TopicPartition, generation: u64, offset: i64) -> bool {
        let mut state = self.lock();
        match state.partitions.get_mut(tp) {
            Some(p) if p.generation == generation && !p.revoking => {
                *p.started.entry(offset).or_default() += 1;
                true
            }
            _ => false,
        }
    }

    /// Waits until no started event of `partitions` is unfinished, or until `timeout`;
    /// returns whether they finished.
    pub(crate) fn wait_started(&self, partitions: &[TopicPartition], timeout: Duration) -> bool {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600 * 24 * 365));
        let mut state = self.lock();
        loop {
            let busy = state
                .partitions
                .iter()
                .any(|(tp, p)| !p.started.is_empty() && partitions.contains(tp));
            if !busy {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Paused partitions whose backlog has halved, now marked as resumed.
    pub(crate) fn take_resumable(&self) -> Vec<TopicPartition> {
        let low = self.max_in_flight / 2;
        let mut state = self.lock();
        let mut ready = Vec::new();
        for (tp, p) in state.partitions.iter_mut() {
            if p.paused && p.in_flight.len() <= low {
                p.paused = false;
                ready.push(tp.clone());
            }
        }
        ready
    }

    /// Events in flight in every partition.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock()
            .partitions
            .values()
            .map(|p| p.in_flight.len())
            .sum()
    }
}

impl Acknowledge for OffsetTracker {
    fn begin(&self, topic: &Arc<str>, partition: i32, generation: u64, offset: i64) -> bool {
        let tp = TopicPartition {
            topic: topic.clone(),
            partition,
        };
        OffsetTracker::begin(self, &tp, generation, offset)
    }

    fn acknowledge(&self, topic: &Arc<str>, partition: i32, generation: u64, offset: i64) {
        let tp = TopicPartition {
            topic: topic.clone(),
            partition,
        };
        self.ack(&tp, generation, offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("orders"),
            partition,
        }
    }

    fn deliver(tracker: &OffsetTracker, partition: i32, offset: i64, owed: u32) -> u64 {
        match tracker.track(&tp(partition), offset, owed) {
            Tracked::Deliver { generation, .. } => generation,
            Tracked::NotAssigned | Tracked::Done => panic!("partition {partition} not tracked"),
        }
    }

    #[test]
    fn out_of_order_acks_never_commit_past_an_event_in_flight() {
        let tracker = OffsetTracker::new(100);
        tracker.assign(tp(0), None);
        // Offsets 10..20 go to two actors; the second actor finishes first.
        let generation = (10..20).map(|o| deliver(&tracker, 0, o, 1)).last().unwrap();
        for offset in (15..20).rev() {
            tracker.acknowledge(&tp(0).topic, 0, generation, offset);
        }
        assert_eq!(
            tracker.commit_points(),
            vec![(tp(0), 10)],
            "10..15 still in flight"
        );
        for offset in [12, 11, 14, 13] {
            tracker.acknowledge(&tp(0).topic, 0, generation, offset);
        }
        assert_eq!(
            tracker.commit_points(),
            vec![(tp(0), 10)],
            "10 still in flight"
        );
        tracker.acknowledge(&tp(0).topic, 0, generation, 10);
        assert_eq!(tracker.commit_points(), vec![(tp(0), 20)]);
    }

    #[test]
    fn an_event_for_two_agents_is_done_when_both_acknowledge() {
        let tracker = OffsetTracker::new(100);
        tracker.assign(tp(0), None);
        let generation = deliver(&tracker, 0, 0, 2);
        tracker.acknowledge(&tp(0).topic, 0, generation, 0);
        assert_eq!(tracker.commit_points(), vec![(tp(0), 0)]);
        tracker.acknowledge(&tp(0).topic, 0, generation, 0);
        assert_eq!(tracker.commit_points(), vec![(tp(0), 1)]);
    }

    #[test]
    fn partitions_commit_independently_and_only_when_moved() {
        let tracker = OffsetTracker::new(100);
        tracker.assign(tp(0), None);
        tracker.assign(tp(1), None);
        let g0 = deliver(&tracker, 0, 5, 1);
        let g1 = deliver(&tracker, 1, 7, 1);
        tracker.acknowledge(&tp(1).topic, 1, g1, 7);
        assert_eq!(tracker.commit_points(), vec![(tp(0), 5), (tp(1), 8)]);
        tracker.committed(&tp(0), 5);
        tracker.committed(&tp(1), 8);
        assert_eq!(tracker.commit_points(), vec![]);
        tracker.acknowledge(&tp(0).topic, 0, g0, 5);
        assert_eq!(tracker.commit_points(), vec![(tp(0), 6)]);
    }

    #[test]
    fn events_before_the_start_of_an_assignment_are_done_already() {
        let tracker = OffsetTracker::new(100);
        tracker.assign(tp(0), Some(10));
        assert_eq!(tracker.track(&tp(0), 9, 1), Tracked::Done);
        assert!(matches!(
            tracker.track(&tp(0), 10, 1),
            Tracked::Deliver { .. }
        ));
        assert_eq!(tracker.commit_points(), vec![(tp(0), 10)]);
        assert_eq!(
            tracker.track(&tp(0), 10, 1),
            Tracked::Done,
            "handed out already"
        );
        assert_eq!(tracker.commit_points(), vec![(tp(0), 10)]);
    }

    #[test]
    fn acks_from_before_a_revocation_are_ignored() {
        let tracker = OffsetTracker::new(100);
        tracker.assign(tp(0), None);
        let old = deliver(&tracker, 0, 0, 1);
        assert_eq!(tracker.revoke(&tp(0)), Some(0));
        tracker.assign(tp(0), None);
        let new = deliver(&tracker, 0, 0, 1);
        assert_ne!(old, new);
        tracker.acknowledge(&tp(0).topic, 0, old, 0);
        assert_eq!(tracker.in_flight(), 1, "the stale ack must not count");
        tracker.acknowledge(&tp(0).topic, 0, new, 0);
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.track(&tp(9), 0, 1), Tracked::NotAssigned);
    }

    #[test]
    fn a_full_partition_pauses_and_resumes_at_half() {
        let tracker = OffsetTracker::new(4);
        tracker.assign(tp(0), None);
        let pauses: Vec<bool> = (0..4)
            .map(|o| match tracker.track(&tp(0), o, 1) {
                Tracked::Deliver { pause, .. } => pause,
                Tracked::NotAssigned | Tracked::Done => unreachable!(),
            })
            .collect();
        assert_eq!(pauses, [false, false, false, true]);
        let generation = deliver(&tracker, 0, 4, 1);
        tracker.acknowledge(&tp(0).topic, 0, generation, 0);
        assert!(tracker.take_resumable().is_empty(), "4 in flight > 2");
        for o in 1..3 {
            tracker.acknowledge(&tp(0).topic, 0, generation, o);
        }
        assert_eq!(tracker.take_resumable(), vec![tp(0)]);
        assert!(tracker.take_resumable().is_empty(), "resumed once");
    }

    #[test]
    fn a_revocation_waits_for_started_events_only() {
        let tracker = Arc::new(OffsetTracker::new(100));
        tracker.assign(tp(0), None);
        let generations: Vec<u64> = (0..5).map(|o| deliver(&tracker, 0, o, 1)).collect();
        let generation = generations[4];
        let topic: Arc<str> = Arc::from("orders");
        assert!(
            Acknowledge::begin(&*tracker, &topic, 0, generation, 0),
            "an actor starts offset 0"
        );
        tracker.stop_starting(&[tp(0)]);
        assert!(
            !Acknowledge::begin(&*tracker, &topic, 0, generation, 1),
            "no new start once revoking"
        );
        assert!(
            !tracker.wait_started(&[tp(0)], Duration::from_millis(10)),
            "offset 0 still running"
        );
        tracker.acknowledge(&topic, 0, generation, 0);
        assert!(tracker.wait_started(&[tp(0)], Duration::from_millis(10)));
        assert_eq!(
            tracker.revoke(&tp(0)),
            Some(1),
            "commit up to the first unstarted event"
        );
    }

    #[test]
    fn waiting_for_started_events_wakes_on_the_last_ack() {
        let tracker = Arc::new(OffsetTracker::new(100));
        tracker.assign(tp(0), None);
        let generation = deliver(&tracker, 0, 0, 1);
        assert!(Acknowledge::begin(
            &*tracker,
            &Arc::from("orders"),
            0,
            generation,
            0
        ));
        assert!(!tracker.wait_started(&[tp(0)], Duration::from_millis(10)));
        let acker = {
            let tracker = tracker.clone();
            std::thread::spawn(move || tracker.acknowledge(&Arc::from("orders"), 0, generation, 0))
        };
        assert!(tracker.wait_started(&[tp(0)], Duration::from_secs(10)));
        acker.join().unwrap();
    }
}
