//! The tables `make bench` prints, in Markdown so they can go into the README as they are,
//! and the targets of the performance issue checked against the figures of this one run.

use std::time::Duration;

use super::burst::{self, Burst};
use super::certheavy::{CertHeavy, Figures};
use super::latency::{self, Row};
use super::rotation::{self, Rotation};
use super::startup::Startup;
use super::stats::{ms, ratio};
use super::{IDENTITIES, ROUND_TRIP};

/// Everything one run measured.
pub struct Results {
    /// The machine line.
    pub machine: String,
    /// Load average before and after.
    pub load: (f64, f64),
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Mount latency by size.
    pub latency: Option<Vec<Row>>,
    /// Steady-state rotation, both layouts.
    pub rotations: Vec<Rotation>,
    /// Throttled bursts, with and without `Retry-After`.
    pub bursts: Vec<Burst>,
    /// Start-up.
    pub startup: Option<Startup>,
    /// Certificate-heavy Mounts.
    pub certs: Option<CertHeavy>,
}

const MIB: f64 = 1024.0;

/// Prints every table and the targets.
pub fn print(results: &Results) {
    println!("## Benchmark\n");
    println!("Machine: {}.", results.machine);
    let args = super::provider_args();
    if args.is_empty() {
        println!("Provider: the release binary with its default flags.");
    } else {
        println!("Provider: the release binary with {}.", args.join(" "));
    }
    println!(
        "Load average (1 min) {:.2} before, {:.2} after; the whole run took {:.0} s.\n",
        results.load.0,
        results.load.1,
        results.elapsed.as_secs_f64()
    );
    if let Some(rows) = &results.latency {
        latency_table(rows);
    }
    if !results.rotations.is_empty() {
        rotation_table(&results.rotations);
    }
    if !results.bursts.is_empty() {
        burst_table(&results.bursts);
    }
    if let Some(startup) = &results.startup {
        startup_table(startup);
    }
    if let Some(certs) = &results.certs {
        cert_table(certs);
    }
    targets(results);
}

fn latency_table(rows: &[Row]) {
    println!(
        "### Mount latency, {} ms injected round trip (ms, median / p95)\n",
        ROUND_TRIP.as_millis()
    );
    println!(
        "Cold: first Mount of a fresh process (limit: 2 round trips = {} ms). Warm: token \
         cached (limit: 1 round trip = {} ms). Go pattern: 1 token + 1 challenge + one GET \
         after another, against the same doubles.\n",
        latency::cold_limit().as_millis(),
        latency::warm_limit().as_millis()
    );
    println!(
        "| objects | cold | cold ÷ limit | warm | warm ÷ limit | Go pattern | Go ÷ cold | Go ÷ warm | failures |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} / {} | {} | {} / {} | {} | {} / {} | {} | {} | {} |",
            row.objects,
            ms(row.cold.median()),
            ms(row.cold.p95()),
            ratio(row.cold.median(), latency::cold_limit()),
            ms(row.warm.median()),
            ms(row.warm.p95()),
            ratio(row.warm.median(), latency::warm_limit()),
            ms(row.go.median()),
            ms(row.go.p95()),
            ratio(row.go.median(), row.cold.median()),
            ratio(row.go.median(), row.warm.median()),
            row.failures,
        );
    }
    println!(
        "\nSamples per size: cold {}, warm {}, Go pattern {}. Connections a cold Mount opens \
         to Key Vault (TCP + CONNECT + TLS each), by size: {}.",
        rows.first().map_or(0, |r| r.cold.len()),
        rows.first().map_or(0, |r| r.warm.len()),
        rows.first().map_or(0, |r| r.go.len()),
        rows.iter()
            .map(|r| format!(
                "{} → {:.1}",
                r.objects,
                r.cold_connections as f64 / r.cold.len().max(1) as f64
            ))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for row in rows {
        if let Some(reason) = &row.first_failure {
            println!("- {} objects: first failure: {reason}", row.objects);
        }
    }
    println!();
}

fn rotation_table(runs: &[Rotation]) {
    println!(
        "### Steady-state rotation: {} pods × {} objects, {IDENTITIES} service accounts, \
         each pod Mounting back to back\n",
        rotation::PODS,
        rotation::OBJECTS
    );
    let header: Vec<&str> = runs.iter().map(|r| r.layout.describe()).collect();
    println!("| figure | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(runs.len()));
    let row = |figure: &str, value: &dyn Fn(&Rotation) -> String| {
        let values: Vec<String> = runs.iter().map(value).collect();
        println!("| {figure} | {} |", values.join(" | "));
    };
    let mounts = |r: &Rotation| r.mounts().max(1) as f64;
    row("Mounts (ok / failed)", &|r| {
        format!("{} / {}", r.ok, r.failed)
    });
    row("Mounts/s", &|r| {
        format!("{:.0}", r.ok as f64 / r.elapsed.as_secs_f64())
    });
    row("Mount latency, median / p95", &|r| {
        format!("{} / {} ms", ms(r.latency.median()), ms(r.latency.p95()))
    });
    row("provider CPU per 1,000 Mounts", &|r| {
        format!("{:.2} s", r.cpu_seconds / mounts(r) * 1000.0)
    });
    row("provider peak RSS (VmHWM)", &|r| {
        format!("{:.1} MiB", r.peak_rss_kib as f64 / MIB)
    });
    row("provider RSS after the run (VmRSS)", &|r| {
        format!("{:.1} MiB", r.end_rss_kib as f64 / MIB)
    });
    row("connections opened to Key Vault", &|r| {
        r.vault_connections.to_string()
    });
    row("Key Vault requests per Mount", &|r| {
        format!("{:.2}", r.keyvault_requests as f64 / mounts(r))
    });
    row("Entra token requests, total", &|r| {
        r.entra_requests.to_string()
    });
    for r in runs {
        if let Some(reason) = &r.first_failure {
            println!("\n- {}: first failure: {reason}", r.layout.describe());
        }
    }
    println!();
}

fn burst_table(bursts: &[Burst]) {
    println!(
        "### Throttled burst: {} pods × {} different secrets at once, vault limited to {}/s \
         (burst {}), {} s deadline\n",
        burst::PODS,
        burst::OBJECTS,
        burst::RATE,
        burst::BURST,
        burst::DEADLINE.as_secs()
    );
    println!(
        "| 429 with | Mounts ok | refused (UNAVAILABLE, throttled) | late / hung / wrong | total time | slowest Mount | KV requests | answered 429 | requests per object |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in bursts {
        println!(
            "| {} | {} | {} | {} / {} / {} | {:.1} s | {:.1} s | {} | {} | {:.1} |",
            if b.retry_after {
                "Retry-After"
            } else {
                "no Retry-After"
            },
            b.ok,
            b.refused,
            b.late,
            b.hung,
            b.wrong,
            b.elapsed.as_secs_f64(),
            b.slowest.as_secs_f64(),
            b.keyvault_requests,
            b.throttled,
            b.keyvault_requests as f64 / (burst::PODS * burst::OBJECTS) as f64
        );
    }
    for b in bursts {
        if let Some(reason) = &b.first_wrong {
            println!(
                "\n- first wrong answer (Retry-After {}): {reason}",
                b.retry_after
            );
        }
        if let Some(message) = &b.refusal_message {
            println!("\n- a refusal (Retry-After {}): {message}", b.retry_after);
        }
    }
    println!();
}

fn startup_table(s: &Startup) {
    println!("### Start-up\n");
    println!("| figure | value |");
    println!("|---|---:|");
    println!(
        "| exec → first Version, median / p95 ({} runs) | {} / {} ms |",
        s.ready.len(),
        ms(s.ready.median()),
        ms(s.ready.p95())
    );
    println!(
        "| idle RSS (VmRSS 2 s after start) | {:.1} MiB |",
        s.idle_rss_kib as f64 / MIB
    );
    if let Some(reason) = &s.first_failure {
        println!("\n{} runs failed; first: {reason}", s.failures);
    }
    println!();
}

fn cert_table(c: &CertHeavy) {
    println!(
        "### Certificate-heavy Mount: 20 modern PFX certificates (RSA-2048, 3-certificate chain)\n"
    );
    println!("| Mount of | provider CPU per Mount | latency median / p95 |");
    println!("|---|---:|---:|");
    let line = |what: &str, figures: &Result<Figures, String>| match figures {
        Ok(f) => println!(
            "| {what} | {:.1} ms | {} / {} ms |",
            f.cpu_per_mount * 1e3,
            ms(f.latency.median()),
            ms(f.latency.p95())
        ),
        Err(reason) => println!("| {what} | not measured: {reason} | |"),
    };
    line("20 PFX certificates → PEM", &c.certificates);
    line("20 plain secrets", &c.secrets);
    println!();
}

fn targets(results: &Results) {
    println!("### Targets\n");
    println!("| target | measured | met |");
    println!("|---|---|:-:|");
    let check = |target: &str, measured: String, met: bool| {
        println!(
            "| {target} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        );
    };

    let rows = results.latency.as_deref().unwrap_or_default();
    if let Some(row) = rows.iter().find(|row| row.objects == 100) {
        let warm = row.warm.median();
        let cold = row.cold.median();
        let go = row.go.median();
        let warm_x = warm.as_secs_f64() / latency::warm_limit().as_secs_f64();
        let cold_x = cold.as_secs_f64() / latency::cold_limit().as_secs_f64();
        check(
            "warm Mount, 100 secrets ≤ 3× one round trip",
            format!("{} ms = {warm_x:.2}×", ms(warm)),
            warm_x <= 3.0 && row.failures == 0,
        );
        check(
            "cold Mount, 100 secrets ≤ 4× two round trips",
            format!("{} ms = {cold_x:.2}×", ms(cold)),
            cold_x <= 4.0 && row.failures == 0,
        );
        let go_warm = go.as_secs_f64() / warm.as_secs_f64();
        let go_cold = go.as_secs_f64() / cold.as_secs_f64();
        check(
            "≥ 25× faster than the Go pattern at 100 objects (warm)",
            format!("{go_warm:.1}×"),
            go_warm >= 25.0,
        );
        check(
            "≥ 25× faster than the Go pattern at 100 objects (cold)",
            format!("{go_cold:.1}×"),
            go_cold >= 25.0,
        );
    }

    for r in &results.rotations {
        check(
            &format!(
                "Entra: one request per identity per token lifetime ({})",
                r.layout.describe()
            ),
            format!("{} requests for {IDENTITIES} identities", r.entra_requests),
            r.entra_requests <= IDENTITIES,
        );
        let peak = r.peak_rss_kib as f64 / MIB;
        check(
            &format!(
                "peak RSS, 200 concurrent Mounts of 10 objects ≤ 64 MiB ({})",
                r.layout.describe()
            ),
            format!("{peak:.1} MiB"),
            peak <= 64.0 && peak > 0.0,
        );
    }
    for b in &results.bursts {
        check(
            &format!(
                "throttled burst ({}): every Mount ok or UNAVAILABLE naming throttling, in time",
                if b.retry_after {
                    "Retry-After"
                } else {
                    "no Retry-After"
                }
            ),
            format!(
                "{} ok, {} refused, {} late, {} hung, {} wrong",
                b.ok, b.refused, b.late, b.hung, b.wrong
            ),
            b.met(),
        );
    }
    if let Some(startup) = &results.startup {
        let idle = startup.idle_rss_kib as f64 / MIB;
        check(
            "idle RSS ≤ 15 MiB",
            format!("{idle:.1} MiB"),
            idle <= 15.0 && idle > 0.0,
        );
        let ready = startup.ready.median();
        check(
            "start-up to first Version ≤ 100 ms (median)",
            format!("{} ms (p95 {} ms)", ms(ready), ms(startup.ready.p95())),
            ready <= Duration::from_millis(100) && startup.failures == 0,
        );
    }
    println!();
}
