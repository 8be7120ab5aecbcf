//! Records that clients this project did not write produce, read back byte for byte:
//! librdkafka's own producer (through rdkafka, without this crate) and confluent-kafka
//! from PyPI (`scripts/foreign.sh install`, found through `FOREIGN_PYTHON`). Each test
//! republishes what it received with this crate and has the foreign client read it again.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use broker_core::options::StartPosition;
use broker_core::testkit::{expect_delivery, publish, stdout_of, subscribe, unique_topic};
use broker_core::{Broker, Delivery, Message, SubscribeOptions, Subscription};
use broker_kafka::KafkaBroker;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::{brokers, connect};

const WAIT: Duration = Duration::from_secs(30);

/// A binary key such as Java's `IntegerSerializer` or Avro writes: not UTF-8.
const BINARY_KEY: [u8; 5] = [0xff, 0x00, 0xfe, 0x80, 0x41];
const BINARY_VALUE: [u8; 3] = [0xff, 0x00, 0xfe];
const PARTITIONS: i32 = 4;

/// One record as a foreign client sees it: key, value and headers, with null kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The records every test writes: binary key and header values, a null and an empty
/// header value, text, and a tombstone.
fn fixture() -> Vec<Record> {
    vec![
        Record {
            key: Some(BINARY_KEY.to_vec()),
            value: Some(b"binary key".to_vec()),
            headers: vec![
                ("bin".into(), Some(BINARY_VALUE.to_vec())),
                ("null".into(), None),
                ("empty".into(), Some(Vec::new())),
                ("text".into(), Some("héllo".as_bytes().to_vec())),
            ],
        },
        Record {
            key: Some(b"user-7".to_vec()),
            value: None,
            headers: vec![("reason".into(), Some(b"deleted".to_vec()))],
        },
    ]
}

async fn create_topics(names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// Two new topics, `<name>.in` and `<name>.out` (made unique), made with [`create_topics`].
async fn in_and_out(name: &str) -> (String, String) {
    let (from, to) = (
        unique_topic(&format!("{name}.in")),
        unique_topic(&format!("{name}.out")),
    );
    create_topics(&[&from, &to]).await;
    (from, to)
}

/// librdkafka's own producer, on the test broker.
fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("producer")
}

/// Writes `records` with librdkafka's own producer; returns the partition of each.
async fn produce_raw(topic: &str, records: &[Record]) -> Vec<i32> {
    let producer = producer();
    let mut partitions = Vec::new();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        if let Some(value) = &record.value {
            out = out.payload(value);
        }
        let delivered = producer
            .send(out, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw produce");
        partitions.push(delivered.partition);
    }
    partitions
}

/// Reads `count` records of `topic` with librdkafka's own consumer, with their partitions.
fn consume_raw(topic: &str, count: usize) -> Vec<(i32, Record)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("foreign-{}", uuid::Uuid::now_v7()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while out.len() < count && std::time::Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            message.partition(),
            Record {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers,
            },
        ));
    }
    assert_eq!(out.len(), count, "raw consumer: records read from {topic}");
    out
}

/// What this crate made of a foreign record, as a record again.
fn as_record(message: &Message) -> Record {
    Record {
        key: message.key().map(<[u8]>::to_vec),
        value: (!message.is_tombstone()).then(|| message.payload().to_vec()),
        headers: message
            .headers()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.bytes().map(|b| b.to_vec())))
            .collect(),
    }
}

/// A subscription to `topic` in a group of its own, reading from the start.
async fn subscribe_from_the_start(broker: &KafkaBroker, topic: &str) -> Subscription {
    let options = SubscribeOptions::new()
        .queue(format!("foreign-{}", uuid::Uuid::now_v7().simple()))
        .start(StartPosition::Earliest);
    subscribe(broker, topic, options).await
}

/// The next delivery of `sub`, within 30 s.
async fn next(sub: &mut Subscription) -> Delivery {
    expect_delivery(sub, WAIT, "a delivery within 30 s").await
}

/// Subscribes from the start of `from`, takes `count` deliveries, republishes each
/// message as it arrived to `to`, and returns what arrived.
async fn receive_and_republish(
    broker: &KafkaBroker,
    from: &str,
    to: &str,
    count: usize,
) -> Vec<Message> {
    let mut sub = subscribe_from_the_start(broker, from).await;
    let mut got = Vec::new();
    while got.len() < count {
        let delivery = next(&mut sub).await;
        publish(broker, to, delivery.message().clone()).await;
        got.push(delivery.message().clone());
        delivery.ack().await.expect("ack");
    }
    got
}

/// The foreign view of a republished record, without the id header this crate adds.
fn without_id(mut record: Record) -> Record {
    record
        .headers
        .retain(|(name, _)| name != broker_core::headers::names::MESSAGE_ID);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_records_keep_their_bytes_nulls_and_tombstones_through_a_republish() {
    let (from, to) = in_and_out("foreign.raw").await;
    let records = fixture();
    let partitions = produce_raw(&from, &records).await;

    let broker = connect().await;
    let got = receive_and_republish(&broker, &from, &to, records.len()).await;
    let got_records: BTreeSet<Record> = got.iter().map(as_record).collect();
    assert_eq!(
        got_records,
        records.iter().cloned().collect(),
        "as this crate received them"
    );
    let tombstone = got
        .iter()
        .find(|m| m.key() == Some(&b"user-7"[..]))
        .expect("the tombstone");
    assert!(tombstone.is_tombstone(), "a null value is a tombstone");
    let binary = got
        .iter()
        .find(|m| m.key() == Some(&BINARY_KEY[..]))
        .expect("the binary-keyed record");
    assert!(!binary.is_tombstone());
    assert_eq!(binary.key_str(), None, "a binary key is not text");
    assert!(
        binary
            .headers()
            .get_value("null")
            .is_some_and(|v| v.is_null())
    );
    assert_eq!(binary.headers().get("empty"), Some(""));
    // Ids of foreign records are their position: the same on every delivery.
    assert!(
        got.iter()
            .all(|m| m.id().as_str().starts_with(&format!("{from}-"))),
        "{got:?}"
    );

    let back = consume_raw(&to, records.len());
    for (partition, record) in &back {
        let record = without_id(record.clone());
        let i = records
            .iter()
            .position(|r| *r == record)
            .unwrap_or_else(|| panic!("republished record changed: {record:?}"));
        assert_eq!(
            *partition, partitions[i],
            "the same key bytes pick the same partition"
        );
    }
    broker.close().await.expect("close");
}

/// The python of the environment `scripts/foreign.sh install` made.
fn foreign_python() -> PathBuf {
    match std::env::var_os("FOREIGN_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "FOREIGN_PYTHON is not set: run `scripts/foreign.sh install` and export the line it prints (scripts/test does)"
        ),
    }
}

fn hex(bytes: &Option<Vec<u8>>) -> serde_json::Value {
    match bytes {
        Some(bytes) => {
            serde_json::Value::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
        None => serde_json::Value::Null,
    }
}

fn unhex(value: &serde_json::Value) -> Option<Vec<u8>> {
    let text = value.as_str()?;
    Some(
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

fn python_client(args: &[&str]) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/foreign/kafka_client.py"
    );
    stdout_of(
        std::process::Command::new(foreign_python())
            .arg(script)
            .args(args),
        &format!("the confluent-kafka client {args:?}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_records_keep_their_bytes_through_a_republish() {
    let (from, to) = in_and_out("foreign.py").await;
    let records = fixture();
    let spec: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "key": hex(&r.key),
                "value": hex(&r.value),
                "headers": r.headers.iter().map(|(n, v)| serde_json::json!([n, hex(v)])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let spec = serde_json::Value::from(spec).to_string();
    let brokers = brokers();
    tokio::task::spawn_blocking({
        let (brokers, from) = (brokers.clone(), from.clone());
        move || python_client(&["produce", &brokers, &from, &spec])
    })
    .await
    .expect("producer task");

    let broker = connect().await;
    let got = receive_and_republish(&broker, &from, &to, records.len()).await;
    let got_records: BTreeSet<Record> = got.iter().map(as_record).collect();
    assert_eq!(got_records, records.iter().cloned().collect());

    let count = records.len().to_string();
    let lines =
        tokio::task::spawn_blocking(move || python_client(&["consume", &brokers, &to, &count]))
            .await
            .expect("consumer task");
    let back: BTreeSet<Record> = lines
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            without_id(Record {
                key: unhex(&v["key"]),
                value: unhex(&v["value"]),
                headers: v["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h[0].as_str().expect("name").to_owned(), unhex(&h[1])))
                    .collect(),
            })
        })
        .collect();
    assert_eq!(
        back,
        records.into_iter().collect(),
        "what confluent-kafka reads back after the republish"
    );
    broker.close().await.expect("close");
}

/// A header name that is not UTF-8 (another client wrote it; Java's `String` cannot, but
/// the wire format and librdkafka's C API take any bytes) no longer breaks the consumer:
/// the record arrives without that header and with a defect, and later records keep
/// coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_left_out_with_a_defect_and_later_records_keep_coming() {
    const BAD_NAME: [u8; 3] = [0xff, 0xfe, 0x41];
    let topic = unique_topic("foreign.badname");
    create_topics(&[&topic]).await;
    let producer = producer();
    // One key: one partition, so the order of arrival is the order written.
    let values = ["good-1", "good-2", "bad", "good-3", "good-4"];
    for value in values {
        let headers = if value == "bad" {
            OwnedHeaders::new()
                .insert_raw(b"ok", Some(b"1"))
                .insert_raw(&BAD_NAME, Some(b"x"))
                .insert_raw(b"after", Some(b"2"))
        } else {
            OwnedHeaders::new().insert(Header {
                key: "n",
                value: Some(value),
            })
        };
        let record: FutureRecord<'_, str, str> = FutureRecord::to(&topic)
            .key("one-key")
            .payload(value)
            .headers(headers);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw produce");
    }

    let broker = connect().await;
    let mut sub = subscribe_from_the_start(&broker, &topic).await;
    let mut got = Vec::new();
    while got.len() < values.len() {
        let delivery = next(&mut sub).await;
        let headers = as_record(delivery.message()).headers;
        let defect = delivery.defect().map(|e| (e.kind(), e.to_string()));
        let payload = String::from_utf8_lossy(delivery.message().payload()).into_owned();
        got.push((payload, headers, defect));
        delivery.ack().await.expect("ack");
    }
    let payloads: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        payloads, values,
        "every record arrives, in order, the good ones after the bad one too"
    );
    for (payload, headers, defect) in &got {
        if payload == "bad" {
            let (kind, text) = defect.as_ref().expect("the bad record has a defect");
            assert_eq!(*kind, broker_core::ErrorKind::Codec);
            assert!(text.contains(r#"b"\xff\xfeA""#), "{text}");
            assert_eq!(
                *headers,
                vec![
                    ("ok".to_owned(), Some(b"1".to_vec())),
                    ("after".to_owned(), Some(b"2".to_vec())),
                ],
                "the header with the bad name is left out, the others stay in order"
            );
        } else {
            assert_eq!(*defect, None, "{payload:?}");
            assert_eq!(
                *headers,
                vec![("n".to_owned(), Some(payload.as_bytes().to_vec()))]
            );
        }
    }

    // rdkafka itself (patched) reads the record too: the name shows as U+FFFD.
    let raw = consume_raw(&topic, values.len());
    let bad = raw
        .iter()
        .find(|(_, r)| r.value.as_deref() == Some(&b"bad"[..]))
        .expect("the bad record, read raw");
    let names: Vec<&str> = bad.1.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ok", "\u{FFFD}", "after"]);
    broker.close().await.expect("close");
}
