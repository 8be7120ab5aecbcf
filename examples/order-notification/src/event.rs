//! The `notification.submit` event, a protobuf message declared with prost's derive (no
//! `.proto` file or `protoc` needed). Its `.proto` equivalent:
//!
//! ```proto
//! package order;
//!
//! message SubmitRequest {
//!   string order_id = 1;
//!   int64 product_id = 2;
//!   int32 count = 3;
//!   int64 uid = 4;
//!   string product_name = 5;
//! }
//! ```

/// The topic of submitted orders, under no prefix.
pub const SUBMIT_TOPIC: &str = "notification.submit";

/// An order was submitted: published by the order service, consumed by the notification
/// service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubmitRequest {
    /// The order's snowflake id, as a decimal string.
    #[prost(string, tag = "1")]
    pub order_id: String,
    /// The product bought.
    #[prost(int64, tag = "2")]
    pub product_id: i64,
    /// How many were bought.
    #[prost(int32, tag = "3")]
    pub count: i32,
    /// The buyer.
    #[prost(int64, tag = "4")]
    pub uid: i64,
    /// The product's name, for the notification text.
    #[prost(string, tag = "5")]
    pub product_name: String,
}

/// Its protobuf name, `order.SubmitRequest`, for the AsyncAPI document.
impl prost::Name for SubmitRequest {
    const NAME: &'static str = "SubmitRequest";
    const PACKAGE: &'static str = "order";
}

/// The topics of this example: [`SUBMIT_TOPIC`], or the same under a prefix so that
/// several deployments (or tests) share one broker without seeing each other's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Where submitted orders are published.
    pub submit: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            submit: SUBMIT_TOPIC.to_owned(),
        }
    }
}

impl Topics {
    /// The topics under `prefix`: `<prefix>.notification.submit`. An empty prefix gives
    /// the defaults.
    pub fn prefixed(prefix: &str) -> Self {
        if prefix.is_empty() {
            return Topics::default();
        }
        Topics {
            submit: format!("{prefix}.{SUBMIT_TOPIC}"),
        }
    }
}

impl From<&str> for Topics {
    /// The topics under `prefix`, as [`Topics::prefixed`] names them.
    fn from(prefix: &str) -> Self {
        Topics::prefixed(prefix)
    }
}
