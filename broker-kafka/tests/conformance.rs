//! broker-kafka against the conformance kit, on a real broker:
//! `scripts/kafka.sh start` (KAFKA_BROKERS, default 127.0.0.1:9092) for every scenario,
//! and a second instance on KAFKA_RESTART_BROKERS (default 127.0.0.1:19092) that the
//! restart scenario restarts with `KAFKA_PORT=19092 scripts/kafka.sh restart`, and
//! starts the same way when it is not running.

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker_core::testkit::{Kit, broker_address, run_command};
use broker_core::{Broker, Error, Result};
use broker_kafka::KafkaBroker;

use common::options_for as options;

async fn connect(brokers: String, hint: &'static str) -> Result<Arc<dyn Broker>> {
    match KafkaBroker::connect(options(&brokers)).await {
        Ok(broker) => Ok(Arc::new(broker)),
        Err(err) => Err(Error::with_source(
            err.kind(),
            format!("no Kafka at {brokers}; start it with: {hint}"),
            err,
        )),
    }
}

/// Connects to the second instance, starting it with the project's script first when
/// it does not answer (the kit restarts it anyway, so it owns its lifecycle).
async fn connect_restartable(brokers: String) -> Result<Arc<dyn Broker>> {
    // A restart keeps the broker away for 15-30 s on a busy 2-core machine: give each
    // publish long enough to outlast it rather than time out and be retried.
    let options = || options(&brokers).publish_timeout(Duration::from_secs(90));
    if let Ok(broker) = KafkaBroker::connect(options()).await {
        return Ok(Arc::new(broker));
    }
    script("start").await?;
    match KafkaBroker::connect(options()).await {
        Ok(broker) => Ok(Arc::new(broker)),
        Err(err) => Err(Error::with_source(
            err.kind(),
            format!(
                "no Kafka at {brokers}; start it with: KAFKA_PORT=19092 scripts/kafka.sh start"
            ),
            err,
        )),
    }
}

/// Restarts the second instance with the project's script (data kept).
async fn restart() -> Result<()> {
    script("restart").await
}

/// Runs `scripts/kafka.sh <command>` for the second instance.
async fn script(command: &'static str) -> Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka.sh");
    let port = broker_address("KAFKA_RESTART_BROKERS", "127.0.0.1:19092")
        .rsplit(':')
        .next()
        .unwrap_or("19092")
        .to_owned();
    let mut script_command = std::process::Command::new("bash");
    script_command
        .arg(script)
        .arg(command)
        .env("KAFKA_PORT", port);
    run_command(script_command, format!("scripts/kafka.sh {command}"))
        .await
        .map(drop)
}

async fn kit() -> Kit {
    broker_kafka::link();
    let main = common::brokers();
    let second = broker_address("KAFKA_RESTART_BROKERS", "127.0.0.1:19092");
    Kit::from_backend(Some("scripts/kafka.sh start"), move || {
        connect(main.clone(), "scripts/kafka.sh start")
    })
    .await
    .with_features(|f| {
        f.restart(move || connect_restartable(second.clone()), restart)
            .timeout(Duration::from_secs(30))
    })
}

broker_core::conformance_suite!(kit);
