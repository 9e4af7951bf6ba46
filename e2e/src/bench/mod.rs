//! The benchmark's world and the pieces every measurement shares: the seeded doubles (ten
//! workload identities, a vault of secrets and PFX certificates, a second vault for the
//! throttled burst), the provider processes it starts, and a timed `Mount` as the driver
//! sends it.
//!
//! Each measurement lives in its own module and returns plain figures; `report` turns them
//! into the tables `make bench` prints.

pub mod burst;
pub mod certheavy;
pub mod certs;
pub mod goreplay;
pub mod latency;
pub mod procfs;
pub mod report;
pub mod rotation;
pub mod startup;
pub mod stats;

use std::time::{Duration, Instant};

use akv_e2e::World;
use akv_e2e::driver::{self, CsiDriverProviderClient, Pod, pb};
use akv_e2e::provider::{Provider, ProviderOptions};
use akv_e2e::world::TOKEN_EXCHANGE_AUDIENCE;
use tonic::transport::Channel;

use goreplay::GoPattern;

/// The injected round trip of every request to Key Vault and Entra ID.
pub const ROUND_TRIP: Duration = Duration::from_millis(20);

/// The tenant of every identity and vault.
pub const TENANT: &str = "7d1c0b2a-3e4f-4a5b-8c6d-9e0f1a2b3c4d";

/// The vault of the latency, rotation and certificate measurements.
pub const VAULT: &str = "kv-bench-001";

/// The vault the throttled burst reads (its own, so its limit touches nothing else).
pub const BURST_VAULT: &str = "kv-bench-burst";

/// Secrets in [`VAULT`]: `s-0000` …
pub const SECRETS: usize = 1000;

/// Secrets in [`BURST_VAULT`]: `b-0000` …
pub const BURST_SECRETS: usize = 1000;

/// PFX certificates in [`VAULT`]: `c-00` …
pub const CERTIFICATES: usize = 20;

/// Service accounts, each its own workload identity.
pub const IDENTITIES: usize = 10;

/// The namespace of every pod.
pub const NAMESPACE: &str = "bench";

/// Extra provider flags, space-separated, for trying settings (`--mount-concurrency=64`);
/// the default is none: the product as it ships.
pub const PROVIDER_ARGS_ENV: &str = "AKV_BENCH_PROVIDER_ARGS";

/// The driver's client of one provider.
pub type Client = CsiDriverProviderClient<Channel>;

/// A workload identity: an app with a federated credential for one service account.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The app's client id.
    pub client_id: String,
    /// The service account in [`NAMESPACE`].
    pub service_account: String,
}

/// The seeded test world.
pub struct Bench {
    /// The doubles.
    pub world: World,
    /// The workload identities, one per service account.
    pub identities: Vec<Identity>,
    /// How many certificates were seeded, or why none were.
    pub certificates: Result<usize, String>,
}

impl Bench {
    /// Starts and seeds the world; every Key Vault and Entra answer takes [`ROUND_TRIP`].
    pub async fn start() -> Bench {
        let world = World::start().await;
        let identities: Vec<Identity> = (0..IDENTITIES)
            .map(|index| Identity {
                client_id: format!("6a1f0c3e-5b2d-4e8f-9a7c-{index:012}"),
                service_account: format!("sa-{index}"),
            })
            .collect();
        let kv = world.keyvault();
        kv.create_vault(VAULT, TENANT);
        kv.create_vault(BURST_VAULT, TENANT);
        for identity in &identities {
            world.add_workload_identity(
                TENANT,
                &identity.client_id,
                NAMESPACE,
                &identity.service_account,
            );
            kv.grant(VAULT, &identity.client_id);
            kv.grant(BURST_VAULT, &identity.client_id);
        }
        for name in names("s-", 0, SECRETS) {
            kv.set_secret(VAULT, &name, &secret_value(&name), None);
        }
        for name in names("b-", 0, BURST_SECRETS) {
            kv.set_secret(BURST_VAULT, &name, &secret_value(&name), None);
        }

        let certificates = tokio::task::spawn_blocking(|| certs::generate(CERTIFICATES))
            .await
            .map_err(|e| e.to_string())
            .and_then(|generated| generated)
            .map(|generated| {
                for (index, pfx) in generated.iter().enumerate() {
                    kv.set_certificate(
                        VAULT,
                        &cert_name(index),
                        &pfx.leaf_der,
                        &pfx.pfx_base64,
                        "application/x-pkcs12",
                    );
                }
                generated.len()
            });

        kv.set_latency(ROUND_TRIP);
        world.entra().set_latency(ROUND_TRIP);
        Bench {
            world,
            identities,
            certificates,
        }
    }

    /// How the provider reaches the world: `HTTPS_PROXY` and `SSL_CERT_FILE`; default flags
    /// plus those of [`PROVIDER_ARGS_ENV`].
    pub fn provider_options(&self) -> ProviderOptions {
        ProviderOptions {
            args: provider_args(),
            env: vec![
                ("HTTPS_PROXY".into(), self.world.proxy_url()),
                (
                    "SSL_CERT_FILE".into(),
                    self.world.ca_file().display().to_string(),
                ),
            ],
        }
    }

    /// A fresh provider process, ready (its first `Version` answered), and a driver client.
    pub async fn provider(&self) -> (Provider, Client) {
        let provider = Provider::start(self.provider_options()).await;
        let client = driver::connect(provider.socket()).await;
        (provider, client)
    }

    /// Pod `index`, running as identity `identity` (modulo their number).
    pub fn pod(&self, index: usize, identity: usize) -> (Pod, &Identity) {
        let identity = &self.identities[identity % self.identities.len()];
        let pod = Pod::new(
            NAMESPACE,
            &format!("pod-{index:03}"),
            &identity.service_account,
        );
        (pod, identity)
    }

    /// The pod's projected service-account token for workload identity.
    pub fn pod_token(&self, pod: &Pod) -> String {
        self.world.pod_token(pod)
    }

    /// The MountRequest the driver sends for `pod` mounting `names` (all of `object_type`)
    /// from `vault`.
    pub fn request(
        &self,
        pod: &Pod,
        identity: &Identity,
        vault: &str,
        object_type: &str,
        names: &[String],
    ) -> pb::MountRequest {
        let spc = spc(vault, &identity.client_id, object_type, names);
        let tokens = [(TOKEN_EXCHANGE_AUDIENCE, self.pod_token(pod))];
        driver::mount_request(&spc, pod, &tokens, None).expect("a valid SecretProviderClass")
    }

    /// The Go provider's request pattern for `identity` against `vault`.
    pub fn go_pattern(&self, identity: &Identity, vault: &str) -> GoPattern {
        GoPattern {
            http: self.world.http_client(),
            token_url: format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"),
            client_id: identity.client_id.clone(),
            vault_url: self.world.keyvault().vault_url(vault),
        }
    }
}

/// The flags of [`PROVIDER_ARGS_ENV`].
pub fn provider_args() -> Vec<String> {
    std::env::var(PROVIDER_ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `count` names `<prefix><index>` from `first` on, as the vaults name them (`s-0042`).
pub fn names(prefix: &str, first: usize, count: usize) -> Vec<String> {
    (first..first + count)
        .map(|index| format!("{prefix}{index:04}"))
        .collect()
}

/// Certificate `index`'s name.
pub fn cert_name(index: usize) -> String {
    format!("c-{index:02}")
}

/// The value stored in secret `name`: 64 bytes, different for every secret, so that every file
/// of an answer can be checked.
pub fn secret_value(name: &str) -> String {
    format!("{name}:{}", "v".repeat(63 - name.len()))
}

/// Whether `response` holds exactly one file per name, each with its secret's value.
pub fn complete(response: &pb::MountResponse, names: &[String]) -> bool {
    response.files.len() == names.len()
        && names.iter().all(|name| {
            response
                .files
                .iter()
                .any(|file| &file.path == name && file.contents == secret_value(name).as_bytes())
        })
}

/// A SecretProviderClass that mounts `names` of `object_type` from `vault` as `client_id`.
pub fn spc(vault: &str, client_id: &str, object_type: &str, names: &[String]) -> String {
    let mut objects = String::new();
    for name in names {
        objects.push_str(&format!(
            "        - |\n          objectName: {name}\n          objectType: {object_type}\n"
        ));
    }
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\n\
         kind: SecretProviderClass\n\
         metadata: {{name: spc-bench, namespace: {NAMESPACE}}}\n\
         spec:\n  provider: azure\n  parameters:\n\
         \x20   usePodIdentity: \"false\"\n\
         \x20   clientID: \"{client_id}\"\n\
         \x20   keyvaultName: {vault}\n\
         \x20   tenantId: \"{TENANT}\"\n\
         \x20   objects: |\n      array:\n{objects}"
    )
}

/// One Mount, timed from the call to the answer, with `deadline` sent as `grpc-timeout`.
pub async fn mount(
    client: &mut Client,
    request: pb::MountRequest,
    deadline: Option<Duration>,
) -> (Duration, Result<pb::MountResponse, tonic::Status>) {
    let mut request = tonic::Request::new(request);
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    let started = Instant::now();
    let answer = client.mount(request).await;
    (started.elapsed(), answer.map(tonic::Response::into_inner))
}

/// The provider's CPU seconds so far (0 when `/proc` cannot tell).
pub fn cpu(provider: &Provider) -> f64 {
    procfs::cpu_seconds(provider.pid()).unwrap_or(f64::NAN)
}

/// CONNECT tunnels opened to Key Vault hosts so far: one per TCP + TLS connection the
/// provider made to a vault (the Entra double's own fetches go elsewhere).
pub fn vault_connections(bench: &Bench) -> usize {
    bench
        .world
        .proxy_connects()
        .iter()
        .filter(|target| target.contains(".vault."))
        .count()
}

/// Stops a provider the bench started (by its pid, SIGTERM then kill).
pub async fn stop(provider: Provider) {
    let _ = provider.stop().await;
}
