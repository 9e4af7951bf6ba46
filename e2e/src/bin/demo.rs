//! `make demo`: the product's main job, whole, on the embedded test world.
//!
//! Starts the doubles (OIDC issuer, Entra ID, Key Vault, CONNECT proxy) and the release
//! binary, mounts the orders SecretProviderClass for pod `orders/orders-api` the way the CSI
//! driver does, writes the files as kubelet's atomic writer would, prints the volume, and
//! stops everything it started.

use std::time::Instant;

use akv_e2e::driver::{self, pb};
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, Orders};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let orders = Orders::start().await;
    println!(
        "test world up: issuer {}, proxy {}",
        orders.world.issuer_url(),
        orders.world.proxy_url()
    );

    let provider = Provider::start(orders.provider_options(&["-v=2"])).await;
    println!(
        "provider up: pid {}, socket {}",
        provider.pid(),
        provider.socket().display()
    );

    let spc = scenario::spc_yaml();
    println!("\nSecretProviderClass:\n{spc}");
    let mut client = driver::connect(provider.socket()).await;
    let mount_started = Instant::now();
    let response = client.mount(orders.request(&spc)).await?.into_inner();
    let mount_time = mount_started.elapsed();

    let volume = tempfile::Builder::new()
        .prefix("akv-demo-volume-")
        .tempdir()?;
    driver::write_volume(volume.path(), &response.files)?;

    println!(
        "Mount answered in {} ms with {} files:",
        mount_time.as_millis(),
        response.files.len()
    );
    for pb::ObjectVersion { id, version } in &response.object_version {
        println!("  {id:<28} version {version}");
    }
    println!("\nvolume {}:", volume.path().display());
    println!(
        "{}",
        driver::describe_volume(volume.path(), &["orders-db-conn"])
    );

    let entra_calls = orders.world.entra().requests().len();
    let kv_calls = orders.world.keyvault().requests().len();
    println!("requests: Entra ID {entra_calls}, Key Vault {kv_calls}");

    let (status, _) = provider.stop().await;
    println!(
        "provider stopped ({status}); demo took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        return Err(format!("the provider exited with {status}").into());
    }
    Ok(())
}
