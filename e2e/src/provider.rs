//! Runs the product's release binary, unmodified, as a black box on a socket in a temporary
//! folder.
//!
//! The binary is `<workspace>/target/release/akv-csi-provider` (build it with
//! `cargo build --release` or `make test`), or the file named by `AKV_PROVIDER_BIN`. It starts
//! with a clean environment (only `PATH` is kept, plus what the test passes), its stdout and
//! stderr are collected for assertions and failure messages, and [`Provider::start`] returns
//! once a `Version` call succeeds. The process is stopped with SIGTERM by [`Provider::stop`], or
//! killed when the [`Provider`] is dropped; only that one process, by its id.
//!
//! Safety net: nothing a test forgets to configure may leave the machine. Unless the test says
//! otherwise, IMDS (`--imds-endpoint`) and `HTTPS_PROXY` point at a closed loopback port, so a
//! stray managed-identity call or HTTPS request to Azure fails at once instead of reaching a real
//! endpoint. Tests that use the doubles pass their own values.
//!
//! Ports: unless the test names them, the health probes take a free port (`--healthz-port=0`)
//! and metrics a free loopback port (`--metrics-addr=127.0.0.1:0`), so tests in parallel never
//! collide; [`Provider::logged_port`] reads the port the provider logged.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::Instant;

use crate::driver;

/// The environment variable that names another provider binary.
pub const BIN_ENV: &str = "AKV_PROVIDER_BIN";

/// How long the provider has to answer its first `Version` call.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Provider::stop`] waits after SIGTERM before it kills the process.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback address where nothing listens (the discard port): the default target of
/// everything that could otherwise leave the machine.
pub const DEAD_END: &str = "http://127.0.0.1:9";

/// How to start the provider.
#[derive(Clone, Debug, Default)]
pub struct ProviderOptions {
    /// Command-line arguments. `--endpoint=unix://<tmp>/azure.sock` is added unless one of them
    /// is an `--endpoint`, `--imds-endpoint=`[`DEAD_END`] unless one is an `--imds-endpoint`, and
    /// free ports for `--healthz-port` and `--metrics-addr` unless they are given.
    pub args: Vec<String>,
    /// Environment variables, on top of `PATH`; nothing else is inherited. `HTTPS_PROXY` is
    /// [`DEAD_END`] unless set here (an empty value means no proxy).
    pub env: Vec<(String, String)>,
}

/// A running provider process.
#[derive(Debug)]
pub struct Provider {
    child: Option<Child>,
    pid: u32,
    dir: tempfile::TempDir,
    socket: PathBuf,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Provider {
    /// The release binary's path: `AKV_PROVIDER_BIN`, else `<workspace>/target/release/…`.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os(BIN_ENV) {
            return PathBuf::from(path);
        }
        // Where `cargo build --release` put it: `CARGO_TARGET_DIR` when set, as for the
        // Makefile's own build, else the workspace's `target/`.
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        };
        target.join("release/akv-csi-provider")
    }

    /// Starts the provider and waits until it answers `Version`. Panics with the provider's
    /// output when it does not.
    pub async fn start(options: ProviderOptions) -> Provider {
        match Self::try_start(options).await {
            Ok(provider) => provider,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the provider and waits until it answers `Version`; the error carries its output.
    pub async fn try_start(options: ProviderOptions) -> Result<Provider, String> {
        let mut provider = Self::spawn(options)?;
        provider.wait_ready(READY_TIMEOUT).await?;
        Ok(provider)
    }

    /// Starts the provider without waiting for it to serve (for tests of start-up failures).
    pub fn spawn(options: ProviderOptions) -> Result<Provider, String> {
        let binary = Self::binary();
        if !binary.is_file() {
            return Err(format!(
                "the akv-csi-provider release binary is missing at {}: run \
                 `cargo build --release` (or `make test`) first, or set {BIN_ENV}",
                binary.display()
            ));
        }

        let dir = tempfile::Builder::new()
            .prefix("akv-provider-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let mut args = options.args;
        let socket = match flag_value(&args, "--endpoint") {
            Some(endpoint) => socket_path(&endpoint)?,
            None => {
                let socket = dir.path().join("azure.sock");
                args.push(format!("--endpoint=unix://{}", socket.display()));
                socket
            }
        };
        if flag_value(&args, "--imds-endpoint").is_none() {
            args.push(format!("--imds-endpoint={DEAD_END}"));
        }
        if flag_value(&args, "--healthz-port").is_none() {
            args.push("--healthz-port=0".into());
        }
        if flag_value(&args, "--metrics-addr").is_none() {
            args.push("--metrics-addr=127.0.0.1:0".into());
        }

        let mut command = Command::new(&binary);
        command
            .args(&args)
            .env_clear()
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let sets_proxy = options
            .env
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("HTTPS_PROXY"));
        if !sets_proxy {
            command.env("HTTPS_PROXY", DEAD_END);
        }
        command.envs(options.env);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;

        // Both streams go into one buffer, in the order the lines arrive.
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(collect(stdout, Arc::clone(&output)));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(collect(stderr, Arc::clone(&output)));
        }

        Ok(Provider {
            pid: child.id(),
            child: Some(child),
            dir,
            socket,
            output,
            readers,
        })
    }

    /// Waits until a `Version` call over the socket succeeds, the process exits, or `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let give_up = Instant::now() + timeout;
        let mut last_error = String::from("the socket never appeared");
        loop {
            if let Some(status) = self.try_wait() {
                return Err(self.failure(&format!("the provider exited with {status}")));
            }
            if self.socket.exists() {
                let mut client = driver::connect(&self.socket).await;
                let call = client.version(driver::version_request());
                match tokio::time::timeout(Duration::from_secs(1), call).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(status)) => last_error = format!("Version failed: {status}"),
                    Err(_) => last_error = "Version took more than 1 s".into(),
                }
            }
            if Instant::now() >= give_up {
                let reason = format!("not ready after {timeout:?} ({last_error})");
                return Err(self.failure(&reason));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The provider's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary folder the provider runs in (its working directory); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port in the `addr` field of the first log line with `message` (text or JSON), e.g.
    /// `"health probes listening"` or `"metrics listening"`.
    pub fn logged_port(&self, message: &str) -> Option<u16> {
        logged_port(&self.output(), message)
    }

    /// The provider's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the provider wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        let bytes = self.output.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Sends SIGTERM and waits for the process to exit (killing it after 10 s); returns its exit
    /// status and complete output.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        if self.try_wait().is_none() {
            // The child is not reaped before this, so the pid is still ours.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }

        let give_up = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if Instant::now() >= give_up {
                let child = self.child.as_mut().expect("child present until drop");
                let _ = child.kill();
                break child.wait().expect("waiting for a killed child");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.child = None;

        // The pipes close when the process is gone; give the readers a moment to drain them.
        let drained = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (status, self.output())
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn failure(&self, reason: &str) -> String {
        format!(
            "akv-csi-provider ({}) {reason}; its output:\n{}",
            Self::binary().display(),
            self.output()
        )
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // `Child::kill` signals this child's own pid, and `wait` reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies a pipe into the shared buffer until it closes.
fn collect(mut pipe: impl Read + Send + 'static, output: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            output
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

/// The value of a `--flag` argument, in either `--flag=X` or `--flag X` form.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            return Some(value.to_owned());
        }
        if arg == flag {
            return iter.next().cloned();
        }
    }
    None
}

/// The port in the `addr` field of the first line of `output` that holds `message`.
fn logged_port(output: &str, message: &str) -> Option<u16> {
    let line = output.lines().find(|line| line.contains(message))?;
    let (_, addr) = line
        .split_once("addr=")
        .or_else(|| line.split_once("\"addr\":\""))?;
    let addr = addr.split(['"', ' ']).next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The socket path of a `unix://` endpoint.
fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    endpoint
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .ok_or_else(|| format!("--endpoint {endpoint:?} is not a unix:// address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn flags_are_found_in_both_forms() {
        let args = strings(&["-v", "5", "--endpoint=unix:///a/b.sock"]);
        assert_eq!(
            flag_value(&args, "--endpoint"),
            Some("unix:///a/b.sock".into())
        );

        let args = strings(&["--endpoint", "unix:///c.sock"]);
        assert_eq!(
            flag_value(&args, "--endpoint"),
            Some("unix:///c.sock".into())
        );

        let args = strings(&["--endpoint-x=1", "--log-format-json"]);
        assert_eq!(flag_value(&args, "--endpoint"), None);
    }

    #[test]
    fn logged_ports_are_read_from_text_and_json() {
        let text = "2026 INFO health probes listening addr=[::]:41234 path=\"/healthz\"";
        let json = r#"{"level":"INFO","addr":"127.0.0.1:5","message":"metrics listening"}"#;
        assert_eq!(logged_port(text, "health probes listening"), Some(41234));
        assert_eq!(logged_port(json, "metrics listening"), Some(5));
    }

    #[test]
    fn unix_endpoints_become_paths() {
        assert_eq!(
            socket_path("unix:///tmp/x.sock"),
            Ok(PathBuf::from("/tmp/x.sock"))
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        if Provider::binary().exists() {
            return;
        }
        let err = Provider::spawn(ProviderOptions::default()).unwrap_err();
        assert!(err.contains("cargo build --release"), "{err}");
    }
}
