//! The gateway: `GET /prods` asks the product service over the broker and waits a
//! bounded time for the answer, as the Go event bus's `Data(timeout)` does.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use broker::codec::{Codec, Json as JsonCodec};
use broker::{Broker, ErrorKind, Message, Requester};

use crate::event::{ProductList, ProductQuery, Topics};

/// How long the gateway waits for an answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP front of the product service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requester: Requester,
    topics: Topics,
    timeout: Duration,
}

/// Why `GET /prods` got no products.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The query string is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nobody answered within the timeout (504, `{"message":"timeout"}`).
    #[error("timeout")]
    Timeout,
    /// The broker failed, or the answer was not understood (502).
    #[error("product service: {}", .0.display_chain())]
    Upstream(broker::Error),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
        };
        (
            status,
            Json(serde_json::json!({ "message": self.to_string() })),
        )
            .into_response()
    }
}

impl Gateway {
    /// A gateway sending queries to `topics.list` on `broker`, waiting up to `timeout` for
    /// each answer. It subscribes its reply inbox here.
    pub async fn new(
        broker: Arc<dyn Broker>,
        topics: Topics,
        timeout: Duration,
    ) -> broker::Result<Self> {
        let requester = Requester::new(broker).await?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                requester,
                topics,
                timeout,
            }),
        })
    }

    /// How long it waits for an answer.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Asks the product service, waiting at most [`timeout`](Gateway::timeout), in a
    /// `gateway.products` span whose trace context the query carries when OpenTelemetry
    /// is on.
    #[tracing::instrument(name = "gateway.products", skip_all, fields(size = query.size))]
    pub async fn products(&self, query: &ProductQuery) -> Result<ProductList, GatewayError> {
        let payload = JsonCodec.encode(query).map_err(GatewayError::Upstream)?;
        let request = Message::new(payload).with_header("content-type", "application/json");
        let reply = self
            .inner
            .requester
            .request(&self.inner.topics.list, request, self.inner.timeout)
            .await
            .map_err(|err| match err.kind() {
                ErrorKind::Timeout | ErrorKind::NoResponders => {
                    tracing::warn!(error = %err, "no product answer in time");
                    GatewayError::Timeout
                }
                _ => GatewayError::Upstream(err),
            })?;
        JsonCodec
            .decode(reply.payload())
            .map_err(GatewayError::Upstream)
    }
}

/// The gateway's HTTP interface: `GET /prods[?size=N]` answers the product list, or
/// `504 {"message":"timeout"}` when no product service answers in time, `502` when the
/// broker fails, `400` for a malformed query.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/prods", get(prods))
        .with_state(gateway)
}

async fn prods(
    State(gateway): State<Gateway>,
    query: Result<Query<ProductQuery>, QueryRejection>,
) -> Result<Json<ProductList>, GatewayError> {
    let Query(query) = query.map_err(|e| GatewayError::BadRequest(e.body_text()))?;
    gateway.products(&query).await.map(Json)
}
