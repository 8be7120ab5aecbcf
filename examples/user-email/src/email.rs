//! The email service: a queue-group subscriber of `user.created` that "sends" (logs) a
//! welcome mail to each new user.

use std::fmt;
use std::sync::Arc;

use broker::codec::Json;
use broker::middleware::DeadLetterLayer;
use broker::observe::ObserveLayer;
use broker::typed::{TypedEvent, typed_handler};
use broker::{
    BoxError, Broker, BrokerExt, HandlerExt, HandlerOptions, SubscribeOptions, SubscriberHandle,
};
use tokio::sync::mpsc;

use crate::event::{Topics, USER_ID_HEADER, UserCreated};

/// The queue group email instances join: each new user gets one mail.
pub const QUEUE_GROUP: &str = "email";

/// A welcome mail, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeMail {
    /// The email instance that sent it.
    pub instance: String,
    /// The user id, from the event's `user-id` header.
    pub user_id: String,
    /// The recipient's name.
    pub name: String,
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
}

impl fmt::Display for WelcomeMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "welcome mail to {} <{}>: \"{}\" (user {})",
            self.name, self.to, self.subject, self.user_id
        )
    }
}

/// How an email instance runs.
#[derive(Debug, Clone)]
pub struct EmailOptions {
    /// Where user events are published.
    pub topics: Topics,
    /// The queue group, [`QUEUE_GROUP`] unless changed.
    pub queue: String,
    /// This instance's name, for logs.
    pub instance: String,
    /// Receives a copy of every mail sent, for tests and demos.
    pub observer: Option<mpsc::UnboundedSender<WelcomeMail>>,
}

impl Default for EmailOptions {
    fn default() -> Self {
        EmailOptions {
            topics: Topics::default(),
            queue: QUEUE_GROUP.to_owned(),
            instance: "email".to_owned(),
            observer: None,
        }
    }
}

impl EmailOptions {
    /// The defaults: topic `user.created`, queue group `email`.
    pub fn new() -> Self {
        EmailOptions::default()
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

    /// Names this instance.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Sends a copy of every mail to `observer`.
    pub fn observe(mut self, observer: mpsc::UnboundedSender<WelcomeMail>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Starts an email instance on `broker`. It runs until the handle is shut down or the
/// broker closes. The handler runs under [`ObserveLayer`] (trace, correlation id,
/// handler metrics); pass an [`observed`](broker::observe::observed) broker for the
/// delivery and ack counters.
pub async fn run_email(
    broker: Arc<dyn Broker>,
    options: EmailOptions,
) -> broker::Result<SubscriberHandle> {
    let EmailOptions {
        topics,
        queue,
        instance,
        observer,
    } = options;
    let instance: Arc<str> = Arc::from(instance);
    // The work happens in the returned future: the layers' span and correlation id cover
    // the future, not the closure's synchronous part.
    let handler = typed_handler(Json, move |event: TypedEvent<UserCreated>| {
        let instance = instance.clone();
        let observer = observer.clone();
        async move {
            let user = event.value;
            let header_id = event.event.message().headers().get(USER_ID_HEADER);
            let user_id = match header_id {
                Some(id) if id != user.id => {
                    tracing::warn!(header = id, body = %user.id, "user ids of header and body differ; using the header");
                    id.to_owned()
                }
                Some(id) => id.to_owned(),
                None => {
                    tracing::warn!(body = %user.id, "no `{USER_ID_HEADER}` header; using the body's id");
                    user.id.clone()
                }
            };
            let mail = WelcomeMail {
                instance: instance.to_string(),
                user_id,
                subject: format!("Welcome, {}!", user.name),
                name: user.name,
                to: user.email,
            };
            tracing::info!(instance = %instance, "sending {mail}");
            if let Some(observer) = &observer {
                let _ = observer.send(mail);
            }
            Ok::<_, BoxError>(())
        }
    })
    // A message that cannot be decoded, or that fails on every attempt, is parked on
    // `<topic>.dead` with the error, instead of being redelivered forever.
    .with(DeadLetterLayer::new(
        broker.clone(),
        format!("{}.dead", topics.created),
    ))
    .with(ObserveLayer::new(
        broker.capabilities().backend,
        &topics.created,
    ));
    let handle = broker
        .subscribe_with(
            &topics.created,
            SubscribeOptions::new().queue(queue.clone()),
            HandlerOptions::new(),
            handler,
        )
        .await?;
    tracing::info!(topic = %topics.created, queue = %queue, "email service subscribed");
    Ok(handle)
}
