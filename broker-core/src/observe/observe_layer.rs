//! Every observing handler layer compiled in, as one.

use crate::Handler;
use crate::handler::Layer;

use super::CorrelationLayer;

/// Stacks the handler-side layers compiled in: correlation ids, then trace context (`otel`
/// feature, outermost so the handler's span covers the rest), with metrics (`metrics`
/// feature) innermost.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    #[cfg(feature = "metrics")]
    metrics: super::MetricsLayer,
    #[cfg(not(feature = "metrics"))]
    _labels: (&'static str, String),
}

impl ObserveLayer {
    /// Layers for a handler subscribed to `pattern` on `backend` (the metric labels).
    pub fn new(backend: &'static str, pattern: &str) -> Self {
        ObserveLayer {
            #[cfg(feature = "metrics")]
            metrics: super::MetricsLayer::new(backend, pattern),
            #[cfg(not(feature = "metrics"))]
            _labels: (backend, pattern.to_owned()),
        }
    }
}

#[cfg(feature = "metrics")]
type WithMetrics<H> = super::MetricsHandler<H>;
#[cfg(not(feature = "metrics"))]
type WithMetrics<H> = H;

#[cfg(feature = "otel")]
type Outer<H> = super::TraceContextHandler<super::Correlation<WithMetrics<H>>>;
#[cfg(not(feature = "otel"))]
type Outer<H> = super::Correlation<WithMetrics<H>>;

impl<H: Handler> Layer<H> for ObserveLayer {
    type Handler = Outer<H>;
    fn layer(&self, inner: H) -> Outer<H> {
        #[cfg(feature = "metrics")]
        let inner = self.metrics.layer(inner);
        let inner = CorrelationLayer::new().layer(inner);
        #[cfg(feature = "otel")]
        let inner = super::TraceContextLayer::new().layer(inner);
        inner
    }
}
