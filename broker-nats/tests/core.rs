//! Core NATS (`nats://`) against a real server: `scripts/nats.sh start`.

mod common;

use std::time::Duration;

use broker_core::testkit::{
    assert_stream_ends, connected, expect_error, next_delivery, publish_all, subscribe,
};
use broker_core::{Broker, BrokerExt, ErrorKind, Message, Requester, SubscribeOptions};
use broker_nats::{NatsBroker, NatsOptions};
use common::core_topic;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

async fn connect() -> NatsBroker {
    connect_with("").await
}

/// Connects with `query` (URL options) added to the server's URL.
async fn connect_with(query: &str) -> NatsBroker {
    common::connect(&common::nats_url_with(query)).await
}

/// A framework subscription and a raw client subscription to `topic`, both live.
async fn subscribe_both(
    broker: &NatsBroker,
    topic: &str,
) -> (broker_core::Subscription, async_nats::Subscriber) {
    let sub = subscribe(broker, topic, SubscribeOptions::new()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_knows_both_schemes() {
    broker_nats::link();
    let schemes = broker_core::registry::registered_schemes();
    assert!(
        schemes.contains(&"nats") && schemes.contains(&"jetstream"),
        "{schemes:?}"
    );
    let url = common::nats_url();
    let broker = connected(broker_core::connect(&url).await, &url, common::START_HINT);
    assert_eq!(broker.capabilities().backend, "nats");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_round_trip_exactly_and_other_clients_see_native_headers() {
    let broker = connect().await;
    let topic = core_topic("headers");
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

    let delivery = next_delivery(&mut sub, WAIT).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        .publish(&core_topic("big"), Message::new(vec![0u8; max]))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_subjects_and_headers_are_typed_errors() {
    let broker = connect().await;
    for bad in ["a..b", "a.*", "", "a b"] {
        let err = broker.publish(bad, Message::new("x")).await.expect_err(bad);
        assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
    }
    let subscribed = broker.subscribe("a.>.b", SubscribeOptions::new()).await;
    expect_error(subscribed, &[ErrorKind::InvalidSubject], "pattern");
    let bad_header = Message::new("x").with_header("bad name", "v");
    let published = broker.publish(&core_topic("h"), bad_header).await;
    expect_error(published, &[ErrorKind::InvalidHeader], "header name");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_request_reply() {
    let broker = connect().await;
    let responder = connect().await;
    let topic = core_topic("request");
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
    let reply = request_with_requester(&broker, &topic, "pong").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_auth_errors_without_secrets() {
    // The shared server has no auth; a private one with a token checks the mapping.
    let port = 14230;
    let err = expect_error(
        NatsBroker::connect(
            NatsOptions::new(format!("nats://127.0.0.1:{port}"))
                .token("hunter2")
                .connection_timeout(Duration::from_millis(500)),
        )
        .await,
        &[ErrorKind::Connect, ErrorKind::Timeout],
        "nothing listens there",
    );
    assert!(!err.display_chain().contains("hunter2"));
    let url = format!("{}?token=hunter2", common::nats_url());
    let debug = format!(
        "{:?}",
        NatsOptions::from_url(&url::Url::parse(&url).expect("url")).expect("options")
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_message_ids_off_plain_messages_carry_no_header_block_and_requests_keep_their_id() {
    let broker = connect_with("message_ids=off").await;
    assert!(!broker.options().message_ids);
    let topic = core_topic("no-ids");
    let (mut sub, mut raw) = subscribe_both(&broker, &topic).await;

    let plain = Message::new("plain").with_id("id-plain");
    let tagged = Message::new("tagged")
        .with_id("id-tagged")
        .with_header("tenant", "acme");
    publish_all(&broker, &topic, [plain, tagged.clone()]).await;

    let got = next_delivery(&mut sub, WAIT).await;
    assert_eq!(got.message().payload().as_ref(), b"plain");
    assert_ne!(
        got.message().id().as_str(),
        "id-plain",
        "the id does not travel; the receiver generates one"
    );
    assert!(!got.message().id().as_str().is_empty());
    assert!(got.message().headers().is_empty());
    let got = next_delivery(&mut sub, WAIT).await;
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
    let reply = request_with_requester(&broker, &request_topic, "ping").await;
    assert_eq!(reply.payload().as_ref(), b"pong");

    answering.abort();
    broker.close().await.expect("close");
}

/// Sends a request with the body `body` to `topic` through broker-core's generic
/// [`Requester`] on `broker`, and returns the reply (matched to the request by its id).
async fn request_with_requester(broker: &NatsBroker, topic: &str, body: &str) -> Message {
    let requester = Requester::new(std::sync::Arc::new(broker.clone()))
        .await
        .expect("requester");
    requester
        .request(topic, Message::new(body.to_owned()), WAIT)
        .await
        .unwrap_or_else(|e| panic!("a reply through the requester: {}", e.display_chain()))
}

/// Subscribes `responder` to `topic` and answers every request with the body `answer`
/// gives, until the returned task is aborted.
async fn answer_requests(
    responder: &NatsBroker,
    topic: &str,
    answer: impl Fn(&Message) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut requests = subscribe(responder, topic, SubscribeOptions::new()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_what_waits_in_the_client_side_buffer() {
    use broker_core::testkit::wait_for_lag;

    let broker = connect().await;
    let topic = core_topic("lag");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;
    publish_all(&broker, &topic, (0..5).map(|i| Message::new(i.to_string()))).await;
    let lag = wait_for_lag(WAIT, 5, || sub.lag()).await.expect("lag");
    assert_eq!(lag.total, 5, "5 wait unread: {lag:?}");
    assert_eq!((lag.unacked, lag.partitions), (None, None));
    for _ in 0..5 {
        next_delivery(&mut sub, WAIT).await;
    }
    let lag = sub.lag().await.expect("lag");
    assert_eq!(lag.total, 0, "all handed out: {lag:?}");
    broker.close().await.expect("close");
    assert_stream_ends(&mut sub, WAIT, "the stream ends").await;
    let err = sub.lag().await.expect_err("no lag after close");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}
