//! The Key Vault double: vaults in any cloud, each with secrets, keys and certificates in
//! versions, an RBAC table of who may read it, and the data-plane REST API that serves them
//! with Key Vault's bodies, errors, challenge and paging.
//!
//! Tests seed it through this module's methods and read back what it saw with
//! [`KeyVault::requests`]. Bearer tokens are checked against the Entra double's key and the
//! vault's cloud and tenant, as the service does. The request side lives in `serve`, the JSON
//! shapes in `bodies`, and certificate parsing in `der`.

mod bodies;
mod der;
mod serve;
mod throttle;

use crate::cloud::Cloud;
use crate::entra::Entra;
use crate::fault::{Fault, FaultQueue};
use crate::wire;
use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use serve::KvRequestSeen;
pub use throttle::Throttle;

/// The most items Key Vault returns in one page.
pub const MAX_PAGE_SIZE: usize = 25;

/// The Key Vault double. Cheap to clone: clones share the same vaults.
#[derive(Clone, Debug)]
pub struct KeyVault {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    entra: Entra,
    faults: FaultQueue,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Vaults by lower-case name.
    vaults: BTreeMap<String, Vault>,
    requests: Vec<KvRequestSeen>,
    counts: KvCounts,
    latency: Duration,
    page_size: usize,
    empty_pages: bool,
}

#[derive(Debug)]
struct Vault {
    name: String,
    tenant: String,
    cloud: Cloud,
    /// Lower-case client ids allowed to read this vault's data.
    readers: BTreeSet<String>,
    /// Objects by kind and lower-case name.
    objects: BTreeMap<(Kind, String), Object>,
    /// The request limit, when one is set.
    throttle: Option<throttle::Bucket>,
}

/// Running totals of the requests the double answered, cheap to read while a load runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvCounts {
    /// Every request that reached a vault host, whatever the answer.
    pub requests: u64,
    /// Those answered 429, by a [`Throttle`] or an injected [`Fault::Throttle`].
    pub throttled: u64,
}

/// The three collections of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Secret,
    Key,
    Certificate,
}

#[derive(Debug)]
struct Object {
    /// The name as first written (Key Vault names are case-insensitive).
    name: String,
    versions: Vec<Version>,
}

#[derive(Debug, Clone)]
struct Version {
    id: String,
    created: i64,
    updated: i64,
    enabled: bool,
    not_before: Option<i64>,
    expires: Option<i64>,
    tags: BTreeMap<String, String>,
    managed: bool,
    content: Content,
}

#[derive(Debug, Clone)]
enum Content {
    Secret {
        value: String,
        content_type: Option<String>,
        /// The key of the certificate this secret backs.
        kid: Option<String>,
    },
    Key {
        /// The public JSON Web Key, without `kid`.
        jwk: serde_json::Value,
    },
    Certificate {
        cer: Vec<u8>,
        content_type: String,
        /// `key_props` of the policy, from the certificate's public key.
        key_props: serde_json::Value,
    },
}

/// A secret version to write with [`KeyVault::set_secret_with`]; unset fields are omitted
/// from its bundle, `created` defaults to now (and always after the previous version).
#[derive(Debug, Clone, Default)]
pub struct NewSecret {
    /// The value.
    pub value: String,
    /// `contentType`.
    pub content_type: Option<String>,
    /// `attributes.created`, Unix seconds.
    pub created: Option<i64>,
    /// `attributes.nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `attributes.exp`, Unix seconds.
    pub expires: Option<i64>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
}

impl KeyVault {
    /// An empty service that trusts tokens signed by `entra`.
    pub(crate) fn new(entra: Entra) -> KeyVault {
        KeyVault {
            inner: Arc::new(Inner {
                entra,
                faults: FaultQueue::default(),
                state: Mutex::new(State {
                    vaults: BTreeMap::new(),
                    requests: Vec::new(),
                    counts: KvCounts::default(),
                    latency: Duration::ZERO,
                    page_size: MAX_PAGE_SIZE,
                    empty_pages: false,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().expect("key vault state lock")
    }

    /// Creates vault `name` in the public cloud, owned by `tenant_id`.
    pub fn create_vault(&self, name: &str, tenant_id: &str) {
        self.create_vault_in(Cloud::Public, name, tenant_id);
    }

    /// Creates vault `name` in `cloud`, owned by `tenant_id`.
    ///
    /// # Panics
    /// If a vault of that name exists.
    pub fn create_vault_in(&self, cloud: Cloud, name: &str, tenant_id: &str) {
        let mut state = self.state();
        let key = name.to_ascii_lowercase();
        assert!(!state.vaults.contains_key(&key), "vault {name} exists");
        let vault = Vault {
            name: name.to_owned(),
            tenant: tenant_id.to_owned(),
            cloud,
            readers: BTreeSet::new(),
            objects: BTreeMap::new(),
            throttle: None,
        };
        state.vaults.insert(key, vault);
    }

    /// `https://<vault>.<suffix>/` of an existing vault.
    pub fn vault_url(&self, vault: &str) -> String {
        self.with_vault(vault, |vault| vault.cloud.vault_url(&vault.name))
    }

    /// Lets identity `client_id` read vault `vault`'s secrets, keys and certificates.
    pub fn grant(&self, vault: &str, client_id: &str) {
        self.with_vault(vault, |vault| {
            vault.readers.insert(client_id.to_ascii_lowercase());
        });
    }

    /// Takes back what [`KeyVault::grant`] gave.
    pub fn revoke(&self, vault: &str, client_id: &str) {
        self.with_vault(vault, |vault| {
            vault.readers.remove(&client_id.to_ascii_lowercase());
        });
    }

    /// Writes a new version of secret `name` and returns its version.
    pub fn set_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        content_type: Option<&str>,
    ) -> String {
        self.set_secret_with(vault, name, new_secret(value, content_type))
    }

    /// Writes a new version of secret `name` created at `created` (Unix seconds), for tests
    /// where creation order and write order differ.
    pub fn set_secret_at(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        content_type: Option<&str>,
        created: i64,
    ) -> String {
        let mut secret = new_secret(value, content_type);
        secret.created = Some(created);
        self.set_secret_with(vault, name, secret)
    }

    /// Writes a new version of secret `name` with every attribute chosen.
    pub fn set_secret_with(&self, vault: &str, name: &str, secret: NewSecret) -> String {
        self.with_vault(vault, |vault| {
            let mut version = vault.new_version(Kind::Secret, name, secret.created);
            version.not_before = secret.not_before;
            version.expires = secret.expires;
            version.tags = secret.tags;
            version.content = Content::Secret {
                value: secret.value,
                content_type: secret.content_type,
                kid: None,
            };
            vault.push(Kind::Secret, name, version)
        })
    }

    /// Writes a new version of key `name`: `jwk` is its public JSON Web Key without `kid`
    /// (RSA: `kty`, `key_ops`, `n`, `e`; EC: `kty`, `key_ops`, `crv`, `x`, `y`).
    pub fn set_key(&self, vault: &str, name: &str, jwk: serde_json::Value) -> String {
        self.with_vault(vault, |vault| {
            let mut version = vault.new_version(Kind::Key, name, None);
            version.content = Content::Key { jwk };
            vault.push(Kind::Key, name, version)
        })
    }

    /// Imports a certificate version: `cer_der` is the leaf's DER, `secret_value` the backing
    /// secret's value (base64 PFX or PEM) and `content_type` `application/x-pkcs12` or
    /// `application/x-pem-file`. Like Key Vault, it writes a certificate, a managed secret and
    /// (when the public key is RSA or EC) a managed key, all with the same version.
    pub fn set_certificate(
        &self,
        vault: &str,
        name: &str,
        cer_der: &[u8],
        secret_value: &str,
        content_type: &str,
    ) -> String {
        let parsed = der::parse_certificate(cer_der);
        self.with_vault(vault, |vault| {
            let mut version = vault.new_version(Kind::Certificate, name, None);
            version.managed = true;
            if let Some(parsed) = &parsed {
                version.not_before = Some(parsed.not_before);
                version.expires = Some(parsed.not_after);
            }
            let id = version.id.clone();
            let kid = format!("{}keys/{name}/{id}", vault.cloud.vault_url(&vault.name));

            let mut secret = version.clone();
            secret.content = Content::Secret {
                value: secret_value.to_owned(),
                content_type: Some(content_type.to_owned()),
                kid: Some(kid),
            };
            vault.push(Kind::Secret, name, secret);

            let key_props = match parsed.as_ref().and_then(|parsed| parsed.jwk.clone()) {
                Some(jwk) => {
                    let props = der::key_props(&jwk);
                    let mut key = version.clone();
                    key.content = Content::Key { jwk };
                    vault.push(Kind::Key, name, key);
                    props
                }
                None => serde_json::json!({"exportable": true, "reuse_key": false}),
            };

            version.content = Content::Certificate {
                cer: cer_der.to_vec(),
                content_type: content_type.to_owned(),
                key_props,
            };
            vault.push(Kind::Certificate, name, version)
        })
    }

    /// Disables one version of secret `name`: reading it answers 403 SecretDisabled.
    pub fn disable_secret_version(&self, vault: &str, name: &str, version: &str) {
        self.set_enabled(Kind::Secret, vault, name, version, false);
    }

    /// Disables one version of key `name`: reading it answers 403 KeyDisabled.
    pub fn disable_key_version(&self, vault: &str, name: &str, version: &str) {
        self.set_enabled(Kind::Key, vault, name, version, false);
    }

    /// Disables one version of certificate `name` with its managed secret and key, as
    /// disabling a certificate does.
    pub fn disable_certificate_version(&self, vault: &str, name: &str, version: &str) {
        for kind in [Kind::Certificate, Kind::Secret, Kind::Key] {
            self.set_enabled(kind, vault, name, version, false);
        }
    }

    fn set_enabled(&self, kind: Kind, vault: &str, name: &str, version: &str, enabled: bool) {
        let now = wire::now();
        self.with_vault(vault, |vault| {
            let found = vault
                .objects
                .get_mut(&(kind, name.to_ascii_lowercase()))
                .and_then(|object| object.version_mut(version));
            if let Some(found) = found {
                found.enabled = enabled;
                found.updated = found.updated.max(now);
            }
        });
    }

    /// Deletes secret `name` with all its versions (later reads answer 404).
    pub fn delete_secret(&self, vault: &str, name: &str) {
        self.with_vault(vault, |vault| {
            vault
                .objects
                .remove(&(Kind::Secret, name.to_ascii_lowercase()));
        });
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<KvRequestSeen> {
        self.state().requests.clone()
    }

    /// How many requests were answered so far, and how many of them 429.
    pub fn counts(&self) -> KvCounts {
        self.state().counts
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Limits vault `vault` to `limit` (a full bucket from now on), or lifts the limit with
    /// `None`: requests over it are answered 429 `Throttled`, as Key Vault's service limits do.
    pub fn set_throttle(&self, vault: &str, limit: Option<Throttle>) {
        let now = std::time::Instant::now();
        self.with_vault(vault, |vault| {
            vault.throttle = limit.map(|limit| throttle::Bucket::new(limit, now));
        });
    }

    /// Spends a token of the vault behind `host`: `Some(retry_after)` when the request is
    /// over the vault's limit.
    fn throttled(&self, host: &str) -> Option<Option<u64>> {
        let (name, cloud) = Cloud::split_vault_host(host)?;
        let mut state = self.state();
        let vault = state.vaults.get_mut(&name).filter(|v| v.cloud == cloud)?;
        let bucket = vault.throttle.as_mut()?;
        bucket.take(std::time::Instant::now()).err()
    }

    /// Caps list pages at `size` items (1 to 25; a client's `maxresults` may lower it).
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.clamp(1, MAX_PAGE_SIZE);
    }

    /// When on, lists start with an empty page and put one between every two pages of items,
    /// each with a `nextLink`, as Key Vault may.
    pub fn set_empty_pages(&self, on: bool) {
        self.state().empty_pages = on;
    }

    /// Makes the next `count` requests to Key Vault fail with `fault`.
    pub fn inject_fault(&self, fault: Fault, count: usize) {
        self.inner.faults.push(fault, count);
    }

    /// Whether `host` is `<vault>.<suffix>` of an existing vault in the right cloud.
    pub fn serves_host(&self, host: &str) -> bool {
        let Some((name, cloud)) = Cloud::split_vault_host(host) else {
            return false;
        };
        let state = self.state();
        state
            .vaults
            .get(&name)
            .is_some_and(|vault| vault.cloud == cloud)
    }

    fn with_vault<T>(&self, vault: &str, change: impl FnOnce(&mut Vault) -> T) -> T {
        let mut state = self.state();
        let found = state
            .vaults
            .get_mut(&vault.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no vault {vault}"));
        change(found)
    }
}

fn new_secret(value: &str, content_type: Option<&str>) -> NewSecret {
    NewSecret {
        value: value.to_owned(),
        content_type: content_type.map(str::to_owned),
        ..NewSecret::default()
    }
}

impl Vault {
    /// A fresh version of object `name`, created at `created` or else now, and always after
    /// the object's newest version so that "latest" is unambiguous.
    fn new_version(&self, kind: Kind, name: &str, created: Option<i64>) -> Version {
        let newest = self
            .objects
            .get(&(kind, name.to_ascii_lowercase()))
            .and_then(Object::current)
            .map(|version| version.created);
        let created = created.unwrap_or_else(|| {
            let now = wire::now();
            newest.map_or(now, |newest| now.max(newest + 1))
        });
        Version {
            id: wire::version_id(),
            created,
            updated: created,
            enabled: true,
            not_before: None,
            expires: None,
            tags: BTreeMap::new(),
            managed: false,
            content: Content::Key {
                jwk: serde_json::Value::Null,
            },
        }
    }

    fn push(&mut self, kind: Kind, name: &str, version: Version) -> String {
        let id = version.id.clone();
        let object = self
            .objects
            .entry((kind, name.to_ascii_lowercase()))
            .or_insert_with(|| Object {
                name: name.to_owned(),
                versions: Vec::new(),
            });
        object.versions.push(version);
        id
    }
}

impl Object {
    /// The current version: the newest by `created`, the later write winning a tie.
    fn current(&self) -> Option<&Version> {
        self.versions
            .iter()
            .enumerate()
            .max_by_key(|(index, version)| (version.created, *index))
            .map(|(_, version)| version)
    }

    fn version(&self, id: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|version| version.id.eq_ignore_ascii_case(id))
    }

    fn version_mut(&mut self, id: &str) -> Option<&mut Version> {
        self.versions
            .iter_mut()
            .find(|version| version.id.eq_ignore_ascii_case(id))
    }
}

/// Standard base64, as Key Vault encodes `cer`.
fn base64_standard(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
