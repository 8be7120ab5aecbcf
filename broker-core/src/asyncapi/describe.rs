//! What a codec says about its payloads, and the headers the framework sets.

use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::codec::{Codec, Json};
use crate::headers::names;

/// A codec that can describe its payloads of type `T` in an AsyncAPI document: [`Json`]
/// with a JSON Schema of `T` from schemars, [`Protobuf`](crate::codec::Protobuf) by the
/// message's protobuf name.
///
/// Implement it for a codec of your own to list its messages with
/// [`AsyncApi`](super::AsyncApi).
pub trait Describe<T>: Codec<T> {
    /// The payload of a `T`: its name and schema. Schemas the payload refers to are added
    /// to `schemas` (their `$ref`s point into `#/components/schemas/`).
    fn describe(&self, schemas: &mut SchemaGenerator) -> Payload;
}

/// A payload as an AsyncAPI message shows it: a name and a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub(super) name: String,
    pub(super) schema: Value,
}

impl Payload {
    /// A payload called `name` (the message's name in the document), described by the
    /// AsyncAPI (JSON Schema draft 07 based) schema `schema`.
    pub fn new(name: impl Into<String>, schema: Value) -> Self {
        Payload {
            name: name.into(),
            schema,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }
}

impl<T: Serialize + DeserializeOwned + JsonSchema> Describe<T> for Json {
    fn describe(&self, schemas: &mut SchemaGenerator) -> Payload {
        Payload::new(T::schema_name(), schemas.subschema_for::<T>().to_value())
    }
}

/// Protocol Buffers messages are named, not spelled out: the payload is the message's
/// binary encoding, named by its full protobuf name (`package.Message`) in the schema's
/// description and in `x-protobuf-message`.
#[cfg(feature = "protobuf")]
impl<T: prost::Name + Default> Describe<T> for crate::codec::Protobuf {
    fn describe(&self, _schemas: &mut SchemaGenerator) -> Payload {
        let full_name = T::full_name();
        Payload::new(
            T::NAME,
            json!({
                "type": "string",
                "format": "binary",
                "description": format!(
                    "The protobuf message `{full_name}`, in the protobuf binary encoding."
                ),
                "x-protobuf-message": full_name,
            }),
        )
    }
}

/// The schema of the headers the framework sets on a message whose payload has the MIME
/// type `content_type`.
pub(super) fn framework_headers(content_type: &str) -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    json!({
        "type": "object",
        "required": [names::MESSAGE_ID],
        "properties": {
            names::CONTENT_TYPE: {
                "type": "string",
                "const": content_type,
                "description": "The payload's MIME type, set by the typed publisher and checked by the typed handler.",
            },
            names::MESSAGE_ID: text("The message id (a UUIDv7 unless the publisher chose one): what deduplication and acknowledgement go by."),
            names::MESSAGE_KEY: text("The message key, on backends without a native key (Kafka carries it as the record key)."),
            names::CORRELATION_ID: text("Ties the message to the one that caused it; set by the observing layer."),
            names::REPLY_TO: text("On a request: the topic the reply is published to."),
            names::IN_REPLY_TO: text("On a reply: the id of the request it answers."),
            "traceparent": text("W3C trace context: the trace the message continues (with tracing on)."),
            "tracestate": text("W3C trace context: vendor trace state (with tracing on)."),
        },
    })
}
