//! Health: kubelet's liveness and readiness probes over HTTP, and the gRPC health service on
//! the driver's socket.
//!
//! Liveness (`--healthz-path`, `/healthz` by default) proves what the driver needs: it dials
//! the provider's own socket by its path and makes a `Version` call, within
//! `--healthz-timeout`. A wedged server, a full accept queue or a socket file deleted from
//! under the process all fail it, and kubelet restarts the container. Readiness (`/readyz`)
//! says the socket is bound and the process is not shutting down. Neither probe reaches
//! Azure: an Entra ID or Key Vault outage must not restart every provider in the fleet.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::http::{self, Uri};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::Answer;
use crate::proto::{VersionRequest, VersionResponse};
use crate::server::{API_VERSION, RUNTIME_NAME};

/// Where readiness is served; liveness is at `--healthz-path`.
pub const READINESS_PATH: &str = "/readyz";

/// The service name the gRPC health service reports, besides the server as a whole (`""`).
pub const SERVICE_NAME: &str = "v1alpha1.CSIDriverProvider";

/// Settings of the health endpoints.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// TCP port of the HTTP probes, on every interface; 0 picks a free one (and logs it).
    pub port: u16,
    /// Path of the liveness probe.
    pub path: String,
    /// Time the liveness probe's `Version` call may take.
    pub timeout: Duration,
    /// The driver's socket, which the liveness probe dials.
    pub socket: PathBuf,
}

const STARTING: u8 = 0;
const SERVING: u8 = 1;
const STOPPING: u8 = 2;

/// The provider's lifecycle as the probes report it.
pub struct Health {
    state: AtomicU8,
    options: HealthOptions,
    reporter: HealthReporter,
}

impl Health {
    /// Health for a provider serving on `options.socket`; `reporter` drives the gRPC health
    /// service. Not ready until [`Health::serving`].
    pub fn new(options: HealthOptions, reporter: HealthReporter) -> Self {
        Self {
            state: AtomicU8::new(STARTING),
            options,
            reporter,
        }
    }

    /// The socket is bound and calls are being accepted.
    pub async fn serving(&self) {
        self.state.store(SERVING, Ordering::SeqCst);
        self.reporter
            .set_service_status(SERVICE_NAME, ServingStatus::Serving)
            .await;
    }

    /// Shutdown has begun: no new calls; readiness fails from now on.
    pub async fn stopping(&self) {
        self.state.store(STOPPING, Ordering::SeqCst);
        for service in ["", SERVICE_NAME] {
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }

    /// Answers a probe: liveness at the configured path, readiness at [`READINESS_PATH`].
    pub async fn route(&self, path: &str) -> Answer {
        if path == self.options.path {
            self.liveness().await
        } else if path == READINESS_PATH {
            self.readiness()
        } else {
            Answer::text(StatusCode::NOT_FOUND, "not found\n")
        }
    }

    fn readiness(&self) -> Answer {
        match self.state.load(Ordering::SeqCst) {
            SERVING => Answer::text(StatusCode::OK, "ok\n"),
            STARTING => Answer::text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            _ => Answer::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        }
    }

    async fn liveness(&self) -> Answer {
        if self.state.load(Ordering::SeqCst) == STOPPING {
            return Answer::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        let socket = &self.options.socket;
        let timeout = self.options.timeout;
        let outcome = match tokio::time::timeout(timeout, call_version(socket)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no Version answer within {timeout:?}")),
        };
        match outcome {
            Ok(()) => Answer::text(StatusCode::OK, "ok\n"),
            Err(reason) => {
                tracing::warn!(socket = %socket.display(), %reason, "liveness probe failed");
                let body = format!("the gRPC server on {} failed: {reason}\n", socket.display());
                Answer::text(StatusCode::SERVICE_UNAVAILABLE, body)
            }
        }
    }
}

/// Dials `socket` afresh and makes one `Version` call, as the driver would.
pub async fn call_version(socket: &Path) -> Result<(), String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
    let connection = tokio::spawn(connection);

    let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let mut sender = sender.clone();
        async move { sender.send_request(request).await }
    });
    let mut grpc = tonic::client::Grpc::with_origin(service, Uri::from_static("http://localhost"));
    let request = tonic::Request::new(VersionRequest {
        version: API_VERSION.into(),
    });
    let path = PathAndQuery::from_static("/v1alpha1.CSIDriverProvider/Version");
    let codec = tonic_prost::ProstCodec::<VersionRequest, VersionResponse>::default();
    let answer = grpc.unary(request, path, codec).await;
    connection.abort();

    let version = answer
        .map_err(|status| format!("Version failed: {status}"))?
        .into_inner();
    if version.runtime_name != RUNTIME_NAME {
        return Err(format!(
            "another server answers on this socket: {:?}",
            version.runtime_name
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(socket: PathBuf) -> Health {
        let reporter = HealthReporter::new();
        let options = HealthOptions {
            port: 0,
            path: "/healthz".into(),
            timeout: Duration::from_millis(500),
            socket,
        };
        Health::new(options, reporter)
    }

    #[tokio::test]
    async fn readiness_follows_the_lifecycle() {
        let health = health(PathBuf::from("/nonexistent/azure.sock"));
        let status = |a: Answer| (a.status, a.body);

        assert_eq!(
            status(health.route("/readyz").await),
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
        );
        health.serving().await;
        assert_eq!(
            status(health.route("/readyz").await),
            (StatusCode::OK, "ok\n".into())
        );
        health.stopping().await;
        assert_eq!(
            status(health.route("/readyz").await),
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
        );
        assert_eq!(health.route("/metrics").await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn liveness_fails_when_nothing_answers_on_the_socket() {
        let dir = std::env::temp_dir().join(format!("akv-health-{}", std::process::id()));
        let health = health(dir.join("azure.sock"));
        health.serving().await;

        let answer = health.route("/healthz").await;

        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.body.contains("cannot connect"), "{}", answer.body);
    }
}
