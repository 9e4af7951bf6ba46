//! Background tasks that end with the world: each server's accept loop owns its connection
//! tasks, and dropping the loop's handle aborts the loop and, with it, every connection.

use std::future::Future;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Aborts its task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts connections on `listener` and runs `serve` on each, until the handle is dropped.
pub(crate) fn spawn_acceptor<F, Fut>(listener: TcpListener, serve: F) -> AbortOnDrop
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    AbortOnDrop(tokio::spawn(async move {
        // Dropping the set when this task is aborted aborts every connection task in it.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // As Azure's front ends do: without it, Nagle's algorithm and the
                        // client's delayed ACK add up to 40 ms to answers that share a
                        // connection (HTTP/2 streams), which no real service adds.
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve(stream));
                    }
                    // Out of descriptors or a reset during accept: back off briefly, go on.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }))
}
