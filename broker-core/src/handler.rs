//! Message handlers, as in go-micro's `RegisterSubscriber`, and the layers that wrap them.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::delivery::DeliveryInfo;
use crate::{BoxError, Error, Message};

pub use crate::subscriber::ShutdownReport;

/// What a handler gets: the message, the concrete topic and the delivery attempt.
#[derive(Debug, Clone)]
pub struct Event {
    topic: Arc<str>,
    message: Message,
    attempt: u32,
    partition: Option<i32>,
    defect: Option<Arc<Error>>,
}

impl Event {
    /// An event for `message` received on `topic`, at `attempt` (1 for the first).
    pub fn new(topic: impl Into<Arc<str>>, message: Message, attempt: u32) -> Self {
        Event {
            topic: topic.into(),
            message,
            attempt: attempt.max(1),
            partition: None,
            defect: None,
        }
    }

    pub(crate) fn from_delivery(message: Message, info: DeliveryInfo) -> Self {
        Event {
            topic: info.topic,
            message,
            attempt: info.attempt.unwrap_or(1),
            partition: info.partition,
            defect: info.defect,
        }
    }

    /// The concrete topic the message was published to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message out.
    pub fn into_message(self) -> Message {
        self.message
    }

    /// The delivery attempt: 1 for the first, or when the backend does not count.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The partition, on partitioned backends.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// What the backend could not read of this message, if anything: a message that
    /// another client wrote in a shape the backend cannot carry whole (for example a NATS
    /// header block that does not parse) arrives with what could be read, and this error
    /// (of kind [`Codec`](crate::ErrorKind::Codec)) says what is missing. Typed handlers
    /// and the dead-letter layer treat such a message as a permanent failure.
    pub fn defect(&self) -> Option<&Error> {
        self.defect.as_deref()
    }
}

/// Handles events. `Ok` acks the message; `Err` (or a panic) nacks it.
///
/// Any `Fn(Event) -> impl Future<Output = Result<(), E>>` is a handler:
///
/// ```
/// use broker_core::{BoxError, Event, Handler};
///
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|event: Event| async move {
///     println!("{} bytes on {}", event.message().payload().len(), event.topic());
///     Ok::<_, BoxError>(())
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        (self)(event).map(|r| r.map_err(Into::into)).boxed()
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).call(event)
    }
}

impl Handler for Box<dyn Handler> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).call(event)
    }
}

/// Wraps a handler in another, as tower's `Layer` wraps a service.
pub trait Layer<H> {
    /// The wrapped handler.
    type Handler: Handler;
    /// Wraps `inner`.
    fn layer(&self, inner: H) -> Self::Handler;
}

/// Defines a handler layer that holds nothing, `$layer` (with `new()`, and `Default`),
/// and the handler it builds, `$handler<H>`, which keeps the wrapped handler in its
/// `inner` field; what the layer does is the caller's `Handler` impl for `$handler<H>`.
/// The attributes given (its docs) go on the layer.
macro_rules! unit_layer {
    ($(#[$attr:meta])* pub struct $layer:ident => $handler:ident;) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $layer;

        impl $layer {
            /// The layer.
            pub fn new() -> Self {
                $layer
            }
        }

        impl<H: $crate::Handler> $crate::handler::Layer<H> for $layer {
            type Handler = $handler<H>;
            fn layer(&self, inner: H) -> $handler<H> {
                $handler { inner }
            }
        }

        #[doc = concat!("The handler built by [`", stringify!($layer), "`].")]
        #[derive(Debug, Clone)]
        pub struct $handler<H> {
            inner: H,
        }
    };
}
pub(crate) use unit_layer;

/// Adds [`with`](HandlerExt::with) to every handler.
pub trait HandlerExt: Handler + Sized {
    /// Wraps this handler in `layer`. The last layer added is the outermost:
    /// `h.with(A).with(B)` runs B, which calls A, which calls `h`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use broker_core::{BoxError, Event, HandlerExt};
    /// use broker_core::middleware::{RecoverLayer, TimeoutLayer};
    ///
    /// let handler = (|_event: Event| async { Ok::<_, BoxError>(()) })
    ///     .with(RecoverLayer::new())
    ///     .with(TimeoutLayer::new(Duration::from_secs(5)));
    /// # let _ = handler;
    /// ```
    fn with<L: Layer<Self>>(self, layer: L) -> L::Handler {
        layer.layer(self)
    }

    /// Boxes the handler, to store handlers of different types together.
    fn boxed(self) -> Box<dyn Handler> {
        Box::new(self)
    }
}

impl<H: Handler> HandlerExt for H {}

/// A handler error that says which kind of failure it was, for errors built from text.
#[derive(Debug)]
pub struct HandlerError(pub String);

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HandlerError {}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
