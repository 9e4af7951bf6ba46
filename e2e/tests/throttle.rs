//! The Key Vault double's service limit: a vault with a throttle answers 429 `Throttled` once
//! its bucket is empty — with `Retry-After` or without, as configured — counts what it
//! answered, leaves other vaults alone, and serves again when the limit is lifted.

use akv_e2e::keyvault::Throttle;
use akv_e2e::{Cloud, World};
use serde_json::Value;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5a7d6e0c-3c3b-4d0e-9d2a-6f4b1c2d3e4f";

async fn world_with(vaults: &[&str]) -> (World, String) {
    let world = World::start().await;
    world.add_workload_identity(TENANT, CLIENT, "default", "app");
    for vault in vaults {
        world.keyvault().create_vault(vault, TENANT);
        world.keyvault().grant(vault, CLIENT);
        world.keyvault().set_secret(vault, "db", "one", None);
    }
    let token =
        world
            .entra()
            .mint_access_token(Cloud::Public, TENANT, CLIENT, "https://vault.azure.net");
    (world, token)
}

async fn get(world: &World, vault: &str, token: &str) -> reqwest::Response {
    world
        .http_client()
        .get(format!(
            "https://{vault}.vault.azure.net/secrets/db?api-version=7.6"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_throttled_vault_answers_429_after_its_burst_with_retry_after() {
    let (world, token) = world_with(&["kv-limited", "kv-free"]).await;
    let limit = Throttle {
        per_second: 1,
        burst: 2,
        retry_after: true,
    };
    world.keyvault().set_throttle("kv-limited", Some(limit));

    assert_eq!(get(&world, "kv-limited", &token).await.status(), 200);
    assert_eq!(get(&world, "kv-limited", &token).await.status(), 200);
    let throttled = get(&world, "kv-limited", &token).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Throttled");
    // Another vault has its own limit: none.
    assert_eq!(get(&world, "kv-free", &token).await.status(), 200);

    let counts = world.keyvault().counts();
    assert_eq!((counts.requests, counts.throttled), (4, 1));

    world.keyvault().set_throttle("kv-limited", None);
    assert_eq!(get(&world, "kv-limited", &token).await.status(), 200);
}

#[tokio::test]
async fn a_throttle_without_retry_after_sends_none() {
    let (world, token) = world_with(&["kv-limited"]).await;
    let limit = Throttle {
        per_second: 1,
        burst: 1,
        retry_after: false,
    };
    world.keyvault().set_throttle("kv-limited", Some(limit));

    assert_eq!(get(&world, "kv-limited", &token).await.status(), 200);
    let throttled = get(&world, "kv-limited", &token).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().get("retry-after").is_none());
    let statuses: Vec<u16> = world
        .keyvault()
        .requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 429]);
}
