//! Order per publisher (or per key), with several streams interleaved.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use tokio::sync::Barrier;

use super::{collect, must, numbered, publish, seq_of, subscribe_with, unique_group, wait_until};
use crate::testkit::{KeyOrder, Kit, first_deliveries};
use crate::{BoxError, Event, HandlerOptions, SubscribeOptions};

/// Four publishers each send 100 numbered messages under their own key, at the same time,
/// to one topic. A plain subscriber and a one-member queue group see each stream in the
/// order it was sent (first deliveries; redeliveries of a message already seen are
/// ignored).
pub async fn ordering_of_interleaved_streams(kit: Kit) {
    if !kit.features.ordering {
        return kit.skip("ordering_of_interleaved_streams", "ordering");
    }
    const STREAMS: usize = 4;
    const EACH: usize = 100;
    let broker = kit.connect().await;
    let topic = kit.topic("ordering");
    let mut readers = vec![collect(&broker, &topic, SubscribeOptions::new()).await];
    if kit.features.queue_groups {
        let group = unique_group("order");
        let options = SubscribeOptions::new().queue(group);
        readers.push(collect(&broker, &topic, options).await);
    }

    let broker_ref = &broker;
    let topic_ref = &topic;
    join_all((0..STREAMS).map(|stream| async move {
        for i in 0..EACH {
            let message = numbered(stream * EACH + i).with_key(format!("stream-{stream}"));
            publish(broker_ref, topic_ref, message).await;
        }
    }))
    .await;

    let all = super::wait_for_each(&kit, &readers, STREAMS * EACH, "ordering: reader").await;
    for (n, received) in all.into_iter().enumerate() {
        let mut order = KeyOrder::default();
        for message in first_deliveries(&received) {
            let seq = seq_of(message);
            order.next(seq / EACH, seq, &format!("ordering: reader {n}, stream"));
        }
    }
    must(broker.close().await, "close");
}

/// The first deliveries a handler started, in the order it started them, with whether
/// another message of the same key was running at the time.
#[derive(Default)]
struct Started {
    ids: HashSet<crate::MessageId>,
    order: Vec<(usize, bool)>,
}

/// 320 messages over 64 keys (`k0`, `k1`, … in turn) go to a handler run with
/// `concurrency(8)`: each key's messages are handled one after another, in the order they
/// were published (first deliveries), and the first two handled run at the same time.
pub async fn handler_keeps_key_order_and_runs_keys_at_once(kit: Kit) {
    if !kit.features.ordering {
        return kit.skip("handler_keeps_key_order_and_runs_keys_at_once", "ordering");
    }
    const KEYS: usize = 64;
    const N: usize = 5 * KEYS;
    let broker = kit.connect().await;
    let topic = kit.topic("handler_key_order");
    let active: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let started: Arc<Mutex<Started>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let first_two = Arc::new(Barrier::new(2));
    let met = Arc::new(AtomicUsize::new(0));
    let timeout = kit.features.timeout;
    let handler = {
        let (active, started, finished) = (active.clone(), started.clone(), finished.clone());
        let (calls, first_two, met) = (calls.clone(), first_two.clone(), met.clone());
        move |event: Event| {
            let (active, started, finished) = (active.clone(), started.clone(), finished.clone());
            let (calls, first_two, met) = (calls.clone(), first_two.clone(), met.clone());
            async move {
                let seq = seq_of(event.message());
                let key = seq % KEYS;
                let alone = active.lock().map(|mut a| a.insert(key)).unwrap_or(false);
                let first = started.lock().is_ok_and(|mut s| {
                    let first = s.ids.insert(event.message().id().clone());
                    if first {
                        s.order.push((seq, alone));
                    }
                    first
                });
                // The first two calls wait for each other: they meet only if they overlap.
                if calls.fetch_add(1, Ordering::SeqCst) < 2
                    && tokio::time::timeout(timeout, first_two.wait())
                        .await
                        .is_ok()
                {
                    met.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                if let Ok(mut a) = active.lock() {
                    a.remove(&key);
                }
                if first {
                    finished.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, BoxError>(())
            }
        }
    };
    let options = HandlerOptions::new().concurrency(8);
    let handle = subscribe_with(&broker, &topic, options, handler).await;
    for seq in 0..N {
        let message = numbered(seq).with_key(format!("k{}", seq % KEYS));
        publish(&broker, &topic, message).await;
    }
    let all = wait_until(timeout, || finished.load(Ordering::SeqCst) >= N).await;
    let handled = finished.load(Ordering::SeqCst);
    assert!(all, "handler key order: {handled} of {N} messages handled");
    must(handle.shutdown().await, "shutdown");

    assert_eq!(
        met.load(Ordering::SeqCst),
        2,
        "handler key order: the first two calls never ran at the same time"
    );
    let order = started.lock().map(|s| s.order.clone()).unwrap_or_default();
    let mut key_order = KeyOrder::default();
    for (seq, alone) in order {
        let key = seq % KEYS;
        assert!(
            alone,
            "handler key order: message {seq} started while another of key {key} was running"
        );
        key_order.next(key, seq, "handler key order (started)");
    }
    must(broker.close().await, "close");
}
