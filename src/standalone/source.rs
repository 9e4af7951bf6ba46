//! Where standalone mode's requests come from: a SecretProviderClass file plus the identity
//! sources that exist off-cluster.
//!
//! Workload identity reads a federated token file (`--federated-token-file`, or
//! `AZURE_FEDERATED_TOKEN_FILE` as Azure's webhook and SDKs name it) on every round, since the
//! platform rotates it. A service principal's secret comes from `--client-secret-file` or
//! `AZURE_CLIENT_SECRET`. `useVMManagedIdentity` in the manifest uses IMDS. The result is the
//! MountRequest the driver would have sent, so the same parser validates it.
//!
//! Known shortcoming: when no identity source is given at all, that is reported before the
//! manifest's own errors, which show only once an identity is configured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::proto::MountRequest;
use crate::request::TOKEN_AUDIENCE;
use crate::secret::SecretString;

/// A configuration problem found before any Mount.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl SourceError {
    /// A problem described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The identity settings read once from flags and the process environment at start-up.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// A projected token file to exchange (workload identity).
    pub federated_token_file: Option<PathBuf>,
    /// A file holding a client secret (service principal).
    pub client_secret_file: Option<PathBuf>,
    /// `AZURE_CLIENT_SECRET`.
    pub client_secret: Option<SecretString>,
    /// `AZURE_CLIENT_ID`, used when the manifest sets no `clientID`.
    pub client_id: Option<String>,
    /// `AZURE_TENANT_ID`, used when the manifest sets no tenant.
    pub tenant_id: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

/// Builds this round's request from the manifest and the identity sources.
pub fn request(spc: &Path, env: &Environment) -> Result<MountRequest, SourceError> {
    let text = std::fs::read_to_string(spc)
        .map_err(|e| SourceError::new(format!("cannot read --spc {}: {e}", spc.display())))?;
    let manifest: Manifest = serde_norway::from_str(&text).map_err(|e| {
        SourceError::new(format!(
            "--spc {} is not a SecretProviderClass with string spec.parameters: {e}",
            spc.display()
        ))
    })?;

    if let Some(kind) = manifest
        .kind
        .as_deref()
        .filter(|k| *k != "SecretProviderClass")
    {
        return Err(SourceError::new(format!(
            "--spc {} is a {kind}, not a SecretProviderClass",
            spc.display()
        )));
    }
    if let Some(provider) = manifest.spec.provider.as_deref().filter(|p| *p != "azure") {
        return Err(SourceError::new(format!(
            "--spc {} is for provider {provider:?}, not \"azure\"",
            spc.display()
        )));
    }
    let mut attributes = manifest.spec.parameters;
    attributes.insert("secretProviderClass".into(), manifest.metadata.name);
    let has = |attrs: &BTreeMap<String, String>, key: &str| {
        attrs.get(key).is_some_and(|v| !v.trim().is_empty())
    };
    if let Some(tenant) = &env.tenant_id
        && !has(&attributes, "tenantID")
        && !has(&attributes, "tenantId")
    {
        attributes.insert("tenantID".into(), tenant.clone());
    }
    let client_id = attributes
        .get("clientID")
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .or_else(|| env.client_id.clone());
    let managed = attributes
        .get("useVMManagedIdentity")
        .is_some_and(|v| matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True"));

    let mut secrets = serde_json::Map::new();
    if managed {
        // IMDS needs nothing from here.
    } else if let Some(file) = &env.federated_token_file {
        let token = std::fs::read_to_string(file).map_err(|e| {
            SourceError::new(format!(
                "cannot read the federated token file {}: {e}",
                file.display()
            ))
        })?;
        let client_id = client_id.ok_or_else(|| {
            SourceError::new("workload identity needs a client id: set clientID in the manifest or AZURE_CLIENT_ID")
        })?;
        attributes.insert("clientID".into(), client_id);
        let tokens = serde_json::json!({ TOKEN_AUDIENCE: { "token": token.trim(), "expirationTimestamp": "" } });
        attributes.insert(
            "csi.storage.k8s.io/serviceAccount.tokens".into(),
            tokens.to_string(),
        );
    } else if let Some(secret) = client_secret(env)? {
        let client_id = client_id.ok_or_else(|| {
            SourceError::new("a service principal needs a client id: set clientID in the manifest or AZURE_CLIENT_ID")
        })?;
        // The request parser reads a service principal from the node-publish secret, and takes
        // a clientID parameter to mean workload identity.
        attributes.remove("clientID");
        secrets.insert("clientid".into(), client_id.into());
        secrets.insert("clientsecret".into(), secret.expose().into());
    } else {
        return Err(SourceError::new(
            "no identity: give --federated-token-file (or AZURE_FEDERATED_TOKEN_FILE), a client \
             secret (--client-secret-file or AZURE_CLIENT_SECRET), or set useVMManagedIdentity \
             in the manifest",
        ));
    }

    Ok(MountRequest {
        attributes: serde_json::to_string(&attributes).unwrap_or_default(),
        secrets: if secrets.is_empty() {
            "null".into()
        } else {
            serde_json::Value::Object(secrets).to_string()
        },
        target_path: String::new(),
        permission: "420".into(),
        current_object_version: Vec::new(),
    })
}

fn client_secret(env: &Environment) -> Result<Option<SecretString>, SourceError> {
    if let Some(file) = &env.client_secret_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            SourceError::new(format!(
                "cannot read the client secret file {}: {e}",
                file.display()
            ))
        })?;
        return Ok(Some(SecretString::new(text.trim().to_owned())));
    }
    Ok(env.client_secret.clone())
}
