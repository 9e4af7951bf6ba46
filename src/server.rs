//! The gRPC edge: the driver's `Version` and `Mount` calls, with one log line per Mount.
//!
//! This is where a Mount's deadline is taken from the call's `grpc-timeout`, and where a
//! failed Mount becomes a gRPC status, via [`MountError::to_status`].

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::error::MountError;
use crate::mount::Mounter;
use crate::proto::csi_driver_provider_server::CsiDriverProvider;
use crate::proto::{MountRequest, MountResponse, VersionRequest, VersionResponse};

/// The API version of the driver contract.
pub const API_VERSION: &str = "v1alpha1";

/// Our name in `VersionResponse.runtime_name`.
pub const RUNTIME_NAME: &str = "akv-csi-provider";

/// The provider service.
pub struct ProviderService {
    mounter: Arc<Mounter>,
}

impl ProviderService {
    /// A service that serves Mounts with `mounter`.
    pub fn new(mounter: Arc<Mounter>) -> Self {
        Self { mounter }
    }
}

#[tonic::async_trait]
impl CsiDriverProvider for ProviderService {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        let started = std::time::Instant::now();
        let timer = crate::metrics::MountTimer::start();
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(less_margin);
        let request = request.into_inner();

        let params = match self.mounter.parse(&request) {
            Ok(params) => params,
            Err(error) => {
                let error = MountError::from(error);
                timer.finish(error.code());
                let _span = crate::telemetry::unparsed_mount_span(&request.attributes).entered();
                tracing::error!(
                    result = "error", code = ?error.code(), error = %error,
                    duration_ms = elapsed_ms(started), "mount refused: invalid request"
                );
                return Err(error.to_status());
            }
        };

        let span = tracing::info_span!(
            "mount",
            pod.namespace = %params.pod.namespace,
            pod.name = %params.pod.name,
            vault.name = %params.vault,
            spc = params.secret_provider_class.as_deref().unwrap_or("-"),
        );
        let objects = params.objects.len();
        let result = self
            .mounter
            .mount(&params, timeout)
            .instrument(span.clone())
            .await;

        let _entered = span.enter();
        match result {
            Ok(response) => {
                timer.finish(tonic::Code::Ok);
                tracing::info!(
                    result = "success",
                    objects,
                    files = response.files.len(),
                    duration_ms = elapsed_ms(started),
                    "mounted"
                );
                Ok(Response::new(response))
            }
            Err(error) => {
                timer.finish(error.code());
                tracing::error!(
                    result = "error", objects, code = ?error.code(), error = %error, duration_ms = elapsed_ms(started),
                    "mount failed"
                );
                Err(error.to_status())
            }
        }
    }
}

fn elapsed_ms(started: std::time::Instant) -> u64 {
    started.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Keeps back a tenth of the caller's time (at most two seconds) to answer before it gives up.
fn less_margin(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_grpc_timeout_unit() {
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("119999m"),
            Some(Duration::from_millis(119_999))
        );
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("10n"), Some(Duration::from_nanos(10)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }

    #[test]
    fn the_margin_is_a_tenth_up_to_two_seconds() {
        assert_eq!(
            less_margin(Duration::from_secs(120)),
            Duration::from_secs(118)
        );
        assert_eq!(
            less_margin(Duration::from_secs(5)),
            Duration::from_millis(4500)
        );
    }
}
