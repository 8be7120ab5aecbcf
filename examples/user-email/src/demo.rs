//! `demo`: every service in one process, a few users through HTTP, what happened.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::Broker;
use tokio::sync::mpsc;
use user_email::{
    AuditEntry, AuditOptions, EmailOptions, Topics, User, UserService, WelcomeMail, http, plugin,
    router, run_audit, run_email,
};

/// How long to wait for an event's effects.
const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn run(broker: Arc<dyn Broker>, url: &str, topics: &Topics) -> anyhow::Result<()> {
    let (mail_tx, mut mails) = mpsc::unbounded_channel();
    let (audit_tx, mut audit) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for n in 1..=2 {
        let options = EmailOptions::new()
            .topics(topics.clone())
            .instance(format!("email-{n}"))
            .observe(mail_tx.clone());
        handles.push(
            run_email(broker.clone(), options)
                .await
                .context("email service")?,
        );
    }
    let options = AuditOptions::new().topics(topics.clone()).observe(audit_tx);
    handles.push(
        run_audit(broker.clone(), options)
            .await
            .context("audit log")?,
    );
    let service = UserService::new(broker, topics).context("user service")?;
    let server = http::serve("127.0.0.1:0", router(service))
        .await
        .context("cannot bind the user service")?;
    println!(
        "broker {} (backends compiled in: {}); user service on {}",
        broker::registry::redact_url(url),
        plugin::backends().join(", "),
        server.url("")
    );

    let client = reqwest::Client::new();
    let mut created = Vec::new();
    for (name, email) in [("Ada", "ada@example.com"), ("Linus", "linus@example.com")] {
        let body = serde_json::json!({ "name": name, "email": email });
        let response = client
            .post(server.url("/users"))
            .json(&body)
            .send()
            .await
            .context("POST /users")?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        println!("POST /users {body} -> {} {text}", status.as_u16());
        let user: User =
            serde_json::from_str(&text).with_context(|| format!("unexpected answer {text}"))?;
        let mail = next(&mut mails, |m: &WelcomeMail| m.user_id == user.id).await?;
        println!("  [{}] {mail}", mail.instance);
        let entry = next(&mut audit, |e: &AuditEntry| {
            e.user_id.as_deref() == Some(&user.id)
        })
        .await?;
        println!("  [audit] {entry}");
        created.push(user);
    }
    let response = client
        .post(server.url("/users"))
        .json(&serde_json::json!({ "name": "Ada again", "email": "ada@example.com" }))
        .send()
        .await
        .context("POST /users")?;
    let status = response.status();
    println!(
        "POST /users {{\"name\":\"Ada again\",\"email\":\"ada@example.com\"}} -> {} {}",
        status.as_u16(),
        response.text().await.context("reading the answer")?
    );
    if let Some(user) = created.first() {
        let response = client
            .delete(server.url(&format!("/users/{}", user.id)))
            .send()
            .await
            .context("DELETE /users/{id}")?;
        println!(
            "DELETE /users/{} -> {}",
            user.id,
            response.status().as_u16()
        );
        let entry = next(&mut audit, |e: &AuditEntry| {
            e.topic.ends_with("user.deleted")
        })
        .await?;
        println!("  [audit] {entry} (no mail: email listens to user.created only)");
    }

    server
        .shutdown()
        .await
        .context("stopping the HTTP server")?;
    for handle in handles {
        handle.shutdown().await.context("stopping a subscriber")?;
    }
    let stray_mails = std::iter::from_fn(|| mails.try_recv().ok()).count();
    anyhow::ensure!(stray_mails == 0, "{stray_mails} unexpected mails");
    println!(
        "{} users created, {} welcome mails, audit saw user.created and user.deleted",
        created.len(),
        created.len()
    );
    Ok(())
}

async fn next<T: std::fmt::Debug>(
    rx: &mut mpsc::UnboundedReceiver<T>,
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
        Ok(None) => anyhow::bail!("the subscriber stopped"),
        Err(_) => anyhow::bail!("nothing arrived within {WAIT:?}"),
    }
}
