//! Run: `cargo run -p user-email -- demo`; see `--help` for `users`, `email`, `audit` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The user service's port also serves `GET /metrics` (Prometheus);
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use broker::{Broker, SubscriberHandle};
use clap::{Parser, Subcommand};
use example_telemetry::{PrometheusHandle, Telemetry};
use user_email::{
    AuditOptions, EmailOptions, Topics, UserService, http, plugin, router, run_audit, run_email,
};

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
    let telemetry = Telemetry::init("user-email", default_level)?;
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
        Command::Users { addr } => {
            alone("users");
            serve_users(broker.clone(), &topics, addr, metrics).await
        }
        Command::Email { instance } => {
            alone("email");
            let options = EmailOptions::new().topics(topics).instance(instance);
            let handle = run_email(broker.clone(), options)
                .await
                .context("cannot subscribe the email service")?;
            wait_for_ctrl_c().await;
            stop(vec![handle]).await
        }
        Command::Audit => {
            alone("audit");
            let handle = run_audit(broker.clone(), AuditOptions::new().topics(topics))
                .await
                .context("cannot subscribe the audit log")?;
            wait_for_ctrl_c().await;
            stop(vec![handle]).await
        }
        Command::All { addr } => {
            let mut handles = Vec::new();
            for n in 1..=2 {
                let options = EmailOptions::new()
                    .topics(topics.clone())
                    .instance(format!("email-{n}"));
                handles.push(
                    run_email(broker.clone(), options)
                        .await
                        .context("cannot subscribe the email service")?,
                );
            }
            handles.push(
                run_audit(broker.clone(), AuditOptions::new().topics(topics.clone()))
                    .await
                    .context("cannot subscribe the audit log")?,
            );
            let served = serve_users(broker.clone(), &topics, addr, metrics).await;
            served.and(stop(handles).await)
        }
        Command::Demo => demo::run(broker.clone(), &url, &topics).await,
    };
    let closed = broker.close().await.context("closing the broker");
    telemetry.shutdown();
    outcome.and(closed)
}

async fn serve_users(
    broker: Arc<dyn Broker>,
    topics: &Topics,
    addr: SocketAddr,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    let service = UserService::new(broker, topics).context("cannot create the user service")?;
    let app = example_telemetry::with_metrics(router(service), metrics);
    let server = http::serve(addr, app)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        "user service on {} (metrics: {}); try: curl -s {} -H 'content-type: application/json' -d '{{\"name\":\"Ada\",\"email\":\"ada@example.com\"}}'",
        server.url(""),
        server.url("/metrics"),
        server.url("/users")
    );
    wait_for_ctrl_c().await;
    server.shutdown().await.context("stopping the HTTP server")
}

async fn stop(handles: Vec<SubscriberHandle>) -> anyhow::Result<()> {
    for handle in handles {
        handle.shutdown().await.context("stopping a subscriber")?;
    }
    Ok(())
}

async fn wait_for_ctrl_c() {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %err, "cannot listen for ctrl-c; stopping");
    }
    tracing::info!("stopping");
}
