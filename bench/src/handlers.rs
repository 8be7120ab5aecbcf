//! Keyed handlers: `concurrency(n)` with a handler that works a fixed time, on messages
//! spread over keys in one partition, against the ideal of `n` handlers always busy.
//!
//! The messages are published first; the run is timed from the first handler's start to
//! the last handler's end, so joining the consumer group is not counted. Each key's
//! messages must be handled in the order they were published; a run that sees one out of
//! order fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use broker::options::StartPosition;
use broker::{BoxError, Broker, BrokerExt, Event, HandlerOptions, Message, SubscribeOptions};
use tokio::sync::Notify;

/// The header carrying a message's number.
const SEQ: &str = "seq";

/// What a keyed-handlers run does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed {
    /// Messages published, then handled.
    pub(crate) messages: u64,
    /// Keys the messages are spread over, round robin.
    pub(crate) keys: u64,
    /// Handlers at once.
    pub(crate) concurrency: usize,
    /// How long each handler works.
    pub(crate) work: Duration,
}

impl Keyed {
    /// Messages per second with every handler always busy, on paper.
    pub(crate) fn ideal(&self) -> f64 {
        self.concurrency as f64 / self.work.as_secs_f64()
    }

    /// Messages per second of `concurrency` tokio tasks doing nothing but the handler's
    /// work back to back, `messages` in all: the ideal on this machine and timer (a tokio
    /// sleep ends on the next millisecond tick after its time).
    pub(crate) async fn busy_tasks(&self) -> anyhow::Result<f64> {
        let each = self.messages / self.concurrency.max(1) as u64;
        let work = self.work;
        let start = Instant::now();
        let tasks: Vec<_> = (0..self.concurrency)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..each {
                        tokio::time::sleep(work).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.context("a busy task failed")?;
        }
        Ok((each * self.concurrency as u64) as f64 / start.elapsed().as_secs_f64())
    }
}

/// What the handlers saw.
#[derive(Default)]
struct Seen {
    handled: AtomicU64,
    out_of_order: AtomicU64,
    /// The last number handled per key.
    last: Mutex<HashMap<String, u64>>,
    first_start: Mutex<Option<Instant>>,
    last_end: Mutex<Option<Instant>>,
    done: Notify,
}

impl Seen {
    /// Records the start of message `seq` of `key`: counts it out of order when a later
    /// one of its key was handled already.
    fn start(&self, key: &str, seq: u64) {
        if let Ok(mut first) = self.first_start.lock() {
            first.get_or_insert_with(Instant::now);
        }
        if let Ok(mut last) = self.last.lock() {
            let previous = last.insert(key.to_owned(), seq);
            if previous.is_some_and(|previous| previous >= seq) {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn end(&self, expected: u64) {
        if let Ok(mut last) = self.last_end.lock() {
            *last = Some(Instant::now());
        }
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == expected {
            self.done.notify_one();
        }
    }
}

/// Publishes `keyed.messages` messages of 128 B to `topic` (which must have one
/// partition), then handles them with `concurrency(keyed.concurrency)`; returns the
/// messages handled per second.
pub(crate) async fn measure(
    broker: &Arc<dyn Broker>,
    topic: &str,
    keyed: Keyed,
    stall: Duration,
) -> anyhow::Result<f64> {
    let payload = vec![b'k'; 128];
    let batch: Vec<Message> = (0..keyed.messages)
        .map(|seq| {
            Message::new(payload.clone())
                .with_key(format!("k{}", seq % keyed.keys.max(1)))
                .with_header(SEQ, seq.to_string())
        })
        .collect();
    broker
        .publish_batch(topic, batch)
        .await
        .with_context(|| format!("publishing to `{topic}`"))?;

    let seen = Arc::new(Seen::default());
    let handler = {
        let seen = seen.clone();
        move |event: Event| {
            let seen = seen.clone();
            async move {
                let message = event.message();
                let key = message.key_str().unwrap_or_default().to_owned();
                let seq = message
                    .headers()
                    .get(SEQ)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                seen.start(&key, seq);
                tokio::time::sleep(keyed.work).await;
                seen.end(keyed.messages);
                Ok::<_, BoxError>(())
            }
        }
    };
    let options = SubscribeOptions::new()
        .queue(format!("keyed-{}", topic.replace('.', "-")))
        .start(StartPosition::Earliest);
    let handle = broker
        .subscribe_with(
            topic,
            options,
            HandlerOptions::new().concurrency(keyed.concurrency),
            handler,
        )
        .await
        .with_context(|| format!("subscribing to `{topic}`"))?;
    let mut handled = 0;
    loop {
        if tokio::time::timeout(stall, seen.done.notified())
            .await
            .is_ok()
        {
            break;
        }
        let now = seen.handled.load(Ordering::Acquire);
        if now == handled {
            handle.shutdown().await?;
            bail!(
                "keyed handlers: {now} of {} handled, nothing more for {stall:?}",
                keyed.messages
            );
        }
        handled = now;
    }
    handle.shutdown().await?;
    let out_of_order = seen.out_of_order.load(Ordering::Acquire);
    if out_of_order > 0 {
        bail!("keyed handlers: {out_of_order} messages handled before an earlier one of their key");
    }
    let first = seen.first_start.lock().ok().and_then(|t| *t);
    let last = seen.last_end.lock().ok().and_then(|t| *t);
    let (Some(first), Some(last)) = (first, last) else {
        bail!("keyed handlers: no handler ran");
    };
    Ok(keyed.messages as f64 / (last - first).as_secs_f64())
}
