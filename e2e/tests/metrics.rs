//! `/metrics` of the release binary after real Mounts: counter values, and label sets drawn
//! only from small fixed sets — no vault, object, pod or class name ever becomes a label.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use akv_e2e::Fault;
use akv_e2e::driver::{self, Pod};
use akv_e2e::provider::{Provider, ProviderOptions};
use akv_e2e::scenario::{self, ORDERS_CLIENT_ID, Orders, TENANT, VAULT};
use akv_e2e::scrape::{self, Samples};
use tokio::time::Instant;

const MOUNTS: &str = "akv_csi_provider_mounts_total";
const KEYVAULT: &str = "akv_csi_provider_keyvault_requests_total";
const TOKENS: &str = "akv_csi_provider_token_requests_total";
const CACHE: &str = "akv_csi_provider_token_cache_lookups_total";

async fn metrics_port(provider: &Provider) -> u16 {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = provider.logged_port("metrics listening") {
            return port;
        }
        assert!(Instant::now() < give_up, "{}", provider.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scrape(port: u16) -> (String, Samples) {
    let answer = scrape::get(port, "/metrics").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(answer.body.ends_with("# EOF\n"), "{}", answer.body);
    let samples = Samples::parse(&answer.body);
    (answer.body, samples)
}

fn one_object(name: &str) -> String {
    scenario::spc_with_objects(&format!(
        "        - |\n          objectName: {name}\n          objectType: secret\n"
    ))
}

/// The label names of each family, and the values each label may take.
fn allowed() -> BTreeMap<&'static str, Vec<(&'static str, Vec<&'static str>)>> {
    let codes = vec![
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    let result = ("result", vec!["success", "error"]);
    let flag = vec!["true", "false"];
    BTreeMap::from([
        (
            "akv_csi_provider_mounts",
            vec![result.clone(), ("grpc_code", codes.clone())],
        ),
        (
            "akv_csi_provider_mount_duration_seconds",
            vec![result, ("grpc_code", codes)],
        ),
        ("akv_csi_provider_mounts_in_flight", vec![]),
        (
            "akv_csi_provider_keyvault_requests",
            vec![
                ("object_type", vec!["secret", "key", "cert"]),
                (
                    "status_class",
                    vec!["2xx", "3xx", "4xx", "5xx", "transport", "other"],
                ),
                ("retried", flag.clone()),
                ("throttled", flag),
            ],
        ),
        (
            "akv_csi_provider_token_requests",
            vec![
                (
                    "identity_mode",
                    vec!["workload_identity", "service_principal", "managed_identity"],
                ),
                (
                    "result",
                    vec!["success", "refused", "unavailable", "bad_response"],
                ),
            ],
        ),
        (
            "akv_csi_provider_token_cache_lookups",
            vec![("result", vec!["hit", "miss"])],
        ),
        (
            "akv_csi_provider_build_info",
            vec![
                ("version", vec![env!("CARGO_PKG_VERSION")]),
                ("arch", vec![std::env::consts::ARCH]),
            ],
        ),
    ])
}

/// Every sample belongs to a known family and carries exactly its labels, with allowed values.
fn assert_bounded_labels(samples: &Samples) {
    let allowed = allowed();
    for sample in &samples.0 {
        let (family, labels) = allowed
            .iter()
            .filter(|(family, _)| sample.name.starts_with(*family))
            .max_by_key(|(family, _)| family.len())
            .unwrap_or_else(|| panic!("unknown family: {sample:?}"));
        let mut names: BTreeSet<&str> = labels.iter().map(|(name, _)| *name).collect();
        if sample.name == format!("{family}_bucket") {
            names.insert("le");
        }
        let present: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        assert_eq!(present, names, "{sample:?}");
        for (name, values) in labels {
            assert!(
                values.contains(&sample.labels[*name].as_str()),
                "{name}={} is not a fixed value: {sample:?}",
                sample.labels[*name]
            );
        }
    }
}

#[tokio::test]
async fn mounts_requests_and_cache_lookups_are_counted() {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(&[])).await;
    let port = metrics_port(&provider).await;

    // Before any Mount, the series alerts divide by are there at zero.
    let (_, before) = scrape(port).await;
    assert_eq!(
        before.value(MOUNTS, &[("result", "success"), ("grpc_code", "OK")]),
        0.0
    );
    assert!(before.named(MOUNTS).count() == 1);
    assert_eq!(before.value("akv_csi_provider_mounts_in_flight", &[]), 0.0);
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("arch", std::env::consts::ARCH),
    ];
    assert_eq!(before.value("akv_csi_provider_build_info", &build), 1.0);

    let mut client = driver::connect(provider.socket()).await;
    for _ in 0..3 {
        client
            .mount(orders.request(&scenario::spc_yaml()))
            .await
            .unwrap();
    }
    let invalid = scenario::spc_with_objects("        - {objectName: a, objectType: nope}\n");
    client.mount(orders.request(&invalid)).await.unwrap_err();
    let missing = client
        .mount(orders.request(&one_object("no-such-secret")))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (text, after) = scrape(port).await;
    let mounts = |result, code| after.value(MOUNTS, &[("result", result), ("grpc_code", code)]);
    assert_eq!(mounts("success", "OK"), 3.0);
    assert_eq!(mounts("error", "InvalidArgument"), 1.0);
    assert_eq!(mounts("error", "NotFound"), 1.0);
    assert_eq!(after.named(MOUNTS).count(), 3, "{text}");
    let ok = [("result", "success"), ("grpc_code", "OK")];
    let durations = "akv_csi_provider_mount_duration_seconds";
    assert_eq!(after.value(&format!("{durations}_count"), &ok), 3.0);
    let mut inf = ok.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(after.value(&format!("{durations}_bucket"), &inf), 3.0);
    assert!(after.value(&format!("{durations}_sum"), &ok) > 0.0);
    assert_eq!(after.value("akv_csi_provider_mounts_in_flight", &[]), 0.0);

    let kv = |class, retried, throttled| {
        after.value(
            KEYVAULT,
            &[
                ("object_type", "secret"),
                ("status_class", class),
                ("retried", retried),
                ("throttled", throttled),
            ],
        )
    };
    assert_eq!(kv("2xx", "false", "false"), 9.0, "{text}");
    assert_eq!(kv("4xx", "false", "false"), 1.0, "{text}");
    assert_eq!(after.named(KEYVAULT).count(), 2, "{text}");
    let tokens = [
        ("identity_mode", "workload_identity"),
        ("result", "success"),
    ];
    assert_eq!(after.value(TOKENS, &tokens), 1.0);
    assert_eq!(after.value(CACHE, &[("result", "miss")]), 1.0);
    assert_eq!(after.value(CACHE, &[("result", "hit")]), 3.0);

    assert_bounded_labels(&after);
    let pod = &orders.pod;
    for name in [
        VAULT,
        TENANT,
        ORDERS_CLIENT_ID,
        "orders-db-conn",
        "no-such-secret",
        "spc-orders-kv",
        &pod.name,
        &pod.namespace,
        &pod.uid,
        &pod.service_account,
    ] {
        assert!(!text.contains(name), "{name:?} is in the metrics:\n{text}");
    }
}

#[tokio::test]
async fn retries_throttling_and_refusals_have_their_own_series() {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(&[])).await;
    let port = metrics_port(&provider).await;
    let mut client = driver::connect(provider.socket()).await;
    let kv = orders.world.keyvault();

    // Two 429s, then the answer.
    kv.inject_fault(
        Fault::Throttle {
            retry_after: Some(0),
        },
        2,
    );
    client
        .mount(orders.request(&one_object("orders-db-conn")))
        .await
        .unwrap();
    // One 503, then the answer.
    kv.inject_fault(Fault::Status(503), 1);
    client
        .mount(orders.request(&one_object("orders-api-key")))
        .await
        .unwrap();
    // A service account Entra ID does not trust.
    let stranger = Pod::new("orders", "orders-batch", "sa-batch");
    let refused = client
        .mount(orders.request_for(&one_object("orders-db-conn"), &stranger))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let (text, samples) = scrape(port).await;
    let kv = |class, retried, throttled| {
        samples.value(
            KEYVAULT,
            &[
                ("object_type", "secret"),
                ("status_class", class),
                ("retried", retried),
                ("throttled", throttled),
            ],
        )
    };
    assert_eq!(kv("4xx", "false", "true"), 1.0, "{text}");
    assert_eq!(kv("4xx", "true", "true"), 1.0, "{text}");
    assert_eq!(kv("5xx", "false", "false"), 1.0, "{text}");
    assert_eq!(kv("2xx", "true", "false"), 2.0, "{text}");
    assert_eq!(samples.named(KEYVAULT).count(), 4, "{text}");

    let tokens = |result| {
        samples.value(
            TOKENS,
            &[("identity_mode", "workload_identity"), ("result", result)],
        )
    };
    assert_eq!((tokens("success"), tokens("refused")), (1.0, 1.0), "{text}");
    assert_eq!(samples.value(CACHE, &[("result", "miss")]), 2.0);
    let denied = [("result", "error"), ("grpc_code", "PermissionDenied")];
    assert_eq!(samples.value(MOUNTS, &denied), 1.0);
    assert_bounded_labels(&samples);
}

#[tokio::test]
async fn metrics_bind_where_the_flag_says_and_serve_nothing_else() {
    let options = ProviderOptions {
        args: vec!["--metrics-addr=127.0.0.1:0".into()],
        env: Vec::new(),
    };
    let provider = Provider::start(options).await;
    let port = metrics_port(&provider).await;

    let output = provider.output();
    let line = output
        .lines()
        .find(|l| l.contains("metrics listening"))
        .unwrap();
    assert!(line.contains(&format!("addr=127.0.0.1:{port}")), "{line}");
    for path in ["/", "/debug/pprof/", "/healthz", "/metrics/x"] {
        assert_eq!(scrape::get(port, path).await.unwrap().status, 404, "{path}");
    }

    let off = ProviderOptions {
        args: vec!["--metrics-addr=".into()],
        env: Vec::new(),
    };
    let quiet = Provider::start(off).await;
    // The probes are logged right before where metrics would be; wait for the line to arrive.
    let give_up = Instant::now() + Duration::from_secs(10);
    while quiet.logged_port("health probes listening").is_none() {
        assert!(Instant::now() < give_up, "{}", quiet.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, output) = quiet.stop().await;
    assert!(!output.contains("metrics listening"), "{output}");
}
