//! Run: `cargo run -p small-examples --bin request-reply`
//!
//! Request/reply over publish/subscribe: a responder in the queue group `greeter` answers
//! with `BrokerExt::reply`; a `Requester` sends and waits, up to a timeout. `BROKER_URL`
//! picks another broker, as in `pubsub`.

use std::time::Duration;

use broker::{
    BoxError, BrokerExt, ErrorKind, Event, HandlerOptions, Message, Requester, SubscribeOptions,
};

#[tokio::main]
async fn main() -> broker::Result<()> {
    let bus = broker::connect_from_env().await?;

    let replies = bus.clone();
    let responder = move |event: Event| {
        let replies = replies.clone();
        async move {
            let name = String::from_utf8_lossy(event.message().payload()).into_owned();
            let answer = Message::new(format!("hello, {name}"));
            // To the request's `reply-to` topic, marked with its id.
            replies.reply(event.message(), answer).await?;
            Ok::<_, BoxError>(())
        }
    };
    let options = SubscribeOptions::new().queue("greeter");
    let greeter = bus
        .subscribe_with("greet", options, HandlerOptions::new(), responder)
        .await?;

    let requester = Requester::new(bus.clone()).await?;
    for name in ["Ada", "Grace"] {
        let reply = requester
            .request("greet", Message::new(name), Duration::from_secs(10))
            .await?;
        println!("{name} -> {}", String::from_utf8_lossy(reply.payload()));
    }

    // With the responder gone, a request fails after its timeout.
    greeter.shutdown().await?;
    let late = requester.request("greet", Message::new("Linus"), Duration::from_millis(300));
    match late.await {
        Err(e) if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::NoResponders) => {
            println!("Linus -> nobody answered ({e})");
        }
        Err(e) => return Err(e),
        Ok(reply) => println!("Linus -> unexpected {:?}", reply.payload()),
    }

    drop(requester);
    bus.close().await
}
