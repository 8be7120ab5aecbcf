//! What each example binary does around its services: its command line ([`main`]), logs
//! (and OTLP traces) and the metrics recorder, the broker from `--broker-url`/`BROKER_URL`,
//! a warning when a stand-alone service runs on `memory://`, serving HTTP with
//! `GET /metrics` and `GET /health` until ctrl-c, stopping the subscribers within
//! `--shutdown-timeout` and closing.
//!
//! ```no_run
//! # async fn demo(router: axum::Router, handle: broker::SubscriberHandle) -> anyhow::Result<()> {
//! use example_support::run::{Process, serve_until_ctrl_c};
//!
//! let process = Process::start("order-notification", "info", "memory://").await?;
//! process.hold([handle]); // in `GET /health`, and stopped by `finish`
//! let outcome = serve_until_ctrl_c("127.0.0.1:8080".parse()?, router, &process, |server| {
//!     tracing::info!("listening on {}", server.url(""));
//! })
//! .await;
//! process.finish(outcome).await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use broker::asyncapi::AsyncApi;
use broker::{Broker, SubscriberHandle};
use clap::{Args, FromArgMatches, Parser};
use example_telemetry::http::{self, Server};
use example_telemetry::{PrometheusHandle, Telemetry};

use crate::health::Readiness;
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
    /// On ctrl-c, how many seconds the subscribers' running handlers get to finish; those
    /// still running then are cancelled and their messages nacked (redelivered where the
    /// broker redelivers).
    #[arg(long, global = true, env = "SHUTDOWN_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub shutdown_timeout: Duration,
}

/// A number of seconds (`30`, `0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a number of seconds"))
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
    let process = Process::start(cli.get_name(), level, &args.broker_url)
        .await?
        .shutdown_timeout(args.shutdown_timeout);
    if !matches!(name, "all" | "demo") {
        process.warn_if_alone(name);
    }
    let topics = T::from(args.topic_prefix.as_str());
    let outcome = run(command, &process, topics).await;
    process.finish(outcome).await
}

/// A running example binary: its telemetry, metrics recorder, broker and the subscribers
/// it holds.
#[derive(Debug)]
pub struct Process {
    url: String,
    broker: Arc<dyn Broker>,
    metrics: PrometheusHandle,
    telemetry: Telemetry,
    readiness: Readiness,
    shutdown_timeout: Duration,
}

/// How long subscribers get to finish at the end, unless told otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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
            readiness: Readiness::new(broker.clone()),
            broker,
            metrics,
            telemetry,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        })
    }

    /// The same process, giving its subscribers `timeout` to finish at the end (see
    /// [`finish`](Self::finish)).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Holds `handles` until [`finish`](Self::finish): `GET /health` reports them, and
    /// `finish` stops them.
    pub fn hold(&self, handles: impl IntoIterator<Item = SubscriberHandle>) {
        self.readiness.hold(handles);
    }

    /// What `GET /health` checks: the broker and the subscribers held.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// `GET /metrics` and `GET /health`, the routes every HTTP port of the process serves.
    pub fn ops_router(&self) -> Router {
        example_telemetry::metrics_router(self.metrics()).merge(self.readiness.router())
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

    /// Stops the subscribers held within the shutdown timeout (the handlers still running
    /// then are cancelled, their messages nacked; the report is logged), closes the
    /// broker and flushes the last spans; returns `outcome`, or else the first failure to
    /// stop or close.
    pub async fn finish(self, outcome: anyhow::Result<()>) -> anyhow::Result<()> {
        let stopped = self
            .readiness
            .shutdown_within(self.shutdown_timeout)
            .await
            .map(drop);
        let closed = self.broker.close().await.context("closing the broker");
        self.telemetry.shutdown();
        outcome.and(stopped).and(closed)
    }
}

/// Serves `router`, with the process's `GET /metrics` and `GET /health`
/// ([`Process::ops_router`]) next to its routes, on `addr` until ctrl-c; `announce` logs
/// where, given the running server.
///
/// # Errors
///
/// `addr` cannot be bound, or the server fails to stop.
pub async fn serve_until_ctrl_c(
    addr: SocketAddr,
    router: Router,
    process: &Process,
    announce: impl FnOnce(&Server),
) -> anyhow::Result<()> {
    let app = router.merge(process.ops_router());
    let server = http::serve(addr, app)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    announce(&server);
    wait_for_ctrl_c().await;
    server.shutdown().await.context("stopping the HTTP server")
}

/// Serves the HTTP service `name` (its `router`) as [`serve_until_ctrl_c`] does, with
/// `GET /asyncapi.json` answering `document` next to its routes; logs where, and a `curl`
/// to try it: `try_it` is the path and the arguments after the server's address.
///
/// # Errors
///
/// The document has an invalid topic, `addr` cannot be bound, or the server fails to
/// stop.
pub async fn serve_api(
    process: &Process,
    addr: SocketAddr,
    name: &str,
    router: Router,
    document: &AsyncApi,
    try_it: &str,
) -> anyhow::Result<()> {
    let app = router.merge(crate::asyncapi::router(document)?);
    serve_until_ctrl_c(addr, app, process, |server| {
        tracing::info!(
            "{name} on {}, metrics on {}; try: curl -s {}{try_it}",
            server.url(""),
            server.url("/metrics"),
            server.url("")
        );
    })
    .await
}

/// Holds `handles` in `process` and runs until ctrl-c; [`Process::finish`] then stops
/// them.
pub async fn subscribe_until_ctrl_c(
    process: &Process,
    handles: impl IntoIterator<Item = SubscriberHandle>,
) -> anyhow::Result<()> {
    process.hold(handles);
    wait_for_ctrl_c().await;
    Ok(())
}

/// Shuts the subscribers down one after another, each finishing and settling what it
/// holds however long that takes (the demos' way; a service's subscribers are held by
/// its [`Process`] instead); `what` names one of them in the error.
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
