//! The command line: global options and one struct per subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The exit codes, as help text; a macro so that `SUB_HELP` can end with them.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  broker or connection error, unreadable input (the message says what is wrong)
  2  usage error
  3  timeout: the expected messages or the reply did not arrive in time"
    };
}

const EXIT_CODES: &str = exit_codes!();

/// Publish, subscribe, request, reply and measure on any broker URL.
#[derive(Debug, Parser)]
#[command(name = "broker", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Broker URL: memory://, nats://HOST:PORT, jetstream://HOST:PORT, kafka://HOST:PORT
    /// (the schemes this build compiles in).
    #[arg(long, global = true, env = "BROKER_URL", default_value = "memory://")]
    pub(crate) url: String,

    /// Say more on stderr.
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The broker URL: `--url`, else `BROKER_URL` when set and not empty, else `memory://`.
    pub(crate) fn url(&self) -> &str {
        match self.url.trim() {
            "" => "memory://",
            url => url,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Publish a message (or N copies) to TOPIC.
    #[command(after_help = EXIT_CODES)]
    Pub(PubArgs),
    /// Print the messages PATTERN matches, one JSON line each, acking each once printed.
    #[command(after_help = SUB_HELP)]
    Sub(SubArgs),
    /// Send a request to TOPIC and print the reply's payload.
    #[command(after_help = EXIT_CODES)]
    Request(RequestArgs),
    /// Answer the requests PATTERN matches, printing each as a JSON line.
    #[command(after_help = EXIT_CODES)]
    Reply(ReplyArgs),
    /// Measure publishing and publish-to-subscribe on the URL.
    ///
    /// Each phase writes to a fresh topic `bench.<phase>.<unique>`; on Kafka and JetStream
    /// those stay until deleted. Exits 3 when the subscriber did not get every message
    /// within --timeout.
    #[command(after_help = EXIT_CODES)]
    Bench(BenchArgs),
}

const SUB_HELP: &str = concat!(
    "\
Each message is one line: {\"topic\",\"key\",\"id\",\"headers\":{..},\"payload\"}.
A payload, key or header value that is not UTF-8 is written in base64: \"payload_base64\"
and \"key_base64\" instead of \"payload\" and \"key\", {\"base64\": \"..\"} for a header value.
A header written more than once is an array of its values; a null value is null.

With --count, a --timeout that passes first is an error (exit 3); without --count,
--timeout just ends the subscription (exit 0).

",
    exit_codes!()
);

/// What a message is made of: payload, headers and key.
#[derive(Debug, Args)]
pub(crate) struct MessageArgs {
    /// The payload; read from --file, or from stdin when absent or `-`.
    pub(crate) payload: Option<String>,

    /// Read the payload from this file.
    #[arg(long, conflicts_with = "payload")]
    pub(crate) file: Option<PathBuf>,

    /// A header, `name=value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// The message key (Kafka: the record key, which picks the partition).
    #[arg(long)]
    pub(crate) key: Option<String>,
}

/// `broker pub`.
#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    /// The topic, a dotted subject such as `order.created`.
    pub(crate) topic: String,

    #[command(flatten)]
    pub(crate) message: MessageArgs,

    /// Publish this many copies, each with its own id.
    #[arg(long, default_value_t = 1)]
    pub(crate) count: u64,
}

/// What a subscription listens to and when it stops.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The subject pattern: `*` matches one token, `>` one or more trailing tokens.
    pub(crate) pattern: String,

    /// Join this queue group (Kafka: consumer group); its members share the messages.
    #[arg(long)]
    pub(crate) group: Option<String>,

    /// Where to start without a stored position, on brokers that keep history.
    #[arg(long, value_enum)]
    pub(crate) from: Option<From>,

    /// Stop after this many messages.
    #[arg(long)]
    pub(crate) count: Option<u64>,

    /// Stop after this many seconds; with --count, that is an error (exit 3).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<Duration>,
}

/// `broker sub`.
#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
}

/// `--from`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum From {
    /// Everything the broker still retains.
    Earliest,
    /// Only messages published from now on.
    Latest,
}

/// `broker request`.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The topic the responder listens on.
    pub(crate) topic: String,

    #[command(flatten)]
    pub(crate) message: MessageArgs,

    /// How long to wait for the reply, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
}

/// `broker reply`.
#[derive(Debug, Args)]
pub(crate) struct ReplyArgs {
    #[command(flatten)]
    pub(crate) listen: ListenArgs,

    /// Answer every request with this payload.
    #[arg(long, required_unless_present = "echo", conflicts_with = "echo")]
    pub(crate) payload: Option<String>,

    /// Answer every request with its own payload.
    #[arg(long)]
    pub(crate) echo: bool,
}

/// `broker bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Messages per phase.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) count: u64,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    pub(crate) size: usize,

    /// Publishes in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) in_flight: usize,

    /// How long to wait for the subscriber to receive everything, in seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
}

/// `name=value`, split at the first `=`.
fn parse_header(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{arg}` is not NAME=VALUE")),
    }
}

/// Seconds, possibly fractional (`0.5`).
fn parse_secs(arg: &str) -> Result<Duration, String> {
    let secs: f64 = arg
        .parse()
        .map_err(|_| format!("`{arg}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{arg}` seconds: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_header("a=b=c"),
            Ok(("a".to_owned(), "b=c".to_owned()))
        );
        assert_eq!(parse_header("a="), Ok(("a".to_owned(), String::new())));
        assert!(parse_header("=b").is_err());
        assert!(parse_header("ab").is_err());
    }

    #[test]
    fn seconds_may_be_fractional_but_not_negative() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
