//! The consumer thread: it polls the consumer, asks each fetched record's partition
//! tracker whether to hand it out, and passes the records to the stream in batches;
//! between polls it seeks back to due redeliveries, commits, and pauses the partitions
//! while the reader stalls.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rebalance::{CALL_TIMEOUT, RebalanceContext, commit};
use super::shared::{PartitionKey, SharedPartitions};
use super::stream::{Batch, Pending};
use crate::context::LogContext;
use crate::convert::{self, Fetched};
use crate::tracker::Verdict;

/// At most this many records go to the stream in one batch.
pub(super) const BATCH_MESSAGES: usize = 256;
/// A batch is closed once its records reach this many bytes.
pub(super) const BATCH_BYTES: usize = 256 * 1024;
/// How many batches the hand-off to the stream holds.
pub(super) const HANDOFF_BATCHES: usize = 16;
/// How long the reader may leave the hand-off full before the partitions are paused.
pub(super) const STALL: Duration = Duration::from_millis(500);
/// How long the thread sleeps at a time while the hand-off is full (the reader wakes it
/// earlier when it takes a batch).
const WAIT_SLICE: Duration = Duration::from_millis(20);
/// Records polled between two rounds of housekeeping (reading the clock, seeking back
/// to due redeliveries, the commit timer) while records keep coming; a round also runs
/// whenever librdkafka has nothing ready, and after the thread has waited for the reader.
const HOUSEKEEPING_EVERY: usize = 64;

/// The consumer thread.
pub(super) struct ConsumerThread {
    consumer: BaseConsumer<RebalanceContext>,
    shared: Arc<SharedPartitions>,
    token: CancellationToken,
    /// Partitions paused because the reader stalled.
    paused: HashSet<PartitionKey>,
    /// The names of the topics read, shared by their records.
    topics: HashSet<Arc<str>>,
    /// A plain subscriber's own group, deleted when the subscription ends.
    ephemeral_group: Option<(String, Arc<AdminClient<LogContext>>)>,
    /// The records fetched and not yet handed to the stream.
    outbox: Outbox,
    /// Whether librdkafka had nothing more ready at the last poll: the batch is sent
    /// then, or when it is full.
    drained: bool,
    housekeeping: Housekeeping,
}

/// The records fetched and not yet handed to the stream, and the hand-off to it.
struct Outbox {
    tx: mpsc::Sender<Batch>,
    /// Records fetched and not yet handed to the stream.
    batch: Batch,
    /// Their size.
    bytes: usize,
    /// Since when the hand-off has been full.
    full_since: Option<Instant>,
}

/// What became of a batch offered to the stream.
enum HandOff {
    Handed,
    /// The hand-off is full: the batch stays.
    Full,
    /// The stream is gone.
    Closed,
}

impl Outbox {
    fn new(tx: mpsc::Sender<Batch>) -> Self {
        Outbox {
            tx,
            batch: Vec::new(),
            bytes: 0,
            full_since: None,
        }
    }

    /// Whether the batch has reached [`BATCH_MESSAGES`] or [`BATCH_BYTES`].
    fn is_full(&self) -> bool {
        self.batch.len() >= BATCH_MESSAGES || self.bytes >= BATCH_BYTES
    }

    fn push(&mut self, pending: Pending) {
        self.bytes += pending.fetched.message.encoded_len();
        self.batch.push(pending);
    }

    /// Hands the batch to the stream, if the hand-off has room.
    fn hand_off(&mut self) -> HandOff {
        match self.tx.try_reserve() {
            Ok(permit) => {
                // The next batch starts with the room this one needed: at a steady rate
                // one allocation per batch, instead of growing (and copying) from empty.
                let room = self.batch.len();
                permit.send(std::mem::replace(&mut self.batch, Vec::with_capacity(room)));
                self.bytes = 0;
                self.full_since = None;
                HandOff::Handed
            }
            Err(mpsc::error::TrySendError::Full(())) => {
                self.full_since.get_or_insert_with(Instant::now);
                HandOff::Full
            }
            Err(mpsc::error::TrySendError::Closed(())) => HandOff::Closed,
        }
    }
}

/// When the next round of housekeeping (see [`HOUSEKEEPING_EVERY`]) and the next commit
/// are due.
struct Housekeeping {
    /// The time as of the last housekeeping round.
    now: Instant,
    /// The records polled since.
    polled: usize,
    last_commit: Instant,
    commit_interval: Duration,
}

impl ConsumerThread {
    pub(super) fn new(
        consumer: BaseConsumer<RebalanceContext>,
        shared: Arc<SharedPartitions>,
        tx: mpsc::Sender<Batch>,
        token: CancellationToken,
        commit_interval: Duration,
        ephemeral_group: Option<(String, Arc<AdminClient<LogContext>>)>,
    ) -> Self {
        let now = Instant::now();
        ConsumerThread {
            consumer,
            shared,
            token,
            paused: HashSet::default(),
            topics: HashSet::default(),
            ephemeral_group,
            outbox: Outbox::new(tx),
            drained: true,
            housekeeping: Housekeeping {
                now,
                polled: HOUSEKEEPING_EVERY,
                last_commit: now,
                commit_interval,
            },
        }
    }

    /// Polls until the subscription ends, then commits and leaves the group.
    pub(super) fn run(mut self) {
        while !self.token.is_cancelled() {
            if self.drained || self.housekeeping.polled >= HOUSEKEEPING_EVERY {
                self.housekeep();
            }
            if !self.outbox.batch.is_empty() && (self.drained || self.outbox.is_full()) {
                match self.outbox.hand_off() {
                    HandOff::Handed => self.resume_fetching(),
                    HandOff::Full => {}
                    HandOff::Closed => break,
                }
            }
            let Some(timeout) = self.poll_timeout() else {
                continue;
            };
            self.poll(timeout);
        }
        self.leave();
    }

    /// Reads the clock, seeks back to due redeliveries, and commits what was acked when
    /// the commit interval has passed.
    fn housekeep(&mut self) {
        let now = Instant::now();
        self.housekeeping.now = now;
        self.housekeeping.polled = 0;
        self.seek_due(now);
        let housekeeping = &mut self.housekeeping;
        if now.saturating_duration_since(housekeeping.last_commit) >= housekeeping.commit_interval {
            commit(
                &self.consumer,
                &self.shared.to_commit(None, true),
                CommitMode::Async,
            );
            housekeeping.last_commit = now;
        }
    }

    /// How long the next poll may wait for a record; `None` when the thread waited for
    /// the reader instead and the loop is to start over without polling.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if self.outbox.batch.is_empty() {
            Some(Duration::from_millis(50))
        } else if self.outbox.full_since.is_none() {
            Some(Duration::ZERO)
        } else if self.outbox.is_full() {
            self.wait_for_reader()
        } else {
            // The hand-off is full but the batch has room: fill it meanwhile.
            Some(Duration::from_millis(5))
        }
    }

    /// Nothing can be handed out and the batch is full: waits for the reader rather than
    /// take more from librdkafka, whose prefetch holds the rest. A long stall pauses the
    /// partitions, so that polling (rebalances, the poll interval) can go on without
    /// fetching more: then returns a zero poll timeout, otherwise `None`.
    fn wait_for_reader(&mut self) -> Option<Duration> {
        if self
            .outbox
            .full_since
            .is_some_and(|since| since.elapsed() >= STALL)
        {
            self.pause_fetching();
        }
        // Time passes while parked: the next round does the housekeeping.
        self.housekeeping.polled = HOUSEKEEPING_EVERY;
        std::thread::park_timeout(WAIT_SLICE);
        if self.paused.is_empty() {
            None
        } else {
            Some(Duration::ZERO)
        }
    }

    /// Polls the consumer once, and keeps the record it returns if its tracker says so.
    fn poll(&mut self, timeout: Duration) {
        let fetched = match self.consumer.poll(timeout) {
            None => {
                self.drained = true;
                return;
            }
            Some(Err(err)) => {
                tracing::debug!(error = %err, "consumer error");
                self.housekeeping.polled += 1;
                return;
            }
            Some(Ok(record)) => {
                let topic = shared_name(&mut self.topics, rdkafka::Message::topic(&record));
                convert::from_record(&record, topic)
            }
        };
        self.drained = false;
        self.housekeeping.polled += 1;
        self.keep_if_due(fetched);
    }

    /// Adds `fetched` to the batch if its partition's tracker says to hand it out.
    fn keep_if_due(&mut self, fetched: Fetched) {
        let key = (fetched.topic.clone(), fetched.partition);
        // `now` is at most HOUSEKEEPING_EVERY records old: a redelivery that fell due
        // since then is skipped here and sought back to at the next round.
        let now = self.housekeeping.now;
        let verdict = self.shared.with_parts(|parts| {
            parts.get_mut(&key).map(|part| {
                part.position = Some(fetched.offset + 1);
                (part.tracker.on_fetch(fetched.offset, now), part.generation)
            })
        });
        if let Some(Some((Verdict::Deliver { attempt }, generation))) = verdict {
            self.outbox.push(Pending {
                fetched,
                attempt,
                generation,
            });
        }
    }

    /// Commits what was acked and leaves the group; a plain subscriber's group is then
    /// deleted.
    fn leave(self) {
        // Final commit of what was acked; dropping the consumer then leaves the group
        // (its revoke callback commits again, harmlessly).
        commit(
            &self.consumer,
            &self.shared.to_commit(None, false),
            CommitMode::Sync,
        );
        self.consumer.unsubscribe();
        let ConsumerThread {
            consumer,
            ephemeral_group,
            ..
        } = self;
        // Leaves the group (librdkafka's close, with a last revoke and commit).
        drop(consumer);
        if let Some((group, admin)) = ephemeral_group {
            delete_group(&group, &admin);
        }
    }

    /// Pauses the partitions that have delivered something. A partition that has not
    /// is left fetching: librdkafka resumes a paused partition from the last message the
    /// application polled, and without one it would fall back to `auto.offset.reset`.
    /// What such a partition fetches meanwhile joins the waiting batch, and it is paused
    /// then.
    fn pause_fetching(&mut self) {
        let mut tpl = TopicPartitionList::new();
        let mut keys = Vec::new();
        self.shared.with_parts(|parts| {
            for (key, part) in parts.iter() {
                if part.position.is_some() && !self.paused.contains(key) {
                    tpl.add_partition(&key.0, key.1);
                    keys.push(key.clone());
                }
            }
        });
        if keys.is_empty() {
            return;
        }
        match self.consumer.pause(&tpl) {
            Ok(()) => self.paused.extend(keys),
            Err(err) => tracing::debug!(error = %err, "pausing partitions failed"),
        }
    }

    /// Resumes what [`pause_fetching`](Self::pause_fetching) paused.
    fn resume_fetching(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for key in self.paused.drain() {
            tpl.add_partition(&key.0, key.1);
        }
        if let Err(err) = self.consumer.resume(&tpl) {
            tracing::debug!(error = %err, "resuming partitions failed");
        }
    }

    /// Seeks partitions back to their earliest nacked offset that is due, when the
    /// consumer has already read past it.
    fn seek_due(&self, now: Instant) {
        let seeks: Vec<(PartitionKey, i64)> = self
            .shared
            .with_parts(|parts| {
                parts
                    .iter_mut()
                    .filter_map(|(key, part)| {
                        let due = part.tracker.due(now)?;
                        if part.position.is_some_and(|p| due < p) {
                            part.position = Some(due);
                            Some((key.clone(), due))
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        for ((topic, partition), offset) in seeks {
            if let Err(err) =
                self.consumer
                    .seek(&topic, partition, Offset::Offset(offset), CALL_TIMEOUT)
            {
                tracing::warn!(topic = %topic, partition, offset, error = %err, "seeking back to a nacked message failed");
                // Try again on the next round.
                self.shared.with_parts(|parts| {
                    if let Some(part) = parts.get_mut(&(topic.clone(), partition)) {
                        part.position = Some(offset + 1);
                    }
                });
            }
        }
    }
}

/// Deletes a plain subscriber's own group (best effort: the broker drops its offsets
/// after `offsets.retention.minutes` anyway).
fn delete_group(group: &str, admin: &AdminClient<LogContext>) {
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    match futures::executor::block_on(admin.delete_groups(&[group], &options)) {
        Ok(results) => {
            for result in results {
                if let Err((group, code)) = result {
                    tracing::debug!(group, error = %code, "cannot delete a plain subscriber's group");
                }
            }
        }
        Err(err) => {
            tracing::debug!(group, error = %err, "cannot delete a plain subscriber's group")
        }
    }
}

/// The name `topic` as kept in `topics`, added there the first time.
fn shared_name(topics: &mut HashSet<Arc<str>>, topic: &str) -> Arc<str> {
    if let Some(name) = topics.get(topic) {
        return name.clone();
    }
    let name: Arc<str> = Arc::from(topic);
    topics.insert(name.clone());
    name
}
