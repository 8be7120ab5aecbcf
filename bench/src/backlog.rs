//! Memory under a large backlog on the memory backend, measured in a child process so
//! its peak RSS (`VmHWM`) is its own.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use broker::memory::{MemoryBroker, MemoryOptions};
use broker::{Broker, Headers, Message, SubscribeOptions};
use clap::ValueEnum;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::machine::status_kib;
use crate::side::MsgSpec;

/// One backlog case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Case {
    /// Framework, default buffer (1024): the publisher waits for a slow consumer.
    FwBackpressure,
    /// tokio mpsc bounded to 1024, the same slow consumer.
    RawBounded,
    /// Framework with `buffer` = the whole backlog, consumer started after the last
    /// publish: every message is held at once.
    FwHeld,
    /// tokio unbounded mpsc, consumer started after the last publish.
    RawHeld,
}

impl Case {
    fn all() -> [Case; 4] {
        [
            Case::FwBackpressure,
            Case::RawBounded,
            Case::FwHeld,
            Case::RawHeld,
        ]
    }

    fn describe(self) -> &'static str {
        match self {
            Case::FwBackpressure => {
                "framework, default buffer 1024, slow consumer (publish waits: backpressure)"
            }
            Case::RawBounded => "tokio mpsc bounded 1024, same slow consumer",
            Case::FwHeld => {
                "framework, buffer = backlog, consumer starts after the last publish (all held)"
            }
            Case::RawHeld => "tokio unbounded mpsc, consumer starts after the last publish",
        }
    }
}

/// What one case measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The case.
    pub(crate) case: &'static str,
    /// Peak RSS of the child, KiB.
    pub(crate) peak_kib: u64,
    /// RSS of the child before it published, KiB.
    pub(crate) base_kib: u64,
    /// Seconds from the first publish to the last message consumed.
    pub(crate) seconds: f64,
}

/// The payload size of the backlog messages.
pub(crate) const BACKLOG_PAYLOAD: usize = 128;

/// Runs every case in a child process (this executable, `--backlog-child CASE`) and
/// returns what each measured.
pub(crate) fn run_all(messages: u64) -> anyhow::Result<Vec<Outcome>> {
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let mut out = Vec::new();
    for case in Case::all() {
        let name = case
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .context("case name")?;
        let output = Command::new(&exe)
            .args([
                "--backlog-child",
                &name,
                "--messages",
                &messages.to_string(),
            ])
            .output()
            .with_context(|| format!("running the backlog child `{name}`"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "backlog case `{name}` failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let field = |key: &str| -> anyhow::Result<f64> {
            stdout
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("backlog case `{name}` printed no {key}: {stdout}"))
        };
        out.push(Outcome {
            case: case.describe(),
            peak_kib: field("peak_kib")? as u64,
            base_kib: field("base_kib")? as u64,
            seconds: field("seconds")?,
        });
    }
    Ok(out)
}

/// The child's side: runs `case` with `messages` messages, checks every one arrived and
/// prints `peak_kib=… base_kib=… seconds=…`.
pub(crate) fn child(case: Case, messages: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let base = status_kib("VmRSS").unwrap_or(0);
    let start = Instant::now();
    runtime.block_on(async move {
        match case {
            Case::FwBackpressure => framework(messages, false).await,
            Case::FwHeld => framework(messages, true).await,
            Case::RawBounded => raw(messages, false).await,
            Case::RawHeld => raw(messages, true).await,
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM").context("no VmHWM in /proc/self/status")?;
    println!("peak_kib={peak} base_kib={base} seconds={seconds:.3}");
    Ok(())
}

/// The slow consumer: a pause of 1 ms after every 1000 messages.
async fn slow(count: u64) {
    if count.is_multiple_of(1000) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn framework(messages: u64, held: bool) -> anyhow::Result<()> {
    let spec = MsgSpec::new(BACKLOG_PAYLOAD, true);
    let headers: Headers = spec
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut options = MemoryOptions::default();
    if held {
        options = options.buffer(usize::try_from(messages).context("backlog too large")?);
    }
    let broker = Arc::new(MemoryBroker::with_options(options));
    let mut sub = broker
        .subscribe("backlog.topic", SubscribeOptions::new())
        .await?;
    let consumer = async move {
        let mut count = 0u64;
        while count < messages {
            let delivery = match sub.next().await {
                Some(delivery) => delivery?,
                None => bail!("subscription ended after {count} of {messages} messages"),
            };
            delivery.ack().await?;
            count += 1;
            if !held {
                slow(count).await;
            }
        }
        anyhow::Ok(count)
    };
    let publisher = {
        let broker = broker.clone();
        let spec = spec.clone();
        async move {
            for _ in 0..messages {
                broker
                    .publish(
                        "backlog.topic",
                        Message::new(spec.payload.clone()).with_headers(headers.clone()),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    let count = if held {
        publisher.await?;
        consumer.await?
    } else {
        let consumer = tokio::spawn(consumer);
        publisher.await?;
        consumer.await??
    };
    if count != messages {
        bail!("consumed {count} of {messages} messages");
    }
    Ok(())
}

#[derive(Debug)]
struct RawMsg {
    _headers: Arc<Vec<(String, String)>>,
    payload: bytes::Bytes,
}

async fn raw(messages: u64, held: bool) -> anyhow::Result<()> {
    let spec = MsgSpec::new(BACKLOG_PAYLOAD, true);
    let msg = || RawMsg {
        _headers: spec.headers.clone(),
        payload: spec.payload.clone(),
    };
    let mut count = 0u64;
    if held {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..messages {
            tx.send(msg()).context("raw channel closed")?;
        }
        drop(tx);
        while let Some(m) = rx.recv().await {
            debug_assert_eq!(m.payload.len(), BACKLOG_PAYLOAD);
            count += 1;
        }
    } else {
        let (tx, mut rx) = mpsc::channel::<RawMsg>(1024);
        let consumer = tokio::spawn(async move {
            let mut count = 0u64;
            while rx.recv().await.is_some() {
                count += 1;
                slow(count).await;
            }
            count
        });
        for _ in 0..messages {
            tx.send(msg()).await.context("raw channel closed")?;
        }
        drop(tx);
        count = consumer.await?;
    }
    if count != messages {
        bail!("consumed {count} of {messages} messages");
    }
    Ok(())
}
