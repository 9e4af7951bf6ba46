//! The test world: a test CA, the HTTPS front, the CONNECT proxy, the cluster's OIDC issuer,
//! Entra ID and Key Vault, all in this process on loopback, on ephemeral ports.
//!
//! A test starts a [`World`], seeds it (tenants, apps, federated credentials, vaults, secrets,
//! grants), points the provider at it with `HTTPS_PROXY` = [`World::proxy_url`] and
//! `SSL_CERT_FILE` = [`World::ca_file`] (and `--imds-endpoint` = [`World::imds_url`] for
//! managed identity), then reads back what each double saw. Worlds share no state, so tests
//! may run several at once; dropping one stops all its servers.

use crate::ca::TestCa;
use crate::entra::Entra;
use crate::front::{Doubles, Front};
use crate::imds::Imds;
use crate::keyvault::KeyVault;
use crate::oidc::OidcIssuer;
use crate::proxy::{Proxy, ProxyRequestSeen};
use crate::tasks::AbortOnDrop;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The audience AKS workload identity puts in projected tokens for Entra.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Everything the provider talks to, on loopback.
#[derive(Debug)]
pub struct World {
    ca: TestCa,
    oidc: Arc<OidcIssuer>,
    entra: Entra,
    keyvault: KeyVault,
    proxy: Proxy,
    imds: Imds,
    _front: Front,
    _imds_server: AbortOnDrop,
}

impl World {
    /// Starts a world with an empty directory and no vaults.
    pub async fn start() -> World {
        let ca = TestCa::generate();
        let proxy_listener = Proxy::bind().await;
        let proxy_url = format!(
            "http://{}",
            proxy_listener.local_addr().expect("proxy address")
        );

        // The two RSA keys take a moment each: make them side by side, off the runtime.
        let oidc = tokio::task::spawn_blocking(OidcIssuer::generate);
        let http = issuer_client(&ca, &proxy_url);
        let entra = tokio::task::spawn_blocking(move || Entra::new(http));
        let oidc = Arc::new(oidc.await.expect("generate the OIDC issuer"));
        let entra = entra.await.expect("generate the Entra double");
        let keyvault = KeyVault::new(entra.clone());

        let doubles = Arc::new(Doubles {
            entra: entra.clone(),
            oidc: oidc.clone(),
            keyvault: keyvault.clone(),
        });
        let tls = ca.server_config(&crate::cloud::certificate_names());
        let front = Front::start(tls, doubles).await;
        let proxy = Proxy::start(proxy_listener, front.addr(), keyvault.clone());
        let (imds, imds_server) = Imds::start(entra.clone()).await;

        World {
            ca,
            oidc,
            entra,
            keyvault,
            proxy,
            imds,
            _front: front,
            _imds_server: imds_server,
        }
    }

    /// The PEM file of the test CA (give it to the provider as `SSL_CERT_FILE`).
    pub fn ca_file(&self) -> &Path {
        self.ca.ca_file()
    }

    /// The test CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// `http://127.0.0.1:<port>` of the CONNECT proxy (give it as `HTTPS_PROXY`).
    pub fn proxy_url(&self) -> String {
        self.proxy.url()
    }

    /// The cluster's OIDC issuer URL, with its trailing slash, as in `iss`.
    pub fn issuer_url(&self) -> String {
        self.oidc.url().to_owned()
    }

    /// A projected service-account token for a pod: RS256, expiring in an hour.
    pub fn sa_token(
        &self,
        namespace: &str,
        service_account: &str,
        pod: &str,
        pod_uid: &str,
        audience: &str,
    ) -> String {
        self.oidc
            .sa_token(namespace, service_account, pod, pod_uid, audience)
    }

    /// The projected token kubelet hands the driver for `pod`, audience
    /// `api://AzureADTokenExchange`.
    pub fn pod_token(&self, pod: &crate::driver::Pod) -> String {
        self.sa_token(
            &pod.namespace,
            &pod.service_account,
            &pod.name,
            &pod.uid,
            TOKEN_EXCHANGE_AUDIENCE,
        )
    }

    /// Signs arbitrary `claims` with the issuer's key (for expired or odd tokens).
    pub fn sa_token_with(&self, claims: serde_json::Value) -> String {
        self.oidc.sign(&claims)
    }

    /// The OIDC issuer double.
    pub fn oidc(&self) -> &OidcIssuer {
        &self.oidc
    }

    /// The Entra ID double.
    pub fn entra(&self) -> &Entra {
        &self.entra
    }

    /// The Key Vault double.
    pub fn keyvault(&self) -> &KeyVault {
        &self.keyvault
    }

    /// The IMDS double: the node's managed identities.
    pub fn imds(&self) -> &Imds {
        &self.imds
    }

    /// `http://127.0.0.1:<port>` of the IMDS double (give it as `--imds-endpoint`).
    pub fn imds_url(&self) -> String {
        self.imds.url().to_owned()
    }

    /// `host:port` of every CONNECT the proxy saw, tunnelled or refused, oldest first. The
    /// Entra double's own fetches of the issuer's documents are among them.
    pub fn proxy_connects(&self) -> Vec<String> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|request| request.method == "CONNECT")
            .map(|request| request.target)
            .collect()
    }

    /// Every request the proxy saw, with whether it was tunnelled.
    pub fn proxy_requests(&self) -> Vec<ProxyRequestSeen> {
        self.proxy.requests()
    }

    /// Registers a workload identity the way an AKS user does: tenant (if new), app
    /// `client_id`, and a federated credential for `system:serviceaccount:<ns>:<sa>` on this
    /// cluster's issuer with the token-exchange audience.
    pub fn add_workload_identity(
        &self,
        tenant_id: &str,
        client_id: &str,
        namespace: &str,
        service_account: &str,
    ) {
        self.entra.add_tenant(tenant_id);
        self.entra.add_app(tenant_id, client_id);
        self.entra.add_federated_credential(
            client_id,
            self.oidc.url(),
            &format!("system:serviceaccount:{namespace}:{service_account}"),
            TOKEN_EXCHANGE_AUDIENCE,
        );
    }

    /// An HTTP client that reaches the world like the provider does: through the proxy,
    /// trusting only the test CA.
    pub fn http_client(&self) -> reqwest::Client {
        issuer_client(&self.ca, &self.proxy_url())
    }
}

/// A client that goes through the world's proxy for every URL and trusts only its CA; it
/// never reads the process environment.
fn issuer_client(ca: &TestCa, proxy_url: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ca.client_config())
        .proxy(reqwest::Proxy::all(proxy_url).expect("valid proxy URL"))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the test world's HTTP client")
}
