//! Options of the in-memory broker.

use std::time::Duration;

use broker_core::{Error, ErrorKind, Result};
use url::Url;

use Setter::{Millis, Number, WaitOrDrop};

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
            options = apply_query_key(options, &key, &value)?;
        }
        Ok(options)
    }
}

/// How a query value is parsed, and the builder method that takes it.
#[derive(Clone, Copy)]
enum Setter {
    /// A whole number.
    Number(fn(MemoryOptions, usize) -> MemoryOptions),
    /// A whole number of milliseconds.
    Millis(fn(MemoryOptions, Duration) -> MemoryOptions),
    /// `wait` or `drop`.
    WaitOrDrop(fn(MemoryOptions, Overflow) -> MemoryOptions),
}

/// The query keys of a `memory://` URL, each with how its value is parsed and what it
/// sets. Any other key is an error that lists these.
const URL_KEYS: &[(&str, Setter)] = &[
    ("buffer", Number(MemoryOptions::buffer)),
    ("publish_timeout_ms", Millis(MemoryOptions::publish_timeout)),
    ("overflow", WaitOrDrop(MemoryOptions::overflow)),
    (
        "max_message_bytes",
        Number(MemoryOptions::max_message_bytes),
    ),
];

/// Applies the query key `key` with `value` to `options`: finds it in [`URL_KEYS`],
/// parses the value and sets it.
fn apply_query_key(options: MemoryOptions, key: &str, value: &str) -> Result<MemoryOptions> {
    let Some(&(_, setter)) = URL_KEYS.iter().find(|(name, _)| *name == key) else {
        let known: Vec<&str> = URL_KEYS.iter().map(|(name, _)| *name).collect();
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "unknown memory URL option `{key}` (known: {})",
                known.join(", ")
            ),
        ));
    };
    let number = || value.parse::<u64>().map_err(|_| "must be a whole number");
    let set = match setter {
        Number(set) => number().map(|n| set(options, n as usize)),
        Millis(set) => number().map(|n| set(options, Duration::from_millis(n))),
        WaitOrDrop(set) => match value {
            "wait" => Ok(Overflow::Wait),
            "drop" => Ok(Overflow::DropNewest),
            _ => Err("is `wait` or `drop`"),
        }
        .map(|overflow| set(options, overflow)),
    };
    set.map_err(|what| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("memory URL option `{key}` {what}, got `{value}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<MemoryOptions> {
        MemoryOptions::from_url(&Url::parse(&format!("memory://bus?{query}")).expect("url"))
    }

    #[test]
    fn keys_set_what_the_builder_sets() {
        let o = parse("buffer=0&publish_timeout_ms=50&overflow=drop&max_message_bytes=10")
            .expect("options");
        let built = MemoryOptions::new()
            .buffer(0)
            .publish_timeout(Duration::from_millis(50))
            .overflow(Overflow::DropNewest)
            .max_message_bytes(10);
        assert_eq!(o, built);
        assert_eq!(o.buffer, 1, "at least 1");
        let o = parse("overflow=wait").expect("options");
        assert_eq!(o.overflow, Overflow::Wait);
    }

    #[test]
    fn errors_name_the_key_and_what_it_takes() {
        let err = parse("colour=blue").expect_err("unknown");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("`colour`"), "{err}");
        for (name, _) in URL_KEYS {
            assert!(
                err.message().contains(name),
                "`{name}` is not listed: {err}"
            );
        }
        let err = parse("buffer=lots").expect_err("not a number");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("whole number"), "{err}");
        let err = parse("overflow=sometimes").expect_err("not a policy");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("`wait` or `drop`"), "{err}");
    }

    #[test]
    fn every_key_is_in_the_crate_docs() {
        let docs = include_str!("lib.rs");
        for (name, _) in URL_KEYS {
            assert!(
                docs.contains(&format!("{name}=")),
                "`{name}` is not in the crate docs"
            );
        }
    }
}
