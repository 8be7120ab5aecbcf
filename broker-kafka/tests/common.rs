//! Shared helpers of the Kafka integration tests: they need a broker started with
//! `scripts/kafka.sh start` (address in `KAFKA_BROKERS`, default 127.0.0.1:9092).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_core::Broker;
use broker_kafka::{KafkaBroker, KafkaOptions};

/// The bootstrap address tests use.
pub fn brokers() -> String {
    broker_core::testkit::broker_address("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// Options tuned for a single-node test broker: short heartbeats so group changes are
/// noticed quickly.
pub fn options() -> KafkaOptions {
    KafkaOptions::new()
        .brokers(brokers().split(','))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "60000")
        .pattern_refresh(Duration::from_millis(500))
}

/// Connects, or panics saying how to start the broker.
pub async fn connect_with(options: KafkaOptions) -> KafkaBroker {
    match KafkaBroker::connect(options).await {
        Ok(broker) => broker,
        Err(err) => panic!(
            "cannot connect to Kafka at {}: {}\n  start it with: scripts/kafka.sh start (and set KAFKA_BROKERS if it is not on 127.0.0.1:9092)",
            brokers(),
            err.display_chain()
        ),
    }
}

/// Connects with [`options`].
pub async fn connect() -> KafkaBroker {
    connect_with(options()).await
}

/// As a trait object.
pub async fn connect_dyn() -> Arc<dyn Broker> {
    Arc::new(connect().await)
}

/// A topic no other test uses.
pub fn topic(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::now_v7().simple())
}

/// Waits until `condition` holds, polling, at most `timeout`; panics with `what` otherwise.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a future on a fresh multi-threaded runtime (one per test).
pub fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}
