//! Batches on broker-memory beyond the conformance kit: a full buffer fails the messages
//! that found no room, by index; a decorator that refuses one message reports it at its
//! index in the caller's batch.

use std::time::Duration;

use broker_core::headers::HeaderValue;
use broker_core::testkit::{next_delivery, subscribe};
use broker_core::{Broker, ErrorKind, Message, SubscribeOptions};
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
    let failed: Vec<(usize, ErrorKind)> = err
        .failures()
        .iter()
        .map(|f| (f.index(), f.error().kind()))
        .collect();
    assert_eq!(
        failed,
        [
            (2, ErrorKind::Timeout),
            (3, ErrorKind::Timeout),
            (4, ErrorKind::Timeout)
        ]
    );
    assert_eq!(err.stored().collect::<Vec<_>>(), [0, 1]);
    for expected in ["0", "1"] {
        let delivery = next_delivery(&mut sub, Duration::from_secs(5)).await;
        assert_eq!(delivery.message().payload().as_ref(), expected.as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_micro_format_reports_a_message_it_cannot_wrap_at_its_index() {
    broker_memory::link();
    let broker = broker_core::connect("memory://batch-gomicro?format=gomicro")
        .await
        .expect("connect");
    let mut sub = broker
        .subscribe("batch.gomicro", SubscribeOptions::new())
        .await
        .expect("subscribe");
    let batch = vec![
        Message::new("first"),
        Message::new("null header").with_header("n", HeaderValue::null()),
        Message::new("third"),
    ];
    let err = broker
        .publish_batch("batch.gomicro", batch)
        .await
        .expect_err("a null header has no go-micro form");
    assert_eq!(err.failures().len(), 1, "{err}");
    assert_eq!(err.failures()[0].index(), 1);
    assert_eq!(err.failures()[0].error().kind(), ErrorKind::InvalidHeader);
    for expected in ["first", "third"] {
        let delivery = next_delivery(&mut sub, Duration::from_secs(5)).await;
        assert_eq!(delivery.message().payload().as_ref(), expected.as_bytes());
    }
    broker.close().await.expect("close");
}
