//! Building a `MountRequest` the way the driver and kubelet build it.
//!
//! `attributes` is the SecretProviderClass's `spec.parameters` overlaid with the keys kubelet adds
//! for `podInfoOnMount` and `tokenRequests`; `secrets` is the node-publish secret or the literal
//! `null`; `permission` is `"420"`. Every JSON string is produced the way Go's `encoding/json`
//! produces it (sorted keys, `<`, `>`, `&` escaped), so the provider parses exactly what it will
//! see in a cluster.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::pb::MountRequest;

/// Key of the pod name that kubelet adds to the volume attributes.
pub const ATTR_POD_NAME: &str = "csi.storage.k8s.io/pod.name";
/// Key of the pod namespace.
pub const ATTR_POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
/// Key of the pod UID.
pub const ATTR_POD_UID: &str = "csi.storage.k8s.io/pod.uid";
/// Key of the pod's service account name.
pub const ATTR_SERVICE_ACCOUNT_NAME: &str = "csi.storage.k8s.io/serviceAccount.name";
/// Key kubelet sets to `"true"` for an inline (ephemeral) CSI volume, which is what a
/// secrets-store volume always is.
pub const ATTR_EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
/// Key of the service-account tokens kubelet requests for the CSIDriver's `tokenRequests`.
pub const ATTR_SERVICE_ACCOUNT_TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// Key of the SecretProviderClass name, from the pod's volume attributes.
pub const ATTR_SECRET_PROVIDER_CLASS: &str = "secretProviderClass";

/// The audience workload identity asks kubelet for.
pub const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The `permission` every driver sends: 0644 as a decimal JSON number.
pub const DEFAULT_PERMISSION: &str = "420";

/// The pod whose volume is being mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.serviceAccountName`.
    pub service_account: String,
}

impl Pod {
    /// A pod with a fresh random UID.
    pub fn new(namespace: &str, name: &str, service_account: &str) -> Pod {
        Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: crate::wire::guid(),
            service_account: service_account.to_owned(),
        }
    }

    /// The `sub` claim of this pod's service-account tokens.
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// The volume's host path as kubelet names it, which the driver passes as `target_path`.
    pub fn target_path(&self, volume: &str) -> String {
        format!(
            "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/{volume}/mount",
            self.uid
        )
    }
}

/// What a SecretProviderClass manifest holds that the driver uses for a Mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretProviderClass {
    /// `metadata.name`.
    pub name: String,
    /// `spec.provider`: the driver calls the socket named after it.
    pub provider: String,
    /// `spec.parameters`: a map of strings, as the CRD's schema requires.
    pub parameters: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    kind: Option<String>,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    parameters: BTreeMap<String, serde_norway::Value>,
}

impl SecretProviderClass {
    /// Parses a SecretProviderClass manifest.
    ///
    /// Like the API server, this rejects a parameter whose value is not a string (for example an
    /// unquoted `usePodIdentity: false`): the CRD declares `parameters` as a map of strings.
    pub fn from_yaml(yaml: &str) -> Result<SecretProviderClass, RequestError> {
        let manifest: Manifest =
            serde_norway::from_str(yaml).map_err(|e| RequestError::Yaml(e.to_string()))?;
        if let Some(kind) = manifest.kind.filter(|k| k != "SecretProviderClass") {
            return Err(RequestError::WrongKind(kind));
        }

        let mut parameters = BTreeMap::new();
        for (key, value) in manifest.spec.parameters {
            match value {
                serde_norway::Value::String(s) => parameters.insert(key, s),
                _ => return Err(RequestError::NotAString(key)),
            };
        }

        Ok(SecretProviderClass {
            name: manifest.metadata.name,
            provider: manifest.spec.provider,
            parameters,
        })
    }
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The manifest is not valid YAML or lacks `metadata.name` or `spec`.
    Yaml(String),
    /// The manifest is of another kind.
    WrongKind(String),
    /// A `spec.parameters` value is not a string; the API server would refuse the object.
    NotAString(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Yaml(e) => write!(f, "invalid SecretProviderClass manifest: {e}"),
            RequestError::WrongKind(kind) => {
                write!(f, "manifest is a {kind}, not a SecretProviderClass")
            }
            RequestError::NotAString(key) => write!(
                f,
                "spec.parameters.{key} must be a string (quote it): the API server rejects it"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Builds the `MountRequest` a driver sends for `pod`'s volume using the SecretProviderClass in
/// `spc_yaml`.
///
/// `tokens` are (audience, JWT) pairs: when non-empty they become the
/// `csi.storage.k8s.io/serviceAccount.tokens` attribute, as for a CSIDriver with
/// `tokenRequests`. `secrets` is the node-publish secret's data (`None` sends the literal
/// `null`). `target_path` is kubelet's path for a volume named `secrets-store-inline`; assign
/// another one if a test needs it.
pub fn mount_request(
    spc_yaml: &str,
    pod: &Pod,
    tokens: &[(&str, String)],
    secrets: Option<&BTreeMap<String, String>>,
) -> Result<MountRequest, RequestError> {
    let spc = SecretProviderClass::from_yaml(spc_yaml)?;

    // The driver starts from the class's parameters and lays the volume context over them: the
    // pod's volume attributes (which name the class) and what kubelet adds.
    let mut attributes = spc.parameters;
    attributes.insert(ATTR_SECRET_PROVIDER_CLASS.to_owned(), spc.name);
    attributes.insert(ATTR_POD_NAME.to_owned(), pod.name.clone());
    attributes.insert(ATTR_POD_NAMESPACE.to_owned(), pod.namespace.clone());
    attributes.insert(ATTR_POD_UID.to_owned(), pod.uid.clone());
    attributes.insert(
        ATTR_SERVICE_ACCOUNT_NAME.to_owned(),
        pod.service_account.clone(),
    );
    attributes.insert(ATTR_EPHEMERAL.to_owned(), "true".to_owned());
    if !tokens.is_empty() {
        attributes.insert(
            ATTR_SERVICE_ACCOUNT_TOKENS.to_owned(),
            tokens_attribute(tokens),
        );
    }

    Ok(mount_request_from_attributes(
        &attributes,
        secrets,
        &pod.target_path("secrets-store-inline"),
    ))
}

/// Builds a `MountRequest` from a ready attributes map, for requests no real class produces
/// (missing keys, odd values). For attributes that are not even a JSON object of strings, build
/// the [`MountRequest`] by hand.
pub fn mount_request_from_attributes(
    attributes: &BTreeMap<String, String>,
    secrets: Option<&BTreeMap<String, String>>,
    target_path: &str,
) -> MountRequest {
    MountRequest {
        attributes: go_json(attributes),
        secrets: match secrets {
            Some(secrets) => go_json(secrets),
            None => "null".to_owned(),
        },
        target_path: target_path.to_owned(),
        permission: DEFAULT_PERMISSION.to_owned(),
        current_object_version: Vec::new(),
    }
}

/// The value kubelet gives `csi.storage.k8s.io/serviceAccount.tokens`: a JSON object, as a
/// string, of audience → `{"token", "expirationTimestamp"}`.
///
/// The expiry is the JWT's own `exp` claim when it has one (kubelet reports the token's real
/// expiry), otherwise an hour from now.
pub fn tokens_attribute(tokens: &[(&str, String)]) -> String {
    let mut map = serde_json::Map::new();
    for (audience, token) in tokens {
        let expiry = jwt_expiry(token).unwrap_or_else(|| unix_now() + 3600);
        map.insert(
            (*audience).to_owned(),
            serde_json::json!({
                "token": token,
                "expirationTimestamp": rfc3339(expiry),
            }),
        );
    }
    go_json(&map)
}

/// Serializes like Go's `encoding/json`: keys sorted (maps here are sorted), and `<`, `>`, `&`,
/// U+2028, U+2029 written as `\u` escapes.
pub fn go_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("a map of strings always serializes");

    // These characters can only occur inside JSON strings, so replacing them is safe.
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The `exp` claim of a JWT, if `token` is one.
fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes' `metav1.Time` marshals.
fn rfc3339(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPC: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: azure-kv
  namespace: default
spec:
  provider: azure
  parameters:
    usePodIdentity: "false"
    clientID: "00000000-0000-0000-0000-000000000001"
    keyvaultName: "kv1"
    tenantId: "tenant"
    objects: |
      array:
        - |
          objectName: s1
          objectType: secret
"#;

    fn pod() -> Pod {
        Pod {
            namespace: "ns1".into(),
            name: "web-0".into(),
            uid: "6a0c2b0e-1b2c-4d3e-8f90-a1b2c3d4e5f6".into(),
            service_account: "workload".into(),
        }
    }

    fn attributes(req: &MountRequest) -> BTreeMap<String, String> {
        serde_json::from_str(&req.attributes).unwrap()
    }

    #[test]
    fn attributes_are_parameters_plus_pod_info() {
        let req = mount_request(SPC, &pod(), &[], None).unwrap();
        let attrs = attributes(&req);

        assert_eq!(attrs["usePodIdentity"], "false");
        assert_eq!(attrs["keyvaultName"], "kv1");
        assert!(attrs["objects"].starts_with("array:\n  - |\n    objectName: s1\n"));
        assert_eq!(attrs[ATTR_SECRET_PROVIDER_CLASS], "azure-kv");
        assert_eq!(attrs[ATTR_POD_NAME], "web-0");
        assert_eq!(attrs[ATTR_POD_NAMESPACE], "ns1");
        assert_eq!(attrs[ATTR_POD_UID], "6a0c2b0e-1b2c-4d3e-8f90-a1b2c3d4e5f6");
        assert_eq!(attrs[ATTR_SERVICE_ACCOUNT_NAME], "workload");
        assert_eq!(attrs[ATTR_EPHEMERAL], "true");
        assert!(!attrs.contains_key(ATTR_SERVICE_ACCOUNT_TOKENS));
        assert_eq!(attrs.len(), 11);
    }

    #[test]
    fn secrets_null_permission_420_and_kubelet_target_path() {
        let req = mount_request(SPC, &pod(), &[], None).unwrap();

        assert_eq!(req.secrets, "null");
        assert_eq!(req.permission, "420");
        assert_eq!(
            req.target_path,
            "/var/lib/kubelet/pods/6a0c2b0e-1b2c-4d3e-8f90-a1b2c3d4e5f6/volumes/\
             kubernetes.io~csi/secrets-store-inline/mount"
        );
        assert!(req.current_object_version.is_empty());
    }

    #[test]
    fn node_publish_secret_is_a_json_object() {
        let secrets = BTreeMap::from([
            ("clientid".to_owned(), "id".to_owned()),
            ("clientsecret".to_owned(), "a<b>&c".to_owned()),
        ]);
        let req = mount_request(SPC, &pod(), &[], Some(&secrets)).unwrap();

        assert_eq!(
            req.secrets,
            r#"{"clientid":"id","clientsecret":"a\u003cb\u003e\u0026c"}"#
        );
    }

    #[test]
    fn tokens_are_a_json_string_with_the_jwt_expiry() {
        // {"exp":1700000000}
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2ln".to_owned();
        let req = mount_request(SPC, &pod(), &[(TOKEN_AUDIENCE, jwt.clone())], None).unwrap();
        let attrs = attributes(&req);

        let tokens: serde_json::Value =
            serde_json::from_str(&attrs[ATTR_SERVICE_ACCOUNT_TOKENS]).unwrap();
        assert_eq!(
            tokens,
            serde_json::json!({
                "api://AzureADTokenExchange": {
                    "token": jwt,
                    "expirationTimestamp": "2023-11-14T22:13:20Z",
                }
            })
        );
    }

    #[test]
    fn opaque_token_expires_in_an_hour() {
        let value = tokens_attribute(&[("aud", "opaque".to_owned())]);
        let tokens: serde_json::Value = serde_json::from_str(&value).unwrap();
        let stamp = tokens["aud"]["expirationTimestamp"].as_str().unwrap();

        assert_eq!(stamp.len(), "2023-11-14T22:13:20Z".len());
        assert!(stamp > rfc3339(unix_now() + 3500).as_str());
    }

    #[test]
    fn json_escapes_like_go() {
        let map = BTreeMap::from([("k".to_owned(), "<a&b>\u{2028}é".to_owned())]);
        assert_eq!(go_json(&map), r#"{"k":"\u003ca\u0026b\u003e\u2028é"}"#);
    }

    #[test]
    fn unquoted_parameter_is_rejected() {
        let yaml = "kind: SecretProviderClass\nmetadata: {name: x}\n\
                    spec: {provider: azure, parameters: {usePodIdentity: false}}\n";
        assert_eq!(
            mount_request(yaml, &pod(), &[], None),
            Err(RequestError::NotAString("usePodIdentity".into()))
        );
    }

    #[test]
    fn other_kinds_are_rejected() {
        let yaml = "kind: Secret\nmetadata: {name: x}\nspec: {}\n";
        assert_eq!(
            SecretProviderClass::from_yaml(yaml),
            Err(RequestError::WrongKind("Secret".into()))
        );
    }

    #[test]
    fn raw_attributes_pass_through() {
        let attrs = BTreeMap::from([("objects".to_owned(), "array: []".to_owned())]);
        let req = mount_request_from_attributes(&attrs, None, "/mnt/x");

        assert_eq!(req.attributes, r#"{"objects":"array: []"}"#);
        assert_eq!(req.target_path, "/mnt/x");
    }

    #[test]
    fn pod_uid_is_uuid_shaped_and_subject_is_kubernetes() {
        let pod = Pod::new("ns", "p", "sa");
        assert_eq!(pod.uid.len(), 36);
        assert_eq!(pod.uid.as_bytes()[14], b'4');
        assert_eq!(pod.subject(), "system:serviceaccount:ns:sa");
    }
}
