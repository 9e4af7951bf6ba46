//! The JSON bodies of the Key Vault double, shaped exactly like the official REST examples in
//! `shared/fixtures/keyvault-examples/`: bundles for a GET of one version, items for list
//! pages, and the error object. Unset fields are omitted, never sent as null.

use super::{Content, Kind, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// The recovery level of a vault with soft delete and without purge protection.
const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";

/// `{"error": {"code", "message", "innererror"?}}`.
pub(super) fn error(code: &str, message: &str, inner: Option<&str>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(inner) = inner {
        error["innererror"] = json!({"code": inner});
    }
    json!({ "error": error })
}

/// The collection's path segment.
pub(super) fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "secrets",
        Kind::Key => "keys",
        Kind::Certificate => "certificates",
    }
}

/// `attributes`: `recoveryLevel` appears in bundles, not in list items.
fn attributes(version: &Version, in_bundle: bool) -> Value {
    let mut attributes = Map::new();
    attributes.insert("enabled".into(), json!(version.enabled));
    if let Some(not_before) = version.not_before {
        attributes.insert("nbf".into(), json!(not_before));
    }
    if let Some(expires) = version.expires {
        attributes.insert("exp".into(), json!(expires));
    }
    attributes.insert("created".into(), json!(version.created));
    attributes.insert("updated".into(), json!(version.updated));
    if in_bundle {
        attributes.insert("recoveryLevel".into(), json!(RECOVERY_LEVEL));
    }
    Value::Object(attributes)
}

/// Adds `tags` and `managed` when set.
fn add_common(body: &mut Value, version: &Version) {
    if !version.tags.is_empty() {
        body["tags"] = json!(version.tags);
    }
    if version.managed {
        body["managed"] = json!(true);
    }
}

/// The bundle for a GET of `version` of object `name`; `base` is `https://<vault host>`.
pub(super) fn bundle(base: &str, name: &str, version: &Version) -> Value {
    let versioned = |kind: Kind| format!("{base}/{}/{name}/{}", collection(kind), version.id);
    let mut body = match &version.content {
        Content::Secret {
            value,
            content_type,
            kid,
        } => {
            let mut body = json!({
                "value": value,
                "id": versioned(Kind::Secret),
                "attributes": attributes(version, true),
            });
            if let Some(content_type) = content_type {
                body["contentType"] = json!(content_type);
            }
            if let Some(kid) = kid {
                body["kid"] = json!(kid);
            }
            body
        }
        Content::Key { jwk } => {
            let mut key = jwk.clone();
            key["kid"] = json!(versioned(Kind::Key));
            json!({"key": key, "attributes": attributes(version, true)})
        }
        Content::Certificate {
            cer,
            content_type,
            key_props,
        } => json!({
            "id": versioned(Kind::Certificate),
            "kid": versioned(Kind::Key),
            "sid": versioned(Kind::Secret),
            "x5t": thumbprint(cer),
            "cer": super::base64_standard(cer),
            "attributes": attributes(version, true),
            "policy": policy(base, name, version, content_type, key_props),
        }),
    };
    add_common(&mut body, version);
    body
}

/// A list item: versioned ids in a versions list, bare ones in a list of the collection.
pub(super) fn item(
    kind: Kind,
    base: &str,
    name: &str,
    version: &Version,
    versioned: bool,
) -> Value {
    let mut id = format!("{base}/{}/{name}", collection(kind));
    if versioned {
        id = format!("{id}/{}", version.id);
    }
    let mut body = match &version.content {
        Content::Secret { content_type, .. } => {
            let mut body = json!({"id": id, "attributes": attributes(version, false)});
            if let Some(content_type) = content_type {
                body["contentType"] = json!(content_type);
            }
            body
        }
        Content::Key { .. } => json!({"kid": id, "attributes": attributes(version, false)}),
        Content::Certificate { cer, .. } => json!({
            "id": id,
            "x5t": thumbprint(cer),
            "attributes": attributes(version, false),
        }),
    };
    add_common(&mut body, version);
    body
}

/// `x5t`: base64url of the certificate's SHA-1 digest.
fn thumbprint(cer: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cer);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn policy(
    base: &str,
    name: &str,
    version: &Version,
    content_type: &str,
    key_props: &Value,
) -> Value {
    json!({
        "id": format!("{base}/certificates/{name}/policy"),
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": {
            "subject": format!("CN={name}"),
            "ekus": [],
            "key_usage": [],
            "validity_months": 12,
        },
        "lifetime_actions": [{
            "trigger": {"lifetime_percentage": 80},
            "action": {"action_type": "AutoRenew"},
        }],
        "issuer": {"name": "Self"},
        "attributes": {
            "enabled": true,
            "created": version.created,
            "updated": version.updated,
        },
    })
}
