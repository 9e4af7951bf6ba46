//! `make bench`: how fast the release binary mounts, at any scale, measured in one run on the
//! embedded test world and printed as Markdown tables with ratios.
//!
//! It starts the doubles with 20 ms injected at every Key Vault and Entra answer, then the
//! release binary (a fresh process wherever a figure needs one) and measures: Mount latency
//! cold and warm for 1–100 secrets beside the physical limit and the Go provider's request
//! pattern; steady-state rotation of 200 pods; a burst against a throttled vault (with and
//! without `Retry-After`); start-up and idle memory; and a Mount of 20 PFX certificates. The
//! provider's CPU and memory come from `/proc`. Every loop is bounded: the run stops by itself
//! in a few minutes, and gives up whole after ten.
//!
//! Arguments name the measurements to run (`latency rotation burst startup certs`); none
//! means all of them.

#[path = "../bench/mod.rs"]
mod bench;

use std::time::{Duration, Instant};

use bench::report::{self, Results};
use bench::rotation::Layout;
use bench::{Bench, burst, certheavy, latency, procfs, rotation, startup};

/// The whole run is abandoned (and every provider it started killed) after this long.
const MAX_RUN: Duration = Duration::from_secs(600);

/// The measurements, by the names arguments use.
const MEASUREMENTS: [&str; 5] = ["latency", "rotation", "burst", "startup", "certs"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut chosen: Vec<String> = std::env::args().skip(1).collect();
    if let Some(unknown) = chosen.iter().find(|m| !MEASUREMENTS.contains(&m.as_str())) {
        return Err(
            format!("unknown measurement {unknown:?}: choose from {MEASUREMENTS:?}").into(),
        );
    }
    if chosen.is_empty() {
        chosen = MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect();
    }
    match tokio::time::timeout(MAX_RUN, run(&chosen)).await {
        Ok(results) => {
            report::print(&results);
            Ok(())
        }
        Err(_) => Err(format!("the benchmark did not finish within {MAX_RUN:?}").into()),
    }
}

async fn run(chosen: &[String]) -> Results {
    let wants = |name: &str| chosen.iter().any(|m| m == name);
    let started = Instant::now();
    let load_before = procfs::load_average();
    // Half the machine busy (2 cores) before the start: someone else is compiling.
    if load_before > 1.0 {
        eprintln!(
            "note: load average {load_before:.2} before the run: figures will be noisy; \
             run on a quiet machine for the README"
        );
    }
    let provider = akv_e2e::provider::Provider::binary();
    eprintln!("provider binary: {}", provider.display());

    eprint!("starting and seeding the test world (RSA keys and PFX files take a moment)… ");
    let world = Bench::start().await;
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    if let Err(reason) = &world.certificates {
        eprintln!("certificates: {reason}");
    }

    let step = |name: &str| eprintln!("[{:>5.1} s] {name}", started.elapsed().as_secs_f64());
    let mut results = Results {
        machine: procfs::machine(),
        load: (load_before, f64::NAN),
        elapsed: Duration::ZERO,
        latency: None,
        rotations: Vec::new(),
        bursts: Vec::new(),
        startup: None,
        certs: None,
    };
    if wants("latency") {
        step("Mount latency (cold, warm, Go pattern)");
        results.latency = Some(latency::run(&world).await);
    }
    if wants("rotation") {
        for layout in [Layout::Distinct, Layout::Replicas] {
            step(&format!("steady-state rotation, {}", layout.describe()));
            results.rotations.push(rotation::run(&world, layout).await);
        }
    }
    if wants("burst") {
        step("throttled burst with Retry-After");
        results.bursts.push(burst::run(&world, true).await);
        step("throttled burst without Retry-After");
        results.bursts.push(burst::run(&world, false).await);
    }
    if wants("startup") {
        step("start-up");
        results.startup = Some(startup::run(&world).await);
    }
    if wants("certs") {
        step("certificate-heavy Mount");
        results.certs = Some(certheavy::run(&world).await);
    }
    step("done");
    results.load.1 = procfs::load_average();
    results.elapsed = started.elapsed();
    results
}
