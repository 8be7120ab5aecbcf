//! `*` matches one token, `>` one or more trailing tokens; the rest do not match.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{collect, must, publish};
use crate::testkit::Kit;
use crate::{Message, SubscribeOptions};

/// Subscribes `B.*`, `B.>`, `B.*.end` and `B.a` (B a unique base), then publishes to
/// topics that do not match any of them (`B`, a sibling base, a longer prefix) before the
/// ones that do. Each subscription receives exactly the topics it matches.
pub async fn wildcards_match_and_do_not_match(kit: Kit) {
    let broker = kit.connect().await;
    let base = kit.topic("wild");
    let patterns = [
        format!("{base}.*"),
        format!("{base}.>"),
        format!("{base}.*.end"),
        format!("{base}.a"),
    ];
    let mut collectors = Vec::new();
    for pattern in &patterns {
        collectors.push(collect(&broker, pattern, SubscribeOptions::new()).await);
    }
    let never = [base.clone(), format!("{base}x.a"), format!("x.{base}.a")];
    for topic in &never {
        publish(&broker, topic, Message::new("must not arrive")).await;
    }
    let topics = [
        format!("{base}.a"),
        format!("{base}.b"),
        format!("{base}.a.b"),
        format!("{base}.x.end"),
        format!("{base}.a.b.end"),
    ];
    for topic in &topics {
        publish(&broker, topic, Message::new(topic.clone())).await;
    }

    let t = |suffixes: &[&str]| -> BTreeSet<String> {
        suffixes.iter().map(|s| format!("{base}.{s}")).collect()
    };
    let expected = [
        t(&["a", "b"]),
        t(&["a", "b", "a.b", "x.end", "a.b.end"]),
        t(&["x.end"]),
        t(&["a"]),
    ];
    for ((pattern, collector), want) in patterns.iter().zip(&collectors).zip(&expected) {
        collector
            .wait_for(
                want.len(),
                kit.features.timeout,
                format!("wildcards: `{pattern}`"),
            )
            .await;
    }
    // The non-matching messages were published first; give any straggler a moment to show
    // itself before checking that none arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((pattern, collector), want) in patterns.iter().zip(&collectors).zip(&expected) {
        let got: BTreeSet<String> = collector.received().into_iter().map(|r| r.topic).collect();
        assert_eq!(&got, want, "wildcards: the topics `{pattern}` received");
        for r in collector.received() {
            assert_eq!(
                r.message.payload().as_ref(),
                r.topic.as_bytes(),
                "wildcards: `{pattern}` got a message with a wrong concrete topic"
            );
        }
    }
    must(broker.close().await, "close");
}
