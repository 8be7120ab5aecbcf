//! `demo`: both services in one process, a few orders through HTTP, what happened.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::Broker;
use order_notification::{
    Notification, NotificationOptions, OrderService, ProductStore, Snowflake, SubmitOrder,
    SubmitResponse, Topics, http, plugin, router, run_notifications,
};
use tokio::sync::mpsc;

/// How long to wait for the notification of an order.
const NOTIFICATION_WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn run(broker: Arc<dyn Broker>, url: &str, topics: &Topics) -> anyhow::Result<()> {
    let (observer, mut notifications) = mpsc::unbounded_channel();
    let mut instances = Vec::new();
    for n in 1..=2 {
        let options = NotificationOptions::new()
            .topics(topics.clone())
            .instance(format!("notification-{n}"))
            .observe(observer.clone());
        instances.push(
            run_notifications(broker.clone(), options)
                .await
                .context("cannot subscribe the notification service")?,
        );
    }
    drop(observer);
    let ids = Snowflake::new(1).context("snowflake node")?;
    let service = OrderService::new(broker, topics, ProductStore::sample(), ids)
        .context("cannot create the order service")?;
    let server = http::serve("127.0.0.1:0", router(service.clone()))
        .await
        .context("cannot bind the order service")?;

    println!(
        "broker {} (backends compiled in: {}); order service on {}",
        broker::registry::redact_url(url),
        plugin::backends().join(", "),
        server.url("")
    );
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
        let response = client
            .post(server.url("/order/submit"))
            .json(order)
            .send()
            .await
            .context("POST /order/submit")?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        println!("POST /order/submit {body} -> {} {text}", status.as_u16());
        let answer: SubmitResponse =
            serde_json::from_str(&text).with_context(|| format!("unexpected answer {text}"))?;
        match answer.order_id {
            Some(order_id) => {
                let seen = wait_for(&mut notifications, &order_id).await?;
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
    for instance in instances {
        instance
            .shutdown()
            .await
            .context("stopping a notification instance")?;
    }
    let stray: Vec<Notification> = std::iter::from_fn(|| notifications.try_recv().ok()).collect();
    anyhow::ensure!(stray.is_empty(), "unexpected notifications: {stray:?}");
    println!(
        "{} orders submitted, {notified} notified, {} refused; stock: {}",
        service.orders().len(),
        orders.len() - notified,
        stock_line(&service)
    );
    Ok(())
}

async fn wait_for(
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    order_id: &str,
) -> anyhow::Result<Notification> {
    let found = tokio::time::timeout(NOTIFICATION_WAIT, async {
        while let Some(notification) = notifications.recv().await {
            if notification.order_id == order_id {
                return Some(notification);
            }
            tracing::warn!(%notification, "a notification for another order");
        }
        None
    })
    .await;
    match found {
        Ok(Some(notification)) => Ok(notification),
        Ok(None) => anyhow::bail!("the notification service stopped"),
        Err(_) => {
            anyhow::bail!("no notification for order {order_id} within {NOTIFICATION_WAIT:?}")
        }
    }
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
