//! Entra's metadata documents: the tenant's OpenID configuration, which MSAL reads to find the
//! token endpoint, and the instance-discovery answer it asks for on authorities it does not
//! know. Every URL in them points back at the same authority host, so a client that follows
//! them stays inside the test world.

use super::Entra;
use super::token::Refusal;
use crate::cloud::Cloud;
use crate::wire::{self, Incoming, Response};
use http::StatusCode;
use serde_json::json;

/// Tenant names that stand for "any tenant" in metadata requests.
const MULTI_TENANT_NAMES: [&str; 3] = ["common", "organizations", "consumers"];

impl Entra {
    /// `GET /{tenant}/v2.0/.well-known/openid-configuration` (or the v1 document).
    pub(super) fn tenant_discovery(&self, cloud: Cloud, tenant: &str, version: &str) -> Response {
        let multi_tenant = MULTI_TENANT_NAMES.contains(&tenant.to_ascii_lowercase().as_str());
        if !multi_tenant && !self.has_tenant(tenant) {
            return Refusal::new(90002, Refusal::tenant_not_found(tenant)).response(cloud);
        }

        let host = cloud.authority_host();
        let base = format!("https://{host}/{tenant}");
        let issuer_tenant = if multi_tenant { "{tenantid}" } else { tenant };
        let (token_endpoint, issuer, keys) = if version == "v2.0" {
            (
                format!("{base}/oauth2/v2.0/token"),
                format!("https://{host}/{issuer_tenant}/v2.0"),
                format!("{base}/discovery/v2.0/keys"),
            )
        } else {
            (
                format!("{base}/oauth2/token"),
                cloud.token_issuer(issuer_tenant),
                format!("{base}/discovery/keys"),
            )
        };

        wire::json(
            StatusCode::OK,
            &json!({
                "token_endpoint": token_endpoint,
                "token_endpoint_auth_methods_supported":
                    ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": keys,
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": false,
                "userinfo_endpoint": format!("https://{host}/oidc/userinfo"),
                "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
                "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
                "http_logout_supported": true,
                "frontchannel_logout_supported": true,
                "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
                "claims_supported": [
                    "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                    "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time",
                    "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash",
                    "c_hash", "email"
                ],
                "kerberos_endpoint": format!("{base}/kerberos"),
                "tenant_region_scope": "NA",
                "cloud_instance_name": host.trim_start_matches("login."),
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }),
        )
    }
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=…`: says the
/// authority is valid and names only itself as alias.
pub(super) fn instance_metadata(cloud: Cloud, request: &Incoming) -> Response {
    let host = cloud.authority_host();
    let tenant = request
        .query_param("authorization_endpoint")
        .and_then(|endpoint| {
            let rest = endpoint.strip_prefix(&format!("https://{host}/"))?;
            Some(rest.split('/').next()?.to_owned())
        })
        .unwrap_or_else(|| "common".to_owned());

    wire::json(
        StatusCode::OK,
        &json!({
            "tenant_discovery_endpoint":
                format!("https://{host}/{tenant}/v2.0/.well-known/openid-configuration"),
            "api-version": "1.1",
            "metadata": [{
                "preferred_network": host,
                "preferred_cache": host,
                "aliases": [host],
            }],
        }),
    )
}
