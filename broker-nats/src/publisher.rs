//! Publishing: core NATS (fire and forget) and JetStream (waits for the stream's ack).

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use broker_core::headers::names;
use broker_core::subject::validate_topic;
use broker_core::{Error, ErrorKind, Message, Result};
use futures::TryFutureExt;
use futures::future::{BoxFuture, Either};
use tokio::time::Instant;

use crate::broker::Inner;
use crate::convert::IdHeaders;
use crate::{convert, error};

/// Publishes `message` to `topic` the way the broker's mode says.
///
/// Core NATS converts the message at once, and the box holds only the client's send
/// future; a conversion error is returned through the future. The JetStream path, whose
/// future holds the ack wait and the retries, is an `async` block.
pub(crate) fn publish<'a>(
    inner: &'a Inner,
    topic: &'a str,
    message: Message,
) -> BoxFuture<'a, Result<()>> {
    if inner.uses_jetstream(topic) {
        Box::pin(async move {
            validate_topic(topic)?;
            publish_jetstream(inner, topic, message).await
        })
    } else {
        match publish_core(inner, topic, message) {
            Ok(send) => Box::pin(send),
            Err(err) => Box::pin(std::future::ready(Err(err))),
        }
    }
}

/// Core NATS: resolves once the client has the message; at-most-once. The topic is
/// validated here, the first time it is published to (see [`Subjects`]). A `reply-to`
/// header that is a valid subject also becomes the native reply subject. The message id
/// travels unless `message_ids` is off and the message is no request; a message left
/// with no header at all goes out without a header block.
pub(crate) fn publish_core<'a>(
    inner: &'a Inner,
    topic: &'a str,
    message: Message,
) -> Result<impl Future<Output = Result<()>> + Send + 'a> {
    let subject = inner.subjects.get(topic)?;
    let reply = message
        .headers()
        .get(names::REPLY_TO)
        .filter(|r| validate_topic(r).is_ok())
        .map(str::to_owned);
    let ids = if inner.options.message_ids || reply.is_some() {
        IdHeaders::MessageId
    } else {
        IdHeaders::Omitted
    };
    // Nothing to carry in headers: no header map to build.
    // (A tombstone goes through the conversion, which refuses it.)
    let bare = ids == IdHeaders::Omitted
        && message.headers().is_empty()
        && message.key().is_none()
        && !message.is_tombstone();
    let headers = if bare {
        None
    } else {
        Some(convert::to_nats_headers(topic, &message, ids)?).filter(|h| !h.is_empty())
    };
    inner.check_size(topic, message.payload().len(), headers.as_ref())?;
    let payload = message.into_payload();
    let client = &inner.client;
    let send = match (reply, headers) {
        (Some(reply), headers) => {
            Either::Left(Either::Left(client.publish_with_reply_and_headers(
                subject,
                reply,
                headers.unwrap_or_default(),
                payload,
            )))
        }
        (None, Some(headers)) => Either::Left(Either::Right(
            client.publish_with_headers(subject, headers, payload),
        )),
        (None, None) => Either::Right(client.publish(subject, payload)),
    };
    Ok(send.map_err(move |e| error::publish(topic, e)))
}

/// Slots in [`Subjects`].
const SUBJECT_SLOTS: usize = 64;

/// Kept for speed: without it core NATS publish 128 B fell from 0.23–0.28× to 0.19–0.22×
/// of raw async-nats (A B A B runs; noise 0.03–0.05×).
///
/// The subjects of recent publishes, so that publishing to a topic seen before shares
/// its [`Subject`] (a reference count) instead of copying the topic into a new one,
/// which the client then copies once more, and skips checking the topic again: a small
/// table with one slot per hash of the topic, each behind its own lock, so it never
/// grows.
pub(crate) struct Subjects {
    slots: Box<[Mutex<Option<Subject>>]>,
    hasher: foldhash::fast::FixedState,
}

impl Subjects {
    pub(crate) fn new() -> Self {
        Subjects {
            slots: (0..SUBJECT_SLOTS).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }

    /// The subject for `topic`: from the table when it is there (a topic is only there
    /// once checked), else checked with [`validate_topic`] and added.
    pub(crate) fn get(&self, topic: &str) -> Result<Subject> {
        // Only the low bits pick the slot.
        let slot = &self.slots[self.hasher.hash_one(topic) as usize % SUBJECT_SLOTS];
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(subject) if subject.as_str() == topic => Ok(subject.clone()),
            _ => {
                validate_topic(topic)?;
                let subject = Subject::from(topic);
                *slot = Some(subject.clone());
                Ok(subject)
            }
        }
    }
}

/// JetStream: resolves when the stream acknowledged the message. Unacknowledged
/// attempts (a lost connection, a restarting server) are retried with the same
/// `Nats-Msg-Id`, so the stream stores the message once, until
/// `publish_timeout` runs out; then it fails. It never reports `Ok` for a message the
/// stream did not acknowledge.
async fn publish_jetstream(inner: &Inner, topic: &str, message: Message) -> Result<()> {
    inner.js()?;
    let headers = convert::to_nats_headers(topic, &message, IdHeaders::WithNatsMsgId)?;
    inner.check_size(topic, message.payload().len(), Some(&headers))?;
    inner.stream_for(topic).await?;
    let deadline = Instant::now() + inner.options.jetstream.publish_timeout;
    send_until_acked(inner, topic, headers, message.into_payload(), deadline).await
}

/// Sends a converted JetStream message (its headers carry the `Nats-Msg-Id`) until the
/// stream acknowledges it, as [`publish_jetstream`] says, retrying until `deadline`
/// (it tries once even when `deadline` has passed).
pub(crate) async fn send_until_acked(
    inner: &Inner,
    topic: &str,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
    deadline: Instant,
) -> Result<()> {
    let js = inner.js()?;
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
