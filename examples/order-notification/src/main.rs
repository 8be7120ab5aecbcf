//! Run: `cargo run -p order-notification -- demo`; see `--help` for `order`, `notification`
//! and `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real
//! brokers.
//!
//! The order port also serves `GET /metrics` (Prometheus), `GET /health` and
//! `GET /asyncapi.json` (the AsyncAPI document); a separate `notification` process serves
//! the first two on `--metrics-addr` when given. On ctrl-c the notification handlers get
//! `--shutdown-timeout` seconds to finish.
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use broker::Broker;
use clap::Parser;
use example_support::run::{self, Process, subscribe_until_ctrl_c, wait_for_ctrl_c};
use order_notification::{
    OrderService, ProductStore, Snowflake, Topics, notification_options, router, run_notifications,
};

/// Order → notification over a message broker.
#[derive(Debug, Parser)]
#[command(version, about)]
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
        /// Serve `GET /metrics` (Prometheus) and `GET /health` on this address, such as
        /// 127.0.0.1:9464.
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
    run::main::<Command, Topics>("warn", async |command, process, topics| match command {
        Command::Order { addr, node_id } => run_order(process, &topics, addr, node_id).await,
        Command::Notification {
            instance,
            queue,
            metrics_addr,
        } => run_notification(process, &topics, instance, queue, metrics_addr).await,
        Command::All { addr, instances } => run_all(process, &topics, addr, instances).await,
        Command::Demo => demo::run(process.broker(), process.url(), &topics).await,
    })
    .await
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
    process: &Process,
    topics: &Topics,
    addr: SocketAddr,
    node_id: u16,
) -> anyhow::Result<()> {
    let service = order_service(process.broker(), topics, node_id)?;
    let document = order_notification::asyncapi::document(topics, process.url())?;
    let try_it = r#"/order/submit -H 'content-type: application/json' -d '{"productId":1,"count":1,"uid":1}'"#;
    let app = router(service);
    run::serve_api(process, addr, "order service", app, &document, try_it).await
}

async fn run_all(
    process: &Process,
    topics: &Topics,
    addr: SocketAddr,
    instances: usize,
) -> anyhow::Result<()> {
    let broker = process.broker();
    let handles = notification_options()
        .topics(topics.clone())
        .start_instances(instances, "the notification service", |options| {
            run_notifications(broker.clone(), options)
        })
        .await?;
    process.hold(handles);
    run_order(process, topics, addr, 1).await
}

async fn run_notification(
    process: &Process,
    topics: &Topics,
    instance: String,
    queue: String,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let options = notification_options()
        .topics(topics.clone())
        .instance(instance)
        .queue(queue);
    let handle = run_notifications(process.broker(), options)
        .await
        .context("cannot subscribe the notification service")?;
    let Some(addr) = metrics_addr else {
        return subscribe_until_ctrl_c(process, [handle]).await;
    };
    process.hold([handle]);
    let server = example_telemetry::http::serve(addr, process.ops_router())
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(
        "metrics on {}, health on {}",
        server.url("/metrics"),
        server.url("/health")
    );
    wait_for_ctrl_c().await;
    server
        .shutdown()
        .await
        .context("stopping the metrics server")
}
