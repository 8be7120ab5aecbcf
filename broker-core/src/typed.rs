//! Typed publishing and handling over a [`Codec`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::codec::Codec;
use crate::headers::names;
use crate::subject::validate_topic;
use crate::{BoxError, Broker, Error, ErrorKind, Event, Handler, Message, Result};

/// Publishes values of type `T` to one topic, encoded by `C`, with a `content-type` header.
///
/// ```
/// # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
/// use broker_core::typed::TypedPublisher;
/// use broker_core::codec::Json;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct UserCreated { id: u64 }
///
/// let publisher = TypedPublisher::new(broker, "user.created", Json)?;
/// publisher.publish(&UserCreated { id: 1 }).await?;
/// # Ok(()) }
/// ```
pub struct TypedPublisher<T, C> {
    broker: Arc<dyn Broker>,
    topic: String,
    codec: C,
    _type: PhantomData<fn(&T)>,
}

impl<T, C: Codec<T>> TypedPublisher<T, C> {
    /// A publisher of `T` to `topic` (checked here, once).
    pub fn new(broker: Arc<dyn Broker>, topic: impl Into<String>, codec: C) -> Result<Self> {
        let topic = topic.into();
        validate_topic(&topic)?;
        Ok(TypedPublisher {
            broker,
            topic,
            codec,
            _type: PhantomData,
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Encodes and publishes `value`.
    pub async fn publish(&self, value: &T) -> Result<()> {
        self.publish_with(value, Message::new(bytes::Bytes::new()))
            .await
    }

    /// Encodes `value` into `template`'s payload (keeping its id, key and headers) and
    /// publishes it.
    pub async fn publish_with(&self, value: &T, template: Message) -> Result<()> {
        let payload = self.codec.encode(value)?;
        let message = Message::from_parts(
            template.id().clone(),
            template.key_bytes().cloned(),
            template.headers().clone(),
            payload,
        )
        .with_header(names::CONTENT_TYPE, self.codec.content_type());
        self.broker.publish(&self.topic, message).await
    }
}

impl<T, C> fmt::Debug for TypedPublisher<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPublisher")
            .field("topic", &self.topic)
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

/// An event whose payload was decoded into a `T`.
#[derive(Debug, Clone)]
pub struct TypedEvent<T> {
    /// The decoded value.
    pub value: T,
    /// The event it came from (topic, headers, attempt).
    pub event: Event,
}

/// Decodes the payload of `event` with `codec`, checking its `content-type` header when
/// there is one.
pub fn decode_event<T, C: Codec<T>>(codec: &C, event: &Event) -> Result<T> {
    if let Some(defect) = event.defect() {
        return Err(undecodable(
            event,
            format_args!("could not be read whole: {}", defect.message()),
        ));
    }
    if event.message().is_tombstone() {
        return Err(undecodable(
            event,
            "is a tombstone: it has no value to decode",
        ));
    }
    if let Some(content_type) = event.message().headers().get_value(names::CONTENT_TYPE) {
        let content_type = content_type.to_str().ok_or_else(|| {
            undecodable(
                event,
                format_args!("has a content-type that is not text: {content_type:?}"),
            )
        })?;
        let expected = codec.content_type();
        let base = content_type.split(';').next().unwrap_or_default().trim();
        if !base.eq_ignore_ascii_case(expected) {
            return Err(undecodable(
                event,
                format_args!("has content-type `{content_type}`, expected `{expected}`"),
            ));
        }
    }
    codec.decode(event.message().payload())
}

/// A codec error for the message of `event`, `what` saying why it cannot be decoded
/// ("is a tombstone: …").
fn undecodable(event: &Event, what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::Codec,
        format!(
            "message {} on `{}` {what}",
            event.message().id(),
            event.topic()
        ),
    )
}

/// A handler of `T`s: it decodes each event with `codec` and calls `f` with the value. A
/// payload that cannot be decoded fails the event with an
/// [`ErrorKind::Codec`] error (so retry and dead-letter layers see
/// it); `f` is not called.
///
/// ```
/// use broker_core::{BoxError, Handler};
/// use broker_core::typed::{TypedEvent, typed_handler};
/// use broker_core::codec::Json;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct UserCreated { id: u64 }
///
/// let handler = typed_handler(Json, |event: TypedEvent<UserCreated>| async move {
///     println!("welcome, user {}", event.value.id);
///     Ok::<_, BoxError>(())
/// });
/// # fn is_handler(_: impl Handler) {}
/// # is_handler(handler);
/// ```
pub fn typed_handler<T, C, F, Fut, E>(codec: C, f: F) -> TypedHandler<T, C, F>
where
    T: Send + 'static,
    C: Codec<T>,
    F: Fn(TypedEvent<T>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    TypedHandler {
        codec,
        f,
        _type: PhantomData,
    }
}

/// The handler built by [`typed_handler`].
pub struct TypedHandler<T, C, F> {
    codec: C,
    f: F,
    _type: PhantomData<fn() -> T>,
}

impl<T, C, F, Fut, E> Handler for TypedHandler<T, C, F>
where
    T: Send + 'static,
    C: Codec<T>,
    F: Fn(TypedEvent<T>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        match decode_event(&self.codec, &event) {
            Ok(value) => (self.f)(TypedEvent { value, event })
                .map(|r| r.map_err(Into::into))
                .boxed(),
            Err(err) => futures::future::ready(Err(err.into())).boxed(),
        }
    }
}

impl<T, C, F> TypedHandler<T, C, F> {
    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }
}

impl<T, C, F> fmt::Debug for TypedHandler<T, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedHandler")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}
