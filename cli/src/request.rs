//! `broker request`: send a request and print the reply's payload.

use std::io::Write;
use std::sync::Arc;

use broker::{Broker, Requester};

use crate::args::RequestArgs;
use crate::error::{CliError, CliResult};
use crate::message;

/// Sends one request and writes the reply's payload, then a newline, to stdout.
pub(crate) async fn run(bus: &Arc<dyn Broker>, args: &RequestArgs) -> CliResult {
    let payload = message::read_payload(&args.message)?;
    let request = message::build(&args.message, payload);
    let requester = Requester::new(bus.clone()).await?;
    let reply = requester
        .request(&args.topic, request, args.timeout)
        .await?;
    drop(requester);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(reply.payload())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::io("cannot write to stdout", e))
}
