//! The Apache Kafka backend (`kafka://`), on rdkafka (librdkafka).
//!
//! What it guarantees (at-least-once with `acks=all` and an idempotent producer, order
//! per key, offsets committed only over contiguous acks, restarts, crashes, slow
//! readers, poison and foreign input) is in the `kafka://` column of the project's
//! GUARANTEES.md, each cell with its test; this page says how it works.
//!
//! - Queue groups: the queue name is the consumer group id; without a queue each
//!   subscriber gets its own group and sees every message.
//! - Wildcards: `*` and `>` become a regex subscription; new matching topics are found
//!   within [`KafkaOptions::pattern_refresh`] and read from their beginning.
//! - Size: [`KafkaOptions::max_message_bytes`] (8 MiB by default; larger messages fail
//!   with `PayloadTooLarge` before sending).
//! - Credentials and TLS: SASL_SSL through librdkafka properties (this crate's `ssl`
//!   feature, `kafka-ssl` on the `broker` crate).
//!
//! # Connecting
//!
//! `kafka://host:port[,host:port][?options]`; see [`KafkaOptions`] for the options and
//! the librdkafka pass-through (any query key with a dot, such as
//! `security.protocol=SASL_SSL`). Several brokers are written `kafka://h1:9092,h2:9093`
//! (the registry hands the list over in the `hosts` query key), `kafka://h1,h2:9092`
//! (one port for all) or `?bootstrap.servers=h1:9092,h2:9093`. A binary that names no item of this crate must call
//! [`link`] (or `use broker_kafka as _;`) so that the `kafka` scheme is registered.
//!
//! # Keys, headers, tombstones
//!
//! Keys and header values are bytes both ways: a binary key or header value another
//! producer wrote comes back byte for byte, a null header value stays null, and a record
//! with a null value arrives as a tombstone ([`Message::is_tombstone`](broker_core::Message::is_tombstone));
//! `Message::tombstone()` publishes one. A message published again as it arrived writes
//! the same bytes, so it lands on the same partition. The id travels as `x-message-id`;
//! a record without it gets `TOPIC-PARTITION-OFFSET`.
//!
//! Request/reply: a topic is a log that stays until deleted, so every
//! [`Requester`](broker_core::Requester) on Kafka replies through the one topic
//! `_inbox.shared` and keeps the replies to its own requests, instead of creating a topic
//! each.
//!
//! # Publishing
//!
//! One idempotent producer per broker. `publish` hands the record to librdkafka when it
//! is called, and the future it returns resolves on the record's own delivery report, so
//! many can be in flight at once and records leave in call order: publishes started one
//! after the other and awaited later (in any order, or together) keep their order within
//! a key. Two cases wait before handing the record over, and so may let a later publish
//! overtake: the first publishes to a topic this broker has not seen yet (its name is
//! checked and the topic created first; [`KafkaBroker::create_topic`] does that up
//! front), and a publish that finds librdkafka's queue full
//! (`queue.buffering.max.messages`, 100 000 by default), which waits for room for at most
//! [`KafkaOptions::publish_timeout`] and then fails with `Timeout`. `linger.ms` is 1 (librdkafka's default is 5), so a
//! publisher that awaits each publish in turn does not wait 5 ms for every message (set
//! `linger.ms` to trade that latency for larger batches). `publish_batch` hands every
//! record of the batch over before awaiting any report, then awaits the reports
//! together; a full queue makes it wait for the batch's oldest report. Headers become native record headers (order, case
//! and repeated keys kept); the message id travels as the `x-message-id` header and is
//! removed on receipt; the message key is the record key. Topics are created on first use
//! through the admin API, with [`KafkaOptions::partitions`] partitions and
//! [`KafkaOptions::replication`] replicas, unless [`KafkaOptions::create_topics`] is off.
//! Topic names may only use ASCII letters, digits, `.`, `_` and `-`.
//!
//! # Subscribing
//!
//! Each subscription is one consumer in the consumer group named by the queue (or a
//! unique group). When `subscribe` returns, the consumer has joined its group and has
//! its partitions, so a message published afterwards reaches it. Where it starts when the
//! group has no committed offset is [`SubscribeOptions::start_position`]
//! (`broker_core::SubscribeOptions`): a named group from the earliest retained message, a
//! plain subscriber from the end. For the end, the consumer reads each partition's end
//! offset while joining and commits it, so nothing published after `subscribe` returned
//! is skipped, even across later rebalances. With a wildcard, topics that appear after
//! `subscribe` returned are read from their beginning: they did not exist when the
//! subscription started, so all of their messages are new to it. The same goes for a
//! partition that the first assignment did not include (one that the consumer's metadata
//! did not show yet): it is read from its beginning rather than from its end at the
//! time it shows up. librdkafka's
//! `auto.offset.reset` is only a fallback (for an offset that retention removed); it is
//! `earliest`, so that such a case re-reads rather than skips.
//!
//! Offsets are committed (never automatically) every [`KafkaOptions::commit_interval`],
//! before partitions are revoked in a rebalance, and when the subscription is dropped;
//! what is committed is the first offset of each partition that is not acked yet.
//! Attempt counts are kept per offset by the consumer that delivered the message; after a
//! rebalance the new owner counts from 1 again. Dropping a subscription leaves the group
//! at once, so the other members take its partitions over from the committed offsets.
//! The consumer thread hands records to the subscription's stream in batches, up to a
//! bounded number of messages and bytes ahead of the reader; beyond that, librdkafka's
//! prefetch (`queued.max.messages.kbytes`) holds them. A stream that is not read for a
//! while (half a second) gets its partitions paused, and the thread keeps polling, so a
//! slow or stalled reader never stalls the group and loses nothing.
//!
//! # Redelivery
//!
//! A nack does not publish anything: the consumer keeps, per partition, the state of
//! every offset it handed out (in flight, acked, nacked and when it is due). Once a
//! nacked offset is due (at once, or after the delay of `nack_after`), the consumer seeks
//! the partition back to it and reads forward again, handing out only the nacked
//! offsets; what is acked or still in flight is skipped. Meanwhile later messages of the
//! partition keep flowing, so a redelivered message may arrive after newer ones with its
//! key. The commit point cannot pass a nacked message, so if the consumer goes away while
//! a redelivery is pending, the next owner of the partition reads it again. Nothing is
//! written to the topic, so other consumer groups never see a copy. The attempt count is kept per
//! offset by the consumer that handed the message out; the commit of a partition whose
//! first unacked offset was delivered before carries that count in the commit metadata
//! (`broker-rs:deliveries=N`), so the next owner, after a rebalance or a crash, goes on
//! counting (`kafka::the_attempt_count_survives_a_change_of_owner`).
//!
//! A plain subscriber's own consumer group (`broker-rs-<uuid>`) is deleted when its
//! subscription ends (best effort: if that fails, the broker drops its offsets after
//! `offsets.retention.minutes`).
//!
//! # Consumer lag
//!
//! `lag()` on a subscription (what it counts: [`broker_core::lag`]) is read by a second
//! client of the subscription's group, made at the first `lag()` and kept with the
//! subscription; it never joins the group, and asks the group coordinator for the
//! committed offsets and each partition's leader for its watermarks, a few requests per
//! call (each given 5 s).
//!
//! # Running on a cluster
//!
//! List several brokers (`kafka://b1:9092,b2:9092,b3:9092`): any one that answers is
//! enough to connect. For topics the framework creates, set
//! [`KafkaOptions::replication`] (3 on a three-node cluster) and
//! [`KafkaOptions::min_insync_replicas`] (2): with the producer's `acks=all`, a publish
//! then returns `Ok` only once two replicas have the record, and a node may die without
//! losing it. How long a dead group member's partitions wait is the session timeout,
//! [`KafkaOptions::session_timeout`] (10 s unless set; librdkafka's own default is 45 s),
//! or with [`GroupProtocol::Consumer`] (KIP-848) the broker's
//! `group.consumer.session.timeout.ms`. The failover times measured for each setting are
//! in the project's GUARANTEES.md. A broker that goes away is logged once (WARN) and its
//! return once (INFO) per process, whatever the number of clients and reconnect
//! attempts; [`outages`] tells which brokers are unreachable now.
//!
//! [`SubscribeOptions::start_position`]: broker_core::SubscribeOptions::start_position
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod broker;
mod context;
mod convert;
mod error;
mod kafka_url;
mod options;
mod publish;
mod publish_batch;
mod subscriber;
mod topics;
mod tracker;

use std::sync::Arc;

use broker_core::{Broker, Result};
use futures::FutureExt;

pub use broker::KafkaBroker;
pub use context::outages;
pub use options::{
    DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_SESSION_TIMEOUT, GroupProtocol,
    KafkaOptions, SCHEME,
};

broker_core::register_backend!(SCHEME, |url| connect_url(url).boxed());

/// Connects to the broker a parsed `kafka://` URL names (the registry's entry point).
pub async fn connect_url(url: url::Url) -> Result<Arc<dyn Broker>> {
    let options = KafkaOptions::from_url(&url)?;
    Ok(Arc::new(KafkaBroker::connect(options).await?))
}

/// Names this crate so the linker keeps it, and with it the `kafka://` registration.
/// Called by the `broker` crate; a binary depending on this crate alone should call it
/// (or `use broker_kafka as _;`) once.
pub fn link() {}
