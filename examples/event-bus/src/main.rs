//! Run: `cargo run -p event-bus -- demo`; see `--help` for `gateway`, `products` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The gateway's port also serves `GET /metrics` (Prometheus);
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use event_bus::{Gateway, ProductOptions, Topics, http, plugin, router, run_product_service};
use example_telemetry::{PrometheusHandle, Telemetry};

/// `GET /prods` answered over a message broker, with a timeout.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The broker: memory://, nats://HOST:PORT, jetstream://HOST:PORT or kafka://BROKERS.
    #[arg(long, global = true, env = "BROKER_URL", default_value = plugin::DEFAULT_BROKER_URL)]
    broker_url: String,
    /// A prefix for the topics (`<prefix>.product.list`), to share a broker.
    #[arg(long, global = true, env = "TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP gateway alone.
    Gateway {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8082")]
        addr: SocketAddr,
        /// How long to wait for the product service, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Runs one product service instance; start several to share the load.
    Products {
        /// The instance's name, sent back in answers.
        #[arg(long, default_value = "product")]
        instance: String,
        /// Answer this many milliseconds late (to see the gateway time out).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Runs the gateway and a product service in one process.
    All {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8082")]
        addr: SocketAddr,
        /// How long to wait for the product service, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Asks for products with and without a product service, prints the answers, exits.
    Demo,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo) {
        "error"
    } else {
        "info"
    };
    let telemetry = Telemetry::init("event-bus", default_level)?;
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
    let alone = |service: &str| {
        if plugin::is_in_process(&url) {
            tracing::warn!(
                "on {url} only this process sees the events: run `all` instead of `{service}`, \
                 or set BROKER_URL to a NATS or Kafka broker"
            );
        }
    };
    let outcome = match cli.command {
        Command::Gateway { addr, timeout_ms } => {
            alone("gateway");
            serve(broker.clone(), topics, addr, timeout_ms, metrics).await
        }
        Command::Products { instance, delay_ms } => {
            alone("products");
            let options = ProductOptions::new()
                .topics(topics)
                .instance(instance)
                .delay(Duration::from_millis(delay_ms));
            let handle = run_product_service(broker.clone(), options)
                .await
                .context("cannot subscribe the product service")?;
            wait_for_ctrl_c().await;
            handle
                .shutdown()
                .await
                .context("stopping the product service")
        }
        Command::All { addr, timeout_ms } => {
            let options = ProductOptions::new().topics(topics.clone());
            let handle = run_product_service(broker.clone(), options)
                .await
                .context("cannot subscribe the product service")?;
            let served = serve(broker.clone(), topics, addr, timeout_ms, metrics).await;
            served.and(
                handle
                    .shutdown()
                    .await
                    .context("stopping the product service"),
            )
        }
        Command::Demo => demo::run(broker.clone(), &url, &topics).await,
    };
    let closed = broker.close().await.context("closing the broker");
    telemetry.shutdown();
    outcome.and(closed)
}

async fn serve(
    broker: std::sync::Arc<dyn broker::Broker>,
    topics: Topics,
    addr: SocketAddr,
    timeout_ms: u64,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let gateway = Gateway::new(broker, topics, Duration::from_millis(timeout_ms))
        .await
        .context("cannot start the gateway")?;
    let app = example_telemetry::with_metrics(router(gateway), metrics);
    let server = http::serve(addr, app)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        "gateway on {} (metrics: {}); try: curl -s {}",
        server.url(""),
        server.url("/metrics"),
        server.url("/prods?size=2")
    );
    wait_for_ctrl_c().await;
    server.shutdown().await.context("stopping the HTTP server")
}

async fn wait_for_ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %err, "cannot listen for ctrl-c; stopping");
    }
    tracing::info!("stopping");
}
