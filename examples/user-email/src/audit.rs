//! The audit log: every user event, through the wildcard `user.>`, in a group of its own
//! so it gets each event as well as the email service does (fan-out).

use std::fmt;
use std::sync::Arc;

use broker::observe::ObserveLayer;
use broker::{
    BoxError, Broker, BrokerExt, Event, HandlerExt, HandlerOptions, SubscribeOptions,
    SubscriberHandle,
};
use tokio::sync::mpsc;

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

/// How the audit log runs.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The topics; the audit log subscribes to `topics.all_users`.
    pub topics: Topics,
    /// The queue group, [`QUEUE_GROUP`] unless changed.
    pub queue: String,
    /// Receives a copy of every entry, for tests and demos.
    pub observer: Option<mpsc::UnboundedSender<AuditEntry>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            topics: Topics::default(),
            queue: QUEUE_GROUP.to_owned(),
            observer: None,
        }
    }
}

impl AuditOptions {
    /// The defaults: pattern `user.>`, queue group `audit`.
    pub fn new() -> Self {
        AuditOptions::default()
    }

    /// Listens on `topics`.
    pub fn topics(mut self, topics: Topics) -> Self {
        self.topics = topics;
        self
    }

    /// Joins the queue group `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sends a copy of every entry to `observer`.
    pub fn observe(mut self, observer: mpsc::UnboundedSender<AuditEntry>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Starts the audit log on `broker`. The handler runs under [`ObserveLayer`] (trace,
/// correlation id, handler metrics); pass an [`observed`](broker::observe::observed)
/// broker for the delivery and ack counters.
pub async fn run_audit(
    broker: Arc<dyn Broker>,
    options: AuditOptions,
) -> broker::Result<SubscriberHandle> {
    let AuditOptions {
        topics,
        queue,
        observer,
    } = options;
    let layer = ObserveLayer::new(broker.capabilities().backend, &topics.all_users);
    // The work happens in the returned future: the layers' span and correlation id cover
    // the future, not the closure's synchronous part.
    let handler = (move |event: Event| {
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
            if let Some(observer) = &observer {
                let _ = observer.send(entry);
            }
            Ok::<_, BoxError>(())
        }
    })
    .with(layer);
    let handle = broker
        .subscribe_with(
            &topics.all_users,
            SubscribeOptions::new().queue(queue.clone()),
            HandlerOptions::new(),
            handler,
        )
        .await?;
    tracing::info!(pattern = %topics.all_users, queue = %queue, "audit log subscribed");
    Ok(handle)
}
