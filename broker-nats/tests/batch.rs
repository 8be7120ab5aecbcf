//! JetStream batches beyond the conformance kit: a batch over the ack window (256) is
//! stored whole, in order.

mod common;

use std::time::Duration;

use broker_core::testkit::{Collector, check_payload_order, subscribe};
use broker_core::{Broker, Message, SubscribeOptions};
use common::js_topic;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_batch_over_the_ack_window_is_stored_whole_and_in_order() {
    const BATCH: usize = 700;
    let broker = common::connect(&common::jetstream_url("")).await;
    let topic = js_topic("batch_window");
    let collector = Collector::spawn(subscribe(&broker, &topic, SubscribeOptions::new()).await);
    let batch = (0..BATCH)
        .map(|seq| Message::new(seq.to_string()))
        .collect();
    if let Err(err) = broker.publish_batch(&topic, batch).await {
        panic!("a batch of {BATCH} failed: {err}");
    }
    let received = collector
        .wait_for(BATCH, Duration::from_secs(30), "the batch")
        .await;
    check_payload_order(&received, |_| (), "the batch");
    broker.close().await.expect("close");
}
