//! Messages arrive as they were sent: id, key, headers and payload.

use std::collections::HashMap;

use bytes::Bytes;

use super::{collect, must, publish};
use crate::testkit::Kit;
use crate::{ErrorKind, Message, SubscribeOptions};

/// 100 messages with headers (repeated names, mixed case, in a given order), a key, and an
/// id (set by the publisher for half, generated for the other half) arrive intact.
pub async fn round_trip_headers_key_id(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("round_trip");
    let collector = collect(&broker, &topic, SubscribeOptions::new()).await;

    let mut sent = HashMap::new();
    for i in 0..100 {
        let mut message = Message::new(format!("payload {i}"))
            .with_key(format!("key-{}", i % 7))
            .with_header("Trace-Id", format!("trace-{i}"))
            .with_header("b-tag", "first")
            .with_header("A-Tag", "Mixed Case Value");
        message.headers_mut().append("b-tag", "second");
        message.headers_mut().append("b-tag", "");
        if i % 2 == 0 {
            message = message.with_id(format!("kit-id-{i}"));
        }
        sent.insert(message.id().clone(), message.clone());
        publish(&broker, &topic, message).await;
    }

    let received = super::receive_as_sent(&kit, &collector, &sent, "round trip").await;
    for r in &received {
        assert_eq!(r.topic, topic, "round trip: the concrete topic");
    }
    for i in (0..100).step_by(2) {
        assert!(
            received
                .iter()
                .any(|r| r.message.id().as_str() == format!("kit-id-{i}")),
            "round trip: the publisher-set id kit-id-{i} did not survive"
        );
    }
    must(broker.close().await, "close");
}

/// Empty, binary (every byte value) and 1 MiB payloads arrive byte for byte; a payload
/// over the backend's advertised limit is refused with `PayloadTooLarge`.
pub async fn payload_shapes(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("payloads");
    let collector = collect(&broker, &topic, SubscribeOptions::new()).await;

    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let payloads = [
        ("empty", Bytes::new()),
        ("binary", Bytes::from(binary)),
        ("1 MiB", Bytes::from(large)),
    ];
    let mut ids = HashMap::new();
    for (name, payload) in &payloads {
        let message = Message::new(payload.clone()).with_header("shape", *name);
        ids.insert(message.id().clone(), (*name, payload.clone()));
        publish(&broker, &topic, message).await;
    }
    let received = collector
        .wait_for(payloads.len(), kit.features.timeout, "payload shapes")
        .await;
    for r in &received {
        let (name, payload) = &ids[r.message.id()];
        assert_eq!(
            r.message.payload().len(),
            payload.len(),
            "payload shapes: length of the {name} payload"
        );
        assert!(
            r.message.payload() == payload,
            "payload shapes: the {name} payload changed in transit"
        );
    }

    if let Some(max) = broker.capabilities().max_message_bytes {
        let too_big = Message::new(vec![0u8; max + 1]);
        match broker.publish(&topic, too_big).await {
            Err(err) => assert_eq!(
                err.kind(),
                ErrorKind::PayloadTooLarge,
                "payload shapes: a payload over the {max}-byte limit: {}",
                err.display_chain()
            ),
            Ok(()) => panic!("payload shapes: a payload over the {max}-byte limit was accepted"),
        }
    }
    must(broker.close().await, "close");
}
