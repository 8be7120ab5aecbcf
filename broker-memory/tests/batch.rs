//! Batches on broker-memory beyond the conformance kit: a full buffer fails the messages
//! that found no room, by index; a decorator that refuses one message reports it at its
//! index in the caller's batch.

use std::time::Duration;

use broker_core::headers::HeaderValue;
use broker_core::testkit::{failures_of, next_delivery, subscribe};
use broker_core::{Broker, ErrorKind, Message, SubscribeOptions, Subscription};
use broker_memory::{MemoryBroker, MemoryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_fails_the_messages_without_room_and_keeps_the_others() {
    let broker = MemoryBroker::with_options(
        MemoryOptions::new()
            .buffer(2)
            .publish_timeout(Duration::from_millis(100)),
    );
    let mut sub = subscribe(&broker, "batch.full", SubscribeOptions::new()).await;
    let batch = (0..5).map(|i| Message::new(i.to_string())).collect();
    let err = broker
        .publish_batch("batch.full", batch)
        .await
        .expect_err("no room for three of them");
    assert_eq!(
        failures_of(&err),
        [
            (2, ErrorKind::Timeout),
            (3, ErrorKind::Timeout),
            (4, ErrorKind::Timeout)
        ]
    );
    assert_eq!(err.stored().collect::<Vec<_>>(), [0, 1]);
    expect_payloads(&mut sub, &["0", "1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_micro_format_reports_a_message_it_cannot_wrap_at_its_index() {
    broker_memory::link();
    let broker = broker_core::connect("memory://batch-gomicro?format=gomicro")
        .await
        .expect("connect");
    let mut sub = subscribe(broker.as_ref(), "batch.gomicro", SubscribeOptions::new()).await;
    let batch = vec![
        Message::new("first"),
        Message::new("null header").with_header("n", HeaderValue::null()),
        Message::new("third"),
    ];
    let err = broker
        .publish_batch("batch.gomicro", batch)
        .await
        .expect_err("a null header has no go-micro form");
    assert_eq!(failures_of(&err), [(1, ErrorKind::InvalidHeader)], "{err}");
    expect_payloads(&mut sub, &["first", "third"]).await;
    broker.close().await.expect("close");
}

/// The next deliveries on `sub` carry `payloads`, in order.
async fn expect_payloads(sub: &mut Subscription, payloads: &[&str]) {
    for expected in payloads {
        let delivery = next_delivery(sub, Duration::from_secs(5)).await;
        assert_eq!(delivery.message().payload().as_ref(), expected.as_bytes());
    }
}
