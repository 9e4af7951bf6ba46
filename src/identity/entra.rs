//! Entra ID's token endpoint: client credentials with a federated assertion (workload
//! identity) or a client secret (service principal), and its AADSTS errors.

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::{AccessToken, IdentityError};
use crate::cloud::Cloud;
use crate::http::{self, RetryPolicy};
use crate::secret::SecretString;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What proves the client's identity.
pub enum Grant<'a> {
    /// The pod's service-account token.
    Assertion(&'a SecretString),
    /// A client secret.
    Secret(&'a SecretString),
}

/// Entra's success and error bodies in one shape; every field is optional on the wire.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<Seconds>,
    refresh_in: Option<Seconds>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
    correlation_id: Option<String>,
}

/// Seconds as a JSON number or a string of digits (IMDS and old endpoints send strings).
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(super) enum Seconds {
    Number(u64),
    Text(#[serde(deserialize_with = "digits")] u64),
}

impl Seconds {
    pub(super) fn duration(self) -> Duration {
        match self {
            Self::Number(s) | Self::Text(s) => Duration::from_secs(s),
        }
    }
}

fn digits<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(serde::de::Error::custom)
}

/// Requests a token for the cloud's Key Vault scope.
pub async fn token(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    cloud: &Cloud,
    tenant: &str,
    client_id: &str,
    grant: Grant<'_>,
    deadline: Instant,
) -> Result<AccessToken, IdentityError> {
    let url = format!("{}{tenant}/oauth2/v2.0/token", cloud.authority);
    let endpoint = format!("Entra ID ({})", cloud.authority.trim_end_matches('/'));
    let scope = cloud.keyvault_scope();
    let make = || {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", scope.as_str()),
        ];
        match grant {
            Grant::Assertion(assertion) => {
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", assertion.expose()));
            }
            Grant::Secret(secret) => form.push(("client_secret", secret.expose())),
        }
        client.post(&url).form(&form)
    };

    let started = Instant::now();
    let response = http::send(policy, deadline, make)
        .await
        .map_err(|gave_up| IdentityError::Unreachable {
            endpoint: endpoint.clone(),
            gave_up,
        })?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| IdentityError::Unreachable {
            endpoint: endpoint.clone(),
            gave_up: http::GaveUp {
                attempts: 1,
                deadline: false,
                last: http::LastFailure::Transport(http::describe(&e)),
            },
        })?;
    let Ok(parsed) = serde_json::from_slice::<TokenResponse>(&body) else {
        return Err(IdentityError::BadResponse { endpoint, status });
    };

    match parsed {
        TokenResponse {
            access_token: Some(value),
            expires_in: Some(life),
            refresh_in,
            ..
        } if (200..300).contains(&status) => {
            let refresh = refresh_in.map(Seconds::duration);
            Ok(AccessToken::new(value, started, life.duration(), refresh))
        }
        TokenResponse {
            error: Some(error),
            error_description,
            error_codes,
            correlation_id,
            ..
        } => {
            let description = error_description.unwrap_or(error);
            let code = error_codes
                .first()
                .copied()
                .or_else(|| aadsts(&description));
            Err(IdentityError::Entra {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                code,
                description: first_part(&description).to_owned(),
                correlation_id,
            })
        }
        _ => Err(IdentityError::BadResponse { endpoint, status }),
    }
}

/// The AADSTS number at the start of a description, e.g. `AADSTS700213: ...`.
fn aadsts(description: &str) -> Option<u32> {
    let rest = description.strip_prefix("AADSTS")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The description without the trace, correlation and timestamp lines Entra appends.
fn first_part(description: &str) -> &str {
    let end = [" Trace ID:", "\r\n", "\n"]
        .iter()
        .filter_map(|marker| description.find(marker))
        .min()
        .unwrap_or(description.len());
    description[..end].trim()
}

/// The usual cause of an AADSTS error, in a few words, for the operator reading the event.
pub fn hint(code: u32) -> Option<&'static str> {
    Some(match code {
        70021 => {
            "no federated identity credential matches the token's issuer, subject and audience \
             (a new credential can take a few minutes to propagate)"
        }
        700211 => {
            "the federated credential's issuer must equal the cluster's OIDC issuer URL \
             exactly, trailing slash included"
        }
        700212 => "the federated credential's audience must be api://AzureADTokenExchange",
        700213 => {
            "the federated credential's subject must be \
             system:serviceaccount:<namespace>:<service account> exactly"
        }
        7002138 => {
            "the federated credential's subject differs only in case: subjects are case-sensitive"
        }
        700024 => "the service account token is expired or not yet valid: check the node's clock",
        700027 => {
            "the token's signature does not match the keys the OIDC issuer publishes: check \
             the issuer URL and its JWKS"
        }
        700016 => {
            "no application with this client id exists in the tenant: check clientID and tenantID"
        }
        90002 => "the tenant does not exist: check tenantID",
        90061 => {
            "Entra ID could not fetch the cluster's OIDC discovery document: the issuer URL \
             must be reachable from the internet"
        }
        7000215 => "the client secret is wrong or expired",
        _ => return None,
    })
}

/// The description, with the usual cause when the code is a known one.
pub fn describe(code: Option<u32>, description: &str) -> String {
    match code.and_then(hint) {
        Some(hint) => format!("{description} [{hint}]"),
        None => description.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_aadsts_code_and_drops_trace_lines() {
        let text = "AADSTS700213: No matching federated identity record found for presented \
                    assertion subject 'system:serviceaccount:a:b'. Trace ID: 1 Correlation ID: \
                    2 Timestamp: 2026-01-01";
        assert_eq!(aadsts(text), Some(700213));
        assert_eq!(
            first_part(text),
            "AADSTS700213: No matching federated identity record found for presented assertion \
             subject 'system:serviceaccount:a:b'."
        );
        assert_eq!(aadsts("invalid_client"), None);
    }

    #[test]
    fn every_documented_code_has_a_hint() {
        for code in [
            70021, 700211, 700212, 700213, 7002138, 700024, 700027, 700016, 90002, 90061, 7000215,
        ] {
            assert!(hint(code).is_some(), "{code}");
        }
    }

    #[test]
    fn seconds_come_as_numbers_or_text() {
        let parsed: Vec<Seconds> = serde_json::from_str(r#"[3599, "3599"]"#).unwrap();
        assert!(
            parsed
                .iter()
                .all(|s| s.duration() == Duration::from_secs(3599))
        );
    }
}
