//! The AsyncAPI document served at `GET /asyncapi.json`, checked by the AsyncAPI
//! project's parser and for what it says about the user topics and the `user.>` pattern.

use example_support::testing::asyncapi::serve_and_validate;
use user_email::Topics;
use user_email::asyncapi::document;

/// A broker URL with credentials, which the document must not show.
const BROKER_URL: &str = "kafka://k1:9092,k2:9092?sasl.password=pw";

#[tokio::test]
async fn the_document_is_valid_and_describes_the_user_topics() {
    let document = document(&Topics::default(), BROKER_URL).expect("a document");
    let served = serve_and_validate("user-email", &document).await;

    assert!(!served.to_string().contains("pw"));
    assert_eq!(served["servers"]["kafka-1"]["host"], "k1:9092");
    assert_eq!(served["servers"]["kafka-2"]["protocol"], "kafka");
    let channels = &served["channels"];
    assert_eq!(channels["user.created"]["address"], "user.created");
    assert_eq!(channels["user.deleted"]["address"], "user.deleted");
    let audit = &channels["user.all"];
    assert_eq!(audit["address"], "user.{rest}");
    assert_eq!(audit["x-pattern"], "user.>");
    assert!(audit["parameters"]["rest"].is_object());
    // The pattern carries what the topics it matches carry.
    let carried: Vec<&String> = audit["messages"]
        .as_object()
        .expect("messages")
        .keys()
        .collect();
    assert_eq!(carried, ["UserCreated", "UserDeleted"]);

    let created = &served["components"]["schemas"]["UserCreated"];
    for field in ["id", "name", "email"] {
        assert_eq!(
            created["properties"][field]["type"], "string",
            "UserCreated.{field}"
        );
    }
    let message = &served["components"]["messages"]["UserCreated"];
    assert_eq!(message["contentType"], "application/json");
    assert_eq!(
        message["payload"]["$ref"],
        "#/components/schemas/UserCreated"
    );

    let operations = &served["operations"];
    assert_eq!(operations["send.user.created"]["action"], "send");
    assert_eq!(operations["send.user.deleted"]["action"], "send");
    let email = &operations["receive.user.created.email"];
    assert_eq!(email["action"], "receive");
    assert_eq!(email["bindings"]["kafka"]["groupId"]["enum"][0], "email");
    let audit = &operations["receive.user.all.audit"];
    assert_eq!(audit["messages"].as_array().map(Vec::len), Some(2));
}
