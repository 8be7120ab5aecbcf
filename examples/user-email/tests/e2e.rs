//! End-to-end: the user service over HTTP, the email service and the audit log over the
//! broker, on memory:// always, on NATS and JetStream with `--features nats`, on Kafka
//! with `--features kafka`.

use example_testing as support;

use std::collections::HashMap;
use std::sync::Arc;

use broker::observe::metric_names;
use broker::{Broker, SubscriberHandle};
use serde_json::json;
use support::metrics::{Sample, Turn, scrape, scrape_until, value};
use support::{Backend, WAIT, unique};
use tokio::sync::mpsc;
use user_email::http::Server;
use user_email::{
    AuditEntry, AuditOptions, EmailOptions, Topics, User, UserCreated, UserService, WelcomeMail,
    router, run_audit, run_email,
};

/// The three services on one (observed) broker, under a topic prefix and groups of their
/// own, with `GET /metrics` on the user port as the binary serves it.
struct Users {
    broker: Arc<dyn Broker>,
    server: Server,
    topics: Topics,
    client: reqwest::Client,
    mails: mpsc::UnboundedReceiver<WelcomeMail>,
    audit: mpsc::UnboundedReceiver<AuditEntry>,
    handles: Vec<SubscriberHandle>,
    _turn: Turn,
}

impl Users {
    async fn start(backend: Backend, email_instances: usize, with_audit: bool) -> Users {
        let turn = Turn::shared(backend).await;
        Users::start_in(turn, backend, email_instances, with_audit).await
    }

    /// Alone on `backend`, so that the publish counter is this test's own.
    async fn start_alone(backend: Backend, email_instances: usize, with_audit: bool) -> Users {
        let turn = Turn::alone(backend).await;
        Users::start_in(turn, backend, email_instances, with_audit).await
    }

    async fn start_in(
        turn: Turn,
        backend: Backend,
        email_instances: usize,
        with_audit: bool,
    ) -> Users {
        // The recorder first: the metrics layer resolves its handles when it is built.
        let recorder = support::metrics::recorder();
        let broker = broker::observe::observed(backend.connect().await);
        let topics = Topics::prefixed(&unique("users"));
        let (mail_tx, mails) = mpsc::unbounded_channel();
        let (audit_tx, audit) = mpsc::unbounded_channel();
        let email_group = unique("email");
        let mut handles = Vec::new();
        for n in 1..=email_instances {
            let options = EmailOptions::new()
                .topics(topics.clone())
                .queue(email_group.clone())
                .instance(format!("e{n}"))
                .observe(mail_tx.clone());
            handles.push(subscribed(backend, run_email(broker.clone(), options)).await);
        }
        if with_audit {
            let options = AuditOptions::new()
                .topics(topics.clone())
                .queue(unique("audit"))
                .observe(audit_tx);
            handles.push(subscribed(backend, run_audit(broker.clone(), options)).await);
        }
        let service = UserService::new(broker.clone(), &topics).expect("user service");
        let app = example_telemetry::with_metrics(router(service), recorder);
        let server = user_email::http::serve("127.0.0.1:0", app)
            .await
            .expect("bind the user service");
        Users {
            broker,
            server,
            topics,
            client: reqwest::Client::new(),
            mails,
            audit,
            handles,
            _turn: turn,
        }
    }

    async fn post_user(&self, name: &str, email: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.server.url("/users"))
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
            .delete(self.server.url(&format!("/users/{id}")))
            .timeout(WAIT)
            .send()
            .await
            .expect("DELETE /users/{id}")
            .status()
            .as_u16()
    }

    /// Waits until `done` holds for what `rx` delivered, and returns all of it.
    async fn collect<T: std::fmt::Debug>(
        backend: Backend,
        rx: &mut mpsc::UnboundedReceiver<T>,
        done: impl Fn(&[T]) -> bool,
    ) -> Vec<T> {
        let mut seen = Vec::new();
        let outcome = tokio::time::timeout(WAIT, async {
            while !done(&seen) {
                match rx.recv().await {
                    Some(item) => seen.push(item),
                    None => break,
                }
            }
        })
        .await;
        assert!(
            outcome.is_ok() && done(&seen),
            "on {backend:?}, not everything arrived within {WAIT:?}; got {seen:?}"
        );
        seen
    }

    /// Stops the subscribers (finishing what they hold) and the server; returns the
    /// mails and audit entries not yet read.
    async fn stop(mut self) -> (Vec<WelcomeMail>, Vec<AuditEntry>) {
        for handle in self.handles.drain(..) {
            tokio::time::timeout(WAIT, handle.shutdown())
                .await
                .expect("shutdown in time")
                .expect("shutdown");
        }
        self.server.shutdown().await.expect("stop the server");
        let _ = tokio::time::timeout(WAIT, self.broker.close()).await;
        let mails = std::iter::from_fn(|| self.mails.try_recv().ok()).collect();
        let audit = std::iter::from_fn(|| self.audit.try_recv().ok()).collect();
        (mails, audit)
    }
}

async fn subscribed(
    backend: Backend,
    subscribe: impl Future<Output = broker::Result<SubscriberHandle>>,
) -> SubscriberHandle {
    tokio::time::timeout(WAIT, subscribe)
        .await
        .unwrap_or_else(|_| panic!("subscribing took more than {WAIT:?} on {backend:?}"))
        .unwrap_or_else(|e| panic!("subscribe on {backend:?}: {}", e.display_chain()))
}

async fn welcome_mail_and_audit_fan_out(backend: Backend) {
    let mut users = Users::start(backend, 1, true).await;
    let ada = users.create("Ada", "ada@example.com").await;
    assert_eq!(ada.name, "Ada");

    let mails = Users::collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
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
    let entries = Users::collect(backend, &mut users.audit, |e: &[AuditEntry]| {
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
    let mut users = Users::start(backend, 1, true).await;
    let linus = users.create("Linus", "linus@example.com").await;
    assert_eq!(users.delete(&linus.id).await, 204);
    let deleted = users.topics.deleted.clone();
    let entries = Users::collect(backend, &mut users.audit, |e: &[AuditEntry]| {
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
    let mails = Users::collect(backend, &mut users.mails, |m: &[WelcomeMail]| !m.is_empty()).await;
    let (more_mails, _) = users.stop().await;
    assert_eq!(
        mails.len() + more_mails.len(),
        1,
        "{mails:?} {more_mails:?}"
    );
}

async fn email_group_sends_one_mail_per_user(backend: Backend) {
    let mut users = Users::start(backend, 2, false).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        let user = users
            .create(&format!("user {n}"), &format!("user{n}@example.com"))
            .await;
        ids.push(user.id);
    }
    let mut mails = Users::collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
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
    let mut users = Users::start_alone(backend, 2, true).await;
    let metrics_url = users.server.url("/metrics");
    let backend_name = users.broker.capabilities().backend;
    let published = |samples: &[Sample]| {
        value(
            samples,
            metric_names::PUBLISHED,
            &[("backend", backend_name)],
        )
    };
    let before = published(&scrape(&users.client, &metrics_url).await);

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
    let mails = Users::collect(backend, &mut users.mails, |m: &[WelcomeMail]| {
        ids.iter().all(|id| m.iter().any(|m| &m.user_id == id))
    })
    .await;

    let expected = f64::from(USERS);
    let topics = users.topics.clone();
    let email = [
        ("backend", backend_name),
        ("pattern", topics.created.as_str()),
    ];
    let audit = [
        ("backend", backend_name),
        ("pattern", topics.all_users.as_str()),
    ];
    // Acks are counted once the backend confirms them, after the handlers returned.
    let samples = scrape_until(&users.client, &metrics_url, |s| {
        value(s, metric_names::ACKED, &email) >= expected
            && value(s, metric_names::ACKED, &audit) >= expected
    })
    .await;
    assert_eq!(published(&samples) - before, expected, "published");
    for labels in [&email, &audit] {
        assert_eq!(
            value(&samples, metric_names::DELIVERED, labels),
            expected,
            "delivered {labels:?}"
        );
        assert_eq!(
            value(&samples, metric_names::ACKED, labels),
            expected,
            "acked {labels:?}"
        );
        assert_eq!(
            value(&samples, metric_names::NACKED, labels),
            0.0,
            "nacked {labels:?}"
        );
    }

    let (more_mails, _) = users.stop().await;
    assert!(more_mails.is_empty(), "{mails:?} {more_mails:?}");
    assert_eq!(mails.len(), ids.len(), "one mail per user: {mails:?}");
    let after = support::metrics::parse(&support::metrics::recorder().render());
    assert_eq!(value(&after, metric_names::DELIVERED, &email), expected);
}

macro_rules! backend_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn welcome_mail_and_audit_fan_out() {
                super::welcome_mail_and_audit_fan_out($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn audit_wildcard_sees_deletes_that_email_ignores() {
                super::audit_wildcard_sees_deletes_that_email_ignores($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn email_group_sends_one_mail_per_user() {
                super::email_group_sends_one_mail_per_user($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn metrics_count_the_sign_ups() {
                super::metrics_count_the_sign_ups($backend).await;
            }
        }
    };
}

backend_tests!(memory, super::Backend::Memory);
#[cfg(feature = "nats")]
backend_tests!(nats, super::Backend::Nats);
#[cfg(feature = "nats")]
backend_tests!(jetstream, super::Backend::JetStream);
#[cfg(feature = "kafka")]
backend_tests!(kafka, super::Backend::Kafka);

#[tokio::test]
async fn bad_requests_are_refused_with_a_message() {
    let users = Users::start(Backend::Memory, 1, false).await;
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
        .post(users.server.url("/users"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let (mails, _) = users.stop().await;
    assert!(mails.len() <= 1, "one user, at most one mail: {mails:?}");
}
