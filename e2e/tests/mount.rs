//! The release binary serves Mounts for a workload-identity pod, end to end: every answer
//! and every refusal, checked against what the doubles hold and saw.

use std::os::unix::fs::PermissionsExt as _;

use akv_e2e::calls::{self, file, mount, refused};
use akv_e2e::driver::{self, Pod};
use akv_e2e::entra::TokenOutcome;
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{
    self, API_KEY, DB_CONN, ORDERS_CLIENT_ID, Orders, SIGNING_SALT, TENANT, VAULT,
};
use tonic::Code;

async fn start() -> (Orders, Provider) {
    calls::start(&[]).await
}

fn one_secret(item: &str) -> String {
    scenario::spc_with_objects(&format!("        - |\n{}", indent(item, 10)))
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

#[tokio::test]
async fn mounts_the_orders_volume_byte_for_byte() {
    let (orders, provider) = start().await;

    let response = mount(&provider, orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();

    let files: Vec<(&str, i32, &[u8])> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode, f.contents.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("orders-db-conn", 0o644, DB_CONN.as_bytes()),
            ("config/api-key.txt", 0o644, API_KEY.as_bytes()),
            ("orders-signing-salt", 0o400, SIGNING_SALT.as_bytes()),
        ]
    );
    let versions: Vec<(&str, &str)> = response
        .object_version
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            (
                "secret/orders-db-conn",
                orders.versions["orders-db-conn"].as_str()
            ),
            (
                "secret/orders-api-key",
                orders.versions["orders-api-key"].as_str()
            ),
            (
                "secret/orders-signing-salt",
                orders.versions["orders-signing-salt"].as_str()
            ),
        ]
    );

    // Written as kubelet's atomic writer does, with exact modes.
    let volume = tempfile::tempdir().unwrap();
    driver::write_volume(volume.path(), &response.files).unwrap();
    let read = |p: &str| std::fs::read(volume.path().join(p)).unwrap();
    let mode = |p: &str| {
        std::fs::metadata(volume.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(read("config/api-key.txt"), API_KEY.as_bytes());
    assert_eq!(
        (mode("orders-db-conn"), mode("orders-signing-salt")),
        (0o644, 0o400)
    );
    assert!(volume.path().join("..data").is_symlink());
}

#[tokio::test]
async fn one_token_exchange_then_bearer_on_the_first_key_vault_request() {
    let (orders, provider) = start().await;

    for _ in 0..3 {
        mount(&provider, orders.request(&scenario::spc_yaml()))
            .await
            .unwrap();
    }

    let exchanges = orders.world.entra().requests();
    assert_eq!(exchanges.len(), 1, "the token is cached across Mounts");
    assert_eq!(exchanges[0].tenant, TENANT);
    assert_eq!(exchanges[0].client_id, ORDERS_CLIENT_ID);
    assert_eq!(exchanges[0].scope, "https://vault.azure.net/.default");
    assert_eq!(
        exchanges[0].assertion_subject.as_deref(),
        Some("system:serviceaccount:orders:sa-orders")
    );
    assert_eq!(exchanges[0].outcome, TokenOutcome::Issued);

    let gets = orders.world.keyvault().requests();
    assert_eq!(gets.len(), 9, "three objects, three Mounts");
    assert!(
        gets.iter().all(|r| r.had_bearer && r.status == 200),
        "no challenge round trip: {gets:?}"
    );
    assert!(
        gets.iter()
            .all(|r| r.host == format!("{VAULT}.vault.azure.net"))
    );
    assert!(orders.world.proxy_requests().iter().all(|r| r.tunnelled));
}

#[tokio::test]
async fn secrets_null_is_no_node_publish_secret() {
    let (orders, provider) = start().await;
    let request = orders.request(&scenario::spc_yaml());
    assert_eq!(request.secrets, "null");

    let response = mount(&provider, request).await.unwrap();
    assert_eq!(response.files.len(), 3);
}

#[tokio::test]
async fn the_path_authority_of_drivers_up_to_1_5_is_served() {
    let (orders, provider) = start().await;

    let response =
        driver::mount_with_path_authority(provider.socket(), orders.request(&scenario::spc_yaml()))
            .await
            .unwrap();

    assert_eq!(
        file(&response, "orders-db-conn").contents,
        DB_CONN.as_bytes()
    );
    let refusal = driver::mount_with_path_authority(
        provider.socket(),
        orders.request(&one_secret("objectName: a\nobjectType: nope\n")),
    )
    .await;
    let (code, message) = refusal.unwrap_err();
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "objects[0] (a): objectType: \"nope\" is not one of secret, key, cert"
    );
}

#[tokio::test]
async fn a_pinned_version_is_served_not_the_latest() {
    let (orders, provider) = start().await;
    let old = orders.versions["orders-db-conn"].clone();
    orders
        .world
        .keyvault()
        .set_secret(VAULT, "orders-db-conn", "rotated", None);

    let spc = one_secret(&format!(
        "objectName: orders-db-conn\nobjectType: secret\nobjectVersion: {old}\n"
    ));
    let response = mount(&provider, orders.request(&spc)).await.unwrap();

    assert_eq!(
        file(&response, "orders-db-conn").contents,
        DB_CONN.as_bytes()
    );
    assert_eq!(response.object_version[0].version, old);
    let latest = mount(
        &provider,
        orders.request(&one_secret(
            "objectName: orders-db-conn\nobjectType: secret\n",
        )),
    )
    .await
    .unwrap();
    assert_eq!(latest.files[0].contents, b"rotated");
}

#[tokio::test]
async fn each_encoding_decodes_the_stored_value() {
    let (orders, provider) = start().await;
    let kv = orders.world.keyvault();
    kv.set_secret(VAULT, "as-text", "héllo\n", None);
    kv.set_secret(VAULT, "as-base64", "AAEC\r\n/w==", None);
    kv.set_secret(VAULT, "as-hex", "00fFaB10", None);

    let spc = scenario::spc_with_objects(
        "        - {objectName: as-text, objectType: secret, objectEncoding: UTF-8}\n\
         \x20       - {objectName: as-base64, objectType: secret, objectEncoding: base64}\n\
         \x20       - {objectName: as-hex, objectType: secret, objectEncoding: Hex}\n",
    );
    let response = mount(&provider, orders.request(&spc)).await.unwrap();

    assert_eq!(file(&response, "as-text").contents, "héllo\n".as_bytes());
    assert_eq!(file(&response, "as-base64").contents, [0, 1, 2, 255]);
    assert_eq!(file(&response, "as-hex").contents, [0, 255, 171, 16]);
}

#[tokio::test]
async fn a_value_that_is_not_its_encoding_is_refused() {
    let (orders, provider) = start().await;
    let spc = one_secret("objectName: orders-db-conn\nobjectType: secret\nobjectEncoding: hex\n");

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "objects[0] (orders-db-conn): objectEncoding: the stored value is not hexadecimal (version latest)"
    );
}

#[tokio::test]
async fn a_missing_token_audience_names_the_csidriver_setting() {
    let (orders, provider) = start().await;
    let request = driver::mount_request(&scenario::spc_yaml(), &orders.pod, &[], None).unwrap();

    let (code, message) = refused(&provider, request).await;

    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        message,
        "the pod's service account token for audience api://AzureADTokenExchange is missing: \
         workload identity needs the CSIDriver secrets-store.csi.k8s.io to have a tokenRequests \
         entry with audience \"api://AzureADTokenExchange\""
    );
    assert!(orders.world.entra().requests().is_empty());
}

#[tokio::test]
async fn a_service_account_without_a_federated_credential_gets_aadsts700213() {
    let (orders, provider) = start().await;
    let stranger = Pod::new("orders", "orders-batch", "sa-batch");

    let (code, message) = refused(
        &provider,
        orders.request_for(&scenario::spc_yaml(), &stranger),
    )
    .await;

    assert_eq!(code, Code::PermissionDenied);
    assert!(
        message.starts_with(&format!(
            "Entra ID refused a token for client {ORDERS_CLIENT_ID} in tenant {TENANT}: AADSTS700213: "
        )),
        "{message}"
    );
    assert!(
        message.contains("system:serviceaccount:<namespace>:<service account> exactly"),
        "{message}"
    );
    assert!(orders.world.keyvault().requests().is_empty());
}

#[tokio::test]
async fn a_tenant_that_does_not_exist_gets_aadsts90002() {
    let (orders, provider) = start().await;
    let spc = scenario::spc_yaml().replace(TENANT, "00000000-0000-0000-0000-000000000001");

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::Unauthenticated);
    assert!(
        message.contains("in tenant 00000000-0000-0000-0000-000000000001: AADSTS90002: "),
        "{message}"
    );
    assert!(
        message.ends_with("[the tenant does not exist: check tenantID]")
            || message.contains("check tenantID"),
        "{message}"
    );
}

#[tokio::test]
async fn a_secret_that_does_not_exist_is_not_found_by_name() {
    let (orders, provider) = start().await;
    let spc = scenario::spc_with_objects(
        "        - {objectName: orders-db-conn, objectType: secret}\n\
         \x20       - {objectName: no-such-secret, objectType: secret}\n",
    );

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::NotFound);
    assert!(
        message.starts_with(
            "secret \"no-such-secret\" in vault kv-plat-prod-001 (latest version) was not found: "
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_disabled_version_is_refused_by_version() {
    let (orders, provider) = start().await;
    let version = orders.versions["orders-api-key"].clone();
    orders
        .world
        .keyvault()
        .disable_secret_version(VAULT, "orders-api-key", &version);
    let spc = one_secret(&format!(
        "objectName: orders-api-key\nobjectType: secret\nobjectVersion: {version}\n"
    ));

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        message,
        format!(
            "secret \"orders-api-key\" in vault kv-plat-prod-001 (version {version}) is disabled: \
             enable it in Key Vault or pin an enabled version"
        )
    );
}

#[tokio::test]
async fn a_vault_without_a_role_is_permission_denied() {
    let (orders, provider) = start().await;
    orders
        .world
        .keyvault()
        .create_vault("kv-payments-prod", TENANT);
    orders
        .world
        .keyvault()
        .set_secret("kv-payments-prod", "card-key", "x", None);
    let spc = scenario::spc_yaml()
        .replace(VAULT, "kv-payments-prod")
        .replace("objectName: orders-db-conn", "objectName: card-key");
    let spc = spc
        .split("        - |\n          objectName: orders-api-key")
        .next()
        .unwrap()
        .to_owned();

    let (code, message) = refused(&provider, orders.request(&spc)).await;

    assert_eq!(code, Code::PermissionDenied);
    assert!(
        message.starts_with("access to secret \"card-key\" in vault kv-payments-prod (latest version) was denied (ForbiddenByRbac): "),
        "{message}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_any_network_call() {
    let (orders, provider) = start().await;
    let cases = [
        (
            one_secret(
                "objectName: orders-db-conn\nobjectType: secret\nfilePermission: \"0999\"\n",
            ),
            "objects[0] (orders-db-conn): filePermission: \"0999\" is not an octal file mode between 0000 and 0777",
        ),
        (
            one_secret(
                "objectName: orders-db-conn\nobjectType: secret\nobjectAlias: ../../etc/cron.d/x\n",
            ),
            "objects[0] (orders-db-conn): objectAlias: \"../../etc/cron.d/x\" starts with \"..\"",
        ),
        (
            one_secret("objectName: orders-db-conn\nobjectType: secret\nobjectAlias: a/../../b\n"),
            "objects[0] (orders-db-conn): objectAlias: \"a/../../b\" has a \"..\" element",
        ),
        (
            one_secret(
                "objectName: orders-db-conn\nobjectType: secret\nobjectAlias: /etc/passwd\n",
            ),
            "objects[0] (orders-db-conn): objectAlias: \"/etc/passwd\" is absolute; use a path relative to the volume",
        ),
        (
            scenario::spc_with("    objects: |\n      array: []\n"),
            "parameter objects: no objects are listed: add at least one item under `array`",
        ),
        (
            scenario::spc_with("    objects: |\n      array:\n"),
            "parameter objects: no objects are listed: add at least one item under `array`",
        ),
    ];

    for (spc, expected) in cases {
        let (code, message) = refused(&provider, orders.request(&spc)).await;
        assert_eq!((code, message.as_str()), (Code::InvalidArgument, expected));
    }
    assert!(orders.world.entra().requests().is_empty());
    assert!(orders.world.keyvault().requests().is_empty());
}

#[tokio::test]
async fn the_socket_is_owner_only_and_removed_on_sigterm() {
    let (orders, provider) = start().await;
    let socket = provider.socket().to_owned();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    mount(&provider, orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();

    let (status, output) = provider.stop().await;

    assert!(status.success(), "{status}: {output}");
    assert!(!socket.exists());
    assert!(output.contains("SIGTERM received"), "{output}");
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let orders = Orders::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("azure.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let endpoint = format!("--endpoint=unix://{}", socket.display());
    let provider = Provider::start(orders.provider_options(&[&endpoint])).await;

    let response = mount(&provider, orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();
    assert_eq!(response.files.len(), 3);
}

#[tokio::test]
async fn version_names_the_runtime() {
    let (_orders, provider) = start().await;
    let mut client = driver::connect(provider.socket()).await;

    let version = client
        .version(driver::version_request())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(version.version, "v1alpha1");
    assert_eq!(version.runtime_name, "akv-csi-provider");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn identical_gets_in_flight_together_are_sent_once() {
    let (orders, provider) = start().await;
    mount(&provider, orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();
    let kv = orders.world.keyvault();
    kv.set_latency(std::time::Duration::from_millis(300));
    let before = kv.requests().len();

    let mounts = (0..20).map(|_| mount(&provider, orders.request(&scenario::spc_yaml())));
    let responses = futures::future::join_all(mounts).await;

    for response in responses {
        assert_eq!(
            file(&response.unwrap(), "orders-db-conn").contents,
            DB_CONN.as_bytes()
        );
    }
    // Twenty Mounts of one identity, at the same moment: one GET per object.
    assert_eq!(kv.requests().len() - before, 3);
}
