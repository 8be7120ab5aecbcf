//! Fan-out to plain subscribers, and load sharing within queue groups.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;

use super::{collect, must, publish_keyed, unique_group};
use crate::testkit::{Collector, Kit};
use crate::{Broker, MessageId, SubscribeOptions};

/// Three plain subscribers each receive all 100 messages.
pub async fn fan_out_to_plain_subscribers(kit: Kit) {
    let broker = kit.connect().await;
    let topic = kit.topic("fan_out");
    let subscribers =
        join_all((0..3).map(|_| collect(&broker, &topic, SubscribeOptions::new()))).await;
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
    let members = join_group(&broker, &topic, "group", 3).await;
    publish_keyed(&broker, &topic, 0..N).await;

    super::wait_until(kit.features.timeout, || ids_of(&members).len() >= N).await;
    let union = ids_of(&members);
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
    let a = join_group(&broker, &topic, "a", 2).await;
    let b_options = SubscribeOptions::new().queue(unique_group("b"));
    let b = collect(&broker, &topic, b_options).await;
    publish_keyed(&broker, &topic, 0..100).await;
    b.wait_for(100, kit.features.timeout, "two groups: group b")
        .await;
    super::wait_until(kit.features.timeout, || ids_of(&a).len() >= 100).await;
    assert_eq!(
        ids_of(&a).len(),
        100,
        "two groups: group a got {} of 100",
        ids_of(&a).len()
    );
    must(broker.close().await, "close");
}

/// `n` members of a new queue group `kit-<name>-<unique>` on `topic`, joining one after
/// another.
async fn join_group(broker: &Arc<dyn Broker>, topic: &str, name: &str, n: usize) -> Vec<Collector> {
    let options = SubscribeOptions::new().queue(unique_group(name));
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        members.push(collect(broker, topic, options.clone()).await);
    }
    members
}

/// The distinct messages the members of a group received between them.
fn ids_of(members: &[Collector]) -> HashSet<MessageId> {
    members.iter().flat_map(Collector::ids).collect()
}
