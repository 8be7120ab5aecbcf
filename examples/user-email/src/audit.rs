//! The audit log: every user event, through the wildcard `user.>`, in a group of its own
//! so it gets each event as well as the email service does (fan-out).

use std::fmt;
use std::sync::Arc;

use broker::{BoxError, Broker, Event, SubscriberHandle};
use example_support::service::ServiceOptions;

use crate::event::{Topics, USER_ID_HEADER};

/// The queue group of the audit log.
pub const QUEUE_GROUP: &str = "audit";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The concrete topic, such as `user.created`.
    pub topic: String,
    /// The user id from the `user-id` header, if any.
    pub user_id: Option<String>,
    /// The message id.
    pub message_id: String,
    /// The payload, as text.
    pub payload: String,
}

impl fmt::Display for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} user={} ({} bytes)",
            self.topic,
            self.user_id.as_deref().unwrap_or("-"),
            self.payload.len()
        )
    }
}

/// How the audit log runs (its entries do not name the instance).
pub type AuditOptions = ServiceOptions<Topics, AuditEntry>;

/// Starts the audit log on `broker`, subscribed to `topics.all_users`. The handler runs
/// under [`ObserveLayer`](broker::observe::ObserveLayer) (trace, correlation id, handler
/// metrics; see [`ServiceOptions::subscribe`]); pass an
/// [`observed`](broker::observe::observed) broker for the delivery and ack counters.
pub async fn run_audit(
    broker: Arc<dyn Broker>,
    options: AuditOptions,
) -> broker::Result<SubscriberHandle> {
    let observer = options.observer.clone();
    // The work happens in the returned future: the layers' span and correlation id cover
    // the future, not the closure's synchronous part.
    let handler = move |event: Event| {
        let observer = observer.clone();
        async move {
            let message = event.message();
            let entry = AuditEntry {
                topic: event.topic().to_owned(),
                user_id: message.headers().get(USER_ID_HEADER).map(str::to_owned),
                message_id: message.id().to_string(),
                payload: String::from_utf8_lossy(message.payload()).into_owned(),
            };
            tracing::info!("audit: {entry}");
            observer.send(entry);
            Ok::<_, BoxError>(())
        }
    };
    options
        .subscribe(&broker, &options.topics.all_users, "audit log", handler)
        .await
}

/// The defaults: pattern `user.>`, queue group [`QUEUE_GROUP`].
pub fn audit_options() -> AuditOptions {
    ServiceOptions::named(QUEUE_GROUP)
}
