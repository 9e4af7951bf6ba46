//! The token cache: one Entra ID request per identity per token lifetime, not per Mount.
//!
//! An Entra token proves an identity, and which pods may obtain it is decided by the
//! federated credential's subject. So the key holds everything that decides the identity —
//! cloud authority, tenant, client id, scope, and for workload identity the assertion's
//! issuer and subject — and two service accounts never share a token even when they share a
//! client id. Concurrent Mounts that need the same token wait for one request; a failed
//! refresh leaves a still-valid token in place.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{AccessToken, IdentityError};

/// Everything that decides which identity a token proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// Workload identity: one entry per service account (issuer + subject).
    Workload {
        /// Entra authority host.
        authority: String,
        /// Tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// Scope.
        scope: String,
        /// The assertion's `iss`.
        issuer: String,
        /// The assertion's `sub`.
        subject: String,
    },
    /// Service principal: one entry per client secret (by digest).
    ServicePrincipal {
        /// Entra authority host.
        authority: String,
        /// Tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// Scope.
        scope: String,
        /// SHA-256 of the client secret, so a rotated secret is a new identity.
        secret_digest: [u8; 32],
    },
    /// Managed identity.
    Managed {
        /// IMDS base URL.
        endpoint: String,
        /// User-assigned client id, if any.
        client_id: Option<String>,
        /// Resource.
        resource: String,
    },
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// A bounded map from identity to its current token.
pub struct TokenCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
    capacity: usize,
    min_margin: Duration,
}

impl TokenCache {
    /// A cache of at most `capacity` identities. A token is never handed out with less than
    /// `min_margin` (or a quarter of its life, if shorter) left.
    pub fn new(capacity: usize, min_margin: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            min_margin,
        }
    }

    /// The token for `key`: the cached one until its refresh time, else a new one from
    /// `fetch`. When the refresh fails, a cached token that is still safe to use is returned.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> Result<AccessToken, IdentityError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken, IdentityError>>,
    {
        let slot = self.slot(key);
        // Holding the slot's lock through the request is the single flight: others wait
        // here, then find the fresh token.
        let mut cached = slot.lock().await;
        let now = Instant::now();
        if let Some(token) = cached.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.clone());
        }

        match fetch().await {
            Ok(token) => {
                *cached = Some(token.clone());
                Ok(token)
            }
            Err(error) => match cached
                .as_ref()
                .filter(|t| Instant::now() < self.safe_until(t))
            {
                Some(token) => {
                    tracing::warn!(error = %error, "token refresh failed; using the cached token until it nears expiry");
                    Ok(token.clone())
                }
                None => Err(error),
            },
        }
    }

    /// The last moment a token may be handed out.
    fn safe_until(&self, token: &AccessToken) -> Instant {
        token.expires_at - self.min_margin.min(token.lifetime / 4)
    }

    fn slot(&self, key: CacheKey) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !slots.contains_key(&key) && slots.len() >= self.capacity {
            self.evict(&mut slots);
        }
        slots.entry(key).or_default().clone()
    }

    /// Makes room: drops expired and empty entries, else the one expiring soonest.
    fn evict(&self, slots: &mut HashMap<CacheKey, Slot>) {
        let now = Instant::now();
        slots.retain(|_, slot| match slot.try_lock() {
            Ok(token) => token.as_ref().is_some_and(|t| t.expires_at > now),
            Err(_) => true, // in use: a request is under way
        });
        if slots.len() < self.capacity {
            return;
        }
        let soonest = slots
            .iter()
            .filter_map(|(key, slot)| {
                let token = slot.try_lock().ok()?;
                Some((key.clone(), token.as_ref()?.expires_at))
            })
            .min_by_key(|(_, expires)| *expires)
            .map(|(key, _)| key);
        if let Some(key) = soonest {
            slots.remove(&key);
        }
    }

    /// Number of identities held.
    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether no identity is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
