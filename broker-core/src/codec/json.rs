use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Codec;
use crate::{Error, ErrorKind, Result};

/// JSON through serde_json, as `application/json`.
///
/// ```
/// use broker_core::codec::{Codec, Json};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Order { id: u64 }
///
/// let bytes = Json.encode(&Order { id: 7 })?;
/// assert_eq!(&bytes[..], br#"{"id":7}"#);
/// assert_eq!(Codec::<Order>::decode(&Json, &bytes)?, Order { id: 7 });
/// assert!(Codec::<Order>::decode(&Json, b"not json").is_err());
/// # Ok::<(), broker_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode(&self, value: &T) -> Result<Bytes> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| Error::with_source(ErrorKind::Codec, "cannot encode JSON", e))
    }

    fn decode(&self, payload: &[u8]) -> Result<T> {
        serde_json::from_slice(payload).map_err(|e| {
            Error::with_source(
                ErrorKind::Codec,
                format!("cannot decode JSON into {}", std::any::type_name::<T>()),
                e,
            )
        })
    }
}
