//! Mapping messages and headers between broker-core and NATS.
//!
//! Every header travels as a native NATS header. The client keeps headers in a hash map,
//! which loses the order between different names, so the publisher adds one
//! transport header, [`ORDER_HEADER`], listing the names in order. NATS trims the
//! whitespace around header values and cannot carry line breaks; such values travel
//! percent-encoded and are marked so in the order header. The key and the id travel as
//! `x-message-key` and `x-message-id`; on JetStream the id is also the `Nats-Msg-Id`,
//! scoped by topic. Transport headers are removed on receipt, so a message round-trips
//! exactly.

use std::collections::{HashMap, VecDeque};

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use broker_core::headers::names;
use broker_core::{Error, ErrorKind, Headers, Message, MessageId, Result};
use bytes::Bytes;

/// The transport header listing the message's header names in order.
pub const ORDER_HEADER: &str = "x-broker-header-order";

/// JetStream's duplicate-detection header.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// The `Nats-Msg-Id` of a message: its id, scoped by topic, so that the same id
/// published to two topics of one stream (a dead letter, say) is not taken for a
/// duplicate.
pub(crate) fn nats_msg_id(topic: &str, id: &MessageId) -> String {
    format!("{topic}:{id}")
}

fn is_transport(name: &str) -> bool {
    name == ORDER_HEADER || name == names::MESSAGE_ID || name == names::MESSAGE_KEY
}

fn header_name(name: &str) -> Result<HeaderName> {
    if name.is_empty() || is_transport(name) {
        return Err(Error::new(
            ErrorKind::InvalidHeader,
            format!("the header name `{name}` is reserved or empty"),
        ));
    }
    name.parse::<HeaderName>().map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidHeader,
            format!(
                "the header name `{}` cannot travel on NATS (printable ASCII without `:` only)",
                name.escape_debug()
            ),
            e,
        )
    })
}

/// Whether NATS carries `value` unchanged (no line breaks or control characters, no
/// whitespace at either end, which the protocol trims).
fn travels_verbatim(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.iter().all(|b| (b' '..=b'~').contains(b)) {
        // Printable ASCII and spaces (the common case): only the ends need a look.
        return bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ');
    }
    let ends_ok = !value.starts_with(char::is_whitespace) && !value.ends_with(char::is_whitespace);
    ends_ok && !value.chars().any(char::is_control)
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for byte in value.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8.
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn header_value(value: &str) -> HeaderValue {
    // `travels_verbatim` or percent-encoded: no line breaks, so this cannot fail.
    value.parse().unwrap_or_default()
}

/// The NATS headers of `message` published to `topic`; with `msg_id`, also the
/// JetStream `Nats-Msg-Id`.
///
/// The order header is left out when the receiver recovers the order without it: every
/// value travels verbatim and the names are already sorted (the receiver puts headers
/// the order does not list in name order, keeping the order of one name's values).
pub(crate) fn to_nats_headers(topic: &str, message: &Message, msg_id: bool) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    let mut order = String::new();
    let mut user_msg_id = false;
    let mut recoverable = true;
    let mut previous: Option<&str> = None;
    for (name, value) in message.headers().iter() {
        if names::is_reserved(name) {
            // Carried in message fields, never as user headers.
            continue;
        }
        let header = header_name(name)?;
        user_msg_id |= name == NATS_MSG_ID;
        if previous.is_some_and(|p| p > name) {
            recoverable = false;
        }
        previous = Some(name);
        if !order.is_empty() {
            order.push(' ');
        }
        if travels_verbatim(value) {
            order.push('=');
            map.append(header, header_value(value));
        } else {
            recoverable = false;
            order.push('%');
            map.append(header, HeaderValue::from(percent_encode(value)));
        }
        order.push_str(name);
    }
    if !order.is_empty() && !recoverable {
        map.insert(ORDER_HEADER_NAME, HeaderValue::from(order));
    }
    map.insert(
        MESSAGE_ID_NAME,
        HeaderValue::from(percent_encode_if_needed(message.id().as_str())),
    );
    if let Some(key) = message.key() {
        map.insert(
            MESSAGE_KEY_NAME,
            HeaderValue::from(percent_encode_if_needed(key)),
        );
    }
    if msg_id && !user_msg_id {
        map.insert(NATS_MSG_ID, header_value(&nats_msg_id(topic, message.id())));
    }
    Ok(map)
}

const ORDER_HEADER_NAME: HeaderName = HeaderName::from_static(ORDER_HEADER);
const MESSAGE_ID_NAME: HeaderName = HeaderName::from_static(names::MESSAGE_ID);
const MESSAGE_KEY_NAME: HeaderName = HeaderName::from_static(names::MESSAGE_KEY);

/// `value` percent-decoded when it has an escape, else as it is.
fn decode(value: &str) -> String {
    if value.contains('%') {
        percent_decode(value).unwrap_or_else(|| value.to_owned())
    } else {
        value.to_owned()
    }
}

/// Id and key are always percent-decoded on receipt, so `%` itself is escaped too.
fn percent_encode_if_needed(value: &str) -> String {
    // One pass for the common case (a generated id: hex digits and hyphens).
    let plain = value.bytes().all(|b| b.is_ascii_graphic() && b != b'%');
    if plain || (travels_verbatim(value) && !value.contains('%')) {
        value.to_owned()
    } else {
        percent_encode(value)
    }
}

/// The bytes `headers` take on the wire (the `HPUB` header block).
pub(crate) fn headers_wire_len(headers: &HeaderMap) -> usize {
    let mut len = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        for value in values {
            len += AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2;
        }
    }
    len
}

/// Rebuilds a message from a NATS message's headers and payload. `reply` is the native
/// reply subject (core NATS only), exposed as the `reply-to` header when the message has
/// none.
pub(crate) fn from_nats(
    topic: &str,
    headers: Option<&HeaderMap>,
    payload: Bytes,
    reply: Option<&str>,
) -> Message {
    let empty = HeaderMap::new();
    let map = headers.unwrap_or(&empty);

    let id = match map.get(MESSAGE_ID_NAME).map(HeaderValue::as_str) {
        Some(v) if !v.contains('%') && !v.is_empty() => MessageId::from(v),
        Some(v) if !v.is_empty() => MessageId::from(decode(v)),
        _ => MessageId::generate(),
    };
    let key = map.get(MESSAGE_KEY_NAME).map(|v| decode(v.as_str()));

    // Every user value, per name, in arrival order.
    let mut values: HashMap<String, VecDeque<String>> = HashMap::new();
    for (name, vs) in map.iter() {
        let name: &str = name.as_ref();
        if is_transport(name) {
            continue;
        }
        if name == NATS_MSG_ID {
            let ours = nats_msg_id(topic, &id);
            let kept: VecDeque<String> = vs
                .iter()
                .map(|v| v.as_str().to_owned())
                .filter(|v| *v != ours)
                .collect();
            if !kept.is_empty() {
                values.insert(name.to_owned(), kept);
            }
            continue;
        }
        values.insert(
            name.to_owned(),
            vs.iter().map(|v| v.as_str().to_owned()).collect(),
        );
    }

    let mut out = Headers::new();
    if let Some(order) = map.get(ORDER_HEADER_NAME).map(HeaderValue::as_str) {
        for item in order.split(' ').filter(|s| !s.is_empty()) {
            let (encoded, name) = match item.split_at(1) {
                ("=", name) => (false, name),
                ("%", name) => (true, name),
                _ => continue,
            };
            let Some(value) = values.get_mut(name).and_then(VecDeque::pop_front) else {
                continue;
            };
            let value = if encoded {
                percent_decode(&value).unwrap_or(value)
            } else {
                value
            };
            out.append(name, value);
        }
    }
    // Headers the order does not list (added by another client): sorted by name.
    let mut rest: Vec<_> = values.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, vs) in rest {
        for value in vs {
            out.append(name.clone(), value);
        }
    }
    if let Some(reply) = reply
        && !out.contains(names::REPLY_TO)
    {
        out.append(names::REPLY_TO, reply);
    }
    Message::from_parts(id, key, out, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: &Message, msg_id: bool) -> Message {
        let map = to_nats_headers("a.b", message, msg_id).expect("headers");
        from_nats("a.b", Some(&map), message.payload().clone(), None)
    }

    #[test]
    fn order_case_and_repeats_survive() {
        let mut m = Message::new("x")
            .with_key("k %1")
            .with_header("Trace-Id", "t")
            .with_header("b-tag", "first")
            .with_header("A-Tag", "Mixed Case Value")
            .with_header("a-tag", "lower");
        m.headers_mut().append("b-tag", "");
        m.headers_mut().append("b-tag", "  padded\r\nmulti  ");
        m.headers_mut().append("Trace-Id", "ünï 100%");
        for msg_id in [false, true] {
            let got = round_trip(&m, msg_id);
            assert_eq!(got.id(), m.id());
            assert_eq!(got.key(), m.key());
            assert_eq!(
                got.headers().iter().collect::<Vec<_>>(),
                m.headers().iter().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn order_header_only_when_the_order_is_not_recoverable() {
        let sorted = Message::new("x")
            .with_header("a", "1")
            .with_header("b", "2");
        let map = to_nats_headers("t", &sorted, false).expect("headers");
        assert!(map.get(ORDER_HEADER).is_none());
        let got = round_trip(&sorted, false);
        assert_eq!(got.headers(), sorted.headers());
        for unsorted in [
            Message::new("x")
                .with_header("b", "1")
                .with_header("a", "2"),
            Message::new("x").with_header("a", " padded"),
        ] {
            let map = to_nats_headers("t", &unsorted, false).expect("headers");
            assert!(map.get(ORDER_HEADER).is_some());
            assert_eq!(round_trip(&unsorted, false).headers(), unsorted.headers());
        }
    }

    #[test]
    fn msg_id_is_sent_and_stripped() {
        let m = Message::new("x").with_id("id-1");
        let map = to_nats_headers("a.b", &m, true).expect("headers");
        assert_eq!(map.get(NATS_MSG_ID).map(|v| v.as_str()), Some("a.b:id-1"));
        let got = from_nats("a.b", Some(&map), Bytes::new(), None);
        assert!(got.headers().is_empty());
        // A user's own Nats-Msg-Id is kept.
        let m = Message::new("x").with_header(NATS_MSG_ID, "mine");
        let got = round_trip(&m, true);
        assert_eq!(got.headers().get(NATS_MSG_ID), Some("mine"));
    }

    #[test]
    fn bad_names_are_invalid_header() {
        for name in ["", "a b", "a:b", "naïve", names::MESSAGE_ID, ORDER_HEADER] {
            let m = Message::new("x");
            let mut m = m;
            m.headers_mut().append(name, "v");
            if names::is_reserved(name) {
                continue;
            }
            let err = to_nats_headers("t", &m, false).expect_err(name);
            assert_eq!(err.kind(), ErrorKind::InvalidHeader, "{name}");
        }
    }

    #[test]
    fn foreign_headers_and_reply_are_exposed() {
        let mut map = HeaderMap::new();
        map.append("z", "1");
        map.append("a", "2");
        let got = from_nats("t", Some(&map), Bytes::new(), Some("_INBOX.x"));
        assert_eq!(
            got.headers().iter().collect::<Vec<_>>(),
            [("a", "2"), ("z", "1"), ("reply-to", "_INBOX.x")]
        );
    }
}
