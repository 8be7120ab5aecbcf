//! Failover on a 3-node JetStream cluster (`scripts/nats-cluster.sh start`, which prints
//! `NATS_CLUSTER_URL`): the stream leader killed under load, a consumer-group member's
//! process killed, and a seed list whose first server is down. Without
//! `NATS_CLUSTER_URL` these tests are skipped, unless `REQUIRE_BROKERS` or `CI` is set:
//! then they fail saying how to start the cluster.
//!
//! They use short timeouts (`ack_wait` 5 s); `CLUSTER_ACK_WAIT_MS` sets another, such as
//! the default 30000, to measure failover with it.

mod common;
#[path = "cluster/support.rs"]
mod support;

use std::collections::HashSet;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::testkit::{next_delivery, subscribe, wait_until};
use broker_core::{Broker, Message, SubscribeOptions};
use broker_nats::NatsBroker;
use common::unique_token;
use support::connect;
use support::{
    Ledger, SERIAL, cluster, consume, consumer_leader, millis_from_env, publish_numbered,
    stream_leader, stream_messages,
};

/// How many messages each failover test publishes.
const COUNT: usize = 2000;

/// How long consumption may stall after the stream leader is killed.
const LEADER_STALL_BOUND: Duration = Duration::from_secs(15);

fn ack_wait() -> Duration {
    millis_from_env("CLUSTER_ACK_WAIT_MS", Duration::from_secs(5))
}

/// The `jetstream://` URL of the cluster with replicas 3 and the test's timeouts:
/// `ack_wait`, and `request_timeout` (3 s, `CLUSTER_REQUEST_TIMEOUT_MS`), which bounds how
/// long a publish or a confirmed ack waits for an answer the killed node will never send.
fn url_r3(cluster: &support::Cluster, ack_wait: Duration) -> String {
    let request_timeout = millis_from_env("CLUSTER_REQUEST_TIMEOUT_MS", Duration::from_secs(3));
    cluster.jetstream_url(&format!(
        "?replicas=3&ack_wait_ms={}&request_timeout_ms={}",
        ack_wait.as_millis(),
        request_timeout.as_millis()
    ))
}

/// A test's own names on the cluster: a topic `<token>.<subject>`, the stream the
/// broker makes for it, and a queue group.
struct Names {
    topic: String,
    stream: String,
    group: String,
}

impl Names {
    fn new(prefix: &str, subject: &str, group: &str) -> Self {
        let token = unique_token(prefix);
        Names {
            topic: format!("{token}.{subject}"),
            stream: format!("BROKER_{token}"),
            group: unique_token(group),
        }
    }
}

/// What a failover test runs with: the cluster to itself, the R3 URL with the test's
/// timeouts, and the test's names.
struct Run {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    cluster: support::Cluster,
    ack_wait: Duration,
    url: String,
    names: Names,
}

impl Run {
    /// The topic, stream and group.
    fn names(&self) -> (&str, &str, &str) {
        (&self.names.topic, &self.names.stream, &self.names.group)
    }

    /// Waits until no other test uses the cluster; `None` when there is no cluster (the
    /// test is skipped, see [`cluster`]).
    async fn start(prefix: &str, subject: &str, group: &str) -> Option<Run> {
        let serial = SERIAL.lock().await;
        let cluster = cluster().await?;
        let ack_wait = ack_wait();
        Some(Run {
            _serial: serial,
            url: url_r3(&cluster, ack_wait),
            cluster,
            ack_wait,
            names: Names::new(prefix, subject, group),
        })
    }
}

/// Which node a leader test kills.
#[derive(Debug, Clone, Copy)]
enum Victim {
    StreamLeader,
    ConsumerLeader,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_load_loses_no_acknowledged_message() {
    kill_a_leader_under_load(Victim::StreamLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_consumer_leader_under_load_keeps_every_confirmed_ack() {
    kill_a_leader_under_load(Victim::ConsumerLeader).await;
}

/// Publishes numbered messages to an R3 stream read by a queue group of two members with
/// confirmed acks, kills the leader of the stream or of the group's consumer a third of
/// the way, and restarts it. Counts what was lost (nothing published with `Ok` may be),
/// duplicated (nothing: retried publishes carry their id), the confirmed acks whose
/// message came back (none), and the longest stall of consumption (bounded).
async fn kill_a_leader_under_load(victim: Victim) {
    let Some(run) = Run::start("clu", "orders", "billing").await else {
        return;
    };
    let (cluster, url, ack_wait) = (&run.cluster, run.url.as_str(), run.ack_wait);
    let (topic, stream, group) = run.names();

    let ledger: support::Shared = Arc::default();
    let members = [connect(url).await, connect(url).await];
    let mut readers = Vec::new();
    for member in &members {
        let sub = subscribe(member, topic, SubscribeOptions::new().queue(group)).await;
        readers.push(consume(sub, ledger.clone()));
    }
    let publisher = connect(url).await;
    let publishing = publish_numbered(publisher.clone(), topic.to_owned(), COUNT, ledger.clone());

    let delivered = |l: &Ledger| l.delivered().len();
    assert!(
        wait_until(Duration::from_secs(60), || delivered(
            &ledger.lock().expect("ledger")
        ) >= COUNT / 3)
        .await,
        "a third of the messages before the kill"
    );
    let stream_lead = stream_leader(&publisher, stream).await;
    let consumer_lead = consumer_leader(&publisher, stream).await;
    let leader = match victim {
        Victim::StreamLeader => stream_lead,
        Victim::ConsumerLeader => consumer_lead,
    };
    let killed_at = Instant::now();
    cluster.kill(leader).await;

    tokio::time::timeout(Duration::from_secs(90), publishing)
        .await
        .expect("the publisher finishes within 90 s")
        .expect("publisher task");
    let all_in = wait_until(Duration::from_secs(60), || {
        let l = ledger.lock().expect("ledger");
        l.lost().is_empty()
    })
    .await;
    let all_in_at = Instant::now();
    let resumed_in = all_in_at - killed_at;
    cluster.restart(leader).await;
    // An observation window, not a wait for a condition: a delivery whose confirmed ack
    // did not hold would come back after `ack_wait`.
    tokio::time::sleep(ack_wait + Duration::from_secs(2)).await;

    // What was recorded; the readers stop below.
    let l = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let stored = stream_messages(&publisher, stream).await;
    let stall = l.longest_gap(killed_at, all_in_at);
    eprintln!(
        "{victim:?} n{leader} killed (stream leader n{stream_lead}, consumer leader n{consumer_lead}), ack_wait {ack_wait:?}: \
         published ok {}, publish errors {}, slowest publish {:?}; delivered {} distinct in {} \
         deliveries ({} redeliveries), stored {stored}, duplicates {}, ack errors {}, \
         confirmed acks that came back {}; longest stall {stall:?}, all delivered {resumed_in:?} after the kill",
        l.published.len(),
        l.publish_errors,
        l.slowest_publish,
        l.delivered().len(),
        l.deliveries.len(),
        l.redeliveries(),
        l.duplicates(),
        l.ack_errors,
        l.acked_came_back.len(),
    );
    assert!(
        all_in,
        "lost: {} ok publishes never delivered: {:?}",
        l.lost().len(),
        l.lost()
    );
    assert_eq!(
        l.published.len() + l.publish_errors,
        COUNT,
        "every publish returned"
    );
    assert_eq!(
        l.duplicates(),
        0,
        "a retried publish is de-duplicated by its id"
    );
    assert_eq!(
        stored as usize,
        l.delivered().len(),
        "every stored message delivered, each stored once"
    );
    assert!(
        l.acked_came_back.is_empty(),
        "deliveries whose confirmed ack returned Ok came back: {:?}",
        l.acked_came_back
    );
    assert!(
        stall < LEADER_STALL_BOUND,
        "consumption stalled {stall:?} after the leader kill (bound {LEADER_STALL_BOUND:?})"
    );
    for reader in readers {
        reader.abort();
    }
    for member in members {
        member.close().await.expect("close");
    }
    support::delete_stream_and_close(&publisher, stream).await;
}

/// Set in the child process of [`a_killed_members_unacked_messages_go_to_the_other_member`]:
/// `<url> <topic> <group>`, and the child acts as the member.
const MEMBER_ENV: &str = "BROKER_NATS_CLUSTER_MEMBER";
const MEMBER_TEST: &str = "a_killed_members_unacked_messages_go_to_the_other_member";

/// How many deliveries the member process acks; it holds later ones unacked, so that it
/// dies with unacked messages whatever the speed of the machine.
const MEMBER_ACKS: usize = 200;

/// The member process: subscribes in the group and prints `READY`, then `GOT <id>` for
/// each delivery and `ACKED <id>` once it acked it, for the first [`MEMBER_ACKS`]; later
/// deliveries it holds without settling them (`HELD <id>`), until it is killed.
async fn run_member(spec: &str) {
    let mut parts = spec.split(' ');
    let (Some(url), Some(topic), Some(group)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{MEMBER_ENV} must be `<url> <topic> <group>`, got `{spec}`");
    };
    let broker = connect(url).await;
    let mut sub = subscribe(&broker, topic, SubscribeOptions::new().queue(group)).await;
    println!("READY");
    let mut acked = 0;
    let mut held = Vec::new();
    loop {
        let delivery = next_delivery(&mut sub, Duration::from_secs(120)).await;
        let id = delivery.message().id().to_string();
        if acked >= MEMBER_ACKS {
            println!("HELD {id}");
            held.push(delivery);
            continue;
        }
        println!("GOT {id}");
        if delivery.ack().await.is_ok() {
            acked += 1;
            println!("ACKED {id}");
        }
    }
}

/// What the member process said it got and acked.
#[derive(Default)]
struct MemberReport {
    ready: bool,
    got: HashSet<String>,
    acked: HashSet<String>,
    held: HashSet<String>,
}

/// Kills the member process when dropped, also when the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_unacked_messages_go_to_the_other_member() {
    if let Ok(spec) = std::env::var(MEMBER_ENV) {
        return run_member(&spec).await;
    }
    let ledger: support::Shared = Arc::default();
    let Some(run) = Run::start("clm", "jobs", "workers").await else {
        return;
    };
    let (url, ack_wait) = (run.url.as_str(), run.ack_wait);
    let (topic, stream, group) = run.names();

    // The surviving member, in this process; it creates the group's consumer.
    let survivor = connect(url).await;
    let reader = consume(
        subscribe(&survivor, topic, SubscribeOptions::new().queue(group)).await,
        ledger.clone(),
    );

    // The member to kill: this test binary again, running this test as the member.
    let mut child = common::spawn_test_process(
        MEMBER_TEST,
        (MEMBER_ENV, format!("{url} {topic} {group}")),
        Stdio::null(),
    );
    let stdout = child.stdout.take().expect("its stdout");
    let mut child = KillOnDrop(child);
    let report: Arc<Mutex<MemberReport>> = Arc::default();
    let record = report.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let mut r = record.lock().expect("report");
            if line == "READY" {
                r.ready = true;
            } else if let Some(id) = line.strip_prefix("GOT ") {
                r.got.insert(id.to_owned());
            } else if let Some(id) = line.strip_prefix("ACKED ") {
                r.acked.insert(id.to_owned());
            } else if let Some(id) = line.strip_prefix("HELD ") {
                r.held.insert(id.to_owned());
            }
        }
    });
    assert!(
        wait_until(Duration::from_secs(30), || report
            .lock()
            .expect("report")
            .ready)
        .await,
        "the member process subscribes"
    );

    let publisher = connect(url).await;
    let publishing = publish_numbered(publisher.clone(), topic.to_owned(), COUNT, ledger.clone());
    assert!(
        wait_until(Duration::from_secs(60), || {
            let r = report.lock().expect("report");
            r.acked.len() >= MEMBER_ACKS && !r.held.is_empty()
        })
        .await,
        "the member process acks its share, then holds some unacked"
    );
    child.0.kill().expect("kill -9 the member process");
    let killed_at = Instant::now();
    child.0.wait().expect("reap it");
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("the publisher finishes")
        .expect("publisher task");

    // Every message the member had not acked reaches the survivor. One delivery may have
    // been between `GOT` and `ACKED` at the kill: acked or not, either is right.
    let bound = ack_wait + Duration::from_secs(10);
    let (member_acked, in_doubt) = {
        let r = report.lock().expect("report");
        let in_doubt: HashSet<String> = r.got.difference(&r.acked).cloned().collect();
        (r.acked.clone(), in_doubt)
    };
    let missing = |l: &Ledger| -> Vec<String> {
        let delivered = l.delivered();
        l.published
            .iter()
            .filter(|id| !member_acked.contains(*id) && !in_doubt.contains(*id))
            .filter(|id| !delivered.contains(id.as_str()))
            .cloned()
            .collect()
    };
    let all_in = wait_until(bound, || {
        missing(&ledger.lock().expect("ledger")).is_empty()
    })
    .await;
    let took_over = killed_at.elapsed();
    // What was recorded; the readers stop below.
    let l = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let taken_over = l.redeliveries();
    eprintln!(
        "member process killed, ack_wait {ack_wait:?}: it had acked {}, {} in doubt; the survivor got \
         {} distinct ({taken_over} redeliveries), all within {took_over:?} of the kill; publish errors {}",
        member_acked.len(),
        in_doubt.len(),
        l.delivered().len(),
        l.publish_errors,
    );
    assert!(
        all_in,
        "within {bound:?}, the survivor did not get {} messages the killed member had not acked",
        missing(&l).len()
    );
    assert!(
        in_doubt.len() <= 1,
        "the member acks one at a time: {in_doubt:?}"
    );
    assert_eq!(l.published.len(), COUNT, "every publish succeeded");
    assert!(
        taken_over > 0,
        "the killed member held unacked messages that came to the survivor as redeliveries"
    );
    reader.abort();
    survivor.close().await.expect("close");
    support::delete_stream_and_close(&publisher, stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_list_connects_with_its_first_node_down() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = cluster().await else {
        return;
    };
    // The stream and the group's durable consumer exist before n1 dies, with a replica
    // on each node: placing new replicas while a node is down depends on whether the
    // meta leader has noticed yet.
    let jetstream_url =
        cluster.jetstream_url("?max_age_secs=60&replicas=3&request_timeout_ms=30000");
    let jetstream_topic = format!("{}.seeds", unique_token("js"));
    let group = SubscribeOptions::new().queue("seeds");
    let creator = connect(&jetstream_url).await;
    drop(subscribe(&creator, &jetstream_topic, group.clone()).await);
    creator.close().await.expect("close");
    cluster.kill(1).await;
    for (url, topic, options) in [
        (
            format!("nats://{}", cluster.hosts),
            format!("{}.seeds", unique_token("core")),
            SubscribeOptions::new(),
        ),
        (jetstream_url, jetstream_topic, group),
    ] {
        assert!(
            url.contains("127.0.0.1:24222,"),
            "node 1 is the first seed: {url}"
        );
        // JetStream answers once the survivors have a meta leader: if n1 led, they elect
        // another within seconds.
        let mut attempt = NatsBroker::connect_url(&url).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while attempt.is_err() && Instant::now() < deadline {
            attempt = NatsBroker::connect_url(&url).await;
        }
        let broker = attempt.unwrap_or_else(|e| panic!("{url}: {}", e.display_chain()));
        // Until the survivors have elected the stream's and consumer's leaders, a
        // subscribe times out: retry for a while, as a service would.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sub = loop {
            match broker.subscribe(&topic, options.clone()).await {
                Ok(sub) => break sub,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{url}: subscribe failed, retrying: {e}");
                }
                Err(e) => panic!("{url}: subscribe: {}", e.display_chain()),
            }
        };
        for i in 0..20 {
            broker
                .publish(&topic, Message::new(format!("{i}")))
                .await
                .unwrap_or_else(|e| panic!("{url}: publish {i}: {}", e.display_chain()));
        }
        for i in 0..20 {
            let got = next_delivery(&mut sub, Duration::from_secs(10)).await;
            assert_eq!(
                got.message().payload().as_ref(),
                format!("{i}").as_bytes(),
                "{url}"
            );
            got.ack().await.expect("ack");
        }
        drop(sub);
        broker.close().await.expect("close");
    }
    cluster.restart(1).await;
}
