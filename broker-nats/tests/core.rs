//! Core NATS (`nats://`) against a real server: `scripts/nats.sh start`.

mod common;

use std::time::Duration;

use broker_core::{Broker, BrokerExt, ErrorKind, Message, Requester, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

async fn connect() -> NatsBroker {
    connect_with("").await
}

/// Connects with `query` (URL options) added to the server's URL.
async fn connect_with(query: &str) -> NatsBroker {
    let mut url = common::nats_url();
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(query);
    }
    match NatsBroker::connect_url(&url).await {
        Ok(broker) => broker,
        Err(err) => panic!(
            "cannot connect to NATS at {url}: {}\n  start it with: {}",
            err.display_chain(),
            common::START_HINT
        ),
    }
}

/// A framework subscription and a raw client subscription to `topic`, both live.
async fn subscribe_both(
    broker: &NatsBroker,
    topic: &str,
) -> (broker_core::Subscription, async_nats::Subscriber) {
    let sub = broker
        .subscribe(topic, SubscribeOptions::new())
        .await
        .expect("subscribe");
    let raw = broker
        .client()
        .subscribe(topic.to_owned())
        .await
        .expect("raw subscribe");
    broker.client().flush().await.expect("flush");
    (sub, raw)
}

async fn next_native(raw: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, raw.next())
        .await
        .expect("in time")
        .expect("raw message")
}

fn topic(name: &str) -> String {
    format!("nats-test.{name}.{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn registry_knows_both_schemes() {
    broker_nats::link();
    let schemes = broker_core::registry::registered_schemes();
    assert!(
        schemes.contains(&"nats") && schemes.contains(&"jetstream"),
        "{schemes:?}"
    );
    let broker = match broker_core::connect(&common::nats_url()).await {
        Ok(broker) => broker,
        Err(err) => panic!(
            "{}\n  start it with: {}",
            err.display_chain(),
            common::START_HINT
        ),
    };
    assert_eq!(broker.capabilities().backend, "nats");
    broker.close().await.expect("close");
}

#[tokio::test]
async fn headers_round_trip_exactly_and_other_clients_see_native_headers() {
    let broker = connect().await;
    let topic = topic("headers");
    let (mut sub, mut raw) = subscribe_both(&broker, &topic).await;

    let mut message = Message::new("hi")
        .with_id("id-1")
        .with_key("k-1")
        .with_header("Zeta", "1")
        .with_header("alpha", "  spaced  ")
        .with_header("Alpha", "case");
    message.headers_mut().append("Zeta", "2");
    broker
        .publish(&topic, message.clone())
        .await
        .expect("publish");

    let delivery = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    let got = delivery.message();
    assert_eq!(got.id().as_str(), "id-1");
    assert_eq!(got.key_str(), Some("k-1"));
    assert_eq!(got.headers(), message.headers());
    assert_eq!(delivery.attempt(), Some(1));

    let native = next_native(&mut raw).await;
    let headers = native.headers.expect("native headers");
    let zeta: Vec<&str> = headers.get_all("Zeta").map(|v| v.as_str()).collect();
    assert_eq!(zeta, ["1", "2"]);
    assert_eq!(headers.get("Alpha").map(|v| v.as_str()), Some("case"));
    assert_eq!(
        headers.get("x-message-id").map(|v| v.as_str()),
        Some("id-1")
    );
    assert!(
        headers.get("Nats-Msg-Id").is_none(),
        "core NATS sends no Nats-Msg-Id"
    );
    broker.close().await.expect("close");
}

#[tokio::test]
async fn payload_limit_comes_from_the_server() {
    let broker = connect().await;
    let max = broker
        .capabilities()
        .max_message_bytes
        .expect("max_payload known");
    assert_eq!(max, broker.max_payload());
    assert!(
        max >= 8 * 1024 * 1024,
        "scripts/nats.sh sets max_payload 8MB, got {max}"
    );
    let err = broker
        .publish(&topic("big"), Message::new(vec![0u8; max]))
        .await
        .expect_err("too large");
    assert_eq!(
        err.kind(),
        ErrorKind::PayloadTooLarge,
        "{}",
        err.display_chain()
    );
    broker.close().await.expect("close");
}

#[tokio::test]
async fn invalid_subjects_and_headers_are_typed_errors() {
    let broker = connect().await;
    for bad in ["a..b", "a.*", "", "a b"] {
        let err = broker.publish(bad, Message::new("x")).await.expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
    }
    let err = broker
        .subscribe("a.>.b", SubscribeOptions::new())
        .await
        .expect_err("pattern");
    assert_eq!(err.kind(), ErrorKind::InvalidSubject);
    let err = broker
        .publish(&topic("h"), Message::new("x").with_header("bad name", "v"))
        .await
        .expect_err("header name");
    assert_eq!(err.kind(), ErrorKind::InvalidHeader);
    broker.close().await.expect("close");
}

#[tokio::test]
async fn native_request_reply() {
    let broker = connect().await;
    let responder = connect().await;
    let topic = topic("request");
    let answering = answer_requests(&responder, &topic, |request| {
        format!("re: {}", String::from_utf8_lossy(request.payload()))
    })
    .await;

    let reply = broker
        .request(&topic, Message::new("ping"), WAIT)
        .await
        .expect("native request");
    assert_eq!(reply.payload().as_ref(), b"re: ping");

    // broker-core's generic requester: its reply-to header is also the native reply.
    let requester = Requester::new(std::sync::Arc::new(broker.clone()))
        .await
        .expect("requester");
    let reply = requester
        .request(&topic, Message::new("pong"), WAIT)
        .await
        .expect("requester");
    assert_eq!(reply.payload().as_ref(), b"re: pong");

    let err = broker
        .request(&format!("{topic}.nobody"), Message::new("x"), WAIT)
        .await
        .expect_err("no responders");
    assert_eq!(
        err.kind(),
        ErrorKind::NoResponders,
        "{}",
        err.display_chain()
    );

    // A responder that never answers: a timeout.
    let silent_topic = format!("{topic}.silent");
    let _silent = responder
        .subscribe(&silent_topic, SubscribeOptions::new())
        .await
        .expect("silent");
    let err = broker
        .request(&silent_topic, Message::new("x"), Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", err.display_chain());

    answering.abort();
    broker.close().await.expect("close");
    responder.close().await.expect("close");
}

#[tokio::test]
async fn close_ends_streams_and_refuses_work() {
    let broker = connect().await;
    let topic = topic("close");
    let mut sub = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect("subscribe");
    broker.close().await.expect("close");
    let end = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "{end:?}");
    let err = broker
        .publish(&topic, Message::new("x"))
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    let err = broker
        .subscribe(&topic, SubscribeOptions::new())
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    broker.close().await.expect("close twice is fine");
}

#[tokio::test]
async fn wrong_credentials_are_auth_errors_without_secrets() {
    // The shared server has no auth; a private one with a token checks the mapping.
    let port = 14230;
    let err = NatsBroker::connect(
        NatsOptions::new(format!("nats://127.0.0.1:{port}"))
            .token("hunter2")
            .connection_timeout(Duration::from_millis(500)),
    )
    .await
    .expect_err("nothing listens there");
    assert!(
        matches!(err.kind(), ErrorKind::Connect | ErrorKind::Timeout),
        "{}",
        err.display_chain()
    );
    assert!(!err.display_chain().contains("hunter2"));
    let url = format!("{}?token=hunter2", common::nats_url());
    let debug = format!(
        "{:?}",
        NatsOptions::from_url(&url::Url::parse(&url).expect("url")).expect("options")
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test]
async fn with_message_ids_off_plain_messages_carry_no_header_block_and_requests_keep_their_id() {
    let broker = connect_with("message_ids=off").await;
    assert!(!broker.options().message_ids);
    let topic = topic("no-ids");
    let (mut sub, mut raw) = subscribe_both(&broker, &topic).await;

    let plain = Message::new("plain").with_id("id-plain");
    let tagged = Message::new("tagged")
        .with_id("id-tagged")
        .with_header("tenant", "acme");
    for message in [&plain, &tagged] {
        broker
            .publish(&topic, message.clone())
            .await
            .expect("publish");
    }

    let got = next_delivery(&mut sub).await;
    assert_eq!(got.message().payload().as_ref(), b"plain");
    assert_ne!(
        got.message().id().as_str(),
        "id-plain",
        "the id does not travel; the receiver generates one"
    );
    assert!(!got.message().id().as_str().is_empty());
    assert!(got.message().headers().is_empty());
    let got = next_delivery(&mut sub).await;
    assert_eq!(got.message().payload().as_ref(), b"tagged");
    assert_eq!(got.message().headers(), tagged.headers());
    assert_ne!(got.message().id().as_str(), "id-tagged");

    let native = next_native(&mut raw).await;
    assert!(
        native.headers.is_none(),
        "a plain message goes out without a header block: {:?}",
        native.headers
    );
    let native = next_native(&mut raw).await;
    let headers = native.headers.expect("the user header travels");
    assert_eq!(headers.get("tenant").map(|v| v.as_str()), Some("acme"));
    assert!(headers.get("x-message-id").is_none(), "{headers:?}");

    // A request keeps its id, which the generic requester matches the reply by.
    let request_topic = format!("{topic}.request");
    let answering = answer_requests(&broker, &request_topic, |_| "pong".to_owned()).await;
    let requester = Requester::new(std::sync::Arc::new(broker.clone()))
        .await
        .expect("requester");
    let reply = requester
        .request(&request_topic, Message::new("ping"), WAIT)
        .await
        .expect("the reply is matched to the request by its id");
    assert_eq!(reply.payload().as_ref(), b"pong");

    answering.abort();
    broker.close().await.expect("close");
}

/// Subscribes `responder` to `topic` and answers every request with the body `answer`
/// gives, until the returned task is aborted.
async fn answer_requests(
    responder: &NatsBroker,
    topic: &str,
    answer: impl Fn(&Message) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut requests = responder
        .subscribe(topic, SubscribeOptions::new())
        .await
        .expect("subscribe");
    let responder = responder.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = requests.next().await {
            let request = delivery.message().clone();
            responder
                .reply(&request, Message::new(answer(&request)))
                .await
                .expect("reply");
        }
    })
}

async fn next_delivery(sub: &mut broker_core::Subscription) -> broker_core::Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok")
}
