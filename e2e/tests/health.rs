//! Kubelet's probes and the gRPC health service, through start, serve and shutdown of the
//! release binary.

use std::time::Duration;

use akv_e2e::driver;
use akv_e2e::provider::{Provider, ProviderOptions};
use akv_e2e::scenario::{self, Orders};
use akv_e2e::scrape;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PROBES: &str = "health probes listening";

/// Waits for the provider to log its probe port.
async fn probe_port(provider: &Provider) -> u16 {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = provider.logged_port(PROBES) {
            return port;
        }
        assert!(
            Instant::now() < give_up,
            "no port logged:\n{}",
            provider.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(port: u16, path: &str) -> (u16, String) {
    let answer = scrape::get(port, path).await.unwrap();
    (answer.status, answer.body)
}

fn health_client(provider: &Provider) -> HealthClient<Channel> {
    HealthClient::new(driver::channel(provider.socket()))
}

async fn grpc_status(client: &mut HealthClient<Channel>, service: &str) -> ServingStatus {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let answer = client.check(request).await.unwrap().into_inner();
    ServingStatus::try_from(answer.status).unwrap()
}

#[tokio::test]
async fn probes_answer_through_start_serve_and_shutdown() {
    let orders = Orders::start().await;
    let provider = Provider::spawn(orders.provider_options(&[])).unwrap();
    let port = probe_port(&provider).await;

    // Start: not ready until the socket serves; the first "ok" comes with a working socket.
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        match status(port, "/readyz").await {
            (200, body) => {
                assert_eq!(body, "ok\n");
                break;
            }
            (code, body) => assert_eq!((code, body.as_str()), (503, "starting\n")),
        }
        assert!(Instant::now() < give_up, "{}", provider.output());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = driver::connect(provider.socket()).await;
    client.version(driver::version_request()).await.unwrap();

    // Serving: both probes pass, before and after Mounts.
    assert_eq!(status(port, "/healthz").await, (200, "ok\n".into()));
    client
        .mount(orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();
    assert_eq!(status(port, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(status(port, "/nope").await.0, 404);
    assert_eq!(status(port, "/debug/pprof/").await.0, 404);

    // Shutdown with a Mount in flight: Key Vault answers slowly, SIGTERM arrives meanwhile.
    orders
        .world
        .keyvault()
        .set_latency(Duration::from_millis(1500));
    let request = orders.request(&scenario::spc_yaml());
    let in_flight = tokio::spawn(async move { client.mount(request).await });
    let metrics = provider.logged_port("metrics listening").unwrap();
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape::get(metrics, "/metrics").await.unwrap().body;
        if text.contains("\nakv_csi_provider_mounts_in_flight 1\n") {
            break;
        }
        assert!(Instant::now() < give_up, "the Mount never started:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = nix::unistd::Pid::from_raw(provider.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(
        status(port, "/readyz").await,
        (503, "shutting down\n".into())
    );
    assert_eq!(
        status(port, "/healthz").await,
        (503, "shutting down\n".into())
    );
    let mounted = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(mounted.files.len(), 3, "the in-flight Mount completes");

    let (exit, output) = provider.stop().await;
    assert!(exit.success(), "{exit}: {output}");
    assert!(
        scrape::get(port, "/readyz").await.is_err(),
        "the probe port closes with the process"
    );
}

#[tokio::test]
async fn liveness_dials_the_socket_by_its_path() {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options(&[])).await;
    let port = probe_port(&provider).await;
    assert_eq!(status(port, "/healthz").await.0, 200);

    // Liveness really dials the socket: without its file, the driver cannot reach us either.
    std::fs::remove_file(provider.socket()).unwrap();

    let (code, body) = status(port, "/healthz").await;
    assert_eq!(code, 503);
    assert!(
        body.starts_with(&format!(
            "the gRPC server on {} failed: cannot connect: ",
            provider.socket().display()
        )),
        "{body}"
    );
    assert_eq!(status(port, "/readyz").await, (200, "ok\n".into()));
}

#[tokio::test]
async fn the_probe_path_and_port_are_the_flags() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = ProviderOptions {
        args: vec![
            format!("--healthz-port={port}"),
            "--healthz-path=/live".into(),
        ],
        env: Vec::new(),
    };
    let provider = Provider::start(options).await;

    assert_eq!(probe_port(&provider).await, port);
    assert_eq!(status(port, "/live").await, (200, "ok\n".into()));
    assert_eq!(status(port, "/healthz").await.0, 404);
    assert_eq!(status(port, "/readyz").await.0, 200);
}

#[tokio::test]
async fn a_taken_probe_port_stops_the_start_with_a_reason() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let options = ProviderOptions {
        args: vec![format!("--healthz-port={port}")],
        env: Vec::new(),
    };

    let error = Provider::try_start(options).await.unwrap_err();

    assert!(
        error.contains(&format!("cannot listen for health probes on :{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn the_grpc_health_service_answers_on_the_socket() {
    let provider = Provider::start(ProviderOptions::default()).await;
    let mut client = health_client(&provider);

    assert_eq!(grpc_status(&mut client, "").await, ServingStatus::Serving);
    assert_eq!(
        grpc_status(&mut client, "v1alpha1.CSIDriverProvider").await,
        ServingStatus::Serving
    );
    let unknown = client
        .check(HealthCheckRequest {
            service: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
