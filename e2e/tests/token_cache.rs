//! The token cache through the release binary, counted at the doubles: one Entra request per
//! identity per token lifetime, never a token across service accounts or client secrets,
//! refreshes ahead of expiry, and Mounts that survive an Entra outage while a safe token is
//! cached — but not past the token's safety margin.

use std::collections::BTreeMap;
use std::time::Duration;

use akv_e2e::Fault;
use akv_e2e::driver::{self, CsiDriverProviderClient, Pod, pb};
use akv_e2e::entra::{GrantSeen, TokenOutcome};
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, DB_CONN, ORDERS_CLIENT_ID, Orders, TENANT, VAULT};
use akv_e2e::world::TOKEN_EXCHANGE_AUDIENCE;
use tonic::Code;
use tonic::transport::Channel;

/// One object, so that these tests count token requests rather than Key Vault GETs.
fn one_object() -> String {
    scenario::spc_with_objects("        - {objectName: orders-db-conn, objectType: secret}\n")
}

async fn start() -> (Orders, Provider, CsiDriverProviderClient<Channel>) {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(&[])).await;
    let client = driver::connect(provider.socket()).await;
    (orders, provider, client)
}

/// Mounts `one_object()` for `pod` and checks the file.
async fn mount_as(
    client: &mut CsiDriverProviderClient<Channel>,
    orders: &Orders,
    pod: &Pod,
) -> Result<(), tonic::Status> {
    let response = client
        .mount(orders.request_for(&one_object(), pod))
        .await?
        .into_inner();
    assert_eq!(response.files[0].contents, DB_CONN.as_bytes());
    Ok(())
}

/// Mounts `count` times for `pod`, twenty at a time on the one connection.
async fn mount_many(
    client: &CsiDriverProviderClient<Channel>,
    orders: &Orders,
    pod: &Pod,
    count: usize,
) {
    for wave in 0..count.div_ceil(20) {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..20.min(count - wave * 20) {
            let mut client = client.clone();
            let request = orders.request_for(&one_object(), pod);
            calls.spawn(async move { client.mount(request).await.map(|_| ()) });
        }
        while let Some(joined) = calls.join_next().await {
            joined.unwrap().unwrap();
        }
    }
}

fn outcomes(orders: &Orders) -> Vec<(Option<String>, TokenOutcome)> {
    let requests = orders.world.entra().requests();
    requests
        .into_iter()
        .map(|r| (r.assertion_subject, r.outcome))
        .collect()
}

fn issued_to(subject: &str) -> (Option<String>, TokenOutcome) {
    (Some(subject.to_owned()), TokenOutcome::Issued)
}

#[tokio::test]
async fn a_hundred_mounts_of_one_pod_cost_one_entra_request() {
    let (orders, _provider, client) = start().await;

    mount_many(&client, &orders, &orders.pod, 100).await;

    let exchanges = orders.world.entra().requests().len();
    eprintln!("Entra token requests for 100 Mounts of one pod: {exchanges}");
    assert_eq!(exchanges, 1);
    // Concurrent Mounts of one identity share identical GETs, so Key Vault sees at most one
    // per Mount, every one with the cached token.
    let gets = orders.world.keyvault().requests();
    assert!((1..=100).contains(&gets.len()), "{}", gets.len());
    assert!(gets.iter().all(|r| r.had_bearer && r.status == 200));
}

#[tokio::test]
async fn without_a_shared_identity_every_mount_costs_one_entra_request() {
    // What the Go provider pays for every Mount: here each of the 100 Mounts comes from a pod
    // of its own service account, so none can reuse another's token.
    let orders = Orders::start().await;
    let (world, issuer) = (&orders.world, orders.world.issuer_url());
    let mut pods = Vec::new();
    for app in 0..5 {
        let client_id = format!("a0c0ffee-0000-4000-8000-00000000000{app}");
        world.entra().add_app(TENANT, &client_id);
        world.keyvault().grant(VAULT, &client_id);
        for sa in 0..20 {
            let pod = Pod::new(
                "orders",
                &format!("pod-{app}-{sa}"),
                &format!("sa-{app}-{sa}"),
            );
            let subject = pod.subject();
            world.entra().add_federated_credential(
                &client_id,
                &issuer,
                &subject,
                TOKEN_EXCHANGE_AUDIENCE,
            );
            pods.push((client_id.clone(), pod));
        }
    }
    let provider = Provider::start(orders.provider_options(&[])).await;
    let mut client = driver::connect(provider.socket()).await;

    for (client_id, pod) in &pods {
        let spc = one_object().replace(ORDERS_CLIENT_ID, client_id);
        let request = orders.request_for(&spc, pod);
        client.mount(request).await.unwrap();
    }

    let exchanges = orders.world.entra().requests();
    eprintln!(
        "Entra token requests for 100 Mounts of 100 service accounts: {}",
        exchanges.len()
    );
    assert_eq!(exchanges.len(), 100);
    assert!(exchanges.iter().all(|r| r.outcome == TokenOutcome::Issued));
}

#[tokio::test]
async fn two_pods_of_one_service_account_share_one_token() {
    let (orders, _provider, mut client) = start().await;
    let twin = Pod::new("orders", "orders-api-7c9f", "sa-orders");

    for _ in 0..10 {
        mount_as(&mut client, &orders, &orders.pod).await.unwrap();
        mount_as(&mut client, &orders, &twin).await.unwrap();
    }

    assert_eq!(
        outcomes(&orders),
        [issued_to("system:serviceaccount:orders:sa-orders")]
    );
}

#[tokio::test]
async fn service_accounts_sharing_a_client_id_each_exchange_their_own_token() {
    let (orders, _provider, mut client) = start().await;
    let reports = Pod::new("orders", "orders-reports", "sa-reports");
    orders.world.entra().add_federated_credential(
        ORDERS_CLIENT_ID,
        &orders.world.issuer_url(),
        &reports.subject(),
        TOKEN_EXCHANGE_AUDIENCE,
    );

    for _ in 0..5 {
        mount_as(&mut client, &orders, &orders.pod).await.unwrap();
        mount_as(&mut client, &orders, &reports).await.unwrap();
    }

    assert_eq!(
        outcomes(&orders),
        [
            issued_to("system:serviceaccount:orders:sa-orders"),
            issued_to("system:serviceaccount:orders:sa-reports"),
        ]
    );
}

#[tokio::test]
async fn a_subject_without_a_federated_credential_fails_right_after_another_succeeded() {
    let (orders, _provider, mut client) = start().await;
    let batch = Pod::new("orders", "orders-batch", "sa-batch");

    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    let refused = mount_as(&mut client, &orders, &batch).await.unwrap_err();
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();

    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().starts_with(&format!(
            "Entra ID refused a token for client {ORDERS_CLIENT_ID} in tenant {TENANT}: \
             AADSTS700213: "
        )),
        "{}",
        refused.message()
    );
    // The refusal is not remembered: once the credential exists, the same pod mounts.
    orders.world.entra().add_federated_credential(
        ORDERS_CLIENT_ID,
        &orders.world.issuer_url(),
        &batch.subject(),
        TOKEN_EXCHANGE_AUDIENCE,
    );
    mount_as(&mut client, &orders, &batch).await.unwrap();
    assert_eq!(
        outcomes(&orders),
        [
            issued_to("system:serviceaccount:orders:sa-orders"),
            (
                Some("system:serviceaccount:orders:sa-batch".to_owned()),
                TokenOutcome::Refused(700213)
            ),
            issued_to("system:serviceaccount:orders:sa-batch"),
        ]
    );
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed() {
    let (orders, _provider, mut client) = start().await;
    // Four seconds of life: refreshed from two seconds on.
    orders.world.entra().set_token_lifetime(4);

    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    assert_eq!(orders.world.entra().requests().len(), 1);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();

    assert_eq!(orders.world.entra().requests().len(), 2);
}

#[tokio::test]
async fn refresh_in_is_honoured() {
    let (orders, _provider, mut client) = start().await;
    orders.world.entra().set_refresh_in(Some(1));

    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    assert_eq!(orders.world.entra().requests().len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();

    assert_eq!(orders.world.entra().requests().len(), 2);
}

#[tokio::test]
async fn an_entra_outage_while_a_safe_token_is_cached_does_not_fail_mounts() {
    let (orders, _provider, mut client) = start().await;
    let entra = orders.world.entra();
    entra.set_refresh_in(Some(1));
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Entra fails the provider's six attempts at a refresh.
    entra.inject_fault(Fault::Status(503), 6);
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    let after_outage = entra.requests();
    // And the next Mounts do not try again at once.
    for _ in 0..5 {
        mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    }

    let outcomes: Vec<TokenOutcome> = after_outage.iter().map(|r| r.outcome).collect();
    let mut expected = vec![TokenOutcome::Issued];
    expected.extend([TokenOutcome::Faulted; 6]);
    assert_eq!(outcomes, expected);
    assert_eq!(entra.requests().len(), 7);
}

#[tokio::test]
async fn a_token_within_its_safety_margin_is_not_used_during_an_outage() {
    let (orders, _provider, mut client) = start().await;
    let entra = orders.world.entra();
    // Four seconds of life: never handed out in its last second.
    entra.set_token_lifetime(4);
    mount_as(&mut client, &orders, &orders.pod).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;

    entra.inject_fault(Fault::Status(503), 6);
    let refused = mount_as(&mut client, &orders, &orders.pod)
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        refused.message(),
        "Entra ID (https://login.microsoftonline.com) did not answer with a token after 6 \
         attempt(s): HTTP 503"
    );
    assert_eq!(orders.world.keyvault().requests().len(), 1);
}

#[tokio::test]
async fn a_service_principal_token_is_cached_per_client_secret() {
    let (orders, _provider, mut client) = start().await;
    let sp = "b7c3e1f0-4d2a-4e8b-9c61-2f5a8d0e3b94";
    let entra = orders.world.entra();
    entra.add_app(TENANT, sp);
    entra.add_client_secret(sp, "first-secret");
    entra.add_client_secret(sp, "second-secret");
    orders.world.keyvault().grant(VAULT, sp);
    let spc = one_object().replace(&format!("    clientID: \"{ORDERS_CLIENT_ID}\"\n"), "");
    let mount_with = |secret: &str| {
        let secrets: BTreeMap<String, String> = [("clientid", sp), ("clientsecret", secret)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        driver::mount_request(&spc, &orders.pod, &[], Some(&secrets)).unwrap()
    };

    for _ in 0..3 {
        client.mount(mount_with("first-secret")).await.unwrap();
    }
    // A wrong secret is checked by Entra, not served the cached token.
    let wrong = client.mount(mount_with("wrong-secret")).await.unwrap_err();
    // A rotated secret is a new exchange.
    client.mount(mount_with("second-secret")).await.unwrap();
    client.mount(mount_with("first-secret")).await.unwrap();

    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(
        wrong.message().contains("AADSTS7000215: "),
        "{}",
        wrong.message()
    );
    let seen: Vec<(GrantSeen, TokenOutcome)> = entra
        .requests()
        .into_iter()
        .map(|r| (r.grant, r.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            (GrantSeen::Secret, TokenOutcome::Issued),
            (GrantSeen::Secret, TokenOutcome::Refused(7000215)),
            (GrantSeen::Secret, TokenOutcome::Issued),
        ]
    );
}

#[tokio::test]
async fn a_managed_identity_token_is_cached() {
    let orders = Orders::start().await;
    let node = "0c2ad8e4-1f57-4b39-a6d1-7e3f9b2c5a10";
    orders.world.imds().assign_system_identity(TENANT, node);
    orders.world.keyvault().grant(VAULT, node);
    let imds = format!("--imds-endpoint={}", orders.world.imds_url());
    let provider = Provider::start(orders.provider_options(&[&imds])).await;
    let client = driver::connect(provider.socket()).await;
    let spc = one_object()
        .replace(&format!("    clientID: \"{ORDERS_CLIENT_ID}\"\n"), "")
        .replace(
            "    usePodIdentity: \"false\"\n",
            "    useVMManagedIdentity: \"true\"\n",
        );
    let request = driver::mount_request(&spc, &orders.pod, &[], None).unwrap();

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = client.clone();
        let request: pb::MountRequest = request.clone();
        calls.spawn(async move { client.mount(request).await.map(|_| ()) });
    }
    while let Some(joined) = calls.join_next().await {
        joined.unwrap().unwrap();
    }

    assert_eq!(orders.world.imds().requests().len(), 1);
    assert!(orders.world.entra().requests().is_empty());
}
