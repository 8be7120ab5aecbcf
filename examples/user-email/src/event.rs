//! The events of this example, in JSON, and their topics.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The header carrying the user id on every user event, as go-micro's user service sets
/// `Header: {"id": …}`.
pub const USER_ID_HEADER: &str = "user-id";

/// A user signed up. Published to `user.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreated {
    /// The new user's id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// Their e-mail address.
    pub email: String,
}

/// A user was deleted. Published to `user.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDeleted {
    /// The user's id.
    pub id: String,
}

/// The topics of this example, optionally under a prefix so that several deployments
/// (or tests) share one broker without seeing each other's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `user.created`.
    pub created: String,
    /// `user.deleted`.
    pub deleted: String,
    /// `user.>`: every user event, for the audit log.
    pub all_users: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics::prefixed("")
    }
}

impl Topics {
    /// The topics under `prefix` (`<prefix>.user.created`, …); an empty prefix gives the
    /// plain names.
    pub fn prefixed(prefix: &str) -> Self {
        let name = |topic: &str| {
            if prefix.is_empty() {
                topic.to_owned()
            } else {
                format!("{prefix}.{topic}")
            }
        };
        Topics {
            created: name("user.created"),
            deleted: name("user.deleted"),
            all_users: name("user.>"),
        }
    }
}

impl From<&str> for Topics {
    /// The topics under `prefix`, as [`Topics::prefixed`] names them.
    fn from(prefix: &str) -> Self {
        Topics::prefixed(prefix)
    }
}
