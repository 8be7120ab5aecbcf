//! Interop with a real go-micro v4 service (`gomicro-peer`, interop/gomicro: go-micro.dev/v4
//! v4.9.0 with its kafka and nats broker plugins) on real NATS and Kafka brokers: Rust
//! publishes with `?format=go-micro` and go-micro reads; go-micro publishes and Rust reads
//! with `?format=accept`; a go-micro `micro.Event` reaches a typed Rust handler; and a
//! go-micro member and a Rust member share one queue group.
//!
//! Needs `GOMICRO_PEER` (`scripts/gomicro.sh build` prints it; `scripts/test` exports
//! it), NATS at `NATS_URL` (default nats://127.0.0.1:4222) and Kafka at `KAFKA_BROKERS`
//! (default 127.0.0.1:9092). Nothing is skipped: a missing piece fails the test.
#![cfg(all(feature = "nats", feature = "kafka"))]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::codec::Json;
use broker::typed::{TypedEvent, typed_handler};
use broker::{BoxError, Broker, BrokerExt, Event, HandlerOptions, Message, SubscribeOptions};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::timeout;

/// How long a go-micro subscriber may take to print READY (a Kafka group join included).
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long any one expected message, exit or publish may take.
const WAIT: Duration = Duration::from_secs(30);
/// The `-timeout` handed to the peer: it gives up on its own well after the test would.
const PEER_TIMEOUT: &str = "120s";
/// Partitions of the Kafka topics the tests create (the framework's default).
const KAFKA_PARTITIONS: usize = 3;

// ---------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------

fn peer_path() -> String {
    let path = std::env::var("GOMICRO_PEER").unwrap_or_else(|_| {
        panic!(
            "GOMICRO_PEER is not set: run `scripts/gomicro.sh build` and export the \
             GOMICRO_PEER=… line it prints (scripts/test does both)"
        )
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "GOMICRO_PEER={path} is not a file: run `scripts/gomicro.sh build` again"
    );
    path
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// `on_each_backend!(scenario: nats_test, kafka_test)`: the async fn `scenario(Backend)`
/// as two tests, one per backend.
macro_rules! on_each_backend {
    ($scenario:ident: $nats:ident, $kafka:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $nats() {
            $scenario(Backend::Nats).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $kafka() {
            $scenario(Backend::Kafka).await;
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Nats,
    Kafka,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Nats => "nats",
            Backend::Kafka => "kafka",
        }
    }

    /// The broker-rs URL with `?format=<format>`.
    fn url(self, format: &str) -> String {
        match self {
            Backend::Nats => {
                let base = nats_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}format={format}")
            }
            // Short heartbeats, so that group changes are noticed within a second.
            Backend::Kafka => format!(
                "kafka://{}?format={format}&session.timeout.ms=6000&heartbeat.interval.ms=500",
                kafka_brokers()
            ),
        }
    }

    /// The address the peer's `-addr` takes (one Kafka bootstrap server).
    fn peer_addr(self) -> String {
        match self {
            Backend::Nats => nats_url(),
            Backend::Kafka => kafka_brokers()
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    async fn connect(self, format: &str) -> Arc<dyn Broker> {
        let url = self.url(format);
        match timeout(WAIT, broker::connect(&url)).await {
            Ok(Ok(bus)) => bus,
            Ok(Err(err)) => panic!(
                "cannot connect to {url}: {}\n  is the broker running? start it with: scripts/{}.sh start",
                err.display_chain(),
                self.name()
            ),
            Err(_) => panic!("connecting to {url} took more than {WAIT:?}"),
        }
    }

    /// A topic of its own for one test: `interop.<name>.<backend>.<uuid>`.
    fn topic(self, name: &str) -> String {
        format!(
            "interop.{name}.{}.{}",
            self.name(),
            uuid::Uuid::now_v7().simple()
        )
    }

    /// Creates `topic` up front on Kafka (with the framework's partitions), so that the
    /// go-micro subscriber, which may start first, does not auto-create it with one
    /// partition. NATS subjects need nothing.
    async fn prepare_topic(self, topic: &str) {
        if self != Backend::Kafka {
            return;
        }
        let url = format!("kafka://{}", kafka_brokers());
        let admin = timeout(WAIT, broker::kafka::KafkaBroker::connect_url(&url))
            .await
            .expect("connect to Kafka in time")
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to {url}: {}\n  start it with: scripts/kafka.sh start",
                    e.display_chain()
                )
            });
        timeout(WAIT, admin.create_topic(topic))
            .await
            .expect("create the topic in time")
            .unwrap_or_else(|e| panic!("create {topic}: {}", e.display_chain()));
        assert_eq!(
            admin.options().partitions as usize,
            KAFKA_PARTITIONS,
            "the topic's partitions"
        );
        admin.close().await.expect("close the admin broker");
    }
}

// ---------------------------------------------------------------------------------------
// The go-micro peer
// ---------------------------------------------------------------------------------------

fn peer_command(backend: Backend, topic: &str) -> Command {
    let mut command = Command::new(peer_path());
    command
        .arg("-broker")
        .arg(backend.name())
        .arg("-addr")
        .arg(backend.peer_addr())
        .arg("-topic")
        .arg(topic)
        .arg("-timeout")
        .arg(PEER_TIMEOUT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The last lines a peer wrote to stderr, for failure messages.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    const KEEP: usize = 80;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().expect("stderr lock");
        if lines.len() == Self::KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn text(&self) -> String {
        let lines = self.0.lock().expect("stderr lock");
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A running `gomicro-peer sub`: its event lines as they come.
struct GoSub {
    what: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<Result<Value, String>>,
    stderr: StderrTail,
    /// How many partition claims sarama has logged for the topic (Kafka, `-v`).
    claims: watch::Receiver<usize>,
}

impl GoSub {
    /// Starts `gomicro-peer … <extra> sub` and waits for its READY line. On Kafka it
    /// runs with `-v`, so that its partition claims can be followed.
    async fn start(backend: Backend, topic: &str, extra: &[&str]) -> GoSub {
        let what = format!("gomicro-peer sub on {} {topic} {extra:?}", backend.name());
        let mut command = peer_command(backend, topic);
        if backend == Backend::Kafka {
            command.arg("-v");
        }
        command.args(extra).arg("sub");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));

        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = oneshot::channel();
        let (lines_tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if line == "READY" {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                let parsed = serde_json::from_str::<Value>(&line)
                    .map_err(|e| format!("a stdout line that is not JSON ({e}): {line}"));
                if lines_tx.send(parsed).is_err() {
                    break;
                }
            }
        });

        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = StderrTail::default();
        let (claims_tx, claims) = watch::channel(0usize);
        let claim_marker = format!("added subscription to {topic}/");
        let tail = stderr.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if line.contains(&claim_marker) {
                    claims_tx.send_modify(|n| *n += 1);
                }
                tail.push(line);
            }
        });

        let mut sub = GoSub {
            what,
            child,
            lines,
            stderr,
            claims,
        };
        match timeout(READY_WAIT, ready_rx).await {
            Ok(Ok(())) => sub,
            Ok(Err(_)) => {
                let status = timeout(WAIT, sub.child.wait()).await;
                panic!(
                    "{} exited before READY ({status:?}); stderr:\n{}",
                    sub.what,
                    sub.stderr.text()
                )
            }
            Err(_) => panic!(
                "{} printed no READY within {READY_WAIT:?}; stderr:\n{}",
                sub.what,
                sub.stderr.text()
            ),
        }
    }

    /// The next event line, checked to be one go-micro could decode.
    async fn next(&mut self) -> Value {
        let line = match timeout(WAIT, self.lines.recv()).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(bad))) => panic!("{}: {bad}", self.what),
            Ok(None) => panic!(
                "{} ended its output early; stderr:\n{}",
                self.what,
                self.stderr.text()
            ),
            Err(_) => panic!(
                "{} received nothing within {WAIT:?}; stderr:\n{}",
                self.what,
                self.stderr.text()
            ),
        };
        assert_decoded(&line, &self.what);
        line
    }

    /// The event lines printed so far, without waiting.
    fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            let line = line.unwrap_or_else(|bad| panic!("{}: {bad}", self.what));
            assert_decoded(&line, &self.what);
            out.push(line);
        }
        out
    }

    /// Waits until sarama has logged `n` partition claims for the topic (Kafka, `-v`).
    async fn wait_for_claims(&mut self, n: usize) {
        let waited = timeout(READY_WAIT, self.claims.wait_for(|claims| *claims >= n)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "{}: sarama did not claim {n} partitions within {READY_WAIT:?}; stderr:\n{}",
            self.what,
            self.stderr.text()
        );
    }

    /// Waits for the peer to exit after its `-count` events, successfully.
    async fn finish(mut self) {
        let status = timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {WAIT:?}", self.what))
            .expect("wait for the peer");
        assert!(
            status.success(),
            "{} failed ({status}); stderr:\n{}",
            self.what,
            self.stderr.text()
        );
        let extra = self.drain();
        assert!(
            extra.is_empty(),
            "{}: more events than -count: {extra:?}",
            self.what
        );
    }

    /// Stops the peer (it was started with more `-count` than it will get).
    async fn kill(mut self) {
        self.child.start_kill().expect("kill the peer");
        timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not die within {WAIT:?}", self.what))
            .expect("wait for the peer");
    }
}

fn assert_decoded(line: &Value, what: &str) {
    assert!(
        line.get("error").is_none(),
        "{what}: go-micro could not decode an event: {line}"
    );
}

/// Runs `gomicro-peer … <args> pub` to completion; the lines it printed (one per message:
/// the broker.Message it handed to the plugin).
async fn go_pub(backend: Backend, topic: &str, args: &[&str]) -> Vec<Value> {
    let what = format!("gomicro-peer pub on {} {topic} {args:?}", backend.name());
    let mut command = peer_command(backend, topic);
    command.args(args).arg("pub");
    let output = timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}); stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}")))
        .collect()
}

/// A header of a peer line.
fn header<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["header"].get(name).and_then(Value::as_str)
}

/// All headers of a peer line.
fn headers_of(line: &Value) -> BTreeMap<String, String> {
    line["header"]
        .as_object()
        .unwrap_or_else(|| panic!("no header object in {line}"))
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("header {k} is not text in {line}"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// The decoded body of a peer line.
fn body_of(line: &Value) -> Vec<u8> {
    let b64 = line["body_b64"]
        .as_str()
        .unwrap_or_else(|| panic!("no body_b64 in {line}"));
    STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("body_b64 of {line}: {e}"))
}

/// All headers of a Rust message, as text.
fn headers_of_message(message: &Message) -> BTreeMap<String, String> {
    message
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = v
                .to_str()
                .unwrap_or_else(|| panic!("header {k} is not text: {v:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Rust publishes envelopes, go-micro reads them
// ---------------------------------------------------------------------------------------

/// A payload no text codec would keep: UTF-8 outside ASCII, the characters go-micro's JSON
/// escapes, and bytes that are not UTF-8 at all.
fn awkward_payload(i: u8) -> Vec<u8> {
    let mut payload = "Grüße, 世界 ✓ <&> \"q\" \\ ".as_bytes().to_vec();
    payload.extend_from_slice(&[
        0x00, 0x01, 0x1f, 0x7f, 0x80, 0xc3, 0x28, 0xfe, 0xff, b'\n', i,
    ]);
    payload
}

async fn rust_to_go(backend: Backend) {
    const N: u8 = 3;
    let topic = backend.topic("notification.submit");
    backend.prepare_topic(&topic).await;
    let mut go = GoSub::start(backend, &topic, &["-count", &N.to_string()]).await;
    let bus = backend.connect("go-micro").await;

    let mut sent = BTreeMap::new();
    for i in 0..N {
        let trace = format!("rust-{i}");
        let message = Message::new(awkward_payload(i))
            .with_header("trace-id", trace.as_str())
            .with_header("content-type", "application/octet-stream")
            .with_header("x-note", "naïve café ✓ <&>");
        timeout(WAIT, bus.publish(&topic, message.clone()))
            .await
            .expect("publish in time")
            .unwrap_or_else(|e| panic!("publish {trace}: {}", e.display_chain()));
        sent.insert(trace, message);
    }

    // Kafka spreads them over partitions, so they are matched by trace id, not order.
    let mut got = BTreeMap::new();
    for _ in 0..N {
        let line = go.next().await;
        let trace = header(&line, "trace-id")
            .unwrap_or_else(|| panic!("no trace-id: {line}"))
            .to_owned();
        assert!(got.insert(trace, line).is_none(), "a message came twice");
    }
    go.finish().await;

    for (trace, message) in &sent {
        let line = got
            .get(trace)
            .unwrap_or_else(|| panic!("{trace} did not arrive; got {got:?}"));
        assert_eq!(line["topic"], topic.as_str(), "{line}");
        assert_eq!(
            body_of(line),
            message.payload().as_ref(),
            "the body of {trace}"
        );
        let mut headers = headers_of(line);
        if backend == Backend::Kafka {
            // The Kafka backend also writes the id as the record header x-message-id,
            // and go-micro's Kafka plugin copies record headers into the Header.
            assert_eq!(
                headers.remove("x-message-id").as_deref(),
                Some(message.id().as_str()),
                "x-message-id on Kafka: {line}"
            );
        }
        let expected: BTreeMap<String, String> = [
            ("trace-id", trace.as_str()),
            ("content-type", "application/octet-stream"),
            ("x-note", "naïve café ✓ <&>"),
            // go-micro's own: its subscribers route on Micro-Topic and pick their codec
            // from Content-Type, spelled so.
            ("Micro-Topic", topic.as_str()),
            ("Micro-Id", message.id().as_str()),
            ("Content-Type", "application/octet-stream"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(headers, expected, "the headers go-micro saw for {trace}");
    }
    bus.close().await.expect("close");
}

on_each_backend!(rust_to_go: rust_to_go_nats, rust_to_go_kafka);

// ---------------------------------------------------------------------------------------
// 2. go-micro publishes, Rust reads with ?format=accept
// ---------------------------------------------------------------------------------------

async fn go_to_rust(backend: Backend) {
    let topic = backend.topic("user.created");
    let bus = backend.connect("accept").await;
    // Subscribed (on Kafka: joined, with its partitions) before go-micro publishes.
    let mut sub = timeout(WAIT, bus.subscribe(&topic, SubscribeOptions::new()))
        .await
        .expect("subscribe in time")
        .unwrap_or_else(|e| panic!("subscribe {topic}: {}", e.display_chain()));

    let body = r#"{"id":"42","name":"Ada"}"#;
    let printed = go_pub(
        backend,
        &topic,
        &["-H", "trace-id=go-1", "-H", "x-user-id=42", "-body", body],
    )
    .await;
    assert_eq!(printed.len(), 1, "one message published: {printed:?}");
    let sent = &printed[0];

    let delivery = timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {topic} within {WAIT:?}"))
        .expect("the subscription is open")
        .unwrap_or_else(|e| panic!("a delivery: {}", e.display_chain()));
    let message = delivery.message().clone();
    assert_eq!(delivery.topic(), topic);
    assert_eq!(
        message.payload().as_ref(),
        body.as_bytes(),
        "the body, unwrapped"
    );
    assert_eq!(message.headers().get("trace-id"), Some("go-1"));
    assert_eq!(message.headers().get("x-user-id"), Some("42"));
    // Exactly what go-micro put in the envelope: its own Micro-* headers when it adds any
    // (broker.Publish adds none), nothing more and nothing lost.
    let go_headers = headers_of(sent);
    assert_eq!(headers_of_message(&message), go_headers, "the headers");
    if let Some(id) = go_headers.get("Micro-Id") {
        assert_eq!(message.id().as_str(), id, "Micro-Id is the message id");
    }
    timeout(WAIT, delivery.ack())
        .await
        .expect("ack in time")
        .expect("ack");
    drop(sub);
    bus.close().await.expect("close");
}

on_each_backend!(go_to_rust: go_to_rust_nats, go_to_rust_kafka);

// ---------------------------------------------------------------------------------------
// 3. Seed 002: a go-micro micro.Event order, handled by a typed Rust handler
// ---------------------------------------------------------------------------------------

/// The order of `notification.submit`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SubmitRequest {
    order_id: String,
    product_id: i64,
    count: i32,
    uid: i64,
    product_name: String,
}

async fn go_event_to_typed_handler(backend: Backend) {
    let topic = backend.topic("notification.submit");
    let order = SubmitRequest {
        order_id: "7263011874593".to_owned(),
        product_id: 1,
        count: 2,
        uid: 42,
        product_name: "Tea ☕ <green>".to_owned(),
    };
    let bus = backend.connect("accept").await;
    let (tx, mut orders) = mpsc::unbounded_channel::<TypedEvent<SubmitRequest>>();
    let handler = typed_handler(Json, move |event: TypedEvent<SubmitRequest>| {
        let sent = tx.send(event);
        async move {
            sent.map_err(|_| "the test stopped listening")?;
            Ok::<_, BoxError>(())
        }
    });
    let queue = format!("notification-{}", uuid::Uuid::now_v7().simple());
    let handle = timeout(
        WAIT,
        bus.subscribe_with(
            &topic,
            SubscribeOptions::new().queue(queue),
            HandlerOptions::new(),
            handler,
        ),
    )
    .await
    .expect("subscribe in time")
    .unwrap_or_else(|e| panic!("subscribe {topic}: {}", e.display_chain()));

    let json = serde_json::to_string(&order).expect("JSON");
    let printed = go_pub(
        backend,
        &topic,
        &["-via", "event", "-H", "trace-id=go-order-1", "-body", &json],
    )
    .await;
    assert_eq!(printed.len(), 1, "one event published: {printed:?}");
    let sent = &printed[0];
    // What client.Publish built: the payload through Go's json.Encoder (`<` and `>`
    // escaped as \u003c and \u003e, a newline after it), and go-micro's own headers.
    let sent_body = body_of(sent);
    assert_eq!(sent_body.last(), Some(&b'\n'), "json.Encoder's newline");
    assert_eq!(
        serde_json::from_slice::<SubmitRequest>(&sent_body).expect("JSON"),
        order
    );
    assert_eq!(header(sent, "Content-Type"), Some("application/json"));

    let got = timeout(WAIT, orders.recv())
        .await
        .unwrap_or_else(|_| panic!("the handler got nothing on {topic} within {WAIT:?}"))
        .expect("the handler is alive");
    assert_eq!(got.value, order, "the decoded order");
    assert_eq!(got.event.topic(), topic);
    let message = got.event.message();
    assert_eq!(
        message.payload().as_ref(),
        sent_body.as_slice(),
        "the body go-micro sent"
    );
    assert_eq!(
        headers_of_message(message),
        headers_of(sent),
        "the event's headers"
    );
    assert_eq!(message.headers().get("Micro-Topic"), Some(topic.as_str()));
    assert_eq!(
        message.headers().get("Content-Type"),
        Some("application/json")
    );
    // go-micro passes context metadata through strings.Title: trace-id becomes Trace-Id.
    assert_eq!(message.headers().get("Trace-Id"), Some("go-order-1"));
    let micro_id = message
        .headers()
        .get("Micro-Id")
        .expect("go-micro's Micro-Id");
    assert_eq!(
        message.id().as_str(),
        micro_id,
        "Micro-Id is the message id"
    );

    timeout(WAIT, handle.shutdown())
        .await
        .expect("shut down in time")
        .expect("shutdown");
    assert!(orders.try_recv().is_err(), "one order, handled once");
    bus.close().await.expect("close");
}

on_each_backend!(go_event_to_typed_handler: go_event_to_typed_handler_nats, go_event_to_typed_handler_kafka);

// ---------------------------------------------------------------------------------------
// 4. One queue group, a go-micro member and a Rust member
// ---------------------------------------------------------------------------------------

async fn shared_queue_group(backend: Backend) {
    const N: usize = 40;
    let topic = backend.topic("queue");
    let queue = format!("interop-q-{}", uuid::Uuid::now_v7().simple());
    backend.prepare_topic(&topic).await;

    // go-micro first: on Kafka it pins the group's start offsets while the group is
    // still empty, and must have joined (claimed every partition) before the Rust member
    // comes, so that the one rebalance the Rust member causes happens before anything is
    // published. It never reaches -count; it is killed at the end.
    let mut go_args = vec!["-queue", queue.as_str(), "-count", "100000"];
    if backend == Backend::Kafka {
        // So that sarama can commit to Kafka 4 (OffsetCommit v2 instead of v1).
        go_args.extend(["-retention", "168h"]);
    }
    let mut go = GoSub::start(backend, &topic, &go_args).await;
    if backend == Backend::Kafka {
        go.wait_for_claims(KAFKA_PARTITIONS).await;
    }

    let reader = backend.connect("accept").await;
    let rust_seen: Arc<Mutex<Vec<Message>>> = Arc::default();
    let seen = rust_seen.clone();
    let handle = timeout(
        WAIT * 2,
        reader.subscribe_with(
            &topic,
            SubscribeOptions::new().queue(queue.as_str()),
            HandlerOptions::new(),
            move |event: Event| {
                seen.lock()
                    .expect("seen lock")
                    .push(event.message().clone());
                async { Ok::<_, BoxError>(()) }
            },
        ),
    )
    .await
    .expect("subscribe in time")
    .unwrap_or_else(|e| panic!("subscribe {topic} in {queue}: {}", e.display_chain()));

    let publisher = backend.connect("go-micro").await;
    let mut expected = BTreeMap::new();
    for i in 0..N {
        let body = format!("job-{i:02}");
        // Keys spread the jobs over every Kafka partition (the key travels natively).
        let message = Message::new(body.clone())
            .with_key(&body)
            .with_header("seq", i.to_string());
        expected.insert(body, message.id().as_str().to_owned());
        timeout(WAIT, publisher.publish(&topic, message))
            .await
            .expect("publish in time")
            .unwrap_or_else(|e| panic!("publish job {i}: {}", e.display_chain()));
    }

    // Collect until every job has arrived somewhere, then a little longer, so that a
    // job handled twice would show.
    let mut go_seen = Vec::new();
    let all_in = timeout(Duration::from_secs(60), async {
        loop {
            go_seen.extend(go.drain());
            if go_seen.len() + rust_seen.lock().expect("seen lock").len() >= N {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    go_seen.extend(go.drain());
    go.kill().await;
    timeout(WAIT, handle.shutdown())
        .await
        .expect("shut down in time")
        .expect("shutdown");
    publisher.close().await.expect("close");
    reader.close().await.expect("close");

    let rust_seen = rust_seen.lock().expect("seen lock").clone();
    let mut handled: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in &go_seen {
        let body = String::from_utf8(body_of(line)).expect("a text body");
        assert_eq!(line["topic"], topic.as_str());
        assert_eq!(
            header(line, "Micro-Id"),
            expected.get(&body).map(String::as_str),
            "the id of {body} (go-micro)"
        );
        handled.entry(body).or_default().push("go-micro");
    }
    for message in &rust_seen {
        let body = String::from_utf8(message.payload().to_vec()).expect("a text body");
        assert_eq!(
            Some(message.id().as_str()),
            expected.get(&body).map(String::as_str),
            "the id of {body} (Rust)"
        );
        handled.entry(body).or_default().push("rust");
    }
    let summary = format!(
        "go-micro handled {}, Rust handled {}: {handled:?}",
        go_seen.len(),
        rust_seen.len()
    );
    eprintln!("{} queue group {queue}: {summary}", backend.name());
    assert!(all_in.is_ok(), "not every job arrived in 60 s; {summary}");
    let twice: Vec<_> = handled.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "handled more than once: {twice:?}; {summary}"
    );
    assert_eq!(
        handled.keys().cloned().collect::<BTreeSet<_>>(),
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        "every job, each once; {summary}"
    );
    assert!(
        !go_seen.is_empty() && !rust_seen.is_empty(),
        "both members got work; {summary}"
    );
}

on_each_backend!(shared_queue_group: shared_queue_group_nats, shared_queue_group_kafka);
