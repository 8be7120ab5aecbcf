//! go-micro's wire format, so services of this framework share topics with go-micro
//! services while a team moves from one to the other.
//!
//! go-micro's Kafka and NATS brokers carry no native headers: a message is the JSON
//! envelope `{"Header":{"name":"value",…},"Body":"<base64>"}` (interop/gomicro/WIRE.md
//! has the details). [`GoMicroBroker`] wraps any broker:
//!
//! - [`WireFormat::GoMicro`] publishes envelopes: the message's headers go into `Header`,
//!   with go-micro's own `Micro-Topic` (the topic, which go-micro's subscribers route on),
//!   `Micro-Id` (the message id) and `Content-Type` (from `content-type`) added where the
//!   message has none, and the payload goes into `Body`. The key still travels natively where the backend has keys.
//! - [`WireFormat::Accept`] publishes native messages.
//! - Both take either on receipt: an envelope is unwrapped (its `Header` entries become
//!   headers, `Micro-Id` the message id, `Body` the payload), anything else arrives as it
//!   is, so one topic can be shared while services move.
//!
//! Chosen by the URL, on every backend: `kafka://…?format=go-micro`,
//! `nats://…?format=accept` ([`connect`](crate::connect) takes the key off before the
//! backend sees the URL). What an envelope cannot carry (a header value that is not text
//! or is null, a name given twice, a tombstone) is a typed error at publish.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::{Capabilities, async_trait};
use crate::{Broker, Error, ErrorKind, Headers, Message, Result, SubscribeOptions, Subscription};

/// go-micro's topic header, which its subscribers route on.
pub const MICRO_TOPIC: &str = "Micro-Topic";
/// go-micro's message id header.
pub const MICRO_ID: &str = "Micro-Id";
/// go-micro's content type header, from which its subscribers pick a codec.
pub const CONTENT_TYPE: &str = "Content-Type";

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireFormat {
    /// Native headers (the default; no wrapper).
    Native,
    /// Native on publish; native messages and go-micro envelopes on receipt.
    Accept,
    /// go-micro envelopes on publish; native messages and envelopes on receipt.
    GoMicro,
}

impl WireFormat {
    /// The format a URL's `format` value names: `native`, `accept` or `go-micro`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "native" => Ok(WireFormat::Native),
            "accept" => Ok(WireFormat::Accept),
            "go-micro" | "gomicro" => Ok(WireFormat::GoMicro),
            other => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("unknown wire format `{other}`; valid: native, accept, go-micro"),
            )),
        }
    }
}

/// The envelope, as go-micro's JSON codec writes it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(rename = "Header", default)]
    header: Option<BTreeMap<String, String>>,
    /// `null` when go-micro's message had no body: an empty payload.
    #[serde(rename = "Body")]
    body: Option<String>,
}

/// `message`, published to `topic`, as a go-micro envelope.
pub fn to_envelope(topic: &str, message: &Message) -> Result<Message> {
    if message.is_tombstone() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "a go-micro envelope has no tombstone: its Body is always there",
        ));
    }
    let mut header = BTreeMap::new();
    for (name, value) in message.headers().iter() {
        let text = value.to_str().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidHeader,
                format!("the header `{name}` is {value:?}, and go-micro's envelope carries only text values"),
            )
        })?;
        if header.insert(name.to_owned(), text.to_owned()).is_some() {
            return Err(Error::new(
                ErrorKind::InvalidHeader,
                format!(
                    "the header `{name}` appears twice, and go-micro's envelope carries one value per name"
                ),
            ));
        }
    }
    header
        .entry(MICRO_TOPIC.to_owned())
        .or_insert_with(|| topic.to_owned());
    // go-micro's subscribers pick their codec from `Content-Type`, spelled so.
    if let Some(content_type) = message.headers().get(crate::headers::names::CONTENT_TYPE) {
        header
            .entry(CONTENT_TYPE.to_owned())
            .or_insert_with(|| content_type.to_owned());
    }
    header
        .entry(MICRO_ID.to_owned())
        .or_insert_with(|| message.id().to_string());
    let envelope = Envelope {
        header: Some(header),
        body: Some(STANDARD.encode(message.payload())),
    };
    let json = serde_json::to_vec(&envelope)
        .map_err(|e| Error::with_source(ErrorKind::Codec, "encoding a go-micro envelope", e))?;
    let mut out = Message::new(json).with_id(message.id().clone());
    if let Some(key) = message.key_bytes() {
        out = out.with_key_bytes(key.clone());
    }
    Ok(out)
}

/// `message` unwrapped when its payload is a go-micro envelope; `None` when it is not one.
pub fn from_envelope(message: &Message) -> Option<Message> {
    let payload = message.payload();
    if payload.first() != Some(&b'{') {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(payload).ok()?;
    let body = match envelope.body {
        Some(body) => STANDARD.decode(body.as_bytes()).ok()?,
        None => Vec::new(),
    };
    let header = envelope.header.unwrap_or_default();
    let id = header
        .get(MICRO_ID)
        .filter(|id| !id.is_empty())
        .map_or_else(|| message.id().clone(), |id| id.as_str().into());
    let mut headers: Headers = message.headers().clone();
    for (name, value) in header {
        headers.insert(name, value);
    }
    let mut out = Message::from_parts(id, message.key_bytes().cloned(), headers, body.into());
    if message.is_tombstone() {
        out = out.into_tombstone();
    }
    Some(out)
}

/// A broker that speaks go-micro's wire format as [`WireFormat`] says.
#[derive(Debug)]
pub struct GoMicroBroker {
    inner: Arc<dyn Broker>,
    format: WireFormat,
}

impl GoMicroBroker {
    /// Wraps `inner`; [`WireFormat::Native`] gives `inner` back unwrapped.
    pub fn wrap(inner: Arc<dyn Broker>, format: WireFormat) -> Arc<dyn Broker> {
        match format {
            WireFormat::Native => inner,
            format => Arc::new(GoMicroBroker { inner, format }),
        }
    }
}

#[async_trait]
impl Broker for GoMicroBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let message = match self.format {
            WireFormat::GoMicro => to_envelope(topic, &message)?,
            _ => message,
        };
        self.inner.publish(topic, message).await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Result<(), crate::batch::BatchError> {
        match self.format {
            WireFormat::GoMicro => {
                crate::batch::publish_prepared(&*self.inner, topic, messages, |message| {
                    to_envelope(topic, &message)
                })
                .await
            }
            _ => self.inner.publish_batch(topic, messages).await,
        }
    }

    async fn subscribe(&self, pattern: &str, options: SubscribeOptions) -> Result<Subscription> {
        let subscription = self.inner.subscribe(pattern, options.clone()).await?;
        let lag = subscription.lag_source();
        let deliveries = subscription.map(|item| {
            item.map(|delivery| delivery.map_message(|m| from_envelope(&m).unwrap_or(m)))
        });
        Ok(Subscription::new(pattern, &options, deliveries).with_lag_source(lag))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn health(&self) -> crate::health::Health {
        self.inner.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderValue;

    #[test]
    fn an_envelope_is_what_go_micro_writes_and_reads_back() {
        let message = Message::new(&b"\x12\x03abc"[..])
            .with_id("id-1")
            .with_key("user-7")
            .with_header("trace-id", "t-1");
        let envelope = to_envelope("notification.submit", &message).expect("envelope");
        assert_eq!(
            std::str::from_utf8(envelope.payload()).expect("JSON"),
            r#"{"Header":{"Micro-Id":"id-1","Micro-Topic":"notification.submit","trace-id":"t-1"},"Body":"EgNhYmM="}"#
        );
        assert_eq!(envelope.key_str(), Some("user-7"));
        let back = from_envelope(&envelope).expect("an envelope");
        assert_eq!(back.payload(), message.payload());
        assert_eq!(back.id().as_str(), "id-1");
        assert_eq!(back.headers().get("trace-id"), Some("t-1"));
        assert_eq!(back.headers().get(MICRO_TOPIC), Some("notification.submit"));
    }

    #[test]
    fn the_content_type_is_told_to_go_micro_as_it_spells_it() {
        let message = Message::new("{}").with_header("content-type", "application/protobuf");
        let envelope = to_envelope("t", &message).expect("envelope");
        let json: serde_json::Value = serde_json::from_slice(envelope.payload()).expect("JSON");
        assert_eq!(json["Header"]["Content-Type"], "application/protobuf");
        assert_eq!(json["Header"]["content-type"], "application/protobuf");
    }

    #[test]
    fn go_micros_own_envelopes_are_unwrapped() {
        let raw = Message::new(
            r#"{"Header":{"Micro-From":"gomicro-peer","trace-id":"go-0"},"Body":"eyJuIjowfQ=="}"#,
        );
        let got = from_envelope(&raw).expect("an envelope");
        assert_eq!(got.payload().as_ref(), br#"{"n":0}"#);
        assert_eq!(got.headers().get("Micro-From"), Some("gomicro-peer"));
        assert_eq!(got.id(), raw.id(), "no Micro-Id: the id it arrived with");
        let null_header = Message::new(r#"{"Header":null,"Body":""}"#);
        assert!(from_envelope(&null_header).is_some_and(|m| m.payload().is_empty()));
        // What go-micro writes for a message without a body.
        let null_body = Message::new(r#"{"Header":{"a":"1"},"Body":null}"#);
        let got = from_envelope(&null_body).expect("an envelope");
        assert!(got.payload().is_empty());
        assert_eq!(got.headers().get("a"), Some("1"));
        assert!(from_envelope(&Message::new(r#"{"Header":null,"Body":null}"#)).is_some());
    }

    #[test]
    fn native_payloads_are_not_taken_for_envelopes() {
        for payload in [
            &b"\x12\x03abc"[..],
            br#"{"orderId":"1"}"#,
            br#"{"Header":{},"Body":"not base64!"}"#,
            br#"{"Header":{},"Body":"","Extra":1}"#,
        ] {
            assert!(
                from_envelope(&Message::new(payload)).is_none(),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn what_an_envelope_cannot_carry_is_a_typed_error() {
        let binary = Message::new("x").with_header("bin", vec![0xff, 0xfe]);
        let null = Message::new("x").with_header("n", HeaderValue::null());
        let mut twice = Message::new("x");
        twice.headers_mut().append("a", "1");
        twice.headers_mut().append("a", "2");
        for message in [binary, null, twice] {
            let err = to_envelope("t", &message).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::InvalidHeader, "{err}");
        }
        let err = to_envelope("t", &Message::tombstone()).expect_err("tombstone");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(WireFormat::parse("protobuf").is_err());
    }
}
