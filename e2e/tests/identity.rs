//! Every identity mode through the release binary: a service principal from the node-publish
//! secret, the node's managed identity through the IMDS double (never through a proxy, with
//! IMDS's retry rules), the retired modes' refusals, and every AADSTS code of design/AZURE.md
//! as the pod's events show it. (Workload identity's happy path is in `mount.rs`.)

use std::collections::BTreeMap;

use akv_e2e::calls::{mount, refused};
use akv_e2e::driver::{self, Pod, TOKEN_AUDIENCE, pb};
use akv_e2e::entra::{GrantSeen, TokenOutcome};
use akv_e2e::provider::{Provider, ProviderOptions};
use akv_e2e::scenario::{DB_CONN, ORDERS_CLIENT_ID, Orders, TENANT, VAULT};
use akv_e2e::{Cloud, Fault};
use serde_json::json;
use tonic::Code;

/// A service principal's app registration and its secret (test values).
const SP_CLIENT: &str = "b7c3e1f0-4d2a-4e8b-9c61-2f5a8d0e3b94";
const SP_SECRET: &str = "sp~Q8w.Test-Only_Secret-7Xz";

/// The node's system-assigned and user-assigned identities.
const NODE_IDENTITY: &str = "0c2ad8e4-1f57-4b39-a6d1-7e3f9b2c5a10";
const USER_IDENTITY: &str = "9e4b7c1d-2a6f-4d83-b5e0-3c8a1f6d2b47";

/// A SecretProviderClass with these `parameters` that mounts `orders-db-conn`.
fn spc(parameters: &[(&str, &str)]) -> String {
    let mut yaml = String::from(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n\
         metadata: {name: spc-identity, namespace: orders}\nspec:\n  provider: azure\n  \
         parameters:\n",
    );
    for (key, value) in parameters {
        yaml.push_str(&format!("    {key}: \"{value}\"\n"));
    }
    yaml.push_str(
        "    objects: |\n      array:\n        - |\n          objectName: orders-db-conn\n\
         \x20         objectType: secret\n",
    );
    yaml
}

/// The Mount request of the orders pod for `spc`, with a node-publish secret and no token.
fn request(orders: &Orders, spc: &str, secrets: Option<&[(&str, &str)]>) -> pb::MountRequest {
    let secrets: Option<BTreeMap<String, String>> = secrets.map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    });
    driver::mount_request(spc, &orders.pod, &[], secrets.as_ref()).unwrap()
}

/// A provider that reaches the world, with IMDS at the double and every proxy variable set to
/// the world's proxy: IMDS requests must go around it.
async fn provider(orders: &Orders) -> Provider {
    let imds = format!("--imds-endpoint={}", orders.world.imds_url());
    let mut options: ProviderOptions = orders.provider_options(&[&imds]);
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        options.env.push((name.into(), orders.world.proxy_url()));
    }
    Provider::start(options).await
}

fn assert_mounted_db_conn(response: &pb::MountResponse) {
    let files: Vec<(&str, &[u8])> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.contents.as_slice()))
        .collect();
    assert_eq!(files, [("orders-db-conn", DB_CONN.as_bytes())]);
}

fn managed(user_assigned: Option<&str>) -> String {
    let mut parameters = vec![("keyvaultName", VAULT), ("useVMManagedIdentity", "true")];
    if let Some(id) = user_assigned {
        parameters.push(("userAssignedIdentityID", id));
    }
    spc(&parameters)
}

fn service_principal() -> String {
    spc(&[("keyvaultName", VAULT), ("tenantId", TENANT)])
}

/// Key Vault callers, in order.
fn vault_callers(orders: &Orders) -> Vec<Option<String>> {
    let requests = orders.world.keyvault().requests();
    requests.into_iter().map(|r| r.caller).collect()
}

#[tokio::test]
async fn a_service_principal_mounts_with_the_node_publish_secret() {
    let orders = Orders::start().await;
    orders.world.entra().add_app(TENANT, SP_CLIENT);
    orders.world.entra().add_client_secret(SP_CLIENT, SP_SECRET);
    orders.world.keyvault().grant(VAULT, SP_CLIENT);
    let provider = provider(&orders).await;
    // Keys in any case, as users write them.
    let secrets = [("ClientID", SP_CLIENT), ("CLIENTSECRET", SP_SECRET)];

    for _ in 0..3 {
        let request = request(&orders, &service_principal(), Some(&secrets));
        assert_mounted_db_conn(&mount(&provider, request).await.unwrap());
    }

    let exchanges = orders.world.entra().requests();
    assert_eq!(exchanges.len(), 1, "cached across Mounts: {exchanges:?}");
    let exchange = &exchanges[0];
    assert_eq!(
        (exchange.tenant.as_str(), exchange.client_id.as_str()),
        (TENANT, SP_CLIENT)
    );
    assert_eq!(exchange.grant, GrantSeen::Secret);
    assert_eq!(exchange.scope, "https://vault.azure.net/.default");
    assert_eq!(exchange.cloud, Cloud::Public);
    assert_eq!(exchange.outcome, TokenOutcome::Issued);
    assert_eq!(vault_callers(&orders), vec![Some(SP_CLIENT.to_owned()); 3]);
    assert!(orders.world.imds().requests().is_empty());
}

#[tokio::test]
async fn a_service_principal_without_its_keys_names_the_key_and_nodepublishsecretref() {
    let orders = Orders::start().await;
    let provider = provider(&orders).await;
    let advice = "reference a Secret with the keys clientid and clientsecret in the volume's \
                  nodePublishSecretRef, or set clientID for workload identity";

    let only_id = [("clientid", SP_CLIENT)];
    let (code, message) = refused(
        &provider,
        request(&orders, &service_principal(), Some(&only_id)),
    )
    .await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        format!(
            "MountRequest.secrets: no clientID is set, so a service principal is used, but the \
             node-publish secret has no key \"clientsecret\": {advice}"
        )
    );

    let only_secret = [("clientSecret", SP_SECRET)];
    let (_, message) = refused(
        &provider,
        request(&orders, &service_principal(), Some(&only_secret)),
    )
    .await;
    assert!(message.contains("has no key \"clientid\": "), "{message}");
    assert!(!message.contains(SP_SECRET));

    let (code, message) = refused(&provider, request(&orders, &service_principal(), None)).await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        format!(
            "MountRequest.secrets: no clientID is set, so a service principal is used, but the \
             volume has no node-publish secret: {advice}"
        )
    );
    assert!(orders.world.entra().requests().is_empty());
}

#[tokio::test]
async fn the_system_assigned_identity_mounts_through_imds_without_a_proxy() {
    let orders = Orders::start().await;
    orders
        .world
        .imds()
        .assign_system_identity(TENANT, NODE_IDENTITY);
    orders.world.keyvault().grant(VAULT, NODE_IDENTITY);
    let provider = provider(&orders).await;

    for _ in 0..3 {
        let response = mount(&provider, request(&orders, &managed(None), None)).await;
        assert_mounted_db_conn(&response.unwrap());
    }

    let seen = orders.world.imds().requests();
    assert_eq!(seen.len(), 1, "cached across Mounts: {seen:?}");
    let first = &seen[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str(), first.status),
        ("GET", "/metadata/identity/oauth2/token", 200)
    );
    assert_eq!(
        first.query,
        [
            ("api-version".to_owned(), "2018-02-01".to_owned()),
            ("resource".to_owned(), "https://vault.azure.net".to_owned()),
        ]
    );
    assert_eq!(first.metadata.as_deref(), Some("true"));
    assert!(!first.absolute_form && !first.forwarded, "{first:?}");
    // The proxy saw only the tunnel to the vault; Entra saw nothing.
    let proxied = orders.world.proxy_requests();
    assert!(!proxied.is_empty());
    assert!(
        proxied
            .iter()
            .all(|r| r.method == "CONNECT" && r.target == format!("{VAULT}.vault.azure.net:443")),
        "{proxied:?}"
    );
    assert!(orders.world.entra().requests().is_empty());
    assert_eq!(
        vault_callers(&orders),
        vec![Some(NODE_IDENTITY.to_owned()); 3]
    );
}

#[tokio::test]
async fn a_user_assigned_identity_is_asked_for_by_its_client_id() {
    let orders = Orders::start().await;
    let imds = orders.world.imds();
    imds.assign_system_identity(TENANT, NODE_IDENTITY);
    imds.assign_user_identity(TENANT, USER_IDENTITY);
    orders.world.keyvault().grant(VAULT, USER_IDENTITY);
    let provider = provider(&orders).await;

    let response = mount(
        &provider,
        request(&orders, &managed(Some(USER_IDENTITY)), None),
    )
    .await;

    assert_mounted_db_conn(&response.unwrap());
    let seen = imds.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].param("client_id"), Some(USER_IDENTITY));
    assert_eq!(seen[0].param("resource"), Some("https://vault.azure.net"));
    assert_eq!(vault_callers(&orders), [Some(USER_IDENTITY.to_owned())]);
}

#[tokio::test]
async fn imds_is_retried_through_410_until_it_answers() {
    let orders = Orders::start().await;
    orders
        .world
        .imds()
        .assign_system_identity(TENANT, NODE_IDENTITY);
    orders.world.keyvault().grant(VAULT, NODE_IDENTITY);
    orders.world.imds().inject_fault(Fault::Status(410), 2);
    let provider = provider(&orders).await;

    let response = mount(&provider, request(&orders, &managed(None), None)).await;

    assert_mounted_db_conn(&response.unwrap());
    let statuses: Vec<u16> = orders
        .world
        .imds()
        .requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [410, 410, 200]);
}

#[tokio::test]
async fn imds_404_429_and_5xx_are_retried() {
    let orders = Orders::start().await;
    let imds = orders.world.imds();
    imds.assign_system_identity(TENANT, NODE_IDENTITY);
    orders.world.keyvault().grant(VAULT, NODE_IDENTITY);
    imds.inject_fault(Fault::Status(404), 1);
    imds.inject_fault(Fault::Throttle { retry_after: None }, 1);
    imds.inject_fault(Fault::Status(500), 1);
    imds.inject_fault(Fault::Status(503), 1);
    let provider = provider(&orders).await;

    let response = mount(&provider, request(&orders, &managed(None), None)).await;

    assert_mounted_db_conn(&response.unwrap());
    let statuses: Vec<u16> = imds.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 429, 500, 503, 200]);
    assert!(
        imds.requests()
            .iter()
            .all(|r| r.metadata.as_deref() == Some("true"))
    );
}

#[tokio::test]
async fn imds_that_stays_down_is_unavailable_after_the_last_attempt() {
    let orders = Orders::start().await;
    orders
        .world
        .imds()
        .assign_system_identity(TENANT, NODE_IDENTITY);
    orders.world.imds().inject_fault(Fault::Status(503), 6);
    let provider = provider(&orders).await;

    let (code, message) = refused(&provider, request(&orders, &managed(None), None)).await;

    assert_eq!(code, Code::Unavailable);
    assert_eq!(
        message,
        "IMDS did not answer with a token after 6 attempt(s): HTTP 503"
    );
    assert_eq!(orders.world.imds().requests().len(), 6);
    assert!(orders.world.keyvault().requests().is_empty());
}

#[tokio::test]
async fn an_identity_the_node_does_not_have_is_refused_with_the_cause() {
    let orders = Orders::start().await;
    orders
        .world
        .imds()
        .assign_system_identity(TENANT, NODE_IDENTITY);
    let provider = provider(&orders).await;
    let stranger = "1d2c3b4a-0000-4000-8000-00000000beef";

    let (code, message) =
        refused(&provider, request(&orders, &managed(Some(stranger)), None)).await;

    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(
        message,
        format!(
            "IMDS refused a managed identity token for client {stranger}: HTTP 400: Identity \
             not found [no identity with this client id is assigned to the node's VM or scale \
             set: assign it, or correct userAssignedIdentityID]"
        )
    );
    assert_eq!(
        orders.world.imds().requests().len(),
        1,
        "a 400 is not retried"
    );
}

#[tokio::test]
async fn retired_and_preview_modes_point_to_workload_identity() {
    let orders = Orders::start().await;
    let provider = provider(&orders).await;
    let cases = [
        (
            vec![("usePodIdentity", "true")],
            "parameter usePodIdentity: aad-pod-identity is retired and not supported: use \
             workload identity (set clientID and usePodIdentity: \"false\")",
        ),
        (
            vec![("useAzureTokenProxy", "True")],
            "parameter useAzureTokenProxy: the AKS identity binding (preview) is not \
             supported: use workload identity (set clientID and useAzureTokenProxy: \"false\")",
        ),
        (
            vec![
                ("useAzureTokenProxy", "1"),
                ("useVMManagedIdentity", "true"),
            ],
            "parameter useAzureTokenProxy: is true together with useVMManagedIdentity, but at \
             most one of usePodIdentity, useAzureTokenProxy and useVMManagedIdentity may be true",
        ),
    ];

    for (modes, expected) in cases {
        let mut parameters = vec![
            ("keyvaultName", VAULT),
            ("tenantId", TENANT),
            ("clientID", ORDERS_CLIENT_ID),
        ];
        parameters.extend(modes);
        let tokens = [(TOKEN_AUDIENCE, orders.token(&orders.pod))];
        let request = driver::mount_request(&spc(&parameters), &orders.pod, &tokens, None);

        let (code, message) = refused(&provider, request.unwrap()).await;

        assert_eq!((code, message.as_str()), (Code::InvalidArgument, expected));
    }
    assert!(orders.world.entra().requests().is_empty());
    assert!(orders.world.imds().requests().is_empty());
}

/// One way Entra refuses: the Mount request that provokes it, and what the pod must be told.
struct Refusal {
    aadsts: u32,
    code: Code,
    client: &'static str,
    tenant: &'static str,
    hint: &'static str,
    request: pb::MountRequest,
}

#[tokio::test]
async fn every_aadsts_code_reaches_the_pod_with_its_usual_cause() {
    let orders = Orders::start().await;
    let world = &orders.world;
    let entra = world.entra();
    let issuer = world.issuer_url();
    let subject = |sa: &str| format!("system:serviceaccount:orders:{sa}");
    let federate = |client: &str, issuer: &str, sa: &str, audience: &str| {
        entra.add_federated_credential(client, issuer, &subject(sa), audience);
    };
    federate(ORDERS_CLIENT_ID, &issuer, "sa-expired", TOKEN_AUDIENCE);
    federate(ORDERS_CLIENT_ID, &issuer, "sa-forged", TOKEN_AUDIENCE);
    federate(ORDERS_CLIENT_ID, &issuer, "SA-Case", TOKEN_AUDIENCE);
    federate(
        ORDERS_CLIENT_ID,
        &issuer,
        "sa-audience",
        "api://not-token-exchange",
    );
    entra.add_propagating_federated_credential(
        ORDERS_CLIENT_ID,
        &issuer,
        &subject("sa-new"),
        TOKEN_AUDIENCE,
    );
    let unreachable_issuer = format!("{issuer}gone/");
    federate(
        ORDERS_CLIENT_ID,
        &unreachable_issuer,
        "sa-lost",
        TOKEN_AUDIENCE,
    );
    entra.add_app(TENANT, SP_CLIENT);
    entra.add_client_secret(SP_CLIENT, SP_SECRET);
    let provider = provider(&orders).await;

    let workload = spc(&[
        ("keyvaultName", VAULT),
        ("tenantId", TENANT),
        ("clientID", ORDERS_CLIENT_ID),
    ]);
    let now = unix_now();
    // A pod of service account `sa` presenting `token`, or its own token when `None`.
    let pod_request = |spc: &str, sa: &str, token: Option<String>| {
        let pod = Pod::new("orders", &format!("pod-{sa}"), sa);
        let token = token.unwrap_or_else(|| orders.token(&pod));
        driver::mount_request(spc, &pod, &[(TOKEN_AUDIENCE, token)], None).unwrap()
    };
    let claims = |iss: &str, sa: &str, exp: i64| {
        json!({
            "iss": iss, "sub": subject(sa), "aud": [TOKEN_AUDIENCE],
            "exp": exp, "nbf": now - 60, "iat": now - 60,
        })
    };
    let forged = {
        let token = world.sa_token_with(claims(&issuer, "sa-forged", now + 600));
        let (signed, _) = token.rsplit_once('.').unwrap();
        format!("{signed}.{}", "A".repeat(342))
    };
    let unknown_tenant = "00000000-0000-0000-0000-000000000001";
    let unknown_client = "00000000-0000-0000-0000-00000000dead";

    let cases = vec![
        Refusal {
            aadsts: 70021,
            code: Code::PermissionDenied,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "no federated identity credential matches the token's issuer, subject and \
                   audience (a new credential can take a few minutes to propagate)",
            request: pod_request(&workload, "sa-new", None),
        },
        Refusal {
            aadsts: 700211,
            code: Code::PermissionDenied,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the federated credential's issuer must equal the cluster's OIDC issuer URL \
                   exactly, trailing slash included",
            request: pod_request(
                &workload,
                "sa-orders",
                Some(world.sa_token_with(claims("https://other.example/", "sa-orders", now + 600))),
            ),
        },
        Refusal {
            aadsts: 700212,
            code: Code::PermissionDenied,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the federated credential's audience must be api://AzureADTokenExchange",
            request: pod_request(&workload, "sa-audience", None),
        },
        Refusal {
            aadsts: 700213,
            code: Code::PermissionDenied,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the federated credential's subject must be \
                   system:serviceaccount:<namespace>:<service account> exactly",
            request: pod_request(&workload, "sa-stranger", None),
        },
        Refusal {
            aadsts: 7002138,
            code: Code::PermissionDenied,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the federated credential's subject differs only in case: subjects are \
                   case-sensitive",
            request: pod_request(&workload, "sa-case", None),
        },
        Refusal {
            aadsts: 700024,
            code: Code::Unauthenticated,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the service account token is expired or not yet valid: check the node's clock",
            request: pod_request(
                &workload,
                "sa-expired",
                Some(world.sa_token_with(claims(&issuer, "sa-expired", now - 3600))),
            ),
        },
        Refusal {
            aadsts: 700027,
            code: Code::Unauthenticated,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "the token's signature does not match the keys the OIDC issuer publishes: \
                   check the issuer URL and its JWKS",
            request: pod_request(&workload, "sa-forged", Some(forged)),
        },
        Refusal {
            aadsts: 700016,
            code: Code::PermissionDenied,
            client: unknown_client,
            tenant: TENANT,
            hint: "no application with this client id exists in the tenant: check clientID and \
                   tenantID",
            request: pod_request(
                &workload.replace(ORDERS_CLIENT_ID, unknown_client),
                "sa-orders",
                None,
            ),
        },
        Refusal {
            aadsts: 90002,
            code: Code::Unauthenticated,
            client: ORDERS_CLIENT_ID,
            tenant: unknown_tenant,
            hint: "the tenant does not exist: check tenantID",
            request: pod_request(&workload.replace(TENANT, unknown_tenant), "sa-orders", None),
        },
        Refusal {
            aadsts: 90061,
            code: Code::Unavailable,
            client: ORDERS_CLIENT_ID,
            tenant: TENANT,
            hint: "Entra ID could not fetch the cluster's OIDC discovery document: the issuer \
                   URL must be reachable from the internet",
            request: pod_request(
                &workload,
                "sa-lost",
                Some(world.sa_token_with(claims(&unreachable_issuer, "sa-lost", now + 600))),
            ),
        },
        Refusal {
            aadsts: 7000215,
            code: Code::Unauthenticated,
            client: SP_CLIENT,
            tenant: TENANT,
            hint: "the client secret is wrong or expired",
            request: request(
                &orders,
                &service_principal(),
                Some(&[("clientid", SP_CLIENT), ("clientsecret", "not-the-secret")]),
            ),
        },
    ];

    for case in cases {
        let (code, message) = refused(&provider, case.request).await;

        let aadsts = case.aadsts;
        assert_eq!(code, case.code, "AADSTS{aadsts}: {message}");
        let prefix = format!(
            "Entra ID refused a token for client {} in tenant {}: AADSTS{aadsts}: ",
            case.client, case.tenant
        );
        assert!(message.starts_with(&prefix), "{message}");
        let cause = format!(" [{}] (correlation id ", case.hint);
        assert!(message.contains(&cause), "AADSTS{aadsts}: {message}");
        assert!(!message.contains("Trace ID"), "{message}");
        let last = entra.requests().pop().unwrap();
        assert_eq!(last.outcome, TokenOutcome::Refused(aadsts));
    }
    assert_eq!(entra.requests().len(), 11);
    assert!(world.keyvault().requests().is_empty());
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}
