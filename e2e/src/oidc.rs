//! The cluster's OIDC issuer double: it signs projected service-account tokens the way the
//! Kubernetes API server does on AKS, and publishes the discovery document and JWKS that
//! Entra ID fetches to check them.
//!
//! The issuer URL has the AKS shape, `https://eastus.oic.prod-aks.azure.com/<tenant>/<uuid>/`
//! (trailing slash included, as AKS writes it into `iss`), and is served by the HTTPS front.

use crate::cloud::OIDC_ISSUER_HOST;
use crate::jwt::SigningKey;
use crate::wire::{self, Incoming, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// How long a projected token is valid, as the provider's token requests ask for.
const TOKEN_LIFETIME_SECS: i64 = 3600;

/// An OIDC issuer for one simulated cluster.
#[derive(Debug)]
pub struct OidcIssuer {
    url: String,
    path: String,
    key: SigningKey,
}

impl OidcIssuer {
    /// A new issuer with a fresh signing key and a random path.
    pub fn generate() -> OidcIssuer {
        let path = format!("/{}/{}", wire::guid(), wire::guid());
        OidcIssuer {
            url: format!("https://{OIDC_ISSUER_HOST}{path}/"),
            path,
            key: SigningKey::generate(wire::version_id()),
        }
    }

    /// The issuer URL, exactly as it appears in `iss` (with the trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The signing key's public JWK Set.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk()]})
    }

    /// Signs arbitrary `claims` with the issuer's key (header carries its `kid`).
    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims)
    }

    /// A projected service-account token as the kubelet hands it to the driver: RS256,
    /// `sub` `system:serviceaccount:<ns>:<sa>`, one audience, valid from now for an hour.
    pub fn sa_token(
        &self,
        namespace: &str,
        service_account: &str,
        pod: &str,
        pod_uid: &str,
        audience: &str,
    ) -> String {
        let now = wire::now();
        self.sign(&json!({
            "aud": [audience],
            "exp": now + TOKEN_LIFETIME_SECS,
            "iat": now,
            "nbf": now,
            "iss": self.url,
            "jti": wire::guid(),
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {
                    "name": "aks-nodepool1-12345678-vmss000000",
                    "uid": wire::stable_guid("node"),
                },
                "pod": {"name": pod, "uid": pod_uid},
                "serviceaccount": {
                    "name": service_account,
                    "uid": wire::stable_guid(&format!("{namespace}/{service_account}")),
                },
            },
        }))
    }

    /// The discovery document, as an AKS issuer publishes it.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("https://{OIDC_ISSUER_HOST}{}/openid/v1/jwks", self.path),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// Answers a request that the front routed to the issuer's host.
    pub(crate) fn handle(&self, request: &Incoming) -> Response {
        if request.method != Method::GET {
            return wire::html_not_found();
        }
        let Some(rest) = request.path.strip_prefix(&self.path) else {
            return wire::html_not_found();
        };
        match rest {
            "/.well-known/openid-configuration" => wire::json(StatusCode::OK, &self.discovery()),
            "/openid/v1/jwks" => wire::json(StatusCode::OK, &self.jwks()),
            _ => wire::html_not_found(),
        }
    }
}
