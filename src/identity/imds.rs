//! The node's managed identity, from the Azure Instance Metadata Service.
//!
//! IMDS is a link-local plain-http endpoint: it is reached without any proxy, with the
//! `Metadata: true` header, and its transient answers (404 while the identity is being
//! assigned, 410 while IMDS starts, 429, 5xx) are retried.

use serde::Deserialize;
use tokio::time::Instant;

use super::entra::Seconds;
use super::{AccessToken, IdentityError};
use crate::http::{self, GaveUp, LastFailure, RetryPolicy};
use crate::secret::SecretString;

/// One token request to IMDS.
pub struct Request<'a> {
    /// Base URL, e.g. `http://169.254.169.254`.
    pub endpoint: &'a str,
    /// Resource, e.g. `https://vault.azure.net`.
    pub resource: &'a str,
    /// A user-assigned identity's client id.
    pub client_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<SecretString>,
    expires_in: Option<Seconds>,
    error: Option<String>,
    error_description: Option<String>,
}

/// IMDS's own list of answers worth another try.
fn transient(status: u16) -> bool {
    matches!(status, 404 | 410 | 429) || status >= 500
}

/// Requests a token from IMDS, retrying its transient answers until `deadline`.
pub async fn token(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    request: Request<'_>,
    deadline: Instant,
) -> Result<AccessToken, IdentityError> {
    let url = format!("{}/metadata/identity/oauth2/token", request.endpoint);
    let mut query = vec![
        ("api-version", "2018-02-01"),
        ("resource", request.resource),
    ];
    if let Some(id) = request.client_id {
        query.push(("client_id", id));
    }
    let unreachable = |gave_up| IdentityError::Unreachable {
        endpoint: "IMDS".into(),
        gave_up,
    };

    let mut attempts = 0;
    loop {
        let started = Instant::now();
        let make = || client.get(&url).query(&query).header("Metadata", "true");
        let response = http::send(policy, deadline, make)
            .await
            .map_err(unreachable)?;
        attempts += 1;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();

        if (200..300).contains(&status) {
            return match parsed {
                Some(TokenResponse {
                    access_token: Some(value),
                    expires_in: Some(life),
                    ..
                }) => Ok(AccessToken::new(value, started, life.duration(), None)),
                _ => Err(IdentityError::BadResponse {
                    endpoint: "IMDS".into(),
                    status,
                }),
            };
        }

        // `http::send` already retried 429 and 5xx; 404 and 410 are transient only for IMDS.
        let wait = policy.base_delay * attempts;
        if transient(status) && attempts < policy.max_attempts && Instant::now() + wait < deadline {
            tracing::warn!(status, attempt = attempts, "IMDS not ready, retrying");
            tokio::time::sleep(wait).await;
            continue;
        }
        if transient(status) {
            let last = LastFailure::Status(status);
            let deadline_hit = Instant::now() + wait >= deadline;
            return Err(unreachable(GaveUp {
                attempts,
                deadline: deadline_hit,
                last,
            }));
        }
        let message = parsed
            .and_then(|p| p.error_description.or(p.error))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(IdentityError::Imds {
            client_id: request.client_id.map(str::to_owned),
            status,
            message,
        });
    }
}
