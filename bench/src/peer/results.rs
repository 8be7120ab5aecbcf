//! The peer comparison's section of BENCHMARKS.md: the table, the target and what
//! each side does.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::{GOMICRO_PARALLEL, Measure, PeerRow};
use crate::report::RunInfo;

/// Where the peer's section of BENCHMARKS.md starts.
pub(crate) const BEGIN: &str =
    "<!-- peer-gomicro:begin (written by broker-bench --peer gomicro) -->";
/// Where it ends.
pub(crate) const END: &str = "<!-- peer-gomicro:end -->";

/// The framework ÷ go-micro ratio the peer's target asks for.
const TARGET_RATIO: f64 = 1.5;

/// The go-micro module versions the peer is pinned to, from interop/gomicro/go.mod.
fn versions() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/gomicro/go.mod");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let version = |module: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(module)?.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "go-micro.dev/v4 {}, broker plugins github.com/go-micro/plugins/v4/broker/nats {} and …/broker/kafka {} (sarama {}, nats.go {}), pinned in interop/gomicro/go.mod",
        version("go-micro.dev/v4 "),
        version("github.com/go-micro/plugins/v4/broker/nats "),
        version("github.com/go-micro/plugins/v4/broker/kafka "),
        version("github.com/Shopify/sarama "),
        version("github.com/nats-io/nats.go "),
    )
}

/// The peer comparison's section of BENCHMARKS.md.
pub(crate) struct PeerResults<'a> {
    /// The command line and the machine.
    pub(crate) run: RunInfo<'a>,
    /// The plan, in words.
    pub(crate) plan: &'a str,
    /// The rows.
    pub(crate) rows: &'a [PeerRow],
    /// Parts left out, with the reason.
    pub(crate) skipped: &'a [String],
}

impl PeerResults<'_> {
    /// The Markdown of the section, heading included.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Peer: go-micro v4\n");
        out.push_str(
            "Publish and pub→sub throughput of a go-micro v4 service against the framework's, on the same server, in one run: \
             the go-micro side is `gomicro-peer bench` (interop/gomicro, a subprocess; it reports its own rate, connecting not \
             counted: publish from the first publish to the end of the last, pub→sub (`-mode pubsub`, one `broker.Subscribe` \
             subscriber in the same process, live before the clock starts) from the first publish to the last receipt), the \
             framework side is its side of the publish scenario (`publish` through `Arc<dyn Broker>`, until flushed or \
             acknowledged) and of the pub→sub scenario (one subscription, from the first publish to the last receipt). After \
             the warm-ups the plan states, the sides alternate (A B A B), each run on a fresh topic (Kafka: created up front \
             with 4 partitions); the table shows the medians. The framework's messages carry the 3 benchmark headers, \
             go-micro's its own 3 (below).\n\n",
        );
        self.run.write_lines(&mut out);
        let _ = writeln!(out, "- go-micro: {}", versions());
        let _ = writeln!(out, "- Plan: {}", self.plan);
        for skipped in self.skipped {
            let _ = writeln!(out, "- Not measured: {skipped}");
        }
        out.push('\n');
        out.push_str(&self.table());
        let _ = writeln!(out, "\n### Target\n");
        out.push_str(&self.target());
        let mut envelopes: Vec<(usize, u64)> = Vec::new();
        for row in self.rows {
            if let Some(bytes) = row.envelope_bytes
                && !envelopes.iter().any(|&(size, _)| size == row.size)
            {
                envelopes.push((row.size, bytes));
            }
        }
        let envelope = if envelopes.is_empty() {
            String::new()
        } else {
            let sizes: Vec<String> = envelopes
                .iter()
                .map(|(size, bytes)| format!("{bytes} B for a {size} B payload"))
                .collect();
            format!(
                " ({} here; the `Micro-Topic` header repeats the topic name)",
                sizes.join(", ")
            )
        };
        let _ = writeln!(out, "\nWhat each side does per message:\n");
        let _ = writeln!(
            out,
            "- go-micro: `broker.Publish` marshals the whole message into its JSON envelope, `{{\"Header\":{{…}},\"Body\":\"<base64>\"}}`{envelope}; \
             the peer's bench sends its own three headers (`Content-Type`, `Micro-Topic`, a sequence number). \
             NATS: one PUB per message, no headers on the wire (the run ends with a round trip to the server on the same connection). \
             Kafka: one synchronous produce per message (sarama `SyncProducer`, acks=1, not idempotent, no batching across messages), \
             so each publishing goroutine has one message in flight. \
             Pub→sub: the plugin decodes each envelope (`json.Unmarshal`, base64) before it calls the handler; \
             NATS: a nats.go asynchronous subscription; Kafka: a sarama consumer group of its own (the plugin's default, \
             a fresh group id at the newest offsets, pinned before subscribing), and the clock starts once a probe message \
             has come back through it."
        );
        let _ = writeln!(
            out,
            "- framework: the payload as it is, with native headers (NATS message headers, Kafka record headers): the three \
             benchmark headers and its message id. NATS: one publish per message, one flush at the end of the run. \
             Kafka: librdkafka with acks=all and idempotence, `linger.ms=5`, the stated number of publishes in flight, \
             each awaited until acknowledged. \
             Pub→sub: one subscription through `Arc<dyn Broker>`, each message settled; Kafka: a consumer group of its own \
             from the earliest offset of the fresh topic, the clock starting after the same settle as in its pub→sub scenario."
        );
        if self.rows.iter().any(|r| r.broker == "kafka") {
            let p = GOMICRO_PARALLEL;
            let _ = writeln!(
                out,
                "- Kafka, {p} in flight on both sides: librdkafka holds a batch up to `linger.ms=5` for more messages, \
                 so the framework with {p} publishes in flight sends about one batch of {p} per linger period \
                 ({p} ÷ 5 ms = {} at most); sarama's `SyncProducer` sends each message at once. With its own window \
                 the framework batches instead.",
                crate::report::rate(p as f64 / 0.005)
            );
        }
        out
    }

    /// The table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| broker | measure | payload | go-micro | framework | framework ÷ go-micro |\n",
        );
        out.push_str("|---|---|---|---:|---:|---:|\n");
        for row in self.rows {
            let _ = writeln!(out, "| {} |", row.cells().join(" | "));
        }
        out
    }

    /// The peer's target and whether this run met it: on core NATS with the three
    /// headers, the framework's publish and pub→sub at least [`TARGET_RATIO`] × go-micro's
    /// (at every payload size measured).
    pub(crate) fn target(&self) -> String {
        let mut out = String::from("| target | result | verdict |\n|---|---|---|\n");
        let mut results = Vec::new();
        let mut met = true;
        let mut missing = false;
        for measure in [Measure::Publish, Measure::PubSub] {
            let ratios: Vec<(usize, f64)> = self
                .rows
                .iter()
                .filter(|r| r.broker == "nats" && r.measure == measure)
                .map(|r| (r.size, r.fw / r.gomicro))
                .collect();
            if ratios.is_empty() {
                missing = true;
                results.push(format!("{measure} not measured"));
            }
            for (size, ratio) in ratios {
                met &= ratio >= TARGET_RATIO;
                results.push(format!("{measure} {size} B {ratio:.2}×"));
            }
        }
        let verdict = match (missing, met) {
            (true, _) => "not measured",
            (false, true) => "met",
            (false, false) => "missed",
        };
        let _ = writeln!(
            out,
            "| core NATS, 3 headers: publish and pub→sub ≥ {TARGET_RATIO}× go-micro | {} | {verdict} |",
            results.join(", ")
        );
        out
    }

    /// Replaces the section (between [`BEGIN`] and [`END`]) in `path`, or appends it.
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        let section = format!("{BEGIN}\n{}{END}", self.markdown());
        let text = match current.split_once(BEGIN) {
            Some((head, rest)) => {
                let (_, tail) = rest
                    .split_once(END)
                    .with_context(|| format!("{} has {BEGIN} but no {END}", path.display()))?;
                format!("{head}{section}{tail}")
            }
            None if current.is_empty() => format!("# Benchmarks\n\n{section}\n"),
            None => format!("{}\n\n{section}\n", current.trim_end()),
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Measure, PeerResults, PeerRow, RunInfo};

    fn row(broker: &str, measure: Measure, gomicro: f64, fw: f64) -> PeerRow {
        PeerRow {
            broker: broker.to_owned(),
            measure,
            size: 128,
            gomicro_how: "one publisher".to_owned(),
            gomicro,
            fw_how: "one publisher".to_owned(),
            fw,
            envelope_bytes: None,
        }
    }

    fn verdict(rows: &[PeerRow]) -> String {
        let results = PeerResults {
            run: RunInfo {
                command: "",
                machine: "",
            },
            plan: "",
            rows,
            skipped: &[],
        };
        let target = results.target();
        let line = target.lines().last().unwrap_or_default();
        line.trim_end_matches(" |")
            .rsplit("| ")
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn the_target_needs_both_nats_measures_at_one_and_a_half() {
        let publish = row("nats", Measure::Publish, 100.0, 160.0);
        let pub_sub = row("nats", Measure::PubSub, 100.0, 150.0);
        let slow_pub_sub = row("nats", Measure::PubSub, 100.0, 149.0);
        let kafka = row("kafka", Measure::PubSub, 100.0, 10.0);
        assert_eq!(verdict(&[publish.clone(), pub_sub, kafka.clone()]), "met");
        assert_eq!(verdict(&[publish.clone(), slow_pub_sub]), "missed");
        assert_eq!(verdict(&[publish]), "not measured");
        assert_eq!(verdict(&[kafka]), "not measured");
    }
}
