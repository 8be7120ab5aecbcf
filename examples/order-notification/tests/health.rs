//! `GET /health` as the binaries serve it: 200 while the broker is connected and the
//! notification service subscribed; 503, saying why, once the broker is gone.
//!
//! The NATS test runs a nats-server of its own (`NATS_SERVER_BIN`, or where
//! `scripts/nats.sh install` puts it), stops it and starts it again on the same port.

use std::sync::Arc;

use broker::Broker;
use example_support::health::Readiness;
use example_support::testing::WAIT;
use example_support::testing::health::health;
use example_telemetry::http::Server;
use order_notification::{Topics, notification_options, run_notifications};

/// The notification service on `broker`, held by a [`Readiness`] served on a free port.
async fn serve_notifications(broker: Arc<dyn Broker>) -> (Readiness, Server) {
    let readiness = Readiness::new(broker.clone());
    let topics = Topics::prefixed(&example_support::testing::unique("health"));
    let handle = run_notifications(broker, notification_options().topics(topics))
        .await
        .expect("subscribe the notification service");
    readiness.hold([handle]);
    let server = example_telemetry::http::serve("127.0.0.1:0", readiness.router())
        .await
        .expect("bind a free port");
    (readiness, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_why_once_the_broker_is_closed() {
    let broker = example_support::plugin::connect("memory://health")
        .await
        .expect("memory://");
    let (readiness, server) = serve_notifications(broker.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/health");

    let (status, body) = health(&client, &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["connected"], true);
    assert_eq!(body["subscribers"], 1);

    broker.close().await.expect("close");
    let body = example_support::testing::health::health_until(&client, &url, 503, WAIT).await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["connected"], false);
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("not connected"), "{body}");
    assert!(
        reasons.contains("stopped"),
        "the subscriber ended too: {body}"
    );

    let report = readiness
        .shutdown_within(WAIT)
        .await
        .expect("stop the subscribers");
    assert_eq!(report.cancelled, 0);
    server.shutdown().await.expect("stop the server");
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_nats_server_down_and_up_again() {
    use example_support::testing::health::{NatsServer, health_until, nats_server_binary};

    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut nats = NatsServer::start(binary).await;
    let broker = example_support::plugin::connect(&nats.url())
        .await
        .expect("connect to the private nats-server");
    let (readiness, server) = serve_notifications(broker.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/health");
    let body = health_until(&client, &url, 200, WAIT).await;
    assert_eq!(body["backend"], "nats");

    nats.stop();
    let down = health_until(&client, &url, 503, WAIT).await;
    assert_eq!(down["connected"], false, "{down}");
    assert!(
        down["reasons"].to_string().contains("not connected"),
        "{down}"
    );

    nats.restart().await;
    let up = health_until(&client, &url, 200, WAIT).await;
    assert_eq!(up["connected"], true, "{up}");
    assert_eq!(up["subscribers"], 1, "{up}");
    assert!(
        up["lastError"].is_string(),
        "the outage's error is kept: {up}"
    );

    let report = readiness
        .shutdown_within(WAIT)
        .await
        .expect("stop the subscribers");
    assert_eq!(report.cancelled, 0);
    server.shutdown().await.expect("stop the server");
    broker.close().await.expect("close");
}
