//! The cluster the failover tests run on (`scripts/nats-cluster.sh`: nodes n1, n2, n3 on
//! 127.0.0.1:24222-24224), killing and restarting its nodes, and the ledger of what a
//! test published, received and acked.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_core::testkit::run_command;
use broker_core::{Broker, Delivery, Subscription};
use broker_nats::NatsBroker;
use futures::StreamExt;

pub(crate) const START_HINT: &str =
    "scripts/nats-cluster.sh start, then export the NATS_CLUSTER_URL=… line it prints";

/// Connects to `url` on the cluster, or panics saying how to start the cluster.
pub(crate) async fn connect(url: &str) -> NatsBroker {
    broker_core::testkit::connected(NatsBroker::connect_url(url).await, url, START_HINT)
}

/// The tests of this file kill nodes: they run one at a time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether a missing cluster fails the test (`REQUIRE_BROKERS` or `CI` set) rather than
/// skipping it.
fn required() -> bool {
    ["REQUIRE_BROKERS", "CI"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0"))
}

fn skip_or_fail(why: &str) {
    assert!(
        !required(),
        "{why}; start the cluster with {START_HINT} (REQUIRE_BROKERS or CI is set, so this test fails instead of skipping)"
    );
    eprintln!("skipped: {why} (start it with {START_HINT})");
}

/// A duration from the environment variable `var` in milliseconds, else `default`: the
/// tests run with short timeouts, and are run with the defaults to measure them.
pub(crate) fn millis_from_env(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, Duration::from_millis)
}

/// The running cluster; nodes a test killed are started again when this is dropped,
/// also when the test fails.
pub(crate) struct Cluster {
    /// `127.0.0.1:24222,127.0.0.1:24223,127.0.0.1:24224`.
    pub(crate) hosts: String,
    killed: Mutex<Vec<u8>>,
}

/// The cluster named by `NATS_CLUSTER_URL`, if it is set and answers. Otherwise the test
/// fails (when required) or is skipped with a note, and this returns `None`.
pub(crate) async fn cluster() -> Option<Cluster> {
    let Some(url) = std::env::var("NATS_CLUSTER_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        skip_or_fail("NATS_CLUSTER_URL is not set");
        return None;
    };
    let hosts = url.trim().trim_start_matches("nats://").to_owned();
    let probe = format!("nats://{hosts}?connect_timeout_ms=3000");
    match NatsBroker::connect_url(&probe).await {
        Ok(broker) => broker.close().await.expect("close the probe"),
        Err(err) => {
            skip_or_fail(&format!(
                "the NATS cluster at {url} does not answer: {}",
                err.display_chain()
            ));
            return None;
        }
    }
    Some(Cluster {
        hosts,
        killed: Mutex::default(),
    })
}

fn script() -> Command {
    let mut command = Command::new("bash");
    command.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-cluster.sh"));
    command
}

impl Cluster {
    /// `jetstream://<the three nodes><query>`.
    pub(crate) fn jetstream_url(&self, query: &str) -> String {
        format!("jetstream://{}{query}", self.hosts)
    }

    /// `kill -9` node `n`.
    pub(crate) async fn kill(&self, n: u8) {
        self.killed.lock().expect("killed").push(n);
        let mut command = script();
        command.args(["kill", &n.to_string()]);
        run_command(command, format!("scripts/nats-cluster.sh kill {n}"))
            .await
            .expect("kill a node");
    }

    /// Starts node `n` again, its store kept, and waits until it is current.
    pub(crate) async fn restart(&self, n: u8) {
        let mut command = script();
        command.args(["restart", &n.to_string()]);
        run_command(command, format!("scripts/nats-cluster.sh restart {n}"))
            .await
            .expect("restart a node");
        self.killed.lock().expect("killed").retain(|k| *k != n);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let killed = std::mem::take(&mut *self.killed.lock().unwrap_or_else(|p| p.into_inner()));
        for n in killed {
            match script().args(["restart", &n.to_string()]).output() {
                Ok(out) if out.status.success() => {}
                other => eprintln!("cannot restart node n{n}: {other:?}"),
            }
        }
    }
}

/// The node (1..3) that leads the JetStream stream `stream`, as the server says
/// (`cluster.leader` of the stream info, `n1`..`n3`).
pub(crate) async fn stream_leader(broker: &NatsBroker, stream: &str) -> u8 {
    let js = async_nats::jetstream::new(broker.client().clone());
    let mut stream = js.get_stream(stream).await.expect("the stream");
    let info = stream.info().await.expect("stream info");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a clustered stream has a leader");
    node_number(&leader)
}

/// The node (1..3) that leads the one consumer of `stream`.
pub(crate) async fn consumer_leader(broker: &NatsBroker, stream: &str) -> u8 {
    let js = async_nats::jetstream::new(broker.client().clone());
    let stream = js.get_stream(stream).await.expect("the stream");
    let mut consumers = stream.consumers();
    let info = consumers
        .next()
        .await
        .expect("the stream has a consumer")
        .expect("consumer info");
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("a clustered consumer has a leader");
    node_number(&leader)
}

/// How many messages the stream `stream` holds.
pub(crate) async fn stream_messages(broker: &NatsBroker, stream: &str) -> u64 {
    let js = async_nats::jetstream::new(broker.client().clone());
    let mut stream = js.get_stream(stream).await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

fn node_number(name: &str) -> u8 {
    match name {
        "n1" => 1,
        "n2" => 2,
        "n3" => 3,
        other => panic!("unknown node name `{other}` (scripts/nats-cluster.sh names them n1..n3)"),
    }
}

/// What a test published and what its consumers received and acked.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Ids whose publish returned `Ok`.
    pub(crate) published: HashSet<String>,
    /// Publishes that returned an error.
    pub(crate) publish_errors: usize,
    /// The longest a single publish took.
    pub(crate) slowest_publish: Duration,
    /// Every delivery: id, attempt, when.
    pub(crate) deliveries: Vec<(String, u32, Instant)>,
    /// Ids whose `ack()` returned `Ok`.
    pub(crate) acked: HashSet<String>,
    /// Acks that returned an error.
    pub(crate) ack_errors: usize,
    /// Deliveries (id, attempt) of messages that had been acked with `Ok` before.
    pub(crate) acked_came_back: Vec<(String, u32)>,
}

pub(crate) type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    /// Distinct ids delivered.
    pub(crate) fn delivered(&self) -> HashSet<&str> {
        self.deliveries.iter().map(|(id, ..)| id.as_str()).collect()
    }

    /// Ids published with `Ok` and never delivered.
    pub(crate) fn lost(&self) -> Vec<&str> {
        let delivered = self.delivered();
        let mut lost: Vec<&str> = self
            .published
            .iter()
            .map(String::as_str)
            .filter(|id| !delivered.contains(id))
            .collect();
        lost.sort_unstable();
        lost
    }

    /// Messages stored twice: ids delivered more than once as a first attempt.
    pub(crate) fn duplicates(&self) -> usize {
        let mut firsts: HashMap<&str, usize> = HashMap::new();
        for (id, attempt, _) in &self.deliveries {
            if *attempt == 1 {
                *firsts.entry(id).or_default() += 1;
            }
        }
        firsts.values().map(|n| n - 1).sum()
    }

    /// Deliveries with an attempt above 1.
    pub(crate) fn redeliveries(&self) -> usize {
        self.deliveries.iter().filter(|(_, a, _)| *a > 1).count()
    }

    /// The longest time without any delivery between `since` and `until` (when every
    /// message was in; later redeliveries do not count).
    pub(crate) fn longest_gap(&self, since: Instant, until: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .deliveries
            .iter()
            .map(|(.., at)| *at)
            .filter(|at| *at >= since && *at <= until)
            .collect();
        times.sort_unstable();
        let mut previous = since;
        let mut longest = Duration::ZERO;
        for at in times {
            longest = longest.max(at - previous);
            previous = at;
        }
        longest
    }
}

/// Reads `sub` in the background into `ledger`, acking each delivery (confirmed acks).
pub(crate) fn consume(mut sub: Subscription, ledger: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = sub.next().await {
            let Ok(delivery) = item else { continue };
            record_and_ack(delivery, &ledger).await;
        }
    })
}

async fn record_and_ack(delivery: Delivery, ledger: &Shared) {
    let id = delivery.message().id().to_string();
    let attempt = delivery.attempt().unwrap_or(1);
    {
        let mut l = ledger.lock().expect("ledger");
        if l.acked.contains(&id) {
            l.acked_came_back.push((id.clone(), attempt));
        }
        l.deliveries.push((id.clone(), attempt, Instant::now()));
    }
    let acked = delivery.ack().await;
    let mut l = ledger.lock().expect("ledger");
    match acked {
        Ok(()) => {
            l.acked.insert(id);
        }
        Err(_) => l.ack_errors += 1,
    }
}

/// Publishes `count` messages with the ids `m0`, `m1`… to `topic`, one after the other,
/// recording each outcome in `ledger`.
pub(crate) fn publish_numbered(
    broker: NatsBroker,
    topic: String,
    count: usize,
    ledger: Shared,
) -> tokio::task::JoinHandle<()> {
    use broker_core::Message;
    tokio::spawn(async move {
        for i in 0..count {
            let id = format!("m{i}");
            let started = Instant::now();
            let outcome = broker
                .publish(&topic, Message::new(format!("{i}")).with_id(id.clone()))
                .await;
            let mut l = ledger.lock().expect("ledger");
            l.slowest_publish = l.slowest_publish.max(started.elapsed());
            match outcome {
                Ok(()) => {
                    l.published.insert(id);
                }
                Err(_) => l.publish_errors += 1,
            }
        }
    })
}

/// Deletes the stream a test made and closes `broker`; after a failover the cleanup may
/// fail, which is reported, not a test failure.
pub(crate) async fn delete_stream_and_close(broker: &NatsBroker, stream: &str) {
    let js = async_nats::jetstream::new(broker.client().clone());
    if let Err(err) = js.delete_stream(stream).await {
        eprintln!("could not delete the stream {stream} after the test: {err}");
    }
    broker.close().await.expect("close");
}
