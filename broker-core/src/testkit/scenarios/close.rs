//! Unsubscribing and closing, without losing messages.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;

use super::{
    assert_fails, collect, join_tasks, must, numbered, publish, publish_keyed, publish_numbered,
    subscribe, unique_group,
};
use crate::testkit::Kit;
use crate::{ErrorKind, Message, SubscribeOptions};

/// Ten subscriptions (plain, and in a queue group where claimed) are opened and dropped
/// at the same time; a fresh subscriber then receives all 50 messages, and a fresh group
/// member all of them too.
pub async fn concurrent_subscribe_and_unsubscribe(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("churn");
    let group = unique_group("churn");
    let churn = (0..10).map(|n| {
        let broker = broker.clone();
        let topic = topic.clone();
        let mut options = SubscribeOptions::new();
        if kit.features.queue_groups && n % 2 == 1 {
            options = options.queue(group.clone());
        }
        tokio::spawn(async move {
            let subscription = subscribe(&broker, &topic, options).await;
            drop(subscription);
        })
    });
    join_tasks(churn).await;

    let plain = collect(&broker, &topic, SubscribeOptions::new()).await;
    let member = if kit.features.queue_groups {
        let options = SubscribeOptions::new().queue(group);
        Some(collect(&broker, &topic, options).await)
    } else {
        None
    };
    publish_numbered(&broker, &topic, 0..50).await;
    plain
        .wait_for(50, kit.features.timeout, "churn: the fresh subscriber")
        .await;
    if let Some(member) = member {
        member
            .wait_for(50, kit.features.timeout, "churn: the fresh group member")
            .await;
    }
    must(broker.close().await, "close");
}

/// A dropped subscriber no longer takes messages: after one of two queue-group members
/// is dropped the other gets all 50 messages; a dropped plain subscriber holds nothing
/// up, so publishing many times its buffer still goes through to a live one.
pub async fn unsubscribe_stops_delivery(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("unsubscribe");

    let gone = subscribe(&broker, &topic, SubscribeOptions::new().max_in_flight(1)).await;
    let live = collect(&broker, &topic, SubscribeOptions::new()).await;
    drop(gone);
    const MANY: usize = 3000;
    let publishing = tokio::time::timeout(
        kit.features.timeout,
        publish_numbered(&broker, &topic, 0..MANY),
    )
    .await;
    assert!(
        publishing.is_ok(),
        "unsubscribe: publishing {MANY} messages stalled after a subscriber was dropped"
    );
    live.wait_for(
        MANY,
        kit.features.timeout,
        "unsubscribe: the live subscriber",
    )
    .await;

    if kit.features.queue_groups {
        let topic = kit.topic("unsubscribe_group");
        let group = unique_group("unsub");
        let options = SubscribeOptions::new().queue(group);
        let leaving = subscribe(&broker, &topic, options.clone()).await;
        let staying = collect(&broker, &topic, options).await;
        drop(leaving);
        publish_keyed(&broker, &topic, 0..50).await;
        staying
            .wait_for(
                50,
                kit.features.timeout,
                "unsubscribe: the remaining group member",
            )
            .await;
    }
    must(broker.close().await, "close");
}

/// A broker connected is [`health`](crate::Broker::health)y. After `close`: open streams end, `publish` and `subscribe` fail with `Closed`, and a
/// second `close` is harmless. Another handle's broker is unaffected where handles are
/// independent connections.
pub async fn close_semantics(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("close");
    let mut subscription = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let health = broker.health();
    assert!(health.connected, "close: health before close: {health:?}");
    must(broker.close().await, "close");

    match tokio::time::timeout(kit.features.timeout, async {
        while let Some(item) = subscription.next().await {
            drop(item);
        }
    })
    .await
    {
        Ok(()) => {}
        Err(_) => panic!("close: an open subscription did not end after close"),
    }
    assert_fails(
        broker.publish(&topic, Message::new("late")).await,
        ErrorKind::Closed,
        "close: publish after close",
    );
    assert_fails(
        broker.subscribe(&topic, SubscribeOptions::new()).await,
        ErrorKind::Closed,
        "close: subscribe after close",
    );
    must(broker.close().await, "a second close");
}

/// A publisher publishes 200 messages and closes at once; a subscriber on another handle
/// receives all 200.
pub async fn publish_then_close_loses_nothing(kit: Kit) {
    const N: usize = 200;
    let subscriber = kit.connect().await;
    let topic = kit.topic("publish_close");
    let collector = collect(&subscriber, &topic, SubscribeOptions::new()).await;

    let publisher = kit.connect().await;
    let publishing = (0..N).map(|seq| {
        let publisher = publisher.clone();
        let topic = topic.clone();
        async move { publish(&publisher, &topic, numbered(seq)).await }
    });
    join_all(publishing).await;
    must(publisher.close().await, "close the publisher");

    collector
        .wait_for(
            N,
            Duration::max(kit.features.timeout, Duration::from_secs(5)),
            "publish then close",
        )
        .await;
    let _ = subscriber.close().await;
}
