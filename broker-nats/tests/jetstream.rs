//! JetStream (`jetstream://`) against a real server: `scripts/nats.sh start`.

mod common;

use std::time::Duration;

use broker_core::delivery::Redelivery;
use broker_core::testkit::{
    connected, expect_error, next_delivery, publish, publish_all, subscribe,
};
use broker_core::{Broker, ErrorKind, Message, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};
use common::js_topic;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(15);

async fn connect_with(query: &str) -> NatsBroker {
    common::connect(&common::jetstream_url(query)).await
}

async fn connect() -> NatsBroker {
    connect_with("?max_age_secs=3600").await
}

async fn next(sub: &mut broker_core::Subscription) -> broker_core::Delivery {
    next_delivery(sub, WAIT).await
}

/// The payload of the next delivery, acked (and the ack confirmed by the server).
async fn next_payload(sub: &mut broker_core::Subscription) -> Vec<u8> {
    let d = next(sub).await;
    let payload = d.message().payload().to_vec();
    d.ack().await.expect("ack (confirmed by the server)");
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscription_before_the_first_publish() {
    let broker = connect().await;
    // A first token nobody used before: its stream does not exist yet.
    let token = common::unique_token("jsfresh");
    let mut sub = broker
        .subscribe(&format!("{token}.*"), SubscribeOptions::new())
        .await
        .expect("subscribe creates the stream");
    for (tail, payload) in [("created", "1"), ("a.b", "no match"), ("deleted", "2")] {
        publish(&broker, &format!("{token}.{tail}"), Message::new(payload)).await;
    }
    let first = next(&mut sub).await;
    assert_eq!(first.topic(), format!("{token}.created"));
    let second = next(&mut sub).await;
    assert_eq!(second.topic(), format!("{token}.deleted"));
    assert_eq!(second.attempt(), Some(1));

    let err = broker
        .subscribe("*.created", SubscribeOptions::new())
        .await
        .expect_err("leading wildcard");
    assert_eq!(
        err.kind(),
        ErrorKind::Unsupported,
        "{}",
        err.display_chain()
    );
    broker.client(); // the escape hatch is there
    common::delete_stream_and_close(&broker, &format!("BROKER_{token}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_with_attempts_and_delay() {
    let broker = connect().await;
    let topic = js_topic("nack");
    let options = SubscribeOptions::new().queue("nackers").manual_ack();
    let mut sub = subscribe(&broker, &topic, options).await;
    publish(&broker, &topic, Message::new("x").with_id("n-1")).await;

    let first = next(&mut sub).await;
    assert_eq!(first.attempt(), Some(1));
    first.nack().await.expect("nack");
    let second = next(&mut sub).await;
    assert_eq!(second.message().id().as_str(), "n-1");
    assert_eq!(second.attempt(), Some(2));
    let nacked_at = tokio::time::Instant::now();
    second
        .nack_with(Redelivery::After(Duration::from_millis(700)))
        .await
        .expect("nack later");
    let third = next(&mut sub).await;
    assert!(
        nacked_at.elapsed() >= Duration::from_millis(600),
        "came back after {:?}",
        nacked_at.elapsed()
    );
    assert_eq!(third.attempt(), Some(3));
    third.ack().await.expect("ack");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_deliver_stops_redelivery() {
    let broker = connect_with("?max_age_secs=3600&max_deliver=2").await;
    let topic = js_topic("max_deliver");
    let options = SubscribeOptions::new().queue("limited").manual_ack();
    let mut sub = subscribe(&broker, &topic, options).await;
    let messages = [
        Message::new("poison").with_id("p"),
        Message::new("fine").with_id("f"),
    ];
    publish_all(&broker, &topic, messages).await;
    let mut poison_attempts = Vec::new();
    let mut fine = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(fine && poison_attempts.len() >= 2) && tokio::time::Instant::now() < deadline {
        let d = next(&mut sub).await;
        if d.message().id().as_str() == "p" {
            poison_attempts.push(d.attempt());
            d.nack().await.expect("nack");
        } else {
            fine = true;
            d.ack().await.expect("ack");
        }
    }
    assert_eq!(poison_attempts, [Some(1), Some(2)]);
    // No third delivery of the poison message.
    let extra = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
    assert!(
        extra.is_err(),
        "delivered again past max_deliver: {extra:?}"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_id_travels_and_duplicates_are_dropped_by_the_stream() {
    let broker = connect().await;
    let topic = js_topic("dedupe");
    let mut raw = broker.client().subscribe(topic.clone()).await.expect("raw");
    broker.client().flush().await.expect("flush");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let message = Message::new("once")
        .with_id("same-id")
        .with_header("h", "v");
    // The duplicate publish is still Ok.
    let messages = [
        message.clone(),
        message.clone(),
        Message::new("next").with_id("other-id"),
    ];
    publish_all(&broker, &topic, messages).await;

    let native = tokio::time::timeout(WAIT, raw.next())
        .await
        .expect("in time")
        .expect("raw");
    let headers = native.headers.expect("headers");
    assert_eq!(
        headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("{topic}:same-id").as_str())
    );

    let first = next(&mut sub).await;
    assert_eq!(first.message().id().as_str(), "same-id");
    assert_eq!(
        first.message().headers(),
        message.headers(),
        "transport headers are stripped"
    );
    let second = next(&mut sub).await;
    assert_eq!(
        second.message().id().as_str(),
        "other-id",
        "the duplicate was stored once"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_publish_is_a_publish_error() {
    // A stream that only takes small messages rejects a larger one.
    let broker = connect().await;
    let token = common::unique_token("jssmall");
    let js = async_nats::jetstream::new(broker.client().clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: format!("SMALL_{token}"),
        subjects: vec![format!("{token}.>")],
        max_message_size: 64,
        ..Default::default()
    })
    .await
    .expect("create a small stream");
    let err = broker
        .publish(&format!("{token}.x"), Message::new(vec![7u8; 1024]))
        .await
        .expect_err("the stream rejects it");
    assert_eq!(err.kind(), ErrorKind::Publish, "{}", err.display_chain());
    common::delete_stream_and_close(&broker, &format!("SMALL_{token}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_streams_a_missing_stream_is_an_error() {
    let broker = connect_with("?create_streams=off").await;
    let token = common::unique_token("jsnone");
    let published = broker
        .publish(&format!("{token}.x"), Message::new("x"))
        .await;
    expect_error(published, &[ErrorKind::InvalidConfig], "no stream");
    let subscribed = broker
        .subscribe(&format!("{token}.*"), SubscribeOptions::new())
        .await;
    expect_error(subscribed, &[ErrorKind::InvalidConfig], "no stream");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_resumes_and_ephemeral_consumers_go_away() {
    let broker = connect().await;
    let topic = js_topic("resume");
    let group = common::unique_token("g");
    // Published before any subscriber: a new group starts at the earliest message.
    publish_all(&broker, &topic, (0..3).map(|i| Message::new(i.to_string()))).await;
    let mut sub = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().queue(group.clone()),
    )
    .await;
    for i in 0..3 {
        assert_eq!(next_payload(&mut sub).await, i.to_string().as_bytes());
    }
    drop(sub);
    publish(&broker, &topic, Message::new("3")).await;
    let mut sub = subscribe(
        &broker,
        &topic,
        SubscribeOptions::new().queue(group.clone()),
    )
    .await;
    let payload = next_payload(&mut sub).await;
    assert_eq!(payload, b"3", "the group resumed where it was");
    drop(sub);

    // An ephemeral consumer is deleted with its subscription.
    let js = async_nats::jetstream::new(broker.client().clone());
    let stream = js.get_stream(common::JS_TEST_STREAM).await.expect("stream");
    let count = || async {
        let mut names = stream.consumer_names();
        let mut n = 0;
        while let Some(Ok(name)) = names.next().await {
            if name.starts_with("eph-") {
                n += 1;
            }
        }
        n
    };
    let plain = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    let with = count().await;
    assert!(with >= 1);
    drop(plain);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut now = count().await;
    while now >= with && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = count().await;
    }
    assert!(
        now < with,
        "the ephemeral consumer is still there ({now} >= {with})"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_builder_connects() {
    let options = NatsOptions::new(common::nats_url())
        .jetstream()
        .name("broker-nats-test")
        .ack_wait(Duration::from_secs(5))
        .max_age(Duration::from_secs(3600));
    let broker = connected(
        NatsBroker::connect(options).await,
        &common::nats_url(),
        common::START_HINT,
    );
    let caps = broker.capabilities();
    assert_eq!(caps.backend, "jetstream");
    assert!(caps.persistence && caps.redelivery && caps.queue_groups);
    assert_eq!(
        caps.delivery,
        broker_core::backend::DeliveryGuarantee::AtLeastOnce
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_is_recreated() {
    let broker = connect().await;
    let topic = js_topic("recreate");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    publish(&broker, &topic, Message::new("1")).await;
    next(&mut sub).await.ack().await.expect("ack");

    let js = async_nats::jetstream::new(broker.client().clone());
    let stream = js.get_stream(common::JS_TEST_STREAM).await.expect("stream");
    let mut consumers = stream.consumers();
    let mut ours = None;
    while let Some(Ok(info)) = consumers.next().await {
        if info.config.filter_subject == topic {
            ours = Some(info.name);
        }
    }
    let name = ours.expect("the subscription's consumer");
    stream
        .delete_consumer(&name)
        .await
        .expect("delete it under the subscription");

    publish(&broker, &topic, Message::new("2")).await;
    let payload = next_payload(&mut sub).await;
    assert_eq!(
        payload, b"2",
        "the recreated consumer resumes after the last message"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_the_handler_is_paused_and_falls_once_it_catches_up() {
    use broker_core::testkit::{gated_handler, wait_for_lag};
    use broker_core::{BrokerExt, HandlerOptions};

    let broker = connect().await;
    let topic = js_topic("lag");
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let handle = broker
        .subscribe_with(
            &topic,
            SubscribeOptions::new().queue(common::unique_token("g")),
            HandlerOptions::new(),
            gated_handler(&gate),
        )
        .await
        .expect("subscribe_with");
    let lag = handle.lag().await.expect("lag");
    assert_eq!((lag.total, lag.unacked), (0, Some(0)), "{lag:?}");

    // Pending or pulled and unacked, every message counts until it is acked.
    publish_all(
        &broker,
        &topic,
        (0..10).map(|i| Message::new(i.to_string())),
    )
    .await;
    let lag = wait_for_lag(WAIT, 10, || handle.lag()).await.expect("lag");
    assert_eq!(lag.total, 10, "10 published, none acked: {lag:?}");
    assert!(
        lag.unacked.is_some_and(|n| (1..=10).contains(&n)),
        "the paused handler holds at least one: {lag:?}"
    );
    assert_eq!(lag.partitions, None);

    gate.add_permits(10);
    let lag = wait_for_lag(WAIT, 0, || handle.lag()).await.expect("lag");
    assert_eq!((lag.total, lag.unacked), (0, Some(0)), "all acked: {lag:?}");
    handle.shutdown().await.expect("shutdown");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_what_was_published_while_no_member_consumed() {
    use broker_core::testkit::wait_for_lag;

    let broker = connect().await;
    let topic = js_topic("lag-away");
    let group = common::unique_token("g");
    let options = || SubscribeOptions::new().queue(group.clone());
    let mut first = subscribe(&broker, &topic, options()).await;
    publish_all(&broker, &topic, (0..3).map(|i| Message::new(i.to_string()))).await;
    for _ in 0..3 {
        next_payload(&mut first).await;
    }
    let lag = wait_for_lag(WAIT, 0, || first.lag()).await.expect("lag");
    assert_eq!(lag.total, 0, "3 acked: {lag:?}");
    drop(first);

    // The group's durable consumer keeps counting while nobody consumes.
    publish_all(
        &broker,
        &topic,
        (3..10).map(|i| Message::new(i.to_string())),
    )
    .await;
    let second = subscribe(&broker, &topic, options()).await;
    let lag = wait_for_lag(WAIT, 7, || second.lag()).await.expect("lag");
    assert_eq!(lag.total, 7, "7 published while nobody consumed: {lag:?}");
    drop(second);
    broker.close().await.expect("close");
}
