//! Every cloud through the release binary: each one's authority host, vault host and token
//! scope; `--cloud-name` as the default; Azure Stack Hub's environment file, read per request,
//! with concurrent Mounts on different files that do not see each other's.

use akv_e2e::Cloud;
use akv_e2e::driver::{self, TOKEN_AUDIENCE, pb};
use akv_e2e::entra::TokenOutcome;
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{ORDERS_CLIENT_ID, Orders, TENANT};
use tonic::Code;

/// A workload-identity SecretProviderClass for vault `vault` with these extra `parameters`,
/// mounting the secret `cloud-secret`.
fn spc(vault: &str, parameters: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\n\
         metadata: {{name: spc-clouds, namespace: orders}}\nspec:\n  provider: azure\n  \
         parameters:\n    keyvaultName: {vault}\n    tenantId: \"{TENANT}\"\n    \
         clientID: \"{ORDERS_CLIENT_ID}\"\n"
    );
    for (key, value) in parameters {
        yaml.push_str(&format!("    {key}: \"{value}\"\n"));
    }
    yaml.push_str(
        "    objects: |\n      array:\n        - |\n          objectName: cloud-secret\n\
         \x20         objectType: secret\n",
    );
    yaml
}

/// Creates `vault` in `cloud`, readable by the orders identity, holding `cloud-secret` = `value`.
fn vault_in(orders: &Orders, cloud: Cloud, vault: &str, value: &str) {
    let kv = orders.world.keyvault();
    kv.create_vault_in(cloud, vault, TENANT);
    kv.grant(vault, ORDERS_CLIENT_ID);
    kv.set_secret(vault, "cloud-secret", value, None);
}

fn request(orders: &Orders, spc: &str) -> pb::MountRequest {
    let tokens = [(TOKEN_AUDIENCE, orders.token(&orders.pod))];
    driver::mount_request(spc, &orders.pod, &tokens, None).unwrap()
}

async fn mount(provider: &Provider, request: pb::MountRequest) -> Result<Vec<u8>, tonic::Status> {
    let mut client = driver::connect(provider.socket()).await;
    let response = client.mount(request).await?.into_inner();
    assert_eq!(response.files.len(), 1);
    Ok(response.files[0].contents.clone())
}

/// Writes `cloud`'s environment file into `dir` as `<name>.json`; returns its path.
fn env_file(dir: &std::path::Path, name: &str, cloud: Cloud) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, cloud.environment_file().to_string()).unwrap();
    path.display().to_string()
}

/// (cloud, scope) of every token request, in order.
fn exchanges(orders: &Orders) -> Vec<(Cloud, String)> {
    let requests = orders.world.entra().requests();
    assert!(requests.iter().all(|r| r.outcome == TokenOutcome::Issued));
    requests.into_iter().map(|r| (r.cloud, r.scope)).collect()
}

/// The vault hosts Key Vault requests went to, in order.
fn vault_hosts(orders: &Orders) -> Vec<String> {
    let requests = orders.world.keyvault().requests();
    requests.into_iter().map(|r| r.host).collect()
}

#[tokio::test]
async fn each_cloud_uses_its_authority_vault_host_and_scope() {
    let orders = Orders::start().await;
    let clouds = [
        ("AzurePublicCloud", Cloud::Public, "kv-pub-001"),
        ("azureusgovernmentcloud", Cloud::UsGovernment, "kv-gov-001"),
        ("AZURECHINACLOUD", Cloud::China, "kv-cn-001"),
    ];
    for (_, cloud, vault) in clouds {
        vault_in(&orders, cloud, vault, &format!("from {vault}"));
    }
    let provider = Provider::start(orders.provider_options(&[])).await;

    for (name, _, vault) in clouds {
        let spc = spc(vault, &[("cloudName", name)]);
        let contents = mount(&provider, request(&orders, &spc)).await.unwrap();
        assert_eq!(contents, format!("from {vault}").as_bytes());
    }

    assert_eq!(
        exchanges(&orders),
        [
            (Cloud::Public, "https://vault.azure.net/.default".to_owned()),
            (
                Cloud::UsGovernment,
                "https://vault.usgovcloudapi.net/.default".to_owned()
            ),
            (Cloud::China, "https://vault.azure.cn/.default".to_owned()),
        ]
    );
    assert_eq!(
        vault_hosts(&orders),
        [
            "kv-pub-001.vault.azure.net",
            "kv-gov-001.vault.usgovcloudapi.net",
            "kv-cn-001.vault.azure.cn"
        ]
    );
    let connects = orders.world.proxy_connects();
    for host in [
        "login.microsoftonline.com:443",
        "login.microsoftonline.us:443",
        "login.chinacloudapi.cn:443",
        "kv-gov-001.vault.usgovcloudapi.net:443",
        "kv-cn-001.vault.azure.cn:443",
    ] {
        assert!(
            connects.contains(&host.to_owned()),
            "{host} in {connects:?}"
        );
    }
    assert!(orders.world.proxy_requests().iter().all(|r| r.tunnelled));
}

#[tokio::test]
async fn the_cloud_name_flag_is_the_default_cloud() {
    let orders = Orders::start().await;
    vault_in(&orders, Cloud::China, "kv-cn-002", "china");
    vault_in(&orders, Cloud::Public, "kv-pub-002", "public");
    let provider =
        Provider::start(orders.provider_options(&["--cloud-name=AzureChinaCloud"])).await;

    let defaulted = mount(&provider, request(&orders, &spc("kv-cn-002", &[]))).await;
    let chosen = spc("kv-pub-002", &[("cloudName", "AzurePublicCloud")]);
    let overridden = mount(&provider, request(&orders, &chosen)).await;

    assert_eq!(defaulted.unwrap(), b"china");
    assert_eq!(overridden.unwrap(), b"public");
    let clouds: Vec<Cloud> = exchanges(&orders).into_iter().map(|(c, _)| c).collect();
    assert_eq!(clouds, [Cloud::China, Cloud::Public]);
}

#[tokio::test]
async fn azure_stack_takes_its_endpoints_from_the_environment_file() {
    let orders = Orders::start().await;
    vault_in(&orders, Cloud::Stack, "kv-stack-001", "on-prem");
    let dir = tempfile::tempdir().unwrap();
    let file = env_file(dir.path(), "stack", Cloud::Stack);
    let provider = Provider::start(orders.provider_options(&[])).await;

    let spc = spc(
        "kv-stack-001",
        &[
            ("cloudName", "AzureStackCloud"),
            ("cloudEnvFileName", &file),
        ],
    );
    let contents = mount(&provider, request(&orders, &spc)).await.unwrap();

    assert_eq!(contents, b"on-prem");
    assert_eq!(
        exchanges(&orders),
        [(
            Cloud::Stack,
            "https://vault.local.azurestack.external/.default".to_owned()
        )]
    );
    assert_eq!(
        vault_hosts(&orders),
        ["kv-stack-001.vault.local.azurestack.external"]
    );
    let connects = orders.world.proxy_connects();
    assert!(connects.contains(&"adfs.local.azurestack.external:443".to_owned()));
}

#[tokio::test]
async fn the_environment_file_is_read_on_every_mount() {
    let orders = Orders::start().await;
    vault_in(&orders, Cloud::Stack, "kv-stack-002", "on-prem");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.json").display().to_string();
    let provider = Provider::start(orders.provider_options(&[])).await;
    let spc = spc(
        "kv-stack-002",
        &[
            ("cloudName", "AzureStackCloud"),
            ("cloudEnvFileName", &path),
        ],
    );

    let missing = mount(&provider, request(&orders, &spc)).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(
        missing.message(),
        format!(
            "parameter cloudEnvFileName: cannot read \"{path}\": No such file or directory \
             (os error 2)"
        )
    );

    // Written after the provider started: the next Mount reads it, no restart needed.
    env_file(dir.path(), "late", Cloud::Stack);
    let contents = mount(&provider, request(&orders, &spc)).await.unwrap();
    assert_eq!(contents, b"on-prem");
}

#[tokio::test]
async fn concurrent_mounts_with_different_environment_files_do_not_interfere() {
    let orders = Orders::start().await;
    vault_in(&orders, Cloud::Stack, "kv-stack-a", "stamp a");
    vault_in(&orders, Cloud::UsGovernment, "kv-stack-b", "stamp b");
    let dir = tempfile::tempdir().unwrap();
    let file_a = env_file(dir.path(), "a", Cloud::Stack);
    let file_b = env_file(dir.path(), "b", Cloud::UsGovernment);
    let spc_a = spc(
        "kv-stack-a",
        &[
            ("cloudName", "AzureStackCloud"),
            ("cloudEnvFileName", &file_a),
        ],
    );
    let spc_b = spc(
        "kv-stack-b",
        &[
            ("cloudName", "AzureStackCloud"),
            ("cloudEnvFileName", &file_b),
        ],
    );
    let provider = Provider::start(orders.provider_options(&[])).await;
    // One connection, as the driver has: every Mount is a concurrent stream on it.
    let client = driver::connect(provider.socket()).await;

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (spc, expected) = if i % 2 == 0 {
            (&spc_a, "stamp a")
        } else {
            (&spc_b, "stamp b")
        };
        let request = request(&orders, spc);
        let mut client = client.clone();
        calls.spawn(async move {
            let response = client.mount(request).await.unwrap().into_inner();
            (response.files[0].contents.clone(), expected)
        });
    }
    let mut answered = 0;
    while let Some(joined) = calls.join_next().await {
        let (contents, expected) = joined.unwrap();
        assert_eq!(contents, expected.as_bytes());
        answered += 1;
    }

    assert_eq!(answered, 20);
    let mut seen = exchanges(&orders);
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                Cloud::UsGovernment,
                "https://vault.usgovcloudapi.net/.default".to_owned()
            ),
            (
                Cloud::Stack,
                "https://vault.local.azurestack.external/.default".to_owned()
            ),
        ],
        "one token request per stamp, shared by its ten concurrent Mounts"
    );
    let mut hosts = vault_hosts(&orders);
    hosts.sort();
    hosts.dedup();
    assert_eq!(
        hosts,
        [
            "kv-stack-a.vault.local.azurestack.external",
            "kv-stack-b.vault.usgovcloudapi.net"
        ]
    );
}

#[tokio::test]
async fn closed_and_unknown_clouds_are_refused_before_any_request() {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(&[])).await;
    let cases = [
        (
            vec![("cloudName", "AzureGermanCloud")],
            "parameter cloudName: AzureGermanCloud was closed in 2021 and is not supported",
        ),
        (
            vec![("cloudName", "AzureMarsCloud")],
            "parameter cloudName: \"AzureMarsCloud\" is not one of AzurePublicCloud, \
             AzureUSGovernmentCloud, AzureChinaCloud, AzureStackCloud",
        ),
        (
            vec![("cloudName", "AzureStackCloud")],
            "parameter cloudEnvFileName: is required when cloudName is AzureStackCloud",
        ),
    ];

    for (parameters, expected) in cases {
        let status = mount(&provider, request(&orders, &spc("kv-any-001", &parameters)))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, expected)
        );
    }
    assert!(orders.world.entra().requests().is_empty());
    assert!(orders.world.proxy_requests().is_empty());
}
