//! The Go provider's request pattern, replayed against the same doubles, proxy and latency:
//! the baseline the benchmark compares the product with.
//!
//! Per Mount the Go provider (v1.x) builds a new credential and new Key Vault clients, so it
//! sends one token request to Entra ID, then — per object type in the Mount — one
//! unauthenticated GET that only fetches the 401 challenge, then every object's GET, one after
//! another. This client sends exactly that sequence. It reuses one HTTP/2 connection pool
//! across Mounts (Go's SDK shares its transport too), which makes the baseline a little faster
//! than the real Go provider, never slower: the ratios are conservative.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

/// The client-assertion type of workload identity.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The api-version the Go provider's SDK sends.
const API_VERSION: &str = "7.4";

/// One identity's view of one vault, as the Go provider sees it.
#[derive(Debug, Clone)]
pub struct GoPattern {
    /// Reaches the world through its proxy, trusting its CA.
    pub http: reqwest::Client,
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
    pub token_url: String,
    /// The identity's client id.
    pub client_id: String,
    /// `https://<vault>.vault.azure.net/`.
    pub vault_url: String,
}

impl GoPattern {
    /// One Mount of the secrets `names` with the pod's service-account token; returns its time
    /// and the number of objects fetched.
    pub async fn mount(&self, assertion: &str, names: &[String]) -> Result<Duration, String> {
        let started = Instant::now();
        let token = self.token(assertion).await?;

        // The SDK's first request carries no token: it learns the scope from the challenge.
        if let Some(first) = names.first() {
            let url = self.secret_url(first);
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Err(format!("challenge answered {}", response.status()));
            }
            let _ = response.bytes().await;
        }

        for name in names {
            let response = self
                .http
                .get(self.secret_url(name))
                .bearer_auth(&token)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status() != StatusCode::OK {
                return Err(format!("GET secret {name} answered {}", response.status()));
            }
            let bundle: Value = response.json().await.map_err(|e| e.to_string())?;
            if bundle.get("value").is_none() {
                return Err(format!("secret {name} has no value"));
            }
        }
        Ok(started.elapsed())
    }

    async fn token(&self, assertion: &str) -> Result<String, String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", "https://vault.azure.net/.default")
            .append_pair("client_assertion_type", JWT_BEARER)
            .append_pair("client_assertion", assertion)
            .finish();
        let response = self
            .http
            .post(&self.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        answer
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("token request answered {status}: {answer}"))
    }

    fn secret_url(&self, name: &str) -> String {
        format!(
            "{}secrets/{name}/?api-version={API_VERSION}",
            self.vault_url
        )
    }
}
