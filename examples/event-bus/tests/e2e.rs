//! End-to-end: `GET /prods` through the gateway, answered by the product service over
//! the broker, on memory:// always, on NATS and JetStream with `--features nats`, on
//! Kafka with `--features kafka`.

use std::time::{Duration, Instant};

use broker::headers::names::CORRELATION_ID;
use broker::{Message, Requester};
use event_bus::{Gateway, ProductList, Topics, product_options, router, run_product_service};
use example_support::backend_tests;
use example_support::testing::metrics;
use example_support::testing::{Backend, Harness, WAIT, unique};

/// A gateway (and maybe product instances) on one (observed) broker, under a topic prefix
/// and queue group of their own, with `GET /metrics` on the gateway port as the binary
/// serves it.
struct Bus {
    harness: Harness,
    topics: Topics,
    queue: String,
}

example_support::harness_fixture!(Bus);

impl Bus {
    async fn start(mut harness: Harness, timeout: Duration) -> Bus {
        let topics = Topics::prefixed(&unique("bus"));
        let gateway = Gateway::new(harness.broker.clone(), topics.clone(), timeout);
        let gateway = harness.within("the gateway's inbox", gateway).await;
        harness.serve(router(gateway)).await;
        Bus {
            harness,
            topics,
            queue: unique("product"),
        }
    }

    async fn add_product_service(&self, instance: &str, delay: Duration) {
        let options = product_options()
            .topics(self.topics.clone())
            .queue(self.queue.clone())
            .instance(instance);
        let subscribing = run_product_service(self.broker.clone(), options, delay);
        self.subscribe(subscribing).await;
    }

    /// `GET path`: status, body, and how long it took.
    async fn get(&self, path: &str) -> (u16, serde_json::Value, Duration) {
        let started = Instant::now();
        let response = self
            .client
            .get(self.url(path))
            .timeout(WAIT)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {:?}: {e}", self.backend));
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON answer");
        (status, body, started.elapsed())
    }

    async fn stop(self) {
        self.harness.stop().await;
    }
}

async fn prods_are_answered_by_the_product_service(backend: Backend) {
    let bus = Bus::start(Harness::shared(backend).await, WAIT).await;
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
    let bus = Bus::start(Harness::shared(backend).await, timeout).await;
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
    let bus = Bus::start(Harness::shared(backend).await, timeout).await;
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
    let bus = Bus::start(Harness::alone(backend).await, WAIT).await;
    bus.add_product_service("p1", Duration::ZERO).await;
    bus.add_product_service("p2", Duration::ZERO).await;
    let before = bus.published().await;

    for size in 1..=QUERIES {
        let (status, body, _) = bus.get(&format!("/prods?size={size}")).await;
        assert_eq!(status, 200, "{body}");
    }
    // Malformed: refused by the gateway, nothing published.
    let (status, body, _) = bus.get("/prods?size=many").await;
    assert_eq!(status, 400, "{body}");

    let expected = f64::from(QUERIES);
    let backend_name = bus.backend_name();
    let pattern = bus.topics.list.clone();
    let samples = bus.scrape_until_acked(&[&pattern], expected).await;
    assert_eq!(
        metrics::published(&samples, backend_name) - before,
        2.0 * expected,
        "published: a query and its answer each"
    );
    metrics::assert_handled(&samples, backend_name, &pattern, expected);
    bus.stop().await;
    assert_eq!(metrics::delivered_now(backend_name, &pattern), expected);
}

/// The answer is a follow-up published while the product service handles the query: it
/// reaches the requester (the second hop) with the query's correlation id, the one the
/// query carried or else the query's own message id.
async fn the_answer_carries_the_query_correlation_id(backend: Backend) {
    let bus = Bus::start(Harness::shared(backend).await, WAIT).await;
    bus.add_product_service("p1", Duration::ZERO).await;
    let requester = Requester::new(bus.broker.clone());
    let requester = bus.within("the requester's inbox", requester).await;
    let answer_correlation = async |query: Message| {
        let answer = requester.request(&bus.topics.list, query, WAIT);
        let answer = bus.within("a request", answer).await;
        let correlation = answer.headers().get(CORRELATION_ID).map(str::to_owned);
        (correlation, format!("{:?}", answer.headers()))
    };

    let correlation = unique("checkout");
    let query = Message::new(r#"{"size":1}"#).with_header(CORRELATION_ID, correlation.as_str());
    let (answered, headers) = answer_correlation(query).await;
    assert_eq!(answered, Some(correlation), "{headers}");

    let query = Message::new(r#"{"size":1}"#);
    let query_id = query.id().to_string();
    let (answered, headers) = answer_correlation(query).await;
    assert_eq!(answered, Some(query_id), "{headers}");
    drop(requester);
    bus.stop().await;
}

backend_tests!(
    prods_are_answered_by_the_product_service,
    no_responder_is_a_504_timeout,
    a_slow_responder_is_a_504_timeout,
    metrics_count_the_queries,
    the_answer_carries_the_query_correlation_id,
);

#[tokio::test]
async fn a_malformed_query_is_a_400() {
    let bus = Bus::start(
        Harness::shared(Backend::Memory).await,
        Duration::from_millis(100),
    )
    .await;
    let (status, body, _) = bus.get("/prods?size=many").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("bad request"))
    );
    bus.stop().await;
}
