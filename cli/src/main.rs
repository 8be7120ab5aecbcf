//! `broker`: publish, subscribe, request, reply and measure on any broker URL this build
//! compiles in (`memory://`, `nats://`, `jetstream://`, `kafka://`).
//!
//! Exit codes: 0 success, 1 broker, connection or I/O error, 2 usage, 3 timeout.

mod args;
mod bench;
mod error;
mod listen;
mod message;
mod output;
mod publish;
mod reply;
mod request;
mod subscribe;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::error::CliResult;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("broker: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("broker: {err}");
            err.exit_code()
        }
    }
}

/// Connects to `--url`, runs the subcommand, and closes the broker (flushing what was
/// published) whatever the outcome.
async fn run(cli: &Cli) -> CliResult {
    let bus = broker::connect(cli.url()).await?;
    if cli.verbose {
        eprintln!("connected to {}", bus.capabilities().backend);
    }
    let outcome = match &cli.command {
        Command::Pub(args) => publish::run(&bus, args, cli.verbose).await,
        Command::Sub(args) => subscribe::run(&bus, args).await,
        Command::Request(args) => request::run(&bus, args).await,
        Command::Reply(args) => reply::run(&bus, args).await,
        Command::Bench(args) => bench::run(&bus, args).await,
    };
    let closed = bus.close().await;
    outcome?;
    Ok(closed?)
}
