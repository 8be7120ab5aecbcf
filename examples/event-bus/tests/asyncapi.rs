//! The AsyncAPI document served at `GET /asyncapi.json`, checked by the AsyncAPI
//! project's parser and for what it says about the request and its reply.

use event_bus::Topics;
use event_bus::asyncapi::document;
use example_support::testing::asyncapi::serve_and_validate;

#[tokio::test]
async fn the_document_is_valid_and_describes_request_and_reply() {
    let document = document(&Topics::default(), "memory://").expect("a document");
    let served = serve_and_validate("event-bus", &document).await;

    assert!(served.get("servers").is_none(), "memory:// has no server");
    let channels = &served["channels"];
    assert_eq!(channels["product.list"]["address"], "product.list");
    assert!(channels["product.list.reply"]["address"].is_null());

    let schemas = &served["components"]["schemas"];
    assert!(schemas["ProductQuery"]["properties"]["size"].is_object());
    let list = &schemas["ProductList"]["properties"];
    assert_eq!(list["served_by"]["type"], "string");
    assert_eq!(
        list["products"]["items"]["$ref"],
        "#/components/schemas/Product"
    );
    assert!(schemas["Product"]["properties"]["name"].is_object());

    for operation in ["send.product.list", "receive.product.list.product"] {
        let reply = &served["operations"][operation]["reply"];
        assert_eq!(reply["address"]["location"], "$message.header#/reply-to");
        assert_eq!(
            reply["messages"][0]["$ref"],
            "#/channels/product.list.reply/messages/ProductList"
        );
    }
}
