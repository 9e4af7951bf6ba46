//! The node's managed identity, from the Azure Instance Metadata Service.
//!
//! IMDS is a link-local plain-http endpoint: it is reached without any proxy (its client is
//! built with none) and with the `Metadata: true` header. Its retry rules are its own: 404
//! (the identity is still being assigned), 410 (IMDS is being upgraded, which can take 70 s),
//! 429 and every 5xx are retried, and so are connection failures, with jittered exponential
//! backoff. A 410 is retried until the deadline whatever the attempt count, since an upgrade
//! outlasts the usual attempts.

use serde::Deserialize;
use tokio::time::Instant;

use super::entra::Seconds;
use super::{AccessToken, IdentityError};
use crate::http::{self, GaveUp, LastFailure, RetryPolicy};
use crate::secret::SecretString;

/// The IMDS API version of the token endpoint.
const API_VERSION: &str = "2018-02-01";

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
    let mut query = vec![("api-version", API_VERSION), ("resource", request.resource)];
    if let Some(id) = request.client_id {
        query.push(("client_id", id));
    }
    let gave_up = |attempts, deadline, last| IdentityError::Unreachable {
        endpoint: "IMDS".into(),
        gave_up: GaveUp {
            attempts,
            deadline,
            last,
        },
    };

    let mut attempts = 0;
    let mut last = LastFailure::NotAttempted;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(gave_up(attempts, true, last));
        }
        attempts += 1;

        let started = Instant::now();
        let sent = client
            .get(&url)
            .query(&query)
            .header("Metadata", "true")
            .timeout(policy.attempt_timeout.min(remaining))
            .send()
            .await;
        last = match sent {
            Ok(response) if !transient(response.status().as_u16()) => {
                return answer(response, started, request.client_id).await;
            }
            Ok(response) => LastFailure::Status(response.status().as_u16()),
            Err(error) => LastFailure::Transport(http::describe(&error)),
        };

        let upgrading = last == LastFailure::Status(410);
        if attempts >= policy.max_attempts && !upgrading {
            return Err(gave_up(attempts, false, last));
        }
        let wait = http::backoff(policy, attempts);
        if Instant::now() + wait >= deadline {
            return Err(gave_up(attempts, true, last));
        }
        tracing::warn!(
            attempt = attempts, wait_ms = wait.as_millis() as u64, last = ?last,
            "IMDS not ready, retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Reads a final answer: a token, or IMDS's refusal with the usual cause.
async fn answer(
    response: reqwest::Response,
    started: Instant,
    client_id: Option<&str>,
) -> Result<AccessToken, IdentityError> {
    let status = response.status().as_u16();
    let bad_response = || IdentityError::BadResponse {
        endpoint: "IMDS".into(),
        status,
    };
    let body = response.bytes().await.map_err(|_| bad_response())?;
    let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();

    if (200..300).contains(&status) {
        return match parsed {
            Some(TokenResponse {
                access_token: Some(value),
                expires_in: Some(life),
                ..
            }) => Ok(AccessToken::new(value, started, life.duration(), None)),
            _ => Err(bad_response()),
        };
    }

    let mut message = parsed
        .and_then(|p| p.error_description.or(p.error))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    if status == 400 && message.contains("Identity not found") {
        message.push_str(match client_id {
            Some(_) => {
                " [no identity with this client id is assigned to the node's VM or scale set: \
                 assign it, or correct userAssignedIdentityID]"
            }
            None => {
                " [the node's VM or scale set has no system-assigned identity: enable it, or \
                 set userAssignedIdentityID to a user-assigned identity's client id]"
            }
        });
    }
    Err(IdentityError::Imds {
        client_id: client_id.map(str::to_owned),
        status,
        message,
    })
}
