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
//! Header names are text on Kafka (Java's `String`), but a producer on another client can
//! write any bytes. A header whose name is not UTF-8 is left out of the message, and the
//! delivery carries a defect (of kind [`Codec`](ErrorKind::Codec)) naming its bytes.

use std::sync::Arc;

use broker_core::headers::HeaderValue;
use broker_core::headers::names;
use broker_core::{Error, ErrorKind, Headers, Message, MessageId};
use bytes::Bytes;
use rdkafka::Message as _;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Header, Headers as _, OwnedHeaders};

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
    /// What could not be read of the record (header names that are not UTF-8), for
    /// [`Delivery::with_defect`](broker_core::Delivery::with_defect).
    pub(crate) defect: Option<Error>,
}

/// Converts a fetched record; `topic` is its topic's name, shared by the caller.
pub(crate) fn from_record(record: &BorrowedMessage<'_>, topic: Arc<str>) -> Fetched {
    let partition = record.partition();
    let offset = record.offset();
    let (id, headers, defect) = match record.headers() {
        Some(native) => read_headers(native),
        None => (None, Headers::new(), None),
    };
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
        defect,
    }
}

/// The id header's value (if text and not empty), the other headers in order without
/// reserved names, and a defect if some header names are not UTF-8 (those headers are
/// left out). Names are read as raw bytes: rdkafka's `Header::key` cannot carry them.
fn read_headers(native: &BorrowedHeaders) -> (Option<MessageId>, Headers, Option<Error>) {
    let mut id = None;
    let mut headers = Headers::new();
    let mut bad_names = Vec::new();
    for idx in 0..native.count() {
        let Some((name, value)) = native.try_get_raw(idx) else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(name) else {
            bad_names.push(format!("b\"{}\"", name.escape_ascii()));
            continue;
        };
        if name == names::MESSAGE_ID {
            if id.is_none() {
                id = value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .filter(|v| !v.is_empty())
                    .map(MessageId::from);
            }
            continue;
        }
        if names::is_reserved(name) {
            continue;
        }
        headers.append(name, HeaderValue::from(value.map(Bytes::copy_from_slice)));
    }
    let defect = match bad_names.as_slice() {
        [] => None,
        [one] => Some(format!(
            "a Kafka header name is not UTF-8 (bytes {one}); that header was left out"
        )),
        many => Some(format!(
            "{} Kafka header names are not UTF-8 (bytes {}); those headers were left out",
            many.len(),
            many.join(", ")
        )),
    };
    (id, headers, defect.map(|d| Error::new(ErrorKind::Codec, d)))
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

    #[test]
    fn a_header_name_that_is_not_utf8_is_left_out_with_a_defect() {
        let native = OwnedHeaders::new()
            .insert_raw(names::MESSAGE_ID.as_bytes(), Some(b"id-9"))
            .insert_raw(b"ok", Some(b"1"))
            .insert_raw(&[0xff, 0xfe, 0x41], Some(b"x"))
            .insert_raw(b"null", None)
            .insert_raw(names::ATTEMPT.as_bytes(), Some(b"3"))
            .insert_raw(b"after", Some(b"2"));
        let (id, headers, defect) = read_headers(native.as_borrowed());
        assert_eq!(id.as_ref().map(MessageId::as_str), Some("id-9"));
        let got: Vec<(&str, Option<&[u8]>)> = headers
            .iter()
            .map(|(k, v)| (k, v.bytes().map(Bytes::as_ref)))
            .collect();
        let want: Vec<(&str, Option<&[u8]>)> =
            vec![("ok", Some(b"1")), ("null", None), ("after", Some(b"2"))];
        assert_eq!(got, want);
        let defect = defect.expect("a defect");
        assert_eq!(defect.kind(), ErrorKind::Codec);
        assert!(defect.to_string().contains(r#"b"\xff\xfeA""#), "{defect}");

        let clean = OwnedHeaders::new().insert_raw(b"ok", Some(b"1"));
        let (id, headers, defect) = read_headers(clean.as_borrowed());
        assert!(id.is_none() && defect.is_none());
        assert_eq!(headers.get("ok"), Some("1"));

        let two = OwnedHeaders::new()
            .insert_raw(&[0x80], None)
            .insert_raw(&[0xc3, 0x28], Some(b""));
        let (_, headers, defect) = read_headers(two.as_borrowed());
        assert_eq!(headers.len(), 0);
        let defect = defect.expect("a defect").to_string();
        assert!(
            defect.contains(r#"2 Kafka header names are not UTF-8 (bytes b"\x80", b"\xc3(")"#),
            "{defect}"
        );
    }
}
