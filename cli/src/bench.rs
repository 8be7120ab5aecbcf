//! `broker bench`: how fast this URL takes publishes, and carries them to a subscriber.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::{Broker, Message, SubscribeOptions};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::args::BenchArgs;
use crate::error::{CliError, CliResult};

/// Runs below this many messages show no progress bar.
const LONG_RUN: u64 = 1_000;

/// What one phase measured.
#[derive(Debug)]
struct Phase {
    name: &'static str,
    messages: u64,
    elapsed: Duration,
    /// Publish-to-receive latencies, in microseconds, sorted.
    latencies: Vec<u64>,
}

/// Measures publishing alone, then publishing to a live subscriber, and prints a table.
pub(crate) async fn run(bus: &Arc<dyn Broker>, args: &BenchArgs) -> CliResult {
    let publish = publish_phase(bus, args).await?;
    let carried = pubsub_phase(bus, args).await?;
    println!(
        "{}: {} messages of {} bytes, {} publishes in flight",
        bus.capabilities().backend,
        args.count,
        args.size,
        args.in_flight
    );
    print_table(&[&publish, &carried], args.size);
    if carried.messages < args.count {
        return Err(CliError::Timeout(format!(
            "the subscriber got {} of {} messages within {}s",
            carried.messages,
            args.count,
            args.timeout.as_secs_f64()
        )));
    }
    Ok(())
}

/// Publishes `count` messages to a fresh topic nobody reads.
async fn publish_phase(bus: &Arc<dyn Broker>, args: &BenchArgs) -> CliResult<Phase> {
    let topic = fresh_topic("publish");
    let bar = progress(args.count, "publish");
    let start = Instant::now();
    publish_all(bus, &topic, args, start, &bar).await?;
    bar.finish_and_clear();
    Ok(Phase {
        name: "publish",
        messages: args.count,
        elapsed: start.elapsed(),
        latencies: Vec::new(),
    })
}

/// Subscribes to a fresh topic, publishes `count` messages to it and waits (up to
/// `--timeout`) until the subscriber has them all.
async fn pubsub_phase(bus: &Arc<dyn Broker>, args: &BenchArgs) -> CliResult<Phase> {
    let topic = fresh_topic("pubsub");
    let mut subscription = bus.subscribe(&topic, SubscribeOptions::new()).await?;
    let bar = progress(args.count, "pub→sub");
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(capacity(args.count))));
    let start = Instant::now();
    let receiver = {
        let (received, latencies, bar, count) =
            (received.clone(), latencies.clone(), bar.clone(), args.count);
        tokio::spawn(async move {
            while received.load(Ordering::Relaxed) < count {
                match subscription.next().await {
                    Some(Ok(delivery)) => {
                        let sent = stamp(delivery.message().payload());
                        let now = start.elapsed().as_micros() as u64;
                        if let (Some(sent), Ok(mut all)) = (sent, latencies.lock()) {
                            all.push(now.saturating_sub(sent));
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        bar.inc(1);
                    }
                    Some(Err(err)) => bar.suspend(|| eprintln!("warning: {}", err.display_chain())),
                    None => break,
                }
            }
        })
    };
    publish_all(bus, &topic, args, start, &ProgressBar::hidden()).await?;
    let finished = tokio::time::timeout(args.timeout, receiver).await.is_ok();
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let mut latencies = match latencies.lock() {
        Ok(mut all) => std::mem::take(&mut *all),
        Err(_) => Vec::new(),
    };
    latencies.sort_unstable();
    let messages = received.load(Ordering::Relaxed);
    if !finished {
        eprintln!("warning: {messages} of {} messages arrived", args.count);
    }
    Ok(Phase {
        name: "pub→sub",
        messages,
        elapsed,
        latencies,
    })
}

/// Publishes `count` messages of `size` bytes, `in_flight` at a time, each stamped with
/// the microseconds since `start` in its first 8 bytes (when it has 8).
async fn publish_all(
    bus: &Arc<dyn Broker>,
    topic: &str,
    args: &BenchArgs,
    start: Instant,
    bar: &ProgressBar,
) -> CliResult {
    let filler = vec![b'x'; args.size];
    futures::stream::iter(0..args.count)
        .map(|_| {
            let mut payload = filler.clone();
            if let Some(head) = payload.get_mut(..8) {
                head.copy_from_slice(&(start.elapsed().as_micros() as u64).to_be_bytes());
            }
            bus.publish(topic, Message::new(Bytes::from(payload)))
        })
        .buffer_unordered(args.in_flight.max(1))
        .map_ok(|()| bar.inc(1))
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// The send time a payload carries, when it is long enough to carry one.
fn stamp(payload: &[u8]) -> Option<u64> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// A topic of its own for one phase of one run.
fn fresh_topic(phase: &str) -> String {
    format!("bench.{phase}.{}", uuid::Uuid::now_v7().simple())
}

/// A bar on stderr for long runs, when stderr is a terminal; hidden otherwise.
fn progress(count: u64, label: &'static str) -> ProgressBar {
    if count < LONG_RUN || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(count).with_message(label);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// How many latencies to make room for up front.
fn capacity(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX).min(1 << 20)
}

/// The table: one row per phase.
fn print_table(phases: &[&Phase], size: usize) {
    println!(
        "{:<8} {:>10} {:>9} {:>12} {:>9} {:>9} {:>9}",
        "phase", "messages", "seconds", "msg/s", "MB/s", "p50 ms", "p99 ms"
    );
    for phase in phases {
        let secs = phase.elapsed.as_secs_f64().max(f64::EPSILON);
        let rate = phase.messages as f64 / secs;
        println!(
            "{:<8} {:>10} {:>9.3} {:>12.0} {:>9.2} {:>9} {:>9}",
            phase.name,
            phase.messages,
            secs,
            rate,
            rate * size as f64 / 1e6,
            percentile(&phase.latencies, 0.50),
            percentile(&phase.latencies, 0.99),
        );
    }
}

/// The `q` quantile of sorted microseconds, in milliseconds; `-` when there are none.
fn percentile(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    let micros = sorted.get(index).copied().unwrap_or_default();
    format!("{:.2}", micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back() {
        let mut payload = vec![0u8; 16];
        payload[..8].copy_from_slice(&1234u64.to_be_bytes());
        assert_eq!(stamp(&payload), Some(1234));
        assert_eq!(stamp(b"short"), None);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        assert_eq!(percentile(&[], 0.5), "-");
        assert_eq!(percentile(&[1000, 2000, 3000], 0.5), "2.00");
        assert_eq!(percentile(&[1000, 2000, 3000], 0.99), "3.00");
    }
}
