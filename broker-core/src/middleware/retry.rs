use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::handler::Layer;
use crate::{BoxError, Event, Handler};

/// Calls the handler again when it fails, up to `retries` more times, waiting with
/// exponential backoff between tries (by default 100 ms, doubling, at most 10 s).
///
/// ```
/// use std::time::Duration;
/// use broker_core::middleware::RetryLayer;
///
/// let layer = RetryLayer::new(3)
///     .backoff(Duration::from_millis(50), 2.0)
///     .max_backoff(Duration::from_secs(1));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    retries: u32,
    initial: Duration,
    multiplier: f64,
    max: Duration,
}

impl RetryLayer {
    /// Up to `retries` retries after the first try.
    pub fn new(retries: u32) -> Self {
        RetryLayer {
            retries,
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(10),
        }
    }

    /// The first wait, and the factor each later wait grows by (at least 1).
    pub fn backoff(mut self, initial: Duration, multiplier: f64) -> Self {
        self.initial = initial;
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// The longest wait.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    fn delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        self.initial.mul_f64(factor.min(1e9)).min(self.max)
    }
}

impl<H: Handler> Layer<H> for RetryLayer {
    type Handler = Retry<H>;
    fn layer(&self, inner: H) -> Retry<H> {
        Retry {
            inner: Arc::new(inner),
            policy: *self,
        }
    }
}

/// The handler built by [`RetryLayer`].
#[derive(Debug)]
pub struct Retry<H> {
    inner: Arc<H>,
    policy: RetryLayer,
}

impl<H: Handler> Handler for Retry<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, Result<(), BoxError>> {
        let inner = self.inner.clone();
        let policy = self.policy;
        async move {
            let mut retry = 0;
            loop {
                match inner.call(event.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(err) if retry >= policy.retries => return Err(err),
                    Err(err) => {
                        retry += 1;
                        let wait = policy.delay(retry);
                        tracing::debug!(error = %err, retry, ?wait, "handler failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryLayer::new(5)
            .backoff(Duration::from_millis(10), 2.0)
            .max_backoff(Duration::from_millis(50));
        let waits: Vec<_> = (1..=5).map(|r| p.delay(r).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 50, 50]);
    }
}
