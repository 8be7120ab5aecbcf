//! Dotted subjects and the wildcard patterns that match them.
//!
//! A subject is a `.`-separated list of non-empty tokens, such as `order.created`. A
//! pattern may also use `*`, which matches exactly one token, and `>`, which matches one
//! or more trailing tokens and may only be the last token. Every backend uses the same
//! rules: broker-memory matches with [`Pattern::matches`], NATS natively, and Kafka
//! through the regex from [`Pattern::to_kafka_regex`].

use std::fmt;

use crate::{Error, ErrorKind, Result};

/// The longest subject accepted, in bytes (Kafka's topic name limit).
pub const MAX_SUBJECT_LEN: usize = 249;

fn invalid(subject: &str, why: impl fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidSubject, format!("`{subject}`: {why}"))
}

/// The common case in one pass over the bytes: printable ASCII without wildcards, and
/// no empty token. Such a subject is valid under every rule of [`check_tokens`]; anything
/// else (including valid non-ASCII subjects and patterns) goes through the full check.
fn plain_ascii_subject(subject: &str) -> bool {
    let bytes = subject.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_SUBJECT_LEN {
        return false;
    }
    // Without early exits or short-circuits, so that the compiler can check many bytes
    // at a time.
    let printable = bytes.iter().fold(true, |ok, &b| {
        ok & (b'!'..=b'~').contains(&b) & (b != b'*') & (b != b'>')
    });
    // An empty token: a dot right after a dot.
    let empty_token = bytes
        .iter()
        .zip(&bytes[1..])
        .fold(false, |found, (&a, &b)| found | ((a == b'.') & (b == b'.')));
    printable && !empty_token && bytes[0] != b'.' && bytes[bytes.len() - 1] != b'.'
}

fn check_tokens(subject: &str, allow_wildcards: bool) -> Result<()> {
    if plain_ascii_subject(subject) {
        Ok(())
    } else {
        check_tokens_fully(subject, allow_wildcards)
    }
}

fn check_tokens_fully(subject: &str, allow_wildcards: bool) -> Result<()> {
    if subject.is_empty() {
        return Err(invalid(subject, "empty subject"));
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(invalid(
            subject,
            format_args!("longer than {MAX_SUBJECT_LEN} bytes"),
        ));
    }
    let count = subject.split('.').count();
    for (index, token) in subject.split('.').enumerate() {
        if token.is_empty() {
            return Err(invalid(
                subject,
                format_args!("empty token at position {}", index + 1),
            ));
        }
        if let Some(c) = token.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                subject,
                format_args!("contains the character {c:?}"),
            ));
        }
        match token {
            "*" | ">" if !allow_wildcards => {
                return Err(invalid(
                    subject,
                    format_args!("wildcard `{token}` is only allowed in subscribe patterns"),
                ));
            }
            ">" if index + 1 != count => {
                return Err(invalid(subject, "`>` may only be the last token"));
            }
            "*" | ">" => {}
            _ if token.contains(['*', '>']) => {
                return Err(invalid(
                    subject,
                    format_args!(
                        "wildcard inside the token `{token}`: a wildcard must be a whole token"
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `topic` is a concrete subject to publish to: dotted, non-empty tokens, no
/// whitespace, no wildcards.
///
/// ```
/// use broker_core::subject::validate_topic;
///
/// assert!(validate_topic("order.created").is_ok());
/// assert!(validate_topic("order..created").is_err());
/// assert!(validate_topic("order.*").is_err());
/// ```
pub fn validate_topic(topic: &str) -> Result<()> {
    check_tokens(topic, false)
}

/// Checks that `pattern` is a valid subscribe pattern (see [`Pattern::parse`]).
pub fn validate_pattern(pattern: &str) -> Result<()> {
    check_tokens(pattern, true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    One,
    Rest,
}

/// A parsed subscribe pattern.
///
/// ```
/// use broker_core::subject::Pattern;
///
/// let p = Pattern::parse("order.*.created")?;
/// assert!(p.matches("order.eu.created"));
/// assert!(!p.matches("order.created"));
///
/// let all = Pattern::parse("order.>")?;
/// assert!(all.matches("order.eu.created"));
/// assert!(!all.matches("order"));
/// # Ok::<(), broker_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses and validates a pattern.
    pub fn parse(pattern: &str) -> Result<Self> {
        validate_pattern(pattern)?;
        let tokens = pattern
            .split('.')
            .map(|t| match t {
                "*" => Token::One,
                ">" => Token::Rest,
                literal => Token::Literal(literal.to_owned()),
            })
            .collect();
        Ok(Pattern {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has a `*` or `>`.
    pub fn has_wildcards(&self) -> bool {
        self.tokens.iter().any(|t| !matches!(t, Token::Literal(_)))
    }

    /// Whether the concrete subject `subject` matches.
    pub fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => {
                    let mut any = false;
                    for part in parts.by_ref() {
                        if part.is_empty() {
                            return false;
                        }
                        any = true;
                    }
                    return any;
                }
                Token::One => match parts.next() {
                    Some(p) if !p.is_empty() => {}
                    _ => return false,
                },
                Token::Literal(l) => match parts.next() {
                    Some(p) if p == l => {}
                    _ => return false,
                },
            }
        }
        parts.next().is_none()
    }

    /// The regular expression that selects the same Kafka topics, in librdkafka's
    /// convention (a leading `^` marks a regex subscription).
    ///
    /// ```
    /// use broker_core::subject::Pattern;
    ///
    /// assert_eq!(Pattern::parse("order.*")?.to_kafka_regex(), r"^order\.[^.]+$");
    /// assert_eq!(Pattern::parse("order.>")?.to_kafka_regex(), r"^order\.[^.]+(\.[^.]+)*$");
    /// # Ok::<(), broker_core::Error>(())
    /// ```
    pub fn to_kafka_regex(&self) -> String {
        let mut out = String::from("^");
        for (index, token) in self.tokens.iter().enumerate() {
            if index > 0 {
                out.push_str(r"\.");
            }
            match token {
                Token::Literal(l) => {
                    for c in l.chars() {
                        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                            out.push(c);
                        } else {
                            out.push('\\');
                            out.push(c);
                        }
                    }
                }
                Token::One => out.push_str("[^.]+"),
                Token::Rest => out.push_str(r"[^.]+(\.[^.]+)*"),
            }
        }
        out.push('$');
        out
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Pattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_reject_bad_tokens() {
        for bad in ["", ".a", "a.", "a..b", "a b", "a.*", "a.>", "a\tb", "a*"] {
            let err = validate_topic(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidSubject, "{bad}");
        }
        assert!(validate_topic(&"a".repeat(MAX_SUBJECT_LEN + 1)).is_err());
        for good in ["a", "order.created", "a-b_c.D9", "_inbox.x"] {
            validate_topic(good).expect(good);
        }
    }

    #[test]
    fn the_fast_path_accepts_only_what_the_full_check_accepts() {
        let alphabet = [
            "a", "Z", "9", ".", "*", ">", " ", "\t", "\u{7f}", "é", "\u{a0}", "-",
        ];
        let mut subjects = vec![String::new()];
        for _ in 0..3 {
            subjects = subjects
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .chain(subjects.iter().cloned())
                .collect();
        }
        subjects.push("a".repeat(MAX_SUBJECT_LEN));
        subjects.push("a".repeat(MAX_SUBJECT_LEN + 1));
        let mut fast = 0;
        for subject in &subjects {
            if plain_ascii_subject(subject) {
                fast += 1;
                assert!(
                    check_tokens_fully(subject, false).is_ok()
                        && check_tokens_fully(subject, true).is_ok(),
                    "{subject:?}"
                );
            }
        }
        assert!(fast > 100, "{fast}");
        assert!(plain_ascii_subject("order.created"));
        assert!(!plain_ascii_subject("naïve.topic"));
        validate_topic("naïve.topic").expect("valid, through the full check");
    }

    #[test]
    fn the_fast_path_sees_bad_bytes_at_every_position_of_long_subjects() {
        // Every position of subjects longer than a vector register: the fast path's
        // byte loops have no early exit, so each byte must count wherever it stands.
        for len in [15, 16, 17, 31, 32, 33, 47, 48, 49] {
            for at in 0..len {
                for bad in [".", "..", "*", ">", " ", "\t", "\u{7f}", "-"] {
                    let mut subject = "a".repeat(len);
                    subject.replace_range(at..(at + bad.len()).min(len), bad);
                    subject.truncate(len);
                    assert_eq!(
                        plain_ascii_subject(&subject),
                        check_tokens_fully(&subject, false).is_ok(),
                        "{subject:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn patterns_reject_misplaced_wildcards() {
        for bad in ["a.>.b", ">.a", "a.b*", "a.>x", "a..*"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        let err = Pattern::parse("a.>.b").expect_err("misplaced >");
        assert!(err.to_string().contains("last token"), "{err}");
    }

    #[test]
    fn matching() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("*.b", "x.b", true),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c.d", true),
            ("a.>", "a", false),
            (">", "a", true),
            (">", "a.b", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (pattern, subject, expected) in cases {
            let p = Pattern::parse(pattern).expect(pattern);
            assert_eq!(p.matches(subject), expected, "{pattern} vs {subject}");
        }
    }

    #[test]
    fn kafka_regex_agrees_with_the_matcher() {
        let subjects = [
            "a", "a.b", "a.b.c", "x.b", "a.bc", "ab.c", "a-b.c_d", "a.b.c.d", "aXb", "a.b.",
        ];
        for pattern in ["a.*", "a.>", "*.b", ">", "a.*.c", "a-b.*", "a.b"] {
            let p = Pattern::parse(pattern).expect(pattern);
            let re = regex::Regex::new(&p.to_kafka_regex()).expect("valid regex");
            for s in subjects {
                assert_eq!(re.is_match(s), p.matches(s), "{pattern} ({re}) vs {s}");
            }
        }
    }
}
