//! Channel addresses from topics and patterns, and servers from a broker URL.

use serde_json::{Map, Value, json};

use crate::{Error, ErrorKind, Result};

/// The name of the parameter standing for `>`.
const REST: &str = "rest";

/// The AsyncAPI address of a topic or pattern, and the parameters its wildcards became:
/// a `*` that is the n-th token is `{tokenN}`, a final `>` is `{rest}`.
pub(super) fn channel_address(pattern: &str) -> (String, Map<String, Value>) {
    let mut parameters = Map::new();
    let tokens: Vec<String> = pattern
        .split('.')
        .enumerate()
        .map(|(index, token)| match token {
            "*" => {
                let name = format!("token{}", index + 1);
                parameters.insert(
                    name.clone(),
                    json!({ "description": "`*`: any one token (text without a `.`)." }),
                );
                format!("{{{name}}}")
            }
            ">" => {
                parameters.insert(
                    REST.to_owned(),
                    json!({ "description": "`>`: one or more tokens, separated by `.`." }),
                );
                format!("{{{REST}}}")
            }
            literal => literal.to_owned(),
        })
        .collect();
    (tokens.join("."), parameters)
}

/// A key for the document's maps (channels, operations, messages): `text` with every
/// character but ASCII letters, digits, `.`, `-` and `_` replaced by `_` (`*` by `any`
/// and `>` by `all`), so that it is valid as a component key and in a `$ref`.
pub(super) fn key(text: &str) -> String {
    text.split('.')
        .map(|token| match token {
            "*" => "any".to_owned(),
            ">" => "all".to_owned(),
            token => token
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The servers of the broker at `url`, without its secrets: the host and port of each
/// broker the URL names (`kafka://b1:9092,b2:9092` names two), never the user, password
/// or query. `memory://` is in-process: no server.
pub(super) fn servers(url: &str) -> Result<Vec<(String, Value)>> {
    let invalid = |why: &str| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("broker URL `{}` {why}", crate::registry::redact_url(url)),
        )
    };
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("has no scheme (such as nats://)"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "memory" {
        return Ok(Vec::new());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hosts = match authority.rsplit_once('@') {
        Some((_userinfo, hosts)) => hosts,
        None => authority,
    };
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.iter().any(|host| host.is_empty()) {
        return Err(invalid("names no host"));
    }
    let (protocol, description) = match scheme.as_str() {
        "nats" => ("nats", "NATS (core)"),
        "jetstream" => ("nats", "NATS JetStream"),
        "kafka" => ("kafka", "Apache Kafka"),
        other => (other, ""),
    };
    let servers = hosts
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let id = if hosts.len() == 1 {
                scheme.clone()
            } else {
                format!("{scheme}-{}", index + 1)
            };
            let mut server = json!({ "host": host, "protocol": protocol });
            if !description.is_empty() {
                server["description"] = json!(format!("{description}, `{scheme}://` URLs."));
            }
            (id, server)
        })
        .collect();
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_parameters() {
        let (address, parameters) = channel_address("order.*.created");
        assert_eq!(address, "order.{token2}.created");
        assert_eq!(parameters.keys().collect::<Vec<_>>(), ["token2"]);
        let (address, parameters) = channel_address("user.>");
        assert_eq!(address, "user.{rest}");
        assert!(parameters.contains_key("rest"));
        let (address, parameters) = channel_address("user.created");
        assert_eq!(address, "user.created");
        assert!(parameters.is_empty());
    }

    #[test]
    fn keys_are_plain() {
        assert_eq!(key("user.>"), "user.all");
        assert_eq!(key("a.*.b"), "a.any.b");
        assert_eq!(key("naïve/x.y"), "na_ve_x.y");
    }

    #[test]
    fn servers_drop_secrets() {
        let found = servers("nats://alice:s3cret@nats.example:4222?token=t0k").expect("url");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "nats");
        assert_eq!(found[0].1["host"], "nats.example:4222");
        assert_eq!(found[0].1["protocol"], "nats");
        let text = serde_json::to_string(&found[0].1).expect("json");
        assert!(!text.contains("s3cret") && !text.contains("alice") && !text.contains("t0k"));

        let found = servers("kafka://b1:9092,b2:9092?sasl.password=pw").expect("url");
        let hosts: Vec<_> = found
            .iter()
            .map(|(id, s)| (id.as_str(), s["host"].clone()))
            .collect();
        assert_eq!(
            hosts,
            [("kafka-1", json!("b1:9092")), ("kafka-2", json!("b2:9092"))]
        );

        assert!(super::servers("memory://").expect("url").is_empty());
        assert_eq!(
            super::servers("jetstream://h:4222").expect("url")[0].1["protocol"],
            "nats"
        );
        assert!(super::servers("no-scheme").is_err());
        assert!(super::servers("nats://user:pw@").is_err());
    }
}
