//! Failures, counted: no server at connect, a slow consumer, a large backlog, a crashed
//! consumer (dropped in process, or a killed process). Each test that needs a server
//! runs its own nats-server on its own port (`scripts/nats.sh`), stopped at the end.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_core::options::AckMode;
use broker_core::testkit::{
    Collector, Received, connect_fails, expect_delivery, publish, subscribe,
    try_next_delivery as next, unique_topic, wait_until,
};
use broker_core::{Broker, Delivery, ErrorKind, Message, SubscribeOptions, Subscription};
use broker_nats::{NatsBroker, SlowConsumer};
use common::{connect, publish_ids};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// no server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_a_server_fails_fast() {
    const PORT: u16 = 14259;
    const TIMEOUT: Duration = Duration::from_secs(2);
    const MARGIN: Duration = Duration::from_secs(1);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", PORT)).is_err(),
        "something listens on 127.0.0.1:{PORT}; this test needs the port free"
    );
    for url in [
        format!("nats://127.0.0.1:{PORT}?connect_timeout_ms=2000"),
        format!("jetstream://127.0.0.1:{PORT}?connect_timeout_ms=2000"),
        format!("nats://u:pw@127.0.0.1:{PORT}?connect_timeout_ms=2000&tls=on"),
    ] {
        let err = connect_fails(
            NatsBroker::connect_url(&url),
            TIMEOUT + MARGIN,
            &[ErrorKind::Connect],
            &format!("{url}: no server listens"),
        )
        .await;
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{PORT}")),
            "the error names the server: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_silent_server_times_out() {
    // Accepts TCP connections and never says anything: no INFO, no handshake.
    let (listener, port) = common::local_listener().await;
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    const TIMEOUT: Duration = Duration::from_millis(1500);
    for url in [
        format!("nats://127.0.0.1:{port}?connect_timeout_ms=1500"),
        format!("jetstream://127.0.0.1:{port}?connect_timeout_ms=1500"),
    ] {
        connect_fails(
            NatsBroker::connect_url(&url),
            TIMEOUT + Duration::from_millis(1500),
            &[ErrorKind::Timeout, ErrorKind::Connect],
            &format!("{url}: a silent server"),
        )
        .await;
    }
    accept.abort();
}

// ---------------------------------------------------------------------------------------
// slow consumers

/// Reads `sub` until nothing more comes for a while or `total` messages are accounted
/// for; returns (ids received, dropped reported, number of reports).
async fn drain_counting(sub: &mut Subscription, total: usize) -> (HashSet<String>, u64, usize) {
    let mut received = HashSet::new();
    let mut dropped = 0u64;
    let mut reports = 0usize;
    let deadline = Instant::now() + WAIT;
    while received.len() + dropped as usize != total && Instant::now() < deadline {
        match next(sub, Duration::from_secs(3)).await {
            Some(Ok(delivery)) => {
                received.insert(delivery.message().id().to_string());
            }
            Some(Err(err)) => {
                assert_eq!(err.kind(), ErrorKind::Subscribe, "{}", err.display_chain());
                let slow = std::error::Error::source(&err)
                    .and_then(|s| s.downcast_ref::<SlowConsumer>())
                    .unwrap_or_else(|| {
                        panic!("not a SlowConsumer report: {}", err.display_chain())
                    });
                assert!(slow.dropped > 0);
                dropped += slow.dropped;
                reports += 1;
            }
            None => break,
        }
    }
    (received, dropped, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_slow_consumer_drops_are_reported_and_counted() {
    const CAPACITY: usize = 100;
    const BURST: usize = 20_000;
    let server = common::Server::start(14245, &[]).await;
    let broker = connect(&server.url(&format!("?subscription_capacity={CAPACITY}"))).await;
    let publisher = connect(&server.url("")).await;
    let topic = unique_topic("slow.core");
    let mut sub = subscribe(&broker, &topic, SubscribeOptions::new()).await;

    // The subscriber does not read while the burst arrives.
    publish_ids(&publisher, &topic, "m", 0..BURST).await;
    publisher.close().await.expect("flush the burst");
    // Everything that will be dropped is counted once the buffer has been full long
    // enough for the whole burst to pass.
    let settled = wait_until(WAIT, || {
        broker.dropped_messages() as usize + CAPACITY >= BURST
    })
    .await;
    assert!(
        settled,
        "only {} drops counted for a burst of {BURST} into a buffer of {CAPACITY}",
        broker.dropped_messages()
    );

    let (received, dropped, reports) = drain_counting(&mut sub, BURST).await;
    eprintln!(
        "slow consumer: {} received, {dropped} dropped in {reports} report(s), broker counter {}",
        received.len(),
        broker.dropped_messages()
    );
    assert!(reports >= 1, "no drop report arrived");
    assert_eq!(
        received.len() + dropped as usize,
        BURST,
        "received + reported dropped must be what was published"
    );
    assert!(received.len() >= CAPACITY, "the buffer's messages arrive");
    assert_eq!(broker.dropped_messages(), dropped);

    // Reading again: nothing is dropped once the reader keeps up.
    let before = broker.dropped_messages();
    publish_ids(&broker, &topic, "after", 0..50).await;
    for i in 0..50 {
        match next(&mut sub, WAIT).await {
            Some(Ok(delivery)) => assert_eq!(delivery.message().id().as_str(), format!("after{i}")),
            other => panic!("after catching up: {other:?}"),
        }
    }
    assert_eq!(broker.dropped_messages(), before);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_backlog_of_100k_reaches_a_slow_reader_completely() {
    const N: usize = 100_000;
    let server = common::Server::start(14246, &[]).await;
    let broker = connect(&server.jetstream_url(
        "?max_age_secs=3600&pull_batch=512&max_ack_pending=20000&ack_wait_ms=60000",
    ))
    .await;
    // Its own first token, so its own stream, holding only this backlog.
    let topic = format!("{}.slow", common::unique_token("backlog"));
    // The backlog: stored before anyone subscribes. Publishing through the broker
    // waits for each acknowledgement; plain NATS publishes to the stream's subject are
    // faster, and the stream's message count confirms that all were stored.
    broker
        .publish(&topic, Message::new("first").with_id("m0"))
        .await
        .expect("publish (creates the stream)");
    let started = Instant::now();
    let client = broker.client().clone();
    for i in 1..N {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("x-message-id", format!("m{i}").as_str());
        client
            .publish_with_headers(topic.clone(), headers, format!("{i}").into())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    let js = async_nats::jetstream::new(client.clone());
    let stream_name = format!("BROKER_{}", topic.split('.').next().unwrap_or_default());
    let mut stored = 0;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let mut stream = js.get_stream(&stream_name).await.expect("the stream");
        stored = stream.info().await.expect("stream info").state.messages;
        if stored >= N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, N as u64, "the stream did not store the backlog");
    eprintln!("stored {N} in {:?}", started.elapsed());

    // A queue group starts at the earliest message: the whole backlog.
    let mut sub = broker
        .subscribe(
            &topic,
            SubscribeOptions::new()
                .queue(common::unique_token("g"))
                .max_in_flight(1024),
        )
        .await
        .expect("subscribe");
    let read_started = Instant::now();
    let mut seen = HashSet::with_capacity(N);
    let mut deliveries = 0usize;
    let mut acks = futures::stream::FuturesUnordered::new();
    while seen.len() < N {
        let delivery = match next(&mut sub, WAIT).await {
            Some(Ok(delivery)) => delivery,
            Some(Err(err)) => panic!("subscription error: {}", err.display_chain()),
            None => panic!("the subscription ended after {} of {N}", seen.len()),
        };
        deliveries += 1;
        seen.insert(delivery.message().id().to_string());
        acks.push(delivery.ack());
        while acks.len() >= 512 {
            if let Some(Err(err)) = acks.next().await {
                panic!("ack failed: {}", err.display_chain());
            }
        }
        // A slow reader: it stops now and then, while the backlog waits on the server.
        if deliveries.is_multiple_of(10_000) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    while let Some(acked) = acks.next().await {
        acked.expect("ack");
    }
    eprintln!(
        "read {N} distinct ({deliveries} deliveries) in {:?}",
        read_started.elapsed()
    );
    assert!(
        (0..N).all(|i| seen.contains(&format!("m{i}"))),
        "a message is missing"
    );
    drop(sub);
    common::delete_stream_and_close(&broker, &stream_name).await;
}

// ---------------------------------------------------------------------------------------
// crashed consumers

/// Joins `group` on `topic` as a member with manual acks that takes `count` deliveries
/// and settles none; returns its subscription and what it holds. `who` names it in a
/// panic.
async fn hold_deliveries(
    broker: &NatsBroker,
    topic: &str,
    group: &str,
    count: usize,
    who: &str,
) -> (Subscription, Vec<Delivery>) {
    let options = SubscribeOptions::new()
        .queue(group)
        .ack_mode(AckMode::Manual)
        .max_in_flight(count);
    let mut sub = subscribe(broker, topic, options).await;
    let mut held = Vec::new();
    while held.len() < count {
        held.push(expect_delivery(&mut sub, WAIT, who).await);
    }
    (sub, held)
}

/// Each id among `received` with the highest attempt it arrived with.
fn attempts(received: &[Received]) -> HashMap<String, u32> {
    let mut seen = HashMap::new();
    for r in received {
        let max = seen.entry(r.message.id().to_string()).or_insert(0);
        *max = (*max).max(r.attempt.unwrap_or(1));
    }
    seen
}

/// Waits until `collector` has `n` distinct messages or `timeout` passed; returns whether
/// it got them all, and each id it got with the highest attempt it arrived with.
async fn wait_for_all(
    collector: &Collector,
    n: usize,
    timeout: Duration,
) -> (bool, HashMap<String, u32>) {
    let all = wait_until(timeout, || collector.unique_count() == n).await;
    (all, attempts(&collector.received()))
}

/// The ids `m0`…`m<n-1>` missing from `seen`.
fn missing(seen: &HashMap<String, u32>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("m{i}"))
        .filter(|id| !seen.contains_key(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_dropped_member_hands_its_unacked_deliveries_to_the_other() {
    const N: usize = 200;
    const HELD: usize = 50;
    let server = common::Server::start(14247, &[]).await;
    let url = server.jetstream_url("?max_age_secs=3600&ack_wait_ms=30000");
    let broker_a = connect(&url).await;
    let broker_b = connect(&url).await;
    let topic = unique_topic("crash.js");
    let group = common::unique_token("g");
    publish_ids(&broker_a, &topic, "m", 0..N).await;
    // Member A takes deliveries and never settles them.
    let (a, held) = hold_deliveries(&broker_a, &topic, &group, HELD, "member A").await;
    let held_ids: HashSet<String> = held.iter().map(|d| d.message().id().to_string()).collect();
    // Member B joins; then A goes away with its deliveries unsettled (ack_wait is 30 s,
    // so only the hand-back on drop can bring them to B in time).
    let b =
        Collector::spawn(subscribe(&broker_b, &topic, SubscribeOptions::new().queue(group)).await);
    drop(a);
    drop(held);
    let (all, seen) = wait_for_all(&b, N, Duration::from_secs(20)).await;
    assert!(
        all,
        "member B got {} of {N}; missing {:?}",
        seen.len(),
        missing(&seen, N)
    );
    assert!(
        held_ids
            .iter()
            .all(|id| seen.get(id).is_some_and(|attempt| *attempt >= 2)),
        "the deliveries A held come to B as redeliveries"
    );
    broker_a.close().await.expect("close");
    broker_b.close().await.expect("close");
}

/// Set in the child process of the next test: `<url> <topic> <group> <how many to hold>`.
const CHILD_ENV: &str = "BROKER_NATS_CRASH_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_killed_member_process_hands_its_deliveries_to_the_other() {
    if let Ok(args) = std::env::var(CHILD_ENV) {
        return crash_child(&args).await;
    }
    const N: usize = 200;
    const HELD: usize = 60;
    let server = common::Server::start(14248, &[]).await;
    let url = server.jetstream_url("?max_age_secs=3600&ack_wait_ms=2000");
    let broker = connect(&url).await;
    let topic = unique_topic("kill.js");
    let group = common::unique_token("g");
    publish_ids(&broker, &topic, "m", 0..N).await;

    // The other member is another process: this test binary, running this test as the
    // child. It prints the ids it holds unacked, then waits to be killed.
    let mut child = common::spawn_test_process(
        "jetstream_killed_member_process_hands_its_deliveries_to_the_other",
        (CHILD_ENV, format!("{url} {topic} {group} {HELD}")),
        Stdio::inherit(),
    );
    let stdout = child.stdout.take().expect("child stdout");
    let holding = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.ok()?;
            // libtest's "test <name> ... " has no line break before the child's line.
            if let Some((_, ids)) = line.split_once("HOLDING ") {
                return Some(ids.split(',').map(str::to_owned).collect::<HashSet<_>>());
            }
        }
        None
    });
    let held = match tokio::time::timeout(Duration::from_secs(60), holding).await {
        Ok(Ok(Some(held))) => held,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not report what it holds: {other:?}");
        }
    };
    assert_eq!(held.len(), HELD, "the child holds {HELD} deliveries");

    // This member joins while the child holds its deliveries; then the child is killed.
    let collector =
        Collector::spawn(subscribe(&broker, &topic, SubscribeOptions::new().queue(group)).await);
    child.kill().expect("kill the child process");
    child.wait().expect("reap the child process");
    let (all, seen) = wait_for_all(&collector, N, WAIT).await;
    assert!(
        all,
        "got {} of {N} after the kill; missing {:?}",
        seen.len(),
        missing(&seen, N)
    );
    assert!(
        held.iter()
            .all(|id| seen.get(id).is_some_and(|attempt| *attempt >= 2)),
        "what the killed process held comes back as redeliveries"
    );
    broker.close().await.expect("close");
}

/// The child's part: take `hold` deliveries, never settle them, report, wait.
async fn crash_child(args: &str) {
    let mut parts = args.split(' ');
    let (Some(url), Some(topic), Some(group), Some(hold)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_ENV}: {args}");
    };
    let count: usize = hold.parse().expect("how many to hold");
    let broker = connect(url).await;
    let (_sub, held) = hold_deliveries(&broker, topic, group, count, "child").await;
    let ids: Vec<String> = held.iter().map(|d| d.message().id().to_string()).collect();
    println!("\nHOLDING {}", ids.join(","));
    use std::io::Write as _;
    std::io::stdout().flush().expect("flush");
    // Killed long before this ends.
    tokio::time::sleep(Duration::from_secs(120)).await;
    panic!("the child process was not killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_queue_member_crash_moves_later_messages_to_the_other() {
    const N: usize = 100;
    let server = common::Server::start(14249, &[]).await;
    let broker_a = connect(&server.url("")).await;
    let broker_b = connect(&server.url("")).await;
    let topic = unique_topic("crash.core");
    let a = subscribe(&broker_a, &topic, SubscribeOptions::new().queue("workers")).await;
    let a_count = Arc::new(AtomicUsize::new(0));
    let a_reader = {
        let a_count = a_count.clone();
        tokio::spawn(async move {
            let mut a = a;
            while let Some(Ok(_)) = a.next().await {
                a_count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let seen = Collector::spawn(
        subscribe(&broker_b, &topic, SubscribeOptions::new().queue("workers")).await,
    );
    publish_ids(&broker_b, &topic, "before", 0..N).await;
    let split = wait_until(WAIT, || {
        a_count.load(Ordering::Relaxed) + seen.unique_count() == N
    })
    .await;
    assert!(
        split,
        "before the crash the group got {} and {}",
        a_count.load(Ordering::Relaxed),
        seen.unique_count()
    );
    assert!(
        a_count.load(Ordering::Relaxed) > 0,
        "both members take part"
    );

    // A crashes: its connection goes away without unsubscribing.
    a_reader.abort();
    drop(broker_a);
    // The server notices the lost connection at once (the socket is closed); wait until
    // a run of probes all reach B.
    let mut in_a_row = 0;
    let mut probes = 0;
    while in_a_row < 20 {
        probes += 1;
        assert!(
            probes < 1000,
            "the group kept routing to the crashed member"
        );
        let id = format!("probe{probes}");
        publish(&broker_b, &topic, Message::new("p").with_id(id.clone())).await;
        if wait_until(Duration::from_millis(500), || {
            seen.unique_ids().contains(&id)
        })
        .await
        {
            in_a_row += 1;
        } else {
            in_a_row = 0;
        }
    }
    publish_ids(&broker_b, &topic, "after", 0..N).await;
    let all = wait_until(WAIT, || {
        let seen = seen.unique_ids();
        (0..N).all(|i| seen.contains(&format!("after{i}")))
    })
    .await;
    assert!(
        all,
        "a message published after the crash did not reach the other member"
    );
    broker_b.close().await.expect("close");
}

/// A seed list connects while its first server is down, from a `nats://` and a
/// `jetstream://` URL (as the registry hands a host list over) and from the builder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_list_connects_with_its_first_server_down() {
    let live = common::nats_url();
    let live_host = live.trim_start_matches("nats://").to_owned();
    // Port 1 on loopback: nothing listens there.
    for url in [
        format!("nats://127.0.0.1:1,{live_host}"),
        format!("jetstream://127.0.0.1:1,{live_host}?max_age_secs=60"),
    ] {
        let broker = broker_core::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {}", e.display_chain()));
        let topic = broker_core::testkit::unique_topic("seeds");
        let mut sub = broker
            .subscribe(&topic, SubscribeOptions::new())
            .await
            .expect("subscribe");
        broker
            .publish(&topic, Message::new("through the second seed"))
            .await
            .expect("publish");
        let got = broker_core::testkit::next_delivery(&mut sub, Duration::from_secs(10)).await;
        assert_eq!(
            got.message().payload().as_ref(),
            b"through the second seed",
            "{url}"
        );
        broker.close().await.expect("close");
    }
    let options = broker_nats::NatsOptions::new(format!("nats://127.0.0.1:1,{live}"));
    let broker = NatsBroker::connect(options)
        .await
        .expect("builder seed list");
    broker.close().await.expect("close");
    let err = NatsBroker::connect_url("nats://127.0.0.1:1,127.0.0.1:2")
        .await
        .expect_err("no seed is up");
    assert!(
        matches!(err.kind(), ErrorKind::Connect | ErrorKind::Timeout),
        "{}",
        err.display_chain()
    );
}
