//! `broker reply`: answer requests with a fixed payload or their own.

use std::sync::Arc;

use broker::headers::names;
use broker::{Broker, BrokerExt, Message};
use bytes::Bytes;

use crate::args::ReplyArgs;
use crate::error::CliResult;
use crate::listen::listen;
use crate::subscribe::print_line;

/// Prints each request as a JSON line, answers it, then acks it.
pub(crate) async fn run(bus: &Arc<dyn Broker>, args: &ReplyArgs) -> CliResult {
    let fixed = args
        .payload
        .as_deref()
        .map(|text| Bytes::copy_from_slice(text.as_bytes()));
    let echo = args.echo;
    listen(bus, &args.listen, |delivery| {
        let fixed = fixed.clone();
        async move {
            let flow = print_line(&delivery)?;
            let request = delivery.message();
            if !request.headers().contains(names::REPLY_TO) {
                eprintln!(
                    "warning: not a request (no `{}` header), not answered",
                    names::REPLY_TO
                );
                delivery.ack().await?;
                return Ok(flow);
            }
            let payload = match fixed {
                Some(payload) if !echo => payload,
                _ => request.payload().clone(),
            };
            bus.reply(request, Message::new(payload)).await?;
            delivery.ack().await?;
            Ok(flow)
        }
    })
    .await
}
