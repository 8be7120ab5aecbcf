//! The state of the assigned partitions, shared by the consumer thread, its rebalance
//! callbacks and the ackers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::rebalance::deliveries_metadata;
use crate::tracker::PartitionTracker;

/// A partition: its topic's name and its number.
pub(super) type PartitionKey = (Arc<str>, i32);

/// One assigned partition.
#[derive(Debug)]
pub(super) struct AssignedPartition {
    /// Which assignment this is; settles from an earlier one are ignored.
    pub(super) generation: u64,
    pub(super) tracker: PartitionTracker,
    /// The commit point moved since the last commit.
    dirty: bool,
    /// One past the last offset fetched (or where the last seek went).
    pub(super) position: Option<i64>,
}

/// State shared by the consumer thread, its rebalance callbacks and the ackers.
#[derive(Debug, Default)]
pub(super) struct SharedPartitions {
    parts: Mutex<HashMap<PartitionKey, AssignedPartition>>,
    generations: AtomicU64,
}

impl SharedPartitions {
    pub(super) fn with_parts<T>(
        &self,
        f: impl FnOnce(&mut HashMap<PartitionKey, AssignedPartition>) -> T,
    ) -> Option<T> {
        self.parts.lock().ok().map(|mut parts| f(&mut parts))
    }

    /// Starts tracking `keys`; `priors` has, per partition, how many times its earlier
    /// owner delivered its committed offset (see
    /// [`DELIVERIES_METADATA`](super::rebalance::DELIVERIES_METADATA)).
    pub(super) fn assign(
        &self,
        keys: impl IntoIterator<Item = PartitionKey>,
        priors: &HashMap<PartitionKey, (i64, u32)>,
    ) {
        self.with_parts(|parts| {
            for key in keys {
                let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
                let tracker = match priors.get(&key) {
                    Some(&(offset, deliveries)) => PartitionTracker::with_prior(offset, deliveries),
                    None => PartitionTracker::new(),
                };
                parts.insert(
                    key,
                    AssignedPartition {
                        generation,
                        tracker,
                        dirty: false,
                        position: None,
                    },
                );
            }
        });
    }

    pub(super) fn settle(
        &self,
        key: &PartitionKey,
        generation: u64,
        offset: i64,
        nack: Option<Instant>,
    ) {
        self.with_parts(|parts| {
            if let Some(part) = parts.get_mut(key).filter(|p| p.generation == generation) {
                match nack {
                    None => {
                        if part.tracker.ack(offset) {
                            part.dirty = true;
                        }
                    }
                    Some(due) => {
                        // A nacked commit point is committed again, with its count.
                        if part.tracker.nack(offset, due).is_some()
                            && part.tracker.commit_point() == Some(offset)
                        {
                            part.dirty = true;
                        }
                    }
                }
            }
        });
    }

    /// The commit points of `keys` (all partitions when `None`), as a list to commit;
    /// only the dirty ones when `only_dirty`. Clears the dirty flags.
    pub(super) fn to_commit(
        &self,
        keys: Option<&[PartitionKey]>,
        only_dirty: bool,
    ) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        self.with_parts(|parts| {
            for (key, part) in parts.iter_mut() {
                if keys.is_some_and(|keys| !keys.contains(key)) || (only_dirty && !part.dirty) {
                    continue;
                }
                if let Some(point) = part.tracker.commit_point()
                    && tpl
                        .add_partition_offset(&key.0, key.1, Offset::Offset(point))
                        .is_ok()
                {
                    if let Some((offset, deliveries)) = part.tracker.head_deliveries()
                        && offset == point
                        && let Some(mut elem) = tpl.find_partition(&key.0, key.1)
                    {
                        elem.set_metadata(deliveries_metadata(deliveries));
                    }
                    part.dirty = false;
                }
            }
        });
        tpl
    }
}
