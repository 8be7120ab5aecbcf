//! One JSON line per message: text where the bytes are UTF-8, base64 where not.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use broker::Delivery;
use broker::headers::HeaderValue;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// A delivery as the JSON object `sub` and `reply` print:
/// `{"topic","key","id","headers":{..},"payload"}`, keys in that order.
#[derive(Debug)]
pub(crate) struct JsonLine<'a>(pub(crate) &'a Delivery);

impl JsonLine<'_> {
    /// The line, without its newline.
    pub(crate) fn render(&self) -> String {
        // Serializing maps of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for JsonLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let delivery = self.0;
        let message = delivery.message();
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("topic", delivery.topic())?;
        match message.key() {
            None => map.serialize_entry("key", &())?,
            Some(key) => match std::str::from_utf8(key) {
                Ok(text) => map.serialize_entry("key", text)?,
                Err(_) => map.serialize_entry("key_base64", &STANDARD.encode(key))?,
            },
        }
        map.serialize_entry("id", message.id().as_str())?;
        map.serialize_entry("headers", &HeadersJson(message.headers()))?;
        let payload = message.payload();
        match std::str::from_utf8(payload) {
            Ok(text) => map.serialize_entry("payload", text)?,
            Err(_) => map.serialize_entry("payload_base64", &STANDARD.encode(payload))?,
        }
        if message.is_tombstone() {
            map.serialize_entry("tombstone", &true)?;
        }
        if let Some(defect) = delivery.defect() {
            map.serialize_entry("defect", &defect.display_chain())?;
        }
        map.end()
    }
}

/// Headers in their order; a name written more than once becomes an array.
struct HeadersJson<'a>(&'a broker::Headers);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seen: Vec<&str> = Vec::new();
        let mut map = serializer.serialize_map(None)?;
        for (name, _) in self.0.iter() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let values: Vec<ValueJson<'_>> = self.0.get_all(name).map(ValueJson).collect();
            match values.as_slice() {
                [one] => map.serialize_entry(name, one)?,
                many => map.serialize_entry(name, many)?,
            }
        }
        map.end()
    }
}

/// A header value: a string, `{"base64": ".."}`, or null.
struct ValueJson<'a>(&'a HeaderValue);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_null() {
            return serializer.serialize_none();
        }
        match self.0.to_str() {
            Some(text) => serializer.serialize_str(text),
            None => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("base64", &STANDARD.encode(self.0.as_bytes()))?;
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use broker::Message;
    use broker::backend::{Acknowledger, settled};
    use broker::delivery::Redelivery;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Debug)]
    struct NoAck;

    impl Acknowledger for NoAck {
        fn ack(self: Box<Self>) -> futures::future::BoxFuture<'static, broker::Result<()>> {
            settled()
        }
        fn nack(
            self: Box<Self>,
            _: Redelivery,
        ) -> futures::future::BoxFuture<'static, broker::Result<()>> {
            settled()
        }
    }

    fn line(message: Message) -> Value {
        let delivery = Delivery::new(message, "order.created", Box::new(NoAck));
        let text = JsonLine(&delivery).render();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn text_stays_text() {
        let message = Message::new("hello")
            .with_id("m1")
            .with_key("user-7")
            .with_header("trace", "abc");
        assert_eq!(
            line(message),
            json!({"topic": "order.created", "key": "user-7", "id": "m1",
                   "headers": {"trace": "abc"}, "payload": "hello"})
        );
    }

    #[test]
    fn bytes_become_base64_with_a_marker() {
        let mut message = Message::new(vec![0xff, 0x00])
            .with_id("m2")
            .with_key([0xfe])
            .with_header("bin", vec![0x80]);
        message.headers_mut().append("twice", "a");
        message.headers_mut().append("twice", HeaderValue::null());
        assert_eq!(
            line(message),
            json!({"topic": "order.created", "key_base64": "/g==", "id": "m2",
                   "headers": {"bin": {"base64": "gA=="}, "twice": ["a", null]},
                   "payload_base64": "/wA="})
        );
    }

    #[test]
    fn keys_keep_their_order() {
        let delivery = Delivery::new(Message::new("x").with_id("i"), "t", Box::new(NoAck));
        let text = JsonLine(&delivery).render();
        assert!(
            text.starts_with(r#"{"topic":"t","key":null,"id":"i","headers":{},"payload":"x"}"#),
            "{text}"
        );
    }
}
