//! The request and reply exchanged over the broker, in JSON, and their topic.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Asks the product service for products. Published to `product.list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductQuery {
    /// How many products at most; the service's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// A product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Product {
    /// The id.
    pub id: u32,
    /// The name.
    pub name: String,
}

/// The product service's answer to a [`ProductQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductList {
    /// The products.
    pub products: Vec<Product>,
    /// The product instance that answered.
    pub served_by: String,
}

/// The topics of this example, optionally under a prefix so that several deployments
/// (or tests) share one broker without answering each other's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Where product queries are sent: `product.list`.
    pub list: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics::prefixed("")
    }
}

impl Topics {
    /// The topics under `prefix` (`<prefix>.product.list`); an empty prefix gives the
    /// plain names.
    pub fn prefixed(prefix: &str) -> Self {
        Topics {
            list: if prefix.is_empty() {
                "product.list".to_owned()
            } else {
                format!("{prefix}.product.list")
            },
        }
    }
}

impl From<&str> for Topics {
    /// The topics under `prefix`, as [`Topics::prefixed`] names them.
    fn from(prefix: &str) -> Self {
        Topics::prefixed(prefix)
    }
}
