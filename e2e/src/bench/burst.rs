//! A throttled burst: [`BURST_VAULT`](super::BURST_VAULT) limited to a rate well below the
//! demand, and 100 pods mounting ten different secrets each at once — 1,000 GETs that the
//! vault serves at 100 a second. Every Mount must end within its deadline, either with every
//! file or with `UNAVAILABLE` naming the throttling: none may hang, none may come back with
//! part of its files. Run twice: the 429s with `Retry-After`, and without.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_e2e::keyvault::Throttle;
use tokio::task::JoinSet;
use tonic::Code;

use super::{BURST_VAULT, Bench};

/// Pods mounting at once, each its own ten secrets.
pub const PODS: usize = 100;

/// Objects per pod.
pub const OBJECTS: usize = 10;

/// The vault's limit: requests per second, and the burst a quiet vault takes at once.
pub const RATE: u32 = 100;

/// See [`RATE`].
pub const BURST: u32 = 100;

/// The deadline each Mount carries (`grpc-timeout`).
pub const DEADLINE: Duration = Duration::from_secs(15);

/// How long past its deadline a Mount may take before it counts as hung.
const HANG_MARGIN: Duration = Duration::from_secs(5);

/// The figures of one run.
#[derive(Debug, Default)]
pub struct Burst {
    /// Whether the 429s carried `Retry-After`.
    pub retry_after: bool,
    /// Mounts answered with every file.
    pub ok: usize,
    /// Mounts refused with `UNAVAILABLE` that name the throttling.
    pub refused: usize,
    /// Mounts answered after their deadline (either way).
    pub late: usize,
    /// Mounts that never answered within deadline + margin.
    pub hung: usize,
    /// Mounts with any other answer: partial files, another code, a message that does not
    /// say why.
    pub wrong: usize,
    /// The first wrong answer.
    pub first_wrong: Option<String>,
    /// One refusal's message, to show what operators see.
    pub refusal_message: Option<String>,
    /// From the burst to the last answer.
    pub elapsed: Duration,
    /// The slowest Mount.
    pub slowest: Duration,
    /// Requests the vault saw during the run.
    pub keyvault_requests: u64,
    /// Of those, answered 429.
    pub throttled: u64,
}

/// One burst on a fresh provider, with or without `Retry-After`.
pub async fn run(bench: &Bench, retry_after: bool) -> Burst {
    let (provider, client) = bench.provider().await;
    let kv = bench.world.keyvault();
    let requests: Vec<_> = (0..PODS)
        .map(|index| {
            let (pod, identity) = bench.pod(index, index);
            let names = super::names("b-", index * OBJECTS, OBJECTS);
            let request = bench.request(&pod, identity, BURST_VAULT, "secret", &names);
            (request, names)
        })
        .collect();

    let limit = Throttle {
        per_second: RATE,
        burst: BURST,
        retry_after,
    };
    kv.set_throttle(BURST_VAULT, Some(limit));
    let before = kv.counts();
    let started = Instant::now();
    let mut pods = JoinSet::new();
    for (request, names) in requests {
        let mut client = client.clone();
        let names = Arc::new(names);
        pods.spawn(async move {
            let call = super::mount(&mut client, request, Some(DEADLINE));
            let answer = tokio::time::timeout(DEADLINE + HANG_MARGIN, call).await;
            (answer, names)
        });
    }

    let mut burst = Burst {
        retry_after,
        ..Burst::default()
    };
    while let Some(joined) = pods.join_next().await {
        let (answer, names) = joined.expect("a pod task");
        let Ok((time, answer)) = answer else {
            burst.hung += 1;
            continue;
        };
        burst.slowest = burst.slowest.max(time);
        if time > DEADLINE {
            burst.late += 1;
        }
        match answer {
            Ok(answer) if super::complete(&answer, &names) => burst.ok += 1,
            Ok(answer) => burst.wrong(format!("partial answer: {} files", answer.files.len())),
            Err(status)
                if status.code() == Code::Unavailable
                    && status.message().to_ascii_lowercase().contains("throttl") =>
            {
                burst.refused += 1;
                burst
                    .refusal_message
                    .get_or_insert_with(|| status.message().to_owned());
            }
            Err(status) => burst.wrong(status.to_string()),
        }
    }
    burst.elapsed = started.elapsed();
    let after = kv.counts();
    burst.keyvault_requests = after.requests - before.requests;
    burst.throttled = after.throttled - before.throttled;
    kv.set_throttle(BURST_VAULT, None);
    super::stop(provider).await;
    burst
}

impl Burst {
    fn wrong(&mut self, reason: String) {
        self.wrong += 1;
        self.first_wrong.get_or_insert(reason);
    }

    /// Whether the run met the target: every Mount answered in time, completely or with a
    /// throttling `UNAVAILABLE`.
    pub fn met(&self) -> bool {
        self.hung == 0 && self.wrong == 0 && self.late == 0
    }
}
