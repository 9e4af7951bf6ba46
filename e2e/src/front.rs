//! The HTTPS front: one TLS listener on loopback that stands in for every Azure host the
//! world imitates. It speaks HTTP/2 or HTTP/1.1 (by ALPN), presents a certificate from the
//! test CA naming all those hosts, and routes each request by its host name to a double:
//! authority hosts to Entra ID, the OIDC issuer host to the issuer, vault hosts to Key Vault.
//!
//! Clients never dial it by address: the CONNECT proxy splices their tunnels to it.

use crate::cloud::{Cloud, OIDC_ISSUER_HOST};
use crate::entra::Entra;
use crate::keyvault::KeyVault;
use crate::oidc::OidcIssuer;
use crate::tasks::{self, AbortOnDrop};
use crate::wire::{self, Incoming, Reset, Response};
use http_body_util::{BodyExt as _, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Requests larger than this are refused; nothing legitimate comes close.
const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The doubles the front routes to.
#[derive(Debug)]
pub(crate) struct Doubles {
    pub entra: Entra,
    pub oidc: Arc<OidcIssuer>,
    pub keyvault: KeyVault,
}

/// A running front.
#[derive(Debug)]
pub(crate) struct Front {
    addr: SocketAddr,
    _acceptor: AbortOnDrop,
}

impl Front {
    /// Listens on an ephemeral loopback port and serves until dropped.
    pub async fn start(tls: Arc<rustls::ServerConfig>, doubles: Arc<Doubles>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTPS front on loopback");
        let addr = listener.local_addr().expect("front address");
        let acceptor = TlsAcceptor::from(tls);
        let task = tasks::spawn_acceptor(listener, move |stream| {
            serve_connection(stream, acceptor.clone(), doubles.clone())
        });
        Front {
            addr,
            _acceptor: task,
        }
    }

    /// The loopback address the proxy splices tunnels to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve_connection(stream: TcpStream, acceptor: TlsAcceptor, doubles: Arc<Doubles>) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    let service = hyper::service::service_fn(move |request| {
        let doubles = doubles.clone();
        async move { dispatch(&doubles, request).await }
    });
    // Errors here are clients going away or injected resets: nothing to report.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn dispatch(
    doubles: &Doubles,
    request: http::Request<hyper::body::Incoming>,
) -> Result<Response, Reset> {
    let incoming = read_request(request).await?;
    if let Some(cloud) = Cloud::from_authority_host(&incoming.host) {
        return doubles.entra.handle(cloud, incoming).await;
    }
    if incoming.host == OIDC_ISSUER_HOST {
        return Ok(doubles.oidc.handle(&incoming));
    }
    if Cloud::split_vault_host(&incoming.host).is_some() {
        return doubles.keyvault.handle(incoming).await;
    }
    Ok(wire::html_not_found())
}

/// Reads the whole request; the host comes from `:authority` (HTTP/2) or `Host`.
async fn read_request(request: http::Request<hyper::body::Incoming>) -> Result<Incoming, Reset> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| Reset)?
        .to_bytes();

    let authority = parts
        .uri
        .authority()
        .map(|authority| authority.host().to_owned());
    let host_header = parts
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(|host| {
            host.rsplit_once(':')
                .map_or(host, |(name, _)| name)
                .to_owned()
        });
    let host = authority.or(host_header).unwrap_or_default();

    Ok(Incoming {
        method: parts.method,
        host: host.to_ascii_lowercase(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        version: parts.version,
    })
}
