//! Request/reply over publish and subscribe.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::headers::names;
use crate::{Broker, Error, ErrorKind, Message, Result, SubscribeOptions};

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Message>>>>;

/// Sends requests and waits for their replies, on any backend.
///
/// It subscribes once to a private inbox topic (on a backend whose topics outlive their
/// use, such as Kafka, to the one inbox all requesters share, [`Requester::SHARED_INBOX`], and
/// keeps the replies to its own requests). Each request is published with a
/// `reply-to` header naming that inbox; a responder answers with
/// [`BrokerExt::reply`](crate::BrokerExt::reply), which marks the reply with the request's
/// id. On NATS the `reply-to` header travels as the native reply subject, so NATS's own
/// request/reply interoperates.
///
/// ```
/// # async fn demo(broker: std::sync::Arc<dyn broker_core::Broker>) -> broker_core::Result<()> {
/// use std::time::Duration;
/// use broker_core::{ErrorKind, Message, Requester};
///
/// let requester = Requester::new(broker.clone()).await?;
/// match requester.request("product.list", Message::new("{}"), Duration::from_secs(2)).await {
///     Ok(reply) => println!("{} bytes", reply.payload().len()),
///     Err(e) if e.kind() == ErrorKind::Timeout => println!(r#"{{"message":"timeout"}}"#),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub struct Requester {
    broker: Arc<dyn Broker>,
    inbox: String,
    pending: Pending,
    listener: JoinHandle<()>,
}

impl Requester {
    /// The inbox topic that the requesters of a backend whose topics outlive their use
    /// share.
    pub const SHARED_INBOX: &'static str = "_inbox.shared";

    /// Subscribes a fresh inbox on `broker`.
    pub async fn new(broker: Arc<dyn Broker>) -> Result<Self> {
        let inbox = if broker.capabilities().disposable_topics {
            format!("_inbox.{}", uuid::Uuid::now_v7().simple())
        } else {
            Requester::SHARED_INBOX.to_owned()
        };
        let mut replies = broker.subscribe(&inbox, SubscribeOptions::new()).await?;
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        let listener = tokio::spawn(async move {
            while let Some(item) = replies.next().await {
                let Ok(delivery) = item else { continue };
                let message = delivery.message().clone();
                drop(delivery);
                let Some(request_id) = message.headers().get(names::IN_REPLY_TO) else {
                    tracing::debug!("reply without `in-reply-to` header ignored");
                    continue;
                };
                let waiter = routes
                    .lock()
                    .map(|mut map| map.remove(request_id))
                    .unwrap_or(None);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(message);
                }
            }
        });
        Ok(Requester {
            broker,
            inbox,
            pending,
            listener,
        })
    }

    /// The inbox topic replies come to.
    pub fn inbox(&self) -> &str {
        &self.inbox
    }

    /// Publishes `request` to `topic` and waits up to `timeout` for the reply. With no
    /// responder, or a slow one, it fails with [`ErrorKind::Timeout`].
    pub async fn request(
        &self,
        topic: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message> {
        let request = request.with_header(names::REPLY_TO, self.inbox.as_str());
        let id = request.id().as_str().to_owned();
        let (tx, rx) = oneshot::channel();
        self.lock()?.insert(id.clone(), tx);
        let outcome = tokio::time::timeout(timeout, async {
            self.broker.publish(topic, request).await?;
            rx.await
                .map_err(|_| Error::closed("the requester's inbox subscription"))
        })
        .await;
        self.lock()?.remove(&id);
        match outcome {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no reply on `{topic}` within {timeout:?}"),
            )),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Message>>>> {
        self.pending
            .lock()
            .map_err(|_| Error::new(ErrorKind::Closed, "the requester is poisoned"))
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requester")
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}
