//! The scenarios, written once over [`Side`], and the A B A B runner.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::side::{Got, MsgSpec, Side, Sub, Subscribers};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Publisher throughput.
    Publish,
    /// Publisher throughput in batches of [`BATCH`] messages: the framework's
    /// `publish_batch`, the raw client's send-all-then-flush (or await the acks).
    PublishBatch,
    /// Publish to one subscriber, until the last message is received.
    PubSub,
    /// [`PubSub`](Scenario::PubSub) in batches of [`BATCH`]: the framework's
    /// `publish_batch` and `subscribe_batches`, the raw client's batch publish and its
    /// receive loop.
    BatchPubSub,
    /// One message in flight: publish, wait for it at the subscriber, repeat.
    RoundTrip,
    /// Every message to this many plain subscribers; deliveries per second.
    FanOut(usize),
    /// A queue group of this many members; total throughput and the spread between them.
    Queue(usize),
    /// `concurrency(8)` handlers of 10 ms on keyed messages in one partition, against the
    /// ideal of 8 handlers always busy (framework only; see [`crate::handlers`]).
    KeyedHandlers,
}

impl Scenario {
    /// Every scenario, in table order.
    pub(crate) fn all() -> Vec<Scenario> {
        vec![
            Scenario::Publish,
            Scenario::PublishBatch,
            Scenario::PubSub,
            Scenario::BatchPubSub,
            Scenario::RoundTrip,
            Scenario::FanOut(1),
            Scenario::FanOut(4),
            Scenario::FanOut(16),
            Scenario::Queue(4),
            Scenario::KeyedHandlers,
        ]
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Publish => f.write_str("publish"),
            Scenario::PublishBatch => f.write_str("batch publish"),
            Scenario::PubSub => f.write_str("pub→sub"),
            Scenario::BatchPubSub => f.write_str("batch pub→sub"),
            Scenario::RoundTrip => f.write_str("round trip"),
            Scenario::FanOut(k) => write!(f, "fan-out ×{k}"),
            Scenario::Queue(k) => write!(f, "queue group ×{k}"),
            Scenario::KeyedHandlers => f.write_str("keyed handlers ×8, 10 ms"),
        }
    }
}

/// Messages per batch in [`Scenario::PublishBatch`] and [`Scenario::BatchPubSub`].
pub(crate) const BATCH: u64 = 100;

/// Round-trip percentiles, in microseconds: p50, p90, p99, p99.9.
pub(crate) type Percentiles = [f64; 4];

/// The result of one run, or the median of several.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sample {
    /// Messages (or deliveries, for fan-out) per second.
    Rate(f64),
    /// Round-trip percentiles.
    Latency(Percentiles),
    /// Queue group: total messages per second, and (max − min) / mean of the members'
    /// shares.
    Queue {
        /// Messages per second.
        rate: f64,
        /// The spread between members, as a fraction.
        spread: f64,
    },
}

/// How much each run does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Payload sizes and whether to add headers.
    pub(crate) specs: Vec<(usize, bool)>,
    /// Scenarios.
    pub(crate) scenarios: Vec<Scenario>,
    /// Measured repetitions of each side.
    pub(crate) reps: usize,
    /// Messages per throughput run (deliveries per run for fan-out).
    pub(crate) messages: u64,
    /// Round trips per latency run.
    pub(crate) samples: u64,
    /// Messages of the warm-up run.
    pub(crate) warm_messages: u64,
    /// Round trips of the warm-up run.
    pub(crate) warm_samples: u64,
    /// How long a run may go without progress before it fails.
    pub(crate) stall: Duration,
    /// Whether each side runs a warm-up before the measured runs.
    pub(crate) warm_up: bool,
    /// Profiling: run only one side (its figure is reported for both).
    pub(crate) only: Option<Only>,
    /// Whether the raw sides send an id header per message, as the framework does.
    pub(crate) raw_ids: bool,
}

/// The one side a profiling run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Only {
    /// The raw client.
    Raw,
    /// The framework.
    Framework,
}

/// One line of the results.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The backend, e.g. `nats`.
    pub(crate) backend: String,
    /// What the framework is compared with.
    pub(crate) baseline: String,
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// The payload size in bytes.
    pub(crate) size: usize,
    /// Whether the messages carried three headers.
    pub(crate) headers: bool,
    /// The median of the raw client's runs.
    pub(crate) raw: Sample,
    /// The median of the framework's runs.
    pub(crate) fw: Sample,
}

/// Unique topic names for the runs of this process.
#[derive(Debug)]
pub(crate) struct Topics {
    prefix: String,
    next: AtomicU64,
}

impl Topics {
    /// Topics `<root>.<process-unique>.<n>`.
    pub(crate) fn new(root: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() % 1_000_000_000_000)
            .unwrap_or(0);
        Topics {
            prefix: format!("{root}.r{}x{nanos}", std::process::id()),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh topic.
    pub(crate) fn next(&self) -> String {
        format!(
            "{}.t{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Prepares a topic before a run (Kafka creates it with enough partitions).
pub(crate) trait Prepare: Sync {
    /// Makes `topics` ready.
    fn prepare(&self, topics: &[String]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Nothing to prepare.
pub(crate) struct NoPrepare;

impl Prepare for NoPrepare {
    async fn prepare(&self, _topics: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Runs `plan` on the raw side and the framework, A B A B, and appends the medians to
/// `rows`. Every run checks that every message arrived, and fails otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare<R: Side, F: Side, P: Prepare>(
    backend: &str,
    baseline: &str,
    raw: &R,
    fw: &F,
    prepare: &P,
    topics: &Topics,
    plan: &Plan,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    for &(size, with_headers) in &plan.specs {
        let spec = MsgSpec::new(size, with_headers).with_raw_ids(plan.raw_ids);
        for &scenario in &plan.scenarios {
            if scenario == Scenario::KeyedHandlers {
                // Not a comparison with the raw client: measured on its own.
                continue;
            }
            // Topics for the warm-ups and every measured run, made ready in one go.
            let names: Vec<String> = (0..2 * (plan.reps + 1)).map(|_| topics.next()).collect();
            prepare.prepare(&names).await?;
            let mut names = names.into_iter();
            let mut topic = || names.next().ok_or_else(|| anyhow!("out of topics"));
            let what = |side: &str| {
                format!(
                    "{backend} {side}: {scenario}, {size} B{}",
                    if with_headers { " + 3 headers" } else { "" }
                )
            };
            let warm = Load {
                messages: plan.warm_messages,
                samples: plan.warm_samples,
                stall: plan.stall,
            };
            let full = Load {
                messages: plan.messages,
                samples: plan.samples,
                stall: plan.stall,
            };
            let run_raw = plan.only != Some(Only::Framework);
            let run_fw = plan.only != Some(Only::Raw);
            let mut raw_samples = Vec::with_capacity(plan.reps);
            let mut fw_samples = Vec::with_capacity(plan.reps);
            // The warm-up, if any, then the measured runs; each run raw first.
            let warm_ups = usize::from(plan.warm_up);
            for run in 0..warm_ups + plan.reps {
                let warm_up = run < warm_ups;
                let (load, prefix) = if warm_up {
                    (&warm, "warm-up of ")
                } else {
                    (&full, "")
                };
                if run_raw {
                    let sample = measure(raw, scenario, &spec, load, &topic()?)
                        .await
                        .with_context(|| format!("{prefix}{}", what(baseline)))?;
                    if !warm_up {
                        raw_samples.push(sample);
                    }
                }
                if run_fw {
                    let sample = measure(fw, scenario, &spec, load, &topic()?)
                        .await
                        .with_context(|| format!("{prefix}{}", what("framework")))?;
                    if !warm_up {
                        fw_samples.push(sample);
                    }
                }
            }
            if !run_raw {
                raw_samples.clone_from(&fw_samples);
            }
            if !run_fw {
                fw_samples.clone_from(&raw_samples);
            }
            let row = Row {
                backend: backend.to_owned(),
                baseline: baseline.to_owned(),
                scenario,
                size,
                headers: with_headers,
                raw: median(&raw_samples)?,
                fw: median(&fw_samples)?,
            };
            eprintln!("{}", crate::report::progress_line(&row));
            rows.push(row);
        }
    }
    Ok(())
}

/// The size of one run.
#[derive(Debug, Clone, Copy)]
struct Load {
    messages: u64,
    samples: u64,
    stall: Duration,
}

/// One measured [`Scenario::PubSub`] run of `side` on `topic`: `n` copies of `spec` to
/// one subscriber, in messages per second from the first publish to the last receipt.
/// Fails when a message is missing for `stall`.
#[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
pub(crate) async fn pub_sub_rate<S: Side>(
    side: &S,
    topic: &str,
    n: u64,
    spec: &MsgSpec,
    stall: Duration,
) -> anyhow::Result<f64> {
    let load = Load {
        messages: n,
        samples: 0,
        stall,
    };
    match measure(side, Scenario::PubSub, spec, &load, topic).await? {
        Sample::Rate(rate) => Ok(rate),
        other => bail!("pub→sub measured {other:?}, not a rate"),
    }
}

async fn measure<S: Side>(
    side: &S,
    scenario: Scenario,
    spec: &MsgSpec,
    load: &Load,
    topic: &str,
) -> anyhow::Result<Sample> {
    let result = measure_inner(side, scenario, spec, load, topic).await;
    side.cleanup(topic);
    result
}

async fn measure_inner<S: Side>(
    side: &S,
    scenario: Scenario,
    spec: &MsgSpec,
    load: &Load,
    topic: &str,
) -> anyhow::Result<Sample> {
    let n = load.messages.max(1);
    let len = spec.payload.len();
    match scenario {
        Scenario::Publish | Scenario::PublishBatch => {
            let sink = if side.publish_needs_sink() {
                let subs = side.subscribe(topic, Subscribers::each(1)).await?;
                Some(Receiving::start(subs, n, Some(n), len))
            } else {
                None
            };
            let start = Instant::now();
            if matches!(scenario, Scenario::Publish) {
                side.publish_many(topic, n, spec).await?;
            } else {
                publish_in_batches(side, topic, n, spec).await?;
            }
            let elapsed = start.elapsed();
            if let Some(sink) = sink {
                sink.finish(load.stall).await?;
            }
            Ok(Sample::Rate(n as f64 / elapsed.as_secs_f64()))
        }
        Scenario::PubSub => {
            let subs = side.subscribe(topic, Subscribers::each(1)).await?;
            let receiving = Receiving::start(subs, n, Some(n), len);
            let (elapsed, _) = publish_received(side, topic, n, spec, receiving, load).await?;
            Ok(Sample::Rate(n as f64 / elapsed.as_secs_f64()))
        }
        Scenario::BatchPubSub => {
            let subs = side.subscribe_batches(topic, BATCH as usize).await?;
            let receiving = Receiving::start(subs, n, Some(n), len);
            let start = Instant::now();
            publish_in_batches(side, topic, n, spec).await?;
            let (end, _) = receiving.finish(load.stall).await?;
            Ok(Sample::Rate(n as f64 / (end - start).as_secs_f64()))
        }
        Scenario::FanOut(k) => {
            let published = (n / k as u64).max(1);
            let expected = published * k as u64;
            let subs = side.subscribe(topic, Subscribers::each(k)).await?;
            let receiving = Receiving::start(subs, expected, Some(published), len);
            let (elapsed, _) =
                publish_received(side, topic, published, spec, receiving, load).await?;
            Ok(Sample::Rate(expected as f64 / elapsed.as_secs_f64()))
        }
        Scenario::Queue(k) => {
            let group = format!("g-{}", topic.replace('.', "-"));
            let subs = side.subscribe(topic, Subscribers::group(&group, k)).await?;
            let receiving = Receiving::start(subs, n, None, len);
            let (elapsed, counts) = publish_received(side, topic, n, spec, receiving, load).await?;
            let max = counts.iter().copied().max().unwrap_or(0) as f64;
            let min = counts.iter().copied().min().unwrap_or(0) as f64;
            let mean = n as f64 / counts.len().max(1) as f64;
            Ok(Sample::Queue {
                rate: n as f64 / elapsed.as_secs_f64(),
                spread: (max - min) / mean,
            })
        }
        Scenario::KeyedHandlers => bail!("keyed handlers are measured on their own"),
        Scenario::RoundTrip => {
            let mut subs = side.subscribe(topic, Subscribers::each(1)).await?;
            let mut sub = subs.pop().context("no subscription")?;
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3)
                .context("histogram bounds")?;
            for i in 0..load.samples.max(1) {
                let start = Instant::now();
                side.publish_one(topic, spec).await?;
                match tokio::time::timeout(load.stall, sub.recv()).await {
                    Ok(Ok(Some(got))) if got == len => {}
                    Ok(Ok(Some(got))) => bail!("round trip {i}: payload of {got} B, sent {len} B"),
                    Ok(Ok(None)) => bail!("round trip {i}: the subscription ended"),
                    Ok(Err(err)) => return Err(err.context(format!("round trip {i}"))),
                    Err(_) => bail!(
                        "round trip {i}: message missing, nothing arrived within {:?}",
                        load.stall
                    ),
                }
                let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                histogram.saturating_record(nanos.max(1));
            }
            let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
            Ok(Sample::Latency([us(0.50), us(0.90), us(0.99), us(0.999)]))
        }
    }
}

/// Publishes `n` copies of `spec` to `topic` in batches of [`BATCH`].
async fn publish_in_batches<S: Side>(
    side: &S,
    topic: &str,
    n: u64,
    spec: &MsgSpec,
) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(BATCH);
        side.publish_batch(topic, batch, spec).await?;
        left -= batch;
    }
    Ok(())
}

/// Publishes `n` copies of `spec` to `topic` while `receiving` counts them, and returns
/// the time from the first publish to the last receipt, and how many each member got.
async fn publish_received<S: Side>(
    side: &S,
    topic: &str,
    n: u64,
    spec: &MsgSpec,
    receiving: Receiving,
    load: &Load,
) -> anyhow::Result<(Duration, Vec<u64>)> {
    let start = Instant::now();
    side.publish_many(topic, n, spec).await?;
    let (end, counts) = receiving.finish(load.stall).await?;
    Ok((end - start, counts))
}

/// Subscribers counting what they receive, each on its own task.
struct Receiving {
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    counts: Arc<Vec<AtomicU64>>,
    total: Arc<AtomicU64>,
    done: Arc<Notify>,
    expected: u64,
    per_member: Option<u64>,
}

impl Receiving {
    /// Starts counting: `expected` messages in all, `per_member` each when every member
    /// must get every message.
    fn start<S: Sub>(subs: Vec<S>, expected: u64, per_member: Option<u64>, len: usize) -> Self {
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new(subs.iter().map(|_| AtomicU64::new(0)).collect());
        let total = Arc::new(AtomicU64::new(0));
        let done = Arc::new(Notify::new());
        let tasks = subs
            .into_iter()
            .enumerate()
            .map(|(member, mut sub)| {
                let counts = counts.clone();
                let total = total.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let mut mine = 0u64;
                    loop {
                        let got = match sub.recv_many().await? {
                            Some(Got { count, len: got }) if got == len => count,
                            Some(Got { len: got, .. }) => {
                                bail!("member {member}: payload of {got} B, sent {len} B")
                            }
                            None => bail!(
                                "member {member}: the subscription ended after {mine} messages"
                            ),
                        };
                        mine += got;
                        counts[member].store(mine, Ordering::Relaxed);
                        if total.fetch_add(got, Ordering::AcqRel) + got == expected {
                            done.notify_one();
                        }
                    }
                })
            })
            .collect();
        Receiving {
            tasks,
            counts,
            total,
            done,
            expected,
            per_member,
        }
    }

    /// Waits until every message has arrived, and returns when the last one did and how
    /// many each member got. Fails when no message arrives for `stall`, when a member
    /// fails, or when a count is wrong.
    async fn finish(mut self, stall: Duration) -> anyhow::Result<(Instant, Vec<u64>)> {
        let mut seen = 0;
        let mut progress = Instant::now();
        loop {
            if tokio::time::timeout(Duration::from_millis(100), self.done.notified())
                .await
                .is_ok()
            {
                break;
            }
            if let Some(i) = self.tasks.iter().position(JoinHandle::is_finished) {
                let task = self.tasks.swap_remove(i);
                let outcome = task.await;
                self.abort();
                match outcome {
                    Ok(Err(err)) => return Err(err),
                    Ok(Ok(())) => bail!("a subscriber stopped early"),
                    Err(err) => bail!("a subscriber task failed: {err}"),
                }
            }
            let now = self.total.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                progress = Instant::now();
            } else if progress.elapsed() >= stall {
                self.abort();
                bail!(
                    "messages missing: {now} of {} received, nothing more for {stall:?} (per subscriber: {:?})",
                    self.expected,
                    self.member_counts()
                );
            }
        }
        let end = Instant::now();
        self.abort();
        for task in self.tasks.drain(..) {
            match task.await {
                Ok(Err(err)) => return Err(err),
                Ok(Ok(())) => {}
                Err(err) if err.is_cancelled() => {}
                Err(err) => bail!("a subscriber task failed: {err}"),
            }
        }
        let counts = self.member_counts();
        let total: u64 = counts.iter().sum();
        if total != self.expected {
            bail!(
                "received {total} messages, expected {} (per subscriber: {counts:?})",
                self.expected
            );
        }
        if let Some(each) = self.per_member
            && counts.iter().any(|&c| c != each)
        {
            bail!("every subscriber should have {each} messages; got {counts:?}");
        }
        Ok((end, counts))
    }

    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    fn member_counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect()
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The median of each figure over `samples`.
fn median(samples: &[Sample]) -> anyhow::Result<Sample> {
    fn mid(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    }
    // The median of the figure `pick` takes from each sample that has it.
    let median_of =
        |pick: &dyn Fn(&Sample) -> Option<f64>| mid(samples.iter().filter_map(pick).collect());
    let first = samples.first().context("no samples")?;
    Ok(match first {
        Sample::Rate(_) => Sample::Rate(median_of(&|s| match s {
            Sample::Rate(r) => Some(*r),
            _ => None,
        })),
        Sample::Latency(_) => {
            let mut out = [0.0; 4];
            for (q, slot) in out.iter_mut().enumerate() {
                *slot = median_of(&|s| match s {
                    Sample::Latency(p) => Some(p[q]),
                    _ => None,
                });
            }
            Sample::Latency(out)
        }
        Sample::Queue { .. } => Sample::Queue {
            rate: median_of(&|s| match s {
                Sample::Queue { rate, .. } => Some(*rate),
                _ => None,
            }),
            spread: median_of(&|s| match s {
                Sample::Queue { spread, .. } => Some(*spread),
                _ => None,
            }),
        },
    })
}
