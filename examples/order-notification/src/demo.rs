//! `demo`: both services in one process, a few orders through HTTP, what happened.

use std::sync::Arc;

use anyhow::Context;
use broker::Broker;
use example_support::demo::{self, drain, next, post_json};
use example_support::plugin;
use example_support::run::shutdown_all;
use order_notification::{
    OrderService, ProductStore, Snowflake, SubmitOrder, SubmitResponse, Topics,
    notification_options, router, run_notifications,
};
use tokio::sync::mpsc;

pub(crate) async fn run(broker: Arc<dyn Broker>, url: &str, topics: &Topics) -> anyhow::Result<()> {
    let (observer, mut notifications) = mpsc::unbounded_channel();
    let instances = notification_options()
        .topics(topics.clone())
        .observe(observer)
        .start_instances(2, "the notification service", |options| {
            run_notifications(broker.clone(), options)
        })
        .await?;
    let ids = Snowflake::new(1).context("snowflake node")?;
    let service = OrderService::new(broker, topics, ProductStore::sample(), ids)
        .context("cannot create the order service")?;
    let server = demo::serve(router(service.clone()), "the order service").await?;
    let backend = plugin::describe(url);
    println!("{backend}; order service on {}", server.url(""));
    println!("stock: {}", stock_line(&service));

    let client = reqwest::Client::new();
    let orders = [
        SubmitOrder {
            product_id: 1,
            count: 2,
            uid: 1,
        },
        SubmitOrder {
            product_id: 2,
            count: 1,
            uid: 2,
        },
        SubmitOrder {
            product_id: 2,
            count: 1,
            uid: 3,
        },
    ];
    let mut notified = 0;
    for order in &orders {
        let body = serde_json::to_string(order).context("encoding the request")?;
        let (_, text) = post_json(&client, &server, "/order/submit", &body).await?;
        let answer: SubmitResponse =
            serde_json::from_str(&text).with_context(|| format!("unexpected answer {text}"))?;
        match answer.order_id {
            Some(order_id) => {
                let what = format!("notification of order {order_id}");
                let seen = next(&mut notifications, &what, |n| n.order_id == order_id).await?;
                println!("  [{}] {seen}", seen.instance);
                notified += 1;
            }
            None => println!("  refused: no order, no notification"),
        }
    }

    server
        .shutdown()
        .await
        .context("stopping the HTTP server")?;
    shutdown_all(instances, "a notification instance").await?;
    let stray = drain(&mut notifications);
    anyhow::ensure!(stray.is_empty(), "unexpected notifications: {stray:?}");
    println!(
        "{} orders submitted, {notified} notified, {} refused; stock: {}",
        service.orders().len(),
        orders.len() - notified,
        stock_line(&service)
    );
    Ok(())
}

fn stock_line(service: &OrderService) -> String {
    service
        .products()
        .list()
        .iter()
        .map(|p| format!("{} {} ×{}", p.id, p.name, p.stock))
        .collect::<Vec<_>>()
        .join(", ")
}
