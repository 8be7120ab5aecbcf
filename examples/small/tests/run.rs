//! Runs each small example to completion and checks what it prints: on memory:// always,
//! on NATS and JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`) with `--features
//! nats`, on Kafka (`KAFKA_BROKERS`, default `127.0.0.1:9092`) with `--features kafka`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run may take.
const LIMIT: Duration = Duration::from_secs(60);

/// The broker URLs of the backends compiled in, each with how to start its server.
fn brokers() -> Vec<(String, &'static str)> {
    let mut brokers = vec![("memory://".to_owned(), "nothing to start")];
    if cfg!(feature = "nats") {
        let nats = env_or("NATS_URL", "nats://127.0.0.1:4222");
        let address = nats.split_once("://").map_or(&*nats, |(_, rest)| rest);
        let start = "start it with `scripts/nats.sh start`, or point NATS_URL at a server";
        brokers.push((format!("jetstream://{address}"), start));
        brokers.push((nats, start));
    }
    if cfg!(feature = "kafka") {
        let kafka = env_or("KAFKA_BROKERS", "127.0.0.1:9092");
        let start = "start it with `scripts/kafka.sh start`, or point KAFKA_BROKERS at one";
        brokers.push((format!("kafka://{kafka}"), start));
    }
    brokers
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Runs the example `exe` on every broker compiled in; each run must exit 0 and print a
/// line starting with each of `expected`, and nothing else (in any order: on Kafka, keys
/// spread over partitions).
fn check(exe: &str, expected: &[&str]) {
    for (url, how_to_start) in brokers() {
        let stdout = run(exe, &url, how_to_start);
        let lines: Vec<&str> = stdout.lines().collect();
        for line in expected {
            assert!(
                lines.iter().any(|printed| printed.starts_with(line)),
                "{exe} on {url}: no line {line:?} in\n{stdout}"
            );
        }
        assert_eq!(lines.len(), expected.len(), "{exe} on {url}:\n{stdout}");
    }
}

/// Runs `exe` with `BROKER_URL=url` and returns its output, once it exited 0 within
/// [`LIMIT`].
fn run(exe: &str, url: &str, how_to_start: &str) -> String {
    let mut child = Command::new(exe)
        .env("BROKER_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the example's status") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{exe} on {url} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("the example's output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "{exe} on {url} exited with {status} ({how_to_start}):\n{stdout}{stderr}"
    );
    stdout
}

#[test]
fn pubsub_acks_each_greeting() {
    check(
        env!("CARGO_BIN_EXE_pubsub"),
        &[
            "greetings: hello, Ada (key Ada, lang en)",
            "greetings: hello, Grace (key Grace, lang en)",
            "greetings: hello, Linus (key Linus, lang en)",
        ],
    );
}

#[test]
fn middleware_retries_the_slow_order_and_dead_letters_the_poison() {
    check(
        env!("CARGO_BIN_EXE_middleware"),
        &[
            "handled ok",
            "handled slow",
            "dead letter poison: cannot parse the order",
        ],
    );
}

#[test]
fn request_reply_answers_until_the_responder_leaves() {
    check(
        env!("CARGO_BIN_EXE_request-reply"),
        &[
            "Ada -> hello, Ada",
            "Grace -> hello, Grace",
            "Linus -> nobody answered",
        ],
    );
}

#[test]
fn typed_json_welcomes_each_user() {
    check(
        env!("CARGO_BIN_EXE_typed-json"),
        &["welcome, Ada (user 1)", "welcome, Grace (user 2)"],
    );
}
