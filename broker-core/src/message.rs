//! The message: headers, payload, an optional key and an id.

use std::fmt;
use std::sync::Arc;

use arrayvec::ArrayString;
use bytes::Bytes;

use crate::{Error, ErrorKind, Headers, Result};

/// A message id: generated (a UUIDv7, so ids sort by creation time) when the publisher
/// sets none, and readable by every consumer. Cheap to clone.
///
/// An id of up to 36 bytes (a generated id in its 36-character text form, the same read
/// back off the wire, or a short id of the publisher's) is kept inline, without an
/// allocation; a longer one is a shared string.
#[derive(Clone)]
pub struct MessageId(Repr);

#[derive(Clone)]
enum Repr {
    /// An id of at most [`INLINE_ID`] bytes: a generated UUID, formatted once into its
    /// hyphenated lowercase text, or a short id from the publisher or the wire.
    Inline(ArrayString<INLINE_ID>),
    /// A longer id.
    Shared(Arc<str>),
}

impl MessageId {
    /// A fresh, unique id.
    pub fn generate() -> Self {
        let uuid = uuid::Uuid::now_v7();
        let mut buffer = [0u8; 36];
        let mut text = ArrayString::new();
        // 36 characters: always fits.
        let _ = text.try_push_str(uuid.hyphenated().encode_lower(&mut buffer));
        MessageId(Repr::Inline(text))
    }

    /// The length of the id's text, without checking it as UTF-8 again.
    fn text_len(&self) -> usize {
        match &self.0 {
            Repr::Inline(text) => text.len(),
            Repr::Shared(id) => id.len(),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(text) => text,
            Repr::Shared(id) => id,
        }
    }
}

impl PartialEq for MessageId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MessageId {}

impl std::hash::Hash for MessageId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for MessageId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MessageId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ids of up to this many bytes (a UUID's text: every generated id, read back off the
/// wire) are kept inline, so receiving one does not allocate.
const INLINE_ID: usize = 36;

impl From<&str> for MessageId {
    fn from(id: &str) -> Self {
        match ArrayString::from(id) {
            Ok(text) => MessageId(Repr::Inline(text)),
            Err(_) => MessageId(Repr::Shared(Arc::from(id))),
        }
    }
}

impl From<String> for MessageId {
    fn from(id: String) -> Self {
        MessageId::from(id.as_str())
    }
}

impl AsRef<str> for MessageId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A message: a payload, ordered headers, an optional key and an id.
///
/// The key picks the partition on Kafka (so messages with one key keep their order) and
/// is carried faithfully by every other backend. Keys and header values are bytes with a
/// text face: what another producer wrote comes back byte for byte, and a message
/// published again as it arrived writes the same bytes. A *tombstone* (Kafka's null
/// value, which deletes its key from a compacted topic) is a message of its own kind, not
/// an empty payload. Cloning is cheap: the payload and the headers are shared.
///
/// ```
/// use broker_core::Message;
///
/// let msg = Message::new("hello")
///     .with_header("tenant", "acme")
///     .with_key("order-42");
/// assert_eq!(msg.payload().as_ref(), b"hello");
/// assert_eq!(msg.headers().get("tenant"), Some("acme"));
/// assert_eq!(msg.key_str(), Some("order-42"));
/// assert_eq!(msg.key(), Some(&b"order-42"[..]));
/// assert!(!msg.id().as_str().is_empty());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    id: MessageId,
    key: Option<Bytes>,
    headers: Headers,
    payload: Bytes,
    tombstone: bool,
}

impl Message {
    /// A message carrying `payload`, with a freshly generated id.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Message {
            id: MessageId::generate(),
            key: None,
            headers: Headers::new(),
            payload: payload.into(),
            tombstone: false,
        }
    }

    /// An empty message with an empty id, left behind where a message is moved out.
    pub(crate) fn placeholder() -> Self {
        Message {
            // The nil UUID: nothing to allocate.
            id: MessageId(Repr::Inline(
                ArrayString::from("00000000-0000-0000-0000-000000000000").unwrap_or_default(),
            )),
            key: None,
            headers: Headers::new(),
            payload: Bytes::new(),
            tombstone: false,
        }
    }

    /// A tombstone: a message without a value, as Kafka's compacted topics use to delete
    /// a key. Give it the key with [`with_key`](Message::with_key). Backends that cannot
    /// tell a tombstone from an empty payload refuse it at publish.
    pub fn tombstone() -> Self {
        Message {
            tombstone: true,
            ..Message::new(Bytes::new())
        }
    }

    /// Builds a message from its parts, as a backend does on receipt.
    pub fn from_parts(id: MessageId, key: Option<Bytes>, headers: Headers, payload: Bytes) -> Self {
        Message {
            id,
            key,
            headers,
            payload,
            tombstone: false,
        }
    }

    /// Makes this message a tombstone: its payload is dropped (see
    /// [`tombstone`](Message::tombstone)).
    pub fn into_tombstone(mut self) -> Self {
        self.payload = Bytes::new();
        self.tombstone = true;
        self
    }

    /// Replaces the id (for idempotent publishing, or to keep an upstream id).
    pub fn with_id(mut self, id: impl Into<MessageId>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the key: text or any bytes.
    pub fn with_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(Bytes::copy_from_slice(key.as_ref()));
        self
    }

    /// Sets the key from shared bytes, without copying them.
    pub fn with_key_bytes(mut self, key: Bytes) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets a header (see [`Headers::insert`]).
    pub fn with_header(
        mut self,
        key: impl Into<String>,
        value: impl Into<crate::headers::HeaderValue>,
    ) -> Self {
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

    /// The key's bytes, if there is a key.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as text: `None` without a key or when the key is not UTF-8 (then
    /// [`key`](Message::key) has its bytes).
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key.as_deref()?).ok()
    }

    /// The key, shared.
    pub fn key_bytes(&self) -> Option<&Bytes> {
        self.key.as_ref()
    }

    /// Whether this message is a tombstone (see [`tombstone`](Message::tombstone)).
    pub fn is_tombstone(&self) -> bool {
        self.tombstone
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
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.id.text_len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Fails with [`ErrorKind::PayloadTooLarge`] when the message's
    /// [`encoded_len`](Self::encoded_len) exceeds `limit`, the largest message `broker`
    /// (such as `"the memory broker"`) carries.
    ///
    /// ```
    /// use broker_core::{ErrorKind, Message};
    ///
    /// assert!(Message::new("hi").check_size(64, "the memory broker").is_ok());
    /// let err = Message::new("hi").check_size(1, "the memory broker").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    /// ```
    pub fn check_size(&self, limit: usize, broker: &str) -> Result<()> {
        let size = self.encoded_len();
        if size > limit {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("message of {size} bytes exceeds {broker}'s limit of {limit} bytes"),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .field("tombstone", &self.tombstone)
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
    fn ids_of_any_length_keep_their_text() {
        let short = "a".repeat(INLINE_ID);
        let long = "é".repeat(INLINE_ID);
        for text in ["", "x", "ünïcode", short.as_str(), long.as_str()] {
            let id = MessageId::from(text);
            assert_eq!(id.as_str(), text);
            assert_eq!(id, MessageId::from(text.to_owned()));
            assert_eq!(id.to_string(), text);
        }
        assert!(matches!(MessageId::from(short.as_str()).0, Repr::Inline(_)));
        assert!(matches!(MessageId::from(long.as_str()).0, Repr::Shared(_)));
    }

    #[test]
    fn generated_ids_are_v7_and_in_creation_order() {
        let ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(ids[0].as_str()).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let copy = ids[0].clone();
        assert_eq!(copy, ids[0]);
        assert_eq!(MessageId::from(ids[0].as_str()), ids[0]);
    }

    #[test]
    fn generated_ids_carry_the_current_millisecond() {
        let since_epoch = |id: &MessageId| -> u64 {
            let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a UUID");
            let (secs, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as u64
        };
        let before = now();
        let id = MessageId::generate();
        let after = now();
        let stamped = since_epoch(&id);
        assert!(
            stamped >= before && stamped <= after,
            "id time {stamped} outside {before}..={after}"
        );
    }

    #[test]
    fn keys_are_bytes_with_a_text_face() {
        let text = Message::new("x").with_key("user-7");
        assert_eq!(text.key_str(), Some("user-7"));
        let binary = Message::new("x").with_key([0xff, 0x00, 0xfe, 0x80, 0x41]);
        assert_eq!(binary.key(), Some(&[0xff, 0x00, 0xfe, 0x80, 0x41][..]));
        assert_eq!(binary.key_str(), None);
        assert_eq!(Message::new("x").key(), None);
    }

    #[test]
    fn a_tombstone_is_not_an_empty_payload() {
        let tombstone = Message::tombstone().with_key("k");
        assert!(tombstone.is_tombstone());
        assert!(tombstone.payload().is_empty());
        assert!(!Message::new("").is_tombstone());
        assert_ne!(
            Message::new("").with_id("a"),
            Message::tombstone().with_id("a")
        );
        assert!(Message::new("gone").into_tombstone().payload().is_empty());
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
