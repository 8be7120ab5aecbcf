//! `demo`: every service in one process, a few users through HTTP, what happened.

use std::sync::Arc;

use anyhow::Context;
use broker::Broker;
use example_support::demo::{self, drain, next, post_json};
use example_support::plugin;
use example_support::run::shutdown_all;
use tokio::sync::mpsc;
use user_email::{
    AuditEntry, Topics, User, UserService, WelcomeMail, audit_options, email_options, router,
    run_audit, run_email,
};

pub(crate) async fn run(broker: Arc<dyn Broker>, url: &str, topics: &Topics) -> anyhow::Result<()> {
    let (mail_tx, mut mails) = mpsc::unbounded_channel();
    let (audit_tx, mut audit) = mpsc::unbounded_channel();
    let mut handles = email_options()
        .topics(topics.clone())
        .observe(mail_tx)
        .start_instances(2, "the email service", |options| {
            run_email(broker.clone(), options)
        })
        .await?;
    let options = audit_options().topics(topics.clone()).observe(audit_tx);
    handles.push(
        run_audit(broker.clone(), options)
            .await
            .context("audit log")?,
    );
    let service = UserService::new(broker, topics).context("user service")?;
    let server = demo::serve(router(service), "the user service").await?;
    let backend = plugin::describe(url);
    println!("{backend}; user service on {}", server.url(""));

    let client = reqwest::Client::new();
    let mut created = Vec::new();
    for (name, email) in [("Ada", "ada@example.com"), ("Linus", "linus@example.com")] {
        let body = serde_json::json!({ "name": name, "email": email }).to_string();
        let (_, text) = post_json(&client, &server, "/users", &body).await?;
        let user: User =
            serde_json::from_str(&text).with_context(|| format!("unexpected answer {text}"))?;
        let mail = next(&mut mails, "welcome mail", |m: &WelcomeMail| {
            m.user_id == user.id
        })
        .await?;
        println!("  [{}] {mail}", mail.instance);
        let entry = next(&mut audit, "audit entry", |e: &AuditEntry| {
            e.user_id.as_deref() == Some(&user.id)
        })
        .await?;
        println!("  [audit] {entry}");
        created.push(user);
    }
    let again = r#"{"name":"Ada again","email":"ada@example.com"}"#;
    post_json(&client, &server, "/users", again).await?;
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
        let entry = next(&mut audit, "audit entry", |e: &AuditEntry| {
            e.topic.ends_with("user.deleted")
        })
        .await?;
        println!("  [audit] {entry} (no mail: email listens to user.created only)");
    }

    server
        .shutdown()
        .await
        .context("stopping the HTTP server")?;
    shutdown_all(handles, "a subscriber").await?;
    let stray_mails = drain(&mut mails).len();
    anyhow::ensure!(stray_mails == 0, "{stray_mails} unexpected mails");
    println!(
        "{} users created, {} welcome mails, audit saw user.created and user.deleted",
        created.len(),
        created.len()
    );
    Ok(())
}
