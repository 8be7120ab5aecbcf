//! Run: `cargo run -p event-bus -- demo`; see `--help` for `gateway`, `products` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The gateway's port also serves `GET /metrics` (Prometheus);
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::Broker;
use clap::{Parser, Subcommand};
use event_bus::{Gateway, Topics, product_options, router, run_product_service};
use example_support::plugin;
use example_support::run::{Process, serve_until_ctrl_c, shutdown_all, subscribe_until_ctrl_c};
use example_telemetry::PrometheusHandle;

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
    let process = Process::start("event-bus", default_level, &cli.broker_url).await?;
    let (broker, metrics) = (process.broker(), process.metrics());
    let topics = Topics::prefixed(&cli.topic_prefix);
    let outcome = match cli.command {
        Command::Gateway { addr, timeout_ms } => {
            process.warn_if_alone("gateway");
            serve(broker, topics, addr, timeout_ms, metrics).await
        }
        Command::Products { instance, delay_ms } => {
            process.warn_if_alone("products");
            let options = product_options().topics(topics).instance(instance);
            let handle = run_product_service(broker, options, Duration::from_millis(delay_ms))
                .await
                .context("cannot subscribe the product service")?;
            subscribe_until_ctrl_c(vec![handle], "the product service").await
        }
        Command::All { addr, timeout_ms } => {
            let options = product_options().topics(topics.clone());
            let handle = run_product_service(broker.clone(), options, Duration::ZERO)
                .await
                .context("cannot subscribe the product service")?;
            let served = serve(broker, topics, addr, timeout_ms, metrics).await;
            served.and(shutdown_all([handle], "the product service").await)
        }
        Command::Demo => demo::run(broker, process.url(), &topics).await,
    };
    process.finish(outcome).await
}

async fn serve(
    broker: Arc<dyn Broker>,
    topics: Topics,
    addr: SocketAddr,
    timeout_ms: u64,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let gateway = Gateway::new(broker, topics, Duration::from_millis(timeout_ms))
        .await
        .context("cannot start the gateway")?;
    serve_until_ctrl_c(addr, router(gateway), metrics, |server| {
        tracing::info!(
            "gateway on {} (metrics: {}); try: curl -s {}",
            server.url(""),
            server.url("/metrics"),
            server.url("/prods?size=2")
        );
    })
    .await
}
