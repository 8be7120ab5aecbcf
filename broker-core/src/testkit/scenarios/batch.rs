//! Batches: everything arrives, as sent, in key order; what fails is named by index.

use std::collections::{HashMap, HashSet};

use super::{SEQ, collect, must, numbered, seq_of};
use crate::batch::BatchError;
use crate::testkit::{KeyOrder, Kit, failures_of, first_deliveries};
use crate::{ErrorKind, Message, SubscribeOptions};

/// Messages in the batch of [`batch_arrives_whole_and_in_key_order`].
const BATCH: usize = 200;
/// Keys the batch's messages are spread over.
const KEYS: usize = 8;

/// One `publish_batch` of 200 messages over 8 keys, each with headers (a binary value
/// among them) and a payload of its own size, succeeds; every message arrives byte for
/// byte (payload, key, headers in order), and each key's messages arrive in batch order.
pub async fn batch_arrives_whole_and_in_key_order(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("batch");
    let collector = collect(&broker, &topic, SubscribeOptions::new()).await;

    let batch: Vec<Message> = (0..BATCH)
        .map(|seq| {
            let payload: Vec<u8> = (0..seq * 7).map(|i| (i % 251) as u8).collect();
            let mut message = Message::new(payload)
                .with_key(format!("key-{}", seq % KEYS))
                .with_header(SEQ, seq.to_string())
                .with_header("Batch-Tag", "Mixed Case")
                .with_header("bin", vec![0u8, 0xff, b'\n', seq as u8]);
            message.headers_mut().append("Batch-Tag", "second");
            message
        })
        .collect();
    let sent: HashMap<_, _> = batch.iter().map(|m| (m.id().clone(), m.clone())).collect();
    if let Err(err) = broker.publish_batch(&topic, batch).await {
        panic!("batch: publish_batch failed: {}", describe(&err));
    }

    let received = super::receive_as_sent(&kit, &collector, &sent, "batch").await;
    if kit.features.ordering {
        let mut order = KeyOrder::default();
        for message in first_deliveries(&received) {
            order.next(message.key_str(), seq_of(message), "batch");
        }
    }
    must(broker.close().await, "close");
}

/// A batch whose message 3 is over the backend's size limit reports message 3 alone,
/// with `PayloadTooLarge`, and the other messages arrive; a batch to an invalid topic,
/// and one on a closed broker, report every message, with `InvalidSubject` and `Closed`;
/// an empty batch succeeds.
pub async fn batch_reports_failures_by_index(kit: Kit) {
    const LEN: usize = 10;
    const TOO_BIG: usize = 3;
    let broker = kit.connect().await;
    let topic = kit.topic("batch_failures");
    must(
        broker
            .publish_batch(&topic, Vec::new())
            .await
            .map_err(Into::into),
        "an empty batch",
    );

    if let Some(max) = broker.capabilities().max_message_bytes {
        let collector = collect(&broker, &topic, SubscribeOptions::new()).await;
        let batch: Vec<Message> = (0..LEN)
            .map(|seq| match seq {
                TOO_BIG => Message::new(vec![0u8; max + 1]).with_header(SEQ, seq.to_string()),
                _ => numbered(seq),
            })
            .collect();
        let err = match broker.publish_batch(&topic, batch).await {
            Err(err) => err,
            Ok(()) => panic!("batch failures: a message over the {max}-byte limit was accepted"),
        };
        assert_eq!(
            failures_of(&err),
            [(TOO_BIG, ErrorKind::PayloadTooLarge)],
            "batch failures: only the oversized message fails: {}",
            describe(&err)
        );
        assert_eq!(err.stored().count(), LEN - 1, "batch failures: stored");
        let received = collector
            .wait_for(LEN - 1, kit.features.timeout, "batch failures")
            .await;
        let arrived: HashSet<usize> = received.iter().map(|r| seq_of(&r.message)).collect();
        let expected: HashSet<usize> = (0..LEN).filter(|&seq| seq != TOO_BIG).collect();
        assert_eq!(
            arrived, expected,
            "batch failures: the valid messages arrive"
        );
    }

    let every = |err: &BatchError, kind: ErrorKind, what: &str| {
        let indexes: Vec<usize> = err.failures().iter().map(|f| f.index()).collect();
        assert_eq!(indexes, [0, 1, 2], "{what}: every message fails");
        for failure in err.failures() {
            assert_eq!(failure.error().kind(), kind, "{what}: {}", failure.error());
        }
    };
    let batch = || (0..3).map(numbered).collect::<Vec<_>>();
    match broker.publish_batch("kit..invalid", batch()).await {
        Err(err) => every(&err, ErrorKind::InvalidSubject, "an invalid topic"),
        Ok(()) => panic!("batch failures: a batch to `kit..invalid` was accepted"),
    }
    must(broker.close().await, "close");
    match broker.publish_batch(&topic, batch()).await {
        Err(err) => every(&err, ErrorKind::Closed, "a closed broker"),
        Ok(()) => panic!("batch failures: a batch on a closed broker was accepted"),
    }
}

/// Every failure of `err`, one per line.
fn describe(err: &BatchError) -> String {
    let mut out = err.to_string();
    for failure in err.failures() {
        out.push_str(&format!(
            "\n  message {}: {}",
            failure.index(),
            failure.error().display_chain()
        ));
    }
    out
}
