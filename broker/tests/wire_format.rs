//! `?format=go-micro` and `?format=accept` work on any backend's URL: here on memory://,
//! with a native reader on the same bus seeing what goes over the wire.
#![cfg(feature = "memory")]

use broker::{ErrorKind, Message, SubscribeOptions};
use futures::StreamExt;

async fn next(sub: &mut broker::Subscription) -> Message {
    let item = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery in time")
        .expect("open");
    item.expect("a delivery").message().clone()
}

#[tokio::test]
async fn go_micro_envelopes_on_the_wire_native_messages_to_the_handler() {
    let bus = format!("wire-{}", uuid::Uuid::now_v7().simple());
    let go_micro = broker::connect(&format!("memory://{bus}?format=go-micro"))
        .await
        .expect("go-micro format");
    let accepting = broker::connect(&format!("memory://{bus}?format=accept"))
        .await
        .expect("accepting format");
    let native = broker::connect(&format!("memory://{bus}"))
        .await
        .expect("native");
    let mut raw = native
        .subscribe("order.*", SubscribeOptions::new())
        .await
        .expect("raw");
    let mut unwrapped = accepting
        .subscribe("order.*", SubscribeOptions::new())
        .await
        .expect("accepting");

    let sent = Message::new("hello").with_header("trace-id", "t-1");
    go_micro
        .publish("order.created", sent.clone())
        .await
        .expect("publish envelope");
    native
        .publish("order.created", Message::new("plain"))
        .await
        .expect("publish native");

    let wire = next(&mut raw).await;
    let json: serde_json::Value = serde_json::from_slice(wire.payload()).expect("an envelope");
    assert_eq!(json["Body"], "aGVsbG8=");
    assert_eq!(json["Header"]["trace-id"], "t-1");
    assert_eq!(json["Header"]["Micro-Topic"], "order.created");
    let first = next(&mut unwrapped).await;
    assert_eq!(first.payload().as_ref(), b"hello");
    assert_eq!(first.headers().get("trace-id"), Some("t-1"));
    assert_eq!(first.id(), sent.id());
    let second = next(&mut unwrapped).await;
    assert_eq!(
        second.payload().as_ref(),
        b"plain",
        "native messages are accepted too"
    );

    let err = broker::connect("memory://x?format=xml")
        .await
        .expect_err("unknown format");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}
