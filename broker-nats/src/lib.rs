//! The NATS backend: core NATS (`nats://`) and JetStream (`jetstream://`), on async-nats.
//!
//! | guarantee | `nats://` (core NATS) | `jetstream://` (JetStream) |
//! |---|---|---|
//! | delivery | at-most-once: a subscriber that is not connected misses the message | at-least-once: `publish` returns once the stream stored the message; it is delivered until acked |
//! | ordering | per publisher (one connection), per subscriber | per publisher, per subscriber, in stream order; a nacked or timed-out message comes back later, out of order |
//! | persistence | none | file streams (survive a server restart); unacked messages come back to the queue group |
//! | redelivery | none: `nack` does nothing | `nack` is a NAK (`Redelivery::After(d)` a NAK with delay); unacked deliveries come back after `ack_wait`; at most `max_deliver` deliveries |
//! | queue groups | native queue subscriptions; a new member sees only new messages | one durable consumer per group and pattern; a new group starts at the earliest retained message, then at the group's position |
//! | attempt | always 1 | the server's delivery count |
//! | ack | nothing to do | `ack()` waits for the server's confirmation (`double_ack`), so a lost ack is an error the caller sees; with `confirm_acks=off` it resolves once the ack is sent, like the raw client's, still at-least-once (a lost ack means a redelivery after `ack_wait`; `conformance_jetstream_unconfirmed` runs the whole kit that way) |
//! | max message | the server's `max_payload`, payload and headers | the same |
//! | reconnect | automatic; publishes made while disconnected are buffered in the client and sent on reconnect (a message in flight at the moment of the failure can be lost) | automatic; an unacknowledged publish is retried with the same `Nats-Msg-Id` until `publish_timeout`, then fails: never `Ok` for a message the stream did not store |
//! | broker restart | the client reconnects and resubscribes; messages published around the restart can be lost, publishing resumes (`reconnect::core_publishing_resumes_after_a_restart`) | file streams and durable consumers survive; no acknowledged publish is lost and queue-group and plain subscribers resume (`reconnect::jetstream_loses_no_acknowledged_message_across_restarts`, `reconnect::jetstream_plain_subscriber_survives_a_restart`); a publish while the server is down fails after `publish_timeout` (`reconnect::jetstream_publish_while_the_server_is_down_fails`) |
//! | consumer crash | what the member had buffered, and what the server routed to it before it noticed, is lost; later messages go to the other members (`reliability::core_queue_member_crash_moves_later_messages_to_the_other`) | nothing is lost: a dropped subscription NAKs what it fetched and did not settle (manual ack: deliveries dropped unsettled are NAKed), so another member gets it at once (`reliability::jetstream_dropped_member_hands_its_unacked_deliveries_to_the_other`); a killed process's unacked deliveries come back after `ack_wait` (`reliability::jetstream_killed_member_process_hands_its_deliveries_to_the_other`) |
//! | slow consumer | a subscription buffers `subscription_capacity` messages (default 65 536); the next ones are dropped, never silently: counted in [`NatsBroker::dropped_messages`], logged with `warn`, and reported to the subscription as an [`ErrorKind::Subscribe`](broker_core::ErrorKind::Subscribe) item whose source is a [`SlowConsumer`] with the count (`reliability::core_slow_consumer_drops_are_reported_and_counted`) | nothing is dropped: messages are pulled only as the subscription takes them, a backlog waits in the stream (`reliability::jetstream_backlog_of_100k_reaches_a_slow_reader_completely`) |
//! | no server at connect | `connect` fails with [`ErrorKind::Connect`](broker_core::ErrorKind::Connect) (refused) or [`ErrorKind::Timeout`](broker_core::ErrorKind::Timeout) (no answer) within `connect_timeout_ms` plus 1 s (`reliability::connect_without_a_server_fails_fast`, `reliability::connect_to_a_silent_server_times_out`) | the same |
//! | TLS | `tls_ca` trusts the server's CA, `tls_cert`/`tls_key` present a client certificate; an untrusted server certificate or a refused client certificate fails with `ErrorKind::Connect`, naming the TLS handshake (`security::tls_works_with_the_ca_and_fails_clearly_without_it`, `security::mutual_tls_needs_the_client_certificate`) | the same |
//! | credentials | token, user and password, `.creds` file; wrong or missing ones fail with [`ErrorKind::Auth`](broker_core::ErrorKind::Auth); secrets never appear in `Debug`, errors or logs (`auth::user_and_password_from_url_and_builder`, `auth::token_from_url_and_builder`, `auth::secrets_stay_out_of_logs`) | the same |
//!
//! The names in parentheses are the tests in `broker-nats/tests/` that show each cell,
//! against real servers started by `scripts/nats.sh` (TLS certificates from
//! `scripts/certs.sh`).
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
//!
//! # URLs
//!
//! `nats://[user:password@|token@]host:port[?options]` and
//! `jetstream://…` with the same form. Options (see [`NatsOptions`]):
//! `name`, `connect_timeout_ms`, `request_timeout_ms`, `token`, `user`, `password`,
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

mod broker;
mod convert;
mod core_subscriber;
mod error;
mod jetstream;
mod jetstream_subscriber;
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
