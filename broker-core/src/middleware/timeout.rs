use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::{BoxError, Error, ErrorKind, Event, Handler, Layer};

/// Fails an event whose handler takes longer than a limit, with an
/// [`ErrorKind::Timeout`] error.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Handlers get `limit` per event.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<H: Handler> Layer<H> for TimeoutLayer {
    type Handler = Timeout<H>;
    fn layer(&self, inner: H) -> Timeout<H> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The handler built by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<H> {
    inner: H,
    limit: Duration,
}

impl<H: Handler> Handler for Timeout<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        let limit = self.limit;
        let topic = event.topic().to_owned();
        tokio::time::timeout(limit, self.inner.call(event))
            .map(move |outcome| match outcome {
                Ok(result) => result,
                Err(_) => Err(Box::new(Error::new(
                    ErrorKind::Timeout,
                    format!("handler for `{topic}` took longer than {limit:?}"),
                )) as BoxError),
            })
            .boxed()
    }
}
