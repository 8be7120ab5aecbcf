//! Run: `cargo run -p order-notification -- demo`; see `--help` for `order`, `notification`
//! and `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real
//! brokers.
//!
//! The order port also serves `GET /metrics` (Prometheus); a separate `notification`
//! process serves it on `--metrics-addr` when given. `OTEL_EXPORTER_OTLP_ENDPOINT`
//! exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use broker::Broker;
use clap::{Parser, Subcommand};
use example_telemetry::{PrometheusHandle, Telemetry};
use order_notification::{
    NotificationOptions, OrderService, ProductStore, Snowflake, Topics, http, plugin, router,
    run_notifications,
};

/// Order → notification over a message broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The broker: memory://, nats://HOST:PORT, jetstream://HOST:PORT or kafka://BROKERS.
    #[arg(long, global = true, env = "BROKER_URL", default_value = plugin::DEFAULT_BROKER_URL)]
    broker_url: String,
    /// A prefix for the topics (`<prefix>.notification.submit`), to share a broker.
    #[arg(long, global = true, env = "TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the order service (HTTP) alone.
    Order {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// This process's snowflake node id (0..=1023); give each order process its own.
        #[arg(long, default_value_t = 1)]
        node_id: u16,
    },
    /// Runs one notification instance; start several to share the load.
    Notification {
        /// The instance's name, for logs.
        #[arg(long, default_value = "notification")]
        instance: String,
        /// The queue group.
        #[arg(long, default_value = order_notification::QUEUE_GROUP)]
        queue: String,
        /// Serve `GET /metrics` (Prometheus) on this address, such as 127.0.0.1:9464.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Runs the order service and notification instances in one process.
    All {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// How many notification instances to run.
        #[arg(long, default_value_t = 2)]
        instances: usize,
    },
    /// Starts both services, submits a few orders through HTTP, prints what happens and
    /// exits.
    Demo,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo) {
        "warn"
    } else {
        "info"
    };
    let telemetry = Telemetry::init("order-notification", default_level)?;
    let metrics = example_telemetry::install_metrics()?;

    let topics = Topics::prefixed(&cli.topic_prefix);
    let url = cli.broker_url.trim().to_owned();
    let broker = plugin::connect(&url).await.with_context(|| {
        format!(
            "cannot connect to the broker at `{}` (backends compiled in: {})",
            broker::registry::redact_url(&url),
            plugin::backends().join(", ")
        )
    })?;
    let outcome = match cli.command {
        Command::Order { addr, node_id } => {
            warn_if_alone(&url, "order");
            run_order(broker.clone(), &topics, addr, node_id, metrics).await
        }
        Command::Notification {
            instance,
            queue,
            metrics_addr,
        } => {
            warn_if_alone(&url, "notification");
            run_notification(
                broker.clone(),
                &topics,
                instance,
                queue,
                metrics_addr,
                metrics,
            )
            .await
        }
        Command::All { addr, instances } => {
            run_all(broker.clone(), &topics, addr, instances, metrics).await
        }
        Command::Demo => demo::run(broker.clone(), &url, &topics).await,
    };
    let closed = broker.close().await.context("closing the broker");
    telemetry.shutdown();
    outcome.and(closed)
}

fn warn_if_alone(url: &str, service: &str) {
    if plugin::is_in_process(url) {
        tracing::warn!(
            "on {url} only this process sees the events: run `all` instead of `{service}`, \
             or set BROKER_URL to a NATS or Kafka broker"
        );
    }
}

fn order_service(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    node_id: u16,
) -> anyhow::Result<OrderService> {
    let ids = Snowflake::new(node_id).context("invalid --node-id")?;
    OrderService::new(broker, topics, ProductStore::sample(), ids)
        .context("cannot create the order service")
}

async fn run_order(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    addr: SocketAddr,
    node_id: u16,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let service = order_service(broker, topics, node_id)?;
    let app = example_telemetry::with_metrics(router(service), metrics);
    let server = http::serve(addr, app)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        "order service on {}, metrics on {}; try: curl -s {} -H 'content-type: application/json' -d '{{\"productId\":1,\"count\":1,\"uid\":1}}'",
        server.url(""),
        server.url("/metrics"),
        server.url("/order/submit")
    );
    wait_for_ctrl_c().await;
    server.shutdown().await.context("stopping the HTTP server")
}

async fn run_all(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    addr: SocketAddr,
    instances: usize,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let mut handles = Vec::new();
    for n in 1..=instances.max(1) {
        let options = NotificationOptions::new()
            .topics(topics.clone())
            .instance(format!("notification-{n}"));
        handles.push(
            run_notifications(broker.clone(), options)
                .await
                .context("cannot subscribe the notification service")?,
        );
    }
    let served = run_order(broker, topics, addr, 1, metrics).await;
    for handle in handles {
        handle
            .shutdown()
            .await
            .context("stopping a notification instance")?;
    }
    served
}

async fn run_notification(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    instance: String,
    queue: String,
    metrics_addr: Option<SocketAddr>,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let options = NotificationOptions::new()
        .topics(topics.clone())
        .instance(instance)
        .queue(queue);
    let handle = run_notifications(broker, options)
        .await
        .context("cannot subscribe the notification service")?;
    let server = match metrics_addr {
        Some(addr) => {
            let server = http::serve(addr, example_telemetry::metrics_router(metrics))
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            tracing::info!("metrics on {}", server.url("/metrics"));
            Some(server)
        }
        None => None,
    };
    wait_for_ctrl_c().await;
    let stopped = handle
        .shutdown()
        .await
        .context("stopping the notification service");
    if let Some(server) = server {
        server
            .shutdown()
            .await
            .context("stopping the metrics server")?;
    }
    stopped
}

async fn wait_for_ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %err, "cannot listen for ctrl-c; stopping");
    }
    tracing::info!("stopping");
}
