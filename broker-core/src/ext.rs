//! Helpers built on the three `Broker` methods, available on every broker.

use std::future::Future;
use std::sync::Arc;

use crate::batch::{BatchHandler, BatchOptions};
use crate::headers::names;
use crate::subscriber::{self, HandlerOptions, SubscriberHandle};
use crate::{Broker, Error, ErrorKind, Handler, Message, Result, SubscribeOptions};

/// Handler subscriptions and replies, for every [`Broker`] (including `dyn Broker`).
pub trait BrokerExt: Broker {
    /// Subscribes `handler` to `pattern`, as go-micro's `RegisterSubscriber` does: each
    /// event is handled once; `Ok` acks it, `Err` or a panic nacks it (the panic is caught
    /// and logged, and the subscription lives on).
    ///
    /// ```
    /// # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
    /// use broker_core::{BoxError, BrokerExt, Event, HandlerOptions, SubscribeOptions};
    ///
    /// let handle = broker
    ///     .subscribe_with(
    ///         "notification.submit",
    ///         SubscribeOptions::new().queue("notification"),
    ///         HandlerOptions::new().concurrency(4),
    ///         |event: Event| async move {
    ///             println!("order event {}", event.message().id());
    ///             Ok::<_, BoxError>(())
    ///         },
    ///     )
    ///     .await?;
    /// // … later, on shutdown: finish what is in flight, settle it, unsubscribe.
    /// handle.shutdown().await?;
    /// # Ok(()) }
    /// ```
    fn subscribe_with<H: Handler>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        handler_options: HandlerOptions,
        handler: H,
    ) -> impl Future<Output = Result<SubscriberHandle>> + Send {
        async move {
            let subscription = self.subscribe(pattern, options).await?;
            Ok(subscriber::spawn(
                subscription,
                Arc::new(handler),
                handler_options,
            ))
        }
    }

    /// Subscribes `handler` to `pattern` to handle events in batches: up to
    /// [`max_events`](BatchOptions::max_events), or what arrived within
    /// [`max_wait`](BatchOptions::max_wait) of a batch's first event. `Ok` acks the whole
    /// batch; an [`EventFailures`](crate::batch::EventFailures) fails every event or
    /// single ones (the rest are acked); a panic fails every event. Failed events are
    /// settled as a single handler's are (see [`BatchOptions`]). The returned handle
    /// shuts down as [`subscribe_with`](Self::subscribe_with)'s does.
    ///
    /// On Kafka, acking the events of a batch out of order is safe: offsets are committed
    /// only up to the first event not yet acked, so a failed event holds its partition's
    /// commit until it is redelivered and acked.
    ///
    /// ```
    /// # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
    /// use std::time::Duration;
    /// use broker_core::{BoxError, BrokerExt, SubscribeOptions};
    /// use broker_core::batch::{Batch, BatchOptions};
    ///
    /// let handle = broker
    ///     .subscribe_batches(
    ///         "order.created",
    ///         SubscribeOptions::new().queue("warehouse"),
    ///         BatchOptions::new().max_events(500).max_wait(Duration::from_millis(50)),
    ///         |batch: Batch| async move {
    ///             println!("storing {} orders in one insert", batch.len());
    ///             Ok::<_, BoxError>(())
    ///         },
    ///     )
    ///     .await?;
    /// handle.shutdown().await?;
    /// # Ok(()) }
    /// ```
    fn subscribe_batches<H: BatchHandler>(
        &self,
        pattern: &str,
        options: SubscribeOptions,
        batch_options: BatchOptions,
        handler: H,
    ) -> impl Future<Output = Result<SubscriberHandle>> + Send {
        async move {
            let subscription = self.subscribe(pattern, options).await?;
            Ok(subscriber::spawn_batches(
                subscription,
                Arc::new(handler),
                batch_options,
            ))
        }
    }

    /// Publishes `reply` to the `reply-to` topic of `request`, marked as the answer to it.
    /// See [`Requester`](crate::Requester).
    fn reply(&self, request: &Message, reply: Message) -> impl Future<Output = Result<()>> + Send {
        let target = request.headers().get(names::REPLY_TO).map(str::to_owned);
        let reply = reply.with_header(names::IN_REPLY_TO, request.id().as_str());
        async move {
            let target = target.ok_or_else(|| {
                Error::new(
                    ErrorKind::Publish,
                    "cannot reply: the request has no `reply-to` header",
                )
            })?;
            self.publish(&target, reply).await
        }
    }
}

impl<B: Broker + ?Sized> BrokerExt for B {}
