//! Options of the in-memory broker.

use std::time::Duration;

use broker_core::{Error, ErrorKind, Result};
use url::Url;

/// What `publish` does when a subscriber's buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room, at most [`MemoryOptions::publish_timeout`]; then fail with
    /// [`ErrorKind::Timeout`]. Nothing is dropped. The default.
    #[default]
    Wait,
    /// Drop the message for that subscriber and count it in
    /// [`MemoryBroker::dropped`](crate::MemoryBroker::dropped). Opt-in.
    DropNewest,
}

/// Options of a [`MemoryBroker`](crate::MemoryBroker), from a builder or from the URL
/// query: `memory://?buffer=1024&publish_timeout_ms=30000&overflow=wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryOptions {
    /// Messages buffered per subscriber (per member for queue-group members): `publish`
    /// waits while that many wait unread. A reading subscriber also takes up to a 32nd
    /// of its buffer (at most 32) at once, to hand out one by one, so it holds at most
    /// `min(buffer / 32, 32) - 1` more (with the default of 1024, 31 more).
    pub buffer: usize,
    /// How long one `publish` waits, in all, for room in the buffers that were full
    /// (the other subscribers have the message already).
    pub publish_timeout: Duration,
    /// What to do when the wait is not allowed or runs out.
    pub overflow: Overflow,
    /// The largest message accepted (payload, key, id and headers), in bytes.
    pub max_message_bytes: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            buffer: 1024,
            publish_timeout: Duration::from_secs(30),
            overflow: Overflow::Wait,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

impl MemoryOptions {
    /// The defaults: 1024 buffered messages per subscriber, wait up to 30 s, 64 MiB max.
    pub fn new() -> Self {
        MemoryOptions::default()
    }

    /// Sets the per-subscriber buffer (at least 1).
    pub fn buffer(mut self, messages: usize) -> Self {
        self.buffer = messages.max(1);
        self
    }

    /// Sets how long `publish` waits for room.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets the overflow policy.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Reads options from a `memory://` URL's query. Unknown keys are an error.
    pub fn from_url(url: &Url) -> Result<Self> {
        let mut options = MemoryOptions::default();
        for (key, value) in url.query_pairs() {
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        format!("memory URL option `{key}` must be a whole number, got `{value}`"),
                    )
                })
            };
            match &*key {
                "buffer" => options = options.buffer(number()? as usize),
                "publish_timeout_ms" => {
                    options = options.publish_timeout(Duration::from_millis(number()?))
                }
                "max_message_bytes" => options = options.max_message_bytes(number()? as usize),
                "overflow" => options = options.overflow(match &*value {
                    "wait" => Overflow::Wait,
                    "drop" => Overflow::DropNewest,
                    other => {
                        return Err(Error::new(
                            ErrorKind::InvalidConfig,
                            format!(
                                "memory URL option `overflow` is `wait` or `drop`, got `{other}`"
                            ),
                        ));
                    }
                }),
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "unknown memory URL option `{other}` (known: buffer, publish_timeout_ms, overflow, max_message_bytes)"
                        ),
                    ));
                }
            }
        }
        Ok(options)
    }
}
