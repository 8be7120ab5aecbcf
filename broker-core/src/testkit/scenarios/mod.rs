//! The scenarios. Each is an `async fn(Kit)` that panics, saying what went wrong, when the
//! backend falls short; [`conformance_suite!`](crate::conformance_suite) turns each into a
//! `#[test]`.
//!
//! | group | scenarios | needs |
//! |---|---|---|
//! | round trip | [`round_trip_headers_key_id`], [`payload_shapes`] | |
//! | batch | [`batch_arrives_whole_and_in_key_order`], [`batch_reports_failures_by_index`], [`batches_gather_and_settle_together`] | key order checked with ordering |
//! | concurrency | [`concurrent_publishers_and_subscribers`], [`many_topics_stay_isolated`], [`blocked_handler_leaves_the_other_slots_working`] | |
//! | fan-out and groups | [`fan_out_to_plain_subscribers`], [`queue_group_splits_the_load`], [`two_groups_each_get_everything`] | queue groups for the last two |
//! | ordering | [`ordering_of_interleaved_streams`], [`handler_keeps_key_order_and_runs_keys_at_once`] | ordering |
//! | wildcards | [`wildcards_match_and_do_not_match`] | |
//! | ack | [`nack_twice_then_everything_arrives`], [`nacking_member_then_acking_member`], [`manual_ack_holds_the_next_message`], [`unacked_messages_come_back_after_drop`], [`reopened_subscribers_lose_nothing`] | redelivery; queue groups; ordering; persistence |
//! | close | [`concurrent_subscribe_and_unsubscribe`], [`unsubscribe_stops_delivery`], [`close_semantics`], [`publish_then_close_loses_nothing`] | |
//! | restart | [`restart_mid_stream`] | a restart command |
//! | errors | [`invalid_subjects_are_rejected`], [`handler_errors_retry_then_dead_letter`], [`handler_panic_is_survived`], [`undecodable_payload_goes_to_dead_letter`], [`poison_messages_never_loop_hot`], [`graceful_shutdown_loses_nothing`] | |
//! | shutdown deadline | [`shutdown_deadline_cancels_and_redelivers`] | redelivery and queue groups for its second half |
//! | request/reply | [`request_gets_a_reply`], [`request_without_responder_times_out`] | |
//! | observability | [`trace_context_crosses_the_broker`], [`correlation_id_reaches_the_second_hop`], [`metrics_count_what_happened`], [`metrics_sample_consumer_lag`] | consumer lag for the last |
//!
//! Counting is by distinct message id unless the backend claims exactly-once, in which
//! case a duplicate fails the scenario.

mod ack;
mod batch;
mod batch_consume;
mod close;
mod concurrency;
mod errors;
mod groups;
mod observe;
mod ordering;
mod request;
mod restart;
mod round_trip;
mod shutdown;
mod wildcards;

use std::fmt;
use std::sync::Arc;

use futures::future::join_all;
use tokio::task::JoinHandle;

use crate::testkit::Collector;
use crate::{
    Broker, BrokerExt, ErrorKind, Handler, HandlerOptions, Message, Result, SubscribeOptions,
    SubscriberHandle, Subscription,
};

pub use ack::{
    manual_ack_holds_the_next_message, nack_twice_then_everything_arrives,
    nacking_member_then_acking_member, reopened_subscribers_lose_nothing,
    unacked_messages_come_back_after_drop,
};
pub use batch::{batch_arrives_whole_and_in_key_order, batch_reports_failures_by_index};
pub use batch_consume::batches_gather_and_settle_together;
pub use close::{
    close_semantics, concurrent_subscribe_and_unsubscribe, publish_then_close_loses_nothing,
    unsubscribe_stops_delivery,
};
pub use concurrency::{
    blocked_handler_leaves_the_other_slots_working, concurrent_publishers_and_subscribers,
    many_topics_stay_isolated,
};
pub use errors::{
    graceful_shutdown_loses_nothing, handler_errors_retry_then_dead_letter,
    handler_panic_is_survived, invalid_subjects_are_rejected, poison_messages_never_loop_hot,
    undecodable_payload_goes_to_dead_letter,
};
pub use groups::{
    fan_out_to_plain_subscribers, queue_group_splits_the_load, two_groups_each_get_everything,
};
pub use observe::{
    correlation_id_reaches_the_second_hop, metrics_count_what_happened,
    metrics_sample_consumer_lag, trace_context_crosses_the_broker,
};
pub use ordering::{
    handler_keeps_key_order_and_runs_keys_at_once, ordering_of_interleaved_streams,
};
pub use request::{request_gets_a_reply, request_without_responder_times_out};
pub use restart::restart_mid_stream;
pub use round_trip::{payload_shapes, round_trip_headers_key_id};
pub use shutdown::shutdown_deadline_cancels_and_redelivers;
pub use wildcards::wildcards_match_and_do_not_match;

/// The header the scenarios number their messages with.
const SEQ: &str = "kit-seq";

/// Message number `seq`: its payload and its `kit-seq` header both say `seq`.
fn numbered(seq: usize) -> Message {
    Message::new(seq.to_string()).with_header(SEQ, seq.to_string())
}

/// The number a [`numbered`] message carries.
fn seq_of(message: &Message) -> usize {
    message
        .headers()
        .get(SEQ)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("message {} has no `{SEQ}` header", message.id()))
}

/// Panics unless `result` is an error of `kind`; `what` names the call in the message.
fn assert_fails<T>(result: Result<T>, kind: ErrorKind, what: impl fmt::Display) {
    match result {
        Err(err) => assert_eq!(err.kind(), kind, "{what}: {err}"),
        Ok(_) => panic!("{what} succeeded"),
    }
}

/// Unwraps `result`, or panics with `what` and the error's whole chain.
fn must<T>(result: Result<T>, what: impl fmt::Display) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: {}", err.display_chain()),
    }
}

async fn subscribe(
    broker: &Arc<dyn Broker>,
    pattern: &str,
    options: SubscribeOptions,
) -> Subscription {
    must(
        broker.subscribe(pattern, options).await,
        format!("subscribe to `{pattern}`"),
    )
}

/// Subscribes to `pattern` and reads the subscription in the background.
async fn collect(broker: &Arc<dyn Broker>, pattern: &str, options: SubscribeOptions) -> Collector {
    Collector::spawn(subscribe(broker, pattern, options).await)
}

/// Runs `handler` on a plain subscription to `pattern` (see
/// [`BrokerExt::subscribe_with`]).
async fn subscribe_with<H: Handler>(
    broker: &Arc<dyn Broker>,
    pattern: &str,
    handler_options: HandlerOptions,
    handler: H,
) -> SubscriberHandle {
    must(
        broker
            .subscribe_with(pattern, SubscribeOptions::new(), handler_options, handler)
            .await,
        "subscribe_with",
    )
}

/// A queue group no other scenario uses: `kit-<name>-<unique>`.
fn unique_group(name: &str) -> String {
    format!("kit-{name}-{}", uuid::Uuid::now_v7().simple())
}

async fn publish(broker: &Arc<dyn Broker>, topic: &str, message: Message) {
    must(
        broker.publish(topic, message).await,
        format!("publish to `{topic}`"),
    );
}

/// Publishes numbered messages `range` to `topic`, one after another.
async fn publish_numbered(
    broker: &Arc<dyn Broker>,
    topic: &str,
    range: std::ops::Range<usize>,
) -> Vec<Message> {
    let mut sent = Vec::with_capacity(range.len());
    for seq in range {
        let message = numbered(seq);
        sent.push(message.clone());
        publish(broker, topic, message).await;
    }
    sent
}

/// Publishes numbered messages `range` to `topic`, each with its own key (`k<seq>`), so
/// that partitioned backends spread them.
async fn publish_keyed(broker: &Arc<dyn Broker>, topic: &str, range: std::ops::Range<usize>) {
    for seq in range {
        publish(broker, topic, numbered(seq).with_key(format!("k{seq}"))).await;
    }
}

/// Waits for every task of `tasks`; a task that panicked panics the scenario the same way.
async fn join_tasks(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for result in join_all(tasks).await {
        if let Err(err) = result {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

use super::{expect_delivery as next_delivery, wait_until};

/// Panics if a backend claiming exactly-once delivered any id twice.
fn check_duplicates(kit: &super::Kit, received: &[super::Received], what: &str) {
    if !kit.features.exactly_once {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for r in received {
        assert!(
            seen.insert(r.message.id().clone()),
            "{what}: message {} delivered twice by a backend claiming exactly-once",
            r.message.id()
        );
    }
}

/// Waits until every message of `sent` (by id) has arrived at `collector`, and checks
/// that each delivery is one of them with its key, payload and headers (in order, names
/// case-sensitive), and no duplicate where the backend claims exactly-once. Returns
/// every delivery; failures start with `what`.
async fn receive_as_sent(
    kit: &super::Kit,
    collector: &Collector,
    sent: &std::collections::HashMap<crate::MessageId, Message>,
    what: &str,
) -> Vec<super::Received> {
    let received = collector
        .wait_for(sent.len(), kit.features.timeout, what)
        .await;
    check_duplicates(kit, &received, what);
    for r in &received {
        let id = r.message.id();
        let original = sent
            .get(id)
            .unwrap_or_else(|| panic!("{what}: unknown id {id} arrived"));
        assert_eq!(r.message.key(), original.key(), "{what}: the key of {id}");
        assert!(
            r.message.payload() == original.payload(),
            "{what}: the payload of {id} changed in transit"
        );
        let got: Vec<_> = r.message.headers().iter().collect();
        let want: Vec<_> = original.headers().iter().collect();
        assert_eq!(got, want, "{what}: the headers of {id}, in order");
    }
    received
}

/// Waits until each of `collectors` has `n` distinct messages, and returns every delivery
/// of each, in the order of `collectors`; a failure names `what` and the collector's
/// index.
async fn wait_for_each(
    kit: &super::Kit,
    collectors: &[Collector],
    n: usize,
    what: &str,
) -> Vec<Vec<super::Received>> {
    let mut all = Vec::with_capacity(collectors.len());
    for (i, collector) in collectors.iter().enumerate() {
        let what = format!("{what} {i}");
        all.push(collector.wait_for(n, kit.features.timeout, what).await);
    }
    all
}
