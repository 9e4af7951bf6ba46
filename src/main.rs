//! The `akv-csi-provider` binary: flags, logging, the socket, then the library's `run`.

use std::process::ExitCode;

use clap::Parser as _;

use akv_csi_provider::config::{Command, Flags};
use akv_csi_provider::telemetry::{self, LogOptions};
use akv_csi_provider::{run, socket};

fn main() -> ExitCode {
    let flags = Flags::parse();
    telemetry::init(LogOptions {
        json: flags.log_format_json,
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
    match flags.command {
        None | Some(Command::Serve) => runtime.block_on(serve(&flags)),
    }
}

async fn serve(flags: &Flags) -> ExitCode {
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

    let result = run(listener, flags.config(), stop_signal()).await;
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

/// Completes on the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch for SIGTERM/SIGINT; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
