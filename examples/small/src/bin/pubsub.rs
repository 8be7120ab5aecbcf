//! Run: `cargo run -p small-examples --bin pubsub`
//!
//! Publish and subscribe: a subscription is a stream of deliveries, and each delivery is
//! acked once handled. On `memory://` by default; another broker through `BROKER_URL` and
//! its feature, e.g. `BROKER_URL=nats://127.0.0.1:4222 cargo run -p small-examples
//! --features nats --bin pubsub`.

use broker::{Message, SubscribeOptions};
use futures::StreamExt;

const GREETINGS: [&str; 3] = ["Ada", "Grace", "Linus"];

#[tokio::main]
async fn main() -> broker::Result<()> {
    let bus = broker::connect_from_env().await?; // BROKER_URL, or memory://

    // Live once `subscribe` returns: what is published from now on reaches it. With
    // manual acks, a delivery dropped without `ack()` is nacked (and comes back where the
    // backend redelivers).
    let options = SubscribeOptions::new().manual_ack();
    let subscription = bus.subscribe("greetings", options).await?;

    for name in GREETINGS {
        let message = Message::new(format!("hello, {name}"))
            .with_key(name) // one key's messages keep their order, even on Kafka
            .with_header("lang", "en");
        bus.publish("greetings", message).await?;
    }

    let mut deliveries = subscription.take(GREETINGS.len());
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let message = delivery.message();
        println!(
            "{}: {} (key {}, lang {})",
            delivery.topic(),
            String::from_utf8_lossy(message.payload()),
            message.key_str().unwrap_or("-"),
            message.headers().get("lang").unwrap_or("-"),
        );
        delivery.ack().await?; // settled: it does not come back
    }

    drop(deliveries); // unsubscribes
    bus.close().await
}
