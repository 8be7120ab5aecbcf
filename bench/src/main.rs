//! `broker-bench`: what the framework costs, backend by backend.
//!
//! For each backend it runs the raw client and the framework's backend in one process,
//! against the same server, one after the other (A B A B), after a warm-up, and reports
//! the medians with the framework's figure as a fraction of the raw client's. Every run
//! counts every message and fails (non-zero exit) if one is missing.
//!
//! ```text
//! cargo run --release -p broker-bench --features nats,kafka -- --backend memory,nats,kafka
//! cargo run -p broker-bench -- --quick            # smoke test: counts only
//! cargo run --release -p broker-bench --features nats,kafka -- --backend nats,kafka --peer gomicro
//! ```
//!
//! `--peer gomicro` measures the framework's publish and pub→sub against a go-micro v4
//! service's (`GOMICRO_PEER`, built by `scripts/gomicro.sh build`); see [`peer`].
//!
//! NATS and Kafka are read from `NATS_URL` and `KAFKA_BROKERS` (default
//! `nats://127.0.0.1:4222` and `127.0.0.1:9092`; start them with `scripts/nats.sh start`
//! and `scripts/kafka.sh start`). See BENCHMARKS.md for the method and the results.

mod backlog;
mod framework;
#[cfg(feature = "kafka")]
mod handlers;
#[cfg(feature = "kafka")]
mod kafka;
mod machine;
mod memory;
#[cfg(feature = "nats")]
mod nats;
mod observe;
mod peer;
mod report;
mod scenario;
mod side;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};

use crate::scenario::{NoPrepare, Only, Plan, Row, Scenario, Topics};

/// A backend to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The in-process broker against tokio channels.
    Memory,
    /// Core NATS and JetStream (both of the next two).
    Nats,
    /// Core NATS (`nats://`) against async-nats.
    NatsCore,
    /// JetStream (`jetstream://`) against async-nats' JetStream API.
    Jetstream,
    /// Kafka (`kafka://`) against rdkafka.
    Kafka,
    /// The observability layers: memory with `observe::observed` against bare memory.
    Observe,
}

/// What the framework costs: each backend against its raw client, A B A B, medians.
#[derive(Debug, Parser)]
#[command(name = "broker-bench", version, about)]
struct Args {
    /// Backends to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "memory")]
    backend: Vec<Backend>,
    /// Smoke test: a few thousand messages, two repetitions; checks counts, prints the
    /// table, asserts no timing, and leaves BENCHMARKS.md alone unless --output is given.
    #[arg(long)]
    quick: bool,
    /// Measured repetitions of each side (default 5; 2 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Messages per throughput run, for every backend (default depends on the backend).
    #[arg(long)]
    messages: Option<u64>,
    /// Round trips per latency run (default depends on the backend).
    #[arg(long)]
    samples: Option<u64>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "16,128,1024")]
    sizes: Vec<usize>,
    /// Messages in the memory backlog measurement (default 1000000; 20000 with --quick;
    /// 0 skips it).
    #[arg(long)]
    backlog: Option<u64>,
    /// Seconds a run may go without receiving anything before it fails.
    #[arg(long, default_value_t = 20)]
    stall_secs: u64,
    /// Where to write the results (default: BENCHMARKS.md at the workspace root, except
    /// with --quick).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Do not write any file.
    #[arg(long, conflicts_with = "output")]
    no_write: bool,
    /// Header variants to run, comma-separated: `without` and/or `with` (the three
    /// benchmark headers); default both.
    #[arg(long, value_delimiter = ',')]
    headers: Vec<HeadersArg>,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<ScenarioArg>,
    /// Profiling: run only this side of each comparison (its figure fills both columns
    /// of the table, so the ratios say nothing). With `valgrind --tool=callgrind` this
    /// gives the instructions per message of one side alone.
    #[arg(long, value_enum)]
    only: Option<OnlySide>,
    /// Baseline variant: the raw NATS and Kafka clients also send an `x-message-id`
    /// header with a fresh id per message, made by the framework's generator, as the
    /// framework does. The ratios then leave out what carrying an id costs.
    #[arg(long)]
    raw_ids: bool,
    /// Which JetStream acks the framework side uses: `confirmed` (the default of the
    /// backend), `unconfirmed` (`confirm_acks=off`, like the raw side's `ack()`), or
    /// `both`, one after the other.
    #[arg(long, value_enum, default_value = "both")]
    jetstream_acks: JetStreamAcks,
    /// Which core NATS framework side runs: `on` (the message id travels, the backend's
    /// default), `off` (`message_ids=off`, so both sides send the same bytes), or `both`,
    /// one after the other. With `--raw-ids` only `on` runs.
    #[arg(long, value_enum, default_value = "both")]
    nats_ids: NatsIds,
    /// Publish and pub→sub throughput against a peer written with another framework,
    /// A B A B, for the `nats` (core) and `kafka` backends: `gomicro`, a go-micro v4
    /// service (the binary `GOMICRO_PEER` names; `scripts/gomicro.sh build` builds it).
    /// Alone it runs only this comparison (and a full run rewrites only its section of
    /// BENCHMARKS.md); with `--scenarios` those scenarios run too.
    #[arg(long, value_enum)]
    peer: Option<PeerArg>,
    /// Internal: run one backlog case in this process and print its memory figures.
    #[arg(long, hide = true)]
    backlog_child: Option<backlog::Case>,
}

/// A peer to compare publishing with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PeerArg {
    /// A go-micro v4 service (`gomicro-peer bench`, and `bench -mode pubsub`).
    Gomicro,
}

/// Which JetStream acks the framework side is measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum JetStreamAcks {
    /// Acks confirmed by the server (the backend's default).
    Confirmed,
    /// `confirm_acks=off`: acks resolve once sent.
    Unconfirmed,
    /// Both, one after the other.
    Both,
}

#[cfg_attr(not(feature = "nats"), allow(dead_code))]
impl JetStreamAcks {
    /// Whether the confirmed variant runs.
    pub(crate) fn confirmed(self) -> bool {
        self != JetStreamAcks::Unconfirmed
    }

    /// Whether the unconfirmed variant runs.
    pub(crate) fn unconfirmed(self) -> bool {
        self != JetStreamAcks::Confirmed
    }
}

/// Whether the framework's core NATS publishes carry the message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NatsIds {
    /// The id travels (the backend's default).
    On,
    /// `message_ids=off`: no id on the wire.
    Off,
    /// Both, one after the other.
    Both,
}

#[cfg_attr(not(feature = "nats"), allow(dead_code))]
impl NatsIds {
    /// Whether the variant with ids runs.
    pub(crate) fn on(self) -> bool {
        self != NatsIds::Off
    }

    /// Whether the variant without ids runs.
    pub(crate) fn off(self) -> bool {
        self != NatsIds::On
    }
}

/// A scenario, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScenarioArg {
    /// Publisher throughput.
    Publish,
    /// Publisher throughput, 100 messages per batch.
    PublishBatch,
    /// One subscriber, first publish to last receipt.
    PubSub,
    /// One subscriber, batches of 100 both ways, first publish to last receipt.
    BatchPubSub,
    /// One message in flight.
    RoundTrip,
    /// One plain subscriber (deliveries per second).
    FanOut1,
    /// Four plain subscribers.
    FanOut4,
    /// Sixteen plain subscribers.
    FanOut16,
    /// A queue group of four.
    Queue4,
    /// Kafka only: concurrency(8), a 10 ms handler, one partition, 64 keys.
    KeyedHandlers,
}

impl ScenarioArg {
    fn scenario(self) -> Scenario {
        match self {
            ScenarioArg::Publish => Scenario::Publish,
            ScenarioArg::PublishBatch => Scenario::PublishBatch,
            ScenarioArg::PubSub => Scenario::PubSub,
            ScenarioArg::BatchPubSub => Scenario::BatchPubSub,
            ScenarioArg::RoundTrip => Scenario::RoundTrip,
            ScenarioArg::FanOut1 => Scenario::FanOut(1),
            ScenarioArg::FanOut4 => Scenario::FanOut(4),
            ScenarioArg::FanOut16 => Scenario::FanOut(16),
            ScenarioArg::Queue4 => Scenario::Queue(4),
            ScenarioArg::KeyedHandlers => Scenario::KeyedHandlers,
        }
    }
}

/// Messages without or with the three benchmark headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeadersArg {
    /// No headers.
    Without,
    /// The three benchmark headers.
    With,
}

/// The side to run alone when profiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnlySide {
    /// The raw client.
    Raw,
    /// The framework.
    Framework,
}

/// Message counts for one backend: (full, quick) runs.
struct Sizing {
    messages: (u64, u64),
    samples: (u64, u64),
}

/// Core NATS message counts.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
const NATS_CORE_SIZING: Sizing = Sizing {
    messages: (100_000, 500),
    samples: (2_000, 50),
};

/// Kafka message counts.
const KAFKA_SIZING: Sizing = Sizing {
    messages: (20_000, 400),
    samples: (200, 20),
};

/// How much each of `name`'s runs does, for the report.
fn plan_line(name: &str, plan: &Plan) -> String {
    format!(
        "{name}: {} messages per throughput run, {} round trips, {} reps after 1 warm-up",
        plan.messages, plan.samples, plan.reps
    )
}

impl Args {
    fn plan(&self, sizing: Sizing) -> Plan {
        let pick = |(full, quick): (u64, u64)| if self.quick { quick } else { full };
        let messages = self.messages.unwrap_or(pick(sizing.messages));
        let samples = self.samples.unwrap_or(pick(sizing.samples));
        let specs = self
            .sizes
            .iter()
            .flat_map(|&size| [(size, false), (size, true)])
            .filter(|&(_, with)| {
                self.headers.is_empty()
                    || self.headers.contains(&if with {
                        HeadersArg::With
                    } else {
                        HeadersArg::Without
                    })
            })
            .collect();
        Plan {
            specs,
            scenarios: if self.scenarios.is_empty() {
                Scenario::all()
            } else {
                self.scenarios.iter().map(|s| s.scenario()).collect()
            },
            only: self.only.map(|side| match side {
                OnlySide::Raw => Only::Raw,
                OnlySide::Framework => Only::Framework,
            }),
            reps: self.reps.unwrap_or(if self.quick { 2 } else { 5 }).max(1),
            messages,
            samples,
            warm_messages: (messages / 10).max(100).min(messages),
            warm_samples: (samples / 10).max(10).min(samples),
            stall: Duration::from_secs(self.stall_secs.max(1)),
            warm_up: true,
            raw_ids: self.raw_ids,
        }
    }

    /// Whether the scenarios run: always, unless `--peer` is given without
    /// `--scenarios`.
    fn scenarios_run(&self) -> bool {
        self.peer.is_none() || !self.scenarios.is_empty()
    }

    fn backends(&self) -> Vec<Backend> {
        let mut out = Vec::new();
        for &b in &self.backend {
            let expanded: &[Backend] = match b {
                Backend::Nats => &[Backend::NatsCore, Backend::Jetstream],
                Backend::Memory => &[Backend::Memory],
                Backend::NatsCore => &[Backend::NatsCore],
                Backend::Jetstream => &[Backend::Jetstream],
                Backend::Kafka => &[Backend::Kafka],
                Backend::Observe => &[Backend::Observe],
            };
            for &e in expanded {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }
}

fn main() {
    let args = Args::parse();
    let outcome = match args.backlog_child {
        Some(case) => backlog::child(case, args.messages.unwrap_or(1_000_000)),
        None => run(&args),
    };
    if let Err(err) = outcome {
        eprintln!("broker-bench FAILED: {err:#}");
        std::process::exit(1);
    }
}

fn command_line() -> String {
    let mut features = Vec::new();
    if cfg!(feature = "nats") {
        features.push("nats");
    }
    if cfg!(feature = "kafka") {
        features.push("kafka");
    }
    let features = if features.is_empty() {
        String::new()
    } else {
        format!(" --features {}", features.join(","))
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    format!(
        "cargo run{profile} -p broker-bench{features} -- {}",
        args.join(" ")
    )
}

fn run(args: &Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let machine = machine::describe();
    eprintln!("broker-bench on {machine}");
    let mut scenarios: Collected<Row> = Collected::default();
    let mut failures: Vec<String> = Vec::new();
    let mut peer: Collected<peer::PeerRow> = Collected::default();
    let mut peer_failures: Vec<String> = Vec::new();
    let scenarios_run = args.scenarios_run();
    if args.peer.is_some()
        && !args
            .backends()
            .iter()
            .any(|b| matches!(b, Backend::NatsCore | Backend::Kafka))
    {
        bail!(
            "--peer compares publishing on the `nats` (core) and `kafka` backends; add one to --backend"
        );
    }
    if args.peer.is_some() {
        // Before anything runs: the peer binary is there.
        peer::GoMicro::from_env()?;
    }
    for backend in args.backends() {
        if scenarios_run {
            let before = scenarios.rows.len();
            let result = runtime.block_on(run_backend(args, backend, &mut scenarios));
            if let Err(err) = result {
                scenarios.rows.truncate(before);
                eprintln!("{backend:?} FAILED: {err:#}");
                failures.push(format!(
                    "{}: {err:#}",
                    format!("{backend:?}").to_lowercase()
                ));
            }
        }
        if args.peer.is_some() {
            let before = peer.rows.len();
            let result = runtime.block_on(run_peer(args, backend, &mut peer));
            if let Err(err) = result {
                peer.rows.truncate(before);
                eprintln!("{backend:?} against go-micro FAILED: {err:#}");
                let name = if backend == Backend::Kafka {
                    "kafka"
                } else {
                    "nats"
                };
                peer_failures.push(format!("{name} against go-micro: {err:#}"));
            }
        }
    }
    let backlog_messages = args
        .backlog
        .unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let backlog =
        if scenarios_run && args.backends().contains(&Backend::Memory) && backlog_messages > 0 {
            eprintln!("memory backlog: {backlog_messages} messages, 4 cases, one process each");
            match backlog::run_all(backlog_messages) {
                Ok(outcomes) => Some(outcomes),
                Err(err) => {
                    eprintln!("memory backlog FAILED: {err:#}");
                    failures.push(format!("memory backlog: {err:#}"));
                    None
                }
            }
        } else {
            None
        };
    let command = command_line();
    let run = report::RunInfo {
        command: &command,
        machine: &machine,
    };
    let results = report::Results {
        run,
        plan: &scenarios.plans.join("; "),
        rows: &scenarios.rows,
        skipped: &failures,
        backlog: backlog.as_deref().map(|o| (backlog_messages, o)),
    };
    let peer_plan = peer.plans.join("; ");
    let peer_results = peer::PeerResults {
        run,
        plan: &peer_plan,
        rows: &peer.rows,
        skipped: &peer_failures,
    };
    if scenarios_run {
        println!("{}", results.markdown());
    }
    if args.peer.is_some() {
        println!("{}", peer_results.markdown());
    }
    // A one-side profiling run has no ratios worth keeping.
    let no_write = args.quick || args.no_write || args.only.is_some();
    let output = match (&args.output, no_write) {
        (Some(path), _) if !args.no_write && args.only.is_none() => Some(path.clone()),
        (None, false) => Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../BENCHMARKS.md"
        ))),
        _ => None,
    };
    if let Some(path) = output {
        if scenarios_run {
            let template = format!("# Benchmarks\n\n{}\n{}\n", report::BEGIN, report::END);
            results.write(&path, &template)?;
            eprintln!("wrote {}", path.display());
        }
        // Only a comparison that measured something replaces the recorded one.
        if args.peer.is_some() && !peer.rows.is_empty() {
            peer_results.write(&path)?;
            eprintln!("wrote the go-micro peer section of {}", path.display());
        }
    }
    failures.extend(peer_failures);
    if !failures.is_empty() {
        bail!(
            "{} part(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// What the runs of one kind (the scenarios, or the comparison with the go-micro peer)
/// collect for the report: a row per result, a line per plan.
#[derive(Debug)]
struct Collected<R> {
    rows: Vec<R>,
    plans: Vec<String>,
}

impl<R> Default for Collected<R> {
    fn default() -> Self {
        Collected {
            rows: Vec::new(),
            plans: Vec::new(),
        }
    }
}

async fn run_backend(
    args: &Args,
    backend: Backend,
    out: &mut Collected<Row>,
) -> anyhow::Result<()> {
    match backend {
        Backend::Memory => {
            let plan = memory_plan(args, "memory", &mut out.plans);
            let (fw, buffer) = memory::framework();
            let raw = memory::RawMemory::new(buffer, plan.messages as usize);
            scenario::compare(
                "memory",
                "tokio mpsc (bounded, same buffer) / broadcast (fan-out ×4, ×16)",
                &raw,
                &fw,
                &NoPrepare,
                &Topics::new("bench"),
                &plan,
                &mut out.rows,
            )
            .await?;
            fw.broker().close().await?;
            Ok(())
        }
        Backend::NatsCore | Backend::Jetstream => run_nats(args, backend, out).await,
        Backend::Kafka => run_kafka(args, out).await,
        Backend::Observe => {
            let plan = memory_plan(args, "memory + observe", &mut out.plans);
            observe::run(&plan, &mut out.rows).await
        }
        Backend::Nats => bail!("`nats` is expanded before this point"),
    }
}

/// The plan of the memory backend's runs, bare or observed (`name`), announced and noted
/// in `plans`.
fn memory_plan(args: &Args, name: &str, plans: &mut Vec<String>) -> Plan {
    let plan = args.plan(Sizing {
        messages: (200_000, 4_000),
        samples: (5_000, 200),
    });
    let line = plan_line(name, &plan);
    eprintln!("{line}");
    plans.push(line);
    plan
}

#[cfg(feature = "nats")]
async fn run_nats(args: &Args, backend: Backend, out: &mut Collected<Row>) -> anyhow::Result<()> {
    let jetstream = backend == Backend::Jetstream;
    let mut plan = if jetstream {
        args.plan(Sizing {
            messages: (20_000, 300),
            samples: (1_000, 30),
        })
    } else {
        args.plan(NATS_CORE_SIZING)
    };
    if args.quick && jetstream {
        // Creating consumers dominates a quick JetStream run: one repetition, no warm-up.
        plan.reps = args.reps.unwrap_or(1);
        plan.warm_up = false;
    }
    let name = if jetstream { "jetstream" } else { "nats" };
    eprintln!("{name}: {} messages per run", plan.messages);
    out.plans.push(plan_line(name, &plan));
    nats::run(
        jetstream,
        args.jetstream_acks,
        args.nats_ids,
        &plan,
        &mut out.rows,
    )
    .await
}

#[cfg(not(feature = "nats"))]
async fn run_nats(
    _args: &Args,
    _backend: Backend,
    _out: &mut Collected<Row>,
) -> anyhow::Result<()> {
    bail!(
        "this binary was built without the `nats` feature: cargo run --release -p broker-bench --features nats -- --backend nats"
    )
}

#[cfg(feature = "kafka")]
async fn run_kafka(args: &Args, out: &mut Collected<Row>) -> anyhow::Result<()> {
    let plan = kafka_plan(args);
    eprintln!("kafka: {} messages per run", plan.messages);
    out.plans.push(plan_line("kafka", &plan));
    kafka::run(&plan, &mut out.rows).await
}

/// The plan of Kafka's runs.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
fn kafka_plan(args: &Args) -> Plan {
    let mut plan = args.plan(KAFKA_SIZING);
    if args.quick {
        // Joining consumer groups and creating topics dominate a quick Kafka run: one
        // payload, one repetition, no warm-up keep the smoke test short.
        plan.specs = vec![(128, true)];
        plan.reps = args.reps.unwrap_or(1);
        plan.warm_up = false;
    }
    plan
}

/// The peer comparison for `backend` (core NATS or Kafka; nothing for the others).
async fn run_peer(
    args: &Args,
    backend: Backend,
    out: &mut Collected<peer::PeerRow>,
) -> anyhow::Result<()> {
    match backend {
        #[cfg(feature = "nats")]
        Backend::NatsCore => {
            let plan = args.plan(NATS_CORE_SIZING);
            let line = peer::plan_line("nats", &plan);
            eprintln!("{line}");
            out.plans.push(line);
            peer::run_nats(&plan, &mut out.rows).await
        }
        #[cfg(feature = "kafka")]
        Backend::Kafka => {
            let plan = kafka_plan(args);
            let line = peer::plan_line("kafka", &plan);
            eprintln!("{line}");
            out.plans.push(line);
            peer::run_kafka(&plan, &mut out.rows).await
        }
        #[cfg(not(feature = "nats"))]
        Backend::NatsCore => {
            let _ = (args, out);
            bail!(
                "this binary was built without the `nats` feature: cargo run --release -p broker-bench --features nats -- --backend nats-core --peer gomicro"
            )
        }
        #[cfg(not(feature = "kafka"))]
        Backend::Kafka => {
            let _ = (args, out);
            bail!(
                "this binary was built without the `kafka` feature: cargo run --release -p broker-bench --features kafka -- --backend kafka --peer gomicro"
            )
        }
        _ => Ok(()),
    }
}

#[cfg(not(feature = "kafka"))]
async fn run_kafka(_args: &Args, _out: &mut Collected<Row>) -> anyhow::Result<()> {
    bail!(
        "this binary was built without the `kafka` feature: cargo run --release -p broker-bench --features kafka -- --backend kafka"
    )
}
