//! The benchmark's quick mode as a smoke test: every scenario runs on a few thousand
//! messages and every message is counted. No timing is asserted. `broker-backlog` runs
//! on a backlog of 20 000 messages in JetStream and in Kafka, drained and counted.
//!
//! Memory always runs. NATS and Kafka run when this crate's `nats` / `kafka` features
//! are on (`cargo test --workspace --all-features`); they then need their broker, and
//! fail, never skip, when it is not running. The go-micro peer comparison
//! (`--peer gomicro`) runs with them when `GOMICRO_PEER` names the peer binary.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use broker_core::testkit::stdout_of;

/// Runs `exe` with `args`, checks that it succeeded, and returns what it printed.
fn succeeded(exe: &str, args: &[&str]) -> String {
    stdout_of(
        Command::new(exe).args(args),
        &format!("{exe} {}", args.join(" ")),
    )
}

/// Runs `broker-bench --quick --backend <backend>` and checks it succeeded and printed a
/// row for each scenario; returns what it printed.
fn quick(backend: &str, rows_for: &[&str]) -> String {
    let stdout = succeeded(
        env!("CARGO_BIN_EXE_broker-bench"),
        &["--quick", "--no-write", "--backend", backend],
    );
    for name in rows_for {
        for scenario in [
            "publish",
            "batch publish",
            "pub→sub",
            "batch pub→sub",
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
    stdout
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
    let stdout = quick("kafka", &["kafka"]);
    let row = "| kafka, keyed handlers | keyed handlers ×8, 10 ms |";
    assert!(stdout.contains(row), "no `{row}` row in:\n{stdout}");
}

/// The go-micro peer from `GOMICRO_PEER` (`scripts/test` exports it). Unset, the peer
/// tests fail with how to build it when `REQUIRE_BROKERS` or `CI` is set, and are
/// skipped (with a note) otherwise.
#[allow(dead_code)]
fn gomicro_peer() -> bool {
    if std::env::var_os("GOMICRO_PEER").is_some_and(|p| !p.is_empty()) {
        return true;
    }
    let required = ["REQUIRE_BROKERS", "CI"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0"));
    assert!(
        !required,
        "GOMICRO_PEER is not set: build the go-micro peer with `scripts/gomicro.sh build` and export the GOMICRO_PEER=… line it prints (REQUIRE_BROKERS/CI is set, so this test does not skip)"
    );
    eprintln!("skipped: GOMICRO_PEER is not set (scripts/gomicro.sh build prints it)");
    false
}

/// Runs `broker-bench --quick --peer gomicro` on `backend` alone and checks that it
/// printed the peer's rows (for `broker`, per measure the number of rows `rows` gives),
/// its target line, and nothing of the scenarios; skips without a go-micro peer (see
/// [`gomicro_peer`]).
#[allow(dead_code)]
fn quick_peer(backend: &str, broker: &str, rows: &[(&str, usize)]) {
    if !gomicro_peer() {
        return;
    }
    let stdout = succeeded(
        env!("CARGO_BIN_EXE_broker-bench"),
        &[
            "--quick",
            "--no-write",
            "--backend",
            backend,
            "--peer",
            "gomicro",
            "--sizes",
            "128",
        ],
    );
    for &(measure, count) in rows {
        let row = format!("| {broker} | {measure} | 128 B + 3 h |");
        assert_eq!(
            stdout.matches(&row).count(),
            count,
            "expected {count} `{row}` rows in:\n{stdout}"
        );
    }
    assert!(stdout.contains("## Peer: go-micro v4"), "{stdout}");
    assert!(
        stdout.contains("| core NATS, 3 headers: publish and pub→sub ≥ 1.5× go-micro |"),
        "no target line in:\n{stdout}"
    );
    assert!(
        !stdout.contains("## Latest results"),
        "--peer alone runs only the peer comparison:\n{stdout}"
    );
}

#[cfg(feature = "nats")]
#[test]
fn quick_peer_gomicro_nats() {
    nats_host();
    quick_peer("nats-core", "nats", &[("publish", 1), ("pub→sub", 1)]);
}

#[cfg(feature = "kafka")]
#[test]
fn quick_peer_gomicro_kafka() {
    kafka_brokers();
    quick_peer("kafka", "kafka", &[("publish", 3), ("pub→sub", 1)]);
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
