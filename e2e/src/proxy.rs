//! The world's egress: an HTTP CONNECT proxy on loopback, the only way a client reaches the
//! doubles. Given as `HTTPS_PROXY`, it tunnels `CONNECT <host>:443` for the host names the world
//! imitates (Entra's authority hosts, the OIDC issuer, and vaults that exist) to the HTTPS
//! front — and to nothing else. Any other target or method is answered 502 and recorded, so a
//! test can prove the provider never tried to leave the world.
//!
//! The proxy never resolves a name and never dials anything but the front's loopback port.

use crate::cloud::{Cloud, OIDC_ISSUER_HOST};
use crate::keyvault::KeyVault;
use crate::tasks::{self, AbortOnDrop};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The longest request head the proxy reads.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

const REFUSED: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// One request to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequestSeen {
    /// The method: `CONNECT` for tunnels.
    pub method: String,
    /// The request target: `host:port` for CONNECT, a URL for anything else.
    pub target: String,
    /// Whether the proxy opened a tunnel to the front.
    pub tunnelled: bool,
}

/// A running proxy.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<ProxyRequestSeen>>>,
    _acceptor: AbortOnDrop,
}

impl Proxy {
    /// Binds an ephemeral loopback port, so the proxy's URL is known before it serves.
    pub async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on loopback")
    }

    /// Serves on `listener` (from [`Proxy::bind`]); tunnels go to `front`.
    pub fn start(listener: TcpListener, front: SocketAddr, keyvault: KeyVault) -> Proxy {
        assert!(
            front.ip().is_loopback(),
            "the proxy only tunnels to loopback"
        );
        let addr = listener.local_addr().expect("proxy address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tasks::spawn_acceptor(listener, move |stream| {
            serve(stream, front, keyvault.clone(), record.clone())
        });
        Proxy {
            addr,
            seen,
            _acceptor: task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<ProxyRequestSeen> {
        self.seen.lock().expect("proxy log lock").clone()
    }
}

async fn serve(
    mut client: TcpStream,
    front: SocketAddr,
    keyvault: KeyVault,
    seen: Arc<Mutex<Vec<ProxyRequestSeen>>>,
) {
    let Ok(Some((head, early))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await
    else {
        let _ = client.write_all(REFUSED).await;
        return;
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();

    let tunnelled = method == "CONNECT" && allowed(&target, &keyvault);
    seen.lock().expect("proxy log lock").push(ProxyRequestSeen {
        method,
        target,
        tunnelled,
    });
    if !tunnelled {
        let _ = client.write_all(REFUSED).await;
        return;
    }

    let Ok(mut upstream) = TcpStream::connect(front).await else {
        let _ = client.write_all(REFUSED).await;
        return;
    };
    // A tunnel forwards what arrives at once; Nagle would hold small frames back.
    let _ = upstream.set_nodelay(true);
    if client.write_all(ESTABLISHED).await.is_err() || upstream.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads up to the blank line that ends the head; returns the head and any bytes after it.
async fn read_head(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = client.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let early = buffer.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buffer).into_owned(), early));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return None;
        }
    }
}

/// Whether `host:port` is one of the world's hosts on 443.
fn allowed(target: &str, keyvault: &KeyVault) -> bool {
    let Some((host, "443")) = target.rsplit_once(':') else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    Cloud::from_authority_host(&host).is_some()
        || host == OIDC_ISSUER_HOST
        || keyvault.serves_host(&host)
}
