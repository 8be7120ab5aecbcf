//! Routes: which queues a topic reaches, resolved on each publish.

use std::sync::Arc;

use broker_core::Result;
use broker_core::subject::validate_topic;

use super::Inner;
use crate::queue::Queue;

/// Where messages to one topic go: one shared copy of the topic for every entry, and
/// the matching queues.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) topic: Arc<str>,
    pub(super) targets: Vec<Arc<Queue>>,
}

impl Inner {
    /// The route of `topic`: the topic is validated, then the queues it reaches are read
    /// under the queues' read lock (no queue is added or removed while it is held).
    pub(super) fn route(&self, topic: &str) -> Result<Route> {
        validate_topic(topic)?;
        let queues = self.read_queues()?;
        let targets = queues
            .iter()
            .filter(|q| q.pattern.matches(topic))
            .cloned()
            .collect();
        Ok(Route {
            topic: Arc::from(topic),
            targets,
        })
    }
}
