//! What can go wrong, and the exit code each failure gives.

use std::process::ExitCode;

/// A failure of a subcommand. Usage errors never get here: clap reports them (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The broker refused or failed an operation, or could not be reached.
    #[error("{}", .0.display_chain())]
    Broker(#[from] broker::Error),
    /// Input or output failed: the payload file, stdin, stdout.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// What was expected did not arrive in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The broker ended a subscription before it was done.
    #[error("{0}")]
    Ended(String),
}

impl CliError {
    /// An I/O failure while doing `what`.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            what: what.into(),
            source,
        }
    }

    /// The documented exit code: 3 for a timeout, 1 for everything else.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Timeout(_) => ExitCode::from(3),
            CliError::Broker(e) if e.kind() == broker::ErrorKind::Timeout => ExitCode::from(3),
            _ => ExitCode::from(1),
        }
    }
}

/// The result of a subcommand.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use broker::{Error, ErrorKind};

    use super::*;

    #[test]
    fn timeouts_exit_3_and_the_rest_1() {
        let code = |e: CliError| e.exit_code();
        assert_eq!(code(CliError::Timeout("x".into())), ExitCode::from(3));
        assert_eq!(
            code(Error::new(ErrorKind::Timeout, "no reply").into()),
            ExitCode::from(3)
        );
        assert_eq!(
            code(Error::new(ErrorKind::Connect, "refused").into()),
            ExitCode::from(1)
        );
        assert_eq!(code(CliError::Ended("x".into())), ExitCode::from(1));
    }

    #[test]
    fn a_broker_error_shows_its_causes() {
        let cause = std::io::Error::other("connection refused");
        let err: CliError = Error::with_source(ErrorKind::Connect, "nats://h:1", cause).into();
        assert_eq!(err.to_string(), "connect: nats://h:1: connection refused");
    }
}
