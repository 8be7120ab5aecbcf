//! The example's AsyncAPI document, served at `GET /asyncapi.json` on the user port.

use broker::asyncapi::AsyncApi;
use broker::codec::Json;

use crate::event::{Topics, UserCreated, UserDeleted};

/// What the user service publishes, the email service receives (in its queue group) and
/// the audit log receives on `user.>`, on `topics`, with the servers of `broker_url`
/// (secrets left out).
///
/// # Errors
///
/// `broker_url` has no scheme or host.
pub fn document(topics: &Topics, broker_url: &str) -> broker::Result<AsyncApi> {
    Ok(AsyncApi::new("user-email", env!("CARGO_PKG_VERSION"))
        .description(
            "The user service publishes `user.created` and `user.deleted` (JSON); email \
             instances in a queue group send a welcome mail per new user; the audit log \
             receives every user event through the pattern `user.>`.",
        )
        .server_from_url(broker_url)?
        .publishes::<UserCreated>(&topics.created, Json)
        .publishes::<UserDeleted>(&topics.deleted, Json)
        .receives::<UserCreated>(&topics.created, Json, Some(crate::email::QUEUE_GROUP))
        .receives_any(&topics.all_users, Some(crate::audit::QUEUE_GROUP)))
}
