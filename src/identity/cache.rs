//! The token cache: one Entra ID request per identity per token lifetime, not per Mount.
//!
//! An Entra token proves an identity, and which pods may obtain it is decided by the
//! federated credential's subject. So the key holds everything that decides the identity —
//! cloud, authority, tenant, client id, scope, and for workload identity the assertion's
//! issuer and subject (for a service principal, a digest of its secret) — and two service
//! accounts never share a token even when they share a client id.
//!
//! The issuer and subject are read from the assertion without checking its signature: the
//! assertion comes from kubelet, which overwrites any value a pod's own volume attributes put
//! under that key whenever the CSIDriver has `tokenRequests` — and workload identity cannot
//! work, so nothing is cached for it, without them. The request parser also requires the
//! subject to be the pod's own service account, so a token can only ever stand for the pod
//! it came with. Known shortcoming: verifying the signature against the cluster issuer's
//! JWKS (fetched once and cached) would not depend on kubelet at all.
//!
//! A token is handed out until its refresh time (`refresh_in`, else half its life), and never
//! with less than a safety margin left. Concurrent Mounts that need a new token wait for one
//! request (single flight). Past the refresh time, while the token is still safe, one Mount
//! refreshes it and the others keep using it; if the refresh fails, the token stays in use
//! until its margin, and no new attempt is made for [`RETRY_AFTER_FAILURE`]. A failure is
//! shared only with the callers that waited for that request: the next Mount tries again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{AccessToken, IdentityError};
use crate::http::{GaveUp, LastFailure};

/// How long a refresh may take while a still-safe token is at hand: the Mount that triggers
/// it must keep enough of its own deadline to fetch its objects with the old token.
pub const REFRESH_BUDGET: Duration = Duration::from_secs(10);

/// After a failed refresh, the still-safe token is used without a new attempt for this long,
/// so an Entra outage costs one attempt per identity per interval, not one per Mount.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Everything that decides which identity a token proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    /// Workload identity: one entry per service account (issuer + subject).
    Workload {
        /// Cloud name.
        cloud: String,
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
        /// Cloud name.
        cloud: String,
        /// Entra authority host.
        authority: String,
        /// Tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// Scope.
        scope: String,
        /// SHA-256 of the client secret: a wrong or rotated secret is another entry, so it
        /// is checked by Entra instead of being served the right secret's token.
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

/// One identity's entry.
#[derive(Default)]
struct Slot {
    /// Held while a token request is under way: the single flight.
    flight: tokio::sync::Mutex<()>,
    /// The token and the outcome of the last request; only ever held briefly.
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    token: Option<AccessToken>,
    /// Counts finished requests, so a caller that waited can tell that one ran.
    requests: u64,
    /// The last request's failure, for the callers that waited for it.
    failure: Option<IdentityError>,
    /// While the token is safe, no refresh is attempted before this.
    retry_at: Option<Instant>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bounded map from identity to its current token.
pub struct TokenCache {
    slots: Mutex<HashMap<CacheKey, Arc<Slot>>>,
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

    /// The token for `key`: the cached one while it is fresh, else a new one from `fetch`,
    /// which gets the time by which it must give up. Gives up itself at `deadline`.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: CacheKey,
        deadline: Instant,
        fetch: F,
    ) -> Result<AccessToken, IdentityError>
    where
        F: FnOnce(Instant) -> Fut,
        Fut: Future<Output = Result<AccessToken, IdentityError>>,
    {
        let slot = self.slot(key);
        let requests_before = {
            let state = slot.state();
            if let Some(token) = self.servable(&state, Instant::now()) {
                return Ok(token);
            }
            state.requests
        };

        // Become the one request, or wait for the one under way — unless a safe token is at
        // hand, which serves this Mount while another refreshes it.
        let _flight = match slot.flight.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(token) = self.safe_token(&slot.state(), Instant::now()) {
                    return Ok(token);
                }
                tokio::time::timeout_at(deadline, slot.flight.lock())
                    .await
                    .map_err(|_| gave_up_waiting())?
            }
        };

        let fallback = {
            let state = slot.state();
            let now = Instant::now();
            if let Some(token) = self.servable(&state, now) {
                return Ok(token);
            }
            // The request this Mount waited for failed: share its answer, unless it only ran
            // out of its caller's time, which says nothing about this Mount's chances.
            if state.requests != requests_before
                && let Some(error) = &state.failure
                && !error.is_deadline()
            {
                return Err(error.clone());
            }
            self.safe_token(&state, now)
        };

        let budget = match fallback {
            Some(_) => deadline.min(Instant::now() + REFRESH_BUDGET),
            None => deadline,
        };
        let result = fetch(budget).await;

        let mut state = slot.state();
        state.requests += 1;
        match result {
            Ok(token) => {
                state.token = Some(token.clone());
                state.failure = None;
                state.retry_at = None;
                Ok(token)
            }
            Err(error) => {
                state.failure = Some(error.clone());
                match self.safe_token(&state, Instant::now()) {
                    Some(token) => {
                        state.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                        tracing::warn!(
                            error = %error,
                            "token refresh failed; using the cached token until it nears expiry"
                        );
                        Ok(token)
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The cached token if it may be used without a request: before its refresh time, or
    /// while it is safe and a failed refresh is recent.
    fn servable(&self, state: &SlotState, now: Instant) -> Option<AccessToken> {
        let token = self.safe_token(state, now)?;
        let refresh_at = token.refresh_at.min(self.safe_until(&token));
        let backing_off = state.retry_at.is_some_and(|at| now < at);
        (now < refresh_at || backing_off).then_some(token)
    }

    /// The cached token if it has more than the safety margin left.
    fn safe_token(&self, state: &SlotState, now: Instant) -> Option<AccessToken> {
        let token = state.token.as_ref()?;
        (now < self.safe_until(token)).then(|| token.clone())
    }

    /// The last moment a token may be handed out.
    fn safe_until(&self, token: &AccessToken) -> Instant {
        token.expires_at - self.min_margin.min(token.lifetime / 4)
    }

    fn slot(&self, key: CacheKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(&key) && slots.len() >= self.capacity {
            Self::evict(&mut slots, self.capacity);
        }
        slots.entry(key).or_default().clone()
    }

    /// Makes room: drops entries without a live token that no caller holds, else the one
    /// expiring soonest.
    fn evict(slots: &mut HashMap<CacheKey, Arc<Slot>>, capacity: usize) {
        let now = Instant::now();
        let expiry = |slot: &Slot| slot.state().token.as_ref().map(|t| t.expires_at);
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || expiry(slot).is_some_and(|at| at > now)
        });
        if slots.len() < capacity {
            return;
        }
        let soonest = slots
            .iter()
            .min_by_key(|(_, slot)| expiry(slot))
            .map(|(key, _)| key.clone());
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

/// The Mount's deadline came while it waited for another Mount's token request.
fn gave_up_waiting() -> IdentityError {
    IdentityError::Unreachable {
        endpoint: "the token request shared with a concurrent Mount".into(),
        gave_up: GaveUp {
            attempts: 0,
            deadline: true,
            last: LastFailure::NotAttempted,
        },
    }
}

#[cfg(test)]
mod tests;
