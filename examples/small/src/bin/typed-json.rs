//! Run: `cargo run -p small-examples --bin typed-json`
//!
//! Typed messages: a `TypedPublisher` encodes `UserCreated` values in JSON (with a
//! `content-type` header), and `typed_handler` decodes them before the handler sees them;
//! a payload that does not decode fails with `ErrorKind::Codec` and is not redelivered.
//! `BROKER_URL` picks another broker, as in `pubsub`.

use broker::codec::Json;
use broker::typed::{TypedEvent, TypedPublisher, typed_handler};
use broker::{BoxError, BrokerExt, HandlerOptions, SubscribeOptions};
use serde::{Deserialize, Serialize};

/// The event, as it travels: `{"id":1,"name":"Ada"}`.
#[derive(Debug, Serialize, Deserialize)]
struct UserCreated {
    id: u64,
    name: String,
}

#[tokio::main]
async fn main() -> broker::Result<()> {
    let bus = broker::connect_from_env().await?;

    let (welcomed, mut done) = tokio::sync::mpsc::unbounded_channel();
    let handler = typed_handler(Json, move |event: TypedEvent<UserCreated>| {
        let welcomed = welcomed.clone();
        async move {
            let user = event.value;
            println!("welcome, {} (user {})", user.name, user.id);
            let _ = welcomed.send(user.id);
            Ok::<_, BoxError>(())
        }
    });
    let options = SubscribeOptions::new();
    let welcome = bus
        .subscribe_with("user.created", options, HandlerOptions::new(), handler)
        .await?;

    let users = TypedPublisher::new(bus.clone(), "user.created", Json)?;
    let new_users = [(1, "Ada"), (2, "Grace")];
    for (id, name) in new_users {
        let name = name.to_owned();
        users.publish(&UserCreated { id, name }).await?;
    }

    for _ in new_users {
        done.recv().await;
    }
    welcome.shutdown().await?;
    bus.close().await
}
