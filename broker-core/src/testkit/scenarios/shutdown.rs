//! Shutting a subscriber down within a deadline.

use std::time::Duration;

use super::{collect, must, publish, unique_group};
use crate::handler::ShutdownReport;
use crate::testkit::Kit;
use crate::{BoxError, BrokerExt, Event, HandlerOptions, Message, SubscribeOptions};

/// A handler that never returns holds the only message; `shutdown_within` a short
/// deadline returns soon after it, reporting that handler cancelled. Where the backend
/// redelivers to a queue group, the cancelled message was nacked and comes back to the
/// next member: one subscribing after the shutdown where messages outlive their
/// subscribers, one already there (subscribed once the message was taken) otherwise.
pub async fn shutdown_deadline_cancels_and_redelivers(kit: Kit) {
    const DEADLINE: Duration = Duration::from_millis(500);
    let broker = kit.connect().await;
    let topic = kit.topic("shutdown_deadline");
    let features = &kit.features;
    let redelivers = features.redelivery && features.queue_groups;
    let group = unique_group("deadline");
    let options = if redelivers {
        SubscribeOptions::new().queue(group.clone())
    } else {
        SubscribeOptions::new()
    };

    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |event: Event| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(event.message().id().clone());
            std::future::pending::<()>().await;
            Ok::<(), BoxError>(())
        }
    };
    let handle = must(
        broker
            .subscribe_with(&topic, options.clone(), HandlerOptions::new(), handler)
            .await,
        "subscribe_with",
    );
    let message = Message::new("blocks its handler");
    let id = message.id().clone();
    publish(&broker, &topic, message).await;
    match tokio::time::timeout(features.timeout, started.recv()).await {
        Ok(Some(taken)) => assert_eq!(taken, id, "shutdown deadline: another message"),
        _ => panic!(
            "shutdown deadline: the handler did not start within {:?}",
            features.timeout
        ),
    }
    // Without persistence, the member that gets the message back must be there already.
    let waiting = if redelivers && !features.persistence {
        Some(collect(&broker, &topic, options.clone()).await)
    } else {
        None
    };

    let began = tokio::time::Instant::now();
    let report =
        match tokio::time::timeout(features.timeout, handle.shutdown_within(DEADLINE)).await {
            Ok(report) => must(report, "shutdown_within"),
            Err(_) => panic!(
                "shutdown deadline: shutdown_within({DEADLINE:?}) took more than {:?}",
                features.timeout
            ),
        };
    let took = began.elapsed();
    assert_eq!(
        report,
        ShutdownReport {
            finished: 0,
            cancelled: 1
        },
        "shutdown deadline: the report"
    );
    assert!(
        took >= DEADLINE,
        "shutdown deadline: returned after {took:?}, before the deadline"
    );

    if redelivers {
        let next = match waiting {
            Some(member) => member,
            None => collect(&broker, &topic, options).await,
        };
        next.wait_for(
            1,
            features.timeout,
            "shutdown deadline: the cancelled message, redelivered",
        )
        .await;
        assert!(
            next.ids().contains(&id),
            "shutdown deadline: another message came back"
        );
        next.stop().await;
    } else {
        kit.skip(
            "shutdown_deadline_cancels_and_redelivers (its redelivery half)",
            "redelivery to queue groups",
        );
    }
    must(broker.close().await, "close");
}
