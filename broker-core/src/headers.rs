//! Message headers: names are text, values are bytes with a text face, in insertion order.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Header names the framework itself reads and writes.
///
/// Backends carry them as native headers like any other; the ones marked *reserved* are
/// moved into [`Message`](crate::Message) fields on receipt and do not appear in
/// [`Message::headers`](crate::Message::headers).
pub mod names {
    /// The message id (reserved).
    pub const MESSAGE_ID: &str = "x-message-id";
    /// The message key (reserved).
    pub const MESSAGE_KEY: &str = "x-message-key";
    /// How many times the message has been delivered before, when a backend redelivers by
    /// publishing again (reserved).
    pub const ATTEMPT: &str = "x-attempt";
    /// The MIME type of the payload, set and checked by the typed layer.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Where a reply to this message should be published.
    pub const REPLY_TO: &str = "reply-to";
    /// Ties a follow-up event to the message that caused it.
    pub const CORRELATION_ID: &str = "correlation-id";
    /// On a reply: the id of the request it answers.
    pub const IN_REPLY_TO: &str = "in-reply-to";
    /// Set on dead letters: the error that sent the message there.
    pub const DEAD_LETTER_ERROR: &str = "x-dead-letter-error";
    /// Set on dead letters: how many delivery attempts were made.
    pub const DEAD_LETTER_ATTEMPTS: &str = "x-dead-letter-attempts";
    /// Set on dead letters: the topic the message was first published to.
    pub const DEAD_LETTER_TOPIC: &str = "x-dead-letter-topic";

    /// The reserved names, which are carried in message fields rather than headers.
    pub const RESERVED: [&str; 3] = [MESSAGE_ID, MESSAGE_KEY, ATTEMPT];

    /// Whether `name` is one of the [`RESERVED`] names.
    pub fn is_reserved(name: &str) -> bool {
        RESERVED.contains(&name)
    }
}

/// One header value: bytes, as a producer wrote them, with a text face.
///
/// Most values are text, and [`to_str`](HeaderValue::to_str) reads them as such; a value
/// written by another producer may be any bytes, and [`as_bytes`](HeaderValue::as_bytes)
/// gives them back exactly. A value can also be *null* (Kafka headers can carry one),
/// which is not the same as empty. Backends carry every value byte for byte or refuse it
/// with a typed error at publish; none is changed on the way.
///
/// ```
/// use broker_core::headers::HeaderValue;
///
/// let text = HeaderValue::from("acme");
/// assert_eq!(text.to_str(), Some("acme"));
/// assert_eq!(text, "acme");
///
/// let binary = HeaderValue::from(vec![0xff, 0x00, 0xfe]);
/// assert_eq!(binary.to_str(), None);
/// assert_eq!(binary.as_bytes(), [0xff, 0x00, 0xfe]);
///
/// let null = HeaderValue::null();
/// assert!(null.is_null());
/// assert_ne!(null, HeaderValue::from(""));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(Option<Bytes>);

impl HeaderValue {
    /// A null value: present, but without bytes (distinct from an empty value).
    pub const fn null() -> Self {
        HeaderValue(None)
    }

    /// A value holding `bytes`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        HeaderValue(Some(bytes.into()))
    }

    /// The value as text, if it is UTF-8 (and not null).
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(self.0.as_deref()?).ok()
    }

    /// The bytes; empty for a null value.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }

    /// The bytes, shared; `None` for a null value.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.0.as_ref()
    }

    /// Whether the value is null.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }

    /// How many bytes the value has.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the value has no bytes (empty or null).
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0, self.to_str()) {
            (None, _) => f.write_str("null"),
            (Some(_), Some(text)) => fmt::Debug::fmt(text, f),
            (Some(bytes), None) => write!(f, "b\"{}\"", bytes.escape_ascii()),
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(text: &str) -> Self {
        HeaderValue(Some(Bytes::copy_from_slice(text.as_bytes())))
    }
}

impl From<&String> for HeaderValue {
    fn from(text: &String) -> Self {
        HeaderValue::from(text.as_str())
    }
}

impl From<String> for HeaderValue {
    fn from(text: String) -> Self {
        HeaderValue(Some(Bytes::from(text)))
    }
}

impl From<&[u8]> for HeaderValue {
    fn from(bytes: &[u8]) -> Self {
        HeaderValue(Some(Bytes::copy_from_slice(bytes)))
    }
}

impl From<Vec<u8>> for HeaderValue {
    fn from(bytes: Vec<u8>) -> Self {
        HeaderValue(Some(Bytes::from(bytes)))
    }
}

impl From<Bytes> for HeaderValue {
    fn from(bytes: Bytes) -> Self {
        HeaderValue(Some(bytes))
    }
}

impl From<Option<Bytes>> for HeaderValue {
    /// `None` is a null value.
    fn from(bytes: Option<Bytes>) -> Self {
        HeaderValue(bytes)
    }
}

impl PartialEq<str> for HeaderValue {
    fn eq(&self, other: &str) -> bool {
        self.0.as_deref() == Some(other.as_bytes())
    }
}

impl PartialEq<&str> for HeaderValue {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<[u8]> for HeaderValue {
    fn eq(&self, other: &[u8]) -> bool {
        self.0.as_deref() == Some(other)
    }
}

/// An ordered list of headers. Names are case-sensitive text; values are
/// [`HeaderValue`]s (bytes with a text face, or null). A name may appear more than once
/// (use [`append`](Headers::append)); order is kept and round-trips on every backend.
///
/// Cloning is cheap: the list is shared until one of the clones is changed.
///
/// ```
/// use broker_core::Headers;
///
/// let mut headers = Headers::new();
/// headers.insert("tenant", "acme");
/// headers.insert("Tenant", "other"); // a different name: names are case-sensitive
/// headers.insert("tenant", "acme-2"); // replaces the first value in place
/// headers.insert("digest", vec![0xff, 0xfe]); // any bytes
/// assert_eq!(headers.get("tenant"), Some("acme-2"));
/// assert_eq!(headers.get("digest"), None); // not text
/// assert_eq!(headers.get_value("digest").map(|v| v.as_bytes()), Some(&[0xff, 0xfe][..]));
/// assert_eq!(headers.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["tenant", "Tenant", "digest"]);
/// ```
#[derive(Clone, Default)]
pub struct Headers {
    /// `None` while empty, so a message without headers allocates nothing for them.
    entries: Option<Arc<Vec<(String, HeaderValue)>>>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    fn entries(&self) -> &[(String, HeaderValue)] {
        self.entries.as_deref().map_or(&[], Vec::as_slice)
    }

    fn entries_mut(&mut self) -> &mut Vec<(String, HeaderValue)> {
        Arc::make_mut(self.entries.get_or_insert_with(Arc::default))
    }

    /// Sets `name` to `value`: replaces the first entry with that name (and removes any
    /// later ones), or appends a new entry.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<HeaderValue>) {
        let name = name.into();
        let value = value.into();
        let entries = self.entries_mut();
        match entries.iter().position(|(k, _)| *k == name) {
            Some(first) => {
                entries[first].1 = value;
                let mut index = 0;
                entries.retain(|(k, _)| {
                    let keep = index <= first || *k != name;
                    index += 1;
                    keep
                });
            }
            None => entries.push((name, value)),
        }
    }

    /// Appends an entry, keeping any earlier ones with the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<HeaderValue>) {
        self.entries_mut().push((name.into(), value.into()));
    }

    /// The first value of `name` as text: `None` when the name is absent, or when its
    /// first value is null or not UTF-8 (then [`get_value`](Headers::get_value) has it).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_value(name)?.to_str()
    }

    /// The first value of `name`, as bytes (or null).
    pub fn get_value(&self, name: &str) -> Option<&HeaderValue> {
        self.entries()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.entries()
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.entries().iter().any(|(k, _)| k == name)
    }

    /// Removes every entry with `name`, returning the first value.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValue> {
        if !self.contains(name) {
            return None;
        }
        let entries = self.entries_mut();
        let mut first = None;
        entries.retain(|(k, v)| {
            if k == name {
                if first.is_none() {
                    first = Some(v.clone());
                }
                false
            } else {
                true
            }
        });
        first
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &HeaderValue)> + '_ {
        self.entries().iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Headers")
            .field("entries", &self.entries())
            .finish()
    }
}

impl<K: Into<String>, V: Into<HeaderValue>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let entries: Vec<(String, HeaderValue)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Headers {
            entries: (!entries.is_empty()).then(|| Arc::new(entries)),
        }
    }
}

impl<K: Into<String>, V: Into<HeaderValue>> Extend<(K, V)> for Headers {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        if iter.peek().is_some() {
            self.entries_mut()
                .extend(iter.map(|(k, v)| (k.into(), v.into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(h: &Headers) -> Vec<(&str, &str)> {
        h.iter()
            .map(|(k, v)| (k, v.to_str().expect("text")))
            .collect()
    }

    #[test]
    fn insert_replaces_in_place_and_drops_duplicates() {
        let mut h = Headers::new();
        h.append("a", "1");
        h.append("b", "2");
        h.append("a", "3");
        h.insert("a", "x");
        assert_eq!(texts(&h), [("a", "x"), ("b", "2")]);
    }

    #[test]
    fn append_keeps_every_value_in_order() {
        let mut h = Headers::new();
        h.append("k", "1");
        h.append("k", "2");
        assert_eq!(h.get_all("k").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.remove("k"), Some(HeaderValue::from("1")));
        assert!(h.is_empty());
    }

    #[test]
    fn empty_lists_are_equal_however_they_became_empty() {
        let mut emptied = Headers::new();
        emptied.append("k", "v");
        emptied.remove("k");
        assert_eq!(emptied, Headers::new());
        assert_eq!(
            Headers::from_iter(Vec::<(String, String)>::new()),
            Headers::new()
        );
        assert_eq!(format!("{:?}", Headers::new()), "Headers { entries: [] }");
        assert_ne!(emptied, [("k", "v")].into_iter().collect::<Headers>());
    }

    #[test]
    fn clones_do_not_share_changes() {
        let mut a: Headers = [("x", "1")].into_iter().collect();
        let b = a.clone();
        a.insert("x", "2");
        assert_eq!(b.get("x"), Some("1"));
        assert_eq!(a.get("x"), Some("2"));
    }

    #[test]
    fn binary_null_and_empty_values_stay_apart() {
        let mut h = Headers::new();
        h.append("bin", vec![0xff, 0x00, 0xfe, 0x80, 0x41]);
        h.append("null", HeaderValue::null());
        h.append("empty", "");
        assert_eq!(h.get("bin"), None);
        assert_eq!(
            h.get_value("bin").map(HeaderValue::as_bytes),
            Some(&[0xff, 0x00, 0xfe, 0x80, 0x41][..])
        );
        assert_eq!(h.get("null"), None);
        assert!(h.get_value("null").is_some_and(HeaderValue::is_null));
        assert_eq!(h.get("empty"), Some(""));
        assert!(!h.get_value("empty").is_some_and(HeaderValue::is_null));
        assert_ne!(HeaderValue::null(), HeaderValue::from(""));
        assert_eq!(
            format!("{:?}", h),
            r#"Headers { entries: [("bin", b"\xff\x00\xfe\x80A"), ("null", null), ("empty", "")] }"#
        );
    }
}
