//! The Entra ID double: tenants, app registrations with federated credentials and client
//! secrets, and the v2.0 token endpoint that exchanges a service-account token (or a secret)
//! for a Key Vault access token — checked step by step as Entra checks it.
//!
//! It serves every cloud's authority host (see [`Cloud`]) from one directory of tenants. To
//! verify an assertion it fetches the issuer's discovery document and JWKS over HTTPS through
//! the world's CONNECT proxy, like Entra fetching from the internet, so a test can break that
//! path too. Access tokens are RS256 JWTs signed with the double's own key; the Key Vault double
//! verifies them with [`Entra::verify_access_token`].

mod discovery;
mod token;

use crate::cloud::Cloud;
use crate::fault::{Fault, FaultQueue};
use crate::jwt::{Jwt, SigningKey};
use crate::wire::{self, Incoming, Reset, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use token::{GrantSeen, TokenOutcome, TokenRequestSeen};

/// An identity may have at most this many federated credentials, as in Entra.
const MAX_FEDERATED_CREDENTIALS: usize = 20;

/// The Entra ID double. Cheap to clone: clones share one directory.
#[derive(Clone, Debug)]
pub struct Entra {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: SigningKey,
    http: reqwest::Client,
    faults: FaultQueue,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tenants: BTreeSet<String>,
    /// Apps by lower-case client id.
    apps: BTreeMap<String, App>,
    requests: Vec<TokenRequestSeen>,
    /// Every access token signed, so tests can look for them where they must not be.
    issued: Vec<String>,
    latency: Duration,
    token_lifetime: u64,
    refresh_in: Option<u64>,
}

/// An app registration or user-assigned identity.
#[derive(Debug, Clone)]
struct App {
    tenant: String,
    client_id: String,
    object_id: String,
    federated: Vec<FederatedCredential>,
    secrets: Vec<String>,
}

/// A federated identity credential: which external tokens may act as the app.
#[derive(Debug, Clone)]
struct FederatedCredential {
    issuer: String,
    subject: String,
    audience: String,
    /// False while a new credential propagates: Entra does not match it yet (AADSTS70021).
    propagated: bool,
}

impl Entra {
    /// An empty directory. `http` fetches issuers' OIDC documents; the world builds it to go
    /// through its proxy and trust only its CA.
    pub(crate) fn new(http: reqwest::Client) -> Entra {
        Entra {
            inner: Arc::new(Inner {
                key: SigningKey::generate(wire::version_id()),
                http,
                faults: FaultQueue::default(),
                state: Mutex::new(State {
                    tenants: BTreeSet::new(),
                    apps: BTreeMap::new(),
                    requests: Vec::new(),
                    issued: Vec::new(),
                    latency: Duration::ZERO,
                    token_lifetime: 3599,
                    refresh_in: None,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().expect("entra state lock")
    }

    /// Creates tenant `tenant_id` (a GUID, compared case-insensitively).
    pub fn add_tenant(&self, tenant_id: &str) {
        self.state().tenants.insert(tenant_id.to_ascii_lowercase());
    }

    /// Registers app (or user-assigned identity) `client_id` in `tenant_id`.
    ///
    /// # Panics
    /// If the tenant does not exist or the client id is taken.
    pub fn add_app(&self, tenant_id: &str, client_id: &str) {
        let mut state = self.state();
        let tenant = tenant_id.to_ascii_lowercase();
        assert!(state.tenants.contains(&tenant), "no tenant {tenant_id}");
        let key = client_id.to_ascii_lowercase();
        assert!(!state.apps.contains_key(&key), "app {client_id} exists");
        let app = App {
            tenant,
            client_id: client_id.to_owned(),
            object_id: wire::guid(),
            federated: Vec::new(),
            secrets: Vec::new(),
        };
        state.apps.insert(key, app);
    }

    /// Adds a federated credential to app `client_id`: tokens whose `iss` and `sub` equal these
    /// strings exactly and whose `aud` contains `audience` may act as the app.
    ///
    /// # Panics
    /// If the app does not exist or already has 20 federated credentials.
    pub fn add_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) {
        self.push_federated_credential(client_id, issuer, subject, audience, true);
    }

    /// Adds a federated credential that is still propagating, as one is for a few minutes after
    /// it is created: an assertion that only it would match is refused with the generic
    /// AADSTS70021 until [`Entra::finish_propagation`].
    pub fn add_propagating_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) {
        self.push_federated_credential(client_id, issuer, subject, audience, false);
    }

    /// Makes every federated credential of app `client_id` effective.
    pub fn finish_propagation(&self, client_id: &str) {
        self.with_app(client_id, |app| {
            for credential in &mut app.federated {
                credential.propagated = true;
            }
        });
    }

    fn push_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
        propagated: bool,
    ) {
        self.with_app(client_id, |app| {
            assert!(
                app.federated.len() < MAX_FEDERATED_CREDENTIALS,
                "an identity has at most {MAX_FEDERATED_CREDENTIALS} federated credentials"
            );
            app.federated.push(FederatedCredential {
                issuer: issuer.to_owned(),
                subject: subject.to_owned(),
                audience: audience.to_owned(),
                propagated,
            });
        });
    }

    /// Removes every federated credential of app `client_id`.
    pub fn clear_federated_credentials(&self, client_id: &str) {
        self.with_app(client_id, |app| app.federated.clear());
    }

    /// Adds a client secret to app `client_id`.
    pub fn add_client_secret(&self, client_id: &str, secret: &str) {
        self.with_app(client_id, |app| app.secrets.push(secret.to_owned()));
    }

    /// The object id of app `client_id`'s service principal (the `oid` of its tokens).
    pub fn object_id(&self, client_id: &str) -> Option<String> {
        let state = self.state();
        let app = state.apps.get(&client_id.to_ascii_lowercase())?;
        Some(app.object_id.clone())
    }

    fn with_app<T>(&self, client_id: &str, change: impl FnOnce(&mut App) -> T) -> T {
        let mut state = self.state();
        let app = state
            .apps
            .get_mut(&client_id.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no app {client_id}"));
        change(app)
    }

    /// Every token request seen so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequestSeen> {
        self.state().requests.clone()
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Sets `expires_in` (and the token's lifetime) of tokens issued from now on; default 3599.
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state().token_lifetime = seconds;
    }

    /// Sets `refresh_in` of token responses from now on (absent by default, as usual).
    pub fn set_refresh_in(&self, seconds: Option<u64>) {
        self.state().refresh_in = seconds;
    }

    /// Makes the next `count` requests to Entra fail with `fault`.
    pub fn inject_fault(&self, fault: Fault, count: usize) {
        self.inner.faults.push(fault, count);
    }

    /// Every access token this double has signed, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// The public keys that sign access tokens, as a JWK Set.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.inner.key.jwk()]})
    }

    /// An access token as the token endpoint would issue it to `client_id` of `tenant_id` for
    /// `resource`, without a request; tests use it to call Key Vault directly.
    pub fn mint_access_token(
        &self,
        cloud: Cloud,
        tenant_id: &str,
        client_id: &str,
        resource: &str,
    ) -> String {
        let lifetime = self.state().token_lifetime;
        self.mint_managed_identity_token(cloud, tenant_id, client_id, resource, lifetime)
    }

    /// An access token for managed identity `client_id` of `tenant_id`, living `lifetime`
    /// seconds, as the IMDS double hands it out. The identity is registered if it is new.
    pub(crate) fn mint_managed_identity_token(
        &self,
        cloud: Cloud,
        tenant_id: &str,
        client_id: &str,
        resource: &str,
        lifetime: u64,
    ) -> String {
        let object_id = self
            .object_id(client_id)
            .unwrap_or_else(|| wire::stable_guid(client_id));
        self.sign_access_token(&token::AccessTokenFor {
            cloud,
            tenant: tenant_id,
            client_id,
            object_id: &object_id,
            resource,
            lifetime,
            by_assertion: true,
        })
    }

    /// Registers `client_id` in `tenant_id` (creating the tenant) unless it exists.
    pub(crate) fn ensure_app(&self, tenant_id: &str, client_id: &str) {
        self.add_tenant(tenant_id);
        if self.object_id(client_id).is_none() {
            self.add_app(tenant_id, client_id);
        }
    }

    /// Decodes `token` and checks that this double signed it. Claims are left to the caller.
    pub fn verify_access_token(&self, token: &str) -> Option<Jwt> {
        let jwt = Jwt::decode(token).ok()?;
        jwt.verify(self.inner.key.public_key()).then_some(jwt)
    }

    /// Answers a request that the front routed to `cloud`'s authority host.
    pub(crate) async fn handle(&self, cloud: Cloud, request: Incoming) -> Result<Response, Reset> {
        let latency = self.state().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        if let Some(fault) = self.inner.faults.take() {
            if let [tenant, "oauth2", "v2.0", "token"] = segments.as_slice() {
                let mut seen = token::observe(cloud, tenant, &request);
                seen.outcome = TokenOutcome::Faulted;
                self.state().requests.push(seen);
            }
            return token::fault_response(cloud, fault);
        }

        match segments.as_slice() {
            [tenant, "oauth2", "v2.0", "token"] => {
                Ok(self.token_endpoint(cloud, tenant, &request).await)
            }
            [tenant, "v2.0", ".well-known", "openid-configuration"] => {
                Ok(self.tenant_discovery(cloud, tenant, "v2.0"))
            }
            [tenant, ".well-known", "openid-configuration"] => {
                Ok(self.tenant_discovery(cloud, tenant, "v1"))
            }
            [_, "discovery", "v2.0", "keys"] | [_, "discovery", "keys"] => {
                Ok(wire::json(http::StatusCode::OK, &self.jwks()))
            }
            [_, "discovery", "instance"] => Ok(discovery::instance_metadata(cloud, &request)),
            _ => Ok(wire::html_not_found()),
        }
    }

    fn has_tenant(&self, tenant: &str) -> bool {
        self.state().tenants.contains(&tenant.to_ascii_lowercase())
    }
}
