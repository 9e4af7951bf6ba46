//! The certificate-heavy Mount: 20 certificates mounted as `objectType: secret`, so the
//! provider decrypts every modern PFX (PBKDF2, AES-256) and writes key and chain as PEM — the
//! CPU-bound end of a Mount. Beside it, the same Mount count of 20 plain secrets, to show what
//! the rendering adds.

use super::stats::Samples;
use super::{Bench, CERTIFICATES, VAULT};

/// Mounts measured (after one untimed Mount that warms the token).
const RUNS: usize = 30;

/// CPU and latency of one kind of Mount.
#[derive(Debug, Default)]
pub struct Figures {
    /// Provider CPU seconds per Mount.
    pub cpu_per_mount: f64,
    /// Latency.
    pub latency: Samples,
}

/// Both measurements; a side that could not run says why.
#[derive(Debug)]
pub struct CertHeavy {
    /// 20 PFX certificates per Mount.
    pub certificates: Result<Figures, String>,
    /// 20 plain secrets per Mount.
    pub secrets: Result<Figures, String>,
}

/// Runs both on one fresh provider.
pub async fn run(bench: &Bench) -> CertHeavy {
    let (provider, mut client) = bench.provider().await;
    let (pod, identity) = bench.pod(0, 0);

    let secrets = super::names("s-", 0, CERTIFICATES);
    let request = bench.request(&pod, identity, VAULT, "secret", &secrets);
    let plain = measure(&provider, &mut client, request, |answer| {
        super::complete(answer, &secrets)
    })
    .await;

    let certificates = match &bench.certificates {
        Err(reason) => Err(format!("no certificates: {reason}")),
        Ok(count) => {
            let names: Vec<String> = (0..*count).map(super::cert_name).collect();
            let request = bench.request(&pod, identity, VAULT, "secret", &names);
            measure(&provider, &mut client, request, |answer| {
                answer.files.len() == names.len()
                    && answer.files.iter().all(|file| {
                        let text = String::from_utf8_lossy(&file.contents);
                        text.contains("PRIVATE KEY-----") && text.contains("BEGIN CERTIFICATE")
                    })
            })
            .await
        }
    };
    super::stop(provider).await;
    CertHeavy {
        certificates,
        secrets: plain,
    }
}

async fn measure(
    provider: &akv_e2e::provider::Provider,
    client: &mut super::Client,
    request: akv_e2e::driver::pb::MountRequest,
    complete: impl Fn(&akv_e2e::driver::pb::MountResponse) -> bool,
) -> Result<Figures, String> {
    let check = |answer: Result<akv_e2e::driver::pb::MountResponse, tonic::Status>| match answer {
        Ok(answer) if complete(&answer) => Ok(()),
        Ok(answer) => Err(format!(
            "unexpected answer: {} files, first {:?}",
            answer.files.len(),
            answer.files.first().map(|f| f.path.clone())
        )),
        Err(status) => Err(status.to_string()),
    };
    let (_, first) = super::mount(client, request.clone(), None).await;
    check(first)?;

    let mut figures = Figures::default();
    let before = super::cpu(provider);
    for _ in 0..RUNS {
        let (time, answer) = super::mount(client, request.clone(), None).await;
        check(answer)?;
        figures.latency.push(time);
    }
    figures.cpu_per_mount = (super::cpu(provider) - before) / RUNS as f64;
    Ok(figures)
}
