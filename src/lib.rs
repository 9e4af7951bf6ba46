//! akv-csi-provider: the Azure Key Vault provider for the Secrets Store CSI Driver.
//!
//! The driver calls [`server::ProviderService`] over a unix socket. Each Mount flows through
//! the modules in order: [`request`] (parse and validate) → [`identity`] (an Entra ID token,
//! cached per identity) → [`keyvault`] (fetch, concurrently) → [`render`] (file contents) →
//! [`mount`] (the all-or-nothing answer). [`error`] maps every failure to one gRPC status.

pub mod admin;
pub mod cloud;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod identity;
pub mod keyvault;
pub mod metrics;
pub mod mount;
pub mod proto;
mod redact;
pub mod render;
pub mod request;
pub mod secret;
pub mod server;
pub mod socket;
pub mod standalone;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::identity::{TokenCache, TokenProvider};
use crate::keyvault::KeyVault;
use crate::mount::{MountOptions, Mounter};
use crate::proto::csi_driver_provider_server::CsiDriverProviderServer;

/// Why the provider could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTPS client could not be built (for example, unreadable trusted roots).
    #[error("cannot build the HTTPS client: {0}")]
    Client(#[from] reqwest::Error),
    /// The health or metrics port could not be opened.
    #[error(transparent)]
    Bind(#[from] admin::BindError),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Builds the Mount path from `config`: one shared HTTPS client, the token cache and the Key
/// Vault client.
pub fn mounter(config: &Config) -> Result<Mounter, RunError> {
    let http = http::client(&config.user_agent)?;
    let imds_http = http::imds_client(&config.user_agent)?;
    let policy = http::RetryPolicy::default();
    let cache = TokenCache::new(config.token_cache_capacity, Duration::from_secs(300));
    let tokens = TokenProvider::new(
        http.clone(),
        imds_http,
        config.imds_endpoint.clone(),
        policy.clone(),
        cache,
    );
    let options = MountOptions {
        defaults: request::Defaults {
            cloud_name: config.cloud_name.clone(),
            authority_host: config.authority_host.clone(),
        },
        concurrency: config.mount_concurrency,
        default_timeout: config.mount_timeout,
        render: render::RenderOptions {
            construct_pem_chain: config.construct_pem_chain,
            write_cert_and_key_in_separate_files: config.write_cert_and_key_in_separate_files,
        },
    };
    Ok(Mounter::new(
        tokens,
        KeyVault::new(http, policy, config.vault_concurrency),
        options,
    ))
}

/// Serves the driver on `listener` until `shutdown` completes, then gives in-flight Mounts
/// up to `config.shutdown_grace` to finish.
pub async fn run(
    listener: UnixListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let service = server::ProviderService::new(Arc::new(mounter(&config)?));
    let endpoints = admin::Endpoints::start(config.health.clone(), &config.metrics_addr).await?;
    let health = endpoints.health();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls; waiting for in-flight Mounts");
        health.stopping().await;
        let _ = stopping_tx.send(());
    };

    endpoints.health().serving().await;
    let serve = tonic::transport::Server::builder()
        .add_service(endpoints.grpc_health())
        .add_service(CsiDriverProviderServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal);
    tokio::pin!(serve);

    let grace = config.shutdown_grace;
    let overdue = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = &mut serve => Ok(result?),
        () = overdue => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight Mounts did not finish in time; exiting");
            Ok(())
        }
    }
}
