//! `GET /health`, for a load balancer or an orchestrator's readiness probe: 200 while the
//! broker is connected and every subscriber of the process runs, 503 with the reasons
//! otherwise; and stopping those subscribers within a deadline.
//!
//! ```no_run
//! # async fn demo(broker: std::sync::Arc<dyn broker::Broker>, handle: broker::SubscriberHandle) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use example_support::health::Readiness;
//!
//! let readiness = Readiness::new(broker);
//! readiness.hold([handle]);
//! let app = axum::Router::new().merge(readiness.router());
//! // … serve `app` …
//! readiness.shutdown_within(Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```
//!
//! The body is one JSON object: `status` (`ok` or `unavailable`), `backend`,
//! `connected`, `lastError` (the broker's last connection error, if any), `subscribers`
//! (how many are held) and, when unavailable, `reasons`:
//!
//! ```text
//! {"status":"unavailable","backend":"nats","connected":false,"lastError":"127.0.0.1:4222: connection lost","subscribers":2,"reasons":["the broker is not connected: 127.0.0.1:4222: connection lost"]}
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use broker::handler::ShutdownReport;
use broker::{Broker, SubscriberHandle};
use serde_json::json;

/// The broker and the subscribers a process's readiness depends on. Clones share them.
#[derive(Debug, Clone)]
pub struct Readiness {
    broker: Arc<dyn Broker>,
    subscribers: Arc<Mutex<Vec<SubscriberHandle>>>,
}

/// What `GET /health` answers: ready or not, and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Whether the broker is connected and every subscriber runs.
    pub ready: bool,
    /// The body (see the [module docs](self)).
    pub body: serde_json::Value,
}

impl Readiness {
    /// Readiness on `broker`, with no subscriber held yet.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Readiness {
            broker,
            subscribers: Arc::default(),
        }
    }

    /// Holds `handles`: the process is ready only while each of them runs, and
    /// [`shutdown_within`](Self::shutdown_within) stops them.
    pub fn hold(&self, handles: impl IntoIterator<Item = SubscriberHandle>) {
        self.subscribers().extend(handles);
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<SubscriberHandle>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The broker's [`health`](Broker::health) and the subscribers' state, now.
    pub fn check(&self) -> Status {
        let health = self.broker.health();
        let (held, stopped): (usize, Vec<String>) = {
            let subscribers = self.subscribers();
            let stopped = subscribers
                .iter()
                .filter(|handle| handle.is_finished())
                .map(|handle| handle.pattern().to_owned())
                .collect();
            (subscribers.len(), stopped)
        };
        let mut reasons = Vec::new();
        if !health.connected {
            reasons.push(format!(
                "the broker is not connected: {}",
                health.last_error.as_deref().unwrap_or("no error reported")
            ));
        }
        reasons.extend(
            stopped
                .iter()
                .map(|pattern| format!("the subscriber of `{pattern}` stopped")),
        );
        let ready = reasons.is_empty();
        let mut body = json!({
            "status": if ready { "ok" } else { "unavailable" },
            "backend": self.broker.capabilities().backend,
            "connected": health.connected,
            "lastError": health.last_error,
            "subscribers": held,
        });
        if !ready {
            body["reasons"] = json!(reasons);
        }
        Status { ready, body }
    }

    /// `GET /health`: [`check`](Self::check)'s body, with 200 when ready and 503 when not.
    pub fn router(&self) -> Router {
        let readiness = self.clone();
        Router::new().route(
            "/health",
            get(move || {
                let status = readiness.check();
                async move {
                    let code = if status.ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (
                        code,
                        [(header::CONTENT_TYPE, "application/json")],
                        status.body.to_string(),
                    )
                }
            }),
        )
    }

    /// Stops every subscriber held, all at once, each finishing what it handles within
    /// `deadline` (see [`SubscriberHandle::shutdown_within`]: the handlers still running
    /// then are cancelled and their messages nacked); logs each one's report and returns
    /// their sum.
    ///
    /// # Errors
    ///
    /// A subscriber's task failed; the others are stopped all the same.
    pub async fn shutdown_within(&self, deadline: Duration) -> anyhow::Result<ShutdownReport> {
        let handles = std::mem::take(&mut *self.subscribers());
        let stopping: Vec<_> = handles
            .into_iter()
            .map(|handle| {
                (
                    handle.pattern().to_owned(),
                    handle.shutdown_within(deadline),
                )
            })
            .collect();
        let mut total = ShutdownReport::default();
        let mut first_error = None;
        for (pattern, stopped) in stopping {
            match stopped.await {
                Ok(report) => {
                    if report.cancelled > 0 {
                        tracing::warn!(%pattern, finished = report.finished, cancelled = report.cancelled, ?deadline, "subscriber stopped; handlers still running at the deadline were cancelled and their messages nacked");
                    } else {
                        tracing::info!(%pattern, finished = report.finished, "subscriber stopped");
                    }
                    total.finished += report.finished;
                    total.cancelled += report.cancelled;
                }
                Err(err) => {
                    let err = anyhow::Error::new(err)
                        .context(format!("stopping the subscriber of `{pattern}`"));
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }
}
