//! The binary against real brokers: `sub` in one process sees what `pub` in others
//! published (headers, key, binary payload), `sub --count` times out with exit 3 on a
//! silent topic, and `request` gets what `reply` answers.
//!
//! Needs the brokers on 127.0.0.1 (`scripts/nats.sh start`, `scripts/kafka.sh start`;
//! `NATS_URL` and `KAFKA_BROKERS` say where when elsewhere). A missing broker fails the
//! test, it is never skipped.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use broker_core::testkit::unique_topic;
use serde_json::Value;

use common::{Listener, START_HINT, broker, jetstream_url, kafka_url, nats_url, run, run_ok};

/// Bytes that are not UTF-8, so the payload comes back as base64.
const BINARY: &[u8] = &[0x00, 0xff, 0xfe, b'o', b'k', 0x80, 0x0a];

/// `sub --count 2` in one process, two `pub`s in others: both lines carry the topic,
/// headers, key and payload bytes, and the subscriber exits 0.
fn round_trip(url: &str) {
    let topic = unique_topic("cli-roundtrip");
    let file = std::env::temp_dir().join(format!("{}.bin", topic.replace('.', "-")));
    std::fs::write(&file, BINARY).expect("write the payload file");

    let sub = Listener::start(
        broker(url).args(["sub", &topic, "--count", "2", "--timeout", "30"]),
        &topic,
    );
    let mut ids = Vec::new();
    for (n, key) in [(1, "user-7"), (2, "user-8")] {
        let output = run_ok(
            broker(url)
                .args(["-v", "pub", &topic, "-H", "trace-id=abc", "-H"])
                .arg(format!("n={n}"))
                .args(["--key", key, "--file"])
                .arg(&file),
            b"",
        );
        ids.push(published_id(&output.stderr));
    }
    let (status, stdout, stderr) = sub.finish();
    let _ = std::fs::remove_file(&file);
    assert!(status.success(), "sub on {url} failed ({status}): {stderr}");

    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "two lines on {url}: {stdout}");
    let mut keys: Vec<&str> = Vec::new();
    for line in &lines {
        assert_eq!(line["topic"], topic.as_str(), "{line}");
        let id = line["id"].as_str().unwrap_or_default().to_owned();
        assert!(ids.contains(&id), "id {id} is not one of {ids:?}: {line}");
        assert_eq!(line["headers"]["trace-id"], "abc", "{line}");
        assert!(
            line.get("payload").is_none(),
            "binary payload as text: {line}"
        );
        let payload = line["payload_base64"].as_str().unwrap_or_default();
        assert_eq!(
            STANDARD.decode(payload).ok().as_deref(),
            Some(BINARY),
            "{line}"
        );
        keys.push(line["key"].as_str().unwrap_or_default());
    }
    keys.sort_unstable();
    assert_eq!(keys, ["user-7", "user-8"], "keys on {url}: {stdout}");
    let mut ns: Vec<&str> = lines
        .iter()
        .map(|line| line["headers"]["n"].as_str().unwrap_or_default())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, ["1", "2"], "headers on {url}: {stdout}");
}

/// The id in `pub -v`'s `published ID to TOPIC` line.
fn published_id(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("published "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `published ID` line: {stderr}"))
        .to_owned()
}

/// A message published before anyone listens reaches `sub --from earliest`.
fn earliest_reads_history(url: &str) {
    let topic = unique_topic("cli-earliest");
    run_ok(broker(url).args(["pub", &topic, "before"]), b"");
    let output = run_ok(
        broker(url).args([
            "sub",
            &topic,
            "--from",
            "earliest",
            "--count",
            "1",
            "--timeout",
            "30",
        ]),
        b"",
    );
    let line: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(line["payload"], "before", "on {url}: {line}");
}

/// `sub --count 1 --timeout 2` on a topic nobody publishes to exits 3 and says why.
fn silent_topic_times_out(url: &str) {
    let topic = unique_topic("cli-silent");
    let output = run(
        broker(url).args(["sub", &topic, "--count", "1", "--timeout", "2"]),
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(3),
        "on {url}: {stderr}\n  are the brokers running? {START_HINT}"
    );
    assert!(stderr.contains("timeout"), "on {url}: {stderr}");
    assert!(output.stdout.is_empty(), "on {url}");
}

/// `reply --payload` in one process answers `request` in another, and prints the request.
fn request_reply(url: &str) {
    let url = url.to_owned();
    let topic = unique_topic("cli-greet");
    let replier = Listener::start(
        broker(&url).args([
            "reply",
            &topic,
            "--payload",
            "hello",
            "--count",
            "1",
            "--timeout",
            "30",
        ]),
        &topic,
    );
    let output = run_ok(
        broker(&url).args(["request", &topic, "--timeout", "10", "-H", "who=ada", "-"]),
        b"ada",
    );
    assert_eq!(output.stdout, b"hello\n");

    let (status, stdout, stderr) = replier.finish();
    assert!(status.success(), "reply failed ({status}): {stderr}");
    let request: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{stdout}: {e}"));
    assert_eq!(request["payload"], "ada", "{request}");
    assert_eq!(request["headers"]["who"], "ada", "{request}");
}

/// One test per scenario and backend: `round_trip::kafka` runs `round_trip(&kafka_url())`.
macro_rules! on_backends {
    ($($scenario:ident: $($backend:ident = $url:ident),+;)*) => {$(
        mod $scenario {
            $(
                #[test]
                fn $backend() {
                    super::$scenario(&super::$url());
                }
            )+
        }
    )*};
}

on_backends! {
    round_trip: nats_core = nats_url, jetstream = jetstream_url, kafka = kafka_url;
    earliest_reads_history: jetstream = jetstream_url, kafka = kafka_url;
    silent_topic_times_out: nats_core = nats_url, jetstream = jetstream_url, kafka = kafka_url;
    request_reply: nats_core = nats_url, kafka = kafka_url;
}

#[test]
fn nats_core_echo_reply_returns_the_request() {
    let url = nats_url();
    let topic = unique_topic("cli-echo");
    let replier = Listener::start(
        broker(&url).args(["reply", &topic, "--echo", "--count", "1", "--timeout", "30"]),
        &topic,
    );
    let output = run_ok(broker(&url).args(["request", &topic, "ping"]), b"");
    assert_eq!(output.stdout, b"ping\n");
    let (status, _, stderr) = replier.finish();
    assert!(status.success(), "reply failed ({status}): {stderr}");
}

#[test]
fn nats_core_request_without_a_responder_times_out() {
    let topic = unique_topic("cli-nobody");
    let output = run(
        broker(&nats_url()).args(["request", &topic, "x", "--timeout", "1"]),
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
}
