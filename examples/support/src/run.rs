//! What each example binary does around its services: its command line ([`main`]), logs
//! (and OTLP traces) and the metrics recorder, the broker from `--broker-url`/`BROKER_URL`,
//! a warning when a stand-alone service runs on `memory://`, serving HTTP with
//! `GET /metrics` until ctrl-c, stopping subscribers and closing.
//!
//! ```no_run
//! # async fn demo(router: axum::Router) -> anyhow::Result<()> {
//! use example_support::run::{Process, serve_until_ctrl_c};
//!
//! let process = Process::start("order-notification", "info", "memory://").await?;
//! let outcome = serve_until_ctrl_c("127.0.0.1:8080".parse()?, router, process.metrics(), |server| {
//!     tracing::info!("listening on {}", server.url(""));
//! })
//! .await;
//! process.finish(outcome).await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use broker::{Broker, SubscriberHandle};
use clap::{Args, FromArgMatches, Parser};
use example_telemetry::http::{self, Server};
use example_telemetry::{PrometheusHandle, Telemetry};

use crate::plugin;

/// What every example binary takes besides its command.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The broker: memory://, nats://HOST:PORT, jetstream://HOST:PORT or kafka://BROKERS.
    #[arg(long, global = true, env = "BROKER_URL", default_value = plugin::DEFAULT_BROKER_URL)]
    pub broker_url: String,
    /// A prefix for the topics (`<prefix>.<topic>`), to share a broker.
    #[arg(long, global = true, env = "TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

/// Runs an example binary whose commands are `C`, an enum deriving [`Parser`] with
/// `#[command(version, about)]` (so `--help` and `--version` are the binary's own):
///
/// - parses the command line: [`BrokerArgs`] and a `C`;
/// - starts the [`Process`], named after the binary's package, logging at `info`, or at
///   `demo_level` for the `demo` command, which prints what happens itself;
/// - for a command that runs one service alone (any but `all` and `demo`), warns when
///   the broker is in-process ([`Process::warn_if_alone`]);
/// - runs the command with `run`, given the process and the topics (`T`) under the topic
///   prefix, and [`finish`](Process::finish)es.
///
/// # Errors
///
/// The process cannot start, or the command fails, or the broker fails to close.
pub async fn main<C: Parser, T: for<'a> From<&'a str>>(
    demo_level: &str,
    run: impl AsyncFnOnce(C, &Process, T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let binary = C::command();
    // The options' doc comment would replace the binary's own about.
    let about = binary.get_about().cloned();
    let cli = BrokerArgs::augment_args(binary);
    let mut cli = match about {
        Some(about) => cli.about(about),
        None => cli,
    };
    let matches = cli.get_matches_mut();
    let parsed = BrokerArgs::from_arg_matches(&matches)
        .and_then(|args| Ok((args, C::from_arg_matches(&matches)?)));
    let (args, command) = parsed.unwrap_or_else(|err| err.format(&mut cli).exit());
    let name = matches.subcommand_name().unwrap_or_default();
    let level = if name == "demo" { demo_level } else { "info" };
    let process = Process::start(cli.get_name(), level, &args.broker_url).await?;
    if !matches!(name, "all" | "demo") {
        process.warn_if_alone(name);
    }
    let topics = T::from(args.topic_prefix.as_str());
    let outcome = run(command, &process, topics).await;
    process.finish(outcome).await
}

/// A running example binary: its telemetry, metrics recorder and broker.
#[derive(Debug)]
pub struct Process {
    url: String,
    broker: Arc<dyn Broker>,
    metrics: PrometheusHandle,
    telemetry: Telemetry,
}

impl Process {
    /// Sets up the binary `service`: logs at `default_level` unless `RUST_LOG` says
    /// otherwise (traces too when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), the Prometheus
    /// recorder, and the broker at `broker_url`, connected with [`plugin::connect`].
    ///
    /// # Errors
    ///
    /// Telemetry cannot be installed, or the broker cannot be reached (the error names
    /// the backends compiled in).
    pub async fn start(
        service: &str,
        default_level: &str,
        broker_url: &str,
    ) -> anyhow::Result<Process> {
        let telemetry = Telemetry::init(service, default_level)?;
        let metrics = example_telemetry::install_metrics()?;
        let url = broker_url.trim().to_owned();
        let broker = plugin::connect(&url).await.with_context(|| {
            format!(
                "cannot connect to the broker at `{}` (backends compiled in: {})",
                broker::registry::redact_url(&url),
                plugin::backends().join(", ")
            )
        })?;
        Ok(Process {
            url,
            broker,
            metrics,
            telemetry,
        })
    }

    /// The broker.
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// The broker URL, trimmed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process's Prometheus recorder, for `GET /metrics`.
    pub fn metrics(&self) -> PrometheusHandle {
        self.metrics.clone()
    }

    /// Warns that `service` alone sees nothing on the in-process broker: the other
    /// services of the example run in other processes.
    pub fn warn_if_alone(&self, service: &str) {
        if plugin::is_in_process(&self.url) {
            tracing::warn!(
                "on {} only this process sees the events: run `all` instead of `{service}`, \
                 or set BROKER_URL to a NATS or Kafka broker",
                self.url
            );
        }
    }

    /// Closes the broker and flushes the last spans; returns `outcome`, or else the
    /// failure to close.
    pub async fn finish(self, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
        let closed = self.broker.close().await.context("closing the broker");
        self.telemetry.shutdown();
        outcome.and(closed)
    }
}

/// Serves `router`, with `GET /metrics` rendering `metrics` next to its routes, on `addr`
/// until ctrl-c; `announce` logs where, given the running server.
///
/// # Errors
///
/// `addr` cannot be bound, or the server fails to stop.
pub async fn serve_until_ctrl_c(
    addr: SocketAddr,
    router: Router,
    metrics: PrometheusHandle,
    announce: impl FnOnce(&Server),
) -> anyhow::Result<()> {
    let app = example_telemetry::with_metrics(router, metrics);
    let server = http::serve(addr, app)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    announce(&server);
    wait_for_ctrl_c().await;
    server.shutdown().await.context("stopping the HTTP server")
}

/// Runs until ctrl-c, then shuts `handles` down (see [`shutdown_all`]).
///
/// # Errors
///
/// A subscriber fails to stop.
pub async fn subscribe_until_ctrl_c(
    handles: Vec<SubscriberHandle>,
    what: &str,
) -> anyhow::Result<()> {
    wait_for_ctrl_c().await;
    shutdown_all(handles, what).await
}

/// Shuts the subscribers down one after another, each finishing and settling what it
/// holds; `what` names one of them in the error.
///
/// # Errors
///
/// The first subscriber that fails to stop; the ones after it are left running.
pub async fn shutdown_all(
    handles: impl IntoIterator<Item = SubscriberHandle>,
    what: &str,
) -> anyhow::Result<()> {
    for handle in handles {
        handle
            .shutdown()
            .await
            .with_context(|| format!("stopping {what}"))?;
    }
    Ok(())
}

/// Waits for ctrl-c; if it cannot be listened for, logs why and returns at once.
pub async fn wait_for_ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %err, "cannot listen for ctrl-c; stopping");
    }
    tracing::info!("stopping");
}
