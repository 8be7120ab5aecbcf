//! The consumer lag of NATS subscriptions (see [`broker_core::lag`]).
//!
//! - JetStream: the consumer's `num_pending` (messages matching its filter not yet
//!   delivered) plus `num_ack_pending` (delivered, not yet acked), the latter also as
//!   [`Lag::unacked`]; a queue group's durable consumer is shared by its members, so they
//!   all report the group's lag.
//! - Core NATS keeps no backlog on the server: the lag is what waits in the
//!   subscription's own client-side buffer, not yet handed out.

use async_nats::jetstream::stream::Stream as JsStream;
use broker_core::backend::{LagSource, async_trait};
use broker_core::lag::Lag;
use broker_core::{Error, ErrorKind, Result};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The lag of a JetStream subscription: its consumer's pending counts.
pub(crate) struct JetStreamLag {
    pub(crate) stream: JsStream<()>,
    pub(crate) consumer: String,
    /// Cancelled when the subscription ends.
    pub(crate) cancel: CancellationToken,
}

#[async_trait]
impl LagSource for JetStreamLag {
    async fn lag(&self) -> Result<Lag> {
        if self.cancel.is_cancelled() {
            return Err(Error::closed("the subscription"));
        }
        let info = self
            .stream
            .consumer_info(&self.consumer)
            .await
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::Subscribe,
                    format!(
                        "cannot read the pending counts of consumer `{}`",
                        self.consumer
                    ),
                    e,
                )
            })?;
        let unacked = u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX);
        Ok(Lag::new(info.num_pending.saturating_add(unacked)).with_unacked(unacked))
    }
}

/// The lag of a core NATS subscription: the messages in its buffer.
pub(crate) struct CoreLag {
    /// The sending end of the buffer, held weakly: the buffer ends with its forwarding
    /// task.
    pub(crate) buffer: mpsc::WeakSender<async_nats::Message>,
}

#[async_trait]
impl LagSource for CoreLag {
    async fn lag(&self) -> Result<Lag> {
        let buffer = self
            .buffer
            .upgrade()
            .ok_or_else(|| Error::closed("the subscription"))?;
        let waiting = buffer.max_capacity() - buffer.capacity();
        Ok(Lag::new(u64::try_from(waiting).unwrap_or(u64::MAX)))
    }
}
