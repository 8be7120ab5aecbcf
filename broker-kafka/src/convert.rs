//! Mapping messages between ours and Kafka records: headers, key, id.
//!
//! - Each of our headers becomes one native record header, in order, with its exact case;
//!   repeated keys stay repeated.
//! - The message id travels as one more header, [`names::MESSAGE_ID`], written first.
//!   It is the only header the backend adds, and it is taken out again on receipt, so
//!   the headers a subscriber sees are exactly the ones published.
//! - The message key is the record key (it picks the partition, so one key keeps its
//!   order), and comes back as the message key.
//! - Keys and header values are bytes both ways: what another producer wrote (a binary
//!   key from an `IntegerSerializer`, an Avro header) comes back byte for byte, and a null
//!   header value stays null. A record with a null value is a tombstone
//!   ([`Message::is_tombstone`]), and a tombstone is published with a null value.
//! - Records from other producers: a missing id (or one that is not text) becomes
//!   `topic-partition-offset`, so it is stable across redeliveries and subscribers.
//!
//! Header names are text on Kafka (Java's `String`); librdkafka hands them over as such.

use std::sync::Arc;

use broker_core::headers::HeaderValue;
use broker_core::headers::names;
use broker_core::{Headers, Message, MessageId};
use bytes::Bytes;
use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};

/// The record headers for `message`: its id first, then its headers in order. Headers
/// with a reserved name (see [`names::RESERVED`]) are not sent: those are carried in
/// message fields.
pub(crate) fn record_headers(message: &Message) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers().len() + 1);
    headers = headers.insert(Header {
        key: names::MESSAGE_ID,
        value: Some(message.id().as_str()),
    });
    for (key, value) in message.headers().iter() {
        if names::is_reserved(key) {
            continue;
        }
        headers = headers.insert(Header {
            key,
            value: value.bytes().map(Bytes::as_ref),
        });
    }
    headers
}

/// A fetched record as our message, with its topic and partition.
pub(crate) struct Fetched {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) message: Message,
}

/// Converts a fetched record; `topic` is its topic's name, shared by the caller.
pub(crate) fn from_record(record: &BorrowedMessage<'_>, topic: Arc<str>) -> Fetched {
    let partition = record.partition();
    let offset = record.offset();
    let mut id = None;
    let mut headers = Headers::new();
    if let Some(native) = record.headers() {
        for header in native.iter() {
            if header.key == names::MESSAGE_ID {
                if id.is_none() {
                    id = header
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .filter(|v| !v.is_empty())
                        .map(MessageId::from);
                }
                continue;
            }
            if names::is_reserved(header.key) {
                continue;
            }
            let value = header.value.map(Bytes::copy_from_slice);
            headers.append(header.key, HeaderValue::from(value));
        }
    }
    let id = id.unwrap_or_else(|| MessageId::from(format!("{topic}-{partition}-{offset}")));
    let key = record.key().map(Bytes::copy_from_slice);
    let message = match record.payload() {
        Some(payload) => Message::from_parts(id, key, headers, Bytes::copy_from_slice(payload)),
        None => Message::from_parts(id, key, headers, Bytes::new()).into_tombstone(),
    };
    Fetched {
        message,
        topic,
        partition,
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_case_and_duplicates_after_the_id() {
        let mut h = Headers::new();
        h.append("b", "1");
        h.append("A", "2");
        h.append("b", "3");
        h.append(names::ATTEMPT, "9");
        let m = Message::new("x").with_id("id-1").with_headers(h);
        let native = record_headers(&m);
        let got: Vec<(String, String)> = native
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [
            (names::MESSAGE_ID, "id-1"),
            ("b", "1"),
            ("A", "2"),
            ("b", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
