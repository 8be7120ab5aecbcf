//! The Markdown table, the targets, and BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::backlog::{BACKLOG_PAYLOAD, Outcome};
use crate::scenario::{Row, Sample, Scenario};

/// Where the generated part of BENCHMARKS.md starts.
pub(crate) const BEGIN: &str = "<!-- results:begin (written by broker-bench) -->";
/// Where it ends.
pub(crate) const END: &str = "<!-- results:end -->";

/// A rate, e.g. `125.4 k/s`.
pub(crate) fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn cell(sample: &Sample) -> String {
    match sample {
        Sample::Rate(r) => rate(*r),
        Sample::Latency(p) => format!(
            "{} / {} / {} / {}",
            micros(p[0]),
            micros(p[1]),
            micros(p[2]),
            micros(p[3])
        ),
        Sample::Queue { rate: r, spread } => {
            format!("{}, spread {:.1} %", rate(*r), spread * 100.0)
        }
    }
}

/// The framework's speed as a fraction of the raw client's, per figure: throughput
/// fw ÷ raw, latency raw ÷ fw (so ≥ 1 always means "not slower").
pub(crate) fn ratios(row: &Row) -> Vec<(&'static str, f64)> {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    match (&row.raw, &row.fw) {
        (Sample::Rate(raw), Sample::Rate(fw)) => vec![("", div(*fw, *raw))],
        (Sample::Queue { rate: raw, .. }, Sample::Queue { rate: fw, .. }) => {
            vec![("", div(*fw, *raw))]
        }
        (Sample::Latency(raw), Sample::Latency(fw)) => {
            vec![("p50", div(raw[0], fw[0])), ("p99", div(raw[2], fw[2]))]
        }
        _ => Vec::new(),
    }
}

fn ratio_cell(row: &Row) -> String {
    ratios(row)
        .iter()
        .map(|(label, r)| {
            if label.is_empty() {
                format!("{r:.2}×")
            } else {
                format!("{label} {r:.2}×")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn payload(row: &Row) -> String {
    if row.headers {
        format!("{} B + 3 h", row.size)
    } else {
        format!("{} B", row.size)
    }
}

/// One line for the progress log on stderr.
pub(crate) fn progress_line(row: &Row) -> String {
    format!(
        "  {:<9} {:<17} {:<12} raw {:<40} fw {:<40} {}",
        row.backend,
        row.scenario.to_string(),
        payload(row),
        cell(&row.raw),
        cell(&row.fw),
        ratio_cell(row)
    )
}

/// The results as a Markdown table: a line per backend and scenario, without and with
/// the three headers side by side.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| backend | scenario | payload | raw | framework | fw vs raw | raw + 3 h | framework + 3 h | fw vs raw + 3 h |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    let mut done: Vec<(&str, Scenario, usize)> = Vec::new();
    for row in rows {
        let line = (row.backend.as_str(), row.scenario, row.size);
        if done.contains(&line) {
            continue;
        }
        done.push(line);
        let variant = |headers: bool| {
            rows.iter()
                .find(|r| (r.backend.as_str(), r.scenario, r.size) == line && r.headers == headers)
        };
        let cells = |row: Option<&Row>| match row {
            Some(row) => format!(
                "{} | {} | {}",
                cell(&row.raw),
                cell(&row.fw),
                ratio_cell(row)
            ),
            None => "– | – | –".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} B | {} | {} |",
            row.backend,
            row.scenario,
            row.size,
            cells(variant(false)),
            cells(variant(true)),
        );
    }
    out
}

/// The baselines each backend was compared with.
pub(crate) fn baselines(rows: &[Row]) -> String {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for row in rows {
        if !seen.iter().any(|(b, _)| *b == row.backend) {
            seen.push((&row.backend, &row.baseline));
        }
    }
    seen.iter()
        .map(|(b, raw)| format!("- `{b}`: {raw}\n"))
        .collect()
}

/// The backlog measurements as a Markdown table.
pub(crate) fn backlog_table(messages: u64, outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{messages} messages of {BACKLOG_PAYLOAD} B + 3 headers, one subscriber, each case in its own process:\n"
    );
    out.push_str("| case | peak RSS (VmHWM) | RSS before | per message | time |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    for o in outcomes {
        let grown = o.peak_kib.saturating_sub(o.base_kib) as f64 * 1024.0;
        let _ = writeln!(
            out,
            "| {} | {:.1} MiB | {:.1} MiB | {:.0} B | {:.2} s |",
            o.case,
            o.peak_kib as f64 / 1024.0,
            o.base_kib as f64 / 1024.0,
            grown / messages.max(1) as f64,
            o.seconds
        );
    }
    out
}

/// Whether each target was met.
pub(crate) fn targets(rows: &[Row], backlog: Option<&[Outcome]>) -> String {
    let mut out = String::new();
    out.push_str("| target | result | verdict |\n|---|---|---|\n");
    let mut backends: Vec<&str> = Vec::new();
    for row in rows {
        if !backends.contains(&row.backend.as_str()) {
            backends.push(&row.backend);
        }
    }
    for backend in backends {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.backend == backend).collect();
        if let Some(row) = mine.iter().find(|r| r.scenario == Scenario::KeyedHandlers) {
            // The target is on paper: 0.9 × 8 handlers × 100 a second.
            let rate = match row.fw {
                Sample::Rate(rate) => rate,
                _ => f64::NAN,
            };
            let _ = writeln!(
                out,
                "| kafka {} ≥ 720 /s (0.9 × 800) | {} ({:.2}× of busy tokio tasks) | {} |",
                row.scenario,
                cell(&row.fw),
                ratios(row).first().map_or(f64::NAN, |(_, r)| *r),
                if rate >= 720.0 { "met" } else { "**missed**" }
            );
            continue;
        }
        if backend == "memory" {
            for (scenario, baseline) in [
                (Scenario::PubSub, "tokio mpsc"),
                (Scenario::FanOut(4), "tokio broadcast"),
            ] {
                for row in mine
                    .iter()
                    .filter(|r| r.scenario == scenario && r.size == 128)
                {
                    let r = ratios(row).first().map_or(f64::NAN, |(_, r)| *r);
                    let _ = writeln!(
                        out,
                        "| memory {scenario} {} ≥ 0.70× {baseline} | {r:.2}× | {} |",
                        payload(row),
                        if r >= 0.7 { "met" } else { "**missed**" }
                    );
                }
            }
            continue;
        }
        if backend == "nats" || backend == "kafka" {
            let batches: Vec<(String, f64)> = mine
                .iter()
                .filter(|r| matches!(r.scenario, Scenario::PublishBatch | Scenario::BatchPubSub))
                .map(|r| {
                    let ratio = ratios(r).first().map_or(f64::NAN, |(_, r)| *r);
                    (format!("{} {} {ratio:.2}×", r.scenario, payload(r)), ratio)
                })
                .collect();
            if !batches.is_empty() {
                let met = batches.iter().all(|(_, ratio)| *ratio >= 0.95);
                let batches: Vec<String> = batches.into_iter().map(|(text, _)| text).collect();
                let _ = writeln!(
                    out,
                    "| {backend} batches ≥ 0.95× raw | {} | {} |",
                    batches.join("; "),
                    if met { "met" } else { "**missed**" }
                );
            }
        }
    }
    if let Some(o) = backlog.and_then(<[Outcome]>::first) {
        let verdict = if o.peak_kib < 256 * 1024 {
            "met"
        } else {
            "**missed**"
        };
        let _ = writeln!(
            out,
            "| memory: bounded memory with a backlog under backpressure | peak RSS {:.1} MiB | {verdict} |",
            o.peak_kib as f64 / 1024.0,
        );
    }
    out
}

/// Where a run was made and how it was started, as each section of BENCHMARKS.md states.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInfo<'a> {
    /// The command line.
    pub(crate) command: &'a str,
    /// The machine.
    pub(crate) machine: &'a str,
}

impl RunInfo<'_> {
    /// The `- Command:` and `- Machine:` lines of a section.
    pub(crate) fn write_lines(&self, out: &mut String) {
        let _ = writeln!(out, "- Command: `{}`", self.command);
        let _ = writeln!(out, "- Machine: {}", self.machine);
    }
}

/// Everything a run writes between the markers of BENCHMARKS.md.
pub(crate) struct Results<'a> {
    /// The command line and the machine.
    pub(crate) run: RunInfo<'a>,
    /// The plan, in words.
    pub(crate) plan: &'a str,
    /// The rows.
    pub(crate) rows: &'a [Row],
    /// Backends left out, with the reason.
    pub(crate) skipped: &'a [String],
    /// Backlog measurements and their message count.
    pub(crate) backlog: Option<(u64, &'a [Outcome])>,
}

impl Results<'_> {
    /// The generated Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Latest results\n");
        self.run.write_lines(&mut out);
        let _ = writeln!(out, "- Plan: {}", self.plan);
        let _ = writeln!(out, "- Baselines:\n{}", indent(&baselines(self.rows)));
        for skipped in self.skipped {
            let _ = writeln!(out, "- Not measured: {skipped}");
        }
        let _ = writeln!(out, "\n### Targets\n");
        out.push_str(&targets(self.rows, self.backlog.map(|(_, o)| o)));
        let _ = writeln!(out, "\n### Throughput and round trip\n");
        out.push_str(
            "Medians, without and with 3 headers. Round trip: p50 / p90 / p99 / p99.9. `fw vs raw`: the framework's speed as a fraction of the raw client's (throughput fw ÷ raw, latency raw ÷ fw); 1.00× is parity, higher is better.\n\n",
        );
        out.push_str(&table(self.rows));
        if let Some((messages, outcomes)) = self.backlog {
            let _ = writeln!(out, "\n### Memory with a backlog (memory backend)\n");
            out.push_str(&backlog_table(messages, outcomes));
        }
        out
    }

    /// Replaces the generated part of `path` (between the markers), or creates the file
    /// from `template` when it does not exist.
    pub(crate) fn write(&self, path: &Path, template: &str) -> anyhow::Result<()> {
        let current = match std::fs::read_to_string(path) {
            Ok(text) if text.contains(BEGIN) && text.contains(END) => text,
            Ok(_) | Err(_) => template.to_owned(),
        };
        let (head, rest) = current.split_once(BEGIN).context("no begin marker")?;
        let (_, tail) = rest.split_once(END).context("no end marker")?;
        let text = format!("{head}{BEGIN}\n{}{END}{tail}", self.markdown());
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
