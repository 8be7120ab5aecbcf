//! The message: headers, payload, an optional key and an id.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::Headers;

/// A message id: generated (a UUIDv7, so ids sort by creation time) when the publisher
/// sets none, and readable by every consumer. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Arc<str>);

impl MessageId {
    /// A fresh, unique id.
    pub fn generate() -> Self {
        MessageId(Arc::from(uuid::Uuid::now_v7().to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for MessageId {
    fn from(id: &str) -> Self {
        MessageId(Arc::from(id))
    }
}

impl From<String> for MessageId {
    fn from(id: String) -> Self {
        MessageId(Arc::from(id))
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A message: a payload, ordered string headers, an optional key and an id.
///
/// The key picks the partition on Kafka (so messages with one key keep their order) and
/// is carried faithfully by every other backend. Cloning is cheap: the payload and the
/// headers are shared.
///
/// ```
/// use broker_core::Message;
///
/// let msg = Message::new("hello")
///     .with_header("tenant", "acme")
///     .with_key("order-42");
/// assert_eq!(msg.payload().as_ref(), b"hello");
/// assert_eq!(msg.headers().get("tenant"), Some("acme"));
/// assert_eq!(msg.key(), Some("order-42"));
/// assert!(!msg.id().as_str().is_empty());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    id: MessageId,
    key: Option<Arc<str>>,
    headers: Headers,
    payload: Bytes,
}

impl Message {
    /// A message carrying `payload`, with a freshly generated id.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Message {
            id: MessageId::generate(),
            key: None,
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// An empty message with an empty id, left behind where a message is moved out.
    pub(crate) fn placeholder() -> Self {
        Message {
            id: MessageId(Arc::from("")),
            key: None,
            headers: Headers::new(),
            payload: Bytes::new(),
        }
    }

    /// Builds a message from its parts, as a backend does on receipt.
    pub fn from_parts(
        id: MessageId,
        key: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> Self {
        Message {
            id,
            key: key.map(Arc::from),
            headers,
            payload,
        }
    }

    /// Replaces the id (for idempotent publishing, or to keep an upstream id).
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(Arc::from(key.into()));
        self
    }

    /// Sets a header (see [`Headers::insert`]).
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// Replaces all headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The id.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The size a backend has to carry: payload, key, id and headers, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.payload.len()
            + self.key.as_deref().map_or(0, str::len)
            + self.id.as_str().len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl From<Bytes> for Message {
    fn from(payload: Bytes) -> Self {
        Message::new(payload)
    }
}

impl From<&'static str> for Message {
    fn from(payload: &'static str) -> Self {
        Message::new(payload)
    }
}

impl From<Vec<u8>> for Message {
    fn from(payload: Vec<u8>) -> Self {
        Message::new(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_can_be_set() {
        let a = Message::new("x");
        let b = Message::new("x");
        assert_ne!(a.id(), b.id());
        let c = Message::new("x").with_id("fixed");
        assert_eq!(c.id().as_str(), "fixed");
    }

    #[test]
    fn encoded_len_counts_everything() {
        let m = Message::new("abc")
            .with_id("id")
            .with_key("k")
            .with_header("h", "vv");
        assert_eq!(m.encoded_len(), 3 + 1 + 2 + 3);
    }
}
