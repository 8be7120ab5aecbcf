//! What the examples' subscribing services share: their options (topics, queue group,
//! instance name, concurrency, an observer for tests and demos), and how an instance
//! subscribes, and where the messages it cannot handle go.
//!
//! ```no_run
//! # async fn demo(broker: std::sync::Arc<dyn broker::Broker>) -> broker::Result<()> {
//! use broker::{BoxError, Event};
//! use example_support::service::ServiceOptions;
//!
//! let options: ServiceOptions<String, String> = ServiceOptions::named("echo").topics("echo".into());
//! let observer = options.observer.clone();
//! let handler = move |event: Event| {
//!     let observer = observer.clone();
//!     async move {
//!         observer.send(event.topic().to_owned());
//!         Ok::<_, BoxError>(())
//!     }
//! };
//! let handle = options.subscribe(&broker, &options.topics, "echo service", handler).await?;
//! # let _ = handle;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use broker::codec::Codec;
use broker::middleware::DeadLetterLayer;
use broker::observe::ObserveLayer;
use broker::typed::{TypedEvent, typed_handler};
use broker::{
    BoxError, Broker, BrokerExt, Handler, HandlerExt, HandlerOptions, SubscribeOptions,
    SubscriberHandle,
};
use tokio::sync::mpsc::UnboundedSender;

/// How one instance of a subscribing service runs; `T` is the example's topics, `Seen`
/// what the service reports to an [`Observer`].
#[derive(Debug, Clone)]
pub struct ServiceOptions<T, Seen> {
    /// Where the service's events are published.
    pub topics: T,
    /// The queue group: the instances in one share the events.
    pub queue: String,
    /// This instance's name, for logs.
    pub instance: String,
    /// How many events it handles at once.
    pub concurrency: usize,
    /// Receives a copy of what the service did, for tests and demos.
    pub observer: Observer<Seen>,
}

impl<T: Default, Seen> ServiceOptions<T, Seen> {
    /// The default topics; queue group and instance both `name`; one event at a time;
    /// no observer.
    pub fn named(name: &str) -> Self {
        ServiceOptions {
            topics: T::default(),
            queue: name.to_owned(),
            instance: name.to_owned(),
            concurrency: 1,
            observer: Observer::none(),
        }
    }
}

impl<T, Seen> ServiceOptions<T, Seen> {
    /// Listens on `topics`.
    pub fn topics(mut self, topics: T) -> Self {
        self.topics = topics;
        self
    }

    /// Joins the queue group `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Names this instance.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Handles up to `n` events at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Sends a copy of what the service does to `observer`.
    pub fn observe(mut self, observer: UnboundedSender<Seen>) -> Self {
        self.observer = Observer(Some(observer));
        self
    }

    /// Starts `count` instances (at least one) with `start`, named `<instance>-1` …
    /// `<instance>-<count>`; `what` names the service in the error.
    ///
    /// # Errors
    ///
    /// An instance cannot subscribe; the ones started before it run on until the broker
    /// closes.
    pub async fn start_instances<F, Fut>(
        self,
        count: usize,
        what: &str,
        mut start: F,
    ) -> anyhow::Result<Vec<SubscriberHandle>>
    where
        Self: Clone,
        F: FnMut(Self) -> Fut,
        Fut: Future<Output = broker::Result<SubscriberHandle>>,
    {
        let mut handles = Vec::with_capacity(count);
        for n in 1..=count.max(1) {
            let options = self.clone().instance(format!("{}-{n}", self.instance));
            let handle = start(options)
                .await
                .with_context(|| format!("cannot subscribe {what}"))?;
            handles.push(handle);
        }
        Ok(handles)
    }

    /// Subscribes `handler` to `topic` as this instance: in its queue group, handling
    /// [`concurrency`](Self::concurrency) events at once, under [`ObserveLayer`] (the
    /// handler's span continues the event's trace, the event's correlation id is current
    /// while it runs, and its duration is recorded); then logs `<what> subscribed`.
    ///
    /// Pass an [`observed`](broker::observe::observed) broker (as
    /// [`plugin::connect`](crate::plugin::connect) returns) for the delivery and ack
    /// counters.
    ///
    /// # Errors
    ///
    /// The broker refuses the subscription.
    pub async fn subscribe<H: Handler>(
        &self,
        broker: &Arc<dyn Broker>,
        topic: &str,
        what: &str,
        handler: H,
    ) -> broker::Result<SubscriberHandle> {
        let handler = handler.with(ObserveLayer::new(broker.capabilities().backend, topic));
        let handle = broker
            .subscribe_with(
                topic,
                SubscribeOptions::new().queue(self.queue.clone()),
                HandlerOptions::new().concurrency(self.concurrency),
                handler,
            )
            .await?;
        tracing::info!(topic = %topic, queue = %self.queue, "{what} subscribed");
        Ok(handle)
    }

    /// Subscribes, as [`subscribe`](Self::subscribe) does, a handler that decodes each
    /// event with `codec` and gives it to `handle` with this instance's name; what
    /// `handle` returns goes to the observer. A message that cannot be decoded, or that
    /// fails on every attempt, goes to the [`dead_letters`] of `topic`.
    ///
    /// # Errors
    ///
    /// The broker refuses the subscription.
    pub async fn subscribe_typed<E, C, F>(
        &self,
        broker: &Arc<dyn Broker>,
        topic: &str,
        what: &str,
        codec: C,
        handle: F,
    ) -> broker::Result<SubscriberHandle>
    where
        E: Send + 'static,
        C: Codec<E>,
        F: Fn(&str, TypedEvent<E>) -> Seen + Send + Sync + 'static,
        Seen: Send + 'static,
    {
        let instance: Arc<str> = Arc::from(self.instance.as_str());
        let observer = self.observer.clone();
        let handle = Arc::new(handle);
        // The work happens in the returned future: the layers' span and correlation id
        // cover the future, not the closure's synchronous part.
        let handler = typed_handler(codec, move |event: TypedEvent<E>| {
            let instance = instance.clone();
            let observer = observer.clone();
            let handle = handle.clone();
            async move {
                observer.send(handle(&instance, event));
                Ok::<_, BoxError>(())
            }
        })
        .with(dead_letters(broker, topic));
        self.subscribe(broker, topic, what, handler).await
    }
}

/// The dead-letter layer of a service listening on `topic`: a message that cannot be
/// decoded, or that fails on every attempt, is parked on `<topic>.dead` with the error,
/// instead of being redelivered forever.
pub fn dead_letters(broker: &Arc<dyn Broker>, topic: &str) -> DeadLetterLayer {
    DeadLetterLayer::new(broker.clone(), format!("{topic}.dead"))
}

/// Where a service sends a copy of what it did, when anyone asked for it.
#[derive(Debug)]
pub struct Observer<T>(Option<UnboundedSender<T>>);

impl<T> Clone for Observer<T> {
    fn clone(&self) -> Self {
        Observer(self.0.clone())
    }
}

impl<T> Observer<T> {
    /// Nobody observes.
    pub fn none() -> Self {
        Observer(None)
    }

    /// Sends `seen` to the observer, if any. Nobody listening any more is not the
    /// service's failure.
    pub fn send(&self, seen: T) {
        if let Some(observer) = &self.0 {
            let _ = observer.send(seen);
        }
    }
}
