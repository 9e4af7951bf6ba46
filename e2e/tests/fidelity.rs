//! Fidelity of the doubles, judged by Microsoft's official Python SDKs: `azure-identity`
//! exchanges a service-account token at the Entra double, and `azure-keyvault-secrets`, `-keys`
//! and `-certificates` read from the Key Vault double, all through the world's proxy. If the
//! official client cannot talk to a double, the double is wrong.
//!
//! Needs the virtual environment of `e2e/fidelity/requirements.txt` (`make venv`).

use akv_e2e::World;
use akv_e2e::entra::{GrantSeen, TokenOutcome};
use akv_e2e::world::TOKEN_EXCHANGE_AUDIENCE;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const TENANT: &str = "0b9e4a5c-1d2f-4e3a-8b7c-6d5e4f3a2b1c";
const CLIENT: &str = "d3c2b1a0-9f8e-4d7c-b6a5-948372615f0e";
const VAULT: &str = "kv-fidelity";

/// The workspace root, where `.venv` and `e2e/fidelity` live.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the workspace")
        .to_owned()
}

fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make venv` to install e2e/fidelity/requirements.txt",
        python.display()
    );
    python
}

/// A world where `CLIENT` (service account `team-a/reader`) may read vault `VAULT`.
async fn seeded_world() -> World {
    let world = World::start().await;
    world.add_workload_identity(TENANT, CLIENT, "team-a", "reader");
    world.keyvault().create_vault(VAULT, TENANT);
    world.keyvault().grant(VAULT, CLIENT);
    world
}

/// Runs `e2e/fidelity/<script>` with `args` plus the identity arguments, reaching the world
/// only through its proxy, and returns the JSON it printed.
async fn run_sdk(world: &World, script: &str, args: &[&str]) -> Value {
    let python = venv_python();
    let scratch = tempfile::tempdir().unwrap();
    let token_file = scratch.path().join("token");
    let token = world.sa_token(
        "team-a",
        "reader",
        "web-0",
        "pod-uid",
        TOKEN_EXCHANGE_AUDIENCE,
    );
    std::fs::write(&token_file, token).unwrap();

    let mut command = tokio::process::Command::new(python);
    command
        .arg(workspace_root().join("e2e/fidelity").join(script))
        .args(["--tenant-id", TENANT, "--client-id", CLIENT])
        .args(["--vault-url", &world.keyvault().vault_url(VAULT)])
        .args(args)
        .arg("--token-file")
        .arg(&token_file)
        // Nothing from this process's environment: no stray proxy, NO_PROXY or AZURE_*.
        .env_clear()
        .env("HOME", scratch.path())
        .env("HTTPS_PROXY", world.proxy_url())
        .env("https_proxy", world.proxy_url())
        .env("REQUESTS_CA_BUNDLE", world.ca_file())
        .env("SSL_CERT_FILE", world.ca_file())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the SDK finishes within two minutes")
        .expect("run the Python SDK");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stderr}");

    let refused: Vec<_> = world
        .proxy_requests()
        .into_iter()
        .filter(|request| !request.tunnelled)
        .collect();
    assert!(
        refused.is_empty(),
        "the SDK tried to leave the world: {refused:?}"
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn official_python_sdk_reads_a_secret_through_the_doubles() {
    let world = seeded_world().await;
    let kv = world.keyvault();
    kv.set_secret(VAULT, "db-password", "old", None);
    let version = kv.set_secret(VAULT, "db-password", "s3cr3t-värde", Some("text/plain"));

    let printed = run_sdk(&world, "read_secret.py", &["--secret-name", "db-password"]).await;
    assert_eq!(printed["value"], "s3cr3t-värde");
    assert_eq!(printed["version"], version.as_str());

    // The SDK's challenge dance: a request without a token, then the same with one.
    let seen = kv.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!((seen[0].had_bearer, seen[0].status), (false, 401));
    assert_eq!((seen[1].had_bearer, seen[1].status), (true, 200));
    assert_eq!(seen[1].path, "/secrets/db-password/");
    assert_eq!(seen[1].caller.as_deref(), Some(CLIENT));

    let exchanges = world.entra().requests();
    assert_eq!(exchanges.len(), 1, "{exchanges:#?}");
    assert_eq!(exchanges[0].client_id, CLIENT);
    assert_eq!(exchanges[0].grant, GrantSeen::Assertion);
    assert_eq!(exchanges[0].scope, "https://vault.azure.net/.default");
    assert_eq!(
        exchanges[0].assertion_subject.as_deref(),
        Some("system:serviceaccount:team-a:reader")
    );
    assert_eq!(exchanges[0].outcome, TokenOutcome::Issued);

    let connects = world.proxy_connects();
    assert!(connects.contains(&"login.microsoftonline.com:443".to_owned()));
    assert!(connects.contains(&format!("{VAULT}.vault.azure.net:443")));
}

#[tokio::test]
async fn official_python_sdks_page_versions_and_read_certificates() {
    let world = seeded_world().await;
    let kv = world.keyvault();
    let mut written: Vec<(String, i64)> = (0..5)
        .map(|i| {
            let created = 1_700_000_000 + 1000 * i;
            let version = kv.set_secret_at(VAULT, "rotated", &format!("v{i}"), None, created);
            (version, created)
        })
        .collect();
    kv.set_page_size(2);
    kv.set_empty_pages(true);

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["web.example.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    let cert_version =
        kv.set_certificate(VAULT, "web-tls", cert.der(), &pem, "application/x-pem-file");

    let args = ["--secret-name", "rotated", "--certificate-name", "web-tls"];
    let printed = run_sdk(&world, "inspect_vault.py", &args).await;

    let mut listed: Vec<(String, i64)> = printed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let version = item["version"].as_str().unwrap().to_owned();
            (version, item["created"].as_i64().unwrap())
        })
        .collect();
    listed.sort();
    written.sort();
    assert_eq!(listed, written);

    let base = format!("https://{VAULT}.vault.azure.net");
    let certificate = &printed["certificate"];
    assert_eq!(certificate["version"], cert_version.as_str());
    assert_eq!(
        certificate["cer"],
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert.der())
    );
    assert_eq!(
        certificate["key_id"],
        format!("{base}/keys/web-tls/{cert_version}")
    );
    assert_eq!(
        certificate["secret_id"],
        format!("{base}/secrets/web-tls/{cert_version}")
    );
    assert_eq!(certificate["content_type"], "application/x-pem-file");
    assert_eq!(printed["key"]["kty"], "EC");
    assert_eq!(printed["key"]["crv"], "P-256");
    assert_eq!(printed["key"]["managed"], true);
    assert_eq!(printed["secret"]["value"], pem);
    assert_eq!(printed["secret"]["managed"], true);
    assert_eq!(
        printed["secret"]["key_id"],
        format!("{base}/keys/web-tls/{cert_version}")
    );

    // Five versions two at a time, an empty page before each full one: six list requests.
    let pages = kv
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/versions") && request.status == 200)
        .count();
    assert_eq!(pages, 6);
}
