//! Subscriptions: one consumer per subscription, polled on its own thread.
//!
//! The thread polls the consumer, asks the partition's [`PartitionTracker`] whether a
//! fetched record is to be handed out, and passes it to the subscription's stream. Acks
//! and nacks land in the trackers; the thread commits each partition's
//! [`commit_point`](PartitionTracker::commit_point) every
//! [`commit_interval`](crate::KafkaOptions::commit_interval), when partitions are revoked,
//! and when the subscription ends. A nack makes the thread seek the partition back to the
//! nacked offset once its redelivery is due; re-read records that are acked or still in
//! flight are skipped, so only nacked ones come back.
//!
//! Records go to the stream in batches, through a hand-off bounded by
//! [`HANDOFF_BATCHES`] batches of at most [`BATCH_MESSAGES`] records or
//! [`BATCH_BYTES`] bytes. When it is full, the thread waits for the reader, and
//! librdkafka's own prefetch (bounded by `queued.max.messages.kbytes`) holds what comes
//! next. Only when the reader stalls for longer than [`STALL`] does the thread pause the
//! partitions (which makes librdkafka drop its prefetch and fetch again on resume) and go
//! back to polling, so group rebalances and `max.poll.interval.ms` are never held up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::backend::Acknowledger;
use broker_core::delivery::Redelivery;
use broker_core::options::StartPosition;
use broker_core::{Delivery, Error, ErrorKind, Result, SubscribeOptions, Subscription};
use futures::StreamExt;
use futures::future::BoxFuture;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::Inner;
use crate::context::LogContext;
use crate::convert::{self, Fetched};
use crate::error::{check_pattern, config, kafka};
use crate::tracker::{PartitionTracker, Verdict};

/// How long blocking consumer calls (committed offsets, watermarks, seeks, sync commits)
/// may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long looking up where new partitions begin may take; without an answer
/// librdkafka looks them up itself, so there is no point in waiting long.
const BEGINNINGS_TIMEOUT: Duration = Duration::from_secs(2);

/// At most this many records go to the stream in one batch.
const BATCH_MESSAGES: usize = 256;
/// A batch is closed once its records reach this many bytes.
const BATCH_BYTES: usize = 256 * 1024;
/// How many batches the hand-off to the stream holds.
const HANDOFF_BATCHES: usize = 16;
/// How long the reader may leave the hand-off full before the partitions are paused.
const STALL: Duration = Duration::from_millis(500);
/// How long the thread sleeps at a time while the hand-off is full (the reader wakes it
/// earlier when it takes a batch).
const WAIT_SLICE: Duration = Duration::from_millis(20);
/// Records polled between two rounds of housekeeping (reading the clock, seeking back
/// to due redeliveries, the commit timer) while records keep coming; a round also runs
/// whenever librdkafka has nothing ready, and after the thread has waited for the reader.
const HOUSEKEEPING_EVERY: usize = 64;

type PartitionKey = (Arc<str>, i32);

/// The maps looked up for every record and every settle: keyed by topic name and
/// partition, and hashed with foldhash, several times cheaper than std's SipHash on a
/// topic name (these keys come from the subscription and the cluster, not from input
/// an attacker shapes freely).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The commit metadata that carries how many times the committed offset was delivered
/// (`broker-rs:deliveries=N`), so that the next owner of the partition, after a
/// rebalance or a crash, goes on counting attempts instead of starting at 1 again.
const DELIVERIES_METADATA: &str = "broker-rs:deliveries=";

/// One assigned partition.
#[derive(Debug)]
struct Part {
    /// Which assignment this is; settles from an earlier one are ignored.
    generation: u64,
    tracker: PartitionTracker,
    /// The commit point moved since the last commit.
    dirty: bool,
    /// One past the last offset fetched (or where the last seek went).
    position: Option<i64>,
}

/// State shared by the consumer thread, its rebalance callbacks and the ackers.
#[derive(Debug, Default)]
struct Shared {
    parts: Mutex<HashMap<PartitionKey, Part>>,
    generations: AtomicU64,
}

impl Shared {
    fn with_parts<T>(&self, f: impl FnOnce(&mut HashMap<PartitionKey, Part>) -> T) -> Option<T> {
        self.parts.lock().ok().map(|mut parts| f(&mut parts))
    }

    /// Starts tracking `keys`; `priors` has, per partition, how many times its earlier
    /// owner delivered its committed offset (see [`DELIVERIES_METADATA`]).
    fn assign(
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
                    Part {
                        generation,
                        tracker,
                        dirty: false,
                        position: None,
                    },
                );
            }
        });
    }

    fn settle(&self, key: &PartitionKey, generation: u64, offset: i64, nack: Option<Instant>) {
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
    fn to_commit(&self, keys: Option<&[PartitionKey]>, only_dirty: bool) -> TopicPartitionList {
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
                        elem.set_metadata(format!("{DELIVERIES_METADATA}{deliveries}"));
                    }
                    part.dirty = false;
                }
            }
        });
        tpl
    }
}

/// The consumer's context: rebalances position new partitions and commit revoked ones.
struct SubContext {
    shared: Arc<Shared>,
    start: StartPosition,
    /// Set just before `subscribe` returns: partitions first assigned from then on are
    /// new to the subscription. The rebalance callback holds the lock while it positions
    /// partitions, so a partition it judged initial has its end read before `subscribe`
    /// returns, and no message published after that can fall behind the end it read.
    live: Arc<Mutex<bool>>,
    /// Where this consumer started partitions that had no committed offset.
    starts: Mutex<HashMap<PartitionKey, i64>>,
    ready: Mutex<Option<oneshot::Sender<()>>>,
    group: String,
    /// The last error librdkafka reported, for a subscribe that times out.
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for SubContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::context::log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{error}: {reason}"));
        }
        crate::context::error(error, reason);
    }
}

impl ConsumerContext for SubContext {
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

impl SubContext {
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

fn commit<C: ConsumerContext>(
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

/// A record ready to be handed out, before it becomes a [`Delivery`].
struct Pending {
    fetched: Fetched,
    attempt: u32,
    generation: u64,
}

/// Records handed to the stream at once.
type Batch = Vec<Pending>;

/// Creates the consumer for `pattern`, starts its thread, and returns once the consumer
/// has its first partition assignment.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    pattern: &str,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let parsed = check_pattern(pattern)?;
    let regex = parsed.has_wildcards();
    let topic = if regex {
        parsed.to_kafka_regex()
    } else {
        inner.ensure_topic(pattern).await.map_err(|e| {
            Error::with_source(e.kind(), format!("cannot subscribe to `{pattern}`"), e)
        })?;
        pattern.to_owned()
    };
    let group = options
        .queue
        .clone()
        .unwrap_or_else(|| format!("broker-rs-{}", uuid::Uuid::now_v7().simple()));
    let start = options.start_position();
    let mut defaults = vec![
        ("group.id", group.clone()),
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        // Only a fallback: every partition without a committed offset gets an explicit
        // start when assigned. Where librdkafka still falls back (an offset out of range
        // after retention), re-reading beats skipping.
        ("auto.offset.reset", "earliest".to_owned()),
        (
            "fetch.message.max.bytes",
            (inner.options.max_message_bytes + crate::options::FRAMING_ALLOWANCE).to_string(),
        ),
    ];
    if regex {
        defaults.push((
            "topic.metadata.refresh.interval.ms",
            inner.options.pattern_refresh.as_millis().max(1).to_string(),
        ));
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    let shared = Arc::new(Shared::default());
    let live = Arc::new(Mutex::new(false));
    let last_error: Arc<Mutex<Option<String>>> = Arc::default();
    let context = SubContext {
        shared: shared.clone(),
        start,
        live: live.clone(),
        starts: Mutex::default(),
        ready: Mutex::new(Some(ready_tx)),
        group: group.clone(),
        last_error: last_error.clone(),
    };
    let consumer: BaseConsumer<SubContext> = inner
        .options
        .client_config(&defaults)
        .create_with_context(context)
        .map_err(|e| config("consumer", e))?;
    consumer.subscribe(&[&topic]).map_err(|e| {
        kafka(
            ErrorKind::Subscribe,
            format!("cannot subscribe to `{pattern}`"),
            e,
        )
    })?;

    let token = inner.shutdown.child_token();
    let (tx, rx) = mpsc::channel::<Batch>(HANDOFF_BATCHES);
    let consumers = inner.consumers.clone();
    consumers.send_modify(|n| *n += 1);
    let worker = Worker {
        consumer,
        shared: shared.clone(),
        tx,
        token: token.clone(),
        commit_interval: inner.options.commit_interval,
        paused: HashSet::default(),
        topics: HashSet::default(),
        ephemeral_group: options
            .queue
            .is_none()
            .then(|| (group.clone(), inner.admin.clone())),
    };
    let spawned = std::thread::Builder::new()
        .name(format!(
            "kafka-sub-{}",
            group.chars().take(20).collect::<String>()
        ))
        .spawn(move || {
            worker.run();
            consumers.send_modify(|n| *n = n.saturating_sub(1));
        });
    let thread = match spawned {
        Ok(handle) => handle.thread().clone(),
        Err(err) => {
            inner.consumers.send_modify(|n| *n = n.saturating_sub(1));
            return Err(Error::with_source(
                ErrorKind::Subscribe,
                "cannot start the consumer thread",
                err,
            ));
        }
    };

    let guard = token.clone().drop_guard();
    // A regex subscription that matches no topic yet does not join its group until one
    // appears, so there is no assignment to wait for; topics that appear later are read
    // from their beginning, so nothing published after `subscribe` returns is missed.
    let wait = if regex {
        let names = inner.topic_names().await?;
        names.iter().any(|name| parsed.matches(name))
    } else {
        true
    };
    let ready = async { if wait { ready_rx.await } else { Ok(()) } };
    match tokio::time::timeout(inner.options.subscribe_timeout, ready).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            return Err(Error::new(
                ErrorKind::Subscribe,
                format!("the consumer for `{pattern}` stopped before it got its partitions"),
            ));
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the consumer for `{pattern}` (group `{group}`) got no partition assignment within {:?}{}",
                    inner.options.subscribe_timeout,
                    last_error
                        .lock()
                        .ok()
                        .and_then(|e| e.clone())
                        .map(|e| format!("; last client error: {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    // Waits for a rebalance callback positioning partitions right now (see `live`).
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(mut live) = live.lock() {
            *live = true;
        }
    })
    .await;
    let stream = tokio_stream(rx, thread, shared, token.clone(), guard);
    Ok(Subscription::new(pattern, &options, stream))
}

/// The subscription's stream: takes the consumer thread's batches (waking the thread,
/// which may be waiting for room), drops records of partitions revoked meanwhile (their
/// new owner reads them from the last commit), and makes the rest deliveries.
fn tokio_stream(
    rx: mpsc::Receiver<Batch>,
    thread: std::thread::Thread,
    shared: Arc<Shared>,
    token: CancellationToken,
    guard: tokio_util::sync::DropGuard,
) -> impl futures::Stream<Item = Result<Delivery>> + Send + 'static {
    let batches = {
        let shared = shared.clone();
        futures::stream::unfold(rx, move |mut rx| {
            let thread = thread.clone();
            let shared = shared.clone();
            async move {
                let mut batch = rx.recv().await?;
                thread.unpark();
                shared.with_parts(|parts| {
                    batch.retain(|pending| {
                        parts
                            .get(&(pending.fetched.topic.clone(), pending.fetched.partition))
                            .is_some_and(|part| part.generation == pending.generation)
                    })
                });
                Some((futures::stream::iter(batch), rx))
            }
        })
    };
    let deliveries = batches.flatten().map(move |pending| {
        let _keep = &guard;
        let Fetched {
            topic,
            partition,
            offset,
            message,
            defect,
        } = pending.fetched;
        let acker = KafkaAcker {
            shared: shared.clone(),
            key: (topic.clone(), partition),
            generation: pending.generation,
            offset,
        };
        let delivery = Delivery::new(message, topic, Box::new(acker))
            .with_attempt(pending.attempt)
            .with_partition(partition);
        Ok(match defect {
            Some(defect) => delivery.with_defect(defect),
            None => delivery,
        })
    });
    deliveries.take_until(token.cancelled_owned())
}

/// Settles one delivery in its partition's tracker.
struct KafkaAcker {
    shared: Arc<Shared>,
    key: PartitionKey,
    generation: u64,
    offset: i64,
}

impl Acknowledger for KafkaAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.shared
            .settle(&self.key, self.generation, self.offset, None);
        broker_core::backend::settled()
    }

    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
        let delay = match redelivery {
            Redelivery::After(delay) => delay,
            _ => Duration::ZERO,
        };
        self.shared.settle(
            &self.key,
            self.generation,
            self.offset,
            Some(Instant::now() + delay),
        );
        broker_core::backend::settled()
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

/// The consumer thread.
struct Worker {
    consumer: BaseConsumer<SubContext>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Batch>,
    token: CancellationToken,
    commit_interval: Duration,
    /// Partitions paused because the reader stalled.
    paused: HashSet<PartitionKey>,
    /// The names of the topics read, shared by their records.
    topics: HashSet<Arc<str>>,
    /// A plain subscriber's own group, deleted when the subscription ends.
    ephemeral_group: Option<(String, Arc<AdminClient<LogContext>>)>,
}

impl Worker {
    fn run(mut self) {
        let mut last_commit = Instant::now();
        // Records fetched and not yet handed to the stream, and their size.
        let mut batch: Batch = Vec::new();
        let mut batch_bytes = 0;
        // Whether librdkafka had nothing more ready at the last poll: the batch is sent
        // then, or when it is full.
        let mut drained = true;
        // Since when the hand-off has been full.
        let mut full_since: Option<Instant> = None;
        // The time as of the last housekeeping round, and the records polled since.
        let mut now = Instant::now();
        let mut polled = HOUSEKEEPING_EVERY;
        while !self.token.is_cancelled() {
            if drained || polled >= HOUSEKEEPING_EVERY {
                now = Instant::now();
                polled = 0;
                self.seek_due(now);
                if now.saturating_duration_since(last_commit) >= self.commit_interval {
                    commit(
                        &self.consumer,
                        &self.shared.to_commit(None, true),
                        CommitMode::Async,
                    );
                    last_commit = now;
                }
            }
            let batch_full = batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES;
            if !batch.is_empty() && (drained || batch_full) {
                let handed = match self.tx.try_reserve() {
                    Ok(permit) => {
                        // The next batch starts with the room this one needed: at a
                        // steady rate one allocation per batch, instead of growing (and
                        // copying) from empty.
                        let room = batch.len();
                        permit.send(std::mem::replace(&mut batch, Vec::with_capacity(room)));
                        true
                    }
                    Err(mpsc::error::TrySendError::Full(())) => false,
                    Err(mpsc::error::TrySendError::Closed(())) => break,
                };
                if handed {
                    batch_bytes = 0;
                    full_since = None;
                    self.resume_fetching();
                } else {
                    full_since.get_or_insert_with(Instant::now);
                }
            }
            let timeout = if batch.is_empty() {
                Duration::from_millis(50)
            } else if full_since.is_none() {
                Duration::ZERO
            } else if batch_full {
                // Nothing can be handed out and the batch is full: wait for the reader
                // rather than take more from librdkafka, whose prefetch holds the rest.
                // A long stall pauses the partitions, so that polling (rebalances, the
                // poll interval) can go on without fetching more.
                if full_since.is_some_and(|since| since.elapsed() >= STALL) {
                    self.pause_fetching();
                }
                // Time passes while parked: the next round does the housekeeping.
                polled = HOUSEKEEPING_EVERY;
                if self.paused.is_empty() {
                    std::thread::park_timeout(WAIT_SLICE);
                    continue;
                }
                std::thread::park_timeout(WAIT_SLICE);
                Duration::ZERO
            } else {
                // The hand-off is full but the batch has room: fill it meanwhile.
                Duration::from_millis(5)
            };
            let record = match self.consumer.poll(timeout) {
                None => {
                    drained = true;
                    continue;
                }
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "consumer error");
                    polled += 1;
                    continue;
                }
                Some(Ok(record)) => record,
            };
            drained = false;
            polled += 1;
            let topic = shared_name(&mut self.topics, rdkafka::Message::topic(&record));
            let fetched = convert::from_record(&record, topic);
            drop(record);
            let key = (fetched.topic.clone(), fetched.partition);
            // `now` is at most HOUSEKEEPING_EVERY records old: a redelivery that fell due
            // since then is skipped here and sought back to at the next round.
            let verdict = self.shared.with_parts(|parts| {
                parts.get_mut(&key).map(|part| {
                    part.position = Some(fetched.offset + 1);
                    (part.tracker.on_fetch(fetched.offset, now), part.generation)
                })
            });
            if let Some(Some((Verdict::Deliver { attempt }, generation))) = verdict {
                batch_bytes += fetched.message.encoded_len();
                batch.push(Pending {
                    fetched,
                    attempt,
                    generation,
                });
            }
        }
        // Final commit of what was acked; dropping the consumer then leaves the group
        // (its revoke callback commits again, harmlessly).
        commit(
            &self.consumer,
            &self.shared.to_commit(None, false),
            CommitMode::Sync,
        );
        self.consumer.unsubscribe();
        let Worker {
            consumer,
            ephemeral_group,
            ..
        } = self;
        // Leaves the group (librdkafka's close, with a last revoke and commit).
        drop(consumer);
        if let Some((group, admin)) = ephemeral_group {
            let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
            match futures::executor::block_on(admin.delete_groups(&[&group], &options)) {
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
