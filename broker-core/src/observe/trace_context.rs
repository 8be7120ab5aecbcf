//! W3C trace context (`traceparent`, `tracestate`) carried in message headers, through
//! `opentelemetry` and `tracing-opentelemetry`.

use futures::FutureExt;
use futures::future::BoxFuture;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::handler::unit_layer;
use crate::{BoxError, Event, Handler, Headers, Message};

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

stamping_broker! {
    /// A broker decorator writing the current `tracing` span's OpenTelemetry context into
    /// each published message as `traceparent` (and `tracestate`). With no OpenTelemetry
    /// layer installed there is no valid context and the message is left as it is.
    pub struct TraceContextBroker => inject_trace_context;
}

/// Writes the current span's trace context into `message`'s headers, when it has a valid one.
fn inject_trace_context(message: &mut Message) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new()
            .inject_context(&context, &mut HeaderInjector(message.headers_mut()));
    }
}

unit_layer! {
    /// A handler layer running the handler in a `handle` span whose parent is the trace
    /// context found in the message headers, so the handler continues the publisher's
    /// trace.
    pub struct TraceContextLayer => TraceContextHandler;
}

impl<H: Handler> Handler for TraceContextHandler<H> {
    fn call(&self, event: Event) -> BoxFuture<'static, std::result::Result<(), BoxError>> {
        let span = tracing::info_span!(
            "handle",
            topic = %event.topic(),
            message_id = %event.message().id(),
            attempt = event.attempt(),
        );
        let headers = event.message().headers();
        if headers.contains("traceparent") {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
            let _ = span.set_parent(parent);
        }
        // In the span both while the handler builds its future and while the future runs.
        let call = span.in_scope(|| self.inner.call(event));
        call.instrument(span).boxed()
    }
}
