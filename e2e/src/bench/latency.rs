//! Mount latency against the physical limit and against the Go provider's request pattern.
//!
//! For 1, 10, 50 and 100 secrets at the injected round trip: *cold* is the first Mount of a
//! fresh provider process (token request, TLS through the proxy, then the GETs), so every
//! cold sample starts its own process; *warm* is a Mount of a process whose token is cached.
//! The limits are what no client can beat: cold two round trips (token, then the GETs in
//! parallel), warm one. The Go pattern is replayed by [`super::goreplay`].

use std::time::Duration;

use super::stats::Samples;
use super::{Bench, ROUND_TRIP, VAULT};

/// Object counts measured.
pub const SIZES: [usize; 4] = [1, 10, 50, 100];

/// Fresh processes per size for the cold figures.
const COLD_RUNS: usize = 10;

/// Warm Mounts per size.
const WARM_RUNS: usize = 30;

/// Go-pattern Mounts per size (at 100 objects each takes about 102 round trips).
const GO_RUNS: usize = 7;

/// The figures of one size.
#[derive(Debug, Default)]
pub struct Row {
    /// Secrets per Mount.
    pub objects: usize,
    /// First Mounts of fresh processes.
    pub cold: Samples,
    /// Mounts with the token cached.
    pub warm: Samples,
    /// The Go provider's pattern.
    pub go: Samples,
    /// Connections to Key Vault that the cold Mounts opened, all together.
    pub cold_connections: usize,
    /// Mounts that failed or came back incomplete.
    pub failures: usize,
    /// The first failure, if any.
    pub first_failure: Option<String>,
}

impl Row {
    fn fail(&mut self, reason: String) {
        self.failures += 1;
        self.first_failure.get_or_insert(reason);
    }
}

/// The physical limit of a cold Mount: the token round trip, then the GETs side by side.
pub fn cold_limit() -> Duration {
    2 * ROUND_TRIP
}

/// The physical limit of a warm Mount: the GETs side by side.
pub fn warm_limit() -> Duration {
    ROUND_TRIP
}

/// Measures every size.
pub async fn run(bench: &Bench) -> Vec<Row> {
    let mut rows = Vec::new();
    for objects in SIZES {
        rows.push(size(bench, objects).await);
    }
    rows
}

async fn size(bench: &Bench, objects: usize) -> Row {
    let names = super::names("s-", 0, objects);
    let mut row = Row {
        objects,
        ..Row::default()
    };
    let (pod, identity) = bench.pod(0, 0);
    let request = bench.request(&pod, identity, VAULT, "secret", &names);

    for _ in 0..COLD_RUNS {
        let (provider, mut client) = bench.provider().await;
        let connections = super::vault_connections(bench);
        match super::mount(&mut client, request.clone(), None).await {
            (time, Ok(answer)) if super::complete(&answer, &names) => row.cold.push(time),
            (_, Ok(answer)) => row.fail(format!("{} files", answer.files.len())),
            (_, Err(status)) => row.fail(status.to_string()),
        }
        row.cold_connections += super::vault_connections(bench) - connections;
        super::stop(provider).await;
    }

    let (provider, mut client) = bench.provider().await;
    if let (_, Err(status)) = super::mount(&mut client, request.clone(), None).await {
        row.fail(status.to_string());
    }
    for _ in 0..WARM_RUNS {
        match super::mount(&mut client, request.clone(), None).await {
            (time, Ok(answer)) if super::complete(&answer, &names) => row.warm.push(time),
            (_, Ok(answer)) => row.fail(format!("{} files", answer.files.len())),
            (_, Err(status)) => row.fail(status.to_string()),
        }
    }
    super::stop(provider).await;

    let go = bench.go_pattern(identity, VAULT);
    let assertion = bench.pod_token(&pod);
    // One untimed Mount opens the connection pool, as a long-running Go provider has.
    if let Err(reason) = go.mount(&assertion, &names).await {
        row.fail(format!("Go pattern: {reason}"));
    }
    for _ in 0..GO_RUNS {
        match go.mount(&assertion, &names).await {
            Ok(time) => row.go.push(time),
            Err(reason) => row.fail(format!("Go pattern: {reason}")),
        }
    }
    row
}
