//! Logging: text or JSON lines through `tracing`, verbosity from klog-style `-v` or `RUST_LOG`.
//!
//! Whatever the verbosity, `-v` raises only this crate's level: the HTTP, TLS and HTTP/2
//! libraries stay at `warn`, since their trace output is not ours to vouch for. `RUST_LOG`,
//! when set, replaces that filter whole (e.g. `RUST_LOG=info,akv_csi_provider=debug`).
//!
//! Every Mount logs one line at `info` ("mounted") or `error` ("mount failed", "mount
//! refused: invalid request") with `result`, the object count and `duration_ms`, inside a
//! `mount` span that carries the pod, the vault and the SecretProviderClass (as far as the
//! attributes tell them, for a request that could not be parsed). In JSON, the
//! event's fields sit at the top level beside `timestamp`, `level` and `message`, and the
//! span's fields in a `span` object. Per-object detail is at `debug`. Secret values and
//! tokens never reach a log: their types redact themselves.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How to log.
#[derive(Debug, Clone, Copy)]
pub struct LogOptions {
    /// JSON lines instead of text.
    pub json: bool,
    /// klog-style verbosity.
    pub verbosity: u8,
}

/// The filter `-v` stands for when `RUST_LOG` is not set.
pub fn default_filter(verbosity: u8) -> String {
    let level = match verbosity {
        0..=2 => "info",
        3..=4 => "debug",
        _ => "trace",
    };
    format!("warn,akv_csi_provider={level}")
}

/// Installs the global subscriber, writing to stderr. Colours only on a terminal: a log
/// collector would store the escape codes.
pub fn init(options: LogOptions) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(options.verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
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

/// The `mount` span of a request that could not be parsed, with whatever the attributes tell
/// of the pod and its SecretProviderClass (`-` for what they do not), so that a refused
/// Mount is still logged against its pod.
pub fn unparsed_mount_span(attributes: &str) -> tracing::Span {
    let attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(attributes).unwrap_or_default();
    let field = |key: &str| {
        attributes
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    let spc = field("secretProviderClass");
    tracing::info_span!(
        "mount",
        pod.namespace = %field("csi.storage.k8s.io/pod.namespace"),
        pod.name = %field("csi.storage.k8s.io/pod.name"),
        vault.name = %field("keyvaultName"),
        spc = spc.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_verbosity_maps_to_levels() {
        assert_eq!(default_filter(0), "warn,akv_csi_provider=info");
        assert_eq!(default_filter(2), "warn,akv_csi_provider=info");
        assert_eq!(default_filter(4), "warn,akv_csi_provider=debug");
        assert_eq!(default_filter(10), "warn,akv_csi_provider=trace");
    }
}
