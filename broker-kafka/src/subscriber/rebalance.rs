//! The consumer's context: rebalance callbacks that position new partitions and commit
//! revoked ones, the delivery counts carried in committed offsets' metadata
//! ([`DELIVERIES_METADATA`]), and commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::options::StartPosition;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::oneshot;

use super::shared::{PartitionKey, SharedPartitions};

/// How long blocking consumer calls (committed offsets, watermarks, seeks, sync commits)
/// may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long looking up where new partitions begin may take; without an answer
/// librdkafka looks them up itself, so there is no point in waiting long.
const BEGINNINGS_TIMEOUT: Duration = Duration::from_secs(2);

/// The commit metadata that carries how many times the committed offset was delivered
/// (`broker-rs:deliveries=N`), so that the next owner of the partition, after a
/// rebalance or a crash, goes on counting attempts instead of starting at 1 again.
pub(super) const DELIVERIES_METADATA: &str = "broker-rs:deliveries=";

/// The commit metadata saying that the committed offset was delivered `deliveries`
/// times (see [`DELIVERIES_METADATA`]).
pub(super) fn deliveries_metadata(deliveries: u32) -> String {
    format!("{DELIVERIES_METADATA}{deliveries}")
}

/// The consumer's context: rebalances position new partitions and commit revoked ones.
pub(super) struct RebalanceContext {
    shared: Arc<SharedPartitions>,
    start: StartPosition,
    /// Set just before `subscribe` returns: partitions first assigned from then on are
    /// new to the subscription. The rebalance callback holds the lock while it positions
    /// partitions, so a partition it judged initial has its end read before `subscribe`
    /// returns, and no message published after that can fall behind the end it read.
    live: Arc<Mutex<bool>>,
    /// Where this consumer started partitions that had no committed offset.
    starts: Mutex<HashMap<PartitionKey, i64>>,
    /// Told of the first assignment, which `subscribe` waits for.
    ready: Mutex<Option<oneshot::Sender<()>>>,
    group: String,
    /// The last error librdkafka reported, for a subscribe that times out.
    last_error: Arc<Mutex<Option<String>>>,
}

/// What `subscribe` keeps of a [`RebalanceContext`] while its consumer joins the group.
pub(super) struct Joining {
    /// Resolves when the first partitions are assigned.
    pub(super) ready: oneshot::Receiver<()>,
    /// See [`RebalanceContext::live`].
    live: Arc<Mutex<bool>>,
    /// See [`RebalanceContext::last_error`].
    last_error: Arc<Mutex<Option<String>>>,
}

impl Joining {
    /// The last error librdkafka reported.
    pub(super) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Marks the subscription live, once a rebalance callback positioning partitions
    /// right now is done (see [`RebalanceContext::live`]).
    pub(super) async fn go_live(self) {
        let live = self.live;
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut live) = live.lock() {
                *live = true;
            }
        })
        .await;
    }
}

impl ClientContext for RebalanceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::context::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{error}: {reason}"));
        }
        crate::context::error(error, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        crate::context::stats(json);
    }
}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let priors = self.position_new_partitions(consumer, tpl);
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(err) = result {
                    tracing::warn!(group = %self.group, error = %err, "assigning partitions failed");
                }
                self.shared.assign(keys(tpl), &priors);
                tracing::debug!(group = %self.group, partitions = tpl.count(), "partitions assigned");
                if let Some(ready) = self.ready.lock().ok().and_then(|mut r| r.take()) {
                    let _ = ready.send(());
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<PartitionKey> = keys(tpl).collect();
                if !consumer.assignment_lost() {
                    commit(
                        consumer,
                        &self.shared.to_commit(Some(&revoked), false),
                        CommitMode::Sync,
                    );
                }
                self.shared.with_parts(|parts| {
                    for key in &revoked {
                        parts.remove(key);
                    }
                });
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    tracing::warn!(group = %self.group, error = %err, "unassigning partitions failed");
                }
                tracing::debug!(group = %self.group, partitions = revoked.len(), "partitions revoked");
            }
            other => {
                tracing::warn!(group = %self.group, error = ?other, "rebalance failed");
                self.shared.with_parts(|parts| parts.clear());
                let _ = consumer.unassign();
            }
        }
    }
}

impl RebalanceContext {
    /// The context of a consumer in `group` that starts partitions without a committed
    /// offset at `start`, and what `subscribe` keeps of it while the consumer joins.
    pub(super) fn new(
        shared: Arc<SharedPartitions>,
        start: StartPosition,
        group: String,
    ) -> (Self, Joining) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let live = Arc::new(Mutex::new(false));
        let last_error: Arc<Mutex<Option<String>>> = Arc::default();
        let context = RebalanceContext {
            shared,
            start,
            live: live.clone(),
            starts: Mutex::default(),
            ready: Mutex::new(Some(ready_tx)),
            group,
            last_error: last_error.clone(),
        };
        let joining = Joining {
            ready: ready_rx,
            live,
            last_error,
        };
        (context, joining)
    }

    /// Gives partitions without a committed offset an explicit start: the end of the
    /// partition as it is now for [`StartPosition::Latest`] on the partitions assigned
    /// while subscribing, the beginning otherwise: a partition first assigned after
    /// `subscribe` returned (a topic that appears later, or a partition that the first
    /// assignment did not include) is read from its beginning, so nothing published to it
    /// after `subscribe` returned is missed. The chosen ends are committed at once, so a
    /// later rebalance, or another member of the group, resumes from there instead of
    /// from a later end. Beginnings are looked up here too, all in one request (see
    /// [`resolve_beginnings`](Self::resolve_beginnings)).
    ///
    /// Returns, per partition with a committed offset that carries
    /// [`DELIVERIES_METADATA`], that offset and how many times it was delivered.
    fn position_new_partitions(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> HashMap<PartitionKey, (i64, u32)> {
        let live_guard = self.live.lock();
        let live = live_guard.as_deref().copied().unwrap_or(true);
        let (committed, priors) = match consumer.committed_offsets(tpl.clone(), CALL_TIMEOUT) {
            Ok(committed) => (committed.to_topic_map(), committed_deliveries(&committed)),
            Err(err) => {
                tracing::warn!(group = %self.group, error = %err, "cannot read committed offsets; falling back to auto.offset.reset");
                return HashMap::default();
            }
        };
        let mut starts = self.starts.lock().ok();
        let mut to_commit = TopicPartitionList::new();
        let mut beginnings = TopicPartitionList::new();
        for key in keys(tpl).collect::<Vec<_>>() {
            if matches!(
                committed.get(&(key.0.to_string(), key.1)),
                Some(Offset::Offset(_))
            ) {
                continue;
            }
            let remembered = starts.as_ref().and_then(|s| s.get(&key).copied());
            let initial_topic = !live;
            let offset = match remembered {
                Some(start) => Offset::Offset(start),
                None if initial_topic && self.start == StartPosition::Latest => {
                    match partition_end(consumer, &key) {
                        Some(high) => {
                            if let Some(starts) = starts.as_mut() {
                                starts.insert(key.clone(), high);
                            }
                            let _ =
                                to_commit.add_partition_offset(&key.0, key.1, Offset::Offset(high));
                            Offset::Offset(high)
                        }
                        // Without the end, the only start that misses nothing published
                        // after `subscribe` returns is the beginning: older messages may
                        // come too, newer ones are never skipped.
                        None => {
                            let _ =
                                beginnings.add_partition_offset(&key.0, key.1, Offset::Beginning);
                            Offset::Beginning
                        }
                    }
                }
                None => {
                    let _ = beginnings.add_partition_offset(&key.0, key.1, Offset::Beginning);
                    Offset::Beginning
                }
            };
            if let Err(err) = tpl.set_partition_offset(&key.0, key.1, offset) {
                tracing::warn!(topic = %key.0, partition = key.1, error = %err, "cannot set the start offset");
            }
        }
        if beginnings.count() > 0 {
            self.resolve_beginnings(consumer, tpl, beginnings);
        }
        if to_commit.count() > 0 {
            commit(consumer, &to_commit, CommitMode::Sync);
        }
        priors
    }

    /// Replaces [`Offset::Beginning`] in `tpl` by the offsets where the `beginnings`
    /// partitions begin, looked up in one request.
    ///
    /// librdkafka resolves a logical start one partition at a time and starts fetching
    /// as soon as the first answer is in, with one fetch in flight per broker: the
    /// partitions resolved a moment later wait for that fetch to return, which takes
    /// `fetch.wait.max.ms` (500 ms by default) unless something arrives in the
    /// partitions it covers. A subscriber could thus get nothing, for half a second, of
    /// what is published to those partitions right after `subscribe` returned. Explicit
    /// offsets start all partitions together. When the lookup fails, the logical start
    /// stays and librdkafka resolves it; an offset that retention removes meanwhile
    /// falls back to `auto.offset.reset` (earliest), as before.
    fn resolve_beginnings(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
        beginnings: TopicPartitionList,
    ) {
        // Looking up the offset for "timestamp" -2 (`Offset::Beginning`) asks for the
        // earliest one.
        let found = match consumer.offsets_for_times(beginnings, BEGINNINGS_TIMEOUT) {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(group = %self.group, error = %err, "cannot look up where the partitions begin; librdkafka will");
                return;
            }
        };
        for element in found.elements() {
            match (element.error(), element.offset()) {
                (Ok(()), Offset::Offset(offset)) => {
                    if let Err(err) = tpl.set_partition_offset(
                        element.topic(),
                        element.partition(),
                        Offset::Offset(offset),
                    ) {
                        tracing::debug!(topic = element.topic(), partition = element.partition(), error = %err, "cannot set the start offset");
                    }
                }
                (result, offset) => {
                    tracing::debug!(
                        topic = element.topic(),
                        partition = element.partition(),
                        ?result,
                        ?offset,
                        "no beginning found; librdkafka will look it up"
                    );
                }
            }
        }
    }
}

/// Where `key`'s partition ends now, asked until [`CALL_TIMEOUT`] has passed.
///
/// Right after a topic is created the broker may not serve its partitions yet and
/// answers at once with an error (unknown partition, no leader), so the question is
/// repeated with a growing pause instead of a fixed number of times.
fn partition_end<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    key: &PartitionKey,
) -> Option<i64> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last =
            match consumer.fetch_watermarks(&key.0, key.1, left.max(Duration::from_millis(100))) {
                Ok((_, high)) if high >= 0 => return Some(high),
                Ok((low, high)) => format!("no end yet (watermarks {low}..{high})"),
                Err(err) => err.to_string(),
            };
        if Instant::now() + pause >= deadline {
            tracing::warn!(topic = %key.0, partition = key.1, error = %last, "cannot read the partition's end; reading it from its beginning");
            return None;
        }
        tracing::debug!(topic = %key.0, partition = key.1, error = %last, "cannot read the partition's end yet");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The partitions in `tpl`.
fn keys(tpl: &TopicPartitionList) -> impl Iterator<Item = PartitionKey> + '_ {
    tpl.elements()
        .into_iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
}

/// The delivery counts that committed offsets carry in their metadata.
fn committed_deliveries(committed: &TopicPartitionList) -> HashMap<PartitionKey, (i64, u32)> {
    committed
        .elements()
        .iter()
        .filter_map(|elem| {
            let Offset::Offset(offset) = elem.offset() else {
                return None;
            };
            // librdkafka's metadata accessor panics on bytes that are not UTF-8, which
            // another client could have committed: read it only where it is text.
            let deliveries = std::panic::catch_unwind(|| elem.metadata().to_owned())
                .ok()?
                .strip_prefix(DELIVERIES_METADATA)?
                .parse::<u32>()
                .ok()?;
            Some((
                (Arc::from(elem.topic()), elem.partition()),
                (offset, deliveries),
            ))
        })
        .collect()
}

/// Commits `tpl` (nothing when it is empty); a failure is logged, the offsets are
/// committed later or the messages redelivered.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    mode: CommitMode,
) {
    if tpl.count() == 0 {
        return;
    }
    if let Err(err) = consumer.commit(tpl, mode) {
        tracing::warn!(error = %err, "committing offsets failed; they will be committed later or the messages redelivered");
    }
}
