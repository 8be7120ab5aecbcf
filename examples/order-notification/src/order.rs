//! The order service: `POST /order/submit` checks and takes stock, records the order and
//! publishes [`SubmitRequest`] to `notification.submit`.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use broker::codec::Protobuf;
use broker::typed::TypedPublisher;
use broker::{Broker, Message};
use serde::{Deserialize, Serialize};

use crate::event::{SubmitRequest, Topics};
use crate::snowflake::Snowflake;
use crate::store::{Order, OrderStore, Product, ProductStore, StockError};

/// The body of `POST /order/submit`: `{"productId":1,"count":1,"uid":1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitOrder {
    /// The product to buy.
    pub product_id: i64,
    /// How many (at least 1).
    pub count: u32,
    /// The buyer.
    pub uid: i64,
}

/// The answer of `POST /order/submit`, on success and on failure alike:
/// `{"code":"200","msg":"order submitted","orderId":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    /// The HTTP status, as a string (go-micro style).
    pub code: String,
    /// What happened.
    pub msg: String,
    /// The new order's id, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// Why an order was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is malformed (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The product is unknown (HTTP 404) or out of stock (HTTP 400).
    #[error(transparent)]
    Stock(StockError),
    /// The event could not be published; the order was undone (HTTP 503).
    #[error("order not submitted: cannot publish the notification: {}", .0.display_chain())]
    Publish(broker::Error),
}

impl SubmitError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SubmitError::BadRequest(_) | SubmitError::Stock(StockError::Insufficient { .. }) => {
                StatusCode::BAD_REQUEST
            }
            SubmitError::Stock(StockError::UnknownProduct(_)) => StatusCode::NOT_FOUND,
            SubmitError::Publish(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for SubmitError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = SubmitResponse {
            code: status.as_u16().to_string(),
            msg: self.to_string(),
            order_id: None,
        };
        (status, Json(body)).into_response()
    }
}

/// The order service: products, orders, an id generator and the event publisher. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct OrderService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    products: ProductStore,
    orders: OrderStore,
    ids: Snowflake,
    publisher: TypedPublisher<SubmitRequest, Protobuf>,
}

impl OrderService {
    /// An order service selling `products`, publishing to `topics.submit` on `broker`,
    /// with order ids from `ids`.
    pub fn new(
        broker: Arc<dyn Broker>,
        topics: &Topics,
        products: ProductStore,
        ids: Snowflake,
    ) -> broker::Result<Self> {
        let publisher = TypedPublisher::new(broker, topics.submit.clone(), Protobuf)?;
        Ok(OrderService {
            inner: Arc::new(Inner {
                products,
                orders: OrderStore::new(),
                ids,
                publisher,
            }),
        })
    }

    /// The products and their stock.
    pub fn products(&self) -> &ProductStore {
        &self.inner.products
    }

    /// The orders taken.
    pub fn orders(&self) -> &OrderStore {
        &self.inner.orders
    }

    /// Submits an order: takes the stock, records the order, publishes the event. When
    /// the event cannot be published the order is undone and the stock put back.
    ///
    /// Runs in an `order.submit` span: with OpenTelemetry on, the event carries its trace
    /// context and the notification continues the trace.
    #[tracing::instrument(
        name = "order.submit",
        skip_all,
        fields(uid = request.uid, product_id = request.product_id, count = request.count)
    )]
    pub async fn submit(&self, request: SubmitOrder) -> Result<Order, SubmitError> {
        if request.count == 0 {
            return Err(SubmitError::BadRequest("count must be at least 1".into()));
        }
        let count = i32::try_from(request.count).map_err(|_| {
            SubmitError::BadRequest(format!("count {} is too large", request.count))
        })?;
        let product: Product = self
            .inner
            .products
            .take(request.product_id, request.count)
            .map_err(SubmitError::Stock)?;
        let order = Order {
            order_id: self.inner.ids.next_id().to_string(),
            product_id: request.product_id,
            count: request.count,
            uid: request.uid,
        };
        self.inner.orders.insert(order.clone());
        let event = SubmitRequest {
            order_id: order.order_id.clone(),
            product_id: order.product_id,
            count,
            uid: order.uid,
            product_name: product.name,
        };
        // The typed publisher fills in the payload. Keyed by user: one user's orders stay in order on partitioned backends.
        let template = Message::new("")
            .with_key(order.uid.to_string())
            .with_header("order-id", order.order_id.as_str());
        if let Err(err) = self.inner.publisher.publish_with(&event, template).await {
            self.inner.orders.remove(&order.order_id);
            self.inner.products.put_back(order.product_id, order.count);
            tracing::error!(order_id = %order.order_id, error = %err.display_chain(), "publishing the order failed; order undone");
            return Err(SubmitError::Publish(err));
        }
        tracing::info!(
            order_id = %order.order_id,
            uid = order.uid,
            product_id = order.product_id,
            count = order.count,
            "order submitted"
        );
        Ok(order)
    }
}

/// The order service's HTTP interface:
///
/// - `POST /order/submit` with `{"productId":1,"count":1,"uid":1}`: `200
///   {"code":"200","msg":"order submitted","orderId":"…"}`, or `400` when the stock is
///   insufficient or the body malformed, `404` for an unknown product, `503` when the
///   event cannot be published.
/// - `GET /products`: the products and their stock.
pub fn router(service: OrderService) -> Router {
    Router::new()
        .route("/order/submit", post(submit))
        .route("/products", get(products))
        .with_state(service)
}

async fn submit(
    State(service): State<OrderService>,
    body: Result<Json<SubmitOrder>, JsonRejection>,
) -> Result<Json<SubmitResponse>, SubmitError> {
    let Json(request) = body.map_err(|e| SubmitError::BadRequest(e.body_text()))?;
    let order = service.submit(request).await?;
    Ok(Json(SubmitResponse {
        code: "200".into(),
        msg: "order submitted".into(),
        order_id: Some(order.order_id),
    }))
}

async fn products(State(service): State<OrderService>) -> Json<Vec<Product>> {
    Json(service.products().list())
}
