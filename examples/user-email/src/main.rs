//! Run: `cargo run -p user-email -- demo`; see `--help` for `users`, `email`, `audit` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The user service's port also serves `GET /metrics` (Prometheus);
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use broker::Broker;
use clap::{Parser, Subcommand};
use example_support::plugin;
use example_support::run::{Process, serve_until_ctrl_c, shutdown_all, subscribe_until_ctrl_c};
use example_telemetry::PrometheusHandle;
use user_email::{Topics, UserService, audit_options, email_options, router, run_audit, run_email};

/// User created → welcome mail, with an audit log, over a message broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The broker: memory://, nats://HOST:PORT, jetstream://HOST:PORT or kafka://BROKERS.
    #[arg(long, global = true, env = "BROKER_URL", default_value = plugin::DEFAULT_BROKER_URL)]
    broker_url: String,
    /// A prefix for the topics (`<prefix>.user.created`), to share a broker.
    #[arg(long, global = true, env = "TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the user service (HTTP) alone.
    Users {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: SocketAddr,
    },
    /// Runs one email instance; start several to share the load.
    Email {
        /// The instance's name, for logs.
        #[arg(long, default_value = "email")]
        instance: String,
    },
    /// Runs the audit log.
    Audit,
    /// Runs the user service, two email instances and the audit log in one process.
    All {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: SocketAddr,
    },
    /// Starts everything, creates and deletes users through HTTP, prints what happens and
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
    let process = Process::start("user-email", default_level, &cli.broker_url).await?;
    let (broker, metrics) = (process.broker(), process.metrics());
    let topics = Topics::prefixed(&cli.topic_prefix);
    let outcome = match cli.command {
        Command::Users { addr } => {
            process.warn_if_alone("users");
            serve_users(broker, &topics, addr, metrics).await
        }
        Command::Email { instance } => {
            process.warn_if_alone("email");
            let options = email_options().topics(topics).instance(instance);
            let handle = run_email(broker, options)
                .await
                .context("cannot subscribe the email service")?;
            subscribe_until_ctrl_c(vec![handle], "a subscriber").await
        }
        Command::Audit => {
            process.warn_if_alone("audit");
            let handle = run_audit(broker, audit_options().topics(topics))
                .await
                .context("cannot subscribe the audit log")?;
            subscribe_until_ctrl_c(vec![handle], "a subscriber").await
        }
        Command::All { addr } => {
            let mut handles = email_options()
                .topics(topics.clone())
                .start_instances(2, "the email service", |options| {
                    run_email(broker.clone(), options)
                })
                .await?;
            handles.push(
                run_audit(broker.clone(), audit_options().topics(topics.clone()))
                    .await
                    .context("cannot subscribe the audit log")?,
            );
            let served = serve_users(broker, &topics, addr, metrics).await;
            served.and(shutdown_all(handles, "a subscriber").await)
        }
        Command::Demo => demo::run(broker, process.url(), &topics).await,
    };
    process.finish(outcome).await
}

async fn serve_users(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    addr: SocketAddr,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let service = UserService::new(broker, topics).context("cannot create the user service")?;
    serve_until_ctrl_c(addr, router(service), metrics, |server| {
        tracing::info!(
            "user service on {} (metrics: {}); try: curl -s {} -H 'content-type: application/json' -d '{{\"name\":\"Ada\",\"email\":\"ada@example.com\"}}'",
            server.url(""),
            server.url("/metrics"),
            server.url("/users")
        );
    })
    .await
}
