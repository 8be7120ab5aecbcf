//! Kafka batches beyond the conformance kit: a batch larger than librdkafka's queue waits
//! for room (for the batch's own delivery reports) instead of failing.

mod common;

use std::time::Duration;

use broker_core::testkit::{Collector, check_payload_order, subscribe, unique_topic};
use broker_core::{Broker, Message, SubscribeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_send_queue_waits_for_room_and_loses_nothing() {
    const BATCH: usize = 300;
    // Room for 10 records: the batch must wait for its own reports 29 times at least.
    let broker =
        common::connect_with(common::options().set("queue.buffering.max.messages", "10")).await;
    let topic = unique_topic("batch.queue_full");
    let collector = Collector::spawn(subscribe(&broker, &topic, SubscribeOptions::new()).await);
    let batch = (0..BATCH)
        .map(|seq| Message::new(seq.to_string()).with_key(format!("k{}", seq % 3)))
        .collect();
    if let Err(err) = broker.publish_batch(&topic, batch).await {
        panic!("a batch over a full queue failed: {err}");
    }
    let received = collector
        .wait_for(BATCH, Duration::from_secs(60), "the batch")
        .await;
    check_payload_order(&received, |seq| seq % 3, "the batch");
    broker.close().await.expect("close");
}
