//! Order per publisher (or per key), with several streams interleaved.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;

use super::{collect, must, numbered, publish, seq_of, unique_group};
use crate::SubscribeOptions;
use crate::testkit::Kit;

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

    for (n, reader) in readers.iter().enumerate() {
        let received = reader
            .wait_for(
                STREAMS * EACH,
                kit.features.timeout,
                format!("ordering: reader {n}"),
            )
            .await;
        let mut seen = HashSet::new();
        let mut last: HashMap<usize, usize> = HashMap::new();
        for r in received {
            if !seen.insert(r.message.id().clone()) {
                continue;
            }
            let seq = seq_of(&r.message);
            let stream = seq / EACH;
            if let Some(&previous) = last.get(&stream) {
                assert!(
                    seq > previous,
                    "ordering: reader {n}, stream {stream}: {seq} arrived after {previous}"
                );
            }
            last.insert(stream, seq);
        }
    }
    must(broker.close().await, "close");
}
