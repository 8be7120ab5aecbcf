//! The benchmark's quick mode as a smoke test: every scenario runs on a few thousand
//! messages and every message is counted. No timing is asserted. `broker-backlog` runs
//! on a backlog of 20 000 messages in JetStream and in Kafka, drained and counted.
//!
//! Memory always runs. NATS and Kafka run when this crate's `nats` / `kafka` features
//! are on (`cargo test --workspace --all-features`); they then need their broker, and
//! fail, never skip, when it is not running.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

/// Runs `exe` with `args`, checks that it succeeded, and returns what it printed.
fn succeeded(exe: &str, args: &[&str]) -> String {
    let output = Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {exe}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{exe} {} failed ({}):\n{stderr}\n{stdout}",
        args.join(" "),
        output.status
    );
    stdout
}

/// Runs `broker-bench --quick --backend <backend>` and checks it succeeded and printed a
/// row for each scenario.
fn quick(backend: &str, rows_for: &[&str]) {
    let stdout = succeeded(
        env!("CARGO_BIN_EXE_broker-bench"),
        &["--quick", "--no-write", "--backend", backend],
    );
    for name in rows_for {
        for scenario in [
            "publish",
            "pub→sub",
            "round trip",
            "fan-out ×1",
            "fan-out ×4",
            "fan-out ×16",
            "queue group ×4",
        ] {
            let row = format!("| {name} | {scenario} |");
            assert!(stdout.contains(&row), "no `{row}` row in:\n{stdout}");
        }
    }
}

/// Fails with how to start the broker when nothing listens at `address`.
#[allow(dead_code)]
fn require(what: &str, address: &str, start: &str) {
    let reachable = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "{what} is not reachable at {address}: start it with `{start}` (and export the address it prints)"
    );
}

#[test]
fn quick_memory() {
    quick("memory", &["memory"]);
}

/// The NATS server from `NATS_URL`, as `[credentials@]host:port`; fails with how to start
/// it when it is not reachable.
#[cfg(feature = "nats")]
fn nats_host() -> String {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let host = url.trim_start_matches("nats://").to_owned();
    require(
        "NATS",
        host.rsplit('@').next().unwrap_or_default(),
        "scripts/nats.sh start",
    );
    host
}

/// The Kafka brokers from `KAFKA_BROKERS`; fails with how to start Kafka when the first
/// is not reachable.
#[cfg(feature = "kafka")]
fn kafka_brokers() -> String {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let first = brokers.split(',').next().unwrap_or_default();
    require("Kafka", first, "scripts/kafka.sh start");
    brokers
}

#[cfg(feature = "nats")]
#[test]
fn quick_nats() {
    nats_host();
    quick("nats", &["nats", "jetstream"]);
}

#[cfg(feature = "kafka")]
#[test]
fn quick_kafka() {
    kafka_brokers();
    quick("kafka", &["kafka"]);
}

/// Runs `broker-backlog` on a small backlog and checks that it drained it completely and
/// printed its row.
#[allow(dead_code)]
fn backlog(url: &str, backend: &str) {
    let stdout = succeeded(
        env!("CARGO_BIN_EXE_broker-backlog"),
        &["--url", url, "--messages", "20000", "--stall-secs", "20"],
    );
    let row = format!("| {backend} | 20000 | 128 B + 3 h |");
    assert!(stdout.contains(&row), "no `{row}` row in:\n{stdout}");
}

#[cfg(feature = "nats")]
#[test]
fn backlog_jetstream() {
    let host = nats_host();
    backlog(&format!("jetstream://{host}"), "jetstream");
}

#[cfg(feature = "kafka")]
#[test]
fn backlog_kafka() {
    let brokers = kafka_brokers();
    backlog(&format!("kafka://{brokers}"), "kafka");
}

#[test]
fn backlog_refuses_memory() {
    let output = Command::new(env!("CARGO_BIN_EXE_broker-backlog"))
        .args(["--url", "memory://", "--messages", "10"])
        .output()
        .expect("running broker-backlog");
    assert!(!output.status.success(), "memory:// must be refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("backlog cases"),
        "unexpected error: {stderr}"
    );
}
