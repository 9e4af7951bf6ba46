//! The one HTTPS client every credential and Key Vault call shares, and the retry loop that
//! bounds every request by the Mount's deadline.
//!
//! One client means one connection pool: after the first Mount, tokens and objects travel
//! over warm (HTTP/2 where offered) connections. Proxy settings (`HTTPS_PROXY`, `NO_PROXY`)
//! and trusted roots (`SSL_CERT_FILE`, `SSL_CERT_DIR`) are read once, when the client is built.
//!
//! The Azure SDK's own pipeline is not used: its retry policy knows nothing of a Mount's
//! deadline, and its Key Vault clients spend a round trip per client on an unauthenticated
//! challenge whose answer the cloud table already gives. Both requests we make (a token
//! POST and a Key Vault GET) are small enough to own outright.

use std::error::Error as _;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::time::Instant;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("akv-csi-provider/", env!("CARGO_PKG_VERSION"));

/// Builds the shared client for Entra ID and Key Vault: proxy from the environment,
/// trusted roots from the platform (honouring `SSL_CERT_FILE`), https only.
pub fn client(user_agent: &str) -> reqwest::Result<reqwest::Client> {
    install_crypto();
    reqwest::Client::builder()
        .user_agent(user_agent)
        .https_only(true)
        .connect_timeout(Duration::from_secs(5))
        // Longer than the driver's rotation interval (2 minutes by default), so a quiet node
        // still finds its connections warm at the next rotation.
        .pool_idle_timeout(Duration::from_secs(300))
        .tcp_keepalive(Duration::from_secs(30))
        .build()
}

/// Builds the client for IMDS: plain http to a link-local address, never through a proxy.
pub fn imds_client(user_agent: &str) -> reqwest::Result<reqwest::Client> {
    install_crypto();
    reqwest::Client::builder()
        .user_agent(user_agent)
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .build()
}

fn install_crypto() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How hard to try one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts at most, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubled per retry.
    pub base_delay: Duration,
    /// Largest backoff ceiling, and largest `Retry-After` honoured.
    pub max_delay: Duration,
    /// Time limit of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(20),
        }
    }
}

/// The last thing that went wrong when a request is given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastFailure {
    /// A retryable status, e.g. 429 or 503.
    Status(u16),
    /// No response: connection refused or reset, TLS failure, attempt timeout.
    Transport(String),
    /// The deadline came before the first attempt could be made.
    NotAttempted,
}

/// A request given up after retries, or because the deadline came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// Attempts made.
    pub attempts: u32,
    /// The deadline, not the attempt count, ended the tries.
    pub deadline: bool,
    /// What the last attempt saw.
    pub last: LastFailure,
}

impl GaveUp {
    /// Whether the last attempt was throttled (429).
    pub fn throttled(&self) -> bool {
        self.last == LastFailure::Status(429)
    }
}

/// Statuses worth another try: timeouts, throttling and server-side failures.
pub fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Sends the request that `make` builds until it gets a non-retryable answer, retrying with
/// full-jitter exponential backoff (or the server's `Retry-After`) and never waiting past
/// `deadline`. Non-retryable statuses, 4xx among them, are returned for the caller to read.
pub async fn send(
    policy: &RetryPolicy,
    deadline: Instant,
    make: impl Fn() -> RequestBuilder,
) -> Result<Response, GaveUp> {
    send_observed(policy, deadline, make, |_, _| {}).await
}

/// [`send`], telling `observe` of every attempt: its number (from 1) and the status it got,
/// or `None` when no answer came. Metrics count requests here.
pub async fn send_observed(
    policy: &RetryPolicy,
    deadline: Instant,
    make: impl Fn() -> RequestBuilder,
    observe: impl Fn(u32, Option<u16>),
) -> Result<Response, GaveUp> {
    let mut attempts = 0;
    // Throttling is the server asking for patience, not a fault: 429s are retried until the
    // deadline (or a generous cap), while other failures count against `max_attempts`.
    let mut failures = 0;
    let mut last = LastFailure::NotAttempted;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(GaveUp {
                attempts,
                deadline: true,
                last,
            });
        }
        attempts += 1;

        let attempt = make()
            .timeout(policy.attempt_timeout.min(remaining))
            .send()
            .await;
        observe(attempts, attempt.as_ref().ok().map(|r| r.status().as_u16()));
        let retry_after = match attempt {
            Ok(response) if !retryable(response.status()) => return Ok(response),
            Ok(response) => {
                last = LastFailure::Status(response.status().as_u16());
                retry_after(&response)
            }
            Err(error) => {
                last = LastFailure::Transport(describe(&error));
                None
            }
        };
        if last != LastFailure::Status(429) {
            failures += 1;
        }
        if failures >= policy.max_attempts || attempts >= MAX_THROTTLED_ATTEMPTS {
            return Err(GaveUp {
                attempts,
                deadline: false,
                last,
            });
        }

        // Jitter on `Retry-After` too, so that requests throttled together do not all come
        // back in the same instant.
        let wait = retry_after
            .map(|d| d.min(policy.max_delay).mul_f64(1.0 + fastrand::f64() / 4.0))
            .unwrap_or_else(|| backoff(policy, attempts));
        if Instant::now() + wait >= deadline {
            return Err(GaveUp {
                attempts,
                deadline: true,
                last,
            });
        }
        tracing::warn!(attempt = attempts, wait_ms = wait.as_millis() as u64, last = ?last, "retrying");
        tokio::time::sleep(wait).await;
    }
}

/// Most attempts for one request however they fail, throttling included; the deadline
/// usually ends the tries long before.
const MAX_THROTTLED_ATTEMPTS: u32 = 40;

/// Full jitter: a uniform wait between zero and the doubled ceiling.
pub fn backoff(policy: &RetryPolicy, attempts: u32) -> Duration {
    let ceiling = policy
        .base_delay
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(policy.max_delay);
    ceiling.mul_f64(fastrand::f64())
}

/// `Retry-After` in seconds. The HTTP-date form is not used by Key Vault or Entra and is
/// ignored, falling back to backoff.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    parse_retry_after(value.to_str().ok()?)
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error with its causes, which reqwest keeps in the source chain.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_only() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn backoff_stays_under_a_doubling_ceiling() {
        let policy = RetryPolicy::default();
        for attempts in 1..10 {
            let ceiling = (policy.base_delay * (1 << (attempts - 1))).min(policy.max_delay);
            for _ in 0..50 {
                assert!(backoff(&policy, attempts) <= ceiling);
            }
        }
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 400, 401, 403, 404, 409] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
