//! The `akv-csi-provider` binary: flags, logging, then the library — serving the driver on
//! its socket, or standalone mode's `mount`.

use std::process::ExitCode;

use clap::Parser as _;

use akv_csi_provider::config::{Command, Flags, MountArgs};
use akv_csi_provider::secret::SecretString;
use akv_csi_provider::standalone::{self, Environment};
use akv_csi_provider::telemetry::{self, LogOptions};
use akv_csi_provider::{mounter, run, socket};

fn main() -> ExitCode {
    let flags = Flags::parse();
    telemetry::init(LogOptions {
        json: flags.json_logs(),
        verbosity: flags.verbosity,
    });

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match &flags.command {
        None | Some(Command::Serve) => runtime.block_on(serve(&flags)),
        Some(Command::Mount(args)) => runtime.block_on(mount(&flags, args)),
    }
}

async fn serve(flags: &Flags) -> ExitCode {
    let stop = stop_signal();
    let path = match flags.socket_path() {
        Ok(path) => path,
        Err(error) => {
            tracing::error!(%error, "invalid --endpoint");
            return ExitCode::from(2);
        }
    };
    let listener = match socket::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(socket = %path.display(), %error, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(socket = %path.display(), version = env!("CARGO_PKG_VERSION"), "serving");

    let result = run(listener, flags.config(), stop).await;
    socket::remove(&path);
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "stopped on error");
            ExitCode::FAILURE
        }
    }
}

async fn mount(flags: &Flags, args: &MountArgs) -> ExitCode {
    let config = flags.config();
    let mounter = match mounter(&config) {
        Ok(mounter) => mounter,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let options = standalone::Options {
        spc: args.spc.clone(),
        target: args.target.clone(),
        once: args.once,
        interval: args.rotation_poll_interval,
        timeout: config.mount_timeout,
    };
    let env = Environment {
        federated_token_file: args.federated_token_file.clone(),
        client_secret_file: args.client_secret_file.clone(),
        client_secret: std::env::var("AZURE_CLIENT_SECRET")
            .ok()
            .map(SecretString::new),
        client_id: args.client_id.clone(),
        tenant_id: args.tenant_id.clone(),
    };

    match standalone::run(&mounter, &options, &env).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, exit_code = error.exit_code(), "mount failed");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Watches SIGTERM and SIGINT from now on, so a signal that arrives while the server starts
/// is not lost; the future completes on the first of them.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot watch for SIGTERM/SIGINT; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
