//! The future an ack returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::{Acker, Nacked, settle_on_drop};
use crate::Result;
use crate::options::AckMode;
use crate::subscription::Permit;

/// What [`Delivery::ack`](crate::Delivery::ack) and [`Settle::ack`](super::Settle::ack) return: a future that resolves when the
/// backend has taken the ack. The ack is sent when it is first polled; dropped before
/// that, it acks in the background, as an unsettled delivery under [`AckMode::Auto`]
/// does. The delivery's in-flight permit is given back when the ack completes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> broker_core::Result<()> {
/// use std::sync::Arc;
/// use broker_core::{Delivery, Message, Result};
/// use broker_core::backend::{Nacked, Requeue};
/// use broker_core::delivery::Redelivery;
/// use futures::future::BoxFuture;
///
/// struct Forget;
/// impl Requeue for Forget {
///     fn requeue(&self, _: Nacked, _: Redelivery) -> BoxFuture<'static, Result<()>> {
///         broker_core::backend::settled()
///     }
/// }
///
/// let delivery = Delivery::requeued(Message::new("hi"), "greetings", 1, Arc::new(Forget));
/// let ack: broker_core::delivery::Ack = delivery.ack();
/// ack.await?;
/// # Ok(()) }
/// ```
#[must_use = "the ack is sent when the future is awaited (dropped, it acks in the background)"]
pub struct Ack {
    state: AckState,
    permit: Option<Permit>,
}

enum AckState {
    /// Not polled yet.
    Start(Option<Acker>),
    /// The backend's ack, under way.
    Settling(BoxFuture<'static, Result<()>>),
    /// Resolved.
    Done,
}

impl Ack {
    pub(super) fn new(acker: Option<Acker>, permit: Option<Permit>) -> Self {
        Ack {
            state: AckState::Start(acker),
            permit,
        }
    }
}

impl Future for Ack {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let result = loop {
            match &mut this.state {
                AckState::Start(acker) => match acker.take() {
                    // A backend with nothing to do on an ack: no future is built.
                    Some(acker) if !acker.ack_is_noop() => {
                        this.state = AckState::Settling(acker.ack());
                    }
                    _ => break Ok(()),
                },
                AckState::Settling(settle) => match settle.as_mut().poll(cx) {
                    Poll::Ready(result) => break result,
                    Poll::Pending => return Poll::Pending,
                },
                AckState::Done => break Ok(()),
            }
        };
        this.state = AckState::Done;
        drop(this.permit.take());
        Poll::Ready(result)
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let AckState::Start(acker) = &mut self.state {
            let acker = acker.take();
            let permit = self.permit.take();
            settle_on_drop(AckMode::Auto, acker, permit, || Nacked::kept(None));
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            AckState::Start(_) => "not polled",
            AckState::Settling(_) => "settling",
            AckState::Done => "done",
        };
        f.debug_struct("Ack").field("state", &state).finish()
    }
}
