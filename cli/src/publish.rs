//! `broker pub`: publish a message, or N copies of it.

use std::sync::Arc;

use broker::Broker;

use crate::args::PubArgs;
use crate::error::CliResult;
use crate::message;

/// Publishes `args.count` copies, one after the other, each with its own id.
pub(crate) async fn run(bus: &Arc<dyn Broker>, args: &PubArgs, verbose: bool) -> CliResult {
    let payload = message::read_payload(&args.message)?;
    for _ in 0..args.count {
        let message = message::build(&args.message, payload.clone());
        let id = message.id().clone();
        bus.publish(&args.topic, message).await?;
        if verbose {
            eprintln!("published {id} to {}", args.topic);
        }
    }
    Ok(())
}
