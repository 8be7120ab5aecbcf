//! Fan-out to plain subscribers, and load sharing within queue groups.

use std::collections::HashSet;

use futures::future::join_all;

use super::{must, numbered, publish, subscribe};
use crate::testkit::{Collector, Kit};
use crate::{MessageId, SubscribeOptions};

/// Three plain subscribers each receive all 100 messages.
pub async fn fan_out_to_plain_subscribers(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("fan_out");
    let subscribers: Vec<Collector> =
        join_all((0..3).map(|_| subscribe(&broker, &topic, SubscribeOptions::new())))
            .await
            .into_iter()
            .map(Collector::spawn)
            .collect();
    super::publish_numbered(&broker, &topic, 0..100).await;
    for (n, subscriber) in subscribers.iter().enumerate() {
        let received = subscriber
            .wait_for(
                100,
                kit.features.timeout,
                format!("fan-out: subscriber {n}"),
            )
            .await;
        super::check_duplicates(&kit, &received, "fan-out");
    }
    must(broker.close().await, "close");
}

/// Three members of one queue group share 300 messages (with distinct keys, so
/// partitioned backends spread them): together they get all, no message goes to two
/// members, and every member gets some.
pub async fn queue_group_splits_the_load(kit: Kit) {
    if !kit.features.queue_groups {
        return kit.skip("queue_group_splits_the_load", "queue groups");
    }
    const N: usize = 300;
    let broker = kit.connect().await;
    let topic = kit.topic("group_split");
    let group = format!("kit-group-{}", uuid::Uuid::now_v7().simple());
    let mut members = Vec::new();
    for _ in 0..3 {
        let options = SubscribeOptions::new().queue(group.clone());
        members.push(Collector::spawn(subscribe(&broker, &topic, options).await));
    }
    for seq in 0..N {
        publish(&broker, &topic, numbered(seq).with_key(format!("k{seq}"))).await;
    }

    let union = || {
        members
            .iter()
            .flat_map(Collector::ids)
            .collect::<HashSet<MessageId>>()
    };
    super::wait_until(kit.features.timeout, || union().len() >= N).await;
    let union = union();
    assert_eq!(
        union.len(),
        N,
        "queue group: the members together got {} of {N}",
        union.len()
    );
    let per_member: Vec<usize> = members.iter().map(Collector::unique_count).collect();
    assert_eq!(
        per_member.iter().sum::<usize>(),
        N,
        "queue group: some messages went to more than one member ({per_member:?})"
    );
    assert!(
        per_member.iter().all(|&n| n > 0),
        "queue group: the load was not spread: {per_member:?}"
    );
    must(broker.close().await, "close");
}

/// Two queue groups on one topic each receive all 100 messages, however many members
/// they have.
pub async fn two_groups_each_get_everything(kit: Kit) {
    if !kit.features.queue_groups {
        return kit.skip("two_groups_each_get_everything", "queue groups");
    }
    let broker = kit.connect().await;
    let topic = kit.topic("two_groups");
    let suffix = uuid::Uuid::now_v7().simple();
    let mut a = Vec::new();
    for _ in 0..2 {
        let options = SubscribeOptions::new().queue(format!("kit-a-{suffix}"));
        a.push(Collector::spawn(subscribe(&broker, &topic, options).await));
    }
    let b_options = SubscribeOptions::new().queue(format!("kit-b-{suffix}"));
    let b = Collector::spawn(subscribe(&broker, &topic, b_options).await);
    for seq in 0..100 {
        publish(&broker, &topic, numbered(seq).with_key(format!("k{seq}"))).await;
    }
    b.wait_for(100, kit.features.timeout, "two groups: group b")
        .await;
    let union = || {
        a.iter()
            .flat_map(Collector::ids)
            .collect::<HashSet<MessageId>>()
    };
    super::wait_until(kit.features.timeout, || union().len() >= 100).await;
    assert_eq!(
        union().len(),
        100,
        "two groups: group a got {} of 100",
        union().len()
    );
    must(broker.close().await, "close");
}
