//! Subscriptions: one consumer per subscription, polled on its own thread.
//!
//! The thread polls the consumer, asks the partition's
//! [`PartitionTracker`](crate::tracker::PartitionTracker) whether a fetched record is to
//! be handed out, and passes it to the subscription's stream. Acks and nacks land in the
//! trackers; the thread commits each partition's
//! [`commit_point`](crate::tracker::PartitionTracker::commit_point) every
//! [`commit_interval`](crate::KafkaOptions::commit_interval), when partitions are revoked,
//! and when the subscription ends. A nack makes the thread seek the partition back to the
//! nacked offset once its redelivery is due; re-read records that are acked or still in
//! flight are skipped, so only nacked ones come back.
//!
//! Records go to the stream in batches, through a hand-off bounded by
//! [`HANDOFF_BATCHES`] batches of at most [`BATCH_MESSAGES`](poll::BATCH_MESSAGES)
//! records or [`BATCH_BYTES`](poll::BATCH_BYTES) bytes. When it is full, the thread waits
//! for the reader, and librdkafka's own prefetch (bounded by `queued.max.messages.kbytes`)
//! holds what comes next. Only when the reader stalls for longer than
//! [`STALL`](poll::STALL) does the thread pause the partitions (which makes librdkafka
//! drop its prefetch and fetch again on resume) and go back to polling, so group
//! rebalances and `max.poll.interval.ms` are never held up.
//!
//! The parts: [`shared`] holds the state of the assigned partitions, which the consumer
//! thread ([`poll`]), the rebalance callbacks ([`rebalance`]) and the ackers ([`stream`])
//! share; [`lag`] answers how far the subscription is behind; this module creates the
//! consumer and starts the thread.

mod lag;
mod poll;
mod rebalance;
mod shared;
mod stream;

use std::sync::Arc;

use broker_core::subject::Pattern;
use broker_core::{Error, ErrorKind, Result, SubscribeOptions, Subscription};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;

use self::lag::KafkaLag;
use self::poll::{ConsumerThread, HANDOFF_BATCHES};
use self::rebalance::{Joining, RebalanceContext};
use self::shared::SharedPartitions;
use self::stream::{Batch, delivery_stream};
use crate::broker::Inner;
use crate::error::{check_pattern, config, kafka};
use crate::options::{FRAMING_ALLOWANCE, KafkaOptions};

/// Creates the consumer for `pattern`, starts its thread, and returns once the consumer
/// has its first partition assignment.
pub(crate) async fn subscribe(
    inner: Arc<Inner>,
    pattern: &str,
    options: SubscribeOptions,
) -> Result<Subscription> {
    let target = Target::resolve(&inner, pattern).await?;
    let group = options
        .queue
        .clone()
        .unwrap_or_else(|| format!("broker-rs-{}", uuid::Uuid::now_v7().simple()));
    let shared = Arc::new(SharedPartitions::default());
    let (context, mut joining) =
        RebalanceContext::new(shared.clone(), options.start_position(), group.clone());
    let consumer = create_consumer(&inner.options, &target, &group, context)?;

    let token = inner.shutdown.child_token();
    let (tx, rx) = mpsc::channel::<Batch>(HANDOFF_BATCHES);
    let ephemeral_group = options
        .queue
        .is_none()
        .then(|| (group.clone(), inner.admin.clone()));
    let consumer_thread = ConsumerThread::new(
        consumer,
        shared.clone(),
        tx,
        token.clone(),
        inner.options.commit_interval,
        ephemeral_group,
    );
    let thread = start_thread(&inner, consumer_thread, &group)?;

    // Dropped on the way out, it stops the thread: here if the wait fails, later with
    // the stream.
    let guard = token.clone().drop_guard();
    wait_for_assignment(&inner, &target, &group, &mut joining).await?;
    joining.go_live().await;
    let lag = KafkaLag::new(
        shared.clone(),
        inner.options.client_config(&[("group.id", group.clone())]),
        token.clone(),
    );
    let stream = delivery_stream(rx, thread, shared, token.clone(), guard);
    Ok(Subscription::new(pattern, &options, stream).with_lag(Arc::new(lag)))
}

/// What a consumer subscribes to.
struct Target<'a> {
    /// The pattern as given.
    pattern: &'a str,
    parsed: Pattern,
    /// Whether the pattern has wildcards, which makes it a regex subscription.
    regex: bool,
    /// The topic, or the regex, handed to librdkafka.
    topic: String,
}

impl<'a> Target<'a> {
    /// Checks `pattern`; a plain topic is created when topic creation is on.
    async fn resolve(inner: &Inner, pattern: &'a str) -> Result<Self> {
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
        Ok(Target {
            pattern,
            parsed,
            regex,
            topic,
        })
    }
}

/// Creates the consumer of `group` and subscribes it to `target`.
fn create_consumer(
    options: &KafkaOptions,
    target: &Target<'_>,
    group: &str,
    context: RebalanceContext,
) -> Result<BaseConsumer<RebalanceContext>> {
    let consumer: BaseConsumer<RebalanceContext> = options
        .client_config(&consumer_defaults(options, group, target.regex)?)
        .create_with_context(context)
        .map_err(|e| config("consumer", e))?;
    consumer.subscribe(&[&target.topic]).map_err(|e| {
        kafka(
            ErrorKind::Subscribe,
            format!("cannot subscribe to `{}`", target.pattern),
            e,
        )
    })?;
    Ok(consumer)
}

/// The consumer's own settings, which pass-through properties override.
fn consumer_defaults(
    options: &KafkaOptions,
    group: &str,
    regex: bool,
) -> Result<Vec<(&'static str, String)>> {
    let mut defaults = vec![
        ("group.id", group.to_owned()),
        ("enable.auto.commit", "false".to_owned()),
        ("enable.auto.offset.store", "false".to_owned()),
        // Only a fallback: every partition without a committed offset gets an explicit
        // start when assigned. Where librdkafka still falls back (an offset out of range
        // after retention), re-reading beats skipping.
        ("auto.offset.reset", "earliest".to_owned()),
        (
            "fetch.message.max.bytes",
            (options.max_message_bytes + FRAMING_ALLOWANCE).to_string(),
        ),
    ];
    if regex {
        defaults.push((
            "topic.metadata.refresh.interval.ms",
            options.pattern_refresh.as_millis().max(1).to_string(),
        ));
    }
    defaults.extend(options.group_settings()?);
    Ok(defaults)
}

/// Starts `consumer_thread`, counted in [`Inner::consumers`] while it runs.
fn start_thread(
    inner: &Inner,
    consumer_thread: ConsumerThread,
    group: &str,
) -> Result<std::thread::Thread> {
    let consumers = inner.consumers.clone();
    consumers.send_modify(|n| *n += 1);
    let spawned = std::thread::Builder::new()
        .name(format!(
            "kafka-sub-{}",
            group.chars().take(20).collect::<String>()
        ))
        .spawn(move || {
            consumer_thread.run();
            consumers.send_modify(|n| *n = n.saturating_sub(1));
        });
    match spawned {
        Ok(handle) => Ok(handle.thread().clone()),
        Err(err) => {
            inner.consumers.send_modify(|n| *n = n.saturating_sub(1));
            Err(Error::with_source(
                ErrorKind::Subscribe,
                "cannot start the consumer thread",
                err,
            ))
        }
    }
}

/// Waits, at most [`subscribe_timeout`](KafkaOptions::subscribe_timeout), until the
/// consumer has its first partitions.
async fn wait_for_assignment(
    inner: &Inner,
    target: &Target<'_>,
    group: &str,
    joining: &mut Joining,
) -> Result<()> {
    // A regex subscription that matches no topic yet does not join its group until one
    // appears, so there is no assignment to wait for; topics that appear later are read
    // from their beginning, so nothing published after `subscribe` returns is missed.
    let wait = if target.regex {
        let names = inner.topic_names().await?;
        names.iter().any(|name| target.parsed.matches(name))
    } else {
        true
    };
    let pattern = target.pattern;
    let timeout = inner.options.subscribe_timeout;
    let ready = async {
        if wait {
            (&mut joining.ready).await
        } else {
            Ok(())
        }
    };
    match tokio::time::timeout(timeout, ready).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Error::new(
            ErrorKind::Subscribe,
            format!("the consumer for `{pattern}` stopped before it got its partitions"),
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "the consumer for `{pattern}` (group `{group}`) got no partition assignment within {timeout:?}{}",
                joining
                    .last_error()
                    .map(|e| format!("; last client error: {e}"))
                    .unwrap_or_default()
            ),
        )),
    }
}
