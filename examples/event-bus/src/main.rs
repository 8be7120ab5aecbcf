//! Run: `cargo run -p event-bus -- demo`; see `--help` for `gateway`, `products` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The gateway's port also serves `GET /metrics` (Prometheus), `GET /health` and
//! `GET /asyncapi.json` (the AsyncAPI document); on ctrl-c the handlers get
//! `--shutdown-timeout` seconds to finish.
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser};
use event_bus::{Gateway, Topics, product_options, router, run_product_service};
use example_support::run::{self, Process, subscribe_until_ctrl_c};

/// `GET /prods` answered over a message broker, with a timeout.
#[derive(Debug, Parser)]
#[command(version, about)]
enum Command {
    /// Runs the HTTP gateway alone.
    Gateway(GatewayArgs),
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
    All(GatewayArgs),
    /// Asks for products with and without a product service, prints the answers, exits.
    Demo,
}

// What `gateway` and `all` take.
#[derive(Debug, Args)]
struct GatewayArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: SocketAddr,
    /// How long to wait for the product service, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The demo's gateway times out on purpose: its warnings would only repeat the output.
    run::main::<Command, Topics>("error", async |command, process, topics| match command {
        Command::Gateway(gateway) => serve(process, topics, gateway).await,
        Command::Products { instance, delay_ms } => {
            let options = product_options().topics(topics).instance(instance);
            let delay = Duration::from_millis(delay_ms);
            let handle = run_product_service(process.broker(), options, delay)
                .await
                .context("cannot subscribe the product service")?;
            subscribe_until_ctrl_c(process, [handle]).await
        }
        Command::All(gateway) => {
            let options = product_options().topics(topics.clone());
            let handle = run_product_service(process.broker(), options, Duration::ZERO)
                .await
                .context("cannot subscribe the product service")?;
            process.hold([handle]);
            serve(process, topics, gateway).await
        }
        Command::Demo => demo::run(process.broker(), process.url(), &topics).await,
    })
    .await
}

async fn serve(process: &Process, topics: Topics, args: GatewayArgs) -> anyhow::Result<()> {
    let GatewayArgs { addr, timeout_ms } = args;
    let document = event_bus::asyncapi::document(&topics, process.url())?;
    let timeout = Duration::from_millis(timeout_ms);
    let gateway = Gateway::new(process.broker(), topics, timeout)
        .await
        .context("cannot start the gateway")?;
    let app = router(gateway);
    run::serve_api(process, addr, "gateway", app, &document, "/prods?size=2").await
}
