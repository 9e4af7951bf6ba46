//! The HTTP side doors beside the driver's socket: kubelet's probes and Prometheus' scrapes.
//!
//! Both are tiny GET-only HTTP/1.1 servers on TCP listeners. Nothing here touches a Mount:
//! a slow or hostile client of these ports can hold at most [`MAX_CONNECTIONS`] connections
//! and must send its request head within [`HEADER_TIMEOUT`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::health::{Health, HealthOptions};

/// Connections served at once per listener; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 32;

/// Time a client has to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {address}: {error}")]
pub struct BindError {
    /// Which endpoint: "health probes" or "metrics".
    pub what: &'static str,
    /// The address asked for.
    pub address: String,
    /// Why (its text is in the message, so it is not also the error's `source`).
    pub error: io::Error,
}

/// The side doors of a serving provider: the probe and metrics listeners, and the gRPC
/// health service to add to the driver's server. The HTTP servers stop when this is dropped.
pub struct Endpoints {
    health: Arc<Health>,
    reporter: HealthReporter,
    tasks: Vec<JoinHandle<()>>,
}

impl Endpoints {
    /// Binds the probe port and, unless `metrics_address` is empty, the metrics address;
    /// logs where each listens (the port the kernel chose, for port 0) and starts serving.
    pub async fn start(health: HealthOptions, metrics_address: &str) -> Result<Self, BindError> {
        let probe_address = format!(":{}", health.port);
        let probes = bind(&probe_address).await.map_err(|error| BindError {
            what: "health probes",
            address: probe_address,
            error,
        })?;
        let metrics = match metrics_address {
            "" => None,
            address => Some(bind(address).await.map_err(|error| BindError {
                what: "metrics",
                address: address.to_owned(),
                error,
            })?),
        };

        let reporter = HealthReporter::new();
        let liveness_path = health.path.clone();
        let health = Arc::new(Health::new(health, reporter.clone()));
        let mut tasks = Vec::new();

        log_listening(&probes, "health probes listening", &liveness_path);
        let prober = Arc::clone(&health);
        tasks.push(serve(probes, move |path| {
            let prober = Arc::clone(&prober);
            async move { prober.route(&path).await }
        }));

        if let Some(metrics) = metrics {
            crate::metrics::init();
            log_listening(&metrics, "metrics listening", "/metrics");
            tasks.push(serve(metrics, |path| async move { metrics_route(&path) }));
        }
        Ok(Self {
            health,
            reporter,
            tasks,
        })
    }

    /// The lifecycle the probes report.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// The `grpc.health.v1.Health` service for the driver's socket.
    pub fn grpc_health(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn log_listening(listener: &TcpListener, message: &'static str, path: &str) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, path, "{message}"),
        Err(error) => tracing::warn!(%error, "{message} on an unknown address"),
    }
}

fn metrics_route(path: &str) -> Answer {
    if path != "/metrics" {
        return Answer::text(StatusCode::NOT_FOUND, "not found\n");
    }
    Answer {
        status: StatusCode::OK,
        content_type: crate::metrics::CONTENT_TYPE,
        body: crate::metrics::encode(),
    }
}

/// What a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Answer {
    /// A plain-text answer.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Binds a listen address as the flags spell it: `:port` means every interface (IPv6 and
/// IPv4 where the node has IPv6, else IPv4), `host:port` that host only.
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    let Some(port) = address.strip_prefix(':') else {
        return TcpListener::bind(address).await;
    };
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address:?} is not :port or host:port"),
        )
    })?;
    // A dual-stack socket on `[::]` also accepts IPv4; nodes without IPv6 refuse it.
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await,
    }
}

/// Serves `route` on `listener` until the returned task is aborted. `route` gets the
/// request path of every GET (and HEAD); other methods are refused with 405.
pub fn serve<F, Fut>(listener: TcpListener, route: F) -> JoinHandle<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let route = Arc::new(route);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(%error, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let route = Arc::clone(&route);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let route = Arc::clone(&route);
                    async move { Ok::<_, Infallible>(answer(&*route, request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                drop(permit);
            });
        }
    })
}

async fn answer<F, Fut>(route: &F, request: Request<Incoming>) -> Response<Full<Bytes>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Answer>,
{
    let head = request.method() == Method::HEAD;
    let answer = if request.method() == Method::GET || head {
        route(request.uri().path().to_owned()).await
    } else {
        Answer::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n")
    };
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(answer.body)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(answer.content_type),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bare_port_binds_every_interface() {
        let listener = bind(":0").await.unwrap();
        let local = listener.local_addr().unwrap();
        assert!(local.ip().is_unspecified(), "{local}");
        assert_ne!(local.port(), 0);
    }

    #[tokio::test]
    async fn a_host_and_port_binds_that_host() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            listener.local_addr().unwrap().ip(),
            std::net::IpAddr::from(Ipv4Addr::LOCALHOST)
        );
        assert!(bind(":http").await.is_err());
    }
}
