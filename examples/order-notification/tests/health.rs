//! `GET /health` as the binaries serve it: 200 while the broker is connected and the
//! notification service subscribed; 503, saying why, once the broker is gone.
//!
//! The NATS test runs a nats-server of its own (`NATS_SERVER_BIN`, or where
//! `scripts/nats.sh install` puts it), stops it and starts it again on the same port.

use std::sync::Arc;

use broker::Broker;
use example_support::health::Readiness;
use example_support::testing::WAIT;
use example_support::testing::health::{health, health_until};
use example_telemetry::http::Server;
use order_notification::{Topics, notification_options, run_notifications};

/// The notification service on a broker, held by a [`Readiness`] served on a free port.
struct Served {
    readiness: Readiness,
    server: Server,
    client: reqwest::Client,
    url: String,
}

impl Served {
    async fn start(broker: Arc<dyn Broker>) -> Served {
        let readiness = Readiness::new(broker.clone());
        let topics = Topics::prefixed(&example_support::testing::unique("health"));
        let handle = run_notifications(broker, notification_options().topics(topics))
            .await
            .expect("subscribe the notification service");
        readiness.hold([handle]);
        let server = example_telemetry::http::serve("127.0.0.1:0", readiness.router())
            .await
            .expect("bind a free port");
        let url = server.url("/health");
        Served {
            readiness,
            server,
            client: reqwest::Client::new(),
            url,
        }
    }

    /// `GET /health` until it answers `status`.
    async fn health_until(&self, status: u16) -> serde_json::Value {
        health_until(&self.client, &self.url, status, WAIT).await
    }

    /// Stops the subscriber (none of its handlers cancelled) and the server.
    async fn stop(self) {
        let report = self
            .readiness
            .shutdown_within(WAIT)
            .await
            .expect("stop the subscribers");
        assert_eq!(report.cancelled, 0);
        self.server.shutdown().await.expect("stop the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_why_once_the_broker_is_closed() {
    let broker = example_support::plugin::connect("memory://health")
        .await
        .expect("memory://");
    let served = Served::start(broker.clone()).await;

    let (status, body) = health(&served.client, &served.url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["connected"], true);
    assert_eq!(body["subscribers"], 1);

    broker.close().await.expect("close");
    let body = served.health_until(503).await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["connected"], false);
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("not connected"), "{body}");
    assert!(
        reasons.contains("stopped"),
        "the subscriber ended too: {body}"
    );

    served.stop().await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_nats_server_down_and_up_again() {
    use example_support::testing::health::{NatsServer, nats_server_binary};

    let Some(binary) = nats_server_binary() else {
        return;
    };
    let mut nats = NatsServer::start(binary).await;
    let broker = example_support::plugin::connect(&nats.url())
        .await
        .expect("connect to the private nats-server");
    let served = Served::start(broker.clone()).await;
    let body = served.health_until(200).await;
    assert_eq!(body["backend"], "nats");

    nats.stop();
    let down = served.health_until(503).await;
    assert_eq!(down["connected"], false, "{down}");
    assert!(
        down["reasons"].to_string().contains("not connected"),
        "{down}"
    );

    nats.restart().await;
    let up = served.health_until(200).await;
    assert_eq!(up["connected"], true, "{up}");
    assert_eq!(up["subscribers"], 1, "{up}");
    assert!(
        up["lastError"].is_string(),
        "the outage's error is kept: {up}"
    );

    served.stop().await;
    broker.close().await.expect("close");
}
