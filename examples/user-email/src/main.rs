//! Run: `cargo run -p user-email -- demo`; see `--help` for `users`, `email`, `audit` and
//! `all`, and `BROKER_URL` with `--features nats` or `--features kafka` for real brokers.
//!
//! The user service's port also serves `GET /metrics` (Prometheus), `GET /health` and
//! `GET /asyncapi.json` (the AsyncAPI document); on ctrl-c the handlers get
//! `--shutdown-timeout` seconds to finish.
//! `OTEL_EXPORTER_OTLP_ENDPOINT` exports traces over OTLP (http/protobuf).

mod demo;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use example_support::run::{self, Process, subscribe_until_ctrl_c};
use user_email::{Topics, UserService, audit_options, email_options, router, run_audit, run_email};

/// User created → welcome mail, with an audit log, over a message broker.
#[derive(Debug, Parser)]
#[command(version, about)]
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
    run::main::<Command, Topics>("warn", async |command, process, topics| match command {
        Command::Users { addr } => serve_users(process, &topics, addr).await,
        Command::Email { instance } => {
            let options = email_options().topics(topics).instance(instance);
            let handle = run_email(process.broker(), options)
                .await
                .context("cannot subscribe the email service")?;
            subscribe_until_ctrl_c(process, [handle]).await
        }
        Command::Audit => {
            let handle = run_audit(process.broker(), audit_options().topics(topics))
                .await
                .context("cannot subscribe the audit log")?;
            subscribe_until_ctrl_c(process, [handle]).await
        }
        Command::All { addr } => {
            let broker = process.broker();
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
            process.hold(handles);
            serve_users(process, &topics, addr).await
        }
        Command::Demo => demo::run(process.broker(), process.url(), &topics).await,
    })
    .await
}

async fn serve_users(process: &Process, topics: &Topics, addr: SocketAddr) -> anyhow::Result<()> {
    let service =
        UserService::new(process.broker(), topics).context("cannot create the user service")?;
    let document = user_email::asyncapi::document(topics, process.url())?;
    let try_it = r#"/users -H 'content-type: application/json' -d '{"name":"Ada","email":"ada@example.com"}'"#;
    let app = router(service);
    run::serve_api(process, addr, "user service", app, &document, try_it).await
}
