//! Streams and consumers: which stream captures a topic, and what consumers are named.

use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use broker_core::{Error, ErrorKind, Result};

use crate::broker::Inner;
use crate::options::Storage;

/// Checks a stream name against JetStream's rules: not empty, no `.`, `*`, `>`, path
/// separators, whitespace or control characters.
pub(crate) fn check_stream_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| {
            matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_whitespace() || c.is_control()
        });
    if bad {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "`{}` is not a valid JetStream stream name",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// `s` with every character JetStream names do not allow (anything but ASCII letters,
/// digits, `-` and `_`) written as `_XX` hex bytes, so distinct inputs stay distinct.
fn name_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("_{byte:02X}"));
        }
    }
    out
}

/// The stream of the first token `token`: `<prefix>_<token>`.
pub(crate) fn token_stream_name(prefix: &str, token: &str) -> String {
    format!("{prefix}_{}", name_safe(token))
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and Rust versions.
pub(crate) fn fnv1a(s: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in s.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The durable consumer of queue group `group` on `pattern`: the group's name, made
/// safe, then a hash of the pattern, since one stream holds many topics and a group may
/// subscribe to several of them.
pub(crate) fn durable_name(group: &str, pattern: &str) -> String {
    format!("{}-{:016x}", name_safe(group), fnv1a(pattern))
}

/// The first token of a topic or pattern, when it is not a wildcard.
fn first_token(subject: &str) -> Option<&str> {
    let token = subject.split('.').next().unwrap_or(subject);
    (token != "*" && token != ">").then_some(token)
}

/// Whether `subject` is a reply inbox, which always travels over core NATS: the
/// replies of request/reply are answers to one waiting caller, not events to store.
pub(crate) fn is_inbox(subject: &str) -> bool {
    subject
        .split('.')
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("_inbox"))
}

impl Inner {
    /// The name of the stream that captures `subject` (a topic or a pattern), creating
    /// the stream when allowed and missing. Cached per stream key.
    pub(crate) async fn stream_for(&self, subject: &str) -> Result<String> {
        self.js()?;
        let key = match &self.options.jetstream.stream {
            Some(_) => "",
            None => first_token(subject).ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "`{subject}` starts with a wildcard, so it spans the per-token streams of jetstream://; name its first token, or put every topic in one stream with `?stream=NAME&stream_subjects=...`"
                    ),
                )
            })?,
        };
        if let Some(found) = self.streams.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(found);
        }
        // Boxed: looking a stream up or creating it takes a future of several KiB, which
        // would otherwise be part of (and copied with) every publish future.
        Box::pin(self.look_up_stream(subject, key)).await
    }

    /// [`stream_for`](Self::stream_for) when the stream of `key` is not cached yet.
    async fn look_up_stream(&self, subject: &str, key: &str) -> Result<String> {
        let js = self.js()?;
        let options = &self.options.jetstream;
        let (name, subjects) = match &options.stream {
            Some(name) => (name.clone(), options.stream_subjects.clone()),
            None => (
                token_stream_name(&options.stream_prefix, key),
                vec![key.to_owned(), format!("{key}.>")],
            ),
        };
        let found = match js.get_stream(&name).await {
            Ok(_) => name.clone(),
            Err(_) => self.find_or_create(&name, subjects, subject).await?,
        };
        if let Ok(mut map) = self.streams.lock() {
            map.insert(key.to_owned(), found.clone());
        }
        Ok(found)
    }

    /// Forgets the cached stream of `subject` (after the server said it has none).
    pub(crate) fn forget_stream(&self, subject: &str) {
        let key = match &self.options.jetstream.stream {
            Some(_) => String::new(),
            None => first_token(subject).unwrap_or_default().to_owned(),
        };
        if let Ok(mut map) = self.streams.lock() {
            map.remove(&key);
        }
    }

    async fn find_or_create(
        &self,
        name: &str,
        subjects: Vec<String>,
        subject: &str,
    ) -> Result<String> {
        let js = self.js()?;
        let options = &self.options.jetstream;
        // A stream someone else made may capture the subject already.
        if let Ok(existing) = js.stream_by_subject(subject).await {
            return Ok(existing);
        }
        if !options.create_streams {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "no JetStream stream captures `{subject}` and creating streams is off (create_streams=off)"
                ),
            ));
        }
        let config = stream::Config {
            name: name.to_owned(),
            subjects,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            storage: match options.storage {
                Storage::File => StorageType::File,
                Storage::Memory => StorageType::Memory,
            },
            num_replicas: options.replicas,
            max_age: options.max_age.unwrap_or_default(),
            // The server refuses a duplicate window longer than the streams' max age.
            duplicate_window: match options.max_age {
                Some(age) if !age.is_zero() => options.duplicate_window.min(age),
                _ => options.duplicate_window,
            },
            description: Some("created on demand by broker-nats".to_owned()),
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(stream) => {
                tracing::debug!(stream = %stream.cached_info().config.name, "JetStream stream ready");
                Ok(stream.cached_info().config.name.clone())
            }
            Err(err) => {
                // Another process may have created it meanwhile, or another stream
                // overlaps; look once more before giving up.
                if let Ok(existing) = js.stream_by_subject(subject).await {
                    return Ok(existing);
                }
                let kind = match err.kind() {
                    CreateStreamErrorKind::JetStreamUnavailable => ErrorKind::Connect,
                    CreateStreamErrorKind::TimedOut => ErrorKind::Timeout,
                    _ => ErrorKind::InvalidConfig,
                };
                Err(Error::with_source(
                    kind,
                    format!("cannot create JetStream stream `{name}` for `{subject}`"),
                    err,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(token_stream_name("BROKER", "order"), "BROKER_order");
        assert_ne!(token_stream_name("B", "a_b"), token_stream_name("B", "a/b"));
        for token in ["a/b", "a\\b", "x$y", "ü"] {
            check_stream_name(&token_stream_name("B", token)).expect(token);
        }
        let d = durable_name("my.group", "order.*");
        assert!(d.starts_with("my_2Egroup-"), "{d}");
        assert_ne!(d, durable_name("my.group", "order.>"));
        check_stream_name(&d).expect("a consumer name is a valid stream name too");
    }

    #[test]
    fn inboxes_and_first_tokens() {
        assert!(is_inbox("_inbox.abc") && is_inbox("_INBOX.abc.def"));
        assert!(!is_inbox("inbox.abc"));
        assert_eq!(first_token("order.*"), Some("order"));
        assert_eq!(first_token("*.created"), None);
        assert_eq!(first_token(">"), None);
    }
}
