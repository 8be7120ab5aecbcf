//! End-to-end: `GET /prods` through the gateway, answered by the product service over
//! the broker, on memory:// always, on NATS and JetStream with `--features nats`, on
//! Kafka with `--features kafka`.

use example_testing as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::headers::names::CORRELATION_ID;
use broker::observe::metric_names;
use broker::{Broker, Message, Requester, SubscriberHandle};
use event_bus::http::Server;
use event_bus::{Gateway, ProductList, ProductOptions, Topics, router, run_product_service};
use support::metrics::{Sample, Turn, scrape, scrape_until, value};
use support::{Backend, WAIT, unique};

/// A gateway (and maybe product instances) on one (observed) broker, under a topic prefix
/// and queue group of their own, with `GET /metrics` on the gateway port as the binary
/// serves it.
struct Bus {
    backend: Backend,
    broker: Arc<dyn Broker>,
    topics: Topics,
    queue: String,
    server: Server,
    client: reqwest::Client,
    products: Vec<SubscriberHandle>,
    _turn: Turn,
}

impl Bus {
    async fn start(backend: Backend, timeout: Duration) -> Bus {
        Bus::start_in(Turn::shared(backend).await, backend, timeout).await
    }

    /// Alone on `backend`, so that the publish counter is this test's own.
    async fn start_alone(backend: Backend, timeout: Duration) -> Bus {
        Bus::start_in(Turn::alone(backend).await, backend, timeout).await
    }

    async fn start_in(turn: Turn, backend: Backend, timeout: Duration) -> Bus {
        // The recorder first: the metrics layer resolves its handles when it is built.
        let recorder = support::metrics::recorder();
        let broker = broker::observe::observed(backend.connect().await);
        let topics = Topics::prefixed(&unique("bus"));
        let gateway =
            tokio::time::timeout(WAIT, Gateway::new(broker.clone(), topics.clone(), timeout))
                .await
                .unwrap_or_else(|_| {
                    panic!("the gateway's inbox took more than {WAIT:?} on {backend:?}")
                })
                .unwrap_or_else(|e| panic!("gateway on {backend:?}: {}", e.display_chain()));
        let app = example_telemetry::with_metrics(router(gateway), recorder);
        let server = event_bus::http::serve("127.0.0.1:0", app)
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
            _turn: turn,
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

/// `GET /metrics` counts what happened: N queries and N answers published, each query
/// delivered and acked once in the product group, nothing for the malformed one.
async fn metrics_count_the_queries(backend: Backend) {
    const QUERIES: u32 = 4;
    let mut bus = Bus::start_alone(backend, WAIT).await;
    bus.add_product_service("p1", Duration::ZERO).await;
    bus.add_product_service("p2", Duration::ZERO).await;
    let metrics_url = bus.server.url("/metrics");
    let backend_name = bus.broker.capabilities().backend;
    let published = |samples: &[Sample]| {
        value(
            samples,
            metric_names::PUBLISHED,
            &[("backend", backend_name)],
        )
    };
    let before = published(&scrape(&bus.client, &metrics_url).await);

    for size in 1..=QUERIES {
        let (status, body, _) = bus.get(&format!("/prods?size={size}")).await;
        assert_eq!(status, 200, "{body}");
    }
    // Malformed: refused by the gateway, nothing published.
    let (status, body, _) = bus.get("/prods?size=many").await;
    assert_eq!(status, 400, "{body}");

    let expected = f64::from(QUERIES);
    let pattern = bus.topics.list.clone();
    let labels = [("backend", backend_name), ("pattern", pattern.as_str())];
    // Acks are counted once the backend confirms them, after the handler returned.
    let samples = scrape_until(&bus.client, &metrics_url, |s| {
        value(s, metric_names::ACKED, &labels) >= expected
    })
    .await;
    assert_eq!(
        published(&samples) - before,
        2.0 * expected,
        "published: a query and its answer each"
    );
    assert_eq!(
        value(&samples, metric_names::DELIVERED, &labels),
        expected,
        "delivered"
    );
    assert_eq!(
        value(&samples, metric_names::ACKED, &labels),
        expected,
        "acked"
    );
    assert_eq!(
        value(&samples, metric_names::NACKED, &labels),
        0.0,
        "nacked"
    );
    bus.stop().await;
    let after = support::metrics::parse(&support::metrics::recorder().render());
    assert_eq!(value(&after, metric_names::DELIVERED, &labels), expected);
}

/// The answer is a follow-up published while the product service handles the query: it
/// reaches the requester (the second hop) with the query's correlation id, the one the
/// query carried or else the query's own message id.
async fn the_answer_carries_the_query_correlation_id(backend: Backend) {
    let mut bus = Bus::start(backend, WAIT).await;
    bus.add_product_service("p1", Duration::ZERO).await;
    let requester = tokio::time::timeout(WAIT, Requester::new(bus.broker.clone()))
        .await
        .unwrap_or_else(|_| panic!("the requester's inbox took more than {WAIT:?}"))
        .unwrap_or_else(|e| panic!("requester on {backend:?}: {}", e.display_chain()));

    let correlation = unique("checkout");
    let query = Message::new(r#"{"size":1}"#).with_header(CORRELATION_ID, correlation.as_str());
    let answer = requester
        .request(&bus.topics.list, query, WAIT)
        .await
        .unwrap_or_else(|e| panic!("request on {backend:?}: {}", e.display_chain()));
    assert_eq!(
        answer.headers().get(CORRELATION_ID),
        Some(correlation.as_str()),
        "{:?}",
        answer.headers()
    );

    let query = Message::new(r#"{"size":1}"#);
    let query_id = query.id().to_string();
    let answer = requester
        .request(&bus.topics.list, query, WAIT)
        .await
        .unwrap_or_else(|e| panic!("request on {backend:?}: {}", e.display_chain()));
    assert_eq!(
        answer.headers().get(CORRELATION_ID),
        Some(query_id.as_str()),
        "{:?}",
        answer.headers()
    );
    drop(requester);
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn metrics_count_the_queries() {
                super::metrics_count_the_queries($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_answer_carries_the_query_correlation_id() {
                super::the_answer_carries_the_query_correlation_id($backend).await;
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
