//! The first step of a Mount: turn the driver's strings into one typed, validated request.
//!
//! `attributes`, `secrets` and `permission` arrive as JSON text. Everything the later steps
//! need is read and checked here, before any network call, and every error names the
//! parameter, or the object and its field. Nothing after this module reads a raw parameter.

mod objects;
pub mod paths;

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::cloud::{self, Cloud};
use crate::secret::SecretString;

pub use objects::{Encoding, Format, ObjectSpec, ObjectType};

/// The audience of the service-account token exchanged for an Entra ID token.
pub const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";

const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
const SPC_NAME: &str = "secretProviderClass";

/// Where in the request a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A field of the MountRequest message itself.
    Request(&'static str),
    /// A SecretProviderClass parameter.
    Parameter(&'static str),
    /// An item of `objects` that could not be read as an object.
    Item(usize),
    /// A field of one object.
    Object {
        /// Position in the list.
        index: usize,
        /// The object's name, when it has one.
        name: Option<String>,
        /// The field at fault.
        field: &'static str,
    },
}

impl Place {
    fn item(index: usize) -> Self {
        Self::Item(index)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(field) => write!(f, "MountRequest.{field}"),
            Self::Parameter(key) => write!(f, "parameter {key}"),
            Self::Item(index) => write!(f, "objects[{index}]"),
            Self::Object {
                index,
                name: Some(name),
                field,
            } => {
                write!(f, "objects[{index}] ({name}): {field}")
            }
            Self::Object {
                index,
                name: None,
                field,
            } => write!(f, "objects[{index}]: {field}"),
        }
    }
}

/// Why a request cannot be served, found before any network call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A value is missing or malformed.
    #[error("{place}: {reason}")]
    Invalid {
        /// Where.
        place: Place,
        /// What is wrong, in a few words.
        reason: String,
    },
    /// Workload identity was chosen but the driver sent no token for our audience.
    #[error(
        "the pod's service account token for audience {TOKEN_AUDIENCE} is missing: workload \
         identity needs the CSIDriver secrets-store.csi.k8s.io to have a tokenRequests entry \
         with audience \"{TOKEN_AUDIENCE}\""
    )]
    MissingToken,
    /// A parameter asks for something this provider does not do (yet).
    #[error("{0}")]
    Unsupported(String),
}

impl RequestError {
    fn invalid(place: Place, reason: impl Into<String>) -> Self {
        Self::Invalid {
            place,
            reason: reason.into(),
        }
    }
}

/// The pod a volume belongs to, for logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Service account name.
    pub service_account: String,
}

/// How the provider proves who it is to Key Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The pod's service-account token, exchanged at Entra ID (workload identity federation).
    Workload {
        /// Entra tenant.
        tenant: String,
        /// Client id of the app registration or managed identity that trusts the pod.
        client_id: String,
        /// The pod's projected service-account token (the client assertion).
        assertion: SecretString,
        /// The assertion's `iss`: with `subject`, who the token may be reused for.
        issuer: String,
        /// The assertion's `sub`, `system:serviceaccount:<namespace>:<name>`.
        subject: String,
        /// The assertion's `exp` has passed: never answer it from the cache.
        assertion_expired: bool,
    },
    /// A client id and secret from the volume's node-publish secret.
    ServicePrincipal {
        /// Entra tenant.
        tenant: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: SecretString,
    },
    /// The node's managed identity, through IMDS.
    Managed {
        /// Client id of a user-assigned identity; `None` for the system-assigned one.
        client_id: Option<String>,
    },
}

/// One Mount's request, validated.
#[derive(Debug, Clone)]
pub struct MountParams {
    /// The pod.
    pub pod: Pod,
    /// The SecretProviderClass, when the driver names it.
    pub secret_provider_class: Option<String>,
    /// The cloud's endpoints.
    pub cloud: Cloud,
    /// Key Vault name.
    pub vault: String,
    /// Identity used for every object.
    pub identity: Identity,
    /// Objects to mount, in the order listed.
    pub objects: Vec<ObjectSpec>,
}

/// What the process was started with that a request may fall back on.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `cloudName` when a request has none.
    pub cloud_name: String,
    /// An authority host that replaces the cloud's (standalone mode, `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
}

/// Parses the three JSON strings of a MountRequest.
pub fn parse(
    attributes: &str,
    secrets: &str,
    permission: &str,
    defaults: &Defaults,
) -> Result<MountParams, RequestError> {
    let attributes: HashMap<String, String> = serde_json::from_str(attributes).map_err(|e| {
        RequestError::invalid(
            Place::Request("attributes"),
            format!("not a JSON object of strings: {e}"),
        )
    })?;
    let secrets = parse_secrets(secrets)?;
    let mode = parse_permission(permission)?;
    let params = Params(&attributes);

    let pod = Pod {
        namespace: params.get(POD_NAMESPACE).to_owned(),
        name: params.get(POD_NAME).to_owned(),
        uid: params.get(POD_UID).to_owned(),
        service_account: params.get(SERVICE_ACCOUNT).to_owned(),
    };

    let vault = params.get("keyvaultName");
    let vault_ok = (3..=24).contains(&vault.len())
        && vault
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !vault_ok {
        let reason = if vault.is_empty() {
            "is required".to_owned()
        } else {
            format!("{vault:?} is not a vault name (3 to 24 letters, digits or dashes)")
        };
        return Err(RequestError::invalid(
            Place::Parameter("keyvaultName"),
            reason,
        ));
    }

    let cloud_name = match params.get("cloudName") {
        "" => defaults.cloud_name.as_str(),
        name => name,
    };
    let env_file = Some(params.get("cloudEnvFileName")).filter(|f| !f.is_empty());
    let mut cloud = cloud::resolve(cloud_name, env_file)?;
    if let Some(host) = &defaults.authority_host {
        cloud.authority = cloud::authority(host).map_err(|reason| {
            RequestError::invalid(Place::Parameter("AZURE_AUTHORITY_HOST"), reason)
        })?;
    }

    let objects = objects::parse(params.get("objects"), mode)?;
    let identity = identity(&params, &attributes, &secrets, &pod)?;

    Ok(MountParams {
        pod,
        secret_provider_class: Some(params.get(SPC_NAME).to_owned()).filter(|s| !s.is_empty()),
        cloud,
        vault: vault.to_owned(),
        identity,
        objects,
    })
}

/// Attribute lookup with the trimming every parameter gets.
struct Params<'a>(&'a HashMap<String, String>);

impl Params<'_> {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", |v| v.trim())
    }

    /// A boolean as Go's `strconv.ParseBool` reads it; empty means false.
    fn flag(&self, key: &'static str) -> Result<bool, RequestError> {
        match self.get(key) {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            other => Err(RequestError::invalid(
                Place::Parameter(key),
                format!("{other:?} is not a boolean (true or false)"),
            )),
        }
    }
}

fn parse_secrets(text: &str) -> Result<HashMap<String, SecretString>, RequestError> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(HashMap::new());
    }
    // Parse into secret-holding values directly, so no plain copy of a secret outlives this.
    let raw: HashMap<String, String> = serde_json::from_str(text).map_err(|_| {
        RequestError::invalid(
            Place::Request("secrets"),
            "not a JSON object of strings, nor null",
        )
    })?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, SecretString::new(v)))
        .collect())
}

fn parse_permission(text: &str) -> Result<u32, RequestError> {
    let place = Place::Request("permission");
    let mode: u32 = text.trim().parse().map_err(|_| {
        RequestError::invalid(place.clone(), format!("{text:?} is not a JSON number"))
    })?;
    if mode > 0o777 {
        return Err(RequestError::invalid(
            place,
            format!("{mode} is above 0777 (511)"),
        ));
    }
    Ok(mode)
}

/// Chooses the identity mode: managed identity, else workload identity when `clientID` is
/// set, else a service principal from the node-publish secret.
fn identity(
    params: &Params<'_>,
    attributes: &HashMap<String, String>,
    secrets: &HashMap<String, SecretString>,
    pod: &Pod,
) -> Result<Identity, RequestError> {
    let pod_identity = params.flag("usePodIdentity")?;
    let token_proxy = params.flag("useAzureTokenProxy")?;
    let managed = params.flag("useVMManagedIdentity")?;
    let chosen: Vec<&'static str> = [
        ("usePodIdentity", pod_identity),
        ("useAzureTokenProxy", token_proxy),
        ("useVMManagedIdentity", managed),
    ]
    .into_iter()
    .filter_map(|(key, on)| on.then_some(key))
    .collect();
    if let [first, second, ..] = chosen.as_slice() {
        return Err(RequestError::invalid(
            Place::Parameter(first),
            format!(
                "is true together with {second}, but at most one of usePodIdentity, \
                 useAzureTokenProxy and useVMManagedIdentity may be true"
            ),
        ));
    }
    if pod_identity {
        return Err(RequestError::invalid(
            Place::Parameter("usePodIdentity"),
            "aad-pod-identity is retired and not supported: use workload identity (set clientID \
             and usePodIdentity: \"false\")",
        ));
    }
    if token_proxy {
        return Err(RequestError::invalid(
            Place::Parameter("useAzureTokenProxy"),
            "the AKS identity binding (preview) is not supported: use workload identity (set \
             clientID and useAzureTokenProxy: \"false\")",
        ));
    }

    if managed {
        let client_id =
            Some(params.get("userAssignedIdentityID").to_owned()).filter(|id| !id.is_empty());
        if let Some(id) = &client_id {
            check_client_id("userAssignedIdentityID", id)?;
        }
        return Ok(Identity::Managed { client_id });
    }

    let tenant = match (params.get("tenantID"), params.get("tenantId")) {
        ("", "") => "",
        ("", legacy) => legacy,
        (tenant, _) => tenant,
    };
    let client_id = params.get("clientID");
    if !client_id.is_empty() {
        check_client_id("clientID", client_id)?;
        let tenant = check_tenant(tenant)?;
        let assertion = pod_token(attributes, secrets)?;
        let (issuer, subject, assertion_expired) = token_claims(&assertion, pod)?;
        return Ok(Identity::Workload {
            tenant,
            client_id: client_id.to_owned(),
            assertion,
            issuer,
            subject,
            assertion_expired,
        });
    }

    let tenant = check_tenant(tenant)?;
    let (client_id, secret) = service_principal(secrets)?;
    Ok(Identity::ServicePrincipal {
        tenant,
        client_id,
        secret,
    })
}

/// `clientid` and `clientsecret` from the node-publish secret, keys in any case.
fn service_principal(
    secrets: &HashMap<String, SecretString>,
) -> Result<(String, SecretString), RequestError> {
    let place = Place::Request("secrets");
    let advice = "reference a Secret with the keys clientid and clientsecret in the volume's \
                  nodePublishSecretRef, or set clientID for workload identity";
    if secrets.keys().all(|k| k == TOKENS) {
        return Err(RequestError::invalid(
            place,
            format!(
                "no clientID is set, so a service principal is used, but the volume has no \
                 node-publish secret: {advice}"
            ),
        ));
    }
    let lookup = |key: &'static str| {
        let found = secrets.iter().find(|(k, _)| k.eq_ignore_ascii_case(key));
        found.map(|(_, v)| v.clone()).ok_or_else(|| {
            RequestError::invalid(
                place.clone(),
                format!(
                    "no clientID is set, so a service principal is used, but the node-publish \
                     secret has no key {key:?}: {advice}"
                ),
            )
        })
    };
    let client_id = lookup("clientid")?;
    let secret = lookup("clientsecret")?;

    let id = client_id.expose().trim();
    if id.is_empty() || !is_client_id(id) {
        return Err(RequestError::invalid(
            place,
            "the node-publish secret's clientid is not a client id (a GUID of letters, digits \
             and dashes)",
        ));
    }
    if secret.expose().is_empty() {
        return Err(RequestError::invalid(
            place,
            "the node-publish secret's clientsecret is empty",
        ));
    }
    Ok((id.to_owned(), secret))
}

fn is_client_id(id: &str) -> bool {
    id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn check_client_id(key: &'static str, id: &str) -> Result<(), RequestError> {
    if is_client_id(id) {
        return Ok(());
    }
    Err(RequestError::invalid(
        Place::Parameter(key),
        "is not a client id (a GUID of letters, digits and dashes)",
    ))
}

/// A tenant is a GUID or a domain; anything else could change the token URL's path.
fn check_tenant(tenant: &str) -> Result<String, RequestError> {
    let place = Place::Parameter("tenantID");
    if tenant.is_empty() {
        return Err(RequestError::invalid(place, "is required"));
    }
    let ok = tenant.len() <= 253
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !tenant.starts_with('.');
    if !ok {
        return Err(RequestError::invalid(
            place,
            format!("{tenant:?} is not a tenant id (a GUID or a domain name)"),
        ));
    }
    Ok(tenant.to_owned())
}

#[derive(Deserialize)]
struct TokenEntry {
    token: String,
}

/// Picks the token for [`TOKEN_AUDIENCE`] from the attributes (or, from driver v1.6 with
/// `serviceAccountTokenInSecrets`, from the secrets).
fn pod_token(
    attributes: &HashMap<String, String>,
    secrets: &HashMap<String, SecretString>,
) -> Result<SecretString, RequestError> {
    let text = match (attributes.get(TOKENS), secrets.get(TOKENS)) {
        (Some(text), _) if !text.trim().is_empty() => text.as_str(),
        (_, Some(text)) => text.expose(),
        _ => return Err(RequestError::MissingToken),
    };
    let mut tokens: HashMap<String, TokenEntry> = serde_json::from_str(text).map_err(|_| {
        RequestError::invalid(
            Place::Parameter(TOKENS),
            "is not a JSON object of audience to {token, expirationTimestamp}",
        )
    })?;
    match tokens.remove(TOKEN_AUDIENCE) {
        Some(entry) if !entry.token.is_empty() => Ok(SecretString::new(entry.token)),
        _ => Err(RequestError::MissingToken),
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
}

/// How long past its `exp` a token is still taken, for clock skew between node and issuer.
const EXPIRY_SKEW_SECS: u64 = 300;

/// Reads `iss` and `sub` from the token, unverified: Entra verifies it when it is exchanged;
/// here it only says whom a cached Entra token may be reused for. So that a token can only
/// ever stand for the pod it arrived with, its subject must be the pod's own service account
/// (as kubelet names them in the attributes); and an expired token is marked so that it is
/// never answered from the cache (Entra then refuses it with AADSTS700024).
fn token_claims(token: &SecretString, pod: &Pod) -> Result<(String, String, bool), RequestError> {
    let bad = || {
        RequestError::invalid(
            Place::Parameter(TOKENS),
            format!("the token for audience {TOKEN_AUDIENCE} is not a JWT with iss and sub"),
        )
    };
    let payload = token.expose().split('.').nth(1).ok_or_else(bad)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| bad())?;

    let place = Place::Parameter(TOKENS);
    if !pod.namespace.is_empty() && !pod.service_account.is_empty() {
        let expected = format!(
            "system:serviceaccount:{}:{}",
            pod.namespace, pod.service_account
        );
        if claims.sub != expected {
            return Err(RequestError::invalid(
                place,
                format!(
                    "the token's subject {:?} is not the pod's service account {expected:?}",
                    claims.sub
                ),
            ));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expired = claims
        .exp
        .is_some_and(|exp| exp.saturating_add(EXPIRY_SKEW_SECS) < now);
    Ok((claims.iss, claims.sub, expired))
}

#[cfg(test)]
mod tests;
