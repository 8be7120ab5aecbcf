//! The broker server restarts twice in the middle of a stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{collect, join_tasks, must, numbered, unique_group, wait_until};
use crate::testkit::Kit;
use crate::{Message, SubscribeOptions};

/// A publisher sends 300 numbered messages, retrying any publish that fails, while the
/// server is restarted after the 100th and the 200th. In at-least-once modes every
/// message arrives; otherwise messages published after the restarts arrive again.
pub async fn restart_mid_stream(kit: Kit) {
    let Some(target) = kit.features.restart.clone() else {
        return kit.skip("restart_mid_stream", "a restart command");
    };
    const N: usize = 300;
    let connect = || async {
        match (target.connect)().await {
            Ok(broker) => broker,
            Err(err) => panic!("restart: cannot connect: {}", err.display_chain()),
        }
    };
    let broker = connect().await;
    let topic = kit.topic("restart");
    let options = if kit.features.persistence && kit.features.queue_groups {
        SubscribeOptions::new().queue(unique_group("restart"))
    } else {
        SubscribeOptions::new()
    };
    let collector = collect(&broker, &topic, options).await;

    let published = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (broker, topic) = (broker.clone(), topic.clone());
        let (published, failures) = (published.clone(), failures.clone());
        let deadline = tokio::time::Instant::now() + kit.features.timeout * 4;
        tokio::spawn(async move {
            for seq in 0..N {
                loop {
                    match broker.publish(&topic, numbered(seq)).await {
                        Ok(()) => break,
                        Err(err) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                tokio::time::Instant::now() < deadline,
                                "restart: publishing {seq} still fails: {}",
                                err.display_chain()
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                published.store(seq + 1, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    for at in [100, 200] {
        let reached = wait_until(kit.features.timeout * 2, || {
            published.load(Ordering::Acquire) >= at
        })
        .await;
        assert!(reached, "restart: the publisher did not reach message {at}");
        must(
            (target.restart)().await,
            format!("restart the server after {at}"),
        );
    }
    join_tasks([publisher]).await;

    if kit.features.at_least_once {
        let received = collector
            .wait_for(N, kit.features.timeout * 2, "restart: at-least-once stream")
            .await;
        super::check_duplicates(&kit, &received, "restart");
    } else {
        // At-most-once: what was in flight during a restart may be gone, but the stream
        // resumes: a probe published now arrives.
        let before = collector.unique_count();
        let deadline = tokio::time::Instant::now() + kit.features.timeout;
        loop {
            must(
                broker.publish(&topic, Message::new("probe")).await,
                "publish a probe",
            );
            if wait_until(Duration::from_millis(200), || {
                collector.unique_count() > before
            })
            .await
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "restart: nothing published after the restarts arrived"
            );
        }
    }
    let _ = broker.close().await;
}
