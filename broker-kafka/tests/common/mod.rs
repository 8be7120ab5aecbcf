//! Shared helpers of the Kafka integration tests: they need a broker started with
//! `scripts/kafka.sh start` (address in `KAFKA_BROKERS`, default 127.0.0.1:9092).

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use broker_core::Broker;
use broker_core::testkit::connected;
use broker_kafka::{KafkaBroker, KafkaOptions};

/// How to start the broker the tests use.
pub const START_HINT: &str =
    "scripts/kafka.sh start (and set KAFKA_BROKERS if it is not on 127.0.0.1:9092)";

/// The bootstrap address tests use.
pub fn brokers() -> String {
    broker_core::testkit::broker_address("KAFKA_BROKERS", "127.0.0.1:9092")
}

/// Options for a single-node test broker at `brokers`: short heartbeats, so that group
/// changes are noticed within a second, and a fast look-out for new topics.
pub fn options_for(brokers: &str) -> KafkaOptions {
    KafkaOptions::new()
        .brokers(brokers.split(','))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .pattern_refresh(Duration::from_millis(500))
}

/// [`options_for`] the shared test broker, with a poll interval of a minute.
pub fn options() -> KafkaOptions {
    options_for(&brokers()).set("max.poll.interval.ms", "60000")
}

/// Connects, or panics saying how to start the broker.
pub async fn connect_with(options: KafkaOptions) -> KafkaBroker {
    connected(KafkaBroker::connect(options).await, &brokers(), START_HINT)
}

/// Connects with [`options`].
pub async fn connect() -> KafkaBroker {
    connect_with(options()).await
}

/// As a trait object.
pub async fn connect_dyn() -> Arc<dyn Broker> {
    Arc::new(connect().await)
}

/// Waits until `condition` holds, polling, at most `timeout`; panics with `what` otherwise.
pub async fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(
        broker_core::testkit::wait_until(timeout, condition).await,
        "timed out after {timeout:?}: {what}"
    );
}
