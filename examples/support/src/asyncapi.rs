//! `GET /asyncapi.json`: the example's AsyncAPI document (see [`broker::asyncapi`]).
//!
//! ```
//! use broker::asyncapi::AsyncApi;
//! use broker::codec::Json;
//!
//! let document = AsyncApi::new("echo", "1.0.0").publishes::<String>("echo", Json);
//! let router = example_support::asyncapi::router(&document)?;
//! # let _: axum::Router = router;
//! # Ok::<(), broker::Error>(())
//! ```

use axum::Router;
use axum::http::header;
use axum::routing::get;
use broker::asyncapi::AsyncApi;

/// The path the document is served at.
pub const PATH: &str = "/asyncapi.json";

/// `GET /asyncapi.json`, answering `document` as JSON.
///
/// # Errors
///
/// The document has a topic or pattern that is not valid.
pub fn router(document: &AsyncApi) -> broker::Result<Router> {
    let body = document.to_json()?.to_string();
    Ok(Router::new().route(
        PATH,
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    ))
}
