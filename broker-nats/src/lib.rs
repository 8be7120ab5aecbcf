//! The NATS backend: core NATS (`nats://`) and JetStream (`jetstream://`), on async-nats.
//!
//! What each mode guarantees (core NATS at most once, JetStream at least once; order,
//! durability, restarts, crashes, slow consumers, poison and foreign input, TLS and
//! credentials) is in the `nats://` and `jetstream://` columns of the project's
//! GUARANTEES.md, each cell with the test in `broker-nats/tests/` that shows it, against
//! real servers started by `scripts/nats.sh`. This page says how it works.
//!
//! # Subjects, headers, request/reply
//!
//! - Topics and patterns are checked with [`broker_core::subject`] first; `*` and `>`
//!   are NATS's own wildcards.
//! - Headers are native NATS headers, case and repeated names kept. The client keeps
//!   headers in a hash map, so the publisher adds the header `x-broker-header-order`
//!   listing the names in order; values that NATS would alter (leading or trailing
//!   whitespace, line breaks) or that are not UTF-8 travel percent-encoded and are marked
//!   there. A null header value and a tombstone have no NATS form: `publish` refuses them
//!   with `ErrorKind::Unsupported`. The key and
//!   the id travel as `x-message-key` and `x-message-id`. On JetStream `Nats-Msg-Id` is
//!   `<topic>:<id>` for duplicate detection (scoped by topic, so a dead letter that keeps
//!   the id is not a duplicate in a stream shared with its topic). These transport
//!   headers are removed on receipt: a message arrives exactly as it was sent.
//! - Another client's message whose header block the client cannot parse (a line
//!   without a colon, a non-ASCII name, a value that is not UTF-8) arrives without
//!   headers, with a [`Delivery::defect`](broker_core::Delivery::defect) of kind `Codec`;
//!   it costs neither the connection nor any other message (this workspace builds
//!   async-nats with the small fix in `vendor/async-nats`). On JetStream it is
//!   redelivered and bounded by `max_deliver` like any message. A JetStream message
//!   without this crate's id gets `STREAM-SEQUENCE` as its id, stable across
//!   redeliveries; on core NATS such a message gets an id generated on receipt.
//! - Core NATS keeps nothing for a client that is away: after each lost connection, a
//!   core subscription yields one `ErrorKind::Connect` item, before its next message,
//!   saying that messages may have been lost.
//! - `jetstream://` needs nats-server 2.10 or newer, and says so when the server is older.
//! - Core NATS with `message_ids=off` leaves the id off the wire: a message without
//!   user headers and key then goes out as a plain `PUB`, without a header block, which
//!   the client sends and parses several times faster (BENCHMARKS.md), and the receiver
//!   sees an id generated on receipt. Requests (a `reply-to` header) keep their id,
//!   which replies refer to. Meant for high-rate at-most-once streams that need no id
//!   end to end; JetStream always sends the id, for de-duplication.
//! - A header name NATS cannot carry (non-ASCII, whitespace, `:`) fails with
//!   [`ErrorKind::InvalidHeader`](broker_core::ErrorKind::InvalidHeader).
//! - A message carrying the `reply-to` header is published with that subject as its
//!   native NATS reply subject too (core NATS), and a received message with a native
//!   reply subject and no `reply-to` header gets one, so
//!   [`BrokerExt::reply`](broker_core::BrokerExt::reply) answers plain NATS requesters.
//!   [`NatsBroker::request`] is NATS's own request/reply.
//! - Topics whose first token is `_inbox` (any case) are reply inboxes: they always go
//!   over core NATS, also on `jetstream://`.
//!
//! # JetStream streams and consumers
//!
//! - By default each first token of a topic has its own stream, named
//!   `BROKER_<token>` (the prefix is `stream_prefix`), capturing `<token>` and
//!   `<token>.>`. It is created on demand, by the first publish or subscribe that needs
//!   it, so a subscriber to `order.*` is live before anything was published to `order`.
//!   A stream that already captures the subject (made by an operator) is used instead.
//!   A pattern starting with a wildcard (`*.created`, `>`) spans those streams and fails
//!   with [`ErrorKind::Unsupported`](broker_core::ErrorKind::Unsupported); give it a
//!   first token, or use one stream for everything: `?stream=EVENTS&stream_subjects=a.>,b.>`.
//! - `create_streams=off`: the streams must exist; a topic no stream captures fails.
//! - A subscriber with a queue group uses the durable consumer `<group>-<hash of the
//!   pattern>` (one stream holds many topics, and a group may read several patterns).
//!   It outlives the subscription, keeping the group's position. A plain subscriber gets
//!   an ephemeral consumer, deleted when the subscription is dropped.
//! - A consumer has explicit acks, `ack_wait` and `max_deliver` from the options, and
//!   starts where [`SubscribeOptions::start_position`](broker_core::SubscribeOptions::start_position)
//!   says. It is read with pull requests of at most `pull_batch` messages (and never
//!   more than the subscription's `max_in_flight`); messages fetched and not handed out
//!   when the subscription is dropped are NAKed at once, so they go to another member.
//!   That NAK counts as a delivery towards `max_deliver`.
//! - `lag()` on a JetStream subscription asks the server for its consumer's info (one
//!   request); on core NATS it reads the subscription's own buffer. What each counts:
//!   [`broker_core::lag`].
//!
//! # Running on a cluster
//!
//! - Give every node as a seed list, `jetstream://a:4222,b:4222,c:4222` (or
//!   [`NatsOptions::new`] with the same list): connecting succeeds while any one is up,
//!   and the client reconnects to another node when its node goes away.
//! - `replicas=3` (or [`NatsOptions::replicas`]) makes the streams the broker creates R3;
//!   their consumers take the stream's replicas. An R3 stream keeps working while one
//!   node is down; the default, 1, keeps each stream on one node, and it is unavailable
//!   while that node is. Streams an operator made keep their own replicas.
//! - A publish returns `Ok` only once the stream stored the message (on a replicated
//!   stream, a quorum of its replicas). While the stream leader fails over, `publish`
//!   retries with the same `Nats-Msg-Id`, so a retry is not stored twice, for up to
//!   `publish_timeout_ms`; then it fails, and the message may or may not be stored.
//! - `publish_batch` sends every message before awaiting any ack, with at most 256 acks
//!   awaited at once; a message whose ack does not come is sent again with its
//!   `Nats-Msg-Id` after the others. On core NATS it hands every message to the client,
//!   then flushes once.
//! - A confirmed ack (`confirm_acks=on`, the default) returns `Ok` when the consumer's
//!   leader answered it, which it does once the ack is stored: on a replicated consumer,
//!   once a quorum of its replicas has it. Such a message is not delivered again, also
//!   when the consumer's leader is killed right after. While no node leads the consumer
//!   (the seconds of a failover) an ack reaches nobody: it fails with
//!   [`ErrorKind::Ack`](broker_core::ErrorKind::Ack) and the message comes back, marked
//!   as a redelivery (attempt 2 or more), after `ack_wait`. An ack that times out
//!   (`request_timeout_ms`) may or may not have been stored. With `confirm_acks=off` an
//!   ack lost in a failover is not seen: the message comes back after `ack_wait`.
//! - What bounds a failover: the cluster elects a new stream or consumer leader within
//!   seconds (nats-server's Raft election); a publish or confirmed ack sent to the dead
//!   leader waits `request_timeout_ms` (default 10 s) for its answer before it is
//!   retried or fails, and a pull request sent to it is renewed after `pull_expires_ms`
//!   (2 s). Messages a crashed member had fetched and not acked go to the other members
//!   after `ack_wait_ms` (default 30 s): lower it to take over sooner, keeping it above
//!   the time a handler needs.
//! - Each outage of the connection logs one WARN when it starts and one INFO when it
//!   ends; the reconnect attempts between are counted ([`NatsBroker::outages`]), not
//!   logged.
//!
//! `scripts/nats-cluster.sh start` runs a 3-node cluster on loopback, on which
//! `broker-nats/tests/cluster.rs` kills stream leaders, consumer leaders and members
//! under load.
//!
//! # URLs
//!
//! `nats://[user:password@|token@]host:port[?options]` and
//! `jetstream://…` with the same form. Options (see [`NatsOptions`]):
//! `hosts` (a seed list; `nats://a:4222,b:4223` is the same), `name`, `connect_timeout_ms`, `request_timeout_ms`, `token`, `user`, `password`,
//! `creds` (a `.creds` file), `tls=on`, `tls_ca`, `tls_cert`, `tls_key`,
//! `subscription_capacity`, `message_ids=on|off` (`nats://` only); for `jetstream://`
//! also `stream`, `stream_subjects`, `stream_prefix`, `create_streams=on|off`,
//! `max_deliver`, `ack_wait_ms`, `max_ack_pending`, `replicas`, `storage=file|memory`,
//! `max_age_secs`, `duplicate_window_ms`, `publish_timeout_ms`, `pull_batch`,
//! `pull_expires_ms`, `ephemeral_inactive_ms`, `confirm_acks=on|off`. Secrets never
//! appear in `Debug` output, logs or errors.
//!
//! ```no_run
//! # async fn demo() -> broker_core::Result<()> {
//! use broker_core::{Message, SubscribeOptions};
//!
//! broker_nats::link();
//! let broker = broker_core::connect("jetstream://127.0.0.1:4222?max_deliver=5").await?;
//! let sub = broker.subscribe("order.*", SubscribeOptions::new().queue("billing")).await?;
//! broker.publish("order.created", Message::new("{}")).await?; // stored and acknowledged
//! # drop(sub);
//! broker.close().await
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod batch_publisher;
mod broker;
mod convert;
mod core_subscriber;
mod error;
mod jetstream;
mod jetstream_subscriber;
mod lag;
mod nats_url;
mod options;
mod percent;
mod publisher;

use std::sync::Arc;

use broker_core::{Broker, Result};
use futures::FutureExt;

pub use broker::NatsBroker;
pub use convert::{NATS_MSG_ID, ORDER_HEADER};
pub use error::SlowConsumer;
pub use options::{
    Auth, JETSTREAM_SCHEME, JetStreamOptions, Mode, NatsOptions, SCHEME, Storage, Tls,
};

broker_core::register_backend!(SCHEME, |url| connect_url(url).boxed());
broker_core::register_backend!(JETSTREAM_SCHEME, |url| connect_url(url).boxed());

/// Connects to the broker a `nats://` or `jetstream://` URL names.
pub async fn connect_url(url: url::Url) -> Result<Arc<dyn Broker>> {
    let options = NatsOptions::from_url(&url)?;
    Ok(Arc::new(NatsBroker::connect(options).await?))
}

/// Names this crate so the linker keeps it, and with it the `nats://` and
/// `jetstream://` registrations. Called by the `broker` crate; a binary depending on
/// this crate alone should call it (or `use broker_nats as _;`) once.
pub fn link() {}
