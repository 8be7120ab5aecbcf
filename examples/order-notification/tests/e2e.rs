//! End-to-end: the order service over HTTP, the notification service over the broker, on
//! memory:// always, on NATS and JetStream with `--features nats`, on Kafka with
//! `--features kafka`.

use std::collections::HashMap;

use broker::observe::metric_names;
use example_support::backend_tests;
use example_support::demo::drain;
use example_support::testing::metrics::{self, value};
use example_support::testing::{Backend, Harness, WAIT, collect, unique};
use order_notification::{
    Notification, OrderService, ProductStore, Snowflake, SubmitResponse, Topics,
    notification_options, router, run_notifications,
};
use serde_json::json;
use tokio::sync::mpsc;

/// Both services on one (observed) broker, under a topic prefix and queue group of their
/// own, with `GET /metrics` on the order port as the binary serves it.
struct Shop {
    harness: Harness,
    topics: Topics,
    queue: String,
    service: OrderService,
    notifications: mpsc::UnboundedReceiver<Notification>,
    observer: mpsc::UnboundedSender<Notification>,
}

example_support::harness_fixture!(Shop);

impl Shop {
    async fn start(mut harness: Harness, instances: usize) -> Shop {
        let topics = Topics::prefixed(&unique("shop"));
        let (observer, notifications) = mpsc::unbounded_channel();
        let service = OrderService::new(
            harness.broker.clone(),
            &topics,
            ProductStore::sample(),
            Snowflake::new(1).expect("node id"),
        )
        .expect("order service");
        harness.serve(router(service.clone())).await;
        let shop = Shop {
            harness,
            topics,
            queue: unique("notification"),
            service,
            notifications,
            observer,
        };
        for n in 1..=instances {
            shop.add_instance(&format!("n{n}")).await;
        }
        shop
    }

    async fn add_instance(&self, name: &str) {
        let options = notification_options()
            .topics(self.topics.clone())
            .queue(self.queue.clone())
            .instance(name)
            .observe(self.observer.clone());
        let subscribing = run_notifications(self.broker.clone(), options);
        self.subscribe(subscribing).await;
    }

    async fn submit(&self, body: serde_json::Value) -> (u16, SubmitResponse) {
        let response = self
            .client
            .post(self.url("/order/submit"))
            .json(&body)
            .timeout(WAIT)
            .send()
            .await
            .expect("POST /order/submit");
        let status = response.status().as_u16();
        let answer = response.json().await.expect("a JSON answer");
        (status, answer)
    }

    /// Submits `body` and expects it refused with `status` (also the answer's code), a
    /// message that contains `reason`, and no order id.
    async fn expect_refused(&self, body: serde_json::Value, status: u16, reason: &str) {
        let (got, answer) = self.submit(body).await;
        assert_eq!(got, status, "{answer:?}");
        assert_eq!(answer.code, status.to_string());
        assert!(answer.msg.contains(reason), "{answer:?}");
        assert_eq!(answer.order_id, None);
    }

    async fn stock(&self, product: i64) -> u64 {
        let products: serde_json::Value = self
            .client
            .get(self.url("/products"))
            .timeout(WAIT)
            .send()
            .await
            .expect("GET /products")
            .json()
            .await
            .expect("a JSON list");
        products
            .as_array()
            .expect("a list")
            .iter()
            .find(|p| p["id"] == product)
            .and_then(|p| p["stock"].as_u64())
            .expect("the product is listed")
    }

    /// Waits until every order in `order_ids` was notified, returning the notifications
    /// received meanwhile.
    async fn wait_for_orders(&mut self, order_ids: &[String]) -> Vec<Notification> {
        collect(self.backend, &mut self.notifications, |seen| {
            order_ids
                .iter()
                .all(|id| seen.iter().any(|n| &n.order_id == id))
        })
        .await
    }

    /// Stops the notification instances (finishing what they hold) and the server, and
    /// returns the notifications not yet read.
    async fn stop(self) -> Vec<Notification> {
        let Shop {
            harness,
            mut notifications,
            ..
        } = self;
        harness.stop().await;
        drain(&mut notifications)
    }
}

fn order_id(status: u16, answer: &SubmitResponse) -> String {
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(answer.code, "200");
    assert_eq!(answer.msg, "order submitted");
    let id = answer.order_id.clone().expect("an order id");
    assert!(id.parse::<i64>().is_ok_and(|n| n > 0), "snowflake id: {id}");
    id
}

async fn notification_arrives_with_user_and_product(backend: Backend) {
    let mut shop = Shop::start(Harness::shared(backend).await, 1).await;
    let (status, answer) = shop
        .submit(json!({"productId": 1, "count": 1, "uid": 42}))
        .await;
    let id = order_id(status, &answer);
    let seen = shop.wait_for_orders(std::slice::from_ref(&id)).await;
    let notification = seen
        .iter()
        .find(|n| n.order_id == id)
        .expect("the order's notification");
    assert_eq!(notification.uid, 42);
    assert_eq!(notification.product_id, 1);
    assert_eq!(notification.product_name, "Tea");
    assert_eq!(notification.count, 1);
    assert_eq!(
        notification.to_string(),
        format!("user 42 bought 1 × product 1 (Tea), order {id}")
    );
    assert_eq!(shop.stock(1).await, 9);
    let rest = shop.stop().await;
    assert!(rest.is_empty(), "only one notification: {seen:?} {rest:?}");
    assert_eq!(seen.len(), 1, "{seen:?}");
}

async fn insufficient_stock_is_a_400_without_notification(backend: Backend) {
    let mut shop = Shop::start(Harness::shared(backend).await, 1).await;
    // Cake has no stock; Coffee has one left.
    let out_of_stock = json!({"productId": 3, "count": 1, "uid": 900});
    shop.expect_refused(out_of_stock, 400, "insufficient stock")
        .await;
    let too_many = json!({"productId": 2, "count": 5, "uid": 900});
    shop.expect_refused(too_many, 400, "product 2 has 1 left, 5 requested")
        .await;
    assert_eq!(shop.stock(2).await, 1, "a refused order takes no stock");
    assert_eq!(shop.service.orders().len(), 0);

    // A good order afterwards is notified, and it is the only notification.
    let (status, answer) = shop
        .submit(json!({"productId": 2, "count": 1, "uid": 901}))
        .await;
    let id = order_id(status, &answer);
    let mut seen = shop.wait_for_orders(std::slice::from_ref(&id)).await;
    seen.extend(shop.stop().await);
    assert!(
        seen.iter().all(|n| n.uid != 900),
        "a refused order was notified: {seen:?}"
    );
    assert_eq!(seen.len(), 1, "{seen:?}");
}

async fn queue_group_notifies_each_order_once(backend: Backend) {
    let mut shop = Shop::start(Harness::shared(backend).await, 2).await;
    let mut ids = Vec::new();
    for uid in 1..=8 {
        let (status, answer) = shop
            .submit(json!({"productId": 1, "count": 1, "uid": uid}))
            .await;
        ids.push(order_id(status, &answer));
    }
    let mut seen = shop.wait_for_orders(&ids).await;
    seen.extend(shop.stop().await);
    let mut per_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in &seen {
        per_order
            .entry(n.order_id.as_str())
            .or_default()
            .push(n.instance.as_str());
    }
    for id in &ids {
        let by = per_order.get(id.as_str()).map_or(0, Vec::len);
        assert_eq!(by, 1, "order {id} notified {by} times: {seen:?}");
    }
    assert_eq!(seen.len(), ids.len(), "{seen:?}");
    if backend == Backend::Memory {
        // memory:// hands a queue group's messages to its members in turn.
        for instance in ["n1", "n2"] {
            assert!(
                seen.iter().any(|n| n.instance == instance),
                "{instance} got no order: {seen:?}"
            );
        }
    }
}

/// `GET /metrics` counts what happened: N orders published, delivered and acked once each
/// in the queue group, nothing for the refused one.
async fn metrics_count_the_orders(backend: Backend) {
    const ORDERS: u32 = 5;
    let mut shop = Shop::start(Harness::alone(backend).await, 2).await;
    let before = shop.published().await;

    let mut ids = Vec::new();
    for uid in 1..=ORDERS {
        let (status, answer) = shop
            .submit(json!({"productId": 1, "count": 1, "uid": uid}))
            .await;
        ids.push(order_id(status, &answer));
    }
    // Cake is out of stock: refused, nothing published.
    let (status, answer) = shop
        .submit(json!({"productId": 3, "count": 1, "uid": 99}))
        .await;
    assert_eq!(status, 400, "{answer:?}");
    let seen = shop.wait_for_orders(&ids).await;

    let backend_name = shop.backend_name();
    let pattern = shop.topics.submit.clone();
    let expected = f64::from(ORDERS);
    let samples = shop.scrape_until_acked(&[&pattern], expected).await;
    let published = metrics::published(&samples, backend_name);
    assert_eq!(published - before, expected, "published");
    metrics::assert_handled(&samples, backend_name, &pattern, expected);
    assert_eq!(
        value(
            &samples,
            metric_names::PUBLISH_FAILED,
            &[("backend", backend_name)]
        ),
        0.0,
        "failed publishes"
    );
    assert!(
        samples
            .iter()
            .any(|s| s.name.starts_with(metric_names::HANDLER_DURATION)
                && s.labels.get("pattern") == Some(&pattern)),
        "no handler duration for {pattern}"
    );

    let rest = shop.stop().await;
    assert!(rest.is_empty(), "{seen:?} {rest:?}");
    assert_eq!(seen.len(), ids.len(), "each order notified once: {seen:?}");
    // Nothing more was delivered while the instances stopped.
    assert_eq!(metrics::delivered_now(backend_name, &pattern), expected);
}

/// What another service may put on the topic, and the notification service cannot
/// read: a go-micro JSON envelope where a protobuf order is expected, and a tombstone
/// where the backend carries one. Each goes to `<topic>.dead` at its first delivery;
/// the orders after them are notified as usual.
async fn unreadable_messages_are_dead_lettered_and_orders_keep_flowing(backend: Backend) {
    use broker::headers::names;
    use broker::{Message, SubscribeOptions};
    use futures::StreamExt;

    let mut shop = Shop::start(Harness::shared(backend).await, 1).await;
    let dead_topic = format!("{}.dead", shop.topics.submit);
    let mut dead = shop
        .broker
        .subscribe(&dead_topic, SubscribeOptions::new())
        .await
        .expect("subscribe to the dead letters");
    let envelope = Message::new(
        r#"{"Header":{"Micro-From":"gomicro-peer","Micro-Topic":"notification.submit"},"Body":"eyJvcmRlcklkIjoiMSJ9"}"#,
    );
    let mut unreadable = vec![envelope];
    if !matches!(backend, Backend::Nats | Backend::JetStream) {
        unreadable.push(Message::tombstone().with_key("order-1"));
    }
    for message in &unreadable {
        shop.broker
            .publish(&shop.topics.submit, message.clone())
            .await
            .expect("publish an unreadable message");
    }
    let (status, answer) = shop
        .submit(json!({"productId": 1, "count": 1, "uid": 7}))
        .await;
    let id = order_id(status, &answer);
    let seen = shop.wait_for_orders(std::slice::from_ref(&id)).await;
    assert!(
        seen.iter().all(|n| n.uid == 7),
        "only the real order: {seen:?}"
    );
    for _ in 0..unreadable.len() {
        let letter = tokio::time::timeout(WAIT, dead.next())
            .await
            .expect("a dead letter in time")
            .expect("the subscription is open")
            .expect("a dead letter");
        let original = unreadable
            .iter()
            .find(|m| m.id() == letter.message().id())
            .expect("a dead letter of one of the unreadable messages");
        assert_eq!(letter.message().payload(), original.payload());
        assert_eq!(letter.message().is_tombstone(), original.is_tombstone());
        assert_eq!(
            letter.message().headers().get(names::DEAD_LETTER_ATTEMPTS),
            Some("1"),
            "dead-lettered at its first delivery"
        );
    }
    let rest = shop.stop().await;
    assert!(rest.is_empty(), "{rest:?}");
}

backend_tests!(
    notification_arrives_with_user_and_product,
    insufficient_stock_is_a_400_without_notification,
    queue_group_notifies_each_order_once,
    unreadable_messages_are_dead_lettered_and_orders_keep_flowing,
    metrics_count_the_orders,
);

#[tokio::test]
async fn malformed_or_unknown_orders_are_refused() {
    let shop = Shop::start(Harness::shared(Backend::Memory).await, 0).await;
    let response = shop
        .client
        .post(shop.url("/order/submit"))
        .header("content-type", "application/json")
        .body(r#"{"productId":"tea"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let answer: SubmitResponse = response.json().await.expect("JSON");
    assert_eq!(answer.code, "400");
    let unknown = json!({"productId": 77, "count": 1, "uid": 1});
    shop.expect_refused(unknown, 404, "product 77 does not exist")
        .await;
    let (status, _) = shop
        .submit(json!({"productId": 1, "count": 0, "uid": 1}))
        .await;
    assert_eq!(status, 400);
    assert!(shop.stop().await.is_empty());
}

#[test]
fn memory_is_compiled_in() {
    let backends = example_support::plugin::backends();
    assert!(backends.contains(&"memory"), "{backends:?}");
    assert_eq!(backends.contains(&"nats"), cfg!(feature = "nats"));
    assert_eq!(backends.contains(&"kafka"), cfg!(feature = "kafka"));
}
