//! Codecs turn typed values into payloads and back, and name their content type.

#[cfg(feature = "json")]
mod json;
#[cfg(feature = "protobuf")]
mod protobuf;

#[cfg(feature = "json")]
pub use json::Json;
#[cfg(feature = "protobuf")]
pub use protobuf::Protobuf;

use bytes::Bytes;

use crate::Result;

/// Encodes and decodes values of type `T`.
///
/// A failed decode is an [`ErrorKind::Codec`](crate::ErrorKind::Codec) error, never a
/// panic.
pub trait Codec<T>: Send + Sync + 'static {
    /// The MIME type written to the `content-type` header, such as `application/json`.
    fn content_type(&self) -> &'static str;
    /// Encodes `value`.
    fn encode(&self, value: &T) -> Result<Bytes>;
    /// Decodes a payload.
    fn decode(&self, payload: &[u8]) -> Result<T>;
}
