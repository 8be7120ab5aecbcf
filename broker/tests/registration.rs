//! Every backend enabled by a cargo feature is registered, and nothing else is.

#[test]
fn each_enabled_scheme_is_registered() {
    broker::link_backends();
    let schemes = broker::registry::registered_schemes();
    let mut expected: Vec<&str> = Vec::new();
    if cfg!(feature = "memory") {
        expected.push("memory");
    }
    if cfg!(feature = "nats") {
        expected.extend(["jetstream", "nats"]);
    }
    if cfg!(feature = "kafka") {
        expected.push("kafka");
    }
    expected.sort_unstable();
    assert_eq!(schemes, expected, "the schemes registered in this binary");
}

#[test]
fn a_missing_scheme_names_the_feature_that_adds_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let err = broker::connect("rabbitmq://localhost")
            .await
            .expect_err("no such backend");
        assert_eq!(err.kind(), broker::ErrorKind::UnknownScheme);
        assert!(err.to_string().contains("rabbitmq"), "{err}");
        assert!(
            err.to_string()
                .contains("schemes this project knows: memory, nats, jetstream, kafka"),
            "{err}"
        );
        if !cfg!(feature = "kafka") {
            let err = broker::connect("kafka://127.0.0.1:9092")
                .await
                .expect_err("kafka is not compiled in");
            assert_eq!(err.kind(), broker::ErrorKind::UnknownScheme);
            assert!(err.to_string().contains("`kafka` cargo feature"), "{err}");
        }
        let err = broker::connect("not a url").await.expect_err("malformed");
        assert_eq!(err.kind(), broker::ErrorKind::InvalidUrl, "{err}");
    });
}

#[cfg(feature = "memory")]
#[test]
fn memory_is_the_default() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = broker::connect("memory://").await.expect("memory://");
        assert_eq!(broker.capabilities().backend, "memory");
    });
}
