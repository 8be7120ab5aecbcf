//! Run: `cargo run -p small-examples --bin middleware`
//!
//! A handler with middleware: each try gets 200 ms (`TimeoutLayer`), a failed try is
//! retried twice in-process (`RetryLayer`), and an order that still fails is parked on
//! `order.created.dead` with the error (`DeadLetterLayer`) instead of coming back
//! forever. `BROKER_URL` picks another broker, as in `pubsub`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use broker::headers::names;
use broker::middleware::{DeadLetterLayer, RetryLayer, TimeoutLayer};
use broker::{BoxError, BrokerExt, Event, HandlerExt, HandlerOptions, Message, SubscribeOptions};
use futures::StreamExt;

#[tokio::main]
async fn main() -> broker::Result<()> {
    let bus = broker::connect_from_env().await?;
    let mut dead_letters = bus
        .subscribe("order.created.dead", SubscribeOptions::new())
        .await?;

    let (handled, mut done) = tokio::sync::mpsc::unbounded_channel();
    let slow_tries = Arc::new(AtomicU32::new(0));
    let handle_order = move |event: Event| {
        let (handled, slow_tries) = (handled.clone(), slow_tries.clone());
        async move {
            let order = String::from_utf8_lossy(event.message().payload()).into_owned();
            match order.as_str() {
                "poison" => return Err(BoxError::from("cannot parse the order")),
                // Too slow the first time: the timeout fails that try, the retry succeeds.
                "slow" if slow_tries.fetch_add(1, Ordering::SeqCst) == 0 => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {}
            }
            println!("handled {order}");
            let _ = handled.send(order);
            Ok::<_, BoxError>(()) // Ok acks; Err (after the retries) goes to the dead letters
        }
    };
    // The last layer added is the outermost: dead letter → retry → timeout → handler.
    let handler = handle_order
        .with(TimeoutLayer::new(Duration::from_millis(200)))
        .with(RetryLayer::new(2).backoff(Duration::from_millis(50), 2.0))
        .with(DeadLetterLayer::new(bus.clone(), "order.created.dead").max_attempts(1));

    let options = HandlerOptions::new().concurrency(4); // up to 4 orders at once
    let orders = bus
        .subscribe_with("order.created", SubscribeOptions::new(), options, handler)
        .await?;
    for order in ["ok", "slow", "poison"] {
        bus.publish("order.created", Message::new(order)).await?;
    }

    for _ in 0..2 {
        done.recv().await;
    }
    if let Some(letter) = dead_letters.next().await {
        let letter = letter?;
        let error = letter.message().headers().get(names::DEAD_LETTER_ERROR);
        let payload = String::from_utf8_lossy(letter.message().payload()).into_owned();
        println!("dead letter {payload}: {}", error.unwrap_or("-"));
        letter.ack().await?;
    }

    orders.shutdown().await?; // finishes what is in flight and settles it
    bus.close().await
}
