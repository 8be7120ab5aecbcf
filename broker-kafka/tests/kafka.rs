//! Integration tests against a real Kafka broker (`scripts/kafka.sh start`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::options::StartPosition;
use broker_core::{
    Broker, BrokerExt, ErrorKind, Event, HandlerOptions, Headers, Message, SubscribeOptions,
};
use futures::StreamExt;

use common::{connect, connect_with, options, run, topic, wait_until};

const WAIT: Duration = Duration::from_secs(30);

async fn next(sub: &mut broker_core::Subscription) -> broker_core::Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a delivery within the wait")
        .expect("the stream is open")
        .expect("no error item")
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
            broker
                .publish(
                    &topic,
                    Message::new("x")
                        .with_id(format!("m{i}"))
                        .with_key(format!("k{i}")),
                )
                .await
                .expect("publish");
            if i % every == 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
    })
}

#[test]
fn round_trip_keeps_headers_key_and_id() {
    run(async {
        let broker = connect().await;
        let topic = topic("roundtrip");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        let mut headers = Headers::new();
        headers.append("Trace", "a");
        headers.append("trace", "b");
        headers.append("Trace", "c");
        headers.append("empty", "");
        let sent = Message::new(vec![0u8, 1, 2, 255])
            .with_headers(headers.clone())
            .with_key("order-7")
            .with_id("id-123");
        broker.publish(&topic, sent.clone()).await.expect("publish");
        let delivery = next(&mut sub).await;
        assert_eq!(delivery.topic(), topic);
        assert_eq!(delivery.attempt(), Some(1));
        assert!(delivery.partition().is_some());
        assert_eq!(delivery.message(), &sent, "exact round trip");
        assert_eq!(delivery.message().headers(), &headers);
        delivery.ack().await.expect("ack");
        broker.close().await.expect("close");
    });
}

#[test]
fn plain_subscriber_starts_at_the_end_and_groups_at_the_beginning() {
    run(async {
        let broker = connect().await;
        let topic = topic("start");
        broker
            .publish(
                &topic,
                Message::new("before")
                    .with_id("before")
                    .with_key("same-partition"),
            )
            .await
            .expect("publish before");
        let mut plain = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("plain");
        let mut group = broker
            .subscribe(
                &topic,
                SubscribeOptions::new().queue(topic.replace('.', "-")),
            )
            .await
            .expect("group");
        let mut earliest = broker
            .subscribe(
                &topic,
                SubscribeOptions::new().start(StartPosition::Earliest),
            )
            .await
            .expect("earliest");
        broker
            .publish(
                &topic,
                Message::new("after")
                    .with_id("after")
                    .with_key("same-partition"),
            )
            .await
            .expect("publish after");
        assert_eq!(next(&mut plain).await.message().id().as_str(), "after");
        assert_eq!(next(&mut group).await.message().id().as_str(), "before");
        assert_eq!(next(&mut group).await.message().id().as_str(), "after");
        assert_eq!(next(&mut earliest).await.message().id().as_str(), "before");
        broker.close().await.expect("close");
    });
}

#[test]
fn many_publishes_in_flight_at_once() {
    run(async {
        let broker = Arc::new(connect().await);
        let topic = topic("inflight");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
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
        let mut seen = HashSet::new();
        while seen.len() < 500 {
            let d = next(&mut sub).await;
            seen.insert(d.message().id().clone());
            d.ack().await.expect("ack");
        }
        // One at a time, 500 acks=all round trips take far longer than this on one node.
        eprintln!("500 concurrent publishes took {elapsed:?}");
        broker.close().await.expect("close");
    });
}

#[test]
fn publish_hands_the_record_over_when_called() {
    run(async {
        let broker = connect().await;
        let topic = topic("call-order");
        broker.create_topic(&topic).await.expect("create topic");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        // Started in order 0..20 under one key, awaited in reverse: the records reach the
        // partition in call order, not in the order the futures are first polled.
        let publishes: Vec<_> = (0..20)
            .map(|i| broker.publish(&topic, Message::new(format!("{i}")).with_key("one")))
            .collect();
        for publish in publishes.into_iter().rev() {
            publish.await.expect("publish");
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
    });
}

#[test]
fn a_full_send_queue_makes_publishes_wait_not_fail() {
    run(async {
        // Room for two records in librdkafka's queue: most of 200 publishes started at
        // once find it full and wait for room.
        let broker = connect_with(options().set("queue.buffering.max.messages", "2")).await;
        let topic = topic("queue-full");
        broker.create_topic(&topic).await.expect("create topic");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        let publishes: Vec<_> = (0..200)
            .map(|i| broker.publish(&topic, Message::new(format!("{i}"))))
            .collect();
        for result in futures::future::join_all(publishes).await {
            result.expect("a publish that waited for room");
        }
        let mut seen = HashSet::new();
        while seen.len() < 200 {
            let d = next(&mut sub).await;
            seen.insert(d.message().payload().clone());
            d.ack().await.expect("ack");
        }
        assert_eq!(seen.len(), 200);
        broker.close().await.expect("close");
    });
}

#[test]
fn per_key_order_is_kept() {
    run(async {
        let broker = connect().await;
        let topic = topic("order");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        for i in 0..60 {
            broker
                .publish(
                    &topic,
                    Message::new(format!("{i}")).with_key(format!("k{}", i % 3)),
                )
                .await
                .expect("publish");
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
    });
}

#[test]
fn oversized_and_invalid_are_rejected_before_sending() {
    run(async {
        let broker = connect_with(options().max_message_bytes(1024)).await;
        let topic = topic("limits");
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
    });
}

#[test]
fn a_one_mib_payload_round_trips() {
    run(async {
        let broker = connect().await;
        let topic = topic("big");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        broker
            .publish(&topic, Message::new(payload.clone()))
            .await
            .expect("publish 1 MiB");
        let d = next(&mut sub).await;
        assert_eq!(d.message().payload().as_ref(), payload.as_slice());
        broker.close().await.expect("close");
    });
}

#[test]
fn wildcards_find_new_topics_and_read_them_from_the_start() {
    run(async {
        let broker = connect().await;
        let prefix = topic("wild");
        let mut one = broker
            .subscribe(&format!("{prefix}.*"), SubscribeOptions::new())
            .await
            .expect("subscribe *");
        let mut tail = broker
            .subscribe(&format!("{prefix}.>"), SubscribeOptions::new())
            .await
            .expect("subscribe >");
        // Topics created after the subscriptions: their first messages must not be lost
        // while the consumers discover them.
        broker
            .publish(&format!("{prefix}.eu"), Message::new("1").with_id("eu"))
            .await
            .expect("publish");
        broker
            .publish(&format!("{prefix}.eu.x"), Message::new("2").with_id("eu.x"))
            .await
            .expect("publish");
        broker
            .publish(&format!("{prefix}x.eu"), Message::new("3").with_id("other"))
            .await
            .expect("publish");
        let d = next(&mut one).await;
        assert_eq!(
            (d.topic(), d.message().id().as_str()),
            (format!("{prefix}.eu").as_str(), "eu")
        );
        d.ack().await.expect("ack");
        let mut tail_ids = HashSet::new();
        while tail_ids.len() < 2 {
            let d = next(&mut tail).await;
            tail_ids.insert(d.message().id().to_string());
            d.ack().await.expect("ack");
        }
        assert_eq!(
            tail_ids,
            HashSet::from(["eu".to_owned(), "eu.x".to_owned()])
        );
        // Nothing else arrives on `*`: no two-token tail, no sibling prefix.
        broker
            .publish(&format!("{prefix}.us"), Message::new("4").with_id("us"))
            .await
            .expect("publish");
        assert_eq!(next(&mut one).await.message().id().as_str(), "us");
        broker.close().await.expect("close");
    });
}

#[test]
fn nack_redelivers_only_the_nacked_message_with_its_attempt() {
    run(async {
        let broker = connect_with(options().partitions(1)).await;
        let topic = topic("nack");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new().manual_ack())
            .await
            .expect("subscribe");
        for i in 0..5 {
            broker
                .publish(
                    &topic,
                    Message::new(format!("{i}")).with_id(format!("m{i}")),
                )
                .await
                .expect("publish");
        }
        let mut first = Vec::new();
        for _ in 0..5 {
            first.push(next(&mut sub).await);
        }
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
        broker
            .publish(&topic, Message::new("5").with_id("m5"))
            .await
            .expect("publish");
        assert_eq!(
            next(&mut sub).await.message().id().as_str(),
            "m5",
            "nothing but the nacked message came back"
        );
        broker.close().await.expect("close");
    });
}

#[test]
fn out_of_order_acks_never_commit_past_an_unacked_message() {
    run(async {
        let broker = connect_with(options().partitions(1)).await;
        let topic = topic("commit");
        let group = topic.replace('.', "_");
        for i in 0..6 {
            broker
                .publish(
                    &topic,
                    Message::new(format!("{i}")).with_id(format!("m{i}")),
                )
                .await
                .expect("publish");
        }
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new().queue(&group).manual_ack())
            .await
            .expect("subscribe");
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(next(&mut sub).await);
        }
        // Ack everything except m2, newest first.
        let m2 = held.remove(2);
        for d in held.into_iter().rev() {
            d.ack().await.expect("ack");
        }
        drop(sub);
        drop(m2); // unsettled under manual ack: a nack, but the subscription is gone
        let mut again = broker
            .subscribe(&topic, SubscribeOptions::new().queue(&group).manual_ack())
            .await
            .expect("resubscribe");
        let first = next(&mut again).await;
        assert_eq!(
            first.message().id().as_str(),
            "m2",
            "m0 and m1 were committed"
        );
        broker.close().await.expect("close");
    });
}

#[test]
fn queue_group_members_share_and_dropping_one_loses_nothing() {
    run(async {
        let broker = Arc::new(connect_with(options().partitions(4)).await);
        let topic = topic("group");
        let group = topic.replace('.', "-");
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
        let a = broker
            .subscribe_with(
                &topic,
                SubscribeOptions::new().queue(&group),
                HandlerOptions::new(),
                handler(0),
            )
            .await
            .expect("member a");
        let b = broker
            .subscribe_with(
                &topic,
                SubscribeOptions::new().queue(&group),
                HandlerOptions::new(),
                handler(1),
            )
            .await
            .expect("member b");
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
            let n = count(&seen);
            async move { n >= N / 3 }
        })
        .await;
        // Member b goes away in the middle of the stream.
        b.shutdown().await.expect("shutdown b");
        publisher.await.expect("publisher");
        wait_until(
            Duration::from_secs(60),
            "every message processed at least once",
            || {
                let n = count(&seen);
                async move { n >= N }
            },
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
    });
}

#[test]
fn close_flushes_and_ends_everything() {
    run(async {
        let broker = Arc::new(connect().await);
        let topic = topic("close");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        broker
            .publish(&topic, Message::new("x"))
            .await
            .expect("publish");
        broker.close().await.expect("close");
        let err = broker
            .publish(&topic, Message::new("y"))
            .await
            .expect_err("closed");
        assert_eq!(err.kind(), ErrorKind::Closed);
        let err = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect_err("closed");
        assert_eq!(err.kind(), ErrorKind::Closed);
        let end =
            tokio::time::timeout(WAIT, async { while let Some(_item) = sub.next().await {} }).await;
        assert!(end.is_ok(), "the stream ends after close");
        broker.close().await.expect("closing twice is fine");
    });
}

#[test]
fn the_kafka_scheme_is_registered() {
    run(async {
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
    });
}

#[test]
fn a_reader_that_falls_behind_loses_nothing() {
    run(async {
        let broker = Arc::new(connect_with(options().partitions(6)).await);
        let topic = topic("slow");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
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
    });
}

#[test]
fn a_member_dropped_with_unacked_deliveries_loses_nothing() {
    run(async {
        let broker = Arc::new(connect_with(options().partitions(4)).await);
        let topic = topic("drop");
        let group = topic.replace('.', "-");
        const N: usize = 300;
        let done: Arc<Mutex<HashSet<String>>> = Arc::default();
        let a = {
            let done = done.clone();
            broker
                .subscribe_with(
                    &topic,
                    SubscribeOptions::new().queue(&group),
                    HandlerOptions::new(),
                    move |event: Event| {
                        let done = done.clone();
                        async move {
                            done.lock()
                                .expect("lock")
                                .insert(event.message().id().to_string());
                            Ok::<_, broker_core::BoxError>(())
                        }
                    },
                )
                .await
                .expect("member a")
        };
        let mut b = broker
            .subscribe(&topic, SubscribeOptions::new().queue(&group).manual_ack())
            .await
            .expect("member b");
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
            let n = done.lock().expect("lock").len();
            async move { n >= N }
        })
        .await;
        assert_eq!(done.lock().expect("lock").len(), N);
        assert_eq!(acked_by_b, 20);
        a.shutdown().await.expect("shutdown a");
        broker.close().await.expect("close");
    });
}

#[test]
fn connect_errors_say_what_is_wrong() {
    run(async {
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
    });
}

#[test]
fn the_attempt_count_survives_a_change_of_owner() {
    run(async {
        let broker = connect().await;
        let topic = topic("attempts");
        let group = topic.replace('.', "-");
        let options = || SubscribeOptions::new().queue(&group).manual_ack();
        let mut first = broker
            .subscribe(&topic, options())
            .await
            .expect("first member");
        broker
            .publish(&topic, Message::new("poison").with_id("p"))
            .await
            .expect("publish");
        let d = next(&mut first).await;
        assert_eq!(d.attempt(), Some(1));
        d.nack().await.expect("nack");
        let d = next(&mut first).await;
        assert_eq!(d.attempt(), Some(2));
        // The member goes away with the second delivery unsettled: the partition moves on,
        // and its committed offset carries the count.
        drop(d);
        drop(first);
        let mut second = broker
            .subscribe(&topic, options())
            .await
            .expect("second member");
        let d = next(&mut second).await;
        assert_eq!(d.message().id().as_str(), "p");
        assert_eq!(d.attempt(), Some(3), "the count goes on with the new owner");
        d.ack().await.expect("ack");
        drop(second);
        broker.close().await.expect("close");
    });
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

#[test]
fn requesters_leave_no_topic_behind() {
    run(async {
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
    });
}
