//! Steady-state rotation: 200 pods of ten service accounts, each mounting ten secrets over
//! and over, as the driver's rotation does every 1–2 minutes — here back to back, so that a
//! run of seconds shows what hours of rotation cost. All pods start at once on a fresh
//! process, so the first wave is 200 concurrent Mounts, cold.
//!
//! Two layouts. *Distinct*: no two pods share an identity and an object, so nothing a pod
//! asks for can ride on another pod's request — every Mount pays for its own ten GETs: the
//! worst case, and the figure the targets use. *Replicas*: 20 pods per service account mount
//! the same ten objects, like the replicas of a deployment; because this benchmark makes them
//! rotate in lockstep, identical GETs overlap far more often than when a real driver spreads
//! rotations over minutes, so its requests per Mount are a best case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::stats::Samples;
use super::{Bench, IDENTITIES, VAULT, procfs};

/// Pods mounting at once.
pub const PODS: usize = 200;

/// Objects per pod.
pub const OBJECTS: usize = 10;

/// Mounts each pod makes.
const ROUNDS: usize = 10;

/// No pod starts a Mount after this long.
const TIME_CAP: Duration = Duration::from_secs(60);

/// The deadline each Mount carries, as kubelet's would.
const DEADLINE: Duration = Duration::from_secs(30);

/// Which pods share what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every pod its own (identity, objects) pair.
    Distinct,
    /// 20 pods per identity, all mounting that identity's ten objects.
    Replicas,
}

impl Layout {
    /// Pod `index`'s identity and its first object.
    fn assign(self, index: usize) -> (usize, usize) {
        match self {
            // Pods 0–99 take objects 0–999 in tens; pods 100–199 take them again under
            // another identity.
            Layout::Distinct => ((index + index / 100) % IDENTITIES, (index % 100) * OBJECTS),
            Layout::Replicas => (index % IDENTITIES, (index % IDENTITIES) * OBJECTS),
        }
    }

    /// How the table names it.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Distinct => "distinct objects",
            Layout::Replicas => "replicas (20 pods share)",
        }
    }
}

/// The figures of one run.
#[derive(Debug)]
pub struct Rotation {
    /// Which pods shared what.
    pub layout: Layout,
    /// Mounts answered with every file.
    pub ok: usize,
    /// Mounts that failed or came back incomplete.
    pub failed: usize,
    /// The first failure.
    pub first_failure: Option<String>,
    /// From the first Mount sent to the last answer.
    pub elapsed: Duration,
    /// Latency of the successful Mounts.
    pub latency: Samples,
    /// Provider CPU seconds during the run.
    pub cpu_seconds: f64,
    /// Provider peak RSS (VmHWM) at the end, KiB: the process was fresh, so this is the run's.
    pub peak_rss_kib: u64,
    /// Provider RSS (VmRSS) after the run, KiB.
    pub end_rss_kib: u64,
    /// Key Vault requests during the run.
    pub keyvault_requests: u64,
    /// Entra token requests during the run.
    pub entra_requests: usize,
    /// Connections the provider opened to Key Vault during the run.
    pub vault_connections: usize,
}

/// Runs the rotation on a fresh provider.
pub async fn run(bench: &Bench, layout: Layout) -> Rotation {
    let (provider, client) = bench.provider().await;
    let requests: Vec<_> = (0..PODS)
        .map(|index| {
            let (identity, first) = layout.assign(index);
            let (pod, identity) = bench.pod(index, identity);
            let names = super::names("s-", first, OBJECTS);
            let request = bench.request(&pod, identity, VAULT, "secret", &names);
            (request, names)
        })
        .collect();

    let kv_before = bench.world.keyvault().counts().requests;
    let entra_before = bench.world.entra().requests().len();
    let connections_before = super::vault_connections(bench);
    let cpu_before = super::cpu(&provider);
    let started = Instant::now();
    let give_up = started + TIME_CAP;

    let mut pods = JoinSet::new();
    for (request, names) in requests {
        let mut client = client.clone();
        let names = Arc::new(names);
        pods.spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..ROUNDS {
                if Instant::now() >= give_up {
                    break;
                }
                let deadline = Some(DEADLINE);
                let outcome = match super::mount(&mut client, request.clone(), deadline).await {
                    (time, Ok(answer)) if super::complete(&answer, &names) => Ok(time),
                    (_, Ok(answer)) => Err(format!("{} files", answer.files.len())),
                    (_, Err(status)) => Err(status.to_string()),
                };
                outcomes.push(outcome);
            }
            outcomes
        });
    }

    let mut rotation = Rotation {
        layout,
        ok: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latency: Samples::default(),
        cpu_seconds: 0.0,
        peak_rss_kib: 0,
        end_rss_kib: 0,
        keyvault_requests: 0,
        entra_requests: 0,
        vault_connections: 0,
    };
    while let Some(outcomes) = pods.join_next().await {
        for outcome in outcomes.expect("a pod task") {
            match outcome {
                Ok(time) => {
                    rotation.ok += 1;
                    rotation.latency.push(time);
                }
                Err(reason) => {
                    rotation.failed += 1;
                    rotation.first_failure.get_or_insert(reason);
                }
            }
        }
    }
    rotation.elapsed = started.elapsed();
    rotation.cpu_seconds = super::cpu(&provider) - cpu_before;
    rotation.peak_rss_kib = procfs::status_kib(provider.pid(), "VmHWM").unwrap_or(0);
    rotation.end_rss_kib = procfs::status_kib(provider.pid(), "VmRSS").unwrap_or(0);
    rotation.keyvault_requests = bench.world.keyvault().counts().requests - kv_before;
    rotation.entra_requests = bench.world.entra().requests().len() - entra_before;
    rotation.vault_connections = super::vault_connections(bench) - connections_before;
    super::stop(provider).await;
    rotation
}

impl Rotation {
    /// All Mounts attempted.
    pub fn mounts(&self) -> usize {
        self.ok + self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn distinct_pods_share_no_identity_and_object() {
        let pairs: BTreeSet<_> = (0..PODS).map(|i| Layout::Distinct.assign(i)).collect();
        assert_eq!(pairs.len(), PODS);
        let replicas: BTreeSet<_> = (0..PODS).map(|i| Layout::Replicas.assign(i)).collect();
        assert_eq!(replicas.len(), IDENTITIES);
    }
}
