//! End-to-end: `GET /prods` through the gateway, answered by the product service over
//! the broker, on memory:// always, on NATS and JetStream with `--features nats`, on
//! Kafka with `--features kafka`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, SubscriberHandle};
use event_bus::http::Server;
use event_bus::{Gateway, ProductList, ProductOptions, Topics, router, run_product_service};
use support::{Backend, WAIT, unique};

/// A gateway (and maybe product instances) on one broker, under a topic prefix and
/// queue group of their own.
struct Bus {
    backend: Backend,
    broker: Arc<dyn Broker>,
    topics: Topics,
    queue: String,
    server: Server,
    client: reqwest::Client,
    products: Vec<SubscriberHandle>,
}

impl Bus {
    async fn start(backend: Backend, timeout: Duration) -> Bus {
        let broker = backend.connect().await;
        let topics = Topics::prefixed(&unique("bus"));
        let gateway =
            tokio::time::timeout(WAIT, Gateway::new(broker.clone(), topics.clone(), timeout))
                .await
                .unwrap_or_else(|_| {
                    panic!("the gateway's inbox took more than {WAIT:?} on {backend:?}")
                })
                .unwrap_or_else(|e| panic!("gateway on {backend:?}: {}", e.display_chain()));
        let server = event_bus::http::serve("127.0.0.1:0", router(gateway))
            .await
            .expect("bind the gateway");
        Bus {
            backend,
            broker,
            topics,
            queue: unique("product"),
            server,
            client: reqwest::Client::new(),
            products: Vec::new(),
        }
    }

    async fn add_product_service(&mut self, instance: &str, delay: Duration) {
        let options = ProductOptions::new()
            .topics(self.topics.clone())
            .queue(self.queue.clone())
            .instance(instance)
            .delay(delay);
        let handle = tokio::time::timeout(WAIT, run_product_service(self.broker.clone(), options))
            .await
            .unwrap_or_else(|_| panic!("subscribing took more than {WAIT:?} on {:?}", self.backend))
            .unwrap_or_else(|e| panic!("subscribe on {:?}: {}", self.backend, e.display_chain()));
        self.products.push(handle);
    }

    /// `GET path`: status, body, and how long it took.
    async fn get(&self, path: &str) -> (u16, serde_json::Value, Duration) {
        let started = Instant::now();
        let response = self
            .client
            .get(self.server.url(path))
            .timeout(WAIT)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {:?}: {e}", self.backend));
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON answer");
        (status, body, started.elapsed())
    }

    async fn stop(self) {
        for handle in self.products {
            tokio::time::timeout(WAIT, handle.shutdown())
                .await
                .expect("shutdown in time")
                .expect("shutdown");
        }
        self.server.shutdown().await.expect("stop the server");
        let _ = tokio::time::timeout(WAIT, self.broker.close()).await;
    }
}

async fn prods_are_answered_by_the_product_service(backend: Backend) {
    let mut bus = Bus::start(backend, WAIT).await;
    bus.add_product_service("p1", Duration::ZERO).await;
    let (status, body, _) = bus.get("/prods?size=2").await;
    assert_eq!(status, 200, "{body}");
    let list: ProductList = serde_json::from_value(body).expect("a product list");
    assert_eq!(list.served_by, "p1");
    let names: Vec<&str> = list.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Tea", "Coffee"]);
    let (status, body, _) = bus.get("/prods").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["products"].as_array().map(Vec::len), Some(3));
    bus.stop().await;
}

async fn no_responder_is_a_504_timeout(backend: Backend) {
    let timeout = Duration::from_millis(500);
    let bus = Bus::start(backend, timeout).await;
    let (status, body, took) = bus.get("/prods").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, serde_json::json!({ "message": "timeout" }));
    assert!(took >= timeout, "answered before the timeout: {took:?}");
    assert!(
        took < timeout + Duration::from_secs(5),
        "the timeout is not bounded: {took:?}"
    );
    bus.stop().await;
}

async fn a_slow_responder_is_a_504_timeout(backend: Backend) {
    let timeout = Duration::from_millis(300);
    let mut bus = Bus::start(backend, timeout).await;
    bus.add_product_service("slow", Duration::from_secs(2))
        .await;
    let (status, body, took) = bus.get("/prods").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, serde_json::json!({ "message": "timeout" }));
    assert!(
        took < Duration::from_secs(2),
        "waited for the slow answer: {took:?}"
    );
    bus.stop().await;
}

macro_rules! backend_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn prods_are_answered_by_the_product_service() {
                super::prods_are_answered_by_the_product_service($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn no_responder_is_a_504_timeout() {
                super::no_responder_is_a_504_timeout($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_slow_responder_is_a_504_timeout() {
                super::a_slow_responder_is_a_504_timeout($backend).await;
            }
        }
    };
}

backend_tests!(memory, super::Backend::Memory);
#[cfg(feature = "nats")]
backend_tests!(nats, super::Backend::Nats);
#[cfg(feature = "nats")]
backend_tests!(jetstream, super::Backend::JetStream);
#[cfg(feature = "kafka")]
backend_tests!(kafka, super::Backend::Kafka);

#[tokio::test]
async fn a_malformed_query_is_a_400() {
    let bus = Bus::start(Backend::Memory, Duration::from_millis(100)).await;
    let (status, body, _) = bus.get("/prods?size=many").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad request"))
    );
    bus.stop().await;
}
