//! Checking order: each key's numbers grow, counted over first deliveries only.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;

use crate::Message;
use crate::testkit::Received;

/// The last number seen for each key, to check that every key's numbers grow.
#[derive(Debug)]
pub struct KeyOrder<K> {
    last: HashMap<K, usize>,
}

impl<K> Default for KeyOrder<K> {
    fn default() -> Self {
        KeyOrder {
            last: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + fmt::Debug> KeyOrder<K> {
    /// Records that `seq` of `key` came next; panics, starting with `what`, when it does
    /// not come after the key's last one.
    pub fn next(&mut self, key: K, seq: usize, what: &str) {
        match self.last.entry(key) {
            Entry::Occupied(mut last) => {
                let previous = *last.get();
                assert!(
                    seq > previous,
                    "{what}: key {:?}: {seq} came after {previous}",
                    last.key()
                );
                last.insert(seq);
            }
            Entry::Vacant(last) => {
                last.insert(seq);
            }
        }
    }
}

/// The messages of `received`, each once, at its first delivery: a redelivery of a
/// message seen already says nothing about the order.
pub fn first_deliveries(received: &[Received]) -> impl Iterator<Item = &Message> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .map(|r| &r.message)
        .filter(move |m| seen.insert(m.id().clone()))
}

/// Checks that the messages of `received` whose payloads are numbers (`"17"`) arrived,
/// at their first deliveries, in order within each key: `key_of` gives a number's key.
/// Failures start with `what`.
pub fn check_payload_order<K: Hash + Eq + fmt::Debug>(
    received: &[Received],
    key_of: impl Fn(usize) -> K,
    what: &str,
) {
    let mut order = KeyOrder::default();
    for message in first_deliveries(received) {
        let seq = payload_number(message);
        order.next(key_of(seq), seq, what);
    }
}

/// The number a message's payload holds (`"17"`); panics when it holds none.
fn payload_number(message: &Message) -> usize {
    std::str::from_utf8(message.payload())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a numbered payload, not {:?}", message.payload()))
}
