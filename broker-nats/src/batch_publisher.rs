//! Publishing a batch: core NATS hands every message to the client, then flushes once;
//! JetStream sends them all, keeping at most [`ACK_WINDOW`] acks awaited at a time,
//! and retries what was not acknowledged as a single publish does.

use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream::message::PublishMessage;
use broker_core::batch::{BatchError, BatchFailure};
use broker_core::subject::validate_topic;
use broker_core::{Error, ErrorKind, Message, Result};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::time::Instant;

use crate::broker::Inner;
use crate::convert::{self, IdHeaders};
use crate::publisher::{publish_core, send_until_acked};

/// The most JetStream acks a batch awaits at once: past it, the next message is sent
/// when the oldest ack is in. It bounds what a batch holds (the messages awaiting an
/// ack are kept, to be sent again if the ack does not come) whatever the batch's size.
pub(crate) const ACK_WINDOW: usize = 256;

/// Publishes `messages` to `topic` the way the broker's mode says, and returns those
/// that failed; `Err` when the whole call fails before a message is sent.
pub(crate) async fn publish_batch(
    inner: &Inner,
    topic: &str,
    messages: Vec<Message>,
) -> Result<Vec<BatchFailure>> {
    inner.check_open()?;
    if inner.uses_jetstream(topic) {
        publish_jetstream(inner, topic, messages).await
    } else {
        publish_core_batch(inner, topic, messages).await
    }
}

/// Core NATS: each message goes to the client (as a single publish would), then one
/// flush writes them to the server. A failed flush fails every message handed to the
/// client: it may or may not have reached the server.
async fn publish_core_batch(
    inner: &Inner,
    topic: &str,
    messages: Vec<Message>,
) -> Result<Vec<BatchFailure>> {
    inner.subjects.get(topic)?;
    let mut failures = Vec::new();
    let mut sent = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let outcome = match publish_core(inner, topic, message) {
            Ok(send) => send.await,
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => sent.push(index),
            Err(err) => failures.push(BatchFailure::new(index, err)),
        }
    }
    if !sent.is_empty()
        && let Err(err) = inner.client.flush().await
    {
        let err = Error::with_source(
            ErrorKind::Publish,
            format!(
                "flushing the batch to `{topic}` failed; the message may or may not have reached the server"
            ),
            err,
        );
        let shared = BatchError::whole(sent.len(), err);
        for (failure, index) in shared.into_failures().into_iter().zip(sent) {
            failures.push(BatchFailure::new(index, failure.into_error()));
        }
    }
    Ok(failures)
}

/// A message sent to JetStream, waiting for its ack: its index in the batch, what to
/// send again if the ack does not come, and the outcome of the first attempt.
type Acked = Pin<
    Box<dyn Future<Output = (usize, Converted, std::result::Result<(), String>)> + Send + 'static>,
>;

/// A message converted for JetStream: its headers (with its `Nats-Msg-Id`) and payload.
type Converted = (async_nats::HeaderMap, bytes::Bytes);

/// JetStream: the topic's stream is found once; each message is sent without waiting
/// for the acks of the previous ones, up to [`ACK_WINDOW`] awaited at once. A message
/// whose first attempt was not acknowledged is sent again, with the same
/// `Nats-Msg-Id`, by the single-publish path (its retries and `publish_timeout`), after
/// the others: the stream stores it once, possibly after later messages of the batch.
async fn publish_jetstream(
    inner: &Inner,
    topic: &str,
    messages: Vec<Message>,
) -> Result<Vec<BatchFailure>> {
    let js = inner.js()?;
    validate_topic(topic)?;
    inner.stream_for(topic).await?;
    let mut failures = Vec::new();
    let mut again: Vec<(usize, Converted)> = Vec::new();
    let mut acks: FuturesOrdered<Acked> = FuturesOrdered::new();
    let settle = |(index, converted, outcome): (
        usize,
        Converted,
        std::result::Result<(), String>,
    ),
                  again: &mut Vec<(usize, Converted)>| {
        if let Err(reason) = outcome {
            tracing::debug!(topic, index, %reason, "JetStream batch message not acknowledged; sending it again");
            again.push((index, converted));
        }
    };
    for (index, message) in messages.into_iter().enumerate() {
        let converted = convert::to_nats_headers(topic, &message, IdHeaders::WithNatsMsgId)
            .and_then(|headers| {
                inner.check_size(topic, message.payload().len(), Some(&headers))?;
                Ok(headers)
            });
        let headers = match converted {
            Ok(headers) => headers,
            Err(err) => {
                failures.push(BatchFailure::new(index, err));
                continue;
            }
        };
        while acks.len() >= ACK_WINDOW {
            if let Some(settled) = acks.next().await {
                settle(settled, &mut again);
            }
        }
        let payload = message.into_payload();
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers.clone());
        let converted = (headers, payload);
        match js.send_publish(topic.to_owned(), publish).await {
            Ok(ack) => acks.push_back(Box::pin(async move {
                let outcome = ack.await.map(drop).map_err(|e| e.to_string());
                (index, converted, outcome)
            })),
            Err(err) => settle((index, converted, Err(err.to_string())), &mut again),
        }
    }
    while let Some(settled) = acks.next().await {
        settle(settled, &mut again);
    }
    // One `publish_timeout` for all of them: a server that acknowledges none does not
    // hold the batch for one timeout per message.
    let deadline = Instant::now() + inner.options.jetstream.publish_timeout;
    for (index, (headers, payload)) in again {
        if let Err(err) = send_until_acked(inner, topic, headers, payload, deadline).await {
            failures.push(BatchFailure::new(index, err));
        }
    }
    Ok(failures)
}
