//! Standalone mode: the same Mounts without the CSI driver, for VMs, containers, CI runners
//! and developer machines.
//!
//! `akv-csi-provider mount --spc FILE --target DIR` reads a SecretProviderClass, obtains a
//! token from what exists off-cluster (a federated token file, a client secret, or the VM's
//! managed identity), runs the same Mount path as the gRPC server, and writes the files with
//! [`writer`] — then repeats every `--rotation-poll-interval`, swapping the files only when a
//! version or content changed. A failed round leaves the last good files in place.

mod source;
pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::signal::unix::{SignalKind, signal};

use crate::error::MountError;
use crate::mount::Mounter;
use crate::proto::MountResponse;

pub use source::{Environment, SourceError};

/// What standalone mode was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SecretProviderClass manifest.
    pub spc: PathBuf,
    /// The folder to write into.
    pub target: PathBuf,
    /// Run one round and exit.
    pub once: bool,
    /// Time between rounds.
    pub interval: Duration,
    /// A Mount's time budget.
    pub timeout: Duration,
}

/// Why a round failed; each kind has its own exit code, for operators' scripts.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// Flags, the manifest or the identity settings are wrong (exit 2).
    #[error(transparent)]
    Config(#[from] SourceError),
    /// The Mount failed: identity (exit 3), Key Vault or rendering (exit 4), or an invalid
    /// request (exit 2).
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The files could not be written (exit 5).
    #[error("cannot write into {target}: {source}")]
    Write {
        /// The target folder.
        target: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl StandaloneError {
    /// The process exit code: 2 configuration, 3 identity, 4 Key Vault, 5 writing.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Mount(MountError::Request(_)) => 2,
            Self::Mount(MountError::Identity(_)) => 3,
            Self::Mount(_) => 4,
            Self::Write { .. } => 5,
        }
    }
}

/// What was last written: versions by object id, and a digest of every file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot {
    versions: BTreeMap<String, String>,
    files: BTreeMap<String, [u8; 32]>,
}

impl Snapshot {
    fn of(response: &MountResponse) -> Self {
        let versions = response
            .object_version
            .iter()
            .map(|v| (v.id.clone(), v.version.clone()))
            .collect();
        let files = response
            .files
            .iter()
            .map(|f| {
                let mut hash = Sha256::new();
                hash.update(f.mode.to_be_bytes());
                hash.update(&f.contents);
                (f.path.clone(), hash.finalize().into())
            })
            .collect();
        Self { versions, files }
    }

    /// Object ids whose version or files changed since `self`, for the log.
    fn changes(&self, next: &Self) -> Vec<String> {
        let mut changed: Vec<String> = next
            .versions
            .iter()
            .filter(|(id, version)| self.versions.get(*id) != Some(*version))
            .map(|(id, version)| format!("{id}@{version}"))
            .collect();
        changed.extend(
            self.versions
                .keys()
                .filter(|id| !next.versions.contains_key(*id))
                .map(|id| format!("{id} (removed)")),
        );
        if changed.is_empty() && self.files != next.files {
            changed.push("file contents or modes".to_owned());
        }
        changed
    }
}

/// Runs rounds until stopped (SIGTERM/SIGINT), or one round with `--once`. SIGHUP starts a
/// round at once.
pub async fn run(
    mounter: &Mounter,
    options: &Options,
    env: &Environment,
) -> Result<(), StandaloneError> {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return Err(SourceError::new("cannot watch for signals").into());
    };

    let mut last: Option<Snapshot> = None;
    let mut failures: u32 = 0;
    loop {
        // Dropping the round's future on a signal aborts it before its one atomic write.
        let result = tokio::select! {
            result = round(mounter, options, env, last.as_ref()) => result,
            _ = term.recv() => return stopped("SIGTERM", "during a round; nothing was written"),
            _ = int.recv() => return stopped("SIGINT", "during a round; nothing was written"),
        };
        match result {
            Ok(snapshot) => {
                failures = 0;
                last = Some(snapshot);
            }
            Err(error) if options.once => return Err(error),
            Err(error) => {
                failures += 1;
                tracing::error!(%error, failures, "round failed; the last good files stay in place");
            }
        }
        if options.once {
            return Ok(());
        }

        let wait = if failures == 0 {
            options.interval
        } else {
            backoff(failures).min(options.interval)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = hup.recv() => tracing::info!("SIGHUP received: refreshing now"),
            _ = term.recv() => return stopped("SIGTERM", "between rounds"),
            _ = int.recv() => return stopped("SIGINT", "between rounds"),
        }
    }
}

fn stopped(signal: &str, when: &str) -> Result<(), StandaloneError> {
    tracing::info!("{signal} received {when}; stopping");
    Ok(())
}

/// 5 s, 10 s, 20 s … after consecutive failures, capped by the interval by the caller.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5).saturating_mul(1 << failures.saturating_sub(1).min(8))
}

/// One round: Mount, then write if anything changed since `last`.
async fn round(
    mounter: &Mounter,
    options: &Options,
    env: &Environment,
    last: Option<&Snapshot>,
) -> Result<Snapshot, StandaloneError> {
    let started = std::time::Instant::now();
    let request = source::request(&options.spc, env)?;
    let params = mounter.parse(&request).map_err(MountError::from)?;
    let response = mounter.mount(&params, Some(options.timeout)).await?;

    let snapshot = Snapshot::of(&response);
    let changes = match last {
        Some(last) if *last == snapshot => {
            tracing::info!(
                objects = snapshot.versions.len(),
                duration_ms = started.elapsed().as_millis() as u64,
                "unchanged"
            );
            return Ok(snapshot);
        }
        Some(last) => last.changes(&snapshot),
        None => snapshot
            .versions
            .iter()
            .map(|(id, v)| format!("{id}@{v}"))
            .collect(),
    };

    let entries: Vec<writer::Entry<'_>> = response
        .files
        .iter()
        .map(|f| writer::Entry {
            path: &f.path,
            mode: f.mode as u32,
            contents: &f.contents,
        })
        .collect();
    writer::write(&options.target, &entries).map_err(|source| StandaloneError::Write {
        target: options.target.display().to_string(),
        source,
    })?;
    tracing::info!(
        target = %options.target.display(), files = entries.len(),
        changed = %changes.join(", "), duration_ms = started.elapsed().as_millis() as u64, "written"
    );
    Ok(snapshot)
}
