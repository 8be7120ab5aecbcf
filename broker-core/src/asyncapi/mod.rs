//! An [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document of what a service publishes and receives, built from the same topics, types
//! and codecs it publishes and subscribes with (feature `asyncapi`).
//!
//! ```
//! # fn demo() -> broker_core::Result<()> {
//! use broker_core::asyncapi::AsyncApi;
//! use broker_core::codec::Json;
//!
//! #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
//! struct UserCreated { id: String, email: String }
//!
//! let document = AsyncApi::new("user-email", "1.0.0")
//!     .server_from_url("nats://alice:secret@127.0.0.1:4222")?
//!     .publishes::<UserCreated>("user.created", Json)
//!     .receives::<UserCreated>("user.created", Json, Some("email"))
//!     .receives_any("user.>", Some("audit"))
//!     .to_json()?;
//! assert_eq!(document["asyncapi"], "3.0.0");
//! assert_eq!(document["servers"]["nats"]["host"], "127.0.0.1:4222");
//! assert_eq!(document["channels"]["user.all"]["address"], "user.{rest}");
//! assert!(document["components"]["schemas"]["UserCreated"]["properties"]["email"].is_object());
//! # Ok(()) }
//! ```
//!
//! [`publisher`](AsyncApi::publisher) and [`handler`](AsyncApi::handler) take a
//! [`TypedPublisher`] or a [`typed_handler`](crate::typed::typed_handler) and read the
//! topic, type and codec from it, so that none is written twice.
//!
//! How the document is made:
//!
//! - **Servers** come from the broker URL ([`server_from_url`](AsyncApi::server_from_url)):
//!   one per host, `nats://` and `jetstream://` as protocol `nats`, `kafka://` as `kafka`.
//!   The user, password and query (tokens, SASL settings) are left out. `memory://` is
//!   in-process and has no server.
//! - **Channels** are topics and patterns. A topic is its own address. In a pattern, a
//!   `*` that is the n-th token becomes the parameter `{tokenN}` and a final `>` becomes
//!   `{rest}` (one or more tokens): `order.*.created` is `order.{token2}.created`,
//!   `user.>` is `user.{rest}`; the channel keeps the pattern in `x-pattern`. A channel's
//!   key in `channels` is the topic with `*` spelt `any`, `>` spelt `all`, and any
//!   character but letters, digits, `.`, `-` and `_` spelt `_` (`user.>` is `user.all`).
//! - **Operations**: `send` for what the service publishes, `receive` for what it
//!   subscribes to, with the queue group in the description and in the NATS (`queue`) and
//!   Kafka (`groupId`) operation bindings. A reply ([`replies`](AsyncApi::replies)) goes
//!   to the topic in the request's `reply-to` header.
//! - **Messages** are named by their payload type and listed once in
//!   `components/messages`: [`Json`](crate::codec::Json) payloads with the JSON Schema
//!   schemars derives from the type (`#[derive(schemars::JsonSchema)]`; the schemas sit
//!   in `components/schemas`), [`Protobuf`](crate::codec::Protobuf) payloads by their
//!   protobuf name (`prost::Name`). Each message lists the headers the framework sets
//!   (`content-type`, `x-message-id`, `correlation-id`, `traceparent`, …). Another codec
//!   takes part by implementing [`Describe`].
//!
//! A topic or pattern that is not valid is reported by [`to_json`](AsyncApi::to_json).
//! `scripts/asyncapi.sh install` installs the AsyncAPI project's parser and
//! `scripts/asyncapi-validate.mjs` checks a document with it.

mod address;
mod describe;

pub use describe::{Describe, Payload};

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::subject::{Pattern, validate_pattern, validate_topic};
use crate::typed::{TypedHandler, TypedPublisher};
use crate::{Error, ErrorKind, Result};

/// The AsyncAPI version of the documents.
pub const VERSION: &str = "3.0.0";

/// A service's AsyncAPI document, built up one publisher and subscriber at a time; see
/// the [module docs](self) for how topics, types and codecs become channels, operations
/// and messages.
#[derive(Debug, Clone)]
pub struct AsyncApi {
    title: String,
    version: String,
    description: Option<String>,
    servers: Vec<(String, Value)>,
    channels: Vec<Channel>,
    operations: Vec<Operation>,
    messages: Map<String, Value>,
    schemas: SchemaGenerator,
    /// The first mistake, reported by `to_json`.
    error: Option<(ErrorKind, String)>,
}

#[derive(Debug, Clone)]
struct Channel {
    key: String,
    /// The topic or pattern; `None` for a reply channel, whose address is dynamic.
    pattern: Option<String>,
    messages: Vec<String>,
    /// Whether the channel also carries what the channels its pattern matches carry.
    matching: bool,
}

#[derive(Debug, Clone)]
struct Operation {
    key: String,
    action: &'static str,
    channel: usize,
    queue: Option<String>,
    reply: Option<usize>,
}

impl AsyncApi {
    /// An empty document of the application `title`, at `version` (of the application,
    /// not of AsyncAPI).
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        AsyncApi {
            title: title.into(),
            version: version.into(),
            description: None,
            servers: Vec::new(),
            channels: Vec::new(),
            operations: Vec::new(),
            messages: Map::new(),
            schemas: settings.into_generator(),
            error: None,
        }
    }

    /// Describes the application (CommonMark).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Adds the servers of the broker at `url` (as [`connect`](crate::connect) takes
    /// it), leaving out its user, password and query.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] when `url` has no scheme or no host.
    pub fn server_from_url(mut self, url: &str) -> Result<Self> {
        for (id, server) in address::servers(url)? {
            self.servers.retain(|(known, _)| *known != id);
            self.servers.push((id, server));
        }
        Ok(self)
    }

    /// The service publishes `T`s, encoded by `codec`, to `topic`: a `send` operation.
    pub fn publishes<T>(mut self, topic: &str, codec: impl Describe<T>) -> Self {
        self.send(topic, &codec);
        self
    }

    /// The service publishes with `publisher`: its topic, type and codec, as
    /// [`publishes`](Self::publishes) takes them.
    pub fn publisher<T, C: Describe<T>>(mut self, publisher: &TypedPublisher<T, C>) -> Self {
        self.send(publisher.topic(), publisher.codec());
        self
    }

    /// The service subscribes to `pattern`, in the queue group `queue` if any, and decodes
    /// `T`s with `codec`: a `receive` operation.
    pub fn receives<T>(
        mut self,
        pattern: &str,
        codec: impl Describe<T>,
        queue: Option<&str>,
    ) -> Self {
        self.receive(pattern, &codec, queue);
        self
    }

    /// The service subscribes `handler` to `pattern`, in the queue group `queue` if any:
    /// its type and codec, as [`receives`](Self::receives) takes them.
    pub fn handler<T, C: Describe<T>, F>(
        mut self,
        pattern: &str,
        handler: &TypedHandler<T, C, F>,
        queue: Option<&str>,
    ) -> Self {
        self.receive(pattern, handler.codec(), queue);
        self
    }

    /// The service subscribes to `pattern`, in the queue group `queue` if any, without
    /// decoding: the operation receives every message of the document's topics that
    /// `pattern` matches.
    pub fn receives_any(mut self, pattern: &str, queue: Option<&str>) -> Self {
        if self.check(validate_pattern(pattern)) {
            let channel = self.channel(pattern, None);
            self.channels[channel].matching = true;
            self.operation("receive", channel, queue);
        }
        self
    }

    /// The operation added last is a request: it is answered with `R`s, encoded by
    /// `codec`, published to the topic in the request's `reply-to` header. On a `send`
    /// this is the requester's side ([`Requester`](crate::Requester)); on a `receive`,
    /// the responder's ([`BrokerExt::reply`](crate::BrokerExt::reply)).
    pub fn replies<R>(mut self, codec: impl Describe<R>) -> Self {
        let Some(last) = self.operations.len().checked_sub(1) else {
            self.check(Err(Error::new(
                ErrorKind::InvalidConfig,
                "AsyncApi::replies: no operation to reply to",
            )));
            return self;
        };
        let message = self.message(&codec);
        let request = &self.channels[self.operations[last].channel];
        let key = format!("{}.reply", request.key);
        let channel = match self.channels.iter().position(|c| c.key == key) {
            Some(index) => index,
            None => {
                self.channels.push(Channel {
                    key,
                    pattern: None,
                    messages: Vec::new(),
                    matching: false,
                });
                self.channels.len() - 1
            }
        };
        add_unique(&mut self.channels[channel].messages, message);
        self.operations[last].reply = Some(channel);
        self
    }

    /// The document, as JSON.
    ///
    /// # Errors
    ///
    /// The first topic or pattern given that is not valid
    /// ([`ErrorKind::InvalidSubject`]), or a [`replies`](Self::replies) without an
    /// operation before it.
    pub fn to_json(&self) -> Result<Value> {
        if let Some((kind, message)) = &self.error {
            return Err(Error::new(*kind, message.clone()));
        }
        let mut info = json!({ "title": self.title, "version": self.version });
        if let Some(description) = &self.description {
            info["description"] = json!(description);
        }
        let mut document = json!({
            "asyncapi": VERSION,
            "info": info,
            "channels": self.channels_json()?,
            "operations": self.operations_json(),
            "components": {
                "messages": self.messages,
                "schemas": self.schemas.definitions(),
            },
        });
        if !self.servers.is_empty() {
            let servers: Map<String, Value> = self.servers.iter().cloned().collect();
            document["servers"] = Value::Object(servers);
        }
        Ok(document)
    }

    fn send<T>(&mut self, topic: &str, codec: &impl Describe<T>) {
        if self.check(validate_topic(topic)) {
            let message = self.message(codec);
            let channel = self.channel(topic, Some(message));
            self.operation("send", channel, None);
        }
    }

    fn receive<T>(&mut self, pattern: &str, codec: &impl Describe<T>, queue: Option<&str>) {
        if self.check(validate_pattern(pattern)) {
            let message = self.message(codec);
            let channel = self.channel(pattern, Some(message));
            self.operation("receive", channel, queue);
        }
    }

    /// Keeps the first error; whether `result` was fine.
    fn check(&mut self, result: Result<()>) -> bool {
        match result {
            Ok(()) => true,
            Err(err) => {
                self.error
                    .get_or_insert_with(|| (err.kind(), err.message().to_owned()));
                false
            }
        }
    }

    /// Adds the message `codec` describes (once) and returns its key.
    fn message<T>(&mut self, codec: &impl Describe<T>) -> String {
        let payload = codec.describe(&mut self.schemas);
        let message = json!({
            "name": payload.name,
            "contentType": codec.content_type(),
            "headers": describe::framework_headers(codec.content_type()),
            "payload": payload.schema,
        });
        let base = address::key(&payload.name);
        let mut key = base.clone();
        for n in 2.. {
            match self.messages.get(&key) {
                Some(known) if *known != message => key = format!("{base}_{n}"),
                _ => break,
            }
        }
        self.messages.insert(key.clone(), message);
        key
    }

    /// The channel of `pattern`, added if new, carrying `message`.
    fn channel(&mut self, pattern: &str, message: Option<String>) -> usize {
        let index = match self
            .channels
            .iter()
            .position(|c| c.pattern.as_deref() == Some(pattern))
        {
            Some(index) => index,
            None => {
                let key = unique_key(address::key(pattern), |key| {
                    self.channels.iter().any(|c| c.key == key)
                });
                self.channels.push(Channel {
                    key,
                    pattern: Some(pattern.to_owned()),
                    messages: Vec::new(),
                    matching: false,
                });
                self.channels.len() - 1
            }
        };
        if let Some(message) = message {
            add_unique(&mut self.channels[index].messages, message);
        }
        index
    }

    fn operation(&mut self, action: &'static str, channel: usize, queue: Option<&str>) {
        let mut base = format!("{action}.{}", self.channels[channel].key);
        if let Some(queue) = queue {
            base = format!("{base}.{}", address::key(queue));
        }
        let key = unique_key(base, |key| self.operations.iter().any(|o| o.key == key));
        self.operations.push(Operation {
            key,
            action,
            channel,
            queue: queue.map(str::to_owned),
            reply: None,
        });
    }

    /// The messages `channel` carries: its own, and for a channel that receives anything
    /// its pattern matches, those of the topics it matches.
    fn carried(&self, channel: &Channel) -> Result<Vec<String>> {
        let mut messages = channel.messages.clone();
        if let (true, Some(pattern)) = (channel.matching, &channel.pattern) {
            let pattern = Pattern::parse(pattern)?;
            for other in &self.channels {
                let matches = other
                    .pattern
                    .as_deref()
                    .is_some_and(|topic| !topic.contains(['*', '>']) && pattern.matches(topic));
                if matches {
                    for message in &other.messages {
                        add_unique(&mut messages, message.clone());
                    }
                }
            }
        }
        Ok(messages)
    }

    fn channels_json(&self) -> Result<Map<String, Value>> {
        let mut channels = Map::new();
        for channel in &self.channels {
            let messages: Map<String, Value> = self
                .carried(channel)?
                .into_iter()
                .map(|m| {
                    let reference = json!({ "$ref": format!("#/components/messages/{m}") });
                    (m, reference)
                })
                .collect();
            let mut json = json!({ "messages": messages });
            match &channel.pattern {
                Some(pattern) => {
                    let (address, parameters) = address::channel_address(pattern);
                    json["address"] = json!(address);
                    if !parameters.is_empty() {
                        json["parameters"] = Value::Object(parameters);
                        json["x-pattern"] = json!(pattern);
                    }
                }
                None => {
                    json["address"] = Value::Null;
                    json["description"] = json!(
                        "Replies: the topic is the one the request's `reply-to` header names."
                    );
                }
            }
            channels.insert(channel.key.clone(), json);
        }
        Ok(channels)
    }

    fn operations_json(&self) -> Map<String, Value> {
        let mut operations = Map::new();
        for operation in &self.operations {
            let channel = &self.channels[operation.channel];
            let mut json = json!({
                "action": operation.action,
                "channel": { "$ref": format!("#/channels/{}", channel.key) },
                "messages": message_refs(channel, &self.carried(channel).unwrap_or_default()),
            });
            if let Some(queue) = &operation.queue {
                json["description"] = json!(format!(
                    "In the queue group `{queue}`: each message goes to one of its members."
                ));
                json["bindings"] = json!({
                    "nats": { "queue": queue, "bindingVersion": "0.1.0" },
                    "kafka": {
                        "groupId": { "type": "string", "enum": [queue] },
                        "bindingVersion": "0.5.0",
                    },
                });
            }
            if let Some(reply) = operation.reply {
                let channel = &self.channels[reply];
                json["reply"] = json!({
                    "address": {
                        "location": format!("$message.header#/{}", crate::headers::names::REPLY_TO),
                        "description": "The topic the request's `reply-to` header names.",
                    },
                    "channel": { "$ref": format!("#/channels/{}", channel.key) },
                    "messages": message_refs(channel, &channel.messages),
                });
            }
            operations.insert(operation.key.clone(), json);
        }
        operations
    }
}

/// `$ref`s to `messages` of `channel`.
fn message_refs(channel: &Channel, messages: &[String]) -> Value {
    messages
        .iter()
        .map(|m| json!({ "$ref": format!("#/channels/{}/messages/{m}", channel.key) }))
        .collect()
}

fn add_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// `base`, or `base_2`, `base_3`, … whichever `taken` says is free.
fn unique_key(base: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|key| !taken(key))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests;
