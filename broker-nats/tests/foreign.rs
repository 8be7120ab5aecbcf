//! Messages another client writes, in shapes this crate's own publisher never produces:
//! a raw TCP client speaks the NATS protocol and sends, at full speed among thousands of
//! good messages, `HPUB` frames whose header block the Rust client cannot parse (a line
//! without a colon, a non-ASCII header name, a value that is not UTF-8). nats-server
//! forwards all three. None of them may cost the connection or another message.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use broker_core::headers::names;
use broker_core::middleware::DeadLetterLayer;
use broker_core::testkit::{expect_delivery, subscribe};
use broker_core::typed::TypedEvent;
use broker_core::typed::typed_handler;
use broker_core::{
    Broker, BrokerExt, Delivery, ErrorKind, HandlerExt, HandlerOptions, SubscribeOptions,
    Subscription, codec::Json,
};
use broker_nats::NatsBroker;
use common::connect;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);

/// The header blocks of the bad frames: each is forwarded by nats-server as it is.
const BAD_HEADER_BLOCKS: [&[u8]; 3] = [
    b"NATS/1.0\r\nno colon on this line\r\n\r\n",
    "NATS/1.0\r\nÜnïcode-Name: x\r\n\r\n".as_bytes(),
    b"NATS/1.0\r\nX-Binary: \xff\xfe\x80\r\n\r\n",
];

/// A NATS client of a few lines, written against the protocol, not this crate.
struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    async fn connect() -> RawClient {
        let url = common::nats_url();
        let address = url.trim_start_matches("nats://").to_owned();
        let stream = TcpStream::connect(&address).await.unwrap_or_else(|e| {
            panic!(
                "raw connect to {address}: {e}; start it with: {}",
                common::START_HINT
            )
        });
        let mut client = RawClient {
            stream: BufReader::new(stream),
        };
        let info = client.line().await;
        assert!(
            info.starts_with("INFO "),
            "the server greets with INFO: {info}"
        );
        client
            .write(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
            .await;
        client.flush_and_wait().await;
        client
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(WAIT, self.stream.read_line(&mut line))
            .await
            .expect("a line from the server in time")
            .expect("read");
        line
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.expect("write");
    }

    /// PING, and waits for the PONG: the server has taken everything written before.
    async fn flush_and_wait(&mut self) {
        self.write(b"PING\r\n").await;
        loop {
            let line = self.line().await;
            assert!(
                !line.starts_with("-ERR"),
                "the server refused a frame: {line}"
            );
            if line.starts_with("PONG") {
                return;
            }
        }
    }
}

fn pub_frame(subject: &str, payload: &[u8]) -> Vec<u8> {
    let mut frame = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

fn hpub_frame(subject: &str, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut frame = format!(
        "HPUB {subject} {} {}\r\n",
        header.len(),
        header.len() + payload.len()
    )
    .into_bytes();
    frame.extend_from_slice(header);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    frame
}

/// `good` messages `{"n":i}` (every tenth with a valid header block), with the bad frames
/// spread among them; all in one buffer, so they go out at full speed. The bad payloads
/// are `bad-0`, `bad-1`, `bad-2`.
fn frames(subject: &str, good: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let spread = good / (BAD_HEADER_BLOCKS.len() + 1);
    for i in 0..good {
        let payload = format!("{{\"n\":{i}}}");
        if i % 10 == 0 {
            out.extend(hpub_frame(
                subject,
                b"NATS/1.0\r\nfrom: raw\r\n\r\n",
                payload.as_bytes(),
            ));
        } else {
            out.extend(pub_frame(subject, payload.as_bytes()));
        }
        if i % spread == spread - 1 && i / spread < BAD_HEADER_BLOCKS.len() {
            let bad = i / spread;
            out.extend(hpub_frame(
                subject,
                BAD_HEADER_BLOCKS[bad],
                format!("bad-{bad}").as_bytes(),
            ));
        }
    }
    out
}

/// Sends [`frames`] for `subject` (`good` good messages and the bad ones) with a raw
/// client, and waits until the server has taken them all.
async fn send_frames(subject: &str, good: usize) {
    let mut raw = RawClient::connect().await;
    raw.write(&frames(subject, good)).await;
    raw.flush_and_wait().await;
}

/// Sends [`frames`] to `subject` and reads them from `sub`: every good message arrives
/// (acked) and every bad one, as [`assert_bad_deliveries`] says; returns the bad ones.
async fn send_and_read_all(sub: &mut Subscription, subject: &str, good: usize) -> Vec<Delivery> {
    send_frames(subject, good).await;
    let (good_seen, bad) = read_all(sub, good).await;
    assert_eq!(good_seen, good, "good messages lost");
    assert_bad_deliveries(&bad);
    bad
}

/// Reads `sub` until `good` good messages and every bad one arrived; returns the good
/// count and the bad deliveries. An error item (a lost connection, dropped messages)
/// fails the test.
async fn read_all(sub: &mut Subscription, good: usize) -> (usize, Vec<Delivery>) {
    let mut good_seen = 0;
    let mut bad = Vec::new();
    while good_seen < good || bad.len() < BAD_HEADER_BLOCKS.len() {
        let item = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("stalled at {good_seen} good, {} bad", bad.len()))
            .expect("the subscription stays open");
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(err) => panic!("an error item: {}", err.display_chain()),
        };
        if delivery.message().payload().starts_with(b"bad-") {
            bad.push(delivery);
        } else {
            assert!(delivery.defect().is_none(), "a good message has a defect");
            good_seen += 1;
            delivery.ack().await.expect("ack");
        }
    }
    (good_seen, bad)
}

fn assert_bad_deliveries(bad: &[Delivery]) {
    let mut payloads: Vec<_> = bad.iter().map(|d| d.message().payload().clone()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        ["bad-0", "bad-1", "bad-2"],
        "each bad message arrives once"
    );
    for delivery in bad {
        let defect = delivery
            .defect()
            .expect("a bad message says what could not be read");
        assert_eq!(defect.kind(), ErrorKind::Codec);
        assert!(
            defect.message().contains("malformed header block"),
            "{defect}"
        );
        assert!(delivery.message().headers().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_malformed_headers_cost_no_connection_and_no_message() {
    const GOOD: usize = 20_000;
    let broker = connect(&common::nats_url()).await;
    let subject = common::core_topic("foreign.core");
    let mut sub = subscribe(&broker, &subject, SubscribeOptions::new()).await;
    send_and_read_all(&mut sub, &subject, GOOD).await;
    assert_eq!(broker.dropped_messages(), 0);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_malformed_headers_are_redelivered_with_a_stable_id_up_to_max_deliver() {
    const GOOD: usize = 3_000;
    const MAX_DELIVER: u32 = 3;
    let broker = connect(&common::jetstream_url(&format!(
        "?max_age_secs=3600&max_deliver={MAX_DELIVER}"
    )))
    .await;
    let subject = format!("{}.orders", common::unique_token("foreignjs"));
    let mut sub = broker
        .subscribe(
            &subject,
            SubscribeOptions::new()
                .queue(common::unique_token("g"))
                .manual_ack(),
        )
        .await
        .expect("subscribe creates the stream");
    let bad = send_and_read_all(&mut sub, &subject, GOOD).await;
    // Nack every bad delivery until the server stops: max_deliver applies to them, and
    // each comes back with the id it had (the stream position: no id header was sent).
    let mut seen: HashMap<String, (String, u32)> = HashMap::new();
    let mut pending = bad;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for delivery in pending.drain(..) {
            let payload = String::from_utf8_lossy(delivery.message().payload()).into_owned();
            let id = delivery.message().id().to_string();
            let attempt = delivery.attempt().expect("JetStream counts deliveries");
            let entry = seen.entry(payload.clone()).or_insert((id.clone(), 0));
            assert_eq!(
                entry.0, id,
                "{payload}: the id is stable across redeliveries"
            );
            assert!(id.contains('-'), "the stream position as id: {id}");
            entry.1 = entry.1.max(attempt);
            delivery.nack().await.expect("nack");
        }
        if seen.values().all(|(_, attempts)| *attempts == MAX_DELIVER) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redeliveries stalled: {seen:?}"
        );
        pending.push(expect_delivery(&mut sub, WAIT, "expected a redelivery").await);
    }
    // Past max_deliver nothing comes back.
    let extra = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    assert!(extra.is_err(), "a delivery past max_deliver: {extra:?}");
    broker.close().await.expect("close");
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
struct Numbered {
    n: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_malformed_headers_go_to_the_dead_letter_topic_at_once() {
    const GOOD: usize = 1_000;
    let broker = std::sync::Arc::new(connect(&common::jetstream_url("?max_age_secs=3600")).await)
        as std::sync::Arc<dyn Broker>;
    let token = common::unique_token("foreignjs");
    let subject = format!("{token}.orders");
    let dead_topic = format!("{token}.dead");
    let mut dead = subscribe(&*broker, &dead_topic, SubscribeOptions::new()).await;
    let (tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let handler = typed_handler(Json, move |event: TypedEvent<Numbered>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.value.n);
            Ok::<(), broker_core::BoxError>(())
        }
    })
    .with(DeadLetterLayer::new(broker.clone(), dead_topic.clone()));
    let handle = broker
        .subscribe_with(
            &subject,
            SubscribeOptions::new().queue(common::unique_token("g")),
            HandlerOptions::new(),
            handler,
        )
        .await
        .expect("subscribe_with");
    send_frames(&subject, GOOD).await;

    let mut numbers = Vec::with_capacity(GOOD);
    while numbers.len() < GOOD {
        match tokio::time::timeout(WAIT, handled.recv()).await {
            Ok(Some(n)) => numbers.push(n),
            _ => panic!("handled {} of {GOOD}", numbers.len()),
        }
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), GOOD, "every good message handled");
    let mut letters = Vec::new();
    while letters.len() < BAD_HEADER_BLOCKS.len() {
        letters.push(expect_delivery(&mut dead, WAIT, "expected a dead letter").await);
    }
    for letter in &letters {
        let h = letter.message().headers();
        assert_eq!(
            h.get(names::DEAD_LETTER_ATTEMPTS),
            Some("1"),
            "dead-lettered at once"
        );
        assert!(
            h.get(names::DEAD_LETTER_ERROR)
                .is_some_and(|e| e.contains("header block")),
            "{h:?}"
        );
        assert!(letter.message().payload().starts_with(b"bad-"));
    }
    handle.shutdown().await.expect("shutdown");
    broker.close().await.expect("close");
}

/// A server that says it is nats-server 2.9.10 (Debian's package), spoken by a raw
/// socket: `jetstream://` refuses it, naming the version it needs, instead of failing
/// later with an error that blames JetStream being off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_names_the_server_version_it_needs() {
    let (listener, port) = common::local_listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut stream = BufReader::new(stream);
        let info = format!(
            "INFO {{\"server_id\":\"old\",\"version\":\"2.9.10\",\"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"proto\":1}}\r\n"
        );
        stream
            .get_mut()
            .write_all(info.as_bytes())
            .await
            .expect("INFO");
        let mut line = String::new();
        while stream.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            if line.starts_with("PING") {
                stream.get_mut().write_all(b"PONG\r\n").await.expect("PONG");
            }
            line.clear();
        }
    });
    let err = NatsBroker::connect_url(&format!("jetstream://127.0.0.1:{port}"))
        .await
        .expect_err("a 2.9 server cannot serve jetstream://");
    assert_eq!(
        err.kind(),
        ErrorKind::Unsupported,
        "{}",
        err.display_chain()
    );
    assert!(
        err.message().contains("needs nats-server 2.10 or newer")
            && err.message().contains("2.9.10"),
        "{err}"
    );
    server.abort();
}
