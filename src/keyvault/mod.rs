//! The third step of a Mount: fetch objects from Key Vault's data plane.
//!
//! Every request carries the bearer token from the first byte: the scope is known from the
//! cloud, so the unauthenticated challenge round trip that SDK clients make is skipped.
//! Errors keep the vault, object and version they concern, and Key Vault's own code.
//!
//! Two limits protect Key Vault from a node's rotation storms: requests to one vault across
//! all Mounts are bounded (`--vault-concurrency`), and identical GETs in flight at the same
//! time — same URL, same token, so the same identity — are sent once and their answer shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::http::{self, GaveUp, RetryPolicy};
use crate::request::ObjectType;
use crate::secret::{SecretBytes, SecretString};

mod bundles;

use bundles::VersionPage;
pub use bundles::{CertificateBundle, KeyBundle, SecretBundle, VersionItem, version_of};

/// The data-plane API version sent with every request.
pub const API_VERSION: &str = "7.6";

/// Which object a request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Vault name.
    pub vault: String,
    /// Collection.
    pub kind: ObjectType,
    /// Object name.
    pub name: String,
    /// Version asked for; `None` for the latest.
    pub version: Option<String>,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} in vault {}", self.kind, self.name, self.vault)?;
        match &self.version {
            Some(version) => write!(f, " (version {version})"),
            None => write!(f, " (latest version)"),
        }
    }
}

/// Why Key Vault did not give us an object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyVaultError {
    /// 404: no such name or version.
    #[error("{object} was not found: {message}")]
    NotFound {
        /// The object.
        object: ObjectRef,
        /// Key Vault's message.
        message: String,
    },
    /// 403 SecretDisabled (or its key and certificate twins): that version is disabled.
    #[error("{object} is disabled: enable it in Key Vault or pin an enabled version")]
    Disabled {
        /// The object.
        object: ObjectRef,
    },
    /// 403: the identity has no role or access policy on the vault.
    #[error("access to {object} was denied ({code}): {message}")]
    Forbidden {
        /// The object.
        object: ObjectRef,
        /// Inner code, e.g. ForbiddenByRbac, AccessDenied, ForbiddenByFirewall.
        code: String,
        /// Key Vault's message, naming the caller, action and resource.
        message: String,
    },
    /// 401: the token was not accepted.
    #[error("Key Vault did not accept the token for {object} ({code}): {message}")]
    Unauthorized {
        /// The object.
        object: ObjectRef,
        /// Code, e.g. Unauthorized, AKV10022.
        code: String,
        /// Key Vault's message.
        message: String,
    },
    /// Throttling, outages or connection failures outlasted our retries or the deadline.
    #[error("Key Vault did not answer for {object} after {} attempt(s){}: {}",
        gave_up.attempts,
        if gave_up.deadline { " before the Mount's deadline" } else { "" },
        crate::error::last_failure(&gave_up.last))]
    Unavailable {
        /// The object.
        object: ObjectRef,
        /// What happened.
        gave_up: GaveUp,
    },
    /// Any other refusal, e.g. 400 BadParameter.
    #[error("Key Vault refused the request for {object}: HTTP {status} {code}: {message}")]
    Rejected {
        /// The object.
        object: ObjectRef,
        /// HTTP status.
        status: u16,
        /// Key Vault's code.
        code: String,
        /// Key Vault's message.
        message: String,
    },
    /// The answer was not what Key Vault sends.
    #[error("Key Vault's answer for {object} is malformed: {reason}")]
    Malformed {
        /// The object.
        object: ObjectRef,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    innererror: Option<Box<ErrorDetail>>,
}

/// Key Vault's data plane over the shared client. Cheap to clone.
#[derive(Clone)]
pub struct KeyVault {
    inner: Arc<Inner>,
}

/// A GET under way, shared by every caller that asks for the same thing meanwhile.
type Flight = Shared<BoxFuture<'static, Result<Arc<SecretBytes>, KeyVaultError>>>;

/// URL and a digest of the token: the same answer for the same identity.
type FlightKey = (String, [u8; 32]);

struct Inner {
    http: reqwest::Client,
    policy: RetryPolicy,
    per_vault: usize,
    vaults: Mutex<HashMap<String, Arc<VaultState>>>,
    flights: Mutex<HashMap<FlightKey, Flight>>,
}

/// The least time a shared GET is given, however short the deadline of the Mount that
/// started it: the provider's default Mount budget.
const FLIGHT_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// How long after an answer a vault's pooled connection is taken to be open: a little less
/// than the pool's idle timeout (`http::client`).
const WARM_FOR: std::time::Duration = std::time::Duration::from_secs(240);

/// Per-vault limits and connection state, shared by all Mounts.
struct VaultState {
    /// Requests at once to this vault.
    limit: Arc<Semaphore>,
    /// Held by the one request that opens a connection while none is known to be open.
    opener: tokio::sync::Mutex<()>,
    /// Until when a pooled connection is taken to be open.
    warm_until: Mutex<Option<Instant>>,
}

impl VaultState {
    fn is_warm(&self) -> bool {
        lock(&self.warm_until).is_some_and(|until| Instant::now() < until)
    }

    fn answered(&self) {
        *lock(&self.warm_until) = Some(Instant::now() + WARM_FOR);
    }
}

impl KeyVault {
    /// A client over `http`, sending at most `per_vault` requests at once to any one vault.
    pub fn new(http: reqwest::Client, policy: RetryPolicy, per_vault: usize) -> Self {
        let inner = Inner {
            http,
            policy,
            per_vault: per_vault.max(1),
            vaults: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `GET /secrets/{name}[/{version}]`.
    pub async fn secret(
        &self,
        vault_url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<SecretBundle, KeyVaultError> {
        let bytes = self
            .get(vault_url, "secrets", object, token, deadline)
            .await?;
        let bundle: SecretBundle = parse(object, &bytes, "a SecretBundle")?;
        if bundle.value.is_none() {
            return Err(KeyVaultError::Malformed {
                object: object.clone(),
                reason: "no value".into(),
            });
        }
        Ok(bundle)
    }

    /// `GET /keys/{name}[/{version}]`.
    pub async fn key(
        &self,
        vault_url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<KeyBundle, KeyVaultError> {
        let bytes = self.get(vault_url, "keys", object, token, deadline).await?;
        parse(object, &bytes, "a KeyBundle")
    }

    /// `GET /certificates/{name}[/{version}]`.
    pub async fn certificate(
        &self,
        vault_url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<CertificateBundle, KeyVaultError> {
        let bytes = self
            .get(vault_url, "certificates", object, token, deadline)
            .await?;
        let bundle: CertificateBundle = parse(object, &bytes, "a CertificateBundle")?;
        if bundle.cer.is_none() {
            return Err(KeyVaultError::Malformed {
                object: object.clone(),
                reason: "no cer".into(),
            });
        }
        Ok(bundle)
    }

    /// `GET /{collection}/{name}/versions`, every page: the enabled versions, newest first.
    ///
    /// `nextLink` is followed verbatim, but only to the vault's own host: the bearer token
    /// goes nowhere else.
    pub async fn versions(
        &self,
        vault_url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Vec<VersionItem>, KeyVaultError> {
        let mut url = format!(
            "{vault_url}{}/{}/versions?api-version={API_VERSION}&maxresults=25",
            collection(object.kind),
            object.name
        );
        let mut items = Vec::new();
        for _page in 0..MAX_PAGES {
            let bytes = self.send(&url, object, token, deadline).await?;
            let page: VersionPage = parse(object, &bytes, "a page of versions")?;
            items.extend(
                page.value
                    .into_iter()
                    .filter(|item| item.attributes.enabled),
            );
            match page.next_link.filter(|link| !link.is_empty()) {
                Some(next) if same_host(vault_url, &next) => url = next,
                Some(_) => {
                    return Err(KeyVaultError::Malformed {
                        object: object.clone(),
                        reason: "nextLink points to another host".into(),
                    });
                }
                None => {
                    // Newest first; the list order is not defined, and equal creation times
                    // fall back to the id so the order is at least stable.
                    items.sort_by(|a, b| {
                        b.attributes
                            .created
                            .cmp(&a.attributes.created)
                            .then_with(|| b.id.cmp(&a.id))
                    });
                    return Ok(items);
                }
            }
        }
        Err(KeyVaultError::Malformed {
            object: object.clone(),
            reason: format!("more than {MAX_PAGES} pages of versions"),
        })
    }

    /// One GET, retried; a success body is returned whole, an error becomes a
    /// [`KeyVaultError`].
    async fn get(
        &self,
        vault_url: &str,
        collection: &'static str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Arc<SecretBytes>, KeyVaultError> {
        let version = object.version.as_deref().unwrap_or_default();
        let url = format!(
            "{vault_url}{collection}/{}/{version}?api-version={API_VERSION}",
            object.name
        );
        self.send(&url, object, token, deadline).await
    }

    /// GETs `url` with the token, retried; an error answer becomes a [`KeyVaultError`]. A GET
    /// identical to one already under way waits for that one instead.
    async fn send(
        &self,
        url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<Arc<SecretBytes>, KeyVaultError> {
        let key: FlightKey = (
            url.to_owned(),
            Sha256::digest(token.expose().as_bytes()).into(),
        );
        let flight = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let flight =
                        self.start_flight(key.clone(), object.clone(), token.clone(), deadline);
                    flights.insert(key, flight.clone());
                    flight
                }
            }
        };
        // A Mount that joined another's request still answers by its own deadline.
        match tokio::time::timeout_at(deadline, flight).await {
            Ok(result) => result,
            Err(_) => Err(KeyVaultError::Unavailable {
                object: object.clone(),
                gave_up: GaveUp {
                    attempts: 0,
                    deadline: true,
                    last: http::LastFailure::NotAttempted,
                },
            }),
        }
    }

    /// Runs one GET as its own task, so that it finishes (and leaves the table) even when the
    /// Mount that started it is cancelled while others still wait for it. The GET gets at
    /// least [`FLIGHT_BUDGET`], whatever the first caller's deadline: a Mount that joins it
    /// later may have more time, and each caller stops waiting at its own deadline.
    fn start_flight(
        &self,
        key: FlightKey,
        object: ObjectRef,
        token: SecretString,
        deadline: Instant,
    ) -> Flight {
        let deadline = deadline.max(Instant::now() + FLIGHT_BUDGET);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = this
                .get_once(&key.0, &object, &token, deadline)
                .await
                .map(Arc::new);
            lock(&this.inner.flights).remove(&key);
            result
        });
        async move {
            task.await.unwrap_or_else(|join| {
                Err(KeyVaultError::Malformed {
                    object: ObjectRef {
                        vault: String::new(),
                        kind: ObjectType::Secret,
                        name: String::new(),
                        version: None,
                    },
                    reason: format!("the request task failed: {join}"),
                })
            })
        }
        .boxed()
        .shared()
    }

    /// The GET itself, within the vault's concurrency limit.
    async fn get_once(
        &self,
        url: &str,
        object: &ObjectRef,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<SecretBytes, KeyVaultError> {
        let vault = {
            let mut vaults = lock(&self.inner.vaults);
            let limit = self.inner.per_vault;
            let state = vaults.entry(object.vault.clone()).or_insert_with(|| {
                Arc::new(VaultState {
                    limit: Arc::new(Semaphore::new(limit)),
                    opener: tokio::sync::Mutex::new(()),
                    warm_until: Mutex::new(None),
                })
            });
            state.clone()
        };
        let _permit = vault.limit.clone().acquire_owned().await;
        // While no connection to the vault is known to be open, requests go one at a time:
        // the first opens it (HTTP/2 where the vault offers it) and the rest then share it,
        // instead of a cold Mount dialling one TCP + TLS connection per object.
        let _opening = match vault.is_warm() {
            true => None,
            false => Some(vault.opener.lock().await).filter(|_| !vault.is_warm()),
        };
        let make = || self.inner.http.get(url).bearer_auth(token.expose());

        let observe =
            |attempt, status| crate::metrics::keyvault_request(object.kind, attempt, status);
        let response = http::send_observed(&self.inner.policy, deadline, make, observe)
            .await
            .map_err(|gave_up| KeyVaultError::Unavailable {
                object: object.clone(),
                gave_up,
            })?;
        vault.answered();
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| KeyVaultError::Unavailable {
                object: object.clone(),
                gave_up: GaveUp {
                    attempts: 1,
                    deadline: false,
                    last: http::LastFailure::Transport(http::describe(&e)),
                },
            })?;
        if (200..300).contains(&status) {
            return Ok(SecretBytes::new(body.to_vec()));
        }
        Err(error(object, status, &body))
    }
}

/// Locks a table, recovering it from a panic elsewhere: its entries stay valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most pages a versions list may have: 25 versions each, far beyond any real history.
const MAX_PAGES: usize = 200;

fn collection(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::Secret => "secrets",
        ObjectType::Key => "keys",
        ObjectType::Cert => "certificates",
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    object: &ObjectRef,
    bytes: &SecretBytes,
    what: &str,
) -> Result<T, KeyVaultError> {
    serde_json::from_slice(bytes.expose()).map_err(|e| KeyVaultError::Malformed {
        object: object.clone(),
        reason: format!("not {what}: {e}"),
    })
}

/// Whether `link` is on the vault's own scheme, host and port (443 written or not).
fn same_host(vault_url: &str, link: &str) -> bool {
    match (reqwest::Url::parse(vault_url), reqwest::Url::parse(link)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// Turns an error answer into a typed error. An unrouted path answers with HTML, so the body
/// is not assumed to be JSON.
fn error(object: &ObjectRef, status: u16, body: &[u8]) -> KeyVaultError {
    let (code, inner, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            let inner = error.innererror.map(|i| i.code).unwrap_or_default();
            (error.code, inner, error.message)
        }
        Err(_) => (
            String::new(),
            String::new(),
            format!("HTTP {status} without a Key Vault error body"),
        ),
    };
    let object = object.clone();
    match status {
        404 => KeyVaultError::NotFound { object, message },
        403 if inner.ends_with("Disabled") => KeyVaultError::Disabled { object },
        403 => {
            let code = if inner.is_empty() { code } else { inner };
            KeyVaultError::Forbidden {
                object,
                code,
                message,
            }
        }
        401 => KeyVaultError::Unauthorized {
            object,
            code,
            message,
        },
        _ => KeyVaultError::Rejected {
            object,
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> ObjectRef {
        ObjectRef {
            vault: "kv".into(),
            kind: ObjectType::Secret,
            name: "db".into(),
            version: None,
        }
    }

    #[test]
    fn error_bodies_become_typed_errors() {
        let disabled = br#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        assert!(matches!(
            error(&object(), 403, disabled),
            KeyVaultError::Disabled { .. }
        ));

        let rbac = br#"{"error":{"code":"Forbidden","message":"Caller is not authorized","innererror":{"code":"ForbiddenByRbac"}}}"#;
        let KeyVaultError::Forbidden { code, .. } = error(&object(), 403, rbac) else {
            panic!()
        };
        assert_eq!(code, "ForbiddenByRbac");

        let html = b"<html><body>404 Not Found</body></html>";
        let message = error(&object(), 404, html).to_string();
        assert_eq!(
            message,
            "secret \"db\" in vault kv (latest version) was not found: HTTP 404 without a Key Vault error body"
        );
    }

    #[test]
    fn next_links_stay_on_the_vault() {
        let vault = "https://kv.vault.azure.net/";
        assert!(same_host(
            vault,
            "https://kv.vault.azure.net:443/secrets/a/versions?$skiptoken=x"
        ));
        assert!(!same_host(vault, "https://evil.example/secrets/a/versions"));
        assert!(!same_host(
            vault,
            "http://kv.vault.azure.net/secrets/a/versions"
        ));
    }

    #[test]
    fn version_is_the_last_id_segment() {
        let bundle: SecretBundle = serde_json::from_str(
            r#"{"value":"v","id":"https://kv.vault.azure.net/secrets/db/4387e9f3d6e14c459867679a90fd0f79","attributes":{"enabled":true}}"#,
        )
        .unwrap();
        assert_eq!(bundle.version(), "4387e9f3d6e14c459867679a90fd0f79");
    }
}
