//! Logging: text or JSON lines through `tracing`, verbosity from klog-style `-v` or `RUST_LOG`.
//!
//! Whatever the verbosity, `-v` raises only this crate's level: the HTTP, TLS and HTTP/2
//! libraries stay at `warn`, since their trace output is not ours to vouch for.

use tracing_subscriber::EnvFilter;

/// How to log.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// JSON lines instead of text.
    pub json: bool,
    /// klog-style verbosity.
    pub verbosity: u8,
}

/// Installs the global subscriber, writing to stderr.
pub fn init(options: LogOptions) {
    let level = match options.verbosity {
        0..=2 => "info",
        3..=4 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,akv_csi_provider={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if options.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
