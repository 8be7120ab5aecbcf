//! The email service: a queue-group subscriber of `user.created` that "sends" (logs) a
//! welcome mail to each new user.

use std::fmt;
use std::sync::Arc;

use broker::codec::Json;
use broker::typed::TypedEvent;
use broker::{Broker, SubscriberHandle};
use example_support::service::ServiceOptions;

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
pub type EmailOptions = ServiceOptions<Topics, WelcomeMail>;

/// Starts an email instance on `broker`. It runs until the handle is shut down or the
/// broker closes. The handler runs under [`ObserveLayer`](broker::observe::ObserveLayer)
/// (trace, correlation id, handler metrics; see [`ServiceOptions::subscribe_typed`]);
/// pass an [`observed`](broker::observe::observed) broker for the delivery and ack
/// counters.
pub async fn run_email(
    broker: Arc<dyn Broker>,
    options: EmailOptions,
) -> broker::Result<SubscriberHandle> {
    let topic = &options.topics.created;
    options
        .subscribe_typed(&broker, topic, "email service", Json, welcome)
        .await
}

/// The defaults: topic `user.created`, queue group [`QUEUE_GROUP`], instance `email`.
pub fn email_options() -> EmailOptions {
    ServiceOptions::named(QUEUE_GROUP)
}

/// The welcome mail for a new user, "sent" (logged) by `instance`. The user id is the
/// event's `user-id` header, or the body's id without one.
fn welcome(instance: &str, event: TypedEvent<UserCreated>) -> WelcomeMail {
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
        instance: instance.to_owned(),
        user_id,
        subject: format!("Welcome, {}!", user.name),
        name: user.name,
        to: user.email,
    };
    tracing::info!(instance, "sending {mail}");
    mail
}
