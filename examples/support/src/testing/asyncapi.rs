//! An AsyncAPI document checked by the AsyncAPI project's own parser, `@asyncapi/parser`,
//! through `scripts/asyncapi-validate.mjs`. `scripts/asyncapi.sh install` installs the
//! parser and prints `ASYNCAPI_PARSER=…`; `scripts/test` exports it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use broker::asyncapi::AsyncApi;

/// Serves `document` at `GET /asyncapi.json` as the binaries do, checks that the JSON
/// served is the document's, and [`validate`]s it as `what`; returns the JSON served.
pub async fn serve_and_validate(what: &str, document: &AsyncApi) -> serde_json::Value {
    let router = crate::asyncapi::router(document).expect("valid topics");
    let server = example_telemetry::http::serve("127.0.0.1:0", router)
        .await
        .expect("bind a free port");
    let url = server.url(crate::asyncapi::PATH);
    let (status, served) = super::get_json(&reqwest::Client::new(), &url).await;
    server.shutdown().await.expect("stop the server");
    assert_eq!(status, 200, "GET {url}: {served}");
    assert_eq!(served, document.to_json().expect("a document"));
    validate(what, &served);
    served
}

/// Validates `document` with the AsyncAPI parser: panics with the parser's diagnostics
/// when it finds an error (warnings are printed only).
///
/// Without `ASYNCAPI_PARSER` the test fails, saying how to install it, when
/// `REQUIRE_BROKERS` or `CI` is set; otherwise the check is skipped with a note on stderr
/// (the caller's own assertions on the document still run).
pub fn validate(what: &str, document: &serde_json::Value) {
    let Some(parser) = parser_dir() else {
        return;
    };
    let script = scripts_dir().join("asyncapi-validate.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .env("ASYNCAPI_PARSER", &parser)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run `node {}`: {err}", script.display()));
    let text = serde_json::to_vec_pretty(document).expect("a JSON value serializes");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&text)
        .expect("write the document to the validator");
    let output = child.wait_with_output().expect("the validator finishes");
    let diagnostics = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the AsyncAPI parser rejects the document of {what} ({}):\n{diagnostics}\n{}",
        output.status,
        String::from_utf8_lossy(&text)
    );
    eprintln!("{what}: {diagnostics}");
}

/// `ASYNCAPI_PARSER`, or `None` when it is unset and not [`required`](super::required).
fn parser_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ASYNCAPI_PARSER").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    super::skip_or_fail(
        "AsyncAPI validation: ASYNCAPI_PARSER is not set: install the AsyncAPI parser with `scripts/asyncapi.sh install` and export the ASYNCAPI_PARSER=… line it prints",
    );
    None
}

/// The repository's `scripts/`.
fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}
