//! Both `:authority` forms reach the provider: `localhost` (drivers from v1.6) and the socket
//! path that grpc-go in drivers up to v1.5 sends (PROTOCOL.md, ":authority").
//!
//! Stock h2 resets every stream whose authority is a path; the product builds against the
//! vendored h2 in `vendor/h2` that drops such an authority instead. These tests fail if that
//! patch is lost. They run the release binary: `cargo build --release` first (`make test` does).

use akv_e2e::driver::{self, GrpcGoConnection, MOUNT_PATH, Pod, TOKEN_AUDIENCE, VERSION_PATH, pb};
use akv_e2e::provider::{Provider, ProviderOptions};
use tonic::Code;

/// A workload-identity class that lists no objects: the provider must refuse it up front with
/// `INVALID_ARGUMENT`, before any I/O.
const NO_OBJECTS: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: no-objects
spec:
  provider: azure
  parameters:
    clientID: "00000000-0000-0000-0000-0000000000c1"
    keyvaultName: "kv-authority"
    tenantId: "00000000-0000-0000-0000-0000000000a1"
    objects: |
      array: []
"#;

fn no_objects_request() -> pb::MountRequest {
    let pod = Pod::new("authority", "pod-0", "workload");
    let tokens = [(TOKEN_AUDIENCE, "not.a.jwt".to_owned())];
    driver::mount_request(NO_OBJECTS, &pod, &tokens, None).unwrap()
}

/// The version in the product's own Cargo.toml, which `Version` must report.
fn product_version() -> String {
    let manifest = include_str!("../../Cargo.toml");
    let package = manifest
        .split("\n[package]")
        .nth(1)
        .expect("a [package] table");
    package
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("a package version")
        .to_owned()
}

fn assert_version(response: &pb::VersionResponse) {
    assert_eq!(response.version, "v1alpha1");
    assert_eq!(response.runtime_name, "akv-csi-provider");
    assert_eq!(response.runtime_version, product_version());
}

fn assert_no_objects_refused(code: Code, message: &str, output: &str) {
    assert_eq!(
        code,
        Code::InvalidArgument,
        "{message}\nprovider output:\n{output}"
    );
    assert!(message.contains("objects"), "{message}");
    assert!(
        !message.contains("not.a.jwt"),
        "the token leaked: {message}"
    );
}

#[tokio::test]
async fn version_answers_localhost_authority() {
    let provider = Provider::start(ProviderOptions::default()).await;
    let mut client = driver::connect(provider.socket()).await;

    let response = client.version(driver::version_request()).await.unwrap();
    assert_version(response.get_ref());
}

#[tokio::test]
async fn version_answers_socket_path_authority() {
    let provider = Provider::start(ProviderOptions::default()).await;

    let response =
        driver::version_with_path_authority(provider.socket(), driver::version_request())
            .await
            .unwrap_or_else(|e| panic!("{e:?}\nprovider output:\n{}", provider.output()));
    assert_version(&response);
}

#[tokio::test]
async fn mount_without_objects_is_invalid_argument_with_localhost_authority() {
    let provider = Provider::start(ProviderOptions::default()).await;
    let mut client = driver::connect(provider.socket()).await;

    let status = client.mount(no_objects_request()).await.unwrap_err();
    assert_no_objects_refused(status.code(), status.message(), &provider.output());
}

#[tokio::test]
async fn mount_without_objects_is_invalid_argument_with_socket_path_authority() {
    let provider = Provider::start(ProviderOptions::default()).await;

    let (code, message) =
        driver::mount_with_path_authority(provider.socket(), no_objects_request())
            .await
            .unwrap_err();
    assert_no_objects_refused(code, &message, &provider.output());
}

/// grpc-go sends the path literally once per connection, then by HPACK index; the driver also
/// multiplexes concurrent Mounts on that one connection.
#[tokio::test]
async fn one_path_authority_connection_carries_many_calls() {
    let provider = Provider::start(ProviderOptions::default()).await;
    let mut conn = GrpcGoConnection::connect(provider.socket()).await.unwrap();

    for _ in 0..3 {
        let response: pb::VersionResponse = conn
            .unary(VERSION_PATH, &driver::version_request(), None)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\nprovider output:\n{}", provider.output()));
        assert_version(&response);
    }

    let requests = vec![no_objects_request(); 4];
    let results = conn
        .unary_concurrent::<_, pb::MountResponse>(MOUNT_PATH, &requests, None)
        .await;
    assert_eq!(results.len(), 4);
    for result in results {
        let (code, message) = result.unwrap_err();
        assert_no_objects_refused(code, &message, &provider.output());
    }
}

#[tokio::test]
async fn sigterm_stops_the_provider() {
    let provider = Provider::start(ProviderOptions::default()).await;
    let socket = provider.socket().to_owned();

    let (status, output) = provider.stop().await;
    assert!(status.success(), "exit status {status}; output:\n{output}");

    let (code, _) = driver::version_with_path_authority(&socket, driver::version_request())
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unavailable);
}
