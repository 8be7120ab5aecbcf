//! Tests of reading `NatsOptions` from URLs.

use super::*;

fn parse(url: &str) -> Result<NatsOptions> {
    NatsOptions::from_url(&Url::parse(url).expect("url"))
}

#[test]
fn userinfo_gives_credentials() {
    let o = parse("nats://alice:p%40ss@h:1234").expect("options");
    assert_eq!(o.server, "nats://h:1234");
    assert_eq!(
        o.auth,
        Auth::UserPassword {
            user: "alice".into(),
            password: "p@ss".into()
        }
    );
    let o = parse("nats://tok@h").expect("options");
    assert_eq!(o.auth, Auth::Token("tok".into()));
    assert_eq!(o.server, "nats://h:4222");
}

#[test]
fn debug_hides_secrets() {
    let o = parse("jetstream://alice:hunter2@h?token=t0ken&name=svc").expect("options");
    let shown = format!("{o:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("t0ken"),
        "{shown}"
    );
    let o = NatsOptions::new("nats://u:hunter2@h:4222");
    assert!(!format!("{o:?}").contains("hunter2"));
    assert_eq!(o.server, "nats://h:4222");
    assert_eq!(
        o.auth,
        Auth::UserPassword {
            user: "u".into(),
            password: "hunter2".into()
        }
    );
    let o = NatsOptions::new("nats://t0ken@h:4222");
    assert_eq!(o.server, "nats://h:4222");
    assert_eq!(o.auth, Auth::Token("t0ken".into()));
    assert_eq!(NatsOptions::new("h:4222").server, "h:4222");
}

#[test]
fn message_ids_can_be_left_off_core_nats_only() {
    assert!(
        parse("nats://h").expect("options").message_ids,
        "on by default"
    );
    assert!(
        !parse("nats://h?message_ids=off")
            .expect("options")
            .message_ids
    );
    let err = parse("jetstream://h?message_ids=off").expect_err("jetstream");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("de-duplication"), "{err}");
    let err = parse("nats://h?message_ids=maybe").expect_err("not a switch");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let err = NatsOptions::new("h:4222")
        .jetstream()
        .message_ids(false)
        .validate()
        .expect_err("jetstream");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn jetstream_keys_need_jetstream() {
    let err = parse("nats://h?max_deliver=3").expect_err("core");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let o = parse("jetstream://h?max_deliver=3&ack_wait_ms=1500&create_streams=off&storage=memory")
        .expect("options");
    assert_eq!(o.mode, Mode::JetStream);
    assert_eq!(o.jetstream.max_deliver, Some(3));
    assert_eq!(o.jetstream.ack_wait, Duration::from_millis(1500));
    assert!(!o.jetstream.create_streams);
    assert_eq!(o.jetstream.storage, Storage::Memory);
    assert!(o.jetstream.confirm_acks, "acks are confirmed by default");
    let o = parse("jetstream://h?confirm_acks=off").expect("options");
    assert!(!o.jetstream.confirm_acks);
    assert!(
        !NatsOptions::new("h:4222")
            .jetstream()
            .confirm_acks(false)
            .jetstream
            .confirm_acks
    );
    let err = parse("nats://h?confirm_acks=off").expect_err("core");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn bad_values_are_invalid_config_and_redacted() {
    for url in [
        "nats://h?nope=1",
        "jetstream://h?ack_wait_ms=soon",
        "jetstream://h?confirm_acks=maybe",
        "jetstream://h?stream=A.B&stream_subjects=x",
        "jetstream://h?stream=EVENTS",
        "nats://h?tls_cert=/a",
    ] {
        assert_eq!(
            parse(url).expect_err(url).kind(),
            ErrorKind::InvalidConfig,
            "{url}"
        );
    }
    let err = parse("nats://h?token=").map(|_| ());
    assert!(err.is_ok());
}

#[test]
fn unknown_keys_are_refused_with_the_known_ones() {
    let err = parse("jetstream://h?nope=1").expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    let shown = err.to_string();
    assert!(shown.contains("unknown NATS URL option `nope`"), "{shown}");
    for k in URL_KEYS {
        assert!(
            shown.contains(k.name),
            "`{}` is not listed: {shown}",
            k.name
        );
    }
    assert!(shown.contains("message_ids (nats:// only)"), "{shown}");
}

#[test]
fn each_key_applies_to_its_urls_only() {
    for k in URL_KEYS {
        let (wrong, right) = match k.scope {
            Both => continue,
            CoreOnly(_) => ("jetstream", "nats"),
            JetStreamOnly => ("nats", "jetstream"),
        };
        let err = parse(&format!("{wrong}://h?{}=1", k.name)).expect_err(k.name);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{}", k.name);
        let only = format!("applies to `{right}://` URLs only");
        assert!(err.to_string().contains(&only), "{err}");
    }
}

#[test]
fn credentials_is_another_name_for_creds() {
    let o = parse("nats://h?credentials=/a.creds").expect("options");
    assert_eq!(o.auth, Auth::CredentialsFile("/a.creds".into()));
}

#[test]
fn query_user_and_password_win_whatever_their_order() {
    let o = parse("nats://tok@h?user=u&token=t&password=p").expect("options");
    assert_eq!(
        o.auth,
        Auth::UserPassword {
            user: "u".into(),
            password: "p".into()
        }
    );
    let err = parse("nats://alice@h?password=p").expect_err("no user");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn every_key_is_in_the_crate_docs() {
    let docs = include_str!("../lib.rs");
    let urls = &docs[docs.find("//! # URLs").expect("a URLs section")..];
    for k in URL_KEYS {
        assert!(
            urls.contains(&format!("`{}`", k.name)) || urls.contains(&format!("`{}=", k.name)),
            "`{}` is not in the crate docs' URL section",
            k.name
        );
    }
}

#[test]
fn keys_set_what_the_builder_sets() {
    let o = parse(
        "jetstream://h?name=n&connect_timeout_ms=1&request_timeout_ms=2&creds=/x&tls=yes\
         &tls_ca=/ca&tls_cert=/c&tls_key=/k&subscription_capacity=0&stream=EV\
         &stream_subjects=a.>,%20b.>,,&stream_prefix=P&replicas=0&max_age_secs=5\
         &max_ack_pending=3&publish_timeout_ms=13&pull_expires_ms=11&pull_batch=0\
         &duplicate_window_ms=7&ephemeral_inactive_ms=9",
    )
    .expect("options");
    let mut built = NatsOptions::new("nats://h:4222")
        .jetstream()
        .name("n")
        .connection_timeout(Duration::from_millis(1))
        .request_timeout(Duration::from_millis(2))
        .credentials_file("/x")
        .require_tls(true)
        .tls_ca_file("/ca")
        .tls_client_cert("/c", "/k")
        .subscription_capacity(0)
        .stream("EV")
        .stream_subjects(["a.>", "b.>"])
        .stream_prefix("P")
        .replicas(0)
        .max_age(Duration::from_secs(5))
        .max_ack_pending(3)
        .publish_timeout(Duration::from_millis(13))
        .pull_expires(Duration::from_millis(11));
    // No builder methods for these.
    built.jetstream.pull_batch = 1;
    built.jetstream.duplicate_window = Duration::from_millis(7);
    built.jetstream.ephemeral_inactive = Duration::from_millis(9);
    assert_eq!(o, built);
}

#[test]
fn replicas_for_a_cluster() {
    let url = broker_core::registry::parse_url("jetstream://a:4222,b:4222,c:4222?replicas=3")
        .expect("a seed list");
    let o = NatsOptions::from_url(&url).expect("options");
    assert_eq!(o.jetstream.replicas, 3);
    assert_eq!(o.server, "nats://a:4222,nats://b:4222,nats://c:4222");
    assert_eq!(
        parse("jetstream://h").expect("options").jetstream.replicas,
        1
    );
    assert_eq!(
        NatsOptions::new("nats://h:4222")
            .replicas(3)
            .jetstream
            .replicas,
        3
    );
    let err = parse("jetstream://h?replicas=three").expect_err("not a number");
    assert!(
        err.message().contains("`replicas` must be a whole number"),
        "{err}"
    );
    let err = parse("nats://h?replicas=3").expect_err("core NATS has no streams");
    assert!(err.message().contains("`jetstream://` URLs only"), "{err}");
    let err = parse("jetstream://h?replica=3").expect_err("misspelt");
    assert!(
        err.message().contains("replicas"),
        "the valid keys are listed: {err}"
    );
}
