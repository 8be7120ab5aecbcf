//! Integration tests against a real Kafka broker (`scripts/kafka.sh start`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::options::StartPosition;
use broker_core::testkit::{next_delivery, publish, publish_all, subscribe, unique_topic};
use broker_core::{
    Broker, BrokerExt, ErrorKind, Event, Handler, HandlerOptions, Headers, Message,
    SubscribeOptions, SubscriberHandle,
};
use broker_kafka::KafkaBroker;

use common::{connect, connect_with, options, wait_until};

const WAIT: Duration = Duration::from_secs(30);

async fn next(sub: &mut broker_core::Subscription) -> broker_core::Delivery {
    next_delivery(sub, WAIT).await
}

/// The next `n` deliveries of `sub`, unsettled.
async fn take(sub: &mut broker_core::Subscription, n: usize) -> Vec<broker_core::Delivery> {
    let mut deliveries = Vec::with_capacity(n);
    for _ in 0..n {
        deliveries.push(next(sub).await);
    }
    deliveries
}

/// Reads `sub`, acking every delivery, until `n` distinct values of `key` arrived.
async fn read_distinct<T: Eq + std::hash::Hash>(
    sub: &mut broker_core::Subscription,
    n: usize,
    key: impl Fn(&broker_core::Delivery) -> T,
) -> HashSet<T> {
    let mut seen = HashSet::new();
    while seen.len() < n {
        let d = next(sub).await;
        seen.insert(key(&d));
        d.ack().await.expect("ack");
    }
    seen
}

/// Publishes messages `0`…`n-1` (payload and id `m<i>`) to `topic`, one after the other.
async fn publish_numbered(broker: &impl Broker, topic: &str, n: usize) {
    let messages = (0..n).map(|i| Message::new(format!("{i}")).with_id(format!("m{i}")));
    publish_all(broker, topic, messages).await;
}

/// A broker making topics of 4 partitions, a topic of its own named after `name`, and a
/// queue group of its own.
async fn four_partitions(name: &str) -> (Arc<KafkaBroker>, String, String) {
    let broker = Arc::new(connect_with(options().partitions(4)).await);
    let topic = unique_topic(name);
    let group = topic.replace('.', "-");
    (broker, topic, group)
}

/// Joins `group` on `topic` with a member that runs `handler` on each message.
async fn join_with_handler<H: Handler>(
    broker: &KafkaBroker,
    topic: &str,
    group: &str,
    handler: H,
) -> SubscriberHandle {
    broker
        .subscribe_with(
            topic,
            SubscribeOptions::new().queue(group),
            HandlerOptions::new(),
            handler,
        )
        .await
        .unwrap_or_else(|e| panic!("a member of {group}: {}", e.display_chain()))
}

/// Publishes `n` messages (ids `m<i>`, keys `k<i>`) to `topic` in the background,
/// pausing `pause_ms` after every `every` messages, so that a test can act mid-stream.
fn spawn_paced_publisher(
    broker: Arc<dyn Broker>,
    topic: String,
    n: usize,
    every: usize,
    pause_ms: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            publish(
                &*broker,
                &topic,
                Message::new("x")
                    .with_id(format!("m{i}"))
                    .with_key(format!("k{i}")),
            )
            .await;
            if i % every == 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_headers_key_and_id() {
    let broker = connect().await;
    let topic = unique_topic("roundtrip");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let mut headers = Headers::new();
    headers.append("Trace", "a");
    headers.append("trace", "b");
    headers.append("Trace", "c");
    headers.append("empty", "");
    let sent = Message::new(vec![0u8, 1, 2, 255])
        .with_headers(headers.clone())
        .with_key("order-7")
        .with_id("id-123");
    publish(&broker, &topic, sent.clone()).await;
    let delivery = next(&mut sub).await;
    assert_eq!(delivery.topic(), topic);
    assert_eq!(delivery.attempt(), Some(1));
    assert!(delivery.partition().is_some());
    assert_eq!(delivery.message(), &sent, "exact round trip");
    assert_eq!(delivery.message().headers(), &headers);
    delivery.ack().await.expect("ack");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_subscriber_starts_at_the_end_and_groups_at_the_beginning() {
    let broker = connect().await;
    let topic = unique_topic("start");
    publish(
        &broker,
        &topic,
        Message::new("before")
            .with_id("before")
            .with_key("same-partition"),
    )
    .await;
    let mut plain = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let mut group = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().queue(topic.replace('.', "-")),
    )
    .await;
    let mut earliest = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().start(StartPosition::Earliest),
    )
    .await;
    publish(
        &broker,
        &topic,
        Message::new("after")
            .with_id("after")
            .with_key("same-partition"),
    )
    .await;
    assert_eq!(next(&mut plain).await.message().id().as_str(), "after");
    assert_eq!(next(&mut group).await.message().id().as_str(), "before");
    assert_eq!(next(&mut group).await.message().id().as_str(), "after");
    assert_eq!(next(&mut earliest).await.message().id().as_str(), "before");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_publishes_in_flight_at_once() {
    let broker = Arc::new(connect().await);
    let topic = unique_topic("inflight");
    let mut sub = subscribe(&*broker, &topic, SubscribeOptions::new()).await;
    let started = Instant::now();
    let publishes = (0..500).map(|i| {
        let broker = broker.clone();
        let topic = topic.clone();
        async move {
            broker
                .publish(
                    &topic,
                    Message::new(format!("{i}")).with_key(format!("k{}", i % 7)),
                )
                .await
        }
    });
    for result in futures::future::join_all(publishes).await {
        result.expect("publish");
    }
    let elapsed = started.elapsed();
    read_distinct(&mut sub, 500, |d| d.message().id().clone()).await;
    // One at a time, 500 acks=all round trips take far longer than this on one node.
    eprintln!("500 concurrent publishes took {elapsed:?}");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_hands_the_record_over_when_called() {
    let broker = connect().await;
    let topic = unique_topic("call-order");
    broker.create_topic(&topic).await.expect("create topic");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    // Started in order 0..20 under one key, awaited in reverse: the records reach the
    // partition in call order, not in the order the futures are first polled.
    let publishes: Vec<_> = (0..20)
        .map(|i| broker.publish(&topic, Message::new(format!("{i}")).with_key("one")))
        .collect();
    for pending in publishes.into_iter().rev() {
        pending.await.expect("publish");
    }
    let mut order = Vec::new();
    for _ in 0..20 {
        let d = next(&mut sub).await;
        order.push(
            std::str::from_utf8(d.message().payload())
                .expect("utf8")
                .parse::<i32>()
                .expect("number"),
        );
        d.ack().await.expect("ack");
    }
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_queue_makes_publishes_wait_not_fail() {
    // Room for two records in librdkafka's queue: most of 200 publishes started at
    // once find it full and wait for room.
    let broker = connect_with(options().set("queue.buffering.max.messages", "2")).await;
    let topic = unique_topic("queue-full");
    broker.create_topic(&topic).await.expect("create topic");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let publishes: Vec<_> = (0..200)
        .map(|i| broker.publish(&topic, Message::new(format!("{i}"))))
        .collect();
    for result in futures::future::join_all(publishes).await {
        result.expect("a publish that waited for room");
    }
    let seen = read_distinct(&mut sub, 200, |d| d.message().payload().clone()).await;
    assert_eq!(seen.len(), 200);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_is_kept() {
    let broker = connect().await;
    let topic = unique_topic("order");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    for i in 0..60 {
        publish(
            &broker,
            &topic,
            Message::new(format!("{i}")).with_key(format!("k{}", i % 3)),
        )
        .await;
    }
    let mut last: BTreeMap<String, i32> = BTreeMap::new();
    for _ in 0..60 {
        let d = next(&mut sub).await;
        let key = d.message().key_str().expect("key").to_owned();
        let n: i32 = std::str::from_utf8(d.message().payload())
            .expect("utf8")
            .parse()
            .expect("number");
        if let Some(prev) = last.insert(key.clone(), n) {
            assert!(n > prev, "key {key}: {n} after {prev}");
        }
        d.ack().await.expect("ack");
    }
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_invalid_are_rejected_before_sending() {
    let broker = connect_with(options().max_message_bytes(1024)).await;
    let topic = unique_topic("limits");
    let err = broker
        .publish(&topic, Message::new(vec![0u8; 2048]))
        .await
        .expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    for bad in ["a..b", "a.*", "a/b", "a b", "ü.x"] {
        let err = broker.publish(bad, Message::new("x")).await.expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
    }
    for bad in ["a.>.b", "a/*", ""] {
        let err = broker
            .subscribe(bad, SubscribeOptions::new())
            .await
            .expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
    }
    assert_eq!(broker.capabilities().max_message_bytes, Some(1024));
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_payload_round_trips() {
    let broker = connect().await;
    let topic = unique_topic("big");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    publish(&broker, &topic, Message::new(payload.clone())).await;
    let d = next(&mut sub).await;
    assert_eq!(d.message().payload().as_ref(), payload.as_slice());
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_find_new_topics_and_read_them_from_the_start() {
    let broker = connect().await;
    let prefix = unique_topic("wild");
    let mut one = subscribe(&broker, &format!("{prefix}.*"), SubscribeOptions::new()).await;
    let mut tail = subscribe(&broker, &format!("{prefix}.>"), SubscribeOptions::new()).await;
    // Topics created after the subscriptions: their first messages must not be lost
    // while the consumers discover them.
    for (topic, payload, id) in [
        (format!("{prefix}.eu"), "1", "eu"),
        (format!("{prefix}.eu.x"), "2", "eu.x"),
        (format!("{prefix}x.eu"), "3", "other"),
    ] {
        publish(&broker, &topic, Message::new(payload).with_id(id)).await;
    }
    let d = next(&mut one).await;
    assert_eq!(
        (d.topic(), d.message().id().as_str()),
        (format!("{prefix}.eu").as_str(), "eu")
    );
    d.ack().await.expect("ack");
    let tail_ids = read_distinct(&mut tail, 2, |d| d.message().id().to_string()).await;
    assert_eq!(
        tail_ids,
        HashSet::from(["eu".to_owned(), "eu.x".to_owned()])
    );
    // Nothing else arrives on `*`: no two-token tail, no sibling prefix.
    publish(
        &broker,
        &format!("{prefix}.us"),
        Message::new("4").with_id("us"),
    )
    .await;
    assert_eq!(next(&mut one).await.message().id().as_str(), "us");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_only_the_nacked_message_with_its_attempt() {
    let broker = connect_with(options().partitions(1)).await;
    let topic = unique_topic("nack");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new().manual_ack()).await;
    publish_numbered(&broker, &topic, 5).await;
    let first = take(&mut sub, 5).await;
    let ids: Vec<String> = first.iter().map(|d| d.message().id().to_string()).collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
    let mut first = first.into_iter();
    first.next().expect("m0").ack().await.expect("ack");
    let nacked = first.next().expect("m1");
    let started = Instant::now();
    nacked
        .nack_after(Duration::from_millis(300))
        .await
        .expect("nack");
    for d in first {
        d.ack().await.expect("ack");
    }
    let again = next(&mut sub).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay is kept"
    );
    assert_eq!(again.message().id().as_str(), "m1");
    assert_eq!(again.attempt(), Some(2));
    again.nack().await.expect("nack again");
    let third = next(&mut sub).await;
    assert_eq!(third.message().id().as_str(), "m1");
    assert_eq!(third.attempt(), Some(3));
    third.ack().await.expect("ack");
    publish(&broker, &topic, Message::new("5").with_id("m5")).await;
    assert_eq!(
        next(&mut sub).await.message().id().as_str(),
        "m5",
        "nothing but the nacked message came back"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_acks_never_commit_past_an_unacked_message() {
    let broker = connect_with(options().partitions(1)).await;
    let topic = unique_topic("commit");
    let group = topic.replace('.', "_");
    publish_numbered(&broker, &topic, 6).await;
    let mut sub = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().queue(&group).manual_ack(),
    )
    .await;
    let mut held = take(&mut sub, 6).await;
    // Ack everything except m2, newest first.
    let m2 = held.remove(2);
    for d in held.into_iter().rev() {
        d.ack().await.expect("ack");
    }
    drop(sub);
    drop(m2); // unsettled under manual ack: a nack, but the subscription is gone
    let mut again = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().queue(&group).manual_ack(),
    )
    .await;
    let first = next(&mut again).await;
    assert_eq!(
        first.message().id().as_str(),
        "m2",
        "m0 and m1 were committed"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_members_share_and_dropping_one_loses_nothing() {
    let (broker, topic, group) = four_partitions("group").await;
    const N: usize = 400;
    let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let handler = |member: usize| {
        let seen = seen.clone();
        move |event: Event| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                seen.lock()
                    .expect("lock")
                    .push((member, event.message().id().to_string()));
                Ok::<_, broker_core::BoxError>(())
            }
        }
    };
    let a = join_with_handler(&broker, &topic, &group, handler(0)).await;
    let b = join_with_handler(&broker, &topic, &group, handler(1)).await;
    let publisher = spawn_paced_publisher(broker.clone(), topic.clone(), N, 50, 50);
    let count = |seen: &Arc<Mutex<Vec<(usize, String)>>>| {
        seen.lock()
            .expect("lock")
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<HashSet<_>>()
            .len()
    };
    wait_until(WAIT, "a third of the stream processed", || {
        count(&seen) >= N / 3
    })
    .await;
    // Member b goes away in the middle of the stream.
    b.shutdown().await.expect("shutdown b");
    publisher.await.expect("publisher");
    wait_until(
        Duration::from_secs(60),
        "every message processed at least once",
        || count(&seen) >= N,
    )
    .await;
    let seen = seen.lock().expect("lock").clone();
    let by_member = |m| seen.iter().filter(|(member, _)| *member == m).count();
    assert!(
        by_member(0) > 0 && by_member(1) > 0,
        "both members worked: {} / {}",
        by_member(0),
        by_member(1)
    );
    let unique: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(unique.len(), N);
    eprintln!(
        "processed {} deliveries for {N} messages ({} redelivered)",
        seen.len(),
        seen.len() - N
    );
    a.shutdown().await.expect("shutdown a");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_scheme_is_registered() {
    broker_kafka::link();
    assert!(broker_core::registry::registered_schemes().contains(&"kafka"));
    let url = format!("kafka://{}?partitions=2", common::brokers());
    let broker = broker_core::connect(&url).await.expect("connect by URL");
    assert_eq!(broker.capabilities().backend, "kafka");
    broker.close().await.expect("close");
    let err = broker_core::connect("kafka://127.0.0.1:1?publish_timeout_ms=oops")
        .await
        .expect_err("bad option");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_loses_nothing() {
    let broker = Arc::new(connect_with(options().partitions(6)).await);
    let topic = unique_topic("slow");
    let mut sub = subscribe(&*broker, &topic, SubscribeOptions::new()).await;
    // More than the consumer thread hands to the stream ahead of the reader.
    const N: usize = 6000;
    let publishes = (0..N).map(|i| {
        let broker = broker.clone();
        let topic = topic.clone();
        async move { broker.publish(&topic, Message::new(format!("{i}"))).await }
    });
    for result in futures::future::join_all(publishes).await {
        result.expect("publish");
    }
    // Nothing was read while publishing, and the reader stalls for longer than the
    // consumer thread waits before it pauses the partitions: the hand-off filled up,
    // the partitions were paused, and they resume as the reader catches up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen = HashSet::new();
    while seen.len() < N {
        let d = next(&mut sub).await;
        seen.insert(d.message().id().clone());
        if seen.len() % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        d.ack().await.expect("ack");
    }
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dropped_with_unacked_deliveries_loses_nothing() {
    let (broker, topic, group) = four_partitions("drop").await;
    const N: usize = 300;
    let done: Arc<Mutex<HashSet<String>>> = Arc::default();
    let a = {
        let done = done.clone();
        let handler = move |event: Event| {
            let done = done.clone();
            async move {
                done.lock()
                    .expect("lock")
                    .insert(event.message().id().to_string());
                Ok::<_, broker_core::BoxError>(())
            }
        };
        join_with_handler(&broker, &topic, &group, handler).await
    };
    let mut b = subscribe(
        &*broker,
        &topic,
        SubscribeOptions::new().queue(&group).manual_ack(),
    )
    .await;
    let publisher = spawn_paced_publisher(broker.clone(), topic.clone(), N, 25, 20);
    // Member b acks every other delivery and holds the rest, then goes away.
    let mut held = Vec::new();
    let mut acked_by_b = 0;
    for i in 0..40 {
        let d = next(&mut b).await;
        if i % 2 == 0 {
            done.lock()
                .expect("lock")
                .insert(d.message().id().to_string());
            d.ack().await.expect("ack");
            acked_by_b += 1;
        } else {
            held.push(d);
        }
    }
    drop(b);
    drop(held);
    publisher.await.expect("publisher");
    wait_until(Duration::from_secs(60), "every message processed", || {
        done.lock().expect("lock").len() >= N
    })
    .await;
    assert_eq!(done.lock().expect("lock").len(), N);
    assert_eq!(acked_by_b, 20);
    a.shutdown().await.expect("shutdown a");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_say_what_is_wrong() {
    let err = broker_kafka::KafkaBroker::connect(
        options()
            .brokers(["127.0.0.1:1"])
            .subscribe_timeout(Duration::from_secs(2)),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Connect, "{}", err.display_chain());
    let err = broker_kafka::KafkaBroker::connect(options().set("no.such.property", "1"))
        .await
        .expect_err("unknown librdkafka property");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(
        err.display_chain().contains("no.such.property"),
        "{}",
        err.display_chain()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_count_survives_a_change_of_owner() {
    let broker = connect().await;
    let topic = unique_topic("attempts");
    let group = topic.replace('.', "-");
    let options = || SubscribeOptions::new().queue(&group).manual_ack();
    let mut first = subscribe(&broker, &topic, options()).await;
    publish(&broker, &topic, Message::new("poison").with_id("p")).await;
    let d = next(&mut first).await;
    assert_eq!(d.attempt(), Some(1));
    d.nack().await.expect("nack");
    let d = next(&mut first).await;
    assert_eq!(d.attempt(), Some(2));
    // The member goes away with the second delivery unsettled: the partition moves on,
    // and its committed offset carries the count.
    drop(d);
    drop(first);
    let mut second = subscribe(&broker, &topic, options()).await;
    let d = next(&mut second).await;
    assert_eq!(d.message().id().as_str(), "p");
    assert_eq!(d.attempt(), Some(3), "the count goes on with the new owner");
    d.ack().await.expect("ack");
    drop(second);
    broker.close().await.expect("close");
}

/// The `_inbox.*` topics the cluster has.
fn inbox_topics() -> HashSet<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", common::brokers())
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| name.starts_with("_inbox."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesters_leave_no_topic_behind() {
    let broker: Arc<dyn Broker> = Arc::new(connect().await);
    let before = inbox_topics();
    let mut inboxes = HashSet::new();
    for _ in 0..3 {
        let requester = broker_core::Requester::new(broker.clone())
            .await
            .expect("requester");
        inboxes.insert(requester.inbox().to_owned());
    }
    assert_eq!(
        inboxes,
        HashSet::from([broker_core::Requester::SHARED_INBOX.to_owned()]),
        "every requester uses the shared inbox"
    );
    let created: Vec<_> = inbox_topics()
        .difference(&before)
        .filter(|name| name.as_str() != broker_core::Requester::SHARED_INBOX)
        .cloned()
        .collect();
    assert!(created.is_empty(), "inbox topics left behind: {created:?}");
    broker.close().await.expect("close");
}

/// What one handler call of [`handlers_overlap_within_one_partition`] saw.
#[derive(Default)]
struct Overlap {
    running: usize,
    most: usize,
    /// Keys being handled now.
    keys: HashSet<String>,
    /// Calls per message id.
    calls: BTreeMap<String, u32>,
    /// The numbers of each key's messages, in the order their handling started.
    order: BTreeMap<String, Vec<usize>>,
    /// Messages that started while another of their key was running.
    overlapping_keys: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_overlap_within_one_partition() {
    const KEYS: usize = 64;
    const N: usize = 8 * KEYS;
    let broker = connect_with(options().partitions(1)).await;
    let topic = unique_topic("one-partition-keys");
    let group = topic.replace('.', "-");
    let messages = (0..N).map(|i| {
        Message::new(format!("{i}"))
            .with_id(format!("m{i}"))
            .with_key(format!("k{}", i % KEYS))
    });
    publish_all(&broker, &topic, messages).await;

    let seen: Arc<Mutex<Overlap>> = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |event: Event| {
            let seen = seen.clone();
            async move {
                let key = event.message().key_str().unwrap_or_default().to_owned();
                let seq: usize = std::str::from_utf8(event.message().payload())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                if let Ok(mut s) = seen.lock() {
                    s.running += 1;
                    s.most = s.most.max(s.running);
                    if !s.keys.insert(key.clone()) {
                        s.overlapping_keys.push(event.message().id().to_string());
                    }
                    *s.calls.entry(event.message().id().to_string()).or_default() += 1;
                    s.order.entry(key.clone()).or_default().push(seq);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Ok(mut s) = seen.lock() {
                    s.running -= 1;
                    s.keys.remove(&key);
                }
                Ok::<(), std::convert::Infallible>(())
            }
        }
    };
    let started = Instant::now();
    let handle = broker
        .subscribe_with(
            &topic,
            SubscribeOptions::new().queue(&group),
            HandlerOptions::new().concurrency(8),
            handler,
        )
        .await
        .unwrap_or_else(|e| panic!("subscribe_with: {}", e.display_chain()));
    let handled = || seen.lock().map(|s| s.calls.len()).unwrap_or(0);
    wait_until(WAIT, "every message handled", || handled() >= N).await;
    let elapsed = started.elapsed();
    handle.shutdown().await.expect("shutdown");

    let seen = seen
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    eprintln!(
        "one partition, {KEYS} keys, concurrency 8, 10 ms handler: at most {} at once, \
         {N} messages in {elapsed:?} (with the group join)",
        seen.most
    );
    assert!(seen.most > 4, "at most {} handlers ran at once", seen.most);
    assert!(
        seen.overlapping_keys.is_empty(),
        "messages started while another of their key ran: {:?}",
        seen.overlapping_keys
    );
    let twice: Vec<_> = seen.calls.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    for (key, seqs) in &seen.order {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "key {key} out of order: {seqs:?}"
        );
        assert_eq!(seqs.len(), N / KEYS, "key {key}");
    }
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_the_handler_is_paused_and_falls_once_it_catches_up() {
    use broker_core::testkit::{gated_handler, wait_for_lag};

    let (broker, topic, group) = four_partitions("lag").await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handle = join_with_handler(&broker, &topic, &group, gated_handler(&gate)).await;
    let lag = handle.lag().await.expect("lag");
    assert_eq!(lag.total, 0, "an empty topic: {lag:?}");
    let partitions = lag.partitions.expect("Kafka reports partitions");
    assert_eq!(partitions.len(), 4, "the member has all 4 partitions");
    assert!(
        partitions.iter().all(|p| p.committed.is_none()),
        "nothing committed yet: {partitions:?}"
    );

    // The handler holds the first message and acks none: every message is behind the
    // group's committed offsets, those handed out included.
    let keyed = |i: usize| Message::new("x").with_key(format!("k{i}"));
    publish_all(&*broker, &topic, (0..20).map(keyed)).await;
    let lag = wait_for_lag(WAIT, 20, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 20, "20 published, none acked: {lag:?}");
    let partitions = lag.partitions.expect("partitions");
    assert_eq!(partitions.iter().map(|p| p.lag).sum::<u64>(), 20);
    assert!(
        partitions.iter().filter(|p| p.lag > 0).count() > 1,
        "20 keys spread over the partitions: {partitions:?}"
    );

    gate.add_permits(20);
    let lag = wait_for_lag(WAIT, 0, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 0, "all handled and committed: {lag:?}");

    // Paused again: only the new messages are behind.
    publish_all(&*broker, &topic, (20..25).map(keyed)).await;
    let lag = wait_for_lag(WAIT, 5, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 5, "5 more published: {lag:?}");
    gate.add_permits(5);
    let lag = wait_for_lag(WAIT, 0, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 0, "caught up again: {lag:?}");
    handle.shutdown().await.expect("shutdown");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_what_was_published_while_no_member_consumed() {
    use broker_core::testkit::wait_for_lag;

    let (broker, topic, group) = four_partitions("lag-away").await;
    let options = || SubscribeOptions::new().queue(&group).manual_ack();
    let mut first = subscribe(&*broker, &topic, options()).await;
    publish_numbered(&*broker, &topic, 3).await;
    for delivery in take(&mut first, 3).await {
        delivery.ack().await.expect("ack");
    }
    let lag = wait_for_lag(WAIT, 0, || first.lag()).await.expect("lag");
    assert_eq!(lag.total, 0, "3 acked and committed: {lag:?}");
    drop(first);

    // Nobody in the group consumes: the next member finds all 7 behind the commits.
    publish_numbered(&*broker, &topic, 7).await;
    let second = subscribe(&*broker, &topic, options()).await;
    let lag = wait_for_lag(WAIT, 7, || second.lag()).await.expect("lag");
    assert_eq!(lag.total, 7, "7 published while nobody consumed: {lag:?}");
    let partitions = lag.partitions.expect("partitions");
    assert!(
        partitions.iter().any(|p| p.committed.is_some()),
        "the first member's commits count: {partitions:?}"
    );
    drop(second);
    broker.close().await.expect("close");
}
