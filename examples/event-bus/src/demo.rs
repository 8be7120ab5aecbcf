//! `demo`: `GET /prods` without a product service (timeout), with one, and with a slow
//! one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use broker::Broker;
use event_bus::{Gateway, Topics, product_options, router, run_product_service};
use example_support::demo;
use example_support::plugin;

/// How long the demo's gateway waits.
const TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) async fn run(broker: Arc<dyn Broker>, url: &str, topics: &Topics) -> anyhow::Result<()> {
    let gateway = Gateway::new(broker.clone(), topics.clone(), TIMEOUT)
        .await
        .context("cannot start the gateway")?;
    let server = demo::serve(router(gateway), "the gateway").await?;
    let backend = plugin::describe(url);
    println!("{backend}; gateway on {} waits {TIMEOUT:?}", server.url(""));
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        let url = server.url(path);
        async move {
            let started = Instant::now();
            let response = client.get(url).send().await.context("GET")?;
            let status = response.status().as_u16();
            let body = response.text().await.context("reading the answer")?;
            println!(
                "GET {path} -> {status} {body} ({} ms)",
                started.elapsed().as_millis()
            );
            anyhow::Ok(status)
        }
    };

    println!("no product service:");
    anyhow::ensure!(get("/prods").await? == 504, "expected a timeout");

    let options = product_options().topics(topics.clone());
    let products = run_product_service(broker.clone(), options, Duration::ZERO)
        .await
        .context("cannot subscribe the product service")?;
    println!("product service running:");
    anyhow::ensure!(get("/prods?size=2").await? == 200, "expected products");
    products
        .shutdown()
        .await
        .context("stopping the product service")?;

    let options = product_options()
        .topics(topics.clone())
        .instance("slow-product");
    let slow = run_product_service(broker, options, TIMEOUT * 4)
        .await
        .context("cannot subscribe the slow product service")?;
    println!("a product service that answers after {:?}:", TIMEOUT * 4);
    anyhow::ensure!(get("/prods").await? == 504, "expected a timeout");
    slow.shutdown()
        .await
        .context("stopping the slow product service")?;
    server
        .shutdown()
        .await
        .context("stopping the HTTP server")?;
    Ok(())
}
