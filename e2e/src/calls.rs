//! Short forms of what e2e tests do over and over: start the seeded world with a provider,
//! send one Mount, expect a refusal, find a file in an answer.

use tonic::Code;

use crate::driver::{self, pb};
use crate::provider::Provider;
use crate::scenario::Orders;

/// Starts the seeded orders world and the release binary that reaches it, with `flags`.
pub async fn start(flags: &[&str]) -> (Orders, Provider) {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(flags)).await;
    (orders, provider)
}

/// One Mount on a fresh `localhost`-authority connection, as a v1.6 driver sends it.
pub async fn mount(
    provider: &Provider,
    request: pb::MountRequest,
) -> Result<pb::MountResponse, tonic::Status> {
    let mut client = driver::connect(provider.socket()).await;
    client.mount(request).await.map(tonic::Response::into_inner)
}

/// One Mount that must fail: its code and message. Panics with the file count if it mounted.
pub async fn refused(provider: &Provider, request: pb::MountRequest) -> (Code, String) {
    match mount(provider, request).await {
        Ok(response) => panic!("mounted {} files", response.files.len()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// The file at `path` in an answer; panics when there is none.
pub fn file<'a>(response: &'a pb::MountResponse, path: &str) -> &'a pb::File {
    response
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path}"))
}
