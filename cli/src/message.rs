//! Building a message from the command line: payload, headers, key.

use std::io::Read;

use broker::Message;
use bytes::Bytes;

use crate::args::MessageArgs;
use crate::error::{CliError, CliResult};

/// The payload the arguments name: the argument itself, the `--file`, or stdin (no
/// argument, or `-`). Read once, whatever the number of copies.
pub(crate) fn read_payload(args: &MessageArgs) -> CliResult<Bytes> {
    if let Some(path) = &args.file {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::io(format!("cannot read {}", path.display()), e))?;
        return Ok(bytes.into());
    }
    match args.payload.as_deref() {
        Some("-") | None => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::io("cannot read the payload from stdin", e))?;
            Ok(bytes.into())
        }
        Some(text) => Ok(Bytes::copy_from_slice(text.as_bytes())),
    }
}

/// A fresh message (with its own id) carrying `payload` and the arguments' headers and
/// key.
pub(crate) fn build(args: &MessageArgs, payload: Bytes) -> Message {
    let mut message = Message::new(payload);
    for (name, value) in &args.headers {
        message.headers_mut().append(name.as_str(), value.as_str());
    }
    match &args.key {
        Some(key) => message.with_key(key),
        None => message,
    }
}
