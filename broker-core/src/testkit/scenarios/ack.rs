//! Acknowledgement: nack and redelivery, manual ack, and what outlives a subscriber.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{
    collect, must, next_delivery, numbered, publish, publish_numbered, subscribe, unique_group,
    wait_until,
};
use crate::testkit::Kit;
use crate::{Broker, MessageId, SubscribeOptions};

/// With manual ack, each of 20 messages is nacked on its first two deliveries and acked
/// on its third; all 20 are acked in the end, each delivered at least three times, and
/// the attempt count (where reported) says 3 at the ack.
pub async fn nack_twice_then_everything_arrives(kit: Kit) {
    if !kit.features.redelivery {
        return kit.skip("nack_twice_then_everything_arrives", "redelivery");
    }
    const N: usize = 20;
    let broker = kit.connect().await;
    let topic = kit.topic("nack_twice");
    let mut subscription = subscribe(&broker, &topic, SubscribeOptions::new().manual_ack()).await;
    publish_numbered(&broker, &topic, 0..N).await;

    let mut deliveries: HashMap<MessageId, u32> = HashMap::new();
    let mut acked = HashSet::new();
    let deadline = tokio::time::Instant::now() + kit.features.timeout;
    while acked.len() < N {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let what = format!("nack twice: {} of {N} acked", acked.len());
        let delivery = next_delivery(&mut subscription, left, what).await;
        let id = delivery.message().id().clone();
        let count = deliveries.entry(id.clone()).or_default();
        *count += 1;
        if *count <= 2 {
            must(delivery.nack().await, "nack");
        } else {
            if let Some(attempt) = delivery.attempt() {
                assert!(
                    attempt >= 3,
                    "nack twice: the third delivery of {id} says attempt {attempt}"
                );
            }
            must(delivery.ack().await, "ack");
            acked.insert(id);
        }
    }
    assert!(deliveries.values().all(|&n| n >= 3));
    must(broker.close().await, "close");
}

/// In one queue group, a member that nacks everything is joined by one that acks, then
/// leaves: the acking member gets all 20 messages.
pub async fn nacking_member_then_acking_member(kit: Kit) {
    if !kit.features.redelivery || !kit.features.queue_groups {
        return kit.skip(
            "nacking_member_then_acking_member",
            "redelivery and queue groups",
        );
    }
    const N: usize = 20;
    let (broker, topic, group, options) = manual_ack_group(&kit, "nack_then_ack").await;
    let mut nacker = subscribe(&broker, &topic, options).await;
    publish_numbered(&broker, &topic, 0..N).await;

    // The nacking member has really refused something before the acking one arrives.
    let first = next_delivery(&mut nacker, kit.features.timeout, "the nacking member").await;
    must(first.nack().await, "nack");
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let nacking = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                item = nacker.next() => match item {
                    Some(Ok(delivery)) => { let _ = delivery.nack().await; }
                    Some(Err(_)) => continue,
                    None => break,
                },
            }
        }
    });

    let acker = collect(&broker, &topic, SubscribeOptions::new().queue(group)).await;
    let _ = stop.send(());
    let _ = nacking.await;
    acker
        .wait_for(N, kit.features.timeout, "nack then ack: the acking member")
        .await;
    must(broker.close().await, "close");
}

/// With manual ack and at most one delivery in flight, the second message waits until the
/// first is acked, then arrives, in order. Both carry the same key: ordering is claimed
/// per key (a Kafka topic spreads keyless messages over its partitions).
pub async fn manual_ack_holds_the_next_message(kit: Kit) {
    if !kit.features.ordering {
        return kit.skip("manual_ack_holds_the_next_message", "ordering");
    }
    let broker = kit.connect().await;
    let topic = kit.topic("manual_ack");
    let options = SubscribeOptions::new().manual_ack().max_in_flight(1);
    let mut subscription = subscribe(&broker, &topic, options).await;
    for seq in 0..2 {
        publish(&broker, &topic, numbered(seq).with_key("manual-ack")).await;
    }

    let first = next_delivery(&mut subscription, kit.features.timeout, "manual ack: first").await;
    assert_eq!(
        super::seq_of(first.message()),
        0,
        "manual ack: the first message"
    );
    let early = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(
        early.is_err(),
        "manual ack: the next message arrived before the first was acked"
    );
    must(first.ack().await, "ack");
    let second = next_delivery(
        &mut subscription,
        kit.features.timeout,
        "manual ack: second",
    )
    .await;
    assert_eq!(
        super::seq_of(second.message()),
        1,
        "manual ack: the second message"
    );
    must(second.ack().await, "ack");
    must(broker.close().await, "close");
}

/// A queue-group member takes a message, never acks it, and drops its subscription; the
/// next member of the group receives all 10 messages, the unacked one included.
pub async fn unacked_messages_come_back_after_drop(kit: Kit) {
    if !kit.features.persistence || !kit.features.queue_groups {
        return kit.skip(
            "unacked_messages_come_back_after_drop",
            "persistence and queue groups",
        );
    }
    let (broker, topic, group, options) = manual_ack_group(&kit, "unacked_return").await;
    let mut first = subscribe(&broker, &topic, options).await;
    publish_numbered(&broker, &topic, 0..10).await;
    let taken = next_delivery(&mut first, kit.features.timeout, "unacked: first member").await;
    let taken_id = taken.message().id().clone();
    drop(first);
    drop(taken);

    let second = collect(&broker, &topic, SubscribeOptions::new().queue(group)).await;
    second
        .wait_for(10, kit.features.timeout, "unacked: the next member")
        .await;
    assert!(
        second.ids().contains(&taken_id),
        "unacked: the unacked message did not come back"
    );
    must(broker.close().await, "close");
}

/// 100 messages are read by one queue-group member after another, each acking 10 and
/// leaving, then a last one reads the rest: together they acked all 100.
pub async fn reopened_subscribers_lose_nothing(kit: Kit) {
    if !kit.features.persistence || !kit.features.queue_groups {
        return kit.skip(
            "reopened_subscribers_lose_nothing",
            "persistence and queue groups",
        );
    }
    const N: usize = 100;
    let (broker, topic, group, options) = manual_ack_group(&kit, "reopened").await;
    let mut acked: HashSet<MessageId> = HashSet::new();
    // The first member subscribes before anything is published, so the group exists.
    let mut first = Some(subscribe(&broker, &topic, options.clone()).await);
    publish_numbered(&broker, &topic, 0..N).await;
    for round in 0..4 {
        let mut subscription = match first.take() {
            Some(subscription) => subscription,
            None => subscribe(&broker, &topic, options.clone()).await,
        };
        for _ in 0..10 {
            let what = format!("reopened: round {round}, {} acked so far", acked.len());
            let delivery = next_delivery(&mut subscription, kit.features.timeout, what).await;
            acked.insert(delivery.message().id().clone());
            must(delivery.ack().await, "ack");
        }
        drop(subscription);
    }
    let last = collect(&broker, &topic, SubscribeOptions::new().queue(group)).await;
    let held = acked.clone();
    let complete = wait_until(kit.features.timeout, || {
        held.union(&last.ids()).count() >= N
    })
    .await;
    acked.extend(last.ids());
    assert!(
        complete && acked.len() == N,
        "reopened: {} of {N} messages were acked",
        acked.len()
    );
    must(broker.close().await, "close");
}

/// Where a scenario on one queue group with manual ack starts: a broker handle, a topic
/// of its own (`scenario` names it), a fresh group, and the options that join the group
/// with manual ack.
async fn manual_ack_group(
    kit: &Kit,
    scenario: &str,
) -> (Arc<dyn Broker>, String, String, SubscribeOptions) {
    let group = unique_group(scenario);
    let options = SubscribeOptions::new().queue(group.clone()).manual_ack();
    (kit.connect().await, kit.topic(scenario), group, options)
}
