//! Message headers: string keys and values, case-sensitive, in insertion order.

use std::fmt;
use std::sync::Arc;

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

/// An ordered list of string headers. Keys are case-sensitive; a key may appear more than
/// once (use [`append`](Headers::append)); order is kept and round-trips on every backend.
///
/// Cloning is cheap: the list is shared until one of the clones is changed.
///
/// ```
/// use broker_core::Headers;
///
/// let mut headers = Headers::new();
/// headers.insert("tenant", "acme");
/// headers.insert("Tenant", "other"); // a different key: keys are case-sensitive
/// headers.insert("tenant", "acme-2"); // replaces the first value in place
/// assert_eq!(headers.get("tenant"), Some("acme-2"));
/// assert_eq!(headers.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["tenant", "Tenant"]);
/// ```
#[derive(Clone, Default)]
pub struct Headers {
    /// `None` while empty, so a message without headers allocates nothing for them.
    entries: Option<Arc<Vec<(String, String)>>>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    fn entries(&self) -> &[(String, String)] {
        self.entries.as_deref().map_or(&[], Vec::as_slice)
    }

    fn entries_mut(&mut self) -> &mut Vec<(String, String)> {
        Arc::make_mut(self.entries.get_or_insert_with(Arc::default))
    }

    /// Sets `key` to `value`: replaces the first entry with that key (and removes any
    /// later ones), or appends a new entry.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        let entries = self.entries_mut();
        match entries.iter().position(|(k, _)| *k == key) {
            Some(first) => {
                entries[first].1 = value;
                let mut index = 0;
                entries.retain(|(k, _)| {
                    let keep = index <= first || *k != key;
                    index += 1;
                    keep
                });
            }
            None => entries.push((key, value)),
        }
    }

    /// Appends an entry, keeping any earlier ones with the same key.
    pub fn append(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries_mut().push((key.into(), value.into()));
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries()
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.entries().iter().any(|(k, _)| k == key)
    }

    /// Removes every entry with `key`, returning the first value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        if !self.contains(key) {
            return None;
        }
        let entries = self.entries_mut();
        let mut first = None;
        entries.retain(|(k, v)| {
            if k == key {
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
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries().iter().map(|(k, v)| (k.as_str(), v.as_str()))
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

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let entries: Vec<(String, String)> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Headers {
            entries: (!entries.is_empty()).then(|| Arc::new(entries)),
        }
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Headers {
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

    #[test]
    fn insert_replaces_in_place_and_drops_duplicates() {
        let mut h = Headers::new();
        h.append("a", "1");
        h.append("b", "2");
        h.append("a", "3");
        h.insert("a", "x");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "x"), ("b", "2")]);
    }

    #[test]
    fn append_keeps_every_value_in_order() {
        let mut h = Headers::new();
        h.append("k", "1");
        h.append("k", "2");
        assert_eq!(h.get_all("k").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.remove("k").as_deref(), Some("1"));
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
}
