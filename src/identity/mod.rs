//! The second step of a Mount: an Entra ID access token for the vault's scope.
//!
//! Workload identity exchanges the pod's service-account token; a service principal sends
//! its client secret; managed identity asks IMDS. Tokens are cached per identity (see
//! [`cache`]), so the driver's rotation Mounts, every minute or two per pod, cost no token
//! request at all until the token nears its expiry.

mod cache;
mod entra;
mod imds;

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::cloud::Cloud;
use crate::http::{GaveUp, RetryPolicy};
use crate::request::Identity;
use crate::secret::SecretString;

pub use cache::{CacheKey, TokenCache};
pub use entra::hint as aadsts_hint;

/// An access token and when to stop using it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The bearer token.
    pub value: SecretString,
    /// When it expires.
    pub expires_at: Instant,
    /// When to fetch a new one, before expiry.
    pub refresh_at: Instant,
    /// How long it lived when issued.
    pub lifetime: Duration,
}

impl AccessToken {
    /// A token that lives `lifetime` from `now`, refreshed after `refresh_in` when the issuer
    /// says so, else at half its life.
    pub fn new(
        value: SecretString,
        now: Instant,
        lifetime: Duration,
        refresh_in: Option<Duration>,
    ) -> Self {
        let refresh = refresh_in.filter(|r| *r < lifetime).unwrap_or(lifetime / 2);
        Self {
            value,
            expires_at: now + lifetime,
            refresh_at: now + refresh,
            lifetime,
        }
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// Entra ID answered with an error body.
    #[error(
        "Entra ID refused a token for client {client_id} in tenant {tenant}: {}{}",
        entra::describe(*code, description),
        correlation_id.as_ref().map(|c| format!(" (correlation id {c})")).unwrap_or_default()
    )]
    Entra {
        /// Tenant asked.
        tenant: String,
        /// Client id asked for.
        client_id: String,
        /// The AADSTS number, when the body has one.
        code: Option<u32>,
        /// `error_description` without its trace lines.
        description: String,
        /// `correlation_id`, for a support case.
        correlation_id: Option<String>,
    },
    /// IMDS answered with an error.
    #[error("IMDS refused a managed identity token{}: HTTP {status}: {message}",
        client_id.as_ref().map(|c| format!(" for client {c}")).unwrap_or_default())]
    Imds {
        /// The user-assigned identity asked for, if any.
        client_id: Option<String>,
        /// HTTP status.
        status: u16,
        /// IMDS's `error_description` or `error`.
        message: String,
    },
    /// The token endpoint could not be reached, or kept failing, until we gave up.
    #[error("{endpoint} did not answer with a token after {} attempt(s){}: {}",
        gave_up.attempts,
        if gave_up.deadline { " before the Mount's deadline" } else { "" },
        crate::error::last_failure(&gave_up.last))]
    Unreachable {
        /// Which service: "Entra ID (login.microsoftonline.com)" or "IMDS".
        endpoint: String,
        /// What happened.
        gave_up: GaveUp,
    },
    /// The answer was not a token response.
    #[error("{endpoint} answered HTTP {status} without a usable token")]
    BadResponse {
        /// Which service.
        endpoint: String,
        /// HTTP status.
        status: u16,
    },
}

impl IdentityError {
    /// Whether the request only ran out of its caller's time.
    pub fn is_deadline(&self) -> bool {
        matches!(self, Self::Unreachable { gave_up, .. } if gave_up.deadline)
    }
}

/// Obtains tokens for every identity mode, through the cache.
pub struct TokenProvider {
    http: reqwest::Client,
    imds_http: reqwest::Client,
    imds_endpoint: String,
    policy: RetryPolicy,
    cache: TokenCache,
}

impl TokenProvider {
    /// A provider using `http` for Entra ID and `imds_http` for `imds_endpoint`.
    pub fn new(
        http: reqwest::Client,
        imds_http: reqwest::Client,
        imds_endpoint: String,
        policy: RetryPolicy,
        cache: TokenCache,
    ) -> Self {
        let imds_endpoint = imds_endpoint.trim_end_matches('/').to_owned();
        Self {
            http,
            imds_http,
            imds_endpoint,
            policy,
            cache,
        }
    }

    /// A Key Vault token for `identity` in `cloud`, from the cache when it is still good.
    pub async fn keyvault_token(
        &self,
        identity: &Identity,
        cloud: &Cloud,
        deadline: Instant,
    ) -> Result<SecretString, IdentityError> {
        if matches!(
            identity,
            Identity::Workload {
                assertion_expired: true,
                ..
            }
        ) {
            // An expired assertion must not be answered from the cache: let Entra judge it.
            let result = self.fetch(identity, cloud, deadline).await;
            crate::metrics::token_request(identity, result.as_ref().map(|_| ()));
            return Ok(result?.value);
        }
        let key = self.key(identity, cloud);
        // Metrics: a lookup that made no request of its own was served by the cache.
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let fetch = |give_up_at| {
            fetched.store(true, std::sync::atomic::Ordering::Relaxed);
            async move {
                let result = self.fetch(identity, cloud, give_up_at).await;
                crate::metrics::token_request(identity, result.as_ref().map(|_| ()));
                result
            }
        };
        let token = self.cache.get_or_fetch(key, deadline, fetch).await;
        let fetched = fetched.load(std::sync::atomic::Ordering::Relaxed);
        if fetched || token.is_ok() {
            crate::metrics::token_cache_lookup(!fetched);
        }
        Ok(token?.value)
    }

    /// The cache key: everything that decides which identity a token proves.
    fn key(&self, identity: &Identity, cloud: &Cloud) -> CacheKey {
        let scope = cloud.keyvault_scope();
        match identity {
            Identity::Workload {
                tenant,
                client_id,
                issuer,
                subject,
                ..
            } => CacheKey::Workload {
                cloud: cloud.name.clone(),
                authority: cloud.authority.clone(),
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                scope,
                issuer: issuer.clone(),
                subject: subject.clone(),
            },
            Identity::ServicePrincipal {
                tenant,
                client_id,
                secret,
            } => CacheKey::ServicePrincipal {
                cloud: cloud.name.clone(),
                authority: cloud.authority.clone(),
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                scope,
                secret_digest: Sha256::digest(secret.expose().as_bytes()).into(),
            },
            Identity::Managed { client_id } => CacheKey::Managed {
                endpoint: self.imds_endpoint.clone(),
                client_id: client_id.clone(),
                resource: cloud.keyvault_resource.clone(),
            },
        }
    }

    async fn fetch(
        &self,
        identity: &Identity,
        cloud: &Cloud,
        deadline: Instant,
    ) -> Result<AccessToken, IdentityError> {
        match identity {
            Identity::Workload {
                tenant,
                client_id,
                assertion,
                ..
            } => {
                let grant = entra::Grant::Assertion(assertion);
                entra::token(
                    &self.http,
                    &self.policy,
                    cloud,
                    tenant,
                    client_id,
                    grant,
                    deadline,
                )
                .await
            }
            Identity::ServicePrincipal {
                tenant,
                client_id,
                secret,
            } => {
                let grant = entra::Grant::Secret(secret);
                entra::token(
                    &self.http,
                    &self.policy,
                    cloud,
                    tenant,
                    client_id,
                    grant,
                    deadline,
                )
                .await
            }
            Identity::Managed { client_id } => {
                let request = imds::Request {
                    endpoint: &self.imds_endpoint,
                    resource: &cloud.keyvault_resource,
                    client_id: client_id.as_deref(),
                };
                imds::token(&self.imds_http, &self.policy, request, deadline).await
            }
        }
    }
}
