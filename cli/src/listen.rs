//! The subscription loop `sub` and `reply` share: subscribe, say so, hand each delivery
//! over, and stop after `--count` messages, at `--timeout`, or on Ctrl-C.

use std::future::Future;
use std::sync::Arc;

use broker::options::StartPosition;
use broker::{Broker, Delivery, SubscribeOptions};
use futures::StreamExt;
use tokio::time::Instant;

use crate::args::{From, ListenArgs};
use crate::error::{CliError, CliResult};

/// Subscribes as `args` say, with manual acks, and calls `handle` on each delivery (it
/// settles it). Prints `subscribed to PATTERN` on stderr once the subscription is live.
pub(crate) async fn listen<F, Fut>(
    bus: &Arc<dyn Broker>,
    args: &ListenArgs,
    mut handle: F,
) -> CliResult
where
    F: FnMut(Delivery) -> Fut,
    Fut: Future<Output = CliResult<Flow>>,
{
    let mut subscription = bus.subscribe(&args.pattern, options(args)).await?;
    eprintln!("subscribed to {}", args.pattern);
    let deadline = args.timeout.map(|timeout| Instant::now() + timeout);
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut seen = 0u64;
    while args.count.is_none_or(|count| seen < count) {
        let item = tokio::select! {
            item = subscription.next() => item,
            () = &mut expired => return timed_out(args, seen),
            _ = &mut interrupted => return Ok(()),
        };
        match item {
            None => {
                return Err(CliError::Ended(format!(
                    "the broker ended the subscription to `{}` after {seen} messages",
                    args.pattern
                )));
            }
            Some(Err(err)) => eprintln!("warning: {}", err.display_chain()),
            Some(Ok(delivery)) => {
                seen += 1;
                if handle(delivery).await? == Flow::Stop {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Whether to go on after a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Wait for the next one.
    Continue,
    /// End normally (stdout was closed).
    Stop,
}

/// The subscribe options `args` ask for.
fn options(args: &ListenArgs) -> SubscribeOptions {
    let mut options = SubscribeOptions::new().manual_ack();
    if let Some(group) = &args.group {
        options = options.queue(group.as_str());
    }
    match args.from {
        Some(From::Earliest) => options.start(StartPosition::Earliest),
        Some(From::Latest) => options.start(StartPosition::Latest),
        None => options,
    }
}

/// At `--timeout`: an error when `--count` messages were expected, the end otherwise.
fn timed_out(args: &ListenArgs, seen: u64) -> CliResult {
    match (args.count, args.timeout) {
        (Some(count), Some(timeout)) => Err(CliError::Timeout(format!(
            "{seen} of {count} messages on `{}` within {}s",
            args.pattern,
            timeout.as_secs_f64()
        ))),
        _ => Ok(()),
    }
}
