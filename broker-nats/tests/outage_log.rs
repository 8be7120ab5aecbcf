//! A one-server outage logs one WARN when it starts and one INFO when it ends. A file of
//! its own: the log capture is per thread, and no other test may hit the log call sites
//! first from another thread.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_core::testkit::{publish, subscribe, unique_topic, wait_until};
use broker_core::{Broker, Message, SubscribeOptions};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

/// The ids of `sub`'s deliveries, read (and acked) in the background.
fn collect(mut sub: broker_core::Subscription) -> Arc<Mutex<HashSet<String>>> {
    let ids: Arc<Mutex<HashSet<String>>> = Arc::default();
    let record = ids.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = sub.next().await {
            let id = delivery.message().id().to_string();
            let _ = delivery.ack().await;
            record.lock().expect("ids").insert(id);
        }
    });
    ids
}

/// A one-server outage logs one WARN when it starts and one INFO when it ends, whatever
/// the number of reconnect attempts between, which are counted instead. Runs on one
/// thread, so the log capture sees the client's background tasks.
#[tokio::test(flavor = "current_thread")]
async fn an_outage_logs_one_warning_and_one_info_and_counts_the_attempts() {
    const PORT: u16 = 14228;
    let (capture, buffer) = broker_core::testkit::log_capture();
    let _logs = tracing::subscriber::set_default(capture.finish());
    common::nats_sh("start", PORT)
        .await
        .expect("start a private nats-server");
    let broker = common::connect(&format!("jetstream://127.0.0.1:{PORT}")).await;
    let topic = unique_topic("reconnect.outage");
    let ids = collect(subscribe(&broker, &topic, SubscribeOptions::new()).await);
    assert!(broker.health().connected, "{:?}", broker.health());

    common::nats_sh("stop", PORT)
        .await
        .expect("stop the server");
    assert!(
        wait_until(WAIT, || broker.outages().failures() >= 5).await,
        "reconnect attempts are counted: {}",
        broker.outages().failures()
    );
    let down = broker.health();
    assert!(!down.connected, "health while the server is down: {down:?}");
    assert!(
        down.last_error.is_some(),
        "health names the last error: {down:?}"
    );
    common::nats_sh("start", PORT)
        .await
        .expect("start it again");
    assert!(
        wait_until(WAIT, || !broker.outages().any_down()).await,
        "the outage ends when the server is back"
    );
    assert!(
        wait_until(WAIT, || broker.health().connected).await,
        "health is connected again: {:?}",
        broker.health()
    );
    publish(&broker, &topic, Message::new("after").with_id("after")).await;
    assert!(
        wait_until(WAIT, || ids.lock().expect("ids").contains("after")).await,
        "the subscription works again"
    );

    let text = broker_core::testkit::captured_text(&buffer);
    let lines = |level: &str, what: &str| {
        text.lines()
            .filter(|l| l.contains(level) && l.contains(what))
            .count()
    };
    // One outage, or two if the client got in once while the server was stopping.
    let outages = broker.outages().outages() as usize;
    assert!((1..=2).contains(&outages), "outages: {outages}");
    assert!(
        broker.outages().failures() as usize > outages + 3,
        "more attempts than outages"
    );
    assert_eq!(
        lines(" WARN ", "server unreachable"),
        outages,
        "one WARN per outage: {text}"
    );
    assert_eq!(
        lines(" INFO ", "server reachable again"),
        outages,
        "one INFO per outage: {text}"
    );
    assert!(
        lines(" WARN ", "JetStream pull") <= 1,
        "a pull that fails while the connection is down logs no WARN of its own: {text}"
    );
    let others: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains("server unreachable") && !l.contains("JetStream pull"))
        .collect();
    assert!(
        others.is_empty(),
        "no other warnings or errors: {others:#?}"
    );
    broker.close().await.expect("close");
    common::nats_sh("stop", PORT)
        .await
        .expect("stop the server");
}
