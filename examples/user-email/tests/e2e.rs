//! End-to-end: the user service over HTTP, the email service and the audit log over the
//! broker, on memory:// always, on NATS and JetStream with `--features nats`, on Kafka
//! with `--features kafka`.

use std::collections::HashMap;

use example_support::backend_tests;
use example_support::demo::drain;
use example_support::testing::metrics;
use example_support::testing::{Backend, Harness, WAIT, collect, unique};
use serde_json::json;
use tokio::sync::mpsc;
use user_email::{
    AuditEntry, Topics, User, UserCreated, UserService, WelcomeMail, audit_options, email_options,
    router, run_audit, run_email,
};

/// The three services on one (observed) broker, under a topic prefix and groups of their
/// own, with `GET /metrics` on the user port as the binary serves it.
struct Users {
    harness: Harness,
    topics: Topics,
    mails: mpsc::UnboundedReceiver<WelcomeMail>,
    audit: mpsc::UnboundedReceiver<AuditEntry>,
}

example_support::harness_fixture!(Users);

impl Users {
    async fn start(mut harness: Harness, email_instances: usize, with_audit: bool) -> Users {
        let broker = harness.broker.clone();
        let topics = Topics::prefixed(&unique("users"));
        let (mail_tx, mails) = mpsc::unbounded_channel();
        let (audit_tx, audit) = mpsc::unbounded_channel();
        let email_group = unique("email");
        for n in 1..=email_instances {
            let options = email_options()
                .topics(topics.clone())
                .queue(email_group.clone())
                .instance(format!("e{n}"))
                .observe(mail_tx.clone());
            harness.subscribe(run_email(broker.clone(), options)).await;
        }
        if with_audit {
            let options = audit_options()
                .topics(topics.clone())
                .queue(unique("audit"))
                .observe(audit_tx);
            harness.subscribe(run_audit(broker.clone(), options)).await;
        }
        let service = UserService::new(broker, &topics).expect("user service");
        harness.serve(router(service)).await;
        Users {
            harness,
            topics,
            mails,
            audit,
        }
    }

    async fn post_user(&self, name: &str, email: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url("/users"))
            .json(&json!({ "name": name, "email": email }))
            .timeout(WAIT)
            .send()
            .await
            .expect("POST /users");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    async fn create(&self, name: &str, email: &str) -> User {
        let (status, body) = self.post_user(name, email).await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_value(body).expect("a user")
    }

    async fn delete(&self, id: &str) -> u16 {
        self.client
            .delete(self.url(&format!("/users/{id}")))
            .timeout(WAIT)
            .send()
            .await
            .expect("DELETE /users/{id}")
            .status()
            .as_u16()
    }

    /// Stops the subscribers (finishing what they hold) and the server; returns the
    /// mails and audit entries not yet read.
    async fn stop(self) -> (Vec<WelcomeMail>, Vec<AuditEntry>) {
        let Users {
            harness,
            mut mails,
            mut audit,
            ..
        } = self;
        harness.stop().await;
        (drain(&mut mails), drain(&mut audit))
    }
}

async fn welcome_mail_and_audit_fan_out(backend: Backend) {
    let mut users = Users::start(Harness::shared(backend).await, 1, true).await;
    let ada = users.create("Ada", "ada@example.com").await;
    assert_eq!(ada.name, "Ada");

    let mails = collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
        m.iter().any(|m| m.user_id == ada.id)
    })
    .await;
    let mail = mails
        .iter()
        .find(|m| m.user_id == ada.id)
        .expect("Ada's mail");
    assert_eq!(mail.to, "ada@example.com");
    assert_eq!(mail.name, "Ada");
    assert_eq!(mail.subject, "Welcome, Ada!");

    // The audit log got the same event: fan-out to a second group, through `user.>`.
    let entries = collect(backend, &mut users.audit, |e: &[AuditEntry]| {
        e.iter().any(|e| e.user_id.as_deref() == Some(&ada.id))
    })
    .await;
    let entry = entries
        .iter()
        .find(|e| e.user_id.as_deref() == Some(&ada.id))
        .expect("Ada's audit entry");
    assert_eq!(entry.topic, users.topics.created);
    let event: UserCreated = serde_json::from_str(&entry.payload).expect("user.created JSON");
    assert_eq!(
        event,
        UserCreated {
            id: ada.id.clone(),
            name: "Ada".into(),
            email: "ada@example.com".into()
        }
    );
    let (more_mails, more_entries) = users.stop().await;
    assert!(more_mails.is_empty(), "{more_mails:?}");
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(
        entries.len() + more_entries.len(),
        1,
        "{entries:?} {more_entries:?}"
    );
}

async fn audit_wildcard_sees_deletes_that_email_ignores(backend: Backend) {
    let mut users = Users::start(Harness::shared(backend).await, 1, true).await;
    let linus = users.create("Linus", "linus@example.com").await;
    assert_eq!(users.delete(&linus.id).await, 204);
    let deleted = users.topics.deleted.clone();
    let entries = collect(backend, &mut users.audit, |e: &[AuditEntry]| {
        e.iter().any(|e| e.topic == deleted) && e.len() >= 2
    })
    .await;
    let mut topics: Vec<&str> = entries.iter().map(|e| e.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, [users.topics.created.as_str(), deleted.as_str()]);
    assert!(
        entries
            .iter()
            .all(|e| e.user_id.as_deref() == Some(&linus.id))
    );
    let mails = collect(backend, &mut users.mails, |m: &[WelcomeMail]| !m.is_empty()).await;
    let (more_mails, _) = users.stop().await;
    assert_eq!(
        mails.len() + more_mails.len(),
        1,
        "{mails:?} {more_mails:?}"
    );
}

async fn email_group_sends_one_mail_per_user(backend: Backend) {
    let mut users = Users::start(Harness::shared(backend).await, 2, false).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        let user = users
            .create(&format!("user {n}"), &format!("user{n}@example.com"))
            .await;
        ids.push(user.id);
    }
    let mut mails = collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
        ids.iter().all(|id| m.iter().any(|m| &m.user_id == id))
    })
    .await;
    mails.extend(users.stop().await.0);
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for mail in &mails {
        *per_user.entry(mail.user_id.as_str()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(per_user.get(id.as_str()), Some(&1), "{mails:?}");
    }
    assert_eq!(mails.len(), ids.len(), "{mails:?}");
}

/// `GET /metrics` counts what happened: N users published, each delivered and acked once
/// in the email group and once in the audit log, nothing for the refused sign-up.
async fn metrics_count_the_sign_ups(backend: Backend) {
    const USERS: u32 = 4;
    let mut users = Users::start(Harness::alone(backend).await, 2, true).await;
    let before = users.published().await;

    let mut ids = Vec::new();
    for n in 1..=USERS {
        let user = users
            .create(&format!("user {n}"), &format!("user{n}@example.com"))
            .await;
        ids.push(user.id);
    }
    // The address is taken: refused, nothing published.
    let (status, body) = users.post_user("again", "USER1@example.com").await;
    assert_eq!(status, 409, "{body}");
    let mails = collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
        ids.iter().all(|id| m.iter().any(|m| &m.user_id == id))
    })
    .await;

    let expected = f64::from(USERS);
    let backend_name = users.backend_name();
    let topics = users.topics.clone();
    let (email, audit) = (topics.created.as_str(), topics.all_users.as_str());
    let samples = users.scrape_until_acked(&[email, audit], expected).await;
    let published = metrics::published(&samples, backend_name);
    assert_eq!(published - before, expected, "published");
    for pattern in [email, audit] {
        metrics::assert_handled(&samples, backend_name, pattern, expected);
    }

    let (more_mails, _) = users.stop().await;
    assert!(more_mails.is_empty(), "{mails:?} {more_mails:?}");
    assert_eq!(mails.len(), ids.len(), "one mail per user: {mails:?}");
    assert_eq!(metrics::delivered_now(backend_name, email), expected);
}

backend_tests!(
    welcome_mail_and_audit_fan_out,
    audit_wildcard_sees_deletes_that_email_ignores,
    email_group_sends_one_mail_per_user,
    metrics_count_the_sign_ups,
);

#[tokio::test]
async fn bad_requests_are_refused_with_a_message() {
    let users = Users::start(Harness::shared(Backend::Memory).await, 1, false).await;
    let (status, body) = users.post_user("", "nobody@example.com").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("name")));
    let (status, body) = users.post_user("Ada", "not-an-address").await;
    assert_eq!(status, 400, "{body}");
    users.create("Ada", "ada@example.com").await;
    let (status, body) = users.post_user("Ada", "ADA@example.com").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(users.delete("no-such-user").await, 404);
    let response = users
        .client
        .post(users.url("/users"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let (mails, _) = users.stop().await;
    assert!(mails.len() <= 1, "one user, at most one mail: {mails:?}");
}
