//! Which offsets of a partition may be committed: the contiguous-ack tracker.
//!
//! Deliveries of one partition are settled in any order (handlers run concurrently), but
//! Kafka stores a single position per partition: "everything before this offset is
//! done". A [`PartitionTracker`] records every offset handed out and how it was settled,
//! and its [`commit_point`](PartitionTracker::commit_point) is the first offset that is not
//! yet acked, so a commit never skips a message that is still being processed or was
//! nacked.
//!
//! Offsets are tracked as received, not by arithmetic: Kafka offsets may have gaps
//! (transaction markers, compaction), and the tracker never waits for an offset it was not
//! given.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

/// The state of one offset handed out by the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Delivered to the subscriber, not yet settled; `attempt` counts deliveries.
    InFlight { attempt: u32 },
    /// Acked: done.
    Acked,
    /// Nacked; to be delivered again (attempt `attempt + 1`) once `due` has passed.
    Nacked { attempt: u32, due: Instant },
}

/// What the consumer should do with a message it just fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it out as delivery attempt `attempt`.
    Deliver { attempt: u32 },
    /// Drop it: it is in flight, acked, waiting for a delayed redelivery, or older than
    /// what is tracked (a re-read after a seek).
    Skip,
}

/// The settle-state of one assigned partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionTracker {
    /// Offsets handed out at or above the commit point, in ascending order, with their
    /// state. Leading acked entries are pruned as the commit point advances. Records
    /// arrive in offset order, so a new offset is appended (no allocation once the deque
    /// has grown to the number in flight); an older one is found by binary search.
    offsets: VecDeque<(i64, State)>,
    /// One past the highest offset received.
    next: Option<i64>,
    /// The offsets in `offsets` that are nacked, so that finding a due redelivery does
    /// not walk everything in flight.
    nacked: BTreeSet<i64>,
    /// How many times an earlier owner of the partition delivered one offset (its commit
    /// point): that offset's first delivery here continues the count.
    prior: Option<(i64, u32)>,
}

impl PartitionTracker {
    /// An empty tracker: nothing received yet.
    pub(crate) fn new() -> Self {
        PartitionTracker::default()
    }

    /// An empty tracker for a partition whose earlier owner delivered `offset`
    /// `deliveries` times without acking it.
    pub(crate) fn with_prior(offset: i64, deliveries: u32) -> Self {
        PartitionTracker {
            prior: Some((offset, deliveries)),
            ..PartitionTracker::default()
        }
    }

    /// The attempt number of `offset`'s first delivery here.
    fn first_attempt(&mut self, offset: i64) -> u32 {
        match self.prior {
            Some((prior, deliveries)) if prior == offset => {
                self.prior = None;
                deliveries.saturating_add(1)
            }
            _ => 1,
        }
    }

    /// The commit point and how many times it was delivered, when it was delivered and
    /// not acked: what the next owner of the partition needs to keep counting.
    pub(crate) fn head_deliveries(&self) -> Option<(i64, u32)> {
        match self.offsets.front()? {
            (offset, State::InFlight { attempt } | State::Nacked { attempt, .. }) => {
                Some((*offset, *attempt))
            }
            (_, State::Acked) => None,
        }
    }

    /// Records that the consumer fetched `offset` at `now`, and says whether to hand it out.
    pub(crate) fn on_fetch(&mut self, offset: i64, now: Instant) -> Verdict {
        // The common case: past everything received, so past the commit point too.
        if self.next.is_none_or(|next| offset >= next) {
            self.next = Some(offset + 1);
            let attempt = self.first_attempt(offset);
            self.offsets
                .push_back((offset, State::InFlight { attempt }));
            return Verdict::Deliver { attempt };
        }
        match self.find(offset) {
            Ok(index) => {
                let state = &mut self.offsets[index].1;
                match *state {
                    State::Nacked { attempt, due } if due <= now => {
                        let attempt = attempt.saturating_add(1);
                        *state = State::InFlight { attempt };
                        self.nacked.remove(&offset);
                        Verdict::Deliver { attempt }
                    }
                    _ => Verdict::Skip,
                }
            }
            Err(index) => match self.commit_point() {
                // Below the commit point and not tracked: acked and pruned.
                Some(point) if offset < point => Verdict::Skip,
                // In a stretch that never arrived before: hand it out.
                _ => {
                    let attempt = self.first_attempt(offset);
                    self.offsets
                        .insert(index, (offset, State::InFlight { attempt }));
                    Verdict::Deliver { attempt }
                }
            },
        }
    }

    /// Where `offset` is in `offsets` (`Err`: where it would go).
    fn find(&self, offset: i64) -> Result<usize, usize> {
        self.offsets.binary_search_by_key(&offset, |(o, _)| *o)
    }

    /// The state of `offset`, if it is tracked.
    fn state(&self, offset: i64) -> Option<&State> {
        self.find(offset).ok().map(|index| &self.offsets[index].1)
    }

    /// The state of `offset`, if it is tracked, to change.
    fn state_mut(&mut self, offset: i64) -> Option<&mut State> {
        self.find(offset)
            .ok()
            .map(|index| &mut self.offsets[index].1)
    }

    /// Marks `offset` acked. Returns whether the commit point moved.
    pub(crate) fn ack(&mut self, offset: i64) -> bool {
        let before = self.commit_point();
        match self.state_mut(offset) {
            Some(state @ State::InFlight { .. }) => *state = State::Acked,
            _ => return false,
        }
        self.prune();
        self.commit_point() != before
    }

    /// Marks `offset` nacked: it is to be delivered again once `due` has passed. Returns
    /// `Some(offset)` when the nack was recorded, `None` when the offset is not in flight
    /// (settled already, or from an earlier assignment).
    pub(crate) fn nack(&mut self, offset: i64, due: Instant) -> Option<i64> {
        let state = self.state_mut(offset)?;
        match *state {
            State::InFlight { attempt } => {
                *state = State::Nacked { attempt, due };
                self.nacked.insert(offset);
                Some(offset)
            }
            _ => None,
        }
    }

    /// The earliest nacked offset whose redelivery is due at `now`: where the consumer
    /// seeks back to.
    pub(crate) fn due(&self, now: Instant) -> Option<i64> {
        self.nacked
            .iter()
            .find(|&&offset| {
                matches!(self.state(offset), Some(State::Nacked { due, .. }) if *due <= now)
            })
            .copied()
    }

    /// The earliest time a nacked offset becomes due, if any is waiting.
    #[cfg(test)]
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.nacked
            .iter()
            .filter_map(|&offset| match self.state(offset) {
                Some(State::Nacked { due, .. }) => Some(*due),
                _ => None,
            })
            .min()
    }

    /// The offset to commit (the next one to read after a restart): the first offset not
    /// acked, or one past the highest received when all are acked. `None` before anything
    /// was received.
    pub(crate) fn commit_point(&self) -> Option<i64> {
        self.offsets
            .iter()
            .find(|(_, state)| !matches!(state, State::Acked))
            .map(|(offset, _)| *offset)
            .or(self.next)
    }

    /// How many offsets are delivered and not yet acked (in flight or nacked).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.offsets
            .iter()
            .filter(|(_, state)| !matches!(state, State::Acked))
            .count()
    }

    fn prune(&mut self) {
        while self
            .offsets
            .front()
            .is_some_and(|(_, state)| matches!(state, State::Acked))
        {
            self.offsets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A new tracker that has handed out `offsets`, each a first delivery.
    fn delivered(offsets: impl IntoIterator<Item = i64>) -> PartitionTracker {
        let mut t = PartitionTracker::new();
        let now = Instant::now();
        for offset in offsets {
            assert_eq!(
                t.on_fetch(offset, now),
                Verdict::Deliver { attempt: 1 },
                "{offset}"
            );
        }
        t
    }

    #[test]
    fn nothing_to_commit_before_anything_arrives() {
        let t = PartitionTracker::new();
        assert_eq!(t.commit_point(), None);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn in_order_acks_advance_one_by_one() {
        let mut t = delivered(10..13);
        assert_eq!(t.commit_point(), Some(10));
        assert!(t.ack(10));
        assert_eq!(t.commit_point(), Some(11));
        assert!(t.ack(11));
        assert!(t.ack(12));
        assert_eq!(t.commit_point(), Some(13));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn out_of_order_acks_wait_for_the_gap() {
        let mut t = delivered(0..5);
        assert!(!t.ack(3));
        assert!(!t.ack(1));
        assert!(!t.ack(4));
        assert_eq!(t.commit_point(), Some(0), "0 is still in flight");
        assert!(t.ack(0));
        assert_eq!(t.commit_point(), Some(2), "2 is still in flight");
        assert!(t.ack(2));
        assert_eq!(t.commit_point(), Some(5));
    }

    #[test]
    fn offset_gaps_do_not_block_commits() {
        let mut t = delivered([0, 1, 5, 9]);
        for offset in [9, 5, 1, 0] {
            t.ack(offset);
        }
        assert_eq!(t.commit_point(), Some(10));
    }

    #[test]
    fn duplicate_and_unknown_acks_are_ignored() {
        let mut t = delivered(0..2);
        assert!(t.ack(0));
        assert!(!t.ack(0));
        assert!(!t.ack(42));
        assert_eq!(t.commit_point(), Some(1));
    }

    #[test]
    fn a_nack_holds_the_commit_point_and_comes_back_after_a_seek() {
        let now = Instant::now();
        let mut t = delivered(0..4);
        t.ack(0);
        assert_eq!(t.nack(1, now), Some(1));
        t.ack(2);
        t.ack(3);
        assert_eq!(t.commit_point(), Some(1), "the nacked offset is not done");
        assert_eq!(t.due(now), Some(1));
        // The consumer seeks back to 1 and reads 1, 2, 3 again: only 1 is handed out.
        assert_eq!(t.on_fetch(1, now), Verdict::Deliver { attempt: 2 });
        assert_eq!(t.on_fetch(2, now), Verdict::Skip);
        assert_eq!(t.on_fetch(3, now), Verdict::Skip);
        assert_eq!(t.due(now), None);
        assert!(t.ack(1));
        assert_eq!(t.commit_point(), Some(4));
        // New messages after the re-read are delivered as usual.
        assert_eq!(t.on_fetch(4, now), Verdict::Deliver { attempt: 1 });
    }

    #[test]
    fn a_delayed_nack_is_skipped_until_due() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut t = delivered(0..2);
        t.nack(0, later);
        assert_eq!(t.due(now), None);
        assert_eq!(t.next_due(), Some(later));
        assert_eq!(t.on_fetch(0, now), Verdict::Skip, "not due yet");
        assert_eq!(t.due(later), Some(0));
        assert_eq!(t.on_fetch(0, later), Verdict::Deliver { attempt: 2 });
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn an_earlier_owners_count_continues_and_is_handed_on() {
        let now = Instant::now();
        let mut t = PartitionTracker::with_prior(5, 3);
        assert_eq!(t.on_fetch(5, now), Verdict::Deliver { attempt: 4 });
        assert_eq!(t.on_fetch(6, now), Verdict::Deliver { attempt: 1 });
        assert_eq!(t.head_deliveries(), Some((5, 4)));
        t.nack(5, now);
        assert_eq!(t.head_deliveries(), Some((5, 4)));
        assert_eq!(t.on_fetch(5, now), Verdict::Deliver { attempt: 5 });
        t.ack(5);
        assert_eq!(t.head_deliveries(), Some((6, 1)));
        t.ack(6);
        assert_eq!(t.head_deliveries(), None);
        // A prior count for an offset never fetched again is not applied elsewhere.
        let mut t = PartitionTracker::with_prior(2, 9);
        assert_eq!(t.on_fetch(3, now), Verdict::Deliver { attempt: 1 });
    }

    #[test]
    fn repeated_nacks_count_attempts() {
        let now = Instant::now();
        let mut t = delivered(0..1);
        for attempt in 2..5 {
            t.nack(0, now);
            assert_eq!(t.on_fetch(0, now), Verdict::Deliver { attempt });
        }
        assert_eq!(t.nack(0, now), Some(0));
        assert!(!t.ack(0), "a nacked offset is not acked by a stale ack");
    }

    #[test]
    fn settling_twice_is_harmless() {
        let now = Instant::now();
        let mut t = delivered(0..1);
        assert_eq!(t.nack(0, now), Some(0));
        assert_eq!(t.nack(0, now), None);
    }

    #[test]
    fn an_offset_that_arrives_late_is_still_handed_out_and_holds_the_commit() {
        let now = Instant::now();
        let mut t = delivered([0, 3]);
        t.ack(0);
        t.ack(3);
        assert_eq!(t.commit_point(), Some(4));
        // 1 and 2 were skipped by the log (a gap) or never fetched: below the commit
        // point they are taken as done.
        assert_eq!(t.on_fetch(2, now), Verdict::Skip);
        let mut t = delivered([0, 3]);
        // 0 is still in flight, so 1 is above the commit point: never seen, handed out.
        assert_eq!(t.on_fetch(1, now), Verdict::Deliver { attempt: 1 });
        t.ack(0);
        assert_eq!(t.commit_point(), Some(1));
        t.ack(1);
        assert_eq!(t.commit_point(), Some(3));
        assert_eq!(t.on_fetch(4, now), Verdict::Deliver { attempt: 1 });
    }

    #[test]
    fn reads_in_flight_are_not_handed_out_twice() {
        let now = Instant::now();
        let mut t = delivered(0..3);
        assert_eq!(t.on_fetch(1, now), Verdict::Skip);
        assert_eq!(t.pending(), 3);
    }
}
