//! JetStream (`jetstream://`) against a real server: `scripts/nats.sh start`.

mod common;

use std::time::Duration;

use broker_core::delivery::Redelivery;
use broker_core::{Broker, ErrorKind, Message, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(15);

async fn connect_with(query: &str) -> NatsBroker {
    let url = common::jetstream_url(query);
    match NatsBroker::connect_url(&url).await {
        Ok(broker) => broker,
        Err(err) => panic!(
            "cannot connect to JetStream at {url}: {}\n  start it with: {}",
            err.display_chain(),
            common::START_HINT
        ),
    }
}

async fn connect() -> NatsBroker {
    connect_with("?max_age_secs=3600").await
}

fn topic(name: &str) -> String {
    format!("js-test.{name}.{}", uuid::Uuid::now_v7().simple())
}

async fn next(sub: &mut broker_core::Subscription) -> broker_core::Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn wildcard_subscription_before_the_first_publish() {
    let broker = connect().await;
    // A first token nobody used before: its stream does not exist yet.
    let token = format!("jsfresh{}", uuid::Uuid::now_v7().simple());
    let mut sub = broker
        .subscribe(&format!("{token}.*"), SubscribeOptions::new())
        .await
        .expect("subscribe creates the stream");
    broker
        .publish(&format!("{token}.created"), Message::new("1"))
        .await
        .expect("publish");
    broker
        .publish(&format!("{token}.a.b"), Message::new("no match"))
        .await
        .expect("publish");
    broker
        .publish(&format!("{token}.deleted"), Message::new("2"))
        .await
        .expect("publish");
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
    let js = async_nats::jetstream::new(broker.client().clone());
    js.delete_stream(format!("BROKER_{token}"))
        .await
        .expect("clean up the stream");
    broker.close().await.expect("close");
}

#[tokio::test]
async fn nack_redelivers_with_attempts_and_delay() {
    let broker = connect().await;
    let topic = topic("nack");
    let mut sub = broker
        .subscribe(
            &topic,
            SubscribeOptions::new().queue("nackers").manual_ack(),
        )
        .await
        .expect("subscribe");
    broker
        .publish(&topic, Message::new("x").with_id("n-1"))
        .await
        .expect("publish");

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

#[tokio::test]
async fn max_deliver_stops_redelivery() {
    let broker = connect_with("?max_age_secs=3600&max_deliver=2").await;
    let topic = topic("max_deliver");
    let mut sub = broker
        .subscribe(
            &topic,
            SubscribeOptions::new().queue("limited").manual_ack(),
        )
        .await
        .expect("subscribe");
    broker
        .publish(&topic, Message::new("poison").with_id("p"))
        .await
        .expect("publish");
    broker
        .publish(&topic, Message::new("fine").with_id("f"))
        .await
        .expect("publish");
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

#[tokio::test]
async fn msg_id_travels_and_duplicates_are_dropped_by_the_stream() {
    let broker = connect().await;
    let topic = topic("dedupe");
    let mut raw = broker.client().subscribe(topic.clone()).await.expect("raw");
    broker.client().flush().await.expect("flush");
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect("subscribe");
    let message = Message::new("once")
        .with_id("same-id")
        .with_header("h", "v");
    broker
        .publish(&topic, message.clone())
        .await
        .expect("publish");
    broker
        .publish(&topic, message.clone())
        .await
        .expect("a duplicate publish is still Ok");
    broker
        .publish(&topic, Message::new("next").with_id("other-id"))
        .await
        .expect("publish");

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

#[tokio::test]
async fn rejected_publish_is_a_publish_error() {
    // A stream that only takes small messages rejects a larger one.
    let broker = connect().await;
    let token = format!("jssmall{}", uuid::Uuid::now_v7().simple());
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
    js.delete_stream(format!("SMALL_{token}"))
        .await
        .expect("clean up");
    broker.close().await.expect("close");
}

#[tokio::test]
async fn without_create_streams_a_missing_stream_is_an_error() {
    let broker = connect_with("?create_streams=off").await;
    let token = format!("jsnone{}", uuid::Uuid::now_v7().simple());
    let err = broker
        .publish(&format!("{token}.x"), Message::new("x"))
        .await
        .expect_err("no stream");
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidConfig,
        "{}",
        err.display_chain()
    );
    let err = broker
        .subscribe(&format!("{token}.*"), SubscribeOptions::new())
        .await
        .expect_err("no stream");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    broker.close().await.expect("close");
}

#[tokio::test]
async fn queue_group_resumes_and_ephemeral_consumers_go_away() {
    let broker = connect().await;
    let topic = topic("resume");
    let group = format!("g{}", uuid::Uuid::now_v7().simple());
    // Published before any subscriber: a new group starts at the earliest message.
    for i in 0..3 {
        broker
            .publish(&topic, Message::new(i.to_string()))
            .await
            .expect("publish");
    }
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new().queue(group.clone()))
        .await
        .expect("subscribe");
    for i in 0..3 {
        let d = next(&mut sub).await;
        assert_eq!(d.message().payload().as_ref(), i.to_string().as_bytes());
        d.ack().await.expect("ack (confirmed by the server)");
    }
    drop(sub);
    broker
        .publish(&topic, Message::new("3"))
        .await
        .expect("publish");
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new().queue(group.clone()))
        .await
        .expect("resubscribe");
    let d = next(&mut sub).await;
    assert_eq!(
        d.message().payload().as_ref(),
        b"3",
        "the group resumed where it was"
    );
    d.ack().await.expect("ack");
    drop(sub);

    // An ephemeral consumer is deleted with its subscription.
    let js = async_nats::jetstream::new(broker.client().clone());
    let stream = js.get_stream("BROKER_js-test").await.expect("stream");
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
    let plain = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect("plain");
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

#[tokio::test]
async fn options_builder_connects() {
    let options = NatsOptions::new(common::nats_url())
        .jetstream()
        .name("broker-nats-test")
        .ack_wait(Duration::from_secs(5))
        .max_age(Duration::from_secs(3600));
    let broker = match NatsBroker::connect(options).await {
        Ok(broker) => broker,
        Err(err) => panic!(
            "{}\n  start it with: {}",
            err.display_chain(),
            common::START_HINT
        ),
    };
    let caps = broker.capabilities();
    assert_eq!(caps.backend, "jetstream");
    assert!(caps.persistence && caps.redelivery && caps.queue_groups);
    assert_eq!(
        caps.delivery,
        broker_core::backend::DeliveryGuarantee::AtLeastOnce
    );
    broker.close().await.expect("close");
}

#[tokio::test]
async fn a_deleted_consumer_is_recreated() {
    let broker = connect().await;
    let topic = topic("recreate");
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect("subscribe");
    broker
        .publish(&topic, Message::new("1"))
        .await
        .expect("publish");
    next(&mut sub).await.ack().await.expect("ack");

    let js = async_nats::jetstream::new(broker.client().clone());
    let stream = js.get_stream("BROKER_js-test").await.expect("stream");
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

    broker
        .publish(&topic, Message::new("2"))
        .await
        .expect("publish");
    let d = next(&mut sub).await;
    assert_eq!(
        d.message().payload().as_ref(),
        b"2",
        "the recreated consumer resumes after the last message"
    );
    d.ack().await.expect("ack");
    broker.close().await.expect("close");
}
