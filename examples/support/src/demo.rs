//! What the `demo` commands share: requests printed with their answers, and waiting for
//! what a subscriber saw.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use example_telemetry::http::Server;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a demo waits for the effect of an event.
pub const WAIT: Duration = Duration::from_secs(10);

/// Serves `router` on a free port of 127.0.0.1; `what` names it in the error.
///
/// # Errors
///
/// No port can be bound.
pub async fn serve(router: Router, what: &str) -> anyhow::Result<Server> {
    example_telemetry::http::serve("127.0.0.1:0", router)
        .await
        .with_context(|| format!("cannot bind {what}"))
}

/// POSTs the JSON `body` to `path` on `server` and prints
/// `POST <path> <body> -> <status> <answer>`; returns the status and the answer.
///
/// # Errors
///
/// The request fails, or its answer cannot be read.
pub async fn post_json(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let response = client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.context("reading the answer")?;
    println!("POST {path} {body} -> {status} {text}");
    Ok((status, text))
}

/// The next item of `rx` that is `wanted`, within [`WAIT`]; the ones before it are
/// logged and dropped. `what` names the item awaited, for errors.
///
/// # Errors
///
/// The subscriber stopped, or nothing wanted arrived in time.
pub async fn next<T: Debug>(
    rx: &mut UnboundedReceiver<T>,
    what: &str,
    wanted: impl Fn(&T) -> bool,
) -> anyhow::Result<T> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(item) = rx.recv().await {
            if wanted(&item) {
                return Some(item);
            }
            tracing::warn!(?item, "an event for something else");
        }
        None
    })
    .await;
    match found {
        Ok(Some(item)) => Ok(item),
        Ok(None) => anyhow::bail!("the subscriber stopped before {what} arrived"),
        Err(_) => anyhow::bail!("no {what} within {WAIT:?}"),
    }
}

/// What `rx` holds now, without waiting.
pub fn drain<T>(rx: &mut UnboundedReceiver<T>) -> Vec<T> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}
