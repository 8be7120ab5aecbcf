//! The AsyncAPI document served at `GET /asyncapi.json`, checked by the AsyncAPI
//! project's parser and for what it says about `notification.submit`.

use example_support::testing::asyncapi::serve_and_validate;
use order_notification::Topics;
use order_notification::asyncapi::document;

/// A broker URL with credentials, which the document must not show.
const BROKER_URL: &str = "nats://alice:s3cret@127.0.0.1:4222?token=t0k3n";

#[tokio::test]
async fn the_document_is_valid_and_describes_the_submit_topic() {
    let document = document(&Topics::default(), BROKER_URL).expect("a document");
    let served = serve_and_validate("order-notification", &document).await;

    let text = served.to_string();
    assert!(!text.contains("s3cret") && !text.contains("alice") && !text.contains("t0k3n"));
    assert_eq!(served["servers"]["nats"]["host"], "127.0.0.1:4222");
    let channel = &served["channels"]["notification.submit"];
    assert_eq!(channel["address"], "notification.submit");
    let message = &served["components"]["messages"]["SubmitRequest"];
    assert_eq!(message["contentType"], "application/x-protobuf");
    assert_eq!(
        message["payload"]["x-protobuf-message"],
        "order.SubmitRequest"
    );
    assert_eq!(
        message["headers"]["properties"]["content-type"]["const"],
        "application/x-protobuf"
    );
    let send = &served["operations"]["send.notification.submit"];
    assert_eq!(send["action"], "send");
    let receive = &served["operations"]["receive.notification.submit.notification"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(receive["bindings"]["nats"]["queue"], "notification");
    assert_eq!(
        receive["messages"][0]["$ref"],
        "#/channels/notification.submit/messages/SubmitRequest"
    );
}
