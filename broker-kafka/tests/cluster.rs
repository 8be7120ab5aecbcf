//! Failover on a three-node Kafka cluster (`scripts/kafka-cluster.sh start`, bootstrap
//! list in `KAFKA_CLUSTER_BROKERS`): a partition leader and a consumer-group member's
//! process are killed with -9 under load, and every publish that returned `Ok` must be
//! delivered. The tests take turns, since each kills a node or a process.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use broker_core::testkit::{captured_text, connected, log_capture, unique_topic};
use broker_core::{Broker, Message, SubscribeOptions, Subscription};
use broker_kafka::{KafkaBroker, KafkaOptions};
use futures::{StreamExt, stream};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const HINT: &str = "scripts/kafka-cluster.sh start (it prints KAFKA_CLUSTER_BROKERS=...)";
/// Set in a child process of this binary that acts as a group member (`topic group`).
const MEMBER_ENV: &str = "KAFKA_CLUSTER_MEMBER";
/// How long consumption may stall after a node or member is killed.
const RESUME_BOUND: Duration = Duration::from_secs(30);

/// What this process logs at INFO and above.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let (subscriber, buffer) = log_capture();
        subscriber
            .with_max_level(tracing::Level::INFO)
            .try_init()
            .expect("the only log subscriber of this process");
        buffer
    })
}

/// The tests kill nodes and processes: one at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_brokers() -> String {
    broker_core::testkit::broker_address(
        "KAFKA_CLUSTER_BROKERS",
        "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094",
    )
}

/// Replication 3, two in sync for a publish to count, the framework's group defaults,
/// then the URL options in `KAFKA_CLUSTER_OPTIONS` (`group_protocol=consumer`, ...), with
/// which the failover figures of other settings are measured.
fn cluster_options() -> KafkaOptions {
    let extra = std::env::var("KAFKA_CLUSTER_OPTIONS").unwrap_or_default();
    let url = format!("kafka://{}?{extra}", cluster_brokers());
    KafkaOptions::from_url_str(&url)
        .unwrap_or_else(|e| panic!("KAFKA_CLUSTER_OPTIONS: {e}"))
        .partitions(3)
        .replication(3)
        .min_insync_replicas(2)
}

async fn connect(options: KafkaOptions) -> KafkaBroker {
    connected(
        KafkaBroker::connect(options).await,
        &cluster_brokers(),
        HINT,
    )
}

/// Runs `scripts/kafka-cluster.sh args`, panicking when it fails.
async fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-cluster.sh");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let shown = args.join(" ");
    let status = tokio::task::spawn_blocking(move || Command::new(script).args(&args).status())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(
        status.success(),
        "scripts/kafka-cluster.sh {shown} failed ({status}); {HINT}"
    );
}

/// The node (its id, 1 to 3) that leads `topic`'s `partition`.
fn leader_of(topic: &str, partition: i32) -> i32 {
    let consumer: BaseConsumer = raw_config().create().expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .expect("the partition has a leader")
}

fn raw_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", cluster_brokers())
        .set("group.id", "cluster-test-reader");
    config
}

/// For each message id in `topic`, the offsets that hold it: more than one means the
/// producer wrote it twice.
fn offsets_by_id(topic: &str, partitions: i32) -> HashMap<String, Vec<(i32, i64)>> {
    let consumer: BaseConsumer = raw_config().create().expect("reader");
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        list.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut ids: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ends
        .iter()
        .any(|(p, end)| positions.get(p).copied().unwrap_or(-1) + 1 < *end)
    {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back took over a minute"
        );
        let Some(record) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let record = record.expect("record");
        let id = record
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "x-message-id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("every record has the framework's id");
        ids.entry(id)
            .or_default()
            .push((record.partition(), record.offset()));
        positions.insert(record.partition(), record.offset());
    }
    ids
}

/// What the consumers saw: each arrival's id, partition and time.
#[derive(Default)]
struct Received {
    arrivals: Vec<(String, Option<i32>, Instant)>,
}

impl Received {
    fn ids(&self) -> BTreeSet<&str> {
        self.arrivals.iter().map(|(id, _, _)| id.as_str()).collect()
    }

    /// How long after `from` the first message of a partition not read before `from`
    /// arrived.
    fn first_new_partition_after(&self, from: Instant) -> Option<Duration> {
        let before: BTreeSet<Option<i32>> = self
            .arrivals
            .iter()
            .filter(|(_, _, t)| *t < from)
            .map(|(_, p, _)| *p)
            .collect();
        self.arrivals
            .iter()
            .filter(|(_, p, t)| *t >= from && !before.contains(p))
            .map(|(_, _, t)| *t - from)
            .min()
    }

    fn duplicates(&self) -> usize {
        self.arrivals.len() - self.ids().len()
    }

    /// The longest time without a delivery after `from`.
    fn longest_gap_after(&self, from: Instant) -> Duration {
        let mut times: Vec<Instant> = self.arrivals.iter().map(|(_, _, t)| *t).collect();
        times.sort();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for t in times.into_iter().filter(|t| *t >= from) {
            gap = gap.max(t - last);
            last = t;
        }
        gap
    }
}

/// Acks every delivery of `sub` and records it in `received`.
fn consume(mut sub: Subscription, received: Arc<Mutex<Received>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(delivery) = sub.next().await {
            let delivery = delivery.expect("a delivery, not an error");
            let id = delivery.message().id().to_string();
            let partition = delivery.partition();
            delivery.ack().await.expect("ack");
            received
                .lock()
                .expect("lock")
                .arrivals
                .push((id, partition, Instant::now()));
        }
    })
}

async fn wait_for_all(received: &Mutex<Received>, ids: &BTreeSet<String>, bound: Duration) {
    let got_all = broker_core::testkit::wait_until(bound, || {
        let received = received.lock().expect("lock");
        let got = received.ids();
        ids.iter().all(|id| got.contains(id.as_str()))
    })
    .await;
    if !got_all {
        let received = received.lock().expect("lock");
        let got = received.ids();
        let lost: Vec<&String> = ids.iter().filter(|id| !got.contains(id.as_str())).collect();
        panic!(
            "{} acknowledged publishes not delivered within {bound:?}, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_leader_killed_mid_stream_loses_no_acknowledged_publish() {
    let _turn = TURN.lock().await;
    const COUNT: usize = 3000;
    let publisher = connect(cluster_options()).await;
    let topic = unique_topic("cluster.leader");
    publisher
        .create_topic(&topic)
        .await
        .expect("create the topic");
    let received = Arc::new(Mutex::new(Received::default()));
    let group = SubscribeOptions::new().queue(format!("{topic}.group"));
    let mut members = Vec::new();
    for _ in 0..2 {
        let member = connect(cluster_options()).await;
        let sub = member
            .subscribe(&topic, group.clone())
            .await
            .expect("subscribe");
        members.push((member, consume(sub, received.clone())));
    }
    let leader = leader_of(&topic, 0);

    // Publish with 32 in flight; kill partition 0's leader after the first thousand.
    let started = Instant::now();
    let mut ok = BTreeSet::new();
    let mut failed = Vec::new();
    let mut killed_at = None;
    // The outage's log starts at the kill: a cluster just started logs warnings of its
    // own (the coordinators still loading) that the outage did not cause.
    let mut logged_before = 0;
    let mut publishes = stream::iter(0..COUNT)
        .map(|i| {
            let id = format!("m{i}");
            let message = Message::new(format!("{i}"))
                .with_id(id.clone())
                .with_key(format!("k{i}"));
            let publisher = &publisher;
            let topic = &topic;
            async move { (id, publisher.publish(topic, message).await) }
        })
        .buffer_unordered(32);
    let mut last_ok = Instant::now();
    let mut publish_stall = Duration::ZERO;
    while let Some((id, outcome)) = publishes.next().await {
        match outcome {
            Ok(()) => {
                ok.insert(id);
                if killed_at.is_some() {
                    publish_stall = publish_stall.max(last_ok.elapsed());
                }
                last_ok = Instant::now();
            }
            Err(err) => failed.push((id, err.kind())),
        }
        if ok.len() == 1000 && killed_at.is_none() {
            logged_before = captured_text(logs()).len();
            cluster(&["kill", &leader.to_string()]).await;
            killed_at = Some(Instant::now());
            last_ok = Instant::now();
        }
    }
    drop(publishes);
    let killed_at = killed_at.expect("the leader was killed");

    // A client whose first seed is the dead node connects through the others.
    let mut seeds: Vec<String> = cluster_brokers().split(',').map(str::to_owned).collect();
    seeds.rotate_left((leader - 1) as usize);
    let late = connect(cluster_options().brokers(seeds.clone())).await;
    late.publish(&topic, Message::new("late").with_id("late"))
        .await
        .expect("publish through the other seeds");
    ok.insert("late".to_owned());

    wait_for_all(&received, &ok, Duration::from_secs(90)).await;
    let unhealthy =
        broker_core::testkit::wait_until(Duration::from_secs(15), || !publisher.health().connected)
            .await;
    assert!(
        unhealthy,
        "health while a node is down: {:?}",
        publisher.health()
    );
    cluster(&["restart", &leader.to_string()]).await;
    let recovered = broker_core::testkit::wait_until(Duration::from_secs(15), || {
        broker_kafka::outages().down().is_empty()
    })
    .await;
    assert!(
        recovered,
        "outages still open after the restart: {:?}",
        broker_kafka::outages().down()
    );
    let health = publisher.health();
    assert!(health.connected, "health after the restart: {health:?}");
    assert!(
        health.last_error.is_some(),
        "the last error is kept: {health:?}"
    );

    let producer_duplicates: Vec<_> = offsets_by_id(&topic, 3)
        .into_iter()
        .filter(|(_, offsets)| offsets.len() > 1)
        .collect();
    let received = received.lock().expect("lock");
    let consume_stall = received.longest_gap_after(killed_at);
    println!(
        "leader kill (node {leader}, seeds {seeds:?}): {} ok, {} failed {:?}, 0 lost, {} delivered twice, \
         publish stall {publish_stall:?}, delivery stall {consume_stall:?}, run {:?}",
        ok.len(),
        failed.len(),
        failed
            .iter()
            .map(|(_, kind)| format!("{kind:?}"))
            .collect::<BTreeSet<_>>(),
        received.duplicates(),
        started.elapsed()
    );
    // One WARN when the node went away, one INFO when it came back, little else.
    let logged = captured_text(logs());
    let logged = &logged[logged_before..];
    let address = &seeds[0];
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let count = |what: &str| {
        logged
            .lines()
            .filter(|l| l.contains(what) && l.contains(address.as_str()))
            .count()
    };
    println!("logged at WARN and above during the outage: {warnings:#?}");
    assert_eq!(
        count("server unreachable"),
        1,
        "one WARN for the outage: {warnings:#?}"
    );
    assert_eq!(
        count("server reachable again"),
        1,
        "one INFO at its end:\n{logged}"
    );
    assert!(
        warnings.len() <= 5,
        "the outage flooded the log: {warnings:#?}"
    );
    assert!(
        producer_duplicates.is_empty(),
        "the idempotent producer wrote ids twice: {producer_duplicates:?}"
    );
    assert!(
        consume_stall < RESUME_BOUND,
        "deliveries stalled for {consume_stall:?} after the leader kill"
    );
    assert!(
        publish_stall < RESUME_BOUND,
        "publishes stalled for {publish_stall:?} after the leader kill"
    );
}

/// In a child process: one member of the group, acking and reporting each delivery on
/// stdout until it is killed.
async fn run_member(spec: &str) {
    let (topic, group) = spec
        .split_once(' ')
        .expect("KAFKA_CLUSTER_MEMBER is `topic group`");
    let member = connect(cluster_options()).await;
    let mut sub = member
        .subscribe(topic, SubscribeOptions::new().queue(group))
        .await
        .expect("subscribe");
    let mut out = std::io::stdout();
    writeln!(out, "member: ready").expect("stdout");
    while let Some(delivery) = sub.next().await {
        let delivery = delivery.expect("a delivery");
        let id = delivery.message().id().to_string();
        delivery.ack().await.expect("ack");
        writeln!(out, "member: acked {id}").expect("stdout");
    }
}

/// A member process, killed when dropped (so a failing test leaves none behind).
struct MemberProcess(Child);

impl MemberProcess {
    fn kill(&mut self) {
        self.0.kill().expect("kill -9 the member process");
        self.0.wait().expect("reap it");
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test, in its own process, as a group member; returns it and the ids it
/// acks as it reports them.
fn spawn_member(
    test: &str,
    topic: &str,
    group: &str,
) -> (MemberProcess, std::sync::mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(MEMBER_ENV, format!("{topic} {group}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the member process");
    let stdout = child.stdout.take().expect("its stdout");
    let (lines, reports) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, report)) = line.split_once("member: ")
                && lines.send(report.to_owned()).is_err()
            {
                break;
            }
        }
    });
    (MemberProcess(child), reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_process_killed_mid_stream_hands_its_partitions_over() {
    const TEST: &str = "a_member_process_killed_mid_stream_hands_its_partitions_over";
    if let Ok(spec) = std::env::var(MEMBER_ENV) {
        return run_member(&spec).await;
    }
    let _turn = TURN.lock().await;
    let options = cluster_options();
    const COUNT: usize = 2000;
    let publisher = connect(cluster_options().partitions(4)).await;
    let topic = unique_topic("cluster.member");
    let group = format!("{topic}.group");
    publisher
        .create_topic(&topic)
        .await
        .expect("create the topic");

    let (mut child, reports) = spawn_member(TEST, &topic, &group);
    let ready = tokio::task::spawn_blocking(move || {
        let first = reports.recv_timeout(Duration::from_secs(60));
        (first, reports)
    });
    let (first, reports) = ready.await.expect("join");
    assert_eq!(
        first.as_deref(),
        Ok("ready"),
        "the member process did not start"
    );

    let received = Arc::new(Mutex::new(Received::default()));
    let survivor = connect(cluster_options()).await;
    let sub = survivor
        .subscribe(&topic, SubscribeOptions::new().queue(&group))
        .await
        .expect("subscribe");
    let consumer = consume(sub, received.clone());

    // The first half while both members read; kill the child once it has acked some.
    let publish = |range: std::ops::Range<usize>| {
        let publisher = &publisher;
        let topic = &topic;
        async move {
            let mut ok = BTreeSet::new();
            for i in range {
                let id = format!("m{i}");
                let message = Message::new(format!("{i}"))
                    .with_id(id.clone())
                    .with_key(format!("k{i}"));
                publisher.publish(topic, message).await.expect("publish");
                ok.insert(id);
            }
            ok
        }
    };
    let mut ok = publish(0..COUNT / 2).await;
    let mut acked_by_child = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_by_child.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "the member process acked {} messages in a minute",
            acked_by_child.len()
        );
        if let Ok(report) = reports.recv_timeout(Duration::from_millis(100))
            && let Some(id) = report.strip_prefix("acked ")
        {
            acked_by_child.insert(id.to_owned());
        }
    }
    child.kill();
    let killed_at = Instant::now();
    acked_by_child.extend(
        reports
            .try_iter()
            .filter_map(|r| r.strip_prefix("acked ").map(str::to_owned)),
    );
    ok.extend(publish(COUNT / 2..COUNT).await);

    // Everything the child had not acked reaches the survivor.
    let expected: BTreeSet<String> = ok.difference(&acked_by_child).cloned().collect();
    wait_for_all(&received, &expected, Duration::from_secs(90)).await;
    let received_guard = received.lock().expect("lock");
    let handover = received_guard
        .first_new_partition_after(killed_at)
        .expect("the survivor got the dead member's partitions");
    let all_by_survivor = received_guard.ids().len();
    println!(
        "member kill: {} published, {} acked by the killed member, {} delivered to the survivor \
         ({} twice), hand-over stall {handover:?} ({:?} protocol, session timeout {:?})",
        ok.len(),
        acked_by_child.len(),
        all_by_survivor,
        received_guard.duplicates(),
        options.group_protocol,
        options
            .session_timeout
            .unwrap_or(broker_kafka::DEFAULT_SESSION_TIMEOUT)
    );
    drop(received_guard);
    consumer.abort();
    assert!(
        handover < RESUME_BOUND,
        "the survivor waited {handover:?} for the dead member's partitions"
    );
}
