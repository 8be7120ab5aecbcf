use bytes::Bytes;

use super::Codec;
use crate::{Error, ErrorKind, Result};

/// Protocol Buffers through prost, as `application/x-protobuf`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protobuf;

impl<T: prost::Message + Default> Codec<T> for Protobuf {
    fn content_type(&self) -> &'static str {
        "application/x-protobuf"
    }

    fn encode(&self, value: &T) -> Result<Bytes> {
        Ok(Bytes::from(value.encode_to_vec()))
    }

    fn decode(&self, payload: &[u8]) -> Result<T> {
        T::decode(payload).map_err(|e| {
            Error::with_source(
                ErrorKind::Codec,
                format!("cannot decode protobuf into {}", std::any::type_name::<T>()),
                e,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Order {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(string, tag = "2")]
        product: String,
    }

    #[test]
    fn round_trip_and_garbage() {
        let order = Order {
            id: 9,
            product: "tea".into(),
        };
        let bytes = Protobuf.encode(&order).expect("encode");
        let back: Order = Protobuf.decode(&bytes).expect("decode");
        assert_eq!(back, order);
        let err = Codec::<Order>::decode(&Protobuf, &[0xff, 0xff, 0xff]).expect_err("garbage");
        assert_eq!(err.kind(), ErrorKind::Codec);
    }
}
