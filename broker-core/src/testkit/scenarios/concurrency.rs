//! Many publishers, subscribers and topics at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tokio::sync::Notify;

use super::{collect, join_tasks, must, numbered, publish, seq_of, subscribe_with, wait_until};
use crate::testkit::{Collector, Kit};
use crate::{BoxError, Event, HandlerOptions, Message, SubscribeOptions};

/// 8 publishers send 250 messages each, concurrently, to one topic with 4 plain
/// subscribers; every subscriber receives all 2000.
pub async fn concurrent_publishers_and_subscribers(kit: Kit) {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 250;
    let broker = kit.connect().await;
    let topic = kit.topic("concurrent");
    let subscribers =
        join_all((0..4).map(|_| collect(&broker, &topic, SubscribeOptions::new()))).await;

    let publishers = (0..PUBLISHERS).map(|p| {
        let broker = broker.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 0..EACH {
                publish(&broker, &topic, numbered(p * EACH + i)).await;
            }
        })
    });
    join_tasks(publishers).await;
    let all = super::wait_for_each(
        &kit,
        &subscribers,
        PUBLISHERS * EACH,
        "concurrent: subscriber",
    )
    .await;
    for (n, received) in all.into_iter().enumerate() {
        super::check_duplicates(&kit, &received, "concurrent");
        let mut seqs: Vec<_> = received.iter().map(|r| seq_of(&r.message)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs,
            (0..PUBLISHERS * EACH).collect::<Vec<_>>(),
            "concurrent: subscriber {n} got another set of messages"
        );
    }
    must(broker.close().await, "close");
}

/// 10 topics, each with its own subscriber, receive 20 messages each published at the
/// same time; no message reaches a subscriber of another topic.
pub async fn many_topics_stay_isolated(kit: Kit) {
    const TOPICS: usize = 10;
    const EACH: usize = 20;
    let broker = kit.connect().await;
    let topics: Vec<String> = (0..TOPICS)
        .map(|t| format!("{}.t{t}", kit.topic("isolated")))
        .collect();
    let subscribers: Vec<Collector> = join_all(
        topics
            .iter()
            .map(|t| collect(&broker, t, SubscribeOptions::new())),
    )
    .await;

    let broker_ref = &broker;
    join_all(topics.iter().map(|topic| async move {
        for i in 0..EACH {
            publish(broker_ref, topic, Message::new(format!("{topic}#{i}"))).await;
        }
    }))
    .await;

    for (topic, subscriber) in topics.iter().zip(&subscribers) {
        subscriber
            .wait_for(EACH, kit.features.timeout, format!("isolated: `{topic}`"))
            .await;
    }
    // Every topic has received all of its own; anything foreign would have arrived by now
    // on backends that keep per-publisher order, and is checked for on all.
    for (topic, subscriber) in topics.iter().zip(&subscribers) {
        for r in subscriber.received() {
            assert_eq!(
                &r.topic, topic,
                "isolated: a message of another topic arrived"
            );
            let payload = String::from_utf8_lossy(r.message.payload()).into_owned();
            assert!(
                payload.starts_with(&format!("{topic}#")),
                "isolated: `{topic}` received `{payload}`"
            );
        }
        assert_eq!(subscriber.unique_count(), EACH, "isolated: `{topic}` count");
    }
    must(broker.close().await, "close");
}

/// A handler run with `concurrency(4)` blocks on message 0 until released; the other
/// three slots handle all 40 other (keyless) messages meanwhile. Once released, message 0
/// is handled too, and shutdown settles everything.
pub async fn blocked_handler_leaves_the_other_slots_working(kit: Kit) {
    const OTHERS: usize = 40;
    let broker = kit.connect().await;
    let topic = kit.topic("blocked_slot");
    let release = Arc::new(Notify::new());
    let handled: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let handler = {
        let (release, handled) = (release.clone(), handled.clone());
        move |event: Event| {
            let (release, handled) = (release.clone(), handled.clone());
            async move {
                let seq = seq_of(event.message());
                if seq == 0 {
                    release.notified().await;
                }
                if let Ok(mut handled) = handled.lock() {
                    handled.insert(seq);
                }
                Ok::<_, BoxError>(())
            }
        }
    };
    let options = HandlerOptions::new().concurrency(4);
    let handle = subscribe_with(&broker, &topic, options, handler).await;
    super::publish_numbered(&broker, &topic, 0..OTHERS + 1).await;

    let count = |handled: &Mutex<HashSet<usize>>| handled.lock().map(|h| h.len()).unwrap_or(0);
    let others = wait_until(kit.features.timeout, || count(&handled) >= OTHERS).await;
    let done_early = handled.lock().map(|h| h.contains(&0)).unwrap_or(true);
    assert!(
        others && !done_early,
        "blocked slot: {} of {OTHERS} other messages handled while one handler was blocked",
        count(&handled),
    );
    release.notify_one();
    let all = wait_until(kit.features.timeout, || count(&handled) > OTHERS).await;
    assert!(all, "blocked slot: the released handler did not finish");
    must(handle.shutdown().await, "shutdown");
    must(broker.close().await, "close");
}
