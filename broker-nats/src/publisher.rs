//! Publishing: core NATS (fire and forget) and JetStream (waits for the stream's ack).

use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use broker_core::headers::names;
use broker_core::subject::validate_topic;
use broker_core::{Error, ErrorKind, Message, Result};
use tokio::time::Instant;

use crate::broker::Inner;
use crate::{convert, error};

/// Publishes `message` to `topic` (already validated) the way the broker's mode says.
pub(crate) async fn publish(inner: &Inner, topic: &str, message: Message) -> Result<()> {
    if inner.uses_jetstream(topic) {
        publish_jetstream(inner, topic, message).await
    } else {
        publish_core(inner, topic, message).await
    }
}

/// Core NATS: resolves once the client has the message; at-most-once. A `reply-to`
/// header that is a valid subject also becomes the native reply subject.
async fn publish_core(inner: &Inner, topic: &str, message: Message) -> Result<()> {
    let headers = convert::to_nats_headers(topic, &message, false)?;
    inner.check_size(topic, message.payload().len(), &headers)?;
    let reply = message
        .headers()
        .get(names::REPLY_TO)
        .filter(|r| validate_topic(r).is_ok())
        .map(str::to_owned);
    let payload = message.into_payload();
    let sent = match reply {
        Some(reply) => {
            inner
                .client
                .publish_with_reply_and_headers(Subject::from(topic), reply, headers, payload)
                .await
        }
        None => {
            inner
                .client
                .publish_with_headers(Subject::from(topic), headers, payload)
                .await
        }
    };
    sent.map_err(|e| error::publish(topic, e))
}

/// JetStream: resolves when the stream acknowledged the message. Unacknowledged
/// attempts (a lost connection, a restarting server) are retried with the same
/// `Nats-Msg-Id`, so the stream stores the message once, until
/// `publish_timeout` runs out; then it fails. It never reports `Ok` for a message the
/// stream did not acknowledge.
async fn publish_jetstream(inner: &Inner, topic: &str, message: Message) -> Result<()> {
    let js = inner.js()?;
    let headers = convert::to_nats_headers(topic, &message, true)?;
    inner.check_size(topic, message.payload().len(), &headers)?;
    inner.stream_for(topic).await?;

    let deadline = Instant::now() + inner.options.jetstream.publish_timeout;
    let payload = message.into_payload();
    let mut backoff = Duration::from_millis(50);
    let mut looked_again = false;
    loop {
        let attempt = async {
            js.send_publish(
                topic.to_owned(),
                PublishMessage::build()
                    .payload(payload.clone())
                    .headers(headers.clone()),
            )
            .await?
            .await
        };
        let err = match attempt.await {
            Ok(ack) => {
                if ack.duplicate {
                    tracing::debug!(topic, stream = %ack.stream, "publish was a duplicate of an earlier attempt");
                }
                return Ok(());
            }
            Err(err) => err,
        };
        inner.check_open()?;
        let transient = match err.kind() {
            PublishErrorKind::MaxPayloadExceeded => {
                return Err(Error::with_source(
                    ErrorKind::PayloadTooLarge,
                    format!("the message to `{topic}` exceeds the server's max_payload"),
                    err,
                ));
            }
            PublishErrorKind::StreamNotFound => {
                // The stream may have been deleted, or JetStream is still starting.
                if !looked_again {
                    looked_again = true;
                    inner.forget_stream(topic);
                    inner.stream_for(topic).await?;
                }
                true
            }
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending => true,
            _ => false,
        };
        if !transient {
            return Err(Error::with_source(
                ErrorKind::Publish,
                format!("the JetStream stream rejected the message to `{topic}`"),
                err,
            ));
        }
        if Instant::now() + backoff >= deadline {
            return Err(Error::with_source(
                ErrorKind::Publish,
                format!(
                    "the message to `{topic}` was not acknowledged by JetStream within {:?}",
                    inner.options.jetstream.publish_timeout
                ),
                err,
            ));
        }
        tracing::debug!(topic, error = %err, "JetStream publish not acknowledged; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
