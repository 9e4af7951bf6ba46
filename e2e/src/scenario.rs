//! The demo's world: team "orders" mounts secrets from vault `kv-plat-prod-001` into pod
//! `orders-api` (namespace `orders`, service account `sa-orders`) with workload identity.
//!
//! Tests and the demo start from this seed and then bend it (drop a federated credential,
//! disable a version, pin an object) to show one behaviour at a time.

use std::collections::BTreeMap;

use crate::driver::{self, Pod, pb};
use crate::provider::ProviderOptions;
use crate::world::{TOKEN_EXCHANGE_AUDIENCE, World};

/// The Entra tenant of the orders team.
pub const TENANT: &str = "5b1e1c2a-8f3d-4c6e-9a7b-0d2e4f6a8c10";

/// Client id of the user-assigned identity `id-orders-api`.
pub const ORDERS_CLIENT_ID: &str = "3f6b9d2e-7c41-4a58-b0e3-9d8c7a6f5e21";

/// The vault.
pub const VAULT: &str = "kv-plat-prod-001";

/// The database connection string: a test value, not sensitive.
pub const DB_CONN: &str = "Server=tcp:orders-sql.database.windows.net,1433;Database=orders;\
                           Authentication=Active Directory Default;";

/// The API key (a test value treated as sensitive: the demo prints only its size).
pub const API_KEY: &str = "ak_live_7Hq2xN9pL4vR8sT1wY6zB3cF5gJ0mK";

/// The signing salt, mounted with mode 0400 (sensitive too).
pub const SIGNING_SALT: &str = "c2FsdC1mb3Itb3JkZXJzLXNpZ25pbmctdjE=";

/// The SecretProviderClass of the issue, with the world's identities filled in.
pub fn spc_yaml() -> String {
    spc_with_objects(
        "        - |\n          objectName: orders-db-conn\n          objectType: secret\n\
         \x20       - |\n          objectName: orders-api-key\n          objectType: secret\n\
         \x20         objectAlias: config/api-key.txt\n\
         \x20       - |\n          objectName: orders-signing-salt\n          objectType: secret\n\
         \x20         filePermission: \"0400\"\n",
    )
}

/// The orders SecretProviderClass with another `objects` array (items indented by 8 spaces).
pub fn spc_with_objects(items: &str) -> String {
    spc_with(&format!("    objects: |\n      array:\n{items}"))
}

/// The orders SecretProviderClass with extra `spec.parameters` lines (indented by 4 spaces)
/// in place of `objects`.
pub fn spc_with(parameters: &str) -> String {
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\n\
         kind: SecretProviderClass\n\
         metadata: {{name: spc-orders-kv, namespace: orders}}\n\
         spec:\n  provider: azure\n  parameters:\n\
         \x20   usePodIdentity: \"false\"\n\
         \x20   clientID: \"{ORDERS_CLIENT_ID}\"\n\
         \x20   keyvaultName: {VAULT}\n\
         \x20   tenantId: \"{TENANT}\"\n{parameters}"
    )
}

/// The seeded world and the versions it created.
pub struct Orders {
    /// The doubles.
    pub world: World,
    /// The pod.
    pub pod: Pod,
    /// Version of each seeded secret, by name.
    pub versions: BTreeMap<&'static str, String>,
}

impl Orders {
    /// Starts a world with the orders identity, vault, grant and three secrets.
    pub async fn start() -> Orders {
        let world = World::start().await;
        world.add_workload_identity(TENANT, ORDERS_CLIENT_ID, "orders", "sa-orders");
        let kv = world.keyvault();
        kv.create_vault(VAULT, TENANT);
        kv.grant(VAULT, ORDERS_CLIENT_ID);

        let mut versions = BTreeMap::new();
        for (name, value) in [
            ("orders-db-conn", DB_CONN),
            ("orders-api-key", API_KEY),
            ("orders-signing-salt", SIGNING_SALT),
        ] {
            versions.insert(name, kv.set_secret(VAULT, name, value, None));
        }
        let pod = Pod::new("orders", "orders-api", "sa-orders");
        Orders {
            world,
            pod,
            versions,
        }
    }

    /// The pod's projected token for the token-exchange audience.
    pub fn token(&self, pod: &Pod) -> String {
        self.world.pod_token(pod)
    }

    /// The MountRequest the driver sends for `spc` and the orders pod.
    pub fn request(&self, spc: &str) -> pb::MountRequest {
        self.request_for(spc, &self.pod)
    }

    /// The MountRequest the driver sends for `spc` and `pod`, with the pod's token.
    pub fn request_for(&self, spc: &str, pod: &Pod) -> pb::MountRequest {
        let tokens = [(TOKEN_EXCHANGE_AUDIENCE, self.token(pod))];
        driver::mount_request(spc, pod, &tokens, None).expect("a valid SecretProviderClass")
    }

    /// Provider options that reach this world: `HTTPS_PROXY` and `SSL_CERT_FILE`, plus `args`.
    pub fn provider_options(&self, args: &[&str]) -> ProviderOptions {
        self.provider_options_with_env(args, &[])
    }

    /// As [`Orders::provider_options`], with `env` added to the provider's environment.
    pub fn provider_options_with_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ProviderOptions {
        let mut options = ProviderOptions {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![
                ("HTTPS_PROXY".into(), self.world.proxy_url()),
                (
                    "SSL_CERT_FILE".into(),
                    self.world.ca_file().display().to_string(),
                ),
            ],
        };
        options
            .env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        options
    }
}
