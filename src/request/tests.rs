//! Parsing whole requests: identity selection, tokens, booleans, secrets and permission.

use base64::Engine as _;
use serde_json::json;

use super::*;

const OBJECTS: &str = "array:\n  - |\n    objectName: db\n    objectType: secret\n";

fn defaults() -> Defaults {
    Defaults {
        cloud_name: "AzurePublicCloud".into(),
        authority_host: None,
    }
}

fn jwt(iss: &str, sub: &str) -> String {
    let encode = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        encode(json!({"alg": "RS256"})),
        encode(json!({"iss": iss, "sub": sub}))
    )
}

fn tokens(token: &str) -> String {
    json!({ TOKEN_AUDIENCE: {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"} })
        .to_string()
}

fn attributes(extra: serde_json::Value) -> String {
    let mut base = json!({
        "keyvaultName": "kv-plat-prod-001",
        "tenantID": "tenant-1",
        "clientID": "client-1",
        "objects": OBJECTS,
        "csi.storage.k8s.io/pod.name": "orders-api",
        "csi.storage.k8s.io/pod.namespace": "orders",
        "csi.storage.k8s.io/serviceAccount.name": "sa-orders",
        "csi.storage.k8s.io/serviceAccount.tokens": tokens(&jwt("https://issuer/", "system:serviceaccount:orders:sa-orders")),
        "secretProviderClass": "spc-orders-kv",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base.to_string()
}

fn parse_with(extra: serde_json::Value, secrets: &str) -> Result<MountParams, RequestError> {
    parse(&attributes(extra), secrets, "420", &defaults())
}

#[test]
fn a_workload_identity_request_parses_whole() {
    let params = parse_with(json!({}), "null").unwrap();

    assert_eq!(params.vault, "kv-plat-prod-001");
    assert_eq!(params.pod.namespace, "orders");
    assert_eq!(params.pod.name, "orders-api");
    assert_eq!(
        params.secret_provider_class.as_deref(),
        Some("spc-orders-kv")
    );
    assert_eq!(params.cloud.name, "AzurePublicCloud");
    assert_eq!(params.objects[0].mode, 0o644);
    let Identity::Workload {
        tenant,
        client_id,
        issuer,
        subject,
        ..
    } = &params.identity
    else {
        panic!("{:?}", params.identity)
    };
    assert_eq!(
        (tenant.as_str(), client_id.as_str()),
        ("tenant-1", "client-1")
    );
    assert_eq!(
        (issuer.as_str(), subject.as_str()),
        ("https://issuer/", "system:serviceaccount:orders:sa-orders")
    );
}

#[test]
fn the_legacy_tenant_spelling_is_read_and_loses_to_the_new_one() {
    let legacy = parse_with(json!({"tenantID": null, "tenantId": "old"}), "null").unwrap();
    let both = parse_with(json!({"tenantID": "new", "tenantId": "old"}), "null").unwrap();
    let tenant = |p: &MountParams| match &p.identity {
        Identity::Workload { tenant, .. } => tenant.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (tenant(&legacy), tenant(&both)),
        ("old".to_owned(), "new".to_owned())
    );
}

#[test]
fn a_missing_token_says_what_the_csidriver_needs() {
    let error = parse_with(
        json!({"csi.storage.k8s.io/serviceAccount.tokens": null}),
        "null",
    )
    .unwrap_err();
    assert_eq!(error, RequestError::MissingToken);
    assert!(
        error
            .to_string()
            .contains("tokenRequests entry with audience \"api://AzureADTokenExchange\"")
    );

    let other_audience = json!({"other": {"token": "x", "expirationTimestamp": ""}}).to_string();
    let error = parse_with(
        json!({"csi.storage.k8s.io/serviceAccount.tokens": other_audience}),
        "null",
    );
    assert_eq!(error.unwrap_err(), RequestError::MissingToken);
}

#[test]
fn the_token_may_come_in_secrets_from_driver_1_6() {
    let sub = "system:serviceaccount:orders:sa-orders";
    let secrets =
        json!({"csi.storage.k8s.io/serviceAccount.tokens": tokens(&jwt("i", sub))}).to_string();
    let params = parse_with(
        json!({"csi.storage.k8s.io/serviceAccount.tokens": null}),
        &secrets,
    )
    .unwrap();
    assert!(matches!(params.identity, Identity::Workload { ref subject, .. } if subject == sub));
}

#[test]
fn a_token_for_another_service_account_is_refused() {
    let forged = tokens(&jwt(
        "https://issuer/",
        "system:serviceaccount:payments:sa-payments",
    ));
    let error = parse_with(
        json!({"csi.storage.k8s.io/serviceAccount.tokens": forged}),
        "null",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "parameter csi.storage.k8s.io/serviceAccount.tokens: the token's subject \
         \"system:serviceaccount:payments:sa-payments\" is not the pod's service account \
         \"system:serviceaccount:orders:sa-orders\""
    );
}

#[test]
fn a_token_that_is_not_a_jwt_is_refused() {
    let error = parse_with(
        json!({"csi.storage.k8s.io/serviceAccount.tokens": tokens("opaque")}),
        "null",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "parameter csi.storage.k8s.io/serviceAccount.tokens: the token for audience \
         api://AzureADTokenExchange is not a JWT with iss and sub"
    );
}

#[test]
fn a_service_principal_comes_from_the_node_publish_secret() {
    let secrets = json!({"ClientID": "sp-client", "CLIENTSECRET": "hunter2"}).to_string();
    let params = parse_with(json!({"clientID": null}), &secrets).unwrap();
    let Identity::ServicePrincipal {
        client_id, secret, ..
    } = &params.identity
    else {
        panic!()
    };
    assert_eq!(
        (client_id.as_str(), secret.expose()),
        ("sp-client", "hunter2")
    );

    let error = parse_with(json!({"clientID": null}), r#"{"clientid":"x"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "MountRequest.secrets: no clientID is set, so a service principal is used, but the \
         node-publish secret has no key \"clientsecret\": reference a Secret with the keys \
         clientid and clientsecret in the volume's nodePublishSecretRef, or set clientID for \
         workload identity"
    );
}

#[test]
fn a_service_principal_without_a_node_publish_secret_says_so() {
    for secrets in ["null", "{}"] {
        let error = parse_with(json!({"clientID": null}), secrets)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "MountRequest.secrets: no clientID is set, so a service principal is used, but the \
             volume has no node-publish secret: reference a Secret with the keys clientid and \
             clientsecret in the volume's nodePublishSecretRef, or set clientID for workload \
             identity"
        );
    }
}

#[test]
fn a_service_principal_needs_a_client_id_and_a_secret_with_content() {
    let bad_id = json!({"clientid": "a/b", "clientsecret": "s"}).to_string();
    let error = parse_with(json!({"clientID": null}), &bad_id).unwrap_err();
    assert_eq!(
        error.to_string(),
        "MountRequest.secrets: the node-publish secret's clientid is not a client id (a GUID of \
         letters, digits and dashes)"
    );
    let empty = json!({"clientid": "c", "clientsecret": ""}).to_string();
    let error = parse_with(json!({"clientID": null}), &empty).unwrap_err();
    assert_eq!(
        error.to_string(),
        "MountRequest.secrets: the node-publish secret's clientsecret is empty"
    );
}

#[test]
fn managed_identity_takes_an_optional_user_assigned_id() {
    let params = parse_with(
        json!({"useVMManagedIdentity": "true", "userAssignedIdentityID": "ua-1"}),
        "null",
    )
    .unwrap();
    assert_eq!(
        params.identity,
        Identity::Managed {
            client_id: Some("ua-1".into())
        }
    );
    let params = parse_with(json!({"useVMManagedIdentity": "T"}), "null").unwrap();
    assert_eq!(params.identity, Identity::Managed { client_id: None });
}

#[test]
fn retired_modes_point_to_workload_identity() {
    let expected = [
        (
            "usePodIdentity",
            "parameter usePodIdentity: aad-pod-identity is retired and not supported: use \
             workload identity (set clientID and usePodIdentity: \"false\")",
        ),
        (
            "useAzureTokenProxy",
            "parameter useAzureTokenProxy: the AKS identity binding (preview) is not supported: \
             use workload identity (set clientID and useAzureTokenProxy: \"false\")",
        ),
    ];
    for (key, message) in expected {
        let error = parse_with(json!({key: "true"}), "null").unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    let error = parse_with(
        json!({"usePodIdentity": "true", "useVMManagedIdentity": "1"}),
        "null",
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "parameter usePodIdentity: is true together with useVMManagedIdentity, but at most one \
         of usePodIdentity, useAzureTokenProxy and useVMManagedIdentity may be true"
    );
}

#[test]
fn booleans_read_like_go() {
    let error = parse_with(json!({"useVMManagedIdentity": "yes"}), "null")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "parameter useVMManagedIdentity: \"yes\" is not a boolean (true or false)"
    );
    assert!(
        parse_with(
            json!({"usePodIdentity": "False", "useVMManagedIdentity": "0"}),
            "null"
        )
        .is_ok()
    );
}

#[test]
fn values_are_trimmed_and_names_checked() {
    assert_eq!(
        parse_with(json!({"keyvaultName": "  kv-1  "}), "null")
            .unwrap()
            .vault,
        "kv-1"
    );
    for (name, reason) in [
        ("", "is required"),
        (
            "kv",
            "\"kv\" is not a vault name (3 to 24 letters, digits or dashes)",
        ),
        (
            "kv.evil.com/",
            "\"kv.evil.com/\" is not a vault name (3 to 24 letters, digits or dashes)",
        ),
    ] {
        let error = parse_with(json!({"keyvaultName": name}), "null")
            .unwrap_err()
            .to_string();
        assert_eq!(error, format!("parameter keyvaultName: {reason}"));
    }
    let error = parse_with(json!({"tenantID": "a/b?c"}), "null")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "parameter tenantID: \"a/b?c\" is not a tenant id (a GUID or a domain name)"
    );
}

#[test]
fn request_fields_must_be_json() {
    let error = parse("{", "null", "420", &defaults())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("MountRequest.attributes: not a JSON object of strings"),
        "{error}"
    );
    let error = parse(&attributes(json!({})), "[1]", "420", &defaults())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "MountRequest.secrets: not a JSON object of strings, nor null"
    );
    let params = parse(&attributes(json!({})), "null", "0420", &defaults()).unwrap();
    assert_eq!(
        params.objects[0].mode, 0o644,
        "the permission is a decimal JSON number"
    );
    let error = parse(&attributes(json!({})), "null", "1000", &defaults())
        .unwrap_err()
        .to_string();
    assert_eq!(error, "MountRequest.permission: 1000 is above 0777 (511)");
}
