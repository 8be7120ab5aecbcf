//! Percent-encoding: how header values, keys and ids that NATS would alter travel, and
//! how credentials in a URL are read.
//!
//! NATS trims the whitespace around header values, cannot carry line breaks, and the
//! client keeps values as text; such values travel as `%XX` escapes (see
//! [`convert`](crate::convert)). Only what needs it is escaped, so most values travel
//! as they are.

use bytes::Bytes;

/// Whether NATS carries `value` unchanged (UTF-8 without line breaks or control
/// characters, no whitespace at either end, which the protocol trims).
pub(crate) fn travels_verbatim(value: &[u8]) -> bool {
    let bytes = value;
    // Without early exits, so that the compiler can check many bytes at a time.
    if bytes
        .iter()
        .fold(true, |ok, b| ok & (b' '..=b'~').contains(b))
    {
        // Printable ASCII and spaces (the common case): only the ends need a look.
        return bytes.first() != Some(&b' ') && bytes.last() != Some(&b' ');
    }
    let Ok(value) = std::str::from_utf8(bytes) else {
        return false;
    };
    let ends_ok = !value.starts_with(char::is_whitespace) && !value.ends_with(char::is_whitespace);
    ends_ok && !value.chars().any(char::is_control)
}

/// `value` with every byte that is not printable ASCII, and `%` itself, as `%XX`.
pub(crate) fn encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for &byte in value {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes.
pub(crate) fn decode(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `value` percent-decoded when it has an escape, else as it is.
pub(crate) fn decode_to_bytes(value: &str) -> Bytes {
    if value.contains('%') {
        Bytes::from(decode(value))
    } else {
        Bytes::copy_from_slice(value.as_bytes())
    }
}

/// `value` percent-decoded, as text; `value` as it is when the decoded bytes are not
/// UTF-8. For the user and password in a URL.
pub(crate) fn decode_text(value: &str) -> String {
    String::from_utf8(decode(value)).unwrap_or_else(|_| value.to_owned())
}

/// The id or the key as it travels. Id and key are always percent-decoded on receipt,
/// so `%` itself is escaped too.
pub(crate) fn encode_if_needed(value: &[u8]) -> String {
    // One pass for the common case (a generated id: hex digits and hyphens).
    let plain = value
        .iter()
        .fold(true, |ok, &b| ok & b.is_ascii_graphic() & (b != b'%'));
    match std::str::from_utf8(value) {
        Ok(text) if plain || (travels_verbatim(value) && !text.contains('%')) => text.to_owned(),
        _ => encode(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_travels_verbatim() {
        for ok in ["", "plain", "a b", "ünï", "100%"] {
            assert!(travels_verbatim(ok.as_bytes()), "{ok:?}");
        }
        for bad in [" lead", "trail ", "a\r\nb", "tab\t", "\u{a0}nbsp"] {
            assert!(!travels_verbatim(bad.as_bytes()), "{bad:?}");
        }
        assert!(!travels_verbatim(&[0xff, 0x41]), "not UTF-8");
    }

    #[test]
    fn encoding_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let encoded = encode(&bytes);
        assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
        assert_eq!(decode(&encoded), bytes);
        assert_eq!(encode(b"a%b c"), "a%25b%20c");
    }

    #[test]
    fn ids_and_keys_are_escaped_only_when_needed() {
        let id = "0198c0de-7a1b-7c3d-8e4f-0123456789ab";
        assert_eq!(encode_if_needed(id.as_bytes()), id);
        assert_eq!(encode_if_needed(b"a b"), "a b");
        assert_eq!(encode_if_needed(b"50%"), "50%25");
        assert_eq!(encode_if_needed(b" pad"), "%20pad");
        for value in [&b"50%"[..], b" pad", b"\xff\x00", b"a b"] {
            assert_eq!(
                decode_to_bytes(&encode_if_needed(value)).as_ref(),
                value,
                "{value:?}"
            );
        }
    }

    #[test]
    fn malformed_escapes_are_kept_as_they_are() {
        assert_eq!(decode("%"), b"%");
        assert_eq!(decode("%4"), b"%4");
        assert_eq!(decode("%zz%41"), b"%zzA");
        assert_eq!(decode_text("p%40ss"), "p@ss");
        assert_eq!(decode_text("%ff"), "%ff", "not UTF-8: kept as written");
    }
}
