//! The binary without a broker to run: usage errors, unknown schemes, timeouts and the
//! benchmark on `memory://`.

mod common;

use std::process::Command;

use common::{broker, run};

#[test]
fn usage_errors_exit_2() {
    let output = run(broker("memory://").arg("pub"), b"");
    assert_eq!(output.status.code(), Some(2));
    let output = run(
        broker("memory://").args(["pub", "t", "x", "-H", "novalue"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(2));
    let output = run(broker("memory://").args(["reply", "t"]), b"");
    assert_eq!(
        output.status.code(),
        Some(2),
        "reply needs --payload or --echo"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let output = run(broker("memory://").arg("--help"), b"");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(help.contains("3  timeout"), "{help}");
}

#[test]
fn an_unknown_scheme_exits_1_and_says_so() {
    let stderr = exits_1(broker("bogus://x").args(["pub", "t", "x"]));
    assert!(stderr.contains("unknown scheme"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn an_invalid_topic_exits_1() {
    let stderr = exits_1(broker("memory://").args(["pub", "a..b", "x"]));
    assert!(stderr.contains("invalid subject"), "{stderr}");
}

/// Runs `command` without input, asserts it exits 1, and returns what it wrote on stderr.
fn exits_1(command: &mut Command) -> String {
    let output = run(command, b"");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn publishing_prints_nothing_unless_verbose() {
    let quiet = run(broker("memory://").args(["pub", "t", "--count", "3"]), b"x");
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty() && quiet.stderr.is_empty());
    let verbose = run(broker("memory://").args(["-v", "pub", "t", "-"]), b"x");
    assert!(verbose.status.success());
    assert!(String::from_utf8_lossy(&verbose.stderr).contains("published"));
}

#[test]
fn an_empty_broker_url_means_memory() {
    let output = run(
        Command::new(env!("CARGO_BIN_EXE_broker"))
            .env("BROKER_URL", "")
            .args(["pub", "t", "x"]),
        b"",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_count_that_does_not_arrive_exits_3_and_no_count_ends_normally() {
    let output = run(
        broker("memory://").args(["sub", "t", "--count", "1", "--timeout", "0.2"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(3));
    let output = run(
        broker("memory://").args(["sub", "t", "--timeout", "0.2"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn bench_on_memory_prints_a_table() {
    let output = run(
        broker("memory://").args(["bench", "--count", "200", "--size", "16"]),
        b"",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("publish "), "{stdout}");
    assert!(stdout.contains("pub→sub"), "{stdout}");
    assert!(stdout.contains("200"), "{stdout}");
}
