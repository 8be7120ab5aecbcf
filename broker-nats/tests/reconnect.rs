//! The client survives a server restart. Each test runs its own nats-server on its own
//! port through `scripts/nats.sh` (started here, restarted in the middle of a stream).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_core::testkit::{Collector, publish, subscribe, unique_topic, wait_until};
use broker_core::{Broker, ErrorKind, Message, SubscribeOptions, Subscription};
use broker_nats::NatsBroker;
use common::{connect, publish_ids};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

/// What a subscription yielded: the ids of its deliveries, and its error items.
type Collected = (
    Arc<Mutex<HashSet<String>>>,
    Arc<Mutex<Vec<broker_core::Error>>>,
);

/// The ids of the deliveries, and the error items, of `sub`, read in the background
/// (acking).
fn collect_with_errors(mut sub: Subscription) -> Collected {
    let ids: Arc<Mutex<HashSet<String>>> = Arc::default();
    let errors: Arc<Mutex<Vec<broker_core::Error>>> = Arc::default();
    let (record, record_error) = (ids.clone(), errors.clone());
    tokio::spawn(async move {
        while let Some(item) = sub.next().await {
            let delivery = match item {
                Ok(delivery) => delivery,
                Err(err) => {
                    record_error.lock().expect("errors").push(err);
                    continue;
                }
            };
            let id = delivery.message().id().to_string();
            let _ = delivery.ack().await;
            record.lock().expect("ids").insert(id);
        }
    });
    (ids, errors)
}

fn count(ids: &Arc<Mutex<HashSet<String>>>) -> usize {
    ids.lock().expect("ids").len()
}

/// Starts the private server on `port` and connects to it at `url`.
async fn start_and_connect(port: u16, url: &str) -> NatsBroker {
    common::nats_sh("start", port)
        .await
        .expect("start a private nats-server");
    connect(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_publishing_resumes_after_a_restart() {
    const PORT: u16 = 14224;
    let broker = start_and_connect(PORT, &format!("nats://127.0.0.1:{PORT}")).await;
    let topic = unique_topic("reconnect.core");
    let (ids, errors) =
        collect_with_errors(subscribe(&broker, &topic, SubscribeOptions::new()).await);

    publish_ids(&broker, &topic, "b", 0..50).await;
    assert!(
        wait_until(WAIT, || count(&ids) == 50).await,
        "before the restart: {} of 50",
        count(&ids)
    );

    common::nats_sh("restart", PORT).await.expect("restart");

    // At-most-once: messages around the restart may be lost, but publishing resumes.
    let mut probe = 0;
    let resumed = loop {
        let before = count(&ids);
        broker
            .publish(&topic, Message::new("probe").with_id(format!("p{probe}")))
            .await
            .expect("publish probe");
        probe += 1;
        if wait_until(Duration::from_millis(200), || count(&ids) > before).await {
            break true;
        }
        if probe > 150 {
            break false;
        }
    };
    assert!(resumed, "nothing published after the restart arrived");
    let before = count(&ids);
    publish_ids(&broker, &topic, "a", 0..50).await;
    assert!(
        wait_until(WAIT, || count(&ids) >= before + 50).await,
        "after the restart: {} of 50",
        count(&ids) - before
    );
    let got = ids.lock().expect("ids").clone();
    assert!(
        (0..50).all(|i| got.contains(&format!("a{i}"))),
        "a message published after the restart is missing"
    );
    // The subscription was told that messages may have been lost, before the next one.
    let lost_reported = errors
        .lock()
        .expect("errors")
        .iter()
        .any(|e| e.kind() == ErrorKind::Connect && e.to_string().contains("may be lost"));
    assert!(lost_reported, "no connection-lost item: {errors:?}");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_loses_no_acknowledged_message_across_restarts() {
    const PORT: u16 = 14225;
    const N: usize = 300;
    let url = format!("jetstream://127.0.0.1:{PORT}?max_age_secs=3600&ack_wait_ms=5000");
    let broker = start_and_connect(PORT, &url).await;
    let topic = unique_topic("reconnect.js");
    let group = common::unique_token("g");
    let ids =
        Collector::spawn(subscribe(&broker, &topic, SubscribeOptions::new().queue(group)).await);

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0usize));
    let publisher = {
        let (broker, topic, acknowledged, failed) = (
            broker.clone(),
            topic.clone(),
            acknowledged.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            for i in 0..N {
                let id = format!("m{i}");
                match broker
                    .publish(&topic, Message::new("x").with_id(id.clone()))
                    .await
                {
                    Ok(()) => acknowledged.lock().expect("acked").push(id),
                    Err(_) => *failed.lock().expect("failed") += 1,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for at in [100, 200] {
        assert!(
            wait_until(WAIT * 2, || acknowledged.lock().expect("acked").len() >= at).await,
            "the publisher did not reach {at}"
        );
        common::nats_sh("restart", PORT).await.expect("restart");
    }
    publisher.await.expect("publisher");

    let acknowledged = acknowledged.lock().expect("acked").clone();
    assert!(
        acknowledged.len() >= 200,
        "only {} publishes were acknowledged",
        acknowledged.len()
    );
    let all_there = wait_until(WAIT * 2, || {
        let got = ids.unique_ids();
        acknowledged.iter().all(|id| got.contains(id))
    })
    .await;
    let got = ids.unique_ids();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !got.contains(*id))
        .collect();
    assert!(all_there, "acknowledged and lost: {lost:?}");
    eprintln!(
        "jetstream restart: {} acknowledged, {} failed publishes, {} distinct received",
        acknowledged.len(),
        failed.lock().expect("failed"),
        got.len()
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_publish_while_the_server_is_down_fails() {
    const PORT: u16 = 14226;
    let url = format!(
        "jetstream://127.0.0.1:{PORT}?max_age_secs=3600&publish_timeout_ms=1500&request_timeout_ms=1000"
    );
    let broker = start_and_connect(PORT, &url).await;
    let topic = unique_topic("reconnect.down");
    publish(&broker, &topic, Message::new("up")).await;

    common::nats_sh("stop", PORT).await.expect("stop");
    let outcome = broker.publish(&topic, Message::new("down")).await;
    common::nats_sh("start", PORT).await.expect("start again");
    let err = outcome.expect_err("a publish the stream never acknowledged must not be Ok");
    assert_eq!(err.kind(), ErrorKind::Publish, "{}", err.display_chain());

    // Back up: publishing works again once the client has reconnected.
    let mut ok = false;
    for _ in 0..40 {
        if broker
            .publish(&topic, Message::new("up again"))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "publishing did not resume after the server came back");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_plain_subscriber_survives_a_restart() {
    const PORT: u16 = 14227;
    let url = format!("jetstream://127.0.0.1:{PORT}?max_age_secs=3600");
    let broker = start_and_connect(PORT, &url).await;
    let topic = unique_topic("reconnect.plain");
    let ids = Collector::spawn(subscribe(&broker, &topic, SubscribeOptions::new()).await);
    publish_ids(&broker, &topic, "b", 0..10).await;
    assert!(
        wait_until(WAIT, || ids.unique_count() == 10).await,
        "before: {}",
        ids.unique_count()
    );
    common::nats_sh("restart", PORT).await.expect("restart");
    publish_ids(&broker, &topic, "a", 0..10).await;
    assert!(
        wait_until(WAIT, || ids.unique_count() == 20).await,
        "an ephemeral consumer's subscriber got {} of 20 across the restart",
        ids.unique_count()
    );
    broker.close().await.expect("close");
}
