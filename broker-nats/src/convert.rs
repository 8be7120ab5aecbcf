//! Mapping messages and headers between broker-core and NATS.
//!
//! Every header travels as a native NATS header. The client keeps headers in a hash map,
//! which loses the order between different names, so the publisher adds one
//! transport header, [`ORDER_HEADER`], listing the names in order. NATS trims the
//! whitespace around header values and cannot carry line breaks; such values, and values
//! that are not UTF-8 (the client keeps values as text), travel percent-encoded (see
//! [`percent`](crate::percent)) and are marked so in the order header: between services
//! of this framework every byte round-trips, while other clients see the encoded text. A null value and a tombstone
//! have no NATS form: publishing one fails with [`ErrorKind::Unsupported`]. The key and the
//! id travel as `x-message-key` and `x-message-id` (percent-encoded where needed); on
//! JetStream the id is also the `Nats-Msg-Id`, scoped by topic. Transport headers are
//! removed on receipt, so a message round-trips exactly.

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use broker_core::headers::{self, names};
use broker_core::{Error, ErrorKind, Headers, Message, MessageId, Result};
use bytes::Bytes;

use crate::percent;

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

fn header_value(value: &str) -> HeaderValue {
    // `percent::travels_verbatim` or percent-encoded: no line breaks, so this cannot fail.
    value.parse().unwrap_or_default()
}

/// What NATS cannot carry at all: a null header value, a tombstone.
fn check_carriable(message: &Message) -> Result<()> {
    if message.is_tombstone() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "NATS has no tombstones: a message without a value cannot be told from an empty payload",
        ));
    }
    if let Some((name, _)) = message.headers().iter().find(|(_, v)| v.is_null()) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the header `{name}` is null, which NATS headers cannot carry (only Kafka can)"
            ),
        ));
    }
    Ok(())
}

/// Which id headers a publish carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdHeaders {
    /// None: the receiver sees an id generated on receipt (core NATS with
    /// `message_ids` off).
    Omitted,
    /// The message id.
    MessageId,
    /// The message id and the JetStream `Nats-Msg-Id`.
    WithNatsMsgId,
}

/// The NATS headers of `message` published to `topic`, with the id headers `ids` says.
/// Empty when the message has no user headers and no key and `ids` is
/// [`IdHeaders::Omitted`]: such a message is sent without a header block.
///
/// The order header is left out when the receiver recovers the order without it: every
/// value travels verbatim and the names are already sorted (the receiver puts headers
/// the order does not list in name order, keeping the order of one name's values).
pub(crate) fn to_nats_headers(topic: &str, message: &Message, ids: IdHeaders) -> Result<HeaderMap> {
    check_carriable(message)?;
    // Reserved names are carried in message fields, never as user headers.
    let user = || {
        message
            .headers()
            .iter()
            .filter(|(name, _)| !names::is_reserved(name))
    };
    // Which values travel verbatim (the first 64; past those it is checked again), and
    // whether the receiver recovers the order without the order header.
    let mut verbatim_bits = 0u64;
    let mut recoverable = true;
    let mut order_len = 0;
    let mut previous: Option<&str> = None;
    for (i, (name, value)) in user().enumerate() {
        let verbatim = percent::travels_verbatim(value.as_bytes());
        if verbatim && i < 64 {
            verbatim_bits |= 1 << i;
        }
        recoverable &= verbatim && previous.is_none_or(|p| p <= name);
        previous = Some(name);
        order_len += name.len() + 2;
    }
    let mut map = HeaderMap::new();
    let mut order = String::with_capacity(if recoverable { 0 } else { order_len });
    let mut user_msg_id = false;
    for (i, (name, value)) in user().enumerate() {
        let header = header_name(name)?;
        user_msg_id |= name == NATS_MSG_ID;
        let verbatim = if i < 64 {
            verbatim_bits & (1 << i) != 0
        } else {
            percent::travels_verbatim(value.as_bytes())
        };
        if !recoverable {
            if !order.is_empty() {
                order.push(' ');
            }
            order.push(if verbatim { '=' } else { '%' });
            order.push_str(name);
        }
        let value = match value.to_str() {
            Some(text) if verbatim => header_value(text),
            _ => HeaderValue::from(percent::encode(value.as_bytes())),
        };
        // A name's first value is an insert, one hash lookup where an append takes two;
        // past a few headers, the look back is not worth it.
        if i < 16 && !user().take(i).any(|(earlier, _)| earlier == name) {
            map.insert(header, value);
        } else {
            map.append(header, value);
        }
    }
    if !order.is_empty() {
        map.insert(ORDER_HEADER_NAME, HeaderValue::from(order));
    }
    if ids != IdHeaders::Omitted {
        map.insert(
            MESSAGE_ID_NAME,
            HeaderValue::from(percent::encode_if_needed(message.id().as_str().as_bytes())),
        );
    }
    if let Some(key) = message.key() {
        map.insert(
            MESSAGE_KEY_NAME,
            HeaderValue::from(percent::encode_if_needed(key)),
        );
    }
    if ids == IdHeaders::WithNatsMsgId && !user_msg_id {
        map.insert(NATS_MSG_ID, header_value(&nats_msg_id(topic, message.id())));
    }
    Ok(map)
}

const ORDER_HEADER_NAME: HeaderName = HeaderName::from_static(ORDER_HEADER);
const MESSAGE_ID_NAME: HeaderName = HeaderName::from_static(names::MESSAGE_ID);
const MESSAGE_KEY_NAME: HeaderName = HeaderName::from_static(names::MESSAGE_KEY);

/// The bytes `headers` take on the wire (the `HPUB` header block; none when empty).
pub(crate) fn headers_wire_len(headers: &HeaderMap) -> usize {
    if headers.is_empty() {
        return 0;
    }
    let mut len = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        for value in values {
            len += AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2;
        }
    }
    len
}

/// What could not be read of a NATS message: its header block, when another client wrote
/// one that does not parse (the patched client then delivers the message without headers,
/// with a description saying why, instead of dropping the connection).
pub(crate) fn defect(message: &async_nats::Message) -> Option<Error> {
    if message.headers.is_some() || message.status.is_some() {
        return None;
    }
    let description = message.description.as_deref()?;
    Some(Error::new(
        ErrorKind::Codec,
        format!(
            "the NATS header block of this message could not be read ({description}); it arrived without headers"
        ),
    ))
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
    // One pass over the map (a hash lookup per transport header would cost more than
    // walking the few entries there are).
    let mut id = None;
    let mut key = None;
    let mut order = None;
    let mut user: Vec<(&str, &[HeaderValue])> = Vec::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let name: &str = name.as_ref();
        match name {
            names::MESSAGE_ID => id = values.first().map(HeaderValue::as_str),
            names::MESSAGE_KEY => key = values.first().map(HeaderValue::as_str),
            ORDER_HEADER => order = values.first().map(HeaderValue::as_str),
            _ => user.push((name, values.as_slice())),
        }
    }
    let id = match id {
        Some(v) if !v.contains('%') && !v.is_empty() => MessageId::from(v),
        Some(v) if !v.is_empty() => {
            MessageId::from(String::from_utf8_lossy(&percent::decode_to_bytes(v)).as_ref())
        }
        _ => MessageId::generate(),
    };
    let key = key.map(percent::decode_to_bytes);
    // The `Nats-Msg-Id` the publisher added for this message, which is not a user header.
    let ours = user
        .iter()
        .any(|(name, _)| *name == NATS_MSG_ID)
        .then(|| nats_msg_id(topic, &id));
    let ours = ours.as_deref();

    let mut out = match order {
        // No order header: the publisher sent every value verbatim with the names in
        // order, or another client sent the message; either way the headers come out
        // sorted by name, each name's values in arrival order.
        None => {
            user.sort_unstable_by(|a, b| a.0.cmp(b.0));
            user.into_iter()
                .flat_map(|(name, values)| values.iter().map(move |v| (name, v.as_str())))
                .filter(|&(name, value)| name != NATS_MSG_ID || Some(value) != ours)
                .map(|(name, value)| (name, headers::HeaderValue::from(value)))
                .collect()
        }
        Some(order) => in_order(order, user, ours),
    };
    if let Some(reply) = reply
        && !out.contains(names::REPLY_TO)
    {
        out.append(names::REPLY_TO, reply);
    }
    Message::from_parts(id, key, out, payload)
}

/// The user headers in the order the order header lists them (decoding the values it
/// marks as percent-encoded), then any it does not list, sorted by name. `ours` is the
/// publisher's own `Nats-Msg-Id`, left out.
fn in_order(order: &str, mut user: Vec<(&str, &[HeaderValue])>, ours: Option<&str>) -> Headers {
    user.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Per name, how many of its values were handed out.
    let mut taken = vec![0; user.len()];
    let mut take = |i: usize| -> Option<&str> {
        let (name, values) = user[i];
        while let Some(value) = values.get(taken[i]) {
            taken[i] += 1;
            let value = value.as_str();
            if name != NATS_MSG_ID || Some(value) != ours {
                return Some(value);
            }
        }
        None
    };
    let total = user.iter().map(|(_, values)| values.len()).sum();
    let mut out: Vec<(&str, headers::HeaderValue)> = Vec::with_capacity(total);
    for item in order.split(' ').filter(|s| !s.is_empty()) {
        let (encoded, name) = if let Some(name) = item.strip_prefix('=') {
            (false, name)
        } else if let Some(name) = item.strip_prefix('%') {
            (true, name)
        } else {
            continue;
        };
        let Ok(i) = user.binary_search_by(|(n, _)| (*n).cmp(name)) else {
            continue;
        };
        let Some(value) = take(i) else {
            continue;
        };
        let value = if encoded {
            headers::HeaderValue::from(percent::decode(value))
        } else {
            headers::HeaderValue::from(value)
        };
        out.push((user[i].0, value));
    }
    // Headers the order does not list (added by another client): sorted by name.
    for (i, &(name, _)) in user.iter().enumerate() {
        while let Some(value) = take(i) {
            out.push((name, headers::HeaderValue::from(value)));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: &Message, ids: IdHeaders) -> Message {
        let map = to_nats_headers("a.b", message, ids).expect("headers");
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
        for ids in [IdHeaders::MessageId, IdHeaders::WithNatsMsgId] {
            let got = round_trip(&m, ids);
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
        let map = to_nats_headers("t", &sorted, IdHeaders::MessageId).expect("headers");
        assert!(map.get(ORDER_HEADER).is_none());
        let got = round_trip(&sorted, IdHeaders::MessageId);
        assert_eq!(got.headers(), sorted.headers());
        for unsorted in [
            Message::new("x")
                .with_header("b", "1")
                .with_header("a", "2"),
            Message::new("x").with_header("a", " padded"),
        ] {
            let map = to_nats_headers("t", &unsorted, IdHeaders::MessageId).expect("headers");
            assert!(map.get(ORDER_HEADER).is_some());
            assert_eq!(
                round_trip(&unsorted, IdHeaders::MessageId).headers(),
                unsorted.headers()
            );
        }
    }

    #[test]
    fn msg_id_is_sent_and_stripped() {
        let m = Message::new("x").with_id("id-1");
        let map = to_nats_headers("a.b", &m, IdHeaders::WithNatsMsgId).expect("headers");
        assert_eq!(map.get(NATS_MSG_ID).map(|v| v.as_str()), Some("a.b:id-1"));
        let got = from_nats("a.b", Some(&map), Bytes::new(), None);
        assert!(got.headers().is_empty());
        // A user's own Nats-Msg-Id is kept.
        let m = Message::new("x").with_header(NATS_MSG_ID, "mine");
        let got = round_trip(&m, IdHeaders::WithNatsMsgId);
        assert_eq!(got.headers().get(NATS_MSG_ID), Some("mine"));
    }

    #[test]
    fn omitted_ids_leave_no_header_block_when_nothing_else_travels() {
        let bare = Message::new("x");
        let map = to_nats_headers("t", &bare, IdHeaders::Omitted).expect("headers");
        assert!(map.is_empty());
        assert_eq!(headers_wire_len(&map), 0);
        let got = from_nats("t", None, bare.payload().clone(), None);
        assert_ne!(got.id(), bare.id(), "the receiver generates its own id");
        assert!(!got.id().as_str().is_empty());

        let keyed = Message::new("x").with_key("k").with_header("a", "1");
        let map = to_nats_headers("t", &keyed, IdHeaders::Omitted).expect("headers");
        assert!(map.get(names::MESSAGE_ID).is_none());
        let got = round_trip(&keyed, IdHeaders::Omitted);
        assert_eq!(got.key_str(), Some("k"));
        assert_eq!(got.headers(), keyed.headers());
        assert_ne!(got.id(), keyed.id());
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
            let err = to_nats_headers("t", &m, IdHeaders::MessageId).expect_err(name);
            assert_eq!(err.kind(), ErrorKind::InvalidHeader, "{name}");
        }
    }

    #[test]
    fn a_foreign_order_header_is_read_without_panicking() {
        let mut map = HeaderMap::new();
        map.append("b", "1");
        map.append("a", "2");
        map.insert(ORDER_HEADER, "é =b x =a");
        let got = from_nats("t", Some(&map), Bytes::new(), None);
        assert_eq!(got.headers(), &Headers::from_iter([("b", "1"), ("a", "2")]));
    }

    #[test]
    fn foreign_headers_and_reply_are_exposed() {
        let mut map = HeaderMap::new();
        map.append("z", "1");
        map.append("a", "2");
        let got = from_nats("t", Some(&map), Bytes::new(), Some("_INBOX.x"));
        assert_eq!(
            got.headers(),
            &Headers::from_iter([("a", "2"), ("z", "1"), ("reply-to", "_INBOX.x")])
        );
    }

    #[test]
    fn binary_keys_and_values_round_trip_byte_for_byte() {
        let bytes = [0xff, 0x00, 0xfe, 0x80, 0x41];
        let m = Message::new("x")
            .with_key(bytes)
            .with_header("bin", bytes.to_vec())
            .with_header("crlf", "a\r\nb")
            .with_header("text", "plain");
        for ids in [
            IdHeaders::MessageId,
            IdHeaders::WithNatsMsgId,
            IdHeaders::Omitted,
        ] {
            let got = round_trip(&m, ids);
            assert_eq!(got.key(), Some(&bytes[..]));
            assert_eq!(got.headers(), m.headers());
        }
    }

    #[test]
    fn null_values_and_tombstones_have_no_nats_form() {
        let null = Message::new("x").with_header("n", headers::HeaderValue::null());
        let err = to_nats_headers("t", &null, IdHeaders::MessageId).expect_err("null");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        let tombstone = Message::tombstone().with_key("k");
        let err = to_nats_headers("t", &tombstone, IdHeaders::MessageId).expect_err("tombstone");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
}
