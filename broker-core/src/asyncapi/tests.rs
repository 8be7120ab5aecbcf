use std::sync::Arc;

use serde_json::json;

use super::AsyncApi;
use crate::backend::Capabilities;
use crate::codec::Json;
use crate::typed::TypedPublisher;
use crate::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions, Subscription};

/// A broker nothing goes through: describing a publisher never publishes.
#[derive(Debug)]
struct NoBroker;

#[async_trait::async_trait]
impl Broker for NoBroker {
    async fn publish(&self, _topic: &str, _message: Message) -> Result<()> {
        Err(Error::closed("NoBroker"))
    }
    async fn subscribe(&self, _pattern: &str, _options: SubscribeOptions) -> Result<Subscription> {
        Err(Error::closed("NoBroker"))
    }
    async fn close(&self) -> Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("none")
    }
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct OrderCreated {
    id: u64,
    lines: Vec<Line>,
}

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
}

mod other {
    /// Another type of the same name, with other fields.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub(super) struct Line {
        pub(super) count: u32,
    }
}

#[test]
fn a_publisher_registers_its_topic_type_and_codec() {
    let broker: Arc<dyn Broker> = Arc::new(NoBroker);
    let publisher: TypedPublisher<OrderCreated, Json> =
        TypedPublisher::new(broker, "order.created", Json).expect("topic");
    let document = AsyncApi::new("orders", "1.0.0")
        .publisher(&publisher)
        .to_json()
        .expect("document");
    assert_eq!(
        document["channels"]["order.created"]["address"],
        "order.created"
    );
    assert_eq!(
        document["operations"]["send.order.created"]["action"],
        "send"
    );
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["OrderCreated"]["properties"]["lines"]["items"]["$ref"],
        "#/components/schemas/Line"
    );
    assert_eq!(schemas["Line"]["properties"]["sku"]["type"], "string");
}

#[test]
fn a_typed_handler_registers_its_type_and_codec() {
    let handler = crate::typed::typed_handler(Json, |_: crate::typed::TypedEvent<Line>| async {
        Ok::<_, crate::BoxError>(())
    });
    let document = AsyncApi::new("lines", "1.0.0")
        .handler("line.>", &handler, Some("packing"))
        .to_json()
        .expect("document");
    let operation = &document["operations"]["receive.line.all.packing"];
    assert_eq!(
        operation["messages"][0]["$ref"],
        "#/channels/line.all/messages/Line"
    );
    assert_eq!(document["channels"]["line.all"]["address"], "line.{rest}");
}

#[test]
fn wildcards_channels_and_groups() {
    let document = AsyncApi::new("orders", "1.0.0")
        .receives::<OrderCreated>("order.*.created", Json, Some("billing"))
        .receives::<OrderCreated>("order.*.created", Json, Some("audit"))
        .to_json()
        .expect("document");
    let channel = &document["channels"]["order.any.created"];
    assert_eq!(channel["address"], "order.{token2}.created");
    assert_eq!(channel["x-pattern"], "order.*.created");
    let operations = document["operations"].as_object().expect("operations");
    let keys: Vec<&String> = operations.keys().collect();
    assert_eq!(
        keys,
        [
            "receive.order.any.created.audit",
            "receive.order.any.created.billing"
        ]
    );
    assert_eq!(
        operations["receive.order.any.created.billing"]["bindings"]["nats"]["queue"],
        "billing"
    );
}

#[test]
fn same_named_types_get_distinct_messages() {
    let document = AsyncApi::new("lines", "1.0.0")
        .publishes::<Line>("line.a", Json)
        .publishes::<other::Line>("line.b", Json)
        .to_json()
        .expect("document");
    let messages = document["components"]["messages"]
        .as_object()
        .expect("messages");
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(
        document["channels"]["line.b"]["messages"]
            .as_object()
            .expect("messages")
            .keys()
            .collect::<Vec<_>>(),
        ["Line_2"]
    );
}

#[test]
fn mistakes_are_reported_by_to_json() {
    let bad_topic = AsyncApi::new("x", "1").publishes::<Line>("line.*", Json);
    assert_eq!(
        bad_topic.to_json().expect_err("a wildcard topic").kind(),
        ErrorKind::InvalidSubject
    );
    let bad_pattern = AsyncApi::new("x", "1").receives::<Line>("line..a", Json, None);
    assert!(bad_pattern.to_json().is_err());
    let lone_reply = AsyncApi::new("x", "1").replies::<Line>(Json);
    assert_eq!(
        lone_reply.to_json().expect_err("no request").kind(),
        ErrorKind::InvalidConfig
    );
    let no_host = AsyncApi::new("x", "1").server_from_url("nats://");
    assert!(no_host.is_err());
}

#[test]
fn info_and_servers() {
    let document = AsyncApi::new("orders", "2.1.0")
        .description("Orders.")
        .server_from_url("jetstream://u:p@10.0.0.1:4222")
        .expect("url")
        .to_json()
        .expect("document");
    assert_eq!(
        document["info"],
        json!({ "title": "orders", "version": "2.1.0", "description": "Orders." })
    );
    assert_eq!(document["servers"]["jetstream"]["host"], "10.0.0.1:4222");
    assert_eq!(document["servers"]["jetstream"]["protocol"], "nats");
}
