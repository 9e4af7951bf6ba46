//! Start-up: the time from exec to the first `Version` answered over the socket, polled every
//! millisecond as an impatient driver would, and the resident memory of a process that has
//! started and then sat idle.

use std::time::{Duration, Instant};

use akv_e2e::driver;
use akv_e2e::provider::Provider;

use super::stats::Samples;
use super::{Bench, procfs};

/// Processes started.
const RUNS: usize = 10;

/// How long a process may take to answer before the run counts as failed.
const GIVE_UP: Duration = Duration::from_secs(10);

/// How long the process idles before its RSS is read.
const IDLE: Duration = Duration::from_secs(2);

/// The figures of the start-up runs.
#[derive(Debug, Default)]
pub struct Startup {
    /// Exec to first `Version`.
    pub ready: Samples,
    /// VmRSS after [`IDLE`], KiB: the largest of the runs.
    pub idle_rss_kib: u64,
    /// Runs that never answered, with the first reason.
    pub failures: usize,
    /// The first failure.
    pub first_failure: Option<String>,
}

/// Starts [`RUNS`] processes one after another.
pub async fn run(bench: &Bench) -> Startup {
    let mut startup = Startup::default();
    for run in 0..RUNS {
        match once(bench, run < 3).await {
            Ok((ready, rss)) => {
                startup.ready.push(ready);
                startup.idle_rss_kib = startup.idle_rss_kib.max(rss.unwrap_or(0));
            }
            Err(reason) => {
                startup.failures += 1;
                startup.first_failure.get_or_insert(reason);
            }
        }
    }
    startup
}

async fn once(bench: &Bench, read_idle_rss: bool) -> Result<(Duration, Option<u64>), String> {
    let started = Instant::now();
    let mut provider = Provider::spawn(bench.provider_options())?;
    let ready = loop {
        if let Some(status) = provider.try_wait() {
            return Err(format!("the provider exited with {status}"));
        }
        if provider.socket().exists() {
            let mut client = driver::connect(provider.socket()).await;
            let call = client.version(driver::version_request());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), call).await {
                break started.elapsed();
            }
        }
        if started.elapsed() > GIVE_UP {
            super::stop(provider).await;
            return Err(format!("no Version answered within {GIVE_UP:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let rss = if read_idle_rss {
        tokio::time::sleep(IDLE).await;
        procfs::status_kib(provider.pid(), "VmRSS").ok()
    } else {
        None
    };
    super::stop(provider).await;
    Ok((ready, rss))
}
