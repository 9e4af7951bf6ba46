//! The bodies Key Vault answers with, reduced to the fields a Mount uses.

use serde::Deserialize;

use crate::secret::SecretString;

/// A secret: `GET /secrets/{name}[/{version}]`.
#[derive(Debug, Deserialize)]
pub struct SecretBundle {
    /// The value; absent only in list results.
    #[serde(default)]
    pub value: Option<SecretString>,
    /// `https://<vault>.<suffix>/secrets/<name>/<version>`.
    pub id: String,
    /// `application/x-pkcs12`, `application/x-pem-file`, or anything the owner set.
    #[serde(rename = "contentType", default)]
    pub content_type: Option<String>,
    /// Present when the secret backs a certificate.
    #[serde(default)]
    pub kid: Option<String>,
}

/// A key: `GET /keys/{name}[/{version}]`. Only the public members are ever returned.
#[derive(Debug, Deserialize)]
pub struct KeyBundle {
    /// The JSON Web Key; its `kid` holds the versioned id.
    pub key: serde_json::Value,
}

/// A certificate: `GET /certificates/{name}[/{version}]`.
#[derive(Debug, Deserialize)]
pub struct CertificateBundle {
    /// `https://<vault>.<suffix>/certificates/<name>/<version>`.
    pub id: String,
    /// Standard base64 of the leaf certificate's DER.
    #[serde(default)]
    pub cer: Option<String>,
}

/// One entry of a versions list.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionItem {
    /// Versioned id (`kid` for keys).
    #[serde(alias = "kid")]
    pub id: String,
    /// Enabled, created.
    #[serde(default)]
    pub attributes: Attributes,
}

/// The attributes that decide which versions a history shows.
#[derive(Debug, Clone, Deserialize)]
pub struct Attributes {
    /// Disabled versions cannot be read.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
}

fn yes() -> bool {
    true
}

/// An item without `attributes` is taken as enabled, as a missing `enabled` is.
impl Default for Attributes {
    fn default() -> Self {
        Self {
            enabled: true,
            created: 0,
        }
    }
}

/// One page of a versions list.
#[derive(Debug, Deserialize)]
pub struct VersionPage {
    /// Items; a page may be empty and still have a next one.
    #[serde(default)]
    pub value: Vec<VersionItem>,
    /// Absolute URL of the next page, or null.
    #[serde(rename = "nextLink", default)]
    pub next_link: Option<String>,
}

/// The last segment of a versioned id.
pub fn version_of(id: &str) -> &str {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

impl SecretBundle {
    /// The version: the last segment of the id.
    pub fn version(&self) -> &str {
        version_of(&self.id)
    }
}

impl KeyBundle {
    /// The version: the last segment of the key's `kid`.
    pub fn version(&self) -> &str {
        self.key
            .get("kid")
            .and_then(|k| k.as_str())
            .map(version_of)
            .unwrap_or_default()
    }
}

impl CertificateBundle {
    /// The version: the last segment of the id.
    pub fn version(&self) -> &str {
        version_of(&self.id)
    }
}
