//! What broker-memory promises beyond the conformance kit: backpressure, the opt-in drop
//! policy, named buses and URL options.

use std::sync::Arc;
use std::time::Duration;

use broker_core::testkit::{
    assert_stream_ends, expect_delivery, next_delivery, publish, publish_all, subscribe,
};
use broker_core::{Broker, Delivery, ErrorKind, Message, SubscribeOptions, Subscription};
use broker_memory::{MemoryBroker, MemoryOptions, Overflow};
use futures::StreamExt;

/// How long a test waits for a delivery.
const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut Subscription) -> Delivery {
    next_delivery(sub, WAIT).await
}

/// The payload of `delivery`, as text.
fn text(delivery: &Delivery) -> String {
    String::from_utf8_lossy(delivery.message().payload()).into_owned()
}

/// A broker whose subscribers buffer `buffer` messages, and whose publishes wait at
/// most `publish_timeout` for room.
fn bounded(buffer: usize, publish_timeout: Duration) -> MemoryBroker {
    MemoryBroker::with_options(
        MemoryOptions::new()
            .buffer(buffer)
            .publish_timeout(publish_timeout),
    )
}

/// Messages with the payloads `0`…`n-1`.
fn numbered(n: u32) -> impl Iterator<Item = Message> {
    (0..n).map(|i| Message::new(i.to_string()))
}

/// Adds the payloads `sub` delivers to `got` until there are `n` (waiting at most 5 s
/// for each), and returns them in numeric order.
async fn receive_all(sub: &mut Subscription, mut got: Vec<String>, n: usize) -> Vec<String> {
    while got.len() < n {
        let what = format!("only {} of {n} were delivered", got.len());
        got.push(text(&expect_delivery(sub, WAIT, what).await));
    }
    got.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_publish_wait_then_time_out_without_dropping() {
    let broker = bounded(2, Duration::from_millis(200));
    let mut sub = subscribe(&broker, "bp.topic", SubscribeOptions::new()).await;
    publish(&broker, "bp.topic", Message::new("1")).await;
    publish(&broker, "bp.topic", Message::new("2")).await;

    // The buffer is full: the third publish waits, and gets through once there is room.
    let waiting = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.publish("bp.topic", Message::new("3")).await })
    };
    let first = next(&mut sub).await;
    assert_eq!(first.message().payload().as_ref(), b"1");
    first.ack().await.expect("ack");
    waiting
        .await
        .expect("join")
        .expect("the waiting publish got through");

    // The buffer holds 2 and 3 and nobody reads: the wait is bounded and fails with
    // Timeout, so the publisher knows; nothing is dropped silently.
    let err = broker
        .publish("bp.topic", Message::new("4"))
        .await
        .expect_err("a full buffer past the timeout");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(broker.dropped(), 0);
    let mut payloads = Vec::new();
    for _ in 0..2 {
        payloads.push(text(&next(&mut sub).await));
    }
    assert_eq!(payloads, ["2", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_policy_is_opt_in_and_counted() {
    let broker = MemoryBroker::with_options(
        MemoryOptions::new()
            .buffer(1)
            .overflow(Overflow::DropNewest),
    );
    let mut sub = subscribe(&broker, "drop.topic", SubscribeOptions::new()).await;
    // Publishing never waits under DropNewest.
    publish_all(&broker, "drop.topic", numbered(5)).await;
    assert_eq!(
        broker.dropped(),
        4,
        "every message that did not fit is counted"
    );
    let d = next(&mut sub).await;
    assert_eq!(d.message().payload().as_ref(), b"0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_buses_are_shared_by_name_and_separate_from_each_other() {
    broker_memory::link();
    let a1 = broker_core::connect("memory://bus-a").await.expect("a1");
    let a2 = broker_core::connect("memory://bus-a").await.expect("a2");
    let b = broker_core::connect("memory://bus-b").await.expect("b");
    let mut on_a = subscribe(&*a2, "named.x", SubscribeOptions::new()).await;
    let mut on_b = subscribe(&*b, "named.x", SubscribeOptions::new()).await;
    a1.publish("named.x", Message::new("hello"))
        .await
        .expect("publish");
    let d = expect_delivery(&mut on_a, WAIT, "arrives on the same bus").await;
    assert_eq!(d.message().payload().as_ref(), b"hello");
    let other = tokio::time::timeout(Duration::from_millis(100), on_b.next()).await;
    assert!(other.is_err(), "another bus must not see it");
    a1.close().await.expect("close");
    assert!(a2.publish("named.x", Message::new("late")).await.is_err());
    // A closed bus is replaced by a fresh one on the next connect.
    let a3 = broker_core::connect("memory://bus-a").await.expect("a3");
    a3.publish("named.x", Message::new("fresh"))
        .await
        .expect("fresh bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_options_are_read_and_bad_ones_rejected() {
    broker_memory::link();
    let ok =
        broker_core::connect("memory://opts?buffer=8&publish_timeout_ms=50&overflow=drop").await;
    assert!(ok.is_ok(), "{ok:?}");
    for url in [
        "memory://x?buffer=lots",
        "memory://x?overflow=sometimes",
        "memory://x?colour=blue",
    ] {
        let err = broker_core::connect(url).await.expect_err(url);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::with_options(
        MemoryOptions::new().max_message_bytes(1024),
    ));
    let err = broker
        .publish("big.one", Message::new(vec![0u8; 2048]))
        .await
        .expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert_eq!(broker.capabilities().max_message_bytes, Some(1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_that_leaves_hands_its_buffer_to_the_others() {
    let broker = MemoryBroker::new();
    let options = SubscribeOptions::new().queue("workers");
    let leaving = subscribe(&broker, "jobs.run", options.clone()).await;
    let mut staying = subscribe(&broker, "jobs.run", options).await;
    publish_all(&broker, "jobs.run", numbered(10)).await;
    // Round-robin: half of them wait, unread, in the leaving member's buffer.
    drop(leaving);
    let got = receive_all(&mut staying, Vec::new(), 10).await;
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_member_took_ahead_goes_to_the_others_when_it_leaves() {
    // A buffer of 128 lets a member take 4 entries at once, and hand out one of them.
    let broker = MemoryBroker::with_options(MemoryOptions::new().buffer(128));
    let options = SubscribeOptions::new().queue("workers");
    let mut leaving = subscribe(&broker, "jobs.ahead", options.clone()).await;
    let mut staying = subscribe(&broker, "jobs.ahead", options).await;
    publish_all(&broker, "jobs.ahead", numbered(40)).await;
    let first = next(&mut leaving).await;
    let got = vec![text(&first)];
    first.ack().await.expect("ack");
    drop(leaving);
    let got = receive_all(&mut staying, got, 40).await;
    assert_eq!(got, (0..40).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_holds_its_buffer_unread_and_little_more_while_reading() {
    // A buffer of 64: 64 wait unread; a reading member may take 2 at once and hand
    // out one, so it holds one more.
    let broker = bounded(64, Duration::from_millis(200));
    let mut sub = subscribe(&broker, "bound.topic", SubscribeOptions::new()).await;
    let publish = |i: u32| broker.publish("bound.topic", Message::new(i.to_string()));
    for i in 0..64 {
        publish(i)
            .await
            .unwrap_or_else(|err| panic!("publish {i} of the first 64: {err}"));
    }
    let err = publish(64).await.expect_err("a 65th while none was read");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    // One handed out and one taken ahead: room for two more, then the buffer is
    // full again.
    let first = next(&mut sub).await;
    assert_eq!(first.message().payload().as_ref(), b"0");
    first.ack().await.expect("ack");
    publish(64).await.expect("room for one");
    publish(65).await.expect("room for two");
    let err = publish(66).await.expect_err("the buffer is full again");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(broker.dropped(), 0);

    let mut rest = Vec::new();
    for _ in 0..65 {
        rest.push(text(&next(&mut sub).await));
    }
    assert_eq!(rest, (1..=65).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spreads_round_robin() {
    let broker = MemoryBroker::new();
    let options = SubscribeOptions::new().queue("spread");
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(subscribe(&broker, "spread.x", options.clone()).await);
    }
    publish_all(&broker, "spread.x", numbered(9)).await;
    for (n, member) in members.iter_mut().enumerate() {
        for _ in 0..3 {
            let next = tokio::time::timeout(WAIT, member.next()).await;
            assert!(
                matches!(next, Ok(Some(Ok(_)))),
                "member {n} got fewer than 3 of 9"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_streams_even_while_a_publisher_waits_for_room() {
    let broker = bounded(1, Duration::from_secs(60));
    let mut sub = subscribe(&broker, "close.wait", SubscribeOptions::new()).await;
    publish(&broker, "close.wait", Message::new("1")).await;
    let waiting = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.publish("close.wait", Message::new("2")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.close().await.expect("close");
    // The waiting publish gives up at once, not after its 60 s timeout.
    tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the waiting publish returned after close")
        .expect("join")
        .expect("publish");
    // What was buffered is still delivered, then the stream ends.
    let first = expect_delivery(&mut sub, WAIT, "not stuck").await;
    assert_eq!(first.message().payload().as_ref(), b"1");
    first.ack().await.expect("ack");
    assert_stream_ends(&mut sub, WAIT, "no delivery after close").await;
    let err = broker
        .publish("close.wait", Message::new("3"))
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_places_the_message_when_called_and_waits_only_for_room() {
    let broker = MemoryBroker::with_options(MemoryOptions::new().buffer(1));
    let mut sub = subscribe(&broker, "eager.topic", SubscribeOptions::new()).await;

    // Room in the buffer: the message is placed before the future is polled.
    let placed = broker.publish("eager.topic", Message::new("1"));
    drop(placed);
    let first = next(&mut sub).await;
    assert_eq!(first.message().payload().as_ref(), b"1");

    // A full buffer: the future waits for room, and a future dropped unpolled
    // publishes nothing more.
    publish(&broker, "eager.topic", Message::new("2")).await;
    drop(broker.publish("eager.topic", Message::new("3")));
    first.ack().await.expect("ack");
    let second = next(&mut sub).await;
    assert_eq!(second.message().payload().as_ref(), b"2");
    second.ack().await.expect("ack");
    let nothing = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(
        nothing.is_err(),
        "a dropped waiting publish delivered its message"
    );
    // Errors come through the future too.
    let err = broker
        .publish("eager.*", Message::new("x"))
        .await
        .expect_err("a wildcard is not a topic");
    assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{err}");
}

/// The lag of `sub`, or a panic saying why there is none.
async fn lag_of(sub: &Subscription) -> u64 {
    match sub.lag().await {
        Ok(lag) => lag.total,
        Err(err) => panic!("lag: {}", err.display_chain()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_what_waits_in_the_buffer_until_handed_out() {
    let broker = MemoryBroker::new();
    let mut sub = subscribe(&broker, "lag.topic", SubscribeOptions::new()).await;
    assert_eq!(lag_of(&sub).await, 0, "nothing published yet");
    publish_all(&broker, "lag.topic", numbered(100)).await;
    assert_eq!(lag_of(&sub).await, 100, "all wait unread");

    // Those the subscriber took ahead from its buffer still count until handed out.
    for _ in 0..40 {
        next(&mut sub).await.ack().await.expect("ack");
    }
    assert_eq!(lag_of(&sub).await, 60, "40 of 100 handed out");
    for _ in 0..60 {
        next(&mut sub).await.ack().await.expect("ack");
    }
    assert_eq!(lag_of(&sub).await, 0, "all handed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_handler_lets_the_lag_rise_and_it_falls_to_zero_after() {
    use broker_core::testkit::{gated_handler, wait_for_lag};
    use broker_core::{BrokerExt, HandlerOptions};

    let broker = MemoryBroker::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handle = broker
        .subscribe_with(
            "lag.paused",
            SubscribeOptions::new(),
            HandlerOptions::new(),
            gated_handler(&gate),
        )
        .await
        .expect("subscribe_with");
    publish_all(&broker, "lag.paused", numbered(10)).await;
    // The handler holds the first message; the other 9 wait.
    let lag = wait_for_lag(WAIT, 9, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 9, "9 wait behind the paused handler: {lag:?}");
    assert_eq!(lag.partitions, None, "memory has no partitions");

    gate.add_permits(10);
    let lag = wait_for_lag(WAIT, 0, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 0, "the handler caught up: {lag:?}");
    handle.shutdown().await.expect("shutdown");
}

/// The broker is connected until it is closed, and says so through every wrapper.
#[tokio::test]
async fn health_is_connected_until_close() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let observed = broker_core::observe::observed(broker.clone());
    assert!(broker.health().connected);
    assert!(observed.health().connected);
    broker.close().await.expect("close");
    let health = observed.health();
    assert!(!health.connected, "closed, yet {health:?}");
    assert!(
        health.last_error.is_some_and(|e| e.contains("closed")),
        "the reason is given"
    );
}
