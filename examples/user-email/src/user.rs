//! The user service: `POST /users` creates a user and publishes [`UserCreated`];
//! `DELETE /users/{id}` deletes one and publishes [`UserDeleted`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use broker::codec::{Codec, Json as JsonCodec};
use broker::typed::TypedPublisher;
use broker::{Broker, Message};
use serde::{Deserialize, Serialize};

use crate::event::{Topics, USER_ID_HEADER, UserCreated, UserDeleted};

/// The body of `POST /users`: `{"name":"Ada","email":"ada@example.com"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    /// The user's name.
    pub name: String,
    /// The user's e-mail address.
    pub email: String,
}

/// A user, as `POST /users` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The id (a UUIDv7).
    pub id: String,
    /// The name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
}

/// Why a request failed; answered as `{"message":"…"}`.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The e-mail address is taken (409).
    #[error("{0} is already registered")]
    EmailTaken(String),
    /// No such user (404).
    #[error("no user {0}")]
    NotFound(String),
    /// The event could not be published; nothing was changed (503).
    #[error("cannot publish the user event: {}", .0.display_chain())]
    Publish(broker::Error),
}

impl UserError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            UserError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UserError::EmailTaken(_) => StatusCode::CONFLICT,
            UserError::NotFound(_) => StatusCode::NOT_FOUND,
            UserError::Publish(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for UserError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// The user service: its users and its publishers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UserService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    users: Mutex<BTreeMap<String, User>>,
    created: TypedPublisher<UserCreated, JsonCodec>,
    deleted: TypedPublisher<UserDeleted, JsonCodec>,
}

impl UserService {
    /// A user service publishing to `topics` on `broker`.
    pub fn new(broker: Arc<dyn Broker>, topics: &Topics) -> broker::Result<Self> {
        Ok(UserService {
            inner: Arc::new(Inner {
                users: Mutex::default(),
                created: TypedPublisher::new(broker.clone(), topics.created.clone(), JsonCodec)?,
                deleted: TypedPublisher::new(broker, topics.deleted.clone(), JsonCodec)?,
            }),
        })
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users().len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users().is_empty()
    }

    /// Creates a user and publishes `user.created`, with the id in the `user-id` header.
    /// When the event cannot be published the user is not kept. Runs in a `user.create`
    /// span, whose trace context the event carries when OpenTelemetry is on.
    #[tracing::instrument(name = "user.create", skip_all)]
    pub async fn create(&self, new: NewUser) -> Result<User, UserError> {
        let name = new.name.trim().to_owned();
        let email = new.email.trim().to_owned();
        if name.is_empty() {
            return Err(UserError::BadRequest("name is empty".into()));
        }
        if !email.contains('@') {
            return Err(UserError::BadRequest(format!(
                "`{email}` is not an e-mail address"
            )));
        }
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            email,
        };
        {
            let mut users = self.users();
            if users
                .values()
                .any(|u| u.email.eq_ignore_ascii_case(&user.email))
            {
                return Err(UserError::EmailTaken(user.email));
            }
            users.insert(user.id.clone(), user.clone());
        }
        let event = UserCreated {
            id: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
        };
        if let Err(err) = publish_about(&self.inner.created, &event, &user.id).await {
            self.users().remove(&user.id);
            tracing::error!(user_id = %user.id, error = %err.display_chain(), "publishing user.created failed; user not kept");
            return Err(UserError::Publish(err));
        }
        tracing::info!(user_id = %user.id, email = %user.email, "user created");
        Ok(user)
    }

    /// Deletes a user and publishes `user.deleted`, in a `user.delete` span.
    #[tracing::instrument(name = "user.delete", skip(self))]
    pub async fn delete(&self, id: &str) -> Result<User, UserError> {
        let user = self
            .users()
            .remove(id)
            .ok_or_else(|| UserError::NotFound(id.to_owned()))?;
        let event = UserDeleted {
            id: user.id.clone(),
        };
        if let Err(err) = publish_about(&self.inner.deleted, &event, &user.id).await {
            self.users().insert(user.id.clone(), user);
            return Err(UserError::Publish(err));
        }
        tracing::info!(user_id = %user.id, "user deleted");
        Ok(user)
    }

    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, User>> {
        // Every change is one map operation, so a panic cannot leave the map half-changed.
        self.inner
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes `event` about the user `user_id`: keyed by the user, its id in the
/// `user-id` header.
async fn publish_about<T>(
    publisher: &TypedPublisher<T, JsonCodec>,
    event: &T,
    user_id: &str,
) -> broker::Result<()>
where
    JsonCodec: Codec<T>,
{
    let template = Message::new("")
        .with_key(user_id)
        .with_header(USER_ID_HEADER, user_id);
    publisher.publish_with(event, template).await
}

/// The user service's HTTP interface:
///
/// - `POST /users` with `{"name":"Ada","email":"ada@example.com"}`: `201` and the user;
///   `400` for a malformed body, `409` for an address already registered.
/// - `DELETE /users/{id}`: `204`, or `404`.
///
/// Errors answer `{"message":"…"}`.
pub fn router(service: UserService) -> Router {
    Router::new()
        .route("/users", post(create))
        .route("/users/{id}", delete(remove))
        .with_state(service)
}

async fn create(
    State(service): State<UserService>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), UserError> {
    let Json(new) = body.map_err(|e| UserError::BadRequest(e.body_text()))?;
    let user = service.create(new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn remove(
    State(service): State<UserService>,
    Path(id): Path<String>,
) -> Result<StatusCode, UserError> {
    service.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
