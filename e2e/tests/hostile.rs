//! Input a hostile or careless namespace can send, through the release binary: each is
//! refused quickly and precisely, and never harms another pod's Mount.

use std::time::{Duration, Instant};

use akv_e2e::calls::{mount, refused, start};
use akv_e2e::driver::{self, Pod};
use akv_e2e::scenario::{self, VAULT};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Code;

#[tokio::test]
async fn a_short_deadline_does_not_fail_a_mount_that_joined_its_request() {
    let (orders, provider) = start(&[]).await;
    let spc = scenario::spc_yaml();
    mount(&provider, orders.request(&spc)).await.unwrap();
    orders
        .world
        .keyvault()
        .set_latency(Duration::from_millis(1500));

    let hurried = {
        let request = orders.request(&spc);
        let socket = provider.socket().to_owned();
        tokio::spawn(async move {
            let mut client = driver::connect(&socket).await;
            let mut request = tonic::Request::new(request);
            request.set_timeout(Duration::from_millis(1000));
            client.mount(request).await.map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;

    let patient = mount(&provider, orders.request(&spc)).await;

    assert!(
        hurried.await.unwrap().is_err(),
        "1 s is less than Key Vault's 1.5 s"
    );
    assert_eq!(
        patient.unwrap().files.len(),
        3,
        "the patient Mount has its own 60 s"
    );
}

#[tokio::test]
async fn deeply_nested_objects_are_refused_at_once() {
    let (orders, provider) = start(&[]).await;
    let spc = scenario::spc_with(&format!(
        "    objects: \"array: {}\"\n",
        "[".repeat(200_000)
    ));

    let started = Instant::now();
    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "parameter objects: nests [ ] or { } deeper than 16 levels"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_history_folder_past_the_path_limit_is_refused_by_name() {
    let (orders, provider) = start(&[]).await;
    orders
        .world
        .keyvault()
        .set_secret(VAULT, "hist", "v1", None);
    orders
        .world
        .keyvault()
        .set_secret(VAULT, "hist", "v2", None);
    // 4,095 bytes: a valid path alone, but `<path>/0` is not.
    let alias = vec!["x".repeat(255); 16].join("/");
    let spc = scenario::spc_with_objects(&format!(
        "        - {{objectName: hist, objectType: secret, objectAlias: \"{alias}\", \
         objectVersionHistory: 2}}\n"
    ));

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("parameter objects: the file \"xxx"),
        "{message}"
    );
    assert!(
        message.ends_with("/0\" cannot be written: the path is longer than 4096 bytes"),
        "{message}"
    );
}

#[tokio::test]
async fn a_token_claiming_another_service_account_is_refused() {
    let (orders, provider) = start(&[]).await;
    let spc = scenario::spc_yaml();
    mount(&provider, orders.request(&spc)).await.unwrap();

    // An unsigned token whose subject is the orders service account, from another pod.
    let claims = serde_json::json!({
        "iss": orders.world.issuer_url(),
        "sub": "system:serviceaccount:orders:sa-orders",
    });
    let forged = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let evil = Pod::new("evil", "evil-pod", "sa-evil");
    let request =
        driver::mount_request(&spc, &evil, &[("api://AzureADTokenExchange", forged)], None)
            .unwrap();

    let (code, message) = refused(&provider, request).await;

    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "parameter csi.storage.k8s.io/serviceAccount.tokens: the token's subject \
         \"system:serviceaccount:orders:sa-orders\" is not the pod's service account \
         \"system:serviceaccount:evil:sa-evil\""
    );
}
