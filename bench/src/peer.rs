//! `--peer gomicro`: the framework's publish and pub→sub against a go-micro v4
//! service's.
//!
//! The go-micro side is `gomicro-peer bench` (interop/gomicro, built by
//! `scripts/gomicro.sh build`, found through `GOMICRO_PEER`), run as a subprocess: it
//! connects go-micro's broker plugin, publishes the messages through `broker.Publish`
//! and prints its own rate (from the first publish to the end of the last, connecting
//! not counted); with `-mode pubsub` it first subscribes to the topic through
//! `broker.Subscribe` and measures from the first publish to the last receipt. The
//! framework side is the framework's side of the publish scenario (`publish` through
//! `Arc<dyn Broker>` with the three benchmark headers, until flushed on core NATS or
//! acknowledged on Kafka) and of the pub→sub scenario
//! ([`pub_sub_rate`](crate::scenario::pub_sub_rate)). The sides alternate (A B A B)
//! after a warm-up of each, on a fresh topic per run, and the table shows the medians.

// Without the `nats` and `kafka` features nothing runs the comparison.
#![cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]

mod results;

pub(crate) use results::PeerResults;

use std::path::PathBuf;

#[cfg(any(feature = "nats", feature = "kafka"))]
use anyhow::Context as _;
use anyhow::bail;

#[cfg(any(feature = "nats", feature = "kafka"))]
use crate::scenario::{Plan, Topics};
#[cfg(any(feature = "nats", feature = "kafka"))]
use crate::side::{MsgSpec, Side};

/// The environment variable naming the go-micro peer binary.
pub(crate) const ENV: &str = "GOMICRO_PEER";

/// Publishers in flight on the go-micro side in Kafka's concurrent variant (and the
/// framework's window matched to it).
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) const GOMICRO_PARALLEL: usize = 64;

/// The go-micro peer binary.
pub(crate) struct GoMicro {
    exe: PathBuf,
}

impl GoMicro {
    /// The binary `GOMICRO_PEER` names; fails with how to build it when it is not set.
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let how =
            "build it with `scripts/gomicro.sh build` and export the GOMICRO_PEER=… line it prints";
        let exe = match std::env::var_os(ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => bail!("--peer gomicro needs the go-micro peer, and {ENV} is not set: {how}"),
        };
        if !exe.is_file() {
            bail!("{ENV}={} is not a file: {how}", exe.display());
        }
        Ok(GoMicro { exe })
    }

    /// Runs `gomicro-peer bench -mode <measure>`: `n` messages of `spec`'s payload to
    /// `topic`, from `parallel` goroutines, through go-micro's `broker` plugin (`nats` or
    /// `kafka`) at `addr`.
    #[cfg(any(feature = "nats", feature = "kafka"))]
    #[allow(clippy::too_many_arguments)]
    async fn bench(
        &self,
        broker: &str,
        addr: &str,
        topic: &str,
        n: u64,
        spec: &MsgSpec,
        parallel: usize,
        measure: Measure,
    ) -> anyhow::Result<PeerRun> {
        let mut args: Vec<String> = vec![
            "-mode".into(),
            measure.peer_mode().into(),
            "-broker".into(),
            broker.into(),
            "-addr".into(),
            addr.into(),
            "-topic".into(),
            topic.into(),
            "-count".into(),
            n.to_string(),
            "-size".into(),
            spec.payload.len().to_string(),
            "-parallel".into(),
            parallel.to_string(),
            // Its overall limit: generous, a slow run is measured, not cut off.
            "-timeout".into(),
            format!("{}s", 120 + n / 100),
        ];
        for (k, v) in spec.headers.iter() {
            args.push("-H".into());
            args.push(format!("{k}={v}"));
        }
        args.push("bench".into());
        let exe = self.exe.clone();
        let shown = format!("{} {}", exe.display(), args.join(" "));
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&exe)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()
        })
        .await
        .context("waiting for the go-micro peer")?
        .with_context(|| format!("running {shown}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{shown} failed ({}):\n{}\n{stdout}",
                output.status,
                tail.join("\n")
            );
        }
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .with_context(|| format!("{shown} printed no result line: {stdout:?}"))?;
        let field = |key: &str| {
            json_number(line, key).with_context(|| format!("no `{key}` in the peer's {line}"))
        };
        let messages = field("messages")?;
        if messages != n as f64 {
            bail!("the go-micro peer counted {messages} messages, asked for {n}: {line}");
        }
        Ok(PeerRun {
            rate: field("rate")?,
            envelope_bytes: json_number(line, "envelope_bytes").map(|b| b as u64),
        })
    }
}

/// What one run of the peer reported.
#[cfg(any(feature = "nats", feature = "kafka"))]
struct PeerRun {
    /// Messages per second.
    rate: f64,
    /// The size of one go-micro envelope on the wire.
    envelope_bytes: Option<u64>,
}

/// The number after `"key":` in a flat JSON object.
fn json_number(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = line[at..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// How much each of `broker`'s peer runs does, for the report.
#[cfg(any(feature = "nats", feature = "kafka"))]
pub(crate) fn plan_line(broker: &str, plan: &Plan) -> String {
    let warm_up = if plan.warm_up {
        format!(" after 1 warm-up of {} messages", plan.warm_messages)
    } else {
        ", no warm-up".to_owned()
    };
    format!(
        "{broker}: {} messages per run, {} rep(s) of each side{warm_up}",
        plan.messages, plan.reps
    )
}

/// What a row of the peer table measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measure {
    /// Publishing alone.
    Publish,
    /// Publishing to one subscriber, from the first publish to the last receipt.
    PubSub,
}

impl Measure {
    /// The peer's `-mode`.
    fn peer_mode(self) -> &'static str {
        match self {
            Measure::Publish => "publish",
            Measure::PubSub => "pubsub",
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Measure::Publish => "publish",
            Measure::PubSub => "pub→sub",
        })
    }
}

/// One line of the peer table.
#[derive(Debug, Clone)]
pub(crate) struct PeerRow {
    /// The broker, e.g. `nats`.
    pub(crate) broker: String,
    /// What is measured.
    pub(crate) measure: Measure,
    /// The payload size in bytes (always with the three benchmark headers).
    pub(crate) size: usize,
    /// How the go-micro side published, e.g. `one publisher`.
    pub(crate) gomicro_how: String,
    /// Its median rate.
    pub(crate) gomicro: f64,
    /// How the framework side published.
    pub(crate) fw_how: String,
    /// Its median rate.
    pub(crate) fw: f64,
    /// The size of one go-micro envelope, as the peer reported it.
    pub(crate) envelope_bytes: Option<u64>,
}

impl PeerRow {
    pub(crate) fn cells(&self) -> [String; 6] {
        [
            self.broker.clone(),
            self.measure.to_string(),
            format!("{} B + 3 h", self.size),
            format!(
                "{} ({})",
                crate::report::rate(self.gomicro),
                self.gomicro_how
            ),
            format!("{} ({})", crate::report::rate(self.fw), self.fw_how),
            format!("{:.2}×", self.fw / self.gomicro),
        ]
    }

    /// One line for the progress log on stderr.
    pub(crate) fn progress_line(&self) -> String {
        let [broker, measure, payload, gomicro, fw, ratio] = self.cells();
        format!(
            "  {broker:<9} {measure:<8} {payload:<12} go-micro {gomicro:<48} fw {fw:<48} {ratio}"
        )
    }
}

/// One side of a peer comparison.
#[cfg(any(feature = "nats", feature = "kafka"))]
enum Contender<'a, F> {
    /// `gomicro-peer bench` with this many publishing goroutines.
    GoMicro(Measure, usize),
    /// The framework.
    Framework(Measure, &'a F),
}

/// Where the peer publishes, and how topics are made ready for a run.
#[cfg(any(feature = "nats", feature = "kafka"))]
struct Target<'a, P> {
    /// `nats` or `kafka`, as the peer's `-broker`.
    broker: &'static str,
    /// The peer's `-addr`.
    addr: String,
    prepare: &'a P,
}

/// Runs every contender A B A B (one warm-up each, then `plan.reps` measured runs, in
/// order, each on a fresh topic), for each payload size of `plan`, and returns per size
/// the median rate of each contender and the peer's envelope size.
#[cfg(any(feature = "nats", feature = "kafka"))]
async fn alternate<F: Side, P: crate::scenario::Prepare>(
    peer: &GoMicro,
    target: &Target<'_, P>,
    contenders: &[Contender<'_, F>],
    plan: &Plan,
) -> anyhow::Result<Vec<(usize, Vec<f64>, Option<u64>)>> {
    let topics = Topics::new("bench.gomicro");
    let mut sizes: Vec<usize> = plan.specs.iter().map(|&(size, _)| size).collect();
    sizes.dedup();
    let mut out = Vec::new();
    for size in sizes {
        let spec = MsgSpec::new(size, true);
        let warm_ups = usize::from(plan.warm_up);
        let runs = warm_ups + plan.reps;
        let names: Vec<String> = (0..runs * contenders.len())
            .map(|_| topics.next())
            .collect();
        target.prepare.prepare(&names).await?;
        let mut names = names.into_iter();
        let mut samples: Vec<Vec<f64>> = contenders.iter().map(|_| Vec::new()).collect();
        let mut envelope = None;
        for run in 0..runs {
            let warm_up = run < warm_ups;
            let n = if warm_up {
                plan.warm_messages
            } else {
                plan.messages
            }
            .max(1);
            let prefix = if warm_up { "warm-up of " } else { "" };
            for (i, contender) in contenders.iter().enumerate() {
                let topic = names.next().context("out of topics")?;
                let rate = match contender {
                    Contender::GoMicro(measure, parallel) => {
                        let run = peer
                            .bench(
                                target.broker,
                                &target.addr,
                                &topic,
                                n,
                                &spec,
                                *parallel,
                                *measure,
                            )
                            .await
                            .with_context(|| {
                                format!(
                                    "{prefix}{} go-micro {measure}, {parallel} publisher(s), {size} B",
                                    target.broker
                                )
                            })?;
                        envelope = envelope.or(run.envelope_bytes);
                        run.rate
                    }
                    Contender::Framework(Measure::PubSub, side) => {
                        crate::scenario::pub_sub_rate(*side, &topic, n, &spec, plan.stall)
                            .await
                            .with_context(|| {
                                format!("{prefix}{} framework pub→sub, {size} B", target.broker)
                            })?
                    }
                    Contender::Framework(Measure::Publish, side) => {
                        let start = std::time::Instant::now();
                        let result = side.publish_many(&topic, n, &spec).await;
                        let elapsed = start.elapsed();
                        side.cleanup(&topic);
                        result.with_context(|| {
                            format!("{prefix}{} framework publish, {size} B", target.broker)
                        })?;
                        n as f64 / elapsed.as_secs_f64()
                    }
                };
                if !warm_up {
                    samples[i].push(rate);
                }
            }
        }
        out.push((size, samples.into_iter().map(median).collect(), envelope));
    }
    Ok(out)
}

#[cfg(any(feature = "nats", feature = "kafka"))]
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Core NATS: go-micro's publish and pub→sub (one publisher, one subscriber) against
/// the framework's.
#[cfg(feature = "nats")]
pub(crate) async fn run_nats(plan: &Plan, rows: &mut Vec<PeerRow>) -> anyhow::Result<()> {
    let peer = GoMicro::from_env()?;
    let (fw, broker) = crate::nats::core_framework().await?;
    let target = Target {
        broker: "nats",
        addr: crate::nats::server(),
        prepare: &crate::scenario::NoPrepare,
    };
    let result = alternate(
        &peer,
        &target,
        &[
            Contender::GoMicro(Measure::Publish, 1),
            Contender::Framework(Measure::Publish, &fw),
            Contender::GoMicro(Measure::PubSub, 1),
            Contender::Framework(Measure::PubSub, &fw),
        ],
        plan,
    )
    .await;
    broker.close().await?;
    for (size, m, envelope_bytes) in result? {
        for (measure, gomicro, fw_how, fw) in [
            (
                Measure::Publish,
                m[0],
                "one publisher, flush at the end",
                m[1],
            ),
            (Measure::PubSub, m[2], "one publisher, one subscriber", m[3]),
        ] {
            let gomicro_how = match measure {
                Measure::Publish => "one publisher",
                Measure::PubSub => "one publisher, one subscriber",
            };
            let row = PeerRow {
                broker: "nats".to_owned(),
                measure,
                size,
                gomicro_how: gomicro_how.to_owned(),
                gomicro,
                fw_how: fw_how.to_owned(),
                fw,
                envelope_bytes,
            };
            eprintln!("{}", row.progress_line());
            rows.push(row);
        }
    }
    Ok(())
}

/// Kafka: go-micro's publish, one at a time and from [`GOMICRO_PARALLEL`] goroutines,
/// against the framework's with its window ([`crate::kafka::KAFKA_WINDOW`]) and with
/// [`GOMICRO_PARALLEL`] publishes in flight; and go-micro's pub→sub from
/// [`GOMICRO_PARALLEL`] goroutines against the framework's with its window.
#[cfg(feature = "kafka")]
pub(crate) async fn run_kafka(plan: &Plan, rows: &mut Vec<PeerRow>) -> anyhow::Result<()> {
    use crate::framework::Framework;
    use crate::kafka::{CreateTopics, KAFKA_WINDOW};
    use broker::Broker;
    use std::sync::Arc;

    let peer = GoMicro::from_env()?;
    let brokers = crate::kafka::brokers();
    let kafka = crate::kafka::connect_framework(&brokers).await?;
    let prepare = CreateTopics::new(&brokers, kafka.clone())?;
    let broker: Arc<dyn Broker> = Arc::new(kafka);
    let fw_window = Framework::new(broker.clone()).window(KAFKA_WINDOW);
    let fw_parallel = Framework::new(broker.clone()).window(GOMICRO_PARALLEL);
    // As in the pub→sub scenario: from the start of the fresh topic, after the settle.
    let fw_pub_sub = Framework::new(broker.clone())
        .window(KAFKA_WINDOW)
        .start(broker::options::StartPosition::Earliest)
        .settle(crate::kafka::SETTLE);
    let target = Target {
        broker: "kafka",
        // go-micro's Kafka plugin takes one address here.
        addr: brokers.split(',').next().unwrap_or_default().to_owned(),
        prepare: &prepare,
    };
    let result = alternate(
        &peer,
        &target,
        &[
            Contender::GoMicro(Measure::Publish, 1),
            Contender::Framework(Measure::Publish, &fw_window),
            Contender::GoMicro(Measure::Publish, GOMICRO_PARALLEL),
            Contender::Framework(Measure::Publish, &fw_parallel),
            Contender::GoMicro(Measure::PubSub, GOMICRO_PARALLEL),
            Contender::Framework(Measure::PubSub, &fw_pub_sub),
        ],
        plan,
    )
    .await;
    broker.close().await?;
    let window = format!("{KAFKA_WINDOW} in flight");
    let parallel = format!("{GOMICRO_PARALLEL} in flight");
    let goroutines = format!("{GOMICRO_PARALLEL} goroutines");
    let goroutines_sub = format!("{goroutines}, one subscriber");
    let window_sub = format!("{window}, one subscriber");
    for (size, m, envelope_bytes) in result? {
        for (measure, gomicro_how, gomicro, fw_how, fw) in [
            (Measure::Publish, "one at a time", m[0], &window, m[1]),
            (Measure::Publish, &goroutines, m[2], &window, m[1]),
            (Measure::Publish, &goroutines, m[2], &parallel, m[3]),
            (Measure::PubSub, &goroutines_sub, m[4], &window_sub, m[5]),
        ] {
            let row = PeerRow {
                broker: "kafka".to_owned(),
                measure,
                size,
                gomicro_how: gomicro_how.to_owned(),
                gomicro,
                fw_how: fw_how.clone(),
                fw,
                envelope_bytes,
            };
            eprintln!("{}", row.progress_line());
            rows.push(row);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::json_number;

    #[test]
    fn reads_the_peer_line() {
        let line = r#"{"messages":2000,"seconds":0.8123,"rate":2462.1,"broker":"kafka","size":128,"parallel":1,"envelope_bytes":269}"#;
        assert_eq!(json_number(line, "messages"), Some(2000.0));
        assert_eq!(json_number(line, "rate"), Some(2462.1));
        assert_eq!(json_number(line, "envelope_bytes"), Some(269.0));
        assert_eq!(json_number(line, "missing"), None);
    }
}
