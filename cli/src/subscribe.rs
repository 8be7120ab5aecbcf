//! `broker sub`: print what a pattern matches, one JSON line per message.

use std::io::Write;
use std::sync::Arc;

use broker::{Broker, Delivery};

use crate::args::SubArgs;
use crate::error::{CliError, CliResult};
use crate::listen::{Flow, listen};
use crate::output::JsonLine;

/// Prints each delivery, then acks it.
pub(crate) async fn run(bus: &Arc<dyn Broker>, args: &SubArgs) -> CliResult {
    listen(bus, &args.listen, |delivery| async move {
        let flow = print_line(&delivery)?;
        delivery.ack().await?;
        Ok(flow)
    })
    .await
}

/// Writes the delivery's JSON line to stdout and flushes it. A closed stdout (`| head`)
/// ends the command normally.
pub(crate) fn print_line(delivery: &Delivery) -> CliResult<Flow> {
    let line = JsonLine(delivery).render();
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Flow::Continue),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Flow::Stop),
        Err(e) => Err(CliError::io("cannot write to stdout", e)),
    }
}
