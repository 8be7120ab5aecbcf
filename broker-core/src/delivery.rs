//! One delivery of a message to a subscriber, and how it is settled.

mod ack;

pub use ack::Ack;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::options::AckMode;
use crate::subscription::Permit;
use crate::{Error, Message, Result};

/// When a nacked message should come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Redelivery {
    /// As soon as the backend can.
    #[default]
    Now,
    /// Not before the delay has passed.
    After(Duration),
}

/// How a backend settles one delivery. Backends implement it; users call
/// [`Delivery::ack`] and [`Delivery::nack`].
pub trait Acknowledger: Send + 'static {
    /// The message was processed: the backend may forget it.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
    /// The message was not processed: the backend delivers it again as `redelivery` says,
    /// where it can (see [`Capabilities::redelivery`](crate::backend::Capabilities::redelivery)).
    fn nack(self: Box<Self>, redelivery: Redelivery) -> BoxFuture<'static, Result<()>>;

    /// Whether [`ack`](Acknowledger::ack) has nothing to do and always succeeds (an
    /// at-most-once backend, or one that forgets a message as soon as it is delivered).
    /// When it says so, an ack drops the acknowledger without calling `ack`, which saves
    /// building a future per message. The default is `false`.
    fn ack_is_noop(&self) -> bool {
        false
    }
}

/// How an in-process backend settles the deliveries of a subscription, shared by all of
/// them: the message leaves the backend when it is delivered, so an ack has nothing to
/// do, and a nack hands the message back. Unlike an [`Acknowledger`], nothing is
/// allocated per delivery; the [`Delivery`] itself carries what a nack needs.
///
/// ```
/// use std::sync::Arc;
/// use broker_core::{Delivery, Message, Result};
/// use broker_core::backend::{Nacked, Requeue};
/// use broker_core::delivery::Redelivery;
/// use futures::future::BoxFuture;
///
/// struct Drop;
/// impl Requeue for Drop {
///     fn requeue(&self, _nacked: Nacked, _redelivery: Redelivery) -> BoxFuture<'static, Result<()>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// let delivery = Delivery::requeued(Message::new("hi"), "greetings", 1, Arc::new(Drop));
/// assert_eq!(delivery.attempt(), Some(1));
/// ```
pub trait Requeue: Send + Sync + 'static {
    /// Takes back the `nacked` message, to be delivered again as `redelivery` says.
    fn requeue(&self, nacked: Nacked, redelivery: Redelivery) -> BoxFuture<'static, Result<()>>;
}

/// What a nack hands back to a [`Requeue`]: the message, the concrete topic it was
/// published to, and the attempt it was delivered for (1 for the first).
#[derive(Debug)]
pub struct Nacked {
    /// The message.
    pub message: Message,
    /// The concrete topic.
    pub topic: Arc<str>,
    /// The delivery attempt that was nacked.
    pub attempt: u32,
}

/// How one delivery is settled.
enum Acker {
    /// Through the backend's own per-delivery acknowledger.
    Boxed(Box<dyn Acknowledger>),
    /// Through the subscription's [`Requeue`], which takes the message back on a nack.
    Requeue(Arc<dyn Requeue>),
}

/// A future that is already done with `Ok(())`: for an [`Acknowledger`] whose `ack` or
/// `nack` finishes its work before returning, or a backend's `publish` that completed
/// when it was called. The future is zero-sized, so boxing it allocates nothing (where
/// `Box::pin(futures::future::ready(Ok(())))` allocates per call).
///
/// ```
/// use broker_core::Result;
/// use broker_core::backend::{Acknowledger, settled};
/// use broker_core::delivery::Redelivery;
/// use futures::future::BoxFuture;
///
/// struct Forget;
/// impl Acknowledger for Forget {
///     fn ack(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
///         settled()
///     }
///     fn nack(self: Box<Self>, _: Redelivery) -> BoxFuture<'static, Result<()>> {
///         settled()
///     }
/// }
/// ```
pub fn settled() -> BoxFuture<'static, Result<()>> {
    Box::pin(Settled)
}

/// What [`settled`] boxes.
struct Settled;

impl Future for Settled {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Acker {
    /// Whether an ack has nothing to do.
    fn ack_is_noop(&self) -> bool {
        match self {
            Acker::Boxed(acker) => acker.ack_is_noop(),
            Acker::Requeue(_) => true,
        }
    }

    fn ack(self) -> BoxFuture<'static, Result<()>> {
        match self {
            Acker::Boxed(acker) => acker.ack(),
            Acker::Requeue(_) => settled(),
        }
    }

    /// Nacks; `from` gives what a [`Requeue`] takes back.
    fn nack(
        self,
        redelivery: Redelivery,
        from: impl FnOnce() -> Nacked,
    ) -> BoxFuture<'static, Result<()>> {
        match self {
            Acker::Boxed(acker) => acker.nack(redelivery),
            Acker::Requeue(requeue) => requeue.requeue(from(), redelivery),
        }
    }
}

/// How a delivery is settled, shared by a [`Delivery`] and the [`Settle`] half split off
/// it: the ack mode (for a drop), the acknowledger until it is used, and the delivery's
/// in-flight permit.
struct Settling {
    ack_mode: AckMode,
    acker: Option<Acker>,
    permit: Option<Permit>,
}

impl Settling {
    /// Whether the delivery was acked or nacked already.
    fn is_settled(&self) -> bool {
        self.acker.is_none()
    }

    /// Acks (see [`Ack`]).
    fn ack(&mut self) -> Ack {
        Ack::new(self.acker.take(), self.permit.take())
    }

    /// Nacks, unless already settled, then gives the permit back; `from` gives what a
    /// [`Requeue`] takes back.
    async fn nack(&mut self, redelivery: Redelivery, from: impl FnOnce() -> Nacked) -> Result<()> {
        let result = match self.acker.take() {
            Some(acker) => acker.nack(redelivery, from).await,
            None => Ok(()),
        };
        drop(self.permit.take());
        result
    }

    /// Settles a delivery dropped unsettled, `from` as for [`nack`](Settling::nack) (see
    /// [`settle_on_drop`]).
    fn drop_unsettled(&mut self, from: impl FnOnce() -> Nacked) {
        settle_on_drop(self.ack_mode, self.acker.take(), self.permit.take(), from);
    }
}

/// A message delivered to a subscription: the message, the concrete topic it was
/// published to, the delivery attempt where the backend knows it, and `ack`/`nack`.
///
/// A delivery dropped without being settled is acked under [`AckMode::Auto`] and nacked
/// under [`AckMode::Manual`].
pub struct Delivery {
    message: Message,
    topic: Arc<str>,
    attempt: Option<u32>,
    partition: Option<i32>,
    defect: Option<Arc<Error>>,
    settling: Settling,
}

impl Delivery {
    /// A delivery of `message`, published to `topic`, settled through `acker`. Backends
    /// build these; the subscription fills in the ack mode.
    pub fn new(message: Message, topic: impl Into<Arc<str>>, acker: Box<dyn Acknowledger>) -> Self {
        Delivery::settled_by(message, topic.into(), None, Acker::Boxed(acker))
    }

    fn settled_by(message: Message, topic: Arc<str>, attempt: Option<u32>, acker: Acker) -> Self {
        Delivery {
            message,
            topic,
            attempt,
            partition: None,
            defect: None,
            settling: Settling {
                ack_mode: AckMode::Auto,
                acker: Some(acker),
                permit: None,
            },
        }
    }

    /// A delivery of `message`, published to `topic`, for the `attempt`th time (1 for the
    /// first), settled through the subscription's `requeue`: an ack does nothing, a nack
    /// hands the message back to it. See [`Requeue`].
    pub fn requeued(
        message: Message,
        topic: impl Into<Arc<str>>,
        attempt: u32,
        requeue: Arc<dyn Requeue>,
    ) -> Self {
        Delivery::settled_by(
            message,
            topic.into(),
            Some(attempt.max(1)),
            Acker::Requeue(requeue),
        )
    }

    /// Sets the delivery attempt (1 for the first delivery).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt.max(1));
        self
    }

    /// Sets the partition the message came from (Kafka).
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Marks the delivery as one the backend could not read whole (for example a header
    /// block another client wrote that the backend cannot parse): the message holds what
    /// could be read, and `defect` says what could not. A handler sees it as
    /// [`Event::defect`](crate::Event::defect); the typed handlers and the dead-letter
    /// layer treat it as a permanent failure.
    pub fn with_defect(mut self, defect: Error) -> Self {
        self.defect = Some(Arc::new(defect));
        self
    }

    /// What the backend could not read of this delivery, if anything (see
    /// [`with_defect`](Delivery::with_defect)).
    pub fn defect(&self) -> Option<&Error> {
        self.defect.as_deref()
    }

    /// The same delivery (settled the same way) with its message changed by `change`,
    /// for wrappers that translate messages on receipt.
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    pub(crate) fn map_message(mut self, change: impl FnOnce(Message) -> Message) -> Self {
        let message = std::mem::replace(&mut self.message, Message::placeholder());
        self.message = change(message);
        self
    }

    pub(crate) fn attach(&mut self, ack_mode: AckMode, permit: Option<Permit>) {
        self.settling.ack_mode = ack_mode;
        self.settling.permit = permit;
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The concrete topic the message was published to (the subscription may use a
    /// wildcard pattern).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The delivery attempt, 1 for the first, where the backend knows it.
    pub fn attempt(&self) -> Option<u32> {
        self.attempt
    }

    /// The partition, on partitioned backends.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// The ack mode of the subscription this delivery came from.
    pub fn ack_mode(&self) -> AckMode {
        self.settling.ack_mode
    }

    /// Acknowledges the message. The returned [`Ack`] resolves when the backend has
    /// taken the ack; it sends the ack when first polled, or in the background if it is
    /// dropped before that.
    pub fn ack(mut self) -> Ack {
        // Only the acknowledger and the permit go into the future: the delivery itself
        // (message and all) is not moved again.
        self.settling.ack()
    }

    /// Rejects the message for redelivery as soon as possible.
    pub async fn nack(self) -> Result<()> {
        self.nack_with(Redelivery::Now).await
    }

    /// Rejects the message for redelivery after `delay`.
    pub async fn nack_after(self, delay: Duration) -> Result<()> {
        self.nack_with(Redelivery::After(delay)).await
    }

    /// Rejects the message; `redelivery` says when it should come back.
    pub async fn nack_with(mut self, redelivery: Redelivery) -> Result<()> {
        self.settling
            .nack(redelivery, || {
                take_for_requeue(&mut self.message, &self.topic, self.attempt)
            })
            .await
    }

    /// Splits the delivery into its message and a [`Settle`] handle, so the message can
    /// be moved into a handler while the ack stays here.
    pub fn into_parts(mut self) -> (Message, DeliveryInfo, Settle) {
        let info = DeliveryInfo {
            topic: self.topic.clone(),
            attempt: self.attempt,
            partition: self.partition,
            defect: self.defect.take(),
        };
        let settling = Settling {
            ack_mode: self.settling.ack_mode,
            acker: self.settling.acker.take(),
            permit: self.settling.permit.take(),
        };
        // The message goes to the handler; the settle half keeps a copy for a nack.
        let requeue = matches!(settling.acker, Some(Acker::Requeue(_))).then(|| {
            Box::new(Nacked {
                message: self.message.clone(),
                topic: self.topic.clone(),
                attempt: self.attempt.unwrap_or(1),
            })
        });
        let settle = Settle { settling, requeue };
        let message = std::mem::replace(&mut self.message, Message::placeholder());
        (message, info, settle)
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("attempt", &self.attempt)
            .field("partition", &self.partition)
            .field("defect", &self.defect)
            .field("settled", &self.settling.is_settled())
            .field("message", &self.message)
            .finish()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.settling
            .drop_unsettled(|| take_for_requeue(&mut self.message, &self.topic, self.attempt));
    }
}

/// What a nack through a [`Requeue`] hands back for a [`Delivery`]: its message (moved
/// out) with its topic and attempt.
fn take_for_requeue(message: &mut Message, topic: &Arc<str>, attempt: Option<u32>) -> Nacked {
    Nacked {
        message: std::mem::replace(message, Message::placeholder()),
        topic: topic.clone(),
        attempt: attempt.unwrap_or(1),
    }
}

/// Where a delivery came from, without its message.
#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    /// The concrete topic.
    pub topic: Arc<str>,
    /// The delivery attempt, where known.
    pub attempt: Option<u32>,
    /// The partition, on partitioned backends.
    pub partition: Option<i32>,
    /// What the backend could not read, if anything (see [`Delivery::with_defect`]).
    pub defect: Option<Arc<Error>>,
}

/// The settling half of a [`Delivery`] (see [`Delivery::into_parts`]). Dropped unsettled,
/// it behaves as the delivery would.
pub struct Settle {
    settling: Settling,
    /// What a nack through a [`Requeue`] hands back.
    requeue: Option<Box<Nacked>>,
}

impl Settle {
    /// Acknowledges the message, as [`Delivery::ack`] does.
    pub fn ack(mut self) -> Ack {
        self.settling.ack()
    }

    /// Rejects the message; `redelivery` says when it should come back.
    pub async fn nack(mut self, redelivery: Redelivery) -> Result<()> {
        self.settling
            .nack(redelivery, || Nacked::kept(self.requeue.take()))
            .await
    }
}

impl Nacked {
    /// What a nack through a [`Requeue`] hands back for a [`Settle`]: what it `kept`, or
    /// an empty placeholder when it kept nothing.
    fn kept(kept: Option<Box<Nacked>>) -> Nacked {
        match kept {
            Some(kept) => *kept,
            None => Nacked {
                message: Message::placeholder(),
                topic: Arc::from(""),
                attempt: 1,
            },
        }
    }
}

impl fmt::Debug for Settle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settle")
            .field("ack_mode", &self.settling.ack_mode)
            .field("settled", &self.settling.is_settled())
            .finish()
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.settling
            .drop_unsettled(|| Nacked::kept(self.requeue.take()));
    }
}

/// Settles a delivery that was dropped unsettled: an ack under [`AckMode::Auto`], a nack
/// under [`AckMode::Manual`] (`from` gives what a [`Requeue`] takes back; an ack never
/// calls it).
fn settle_on_drop(
    ack_mode: AckMode,
    acker: Option<Acker>,
    permit: Option<Permit>,
    from: impl FnOnce() -> Nacked,
) {
    let Some(acker) = acker else { return };
    if ack_mode == AckMode::Auto && acker.ack_is_noop() {
        return;
    }
    let mut settle = match ack_mode {
        AckMode::Auto => acker.ack(),
        AckMode::Manual => acker.nack(Redelivery::Now, from),
    };
    // Most backends settle without waiting (the future is ready at once): poll it here
    // and spawn a task only for one that has to wait.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(result) = settle.as_mut().poll(&mut cx) {
        if let Err(err) = result {
            tracing::warn!(error = %err.display_chain(), "settling a dropped delivery failed");
        }
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(err) = settle.await {
                    tracing::warn!(error = %err.display_chain(), "settling a dropped delivery failed");
                }
                drop(permit);
            });
        }
        Err(_) => {
            tracing::warn!(
                "a delivery was dropped unsettled outside a tokio runtime; the backend's own redelivery applies"
            );
        }
    }
}

#[cfg(test)]
mod tests;
