//! Reading a subscription in the background and waiting, bounded, for what should arrive.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Message, MessageId, Subscription};

/// One delivery, as recorded by a [`Collector`].
#[derive(Debug, Clone)]
pub struct Received {
    /// The concrete topic.
    pub topic: String,
    /// The message.
    pub message: Message,
    /// The attempt, where the backend reports it.
    pub attempt: Option<u32>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    unique: HashSet<String>,
}

/// Reads a subscription in a background task, acking every delivery, and records what
/// arrives. Reads are de-duplicated by message id when counting.
pub struct Collector {
    state: Arc<Mutex<State>>,
    unique: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Starts reading `subscription`.
    pub fn spawn(mut subscription: Subscription) -> Self {
        let state: Arc<Mutex<State>> = Arc::default();
        let (tx, unique) = watch::channel(0usize);
        let record = state.clone();
        let task = tokio::spawn(async move {
            while let Some(item) = subscription.next().await {
                let Ok(delivery) = item else { continue };
                let received = Received {
                    topic: delivery.topic().to_owned(),
                    message: delivery.message().clone(),
                    attempt: delivery.attempt(),
                };
                // Ack before counting, so whoever waits on the count sees settled messages.
                let _ = delivery.ack().await;
                let count = {
                    let Ok(mut state) = record.lock() else { break };
                    state.unique.insert(received.message.id().to_string());
                    state.received.push(received);
                    state.unique.len()
                };
                let _ = tx.send(count);
            }
        });
        Collector {
            state,
            unique,
            task,
        }
    }

    /// Waits until `n` distinct messages have arrived, and returns every delivery so far.
    /// Panics, saying how many arrived, if that takes longer than `timeout`.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        what: impl fmt::Display,
    ) -> Vec<Received> {
        let mut unique = self.unique.clone();
        let reached = tokio::time::timeout(timeout, unique.wait_for(|count| *count >= n)).await;
        if !matches!(reached, Ok(Ok(_))) {
            panic!(
                "{what}: {} of {n} distinct messages arrived within {timeout:?}",
                self.unique_count()
            );
        }
        self.received()
    }

    /// Every delivery so far, in arrival order (redeliveries included).
    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// The ids of the distinct messages so far.
    pub fn unique_ids(&self) -> HashSet<String> {
        self.state
            .lock()
            .map(|s| s.unique.clone())
            .unwrap_or_default()
    }

    /// The ids of the distinct messages so far, as message ids.
    pub fn ids(&self) -> HashSet<MessageId> {
        self.unique_ids().into_iter().map(MessageId::from).collect()
    }

    /// How many distinct messages have arrived.
    pub fn unique_count(&self) -> usize {
        *self.unique.borrow()
    }

    /// Stops reading and drops the subscription; returns every delivery recorded.
    pub async fn stop(self) -> Vec<Received> {
        self.task.abort();
        let _ = (&mut { self.task }).await;
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("unique", &self.unique_count())
            .finish_non_exhaustive()
    }
}
