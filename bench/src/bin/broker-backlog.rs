//! A large backlog waiting in the broker, and the consumer's memory while it drains it.
//!
//! ```sh
//! cargo run --release -p broker-bench --features nats,kafka --bin broker-backlog -- \
//!     --url kafka://127.0.0.1:9092 --messages 1000000
//! ```
//!
//! In one process: a queue-group subscription reading from the earliest message is opened
//! first and left unread, then `--messages` messages (128 B and 3 headers by default,
//! each payload starting with its sequence number) are published with a window of
//! publishes in flight, so the whole backlog is in the broker while the subscriber
//! exists. Then the subscriber drains it, acking every delivery (up to 256 acks in
//! flight), until every sequence number has arrived. The run fails if any is missing
//! (nothing new for `--stall-secs`) or the payloads are wrong; redeliveries are counted,
//! not failed (at-least-once allows them). It prints one Markdown row with the peak RSS
//! (`VmHWM`), which is the figure that must stay bounded: the backlog belongs in the
//! broker, not in the consumer.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use broker::options::StartPosition;
use broker::{Message, SubscribeOptions};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// A backlog in the broker and the consumer's peak memory while it drains it.
#[derive(Debug, Parser)]
#[command(name = "broker-backlog", version, about)]
struct Args {
    /// The broker (`nats://`, `jetstream://`, `kafka://…`; `memory://` is measured by
    /// broker-bench's own backlog cases).
    #[arg(long)]
    url: String,
    /// Messages in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Payload size in bytes (at least 8: the sequence number).
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Publishes in flight.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Seconds the drain may go without a new message before the run fails.
    #[arg(long, default_value_t = 30)]
    stall_secs: u64,
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("broker-backlog FAILED: starting tokio: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(&args)) {
        eprintln!("broker-backlog FAILED: {err:#}");
        std::process::exit(1);
    }
}

/// Kibibytes of a `/proc/self/status` field (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn message(seq: u64, size: usize) -> Message {
    let mut payload = BytesMut::with_capacity(size);
    payload.put_u64(seq);
    payload.resize(size, b'x');
    Message::new(payload.freeze())
        .with_header("tenant", "acme")
        .with_header("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736")
        .with_header("content-type", "application/octet-stream")
}

fn sequence(payload: &Bytes, size: usize) -> anyhow::Result<u64> {
    if payload.len() != size {
        bail!("a payload of {} bytes, expected {size}", payload.len());
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&payload[..8]);
    Ok(u64::from_be_bytes(head))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    if args.payload < 8 {
        bail!("--payload must be at least 8 bytes (the sequence number)");
    }
    let total = usize::try_from(args.messages).context("--messages too large")?;
    let broker = broker::connect(&args.url)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let scheme = broker.capabilities().backend;
    if scheme == "memory" {
        bail!(
            "memory:// keeps its backlog in the process by design; broker-bench's backlog cases (`--backend memory`) measure it"
        );
    }
    let run_id = format!(
        "backlog{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let topic = format!("{run_id}.events");
    let base = status_kib("VmRSS").unwrap_or(0);

    // The subscriber exists while the backlog builds up, unread.
    let mut subscription = broker
        .subscribe(
            &topic,
            SubscribeOptions::new()
                .queue(format!("{run_id}-group"))
                .start(StartPosition::Earliest)
                .manual_ack(),
        )
        .await
        .context("subscribing")?;

    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for seq in 0..args.messages {
        if in_flight.len() >= args.window
            && let Some(result) = in_flight.next().await
        {
            result?;
        }
        let broker = broker.clone();
        let topic = topic.clone();
        let message = message(seq, args.payload);
        in_flight.push(async move {
            broker
                .publish(&topic, message)
                .await
                .with_context(|| format!("publishing message {seq}"))
        });
    }
    while let Some(result) = in_flight.next().await {
        result?;
    }
    let published = started.elapsed();
    let after_publish = status_kib("VmRSS").unwrap_or(0);
    eprintln!(
        "{scheme}: published {} messages in {:.1} s; RSS {}",
        args.messages,
        published.as_secs_f64(),
        mib(after_publish)
    );

    let drain_started = Instant::now();
    let mut seen = vec![false; total];
    let mut distinct = 0usize;
    let mut redelivered = 0u64;
    let mut acks: FuturesUnordered<Pin<Box<dyn Future<Output = broker::Result<()>> + Send>>> =
        FuturesUnordered::new();
    let stall = Duration::from_secs(args.stall_secs);
    while distinct < total {
        if acks.len() >= 256
            && let Some(result) = acks.next().await
        {
            result.context("acking")?;
        }
        let next = tokio::time::timeout(stall, subscription.next()).await;
        let delivery = match next {
            Ok(Some(delivery)) => delivery.context("receiving")?,
            Ok(None) => bail!("the subscription ended after {distinct} of {total} messages"),
            Err(_) => bail!(
                "nothing new for {} s: {distinct} of {total} messages arrived",
                args.stall_secs
            ),
        };
        let seq = sequence(delivery.message().payload(), args.payload)?;
        let slot = seen
            .get_mut(usize::try_from(seq).unwrap_or(usize::MAX))
            .with_context(|| format!("sequence number {seq} was never published"))?;
        if *slot {
            redelivered += 1;
        } else {
            *slot = true;
            distinct += 1;
        }
        acks.push(Box::pin(delivery.ack()));
    }
    while let Some(result) = acks.next().await {
        result.context("acking")?;
    }
    let drained = drain_started.elapsed();
    let peak = status_kib("VmHWM").context("no VmHWM in /proc/self/status")?;
    drop(subscription);
    broker.close().await.context("closing")?;

    println!(
        "| backend | backlog | payload | RSS before | RSS with the backlog published | peak RSS (VmHWM) | publish | drain | redelivered |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {scheme} | {} | {} B + 3 h | {} | {} | {} | {:.1} s | {:.1} s | {redelivered} |",
        args.messages,
        args.payload,
        mib(base),
        mib(after_publish),
        mib(peak),
        published.as_secs_f64(),
        drained.as_secs_f64()
    );
    Ok(())
}
