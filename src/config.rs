//! Command-line flags, named as the Go provider's chart passes them, and the settings they
//! become.
//!
//! An existing chart can swap the image: `--endpoint=unix:///provider/azure.sock`,
//! `--construct-pem-chain=true`, `--healthz-port=8989`, `-v=2` and the rest mean what they
//! meant there.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

/// Flags of the `akv-csi-provider` binary.
#[derive(Debug, Parser)]
#[command(
    name = "akv-csi-provider",
    version,
    about = "Azure Key Vault provider for the Secrets Store CSI Driver"
)]
pub struct Flags {
    /// What to run; serving the driver when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Unix socket to serve on, as `unix:///path/azure.sock` or a plain path.
    #[arg(long, global = true, default_value = "unix:///tmp/azure.sock")]
    pub endpoint: String,

    /// Cloud used when a SecretProviderClass sets no `cloudName`. (An unknown name is only
    /// reported per Mount, as `parameter cloudName`, not at start-up.)
    #[arg(long, global = true, default_value = "AzurePublicCloud")]
    pub cloud_name: String,

    /// Base URL of the Instance Metadata Service, for managed identity.
    #[arg(long, global = true, default_value = "http://169.254.169.254")]
    pub imds_endpoint: String,

    /// Order certificate chains leaf → intermediates → root.
    #[arg(long, global = true, default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub construct_pem_chain: bool,

    /// Also write `<file>.crt` and `<file>.key` for certificate-backed secrets.
    #[arg(long, global = true, default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub write_cert_and_key_in_separate_files: bool,

    /// Port of the HTTP probes (liveness at `--healthz-path`, readiness at `/readyz`), on
    /// every interface; 0 takes a free port, logged at start.
    #[arg(long, global = true, default_value_t = 8989)]
    pub healthz_port: u16,

    /// Path of the liveness probe.
    #[arg(long, global = true, default_value = "/healthz", value_parser = parse_probe_path)]
    pub healthz_path: String,

    /// Time the health check may take, e.g. `5s`.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub healthz_timeout: Duration,

    /// Write logs as JSON lines.
    #[arg(long, global = true, default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_format_json: bool,

    /// Log format: `text` (the default) or `json` (as `--log-format-json`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// Where Prometheus scrapes `/metrics`: `:port` (every interface), `host:port`, or empty
    /// for no metrics endpoint.
    #[arg(long, global = true, default_value = ":8898")]
    pub metrics_addr: String,

    /// Log verbosity, as klog's `-v`: 0–2 info, 3–4 debug, 5 and above trace.
    #[arg(short = 'v', long = "v", global = true, default_value_t = 0)]
    pub verbosity: u8,

    /// Appended to the `User-Agent` of requests to Azure.
    #[arg(long, global = true, default_value = "")]
    pub custom_user_agent: String,

    /// Key Vault requests at once within one Mount. Large enough that a Mount of 100 objects
    /// costs one round trip; `--vault-concurrency` bounds the total.
    #[arg(long, global = true, default_value_t = 128)]
    pub mount_concurrency: usize,

    /// Key Vault requests at once to any one vault, across all Mounts.
    #[arg(long, global = true, default_value_t = 128)]
    pub vault_concurrency: usize,

    /// Time a Mount may take when the driver sends no deadline (v1.5 rotation calls).
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    pub mount_timeout: Duration,

    /// Time in-flight Mounts get to finish after SIGTERM.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the CSI driver on the unix socket (the default).
    Serve,
    /// Standalone mode: write a SecretProviderClass's objects into a folder and keep them fresh.
    Mount(MountArgs),
}

/// Flags of `akv-csi-provider mount`.
#[derive(Debug, Clone, clap::Args)]
pub struct MountArgs {
    /// The SecretProviderClass manifest (the same YAML a cluster uses).
    #[arg(long)]
    pub spc: PathBuf,

    /// The folder to write into, laid out as kubelet's atomic writer does.
    #[arg(long)]
    pub target: PathBuf,

    /// Run one round and exit: 0 on success, 2 configuration, 3 identity, 4 Key Vault,
    /// 5 writing, 1 anything else.
    #[arg(long)]
    pub once: bool,

    /// Time between rounds.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub rotation_poll_interval: Duration,

    /// A projected service-account token file to exchange (workload identity); re-read
    /// every round.
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub federated_token_file: Option<PathBuf>,

    /// A file holding a service principal's client secret (else `AZURE_CLIENT_SECRET`).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,

    /// Client id when the manifest sets no `clientID`.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,

    /// Tenant when the manifest sets none.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,

    /// Entra authority host, replacing the cloud's (as Azure's SDKs read it).
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<String>,
}

impl Flags {
    /// The socket path named by `--endpoint`.
    pub fn socket_path(&self) -> Result<PathBuf, String> {
        let path = self
            .endpoint
            .strip_prefix("unix://")
            .or_else(|| self.endpoint.strip_prefix("unix:"))
            .unwrap_or(&self.endpoint);
        if path.is_empty() || !path.starts_with('/') {
            return Err(format!(
                "--endpoint {:?} is not an absolute unix socket path",
                self.endpoint
            ));
        }
        Ok(PathBuf::from(path))
    }

    /// The settings of the serving process.
    pub fn config(&self) -> Config {
        let mut user_agent = crate::http::USER_AGENT.to_owned();
        if !self.custom_user_agent.trim().is_empty() {
            user_agent.push(' ');
            user_agent.push_str(self.custom_user_agent.trim());
        }
        Config {
            cloud_name: self.cloud_name.clone(),
            authority_host: match &self.command {
                Some(Command::Mount(args)) => args.authority_host.clone(),
                _ => None,
            },
            imds_endpoint: self.imds_endpoint.clone(),
            construct_pem_chain: self.construct_pem_chain,
            write_cert_and_key_in_separate_files: self.write_cert_and_key_in_separate_files,
            user_agent,
            mount_concurrency: self.mount_concurrency.max(1),
            vault_concurrency: self.vault_concurrency.max(1),
            mount_timeout: self.mount_timeout,
            shutdown_grace: self.shutdown_grace,
            token_cache_capacity: 4096,
            health: crate::health::HealthOptions {
                port: self.healthz_port,
                path: self.healthz_path.clone(),
                timeout: self.healthz_timeout,
                socket: self.socket_path().unwrap_or_default(),
            },
            metrics_addr: self.metrics_addr.trim().to_owned(),
        }
    }

    /// Whether logs are JSON lines: `--log-format-json` or `--log-format=json`.
    pub fn json_logs(&self) -> bool {
        self.log_format_json || self.log_format.as_deref() == Some("json")
    }
}

/// A liveness path must be absolute and must not hide the readiness probe.
fn parse_probe_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path == crate::health::READINESS_PATH {
        return Err(format!(
            "{path:?} must start with / and differ from {}",
            crate::health::READINESS_PATH
        ));
    }
    Ok(path.to_owned())
}

/// Settings of a running provider.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default `cloudName`.
    pub cloud_name: String,
    /// An Entra authority host replacing every cloud's (standalone mode's
    /// `AZURE_AUTHORITY_HOST`).
    pub authority_host: Option<String>,
    /// IMDS base URL.
    pub imds_endpoint: String,
    /// Order certificate chains.
    pub construct_pem_chain: bool,
    /// Also write `.crt` and `.key` files.
    pub write_cert_and_key_in_separate_files: bool,
    /// `User-Agent` of requests to Azure.
    pub user_agent: String,
    /// Objects fetched at once within one Mount.
    pub mount_concurrency: usize,
    /// Requests at once to one vault, across Mounts.
    pub vault_concurrency: usize,
    /// Time a Mount may take without a caller deadline.
    pub mount_timeout: Duration,
    /// Time in-flight Mounts get after SIGTERM.
    pub shutdown_grace: Duration,
    /// Identities whose tokens are cached at most.
    pub token_cache_capacity: usize,
    /// The HTTP probes.
    pub health: crate::health::HealthOptions,
    /// The metrics listen address; empty for none.
    pub metrics_addr: String,
}

impl Default for Config {
    fn default() -> Self {
        Flags::parse_from(["akv-csi-provider"]).config()
    }
}

/// Parses a Go-style duration: a number and a unit, `ms`, `s`, `m` or `h` (`1m30s` too).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 500ms, 5s, 2m or 1h");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let amount: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(amount),
            "s" => Duration::from_secs(amount),
            "m" => Duration::from_secs(amount * 60),
            "h" => Duration::from_secs(amount * 3600),
            _ => return Err(bad()),
        };
        total += part;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_go_charts_flags() {
        let flags = Flags::try_parse_from([
            "akv-csi-provider",
            "--endpoint=unix:///provider/azure.sock",
            "--construct-pem-chain=true",
            "--write-cert-and-key-in-separate-files=false",
            "--healthz-port=8989",
            "--healthz-path=/healthz",
            "--healthz-timeout=5s",
            "--log-format-json=true",
            "-v=2",
        ])
        .unwrap();

        assert_eq!(
            flags.socket_path().unwrap(),
            PathBuf::from("/provider/azure.sock")
        );
        assert!(flags.construct_pem_chain && flags.log_format_json);
        assert!(!flags.write_cert_and_key_in_separate_files);
        assert_eq!(
            (flags.verbosity, flags.healthz_timeout),
            (2, Duration::from_secs(5))
        );
    }

    #[test]
    fn bare_boolean_flags_mean_true() {
        let flags = Flags::try_parse_from([
            "x",
            "--log-format-json",
            "--write-cert-and-key-in-separate-files",
            "serve",
        ])
        .unwrap();
        assert!(flags.log_format_json && flags.write_cert_and_key_in_separate_files);
        assert!(matches!(flags.command, Some(Command::Serve)));
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5").is_err() && parse_duration("5d").is_err());
    }

    #[test]
    fn log_format_metrics_and_probe_flags() {
        let flags =
            Flags::try_parse_from(["x", "--log-format", "json", "--metrics-addr=127.0.0.1:9000"])
                .unwrap();
        assert!(flags.json_logs());
        assert_eq!(flags.config().metrics_addr, "127.0.0.1:9000");

        let defaults = Flags::try_parse_from(["x"]).unwrap();
        let config = defaults.config();
        assert!(!defaults.json_logs());
        assert_eq!(
            (config.metrics_addr.as_str(), config.health.port),
            (":8898", 8989)
        );
        assert_eq!(config.health.socket, PathBuf::from("/tmp/azure.sock"));

        for bad in [
            "--log-format=xml",
            "--healthz-path=/readyz",
            "--healthz-path=healthz",
        ] {
            assert!(Flags::try_parse_from(["x", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_must_be_an_absolute_path() {
        let flags = Flags::try_parse_from(["x", "--endpoint", "unix://relative.sock"]).unwrap();
        assert!(flags.socket_path().is_err());
    }
}
