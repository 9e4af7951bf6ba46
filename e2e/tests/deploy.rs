//! What ships beside the binary: the manifests in deploy/ render and validate offline (and a
//! broken copy fails), the release binary links only what the image's runtime base has, and
//! its measured memory fits the DaemonSet's request and limit.
//!
//! The manifest checks need kubectl and the virtual environment of deploy/requirements.txt
//! (`make deploy-check` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use akv_e2e::driver::{self, Pod};
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, ORDERS_CLIENT_ID, Orders};
use akv_e2e::world::TOKEN_EXCHANGE_AUDIENCE;

/// Mounts the footprint test makes, for 20 service accounts of one namespace.
const MOUNTS: usize = 200;
const SERVICE_ACCOUNTS: usize = 20;
const CONCURRENCY: usize = 10;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the workspace")
        .to_owned()
}

/// Runs deploy/check.py on `deploy_dir`; returns whether it passed and what it printed.
fn deploy_check(deploy_dir: &Path) -> (bool, String) {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make deploy-check` to install deploy/requirements.txt",
        python.display()
    );
    let output = Command::new(python)
        .arg(root.join("deploy/check.py"))
        .arg(deploy_dir)
        .output()
        .expect("run deploy/check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A copy of deploy/ in a temporary folder, to break.
fn deploy_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&workspace_root().join("deploy"), copy.path());
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_manifests_render_and_validate() {
    let (passed, output) = deploy_check(&workspace_root().join("deploy"));
    assert!(passed, "{output}");
    assert_eq!(
        output.trim(),
        "deploy-check: 3 kustomizations, 8 documents, valid for Kubernetes 1.30 and 1.37"
    );
}

#[test]
fn a_broken_manifest_fails_the_check_by_name() {
    let copy = deploy_copy();
    let daemonset = copy.path().join("base/daemonset.yaml");
    edit(
        &daemonset,
        "imagePullPolicy: IfNotPresent",
        "imagePullPolcy: IfNotPresent",
    );
    edit(
        &daemonset,
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    );
    let spc = copy
        .path()
        .join("examples/workload-identity/secretproviderclass.yaml");
    edit(&spc, "  provider: azure", "  provder: azure");
    edit(
        &copy.path().join("driver/values.yaml"),
        "audience: api://AzureADTokenExchange",
        "audience: api://Other",
    );

    let (passed, output) = deploy_check(copy.path());

    assert!(!passed, "{output}");
    for expected in [
        "deploy-check: base: DaemonSet/akv-csi-provider: Kubernetes 1.30: \
         spec.template.spec.containers.0: Additional properties are not allowed \
         ('imagePullPolcy' was unexpected)",
        "deploy-check: base: DaemonSet/akv-csi-provider: readOnlyRootFilesystem must be true",
        "deploy-check: overlays/json-logs-metrics: DaemonSet/akv-csi-provider: \
         readOnlyRootFilesystem must be true",
        "deploy-check: examples/workload-identity: SecretProviderClass/orders-kv: $.spec: \
         Additional properties are not allowed ('provder' was unexpected)",
        "deploy-check: driver/values.yaml: tokenRequests must include audience \
         api://AzureADTokenExchange",
    ] {
        assert!(output.contains(expected), "{expected}\nnot in:\n{output}");
    }
    assert!(
        output.ends_with("deploy-check: FAILED, 9 problem(s)\n"),
        "{output}"
    );
}

#[test]
fn a_kustomization_that_does_not_render_fails_the_check() {
    let copy = deploy_copy();
    edit(
        &copy
            .path()
            .join("overlays/json-logs-metrics/kustomization.yaml"),
        "  - ../../base",
        "  - ../../no-such-base",
    );

    let (passed, output) = deploy_check(copy.path());

    assert!(!passed, "{output}");
    assert!(
        output.contains("deploy-check: overlays/json-logs-metrics: kubectl kustomize failed: "),
        "{output}"
    );
}

/// Libraries of gcr.io/distroless/cc-debian12, the Dockerfile's runtime base (glibc 2.36).
const RUNTIME_LIBRARIES: [&str; 4] = [
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
];

#[test]
fn the_release_binary_fits_the_runtime_base() {
    let binary = Provider::binary();
    let dynamic = Command::new("readelf")
        .args(["--dynamic", "--wide"])
        .arg(&binary)
        .output()
        .expect("readelf (binutils) is installed with gcc");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "{dynamic}");
    for library in &needed {
        assert!(
            RUNTIME_LIBRARIES.contains(library),
            "{library} is not in the runtime base"
        );
    }

    let symbols = Command::new("readelf")
        .args(["--dyn-syms", "--wide"])
        .arg(&binary)
        .output()
        .unwrap();
    let newest = String::from_utf8_lossy(&symbols.stdout)
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap();
    assert!(newest <= (2, 36), "needs GLIBC_{}.{}", newest.0, newest.1);
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A Kubernetes memory quantity in `Mi`, as the DaemonSet writes them.
fn mebibytes(quantity: &str) -> u64 {
    quantity
        .strip_suffix("Mi")
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("{quantity:?} is not in Mi"))
}

fn daemonset_memory() -> (u64, u64) {
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/base/daemonset.yaml")).unwrap();
    let daemonset: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let resources = &daemonset["spec"]["template"]["spec"]["containers"][0]["resources"];
    (
        mebibytes(resources["requests"]["memory"].as_str().unwrap()),
        mebibytes(resources["limits"]["memory"].as_str().unwrap()),
    )
}

#[tokio::test]
async fn two_hundred_mounts_fit_the_daemonset_memory() {
    let orders = Orders::start().await;
    // The orders pod's account and 19 more: Entra's limit of 20 federated credentials per app.
    let mut pods = vec![orders.pod.clone()];
    for i in 1..SERVICE_ACCOUNTS {
        let account = format!("sa-{i}");
        orders.world.entra().add_federated_credential(
            ORDERS_CLIENT_ID,
            &orders.world.issuer_url(),
            &format!("system:serviceaccount:orders:{account}"),
            TOKEN_EXCHANGE_AUDIENCE,
        );
        pods.push(Pod::new("orders", &format!("app-{i}"), &account));
    }
    let provider = Provider::start(orders.provider_options(&[])).await;
    let pid = provider.pid();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (idle_kib, _) = memory_kib(pid);
    let idle_ticks = cpu_ticks(pid);

    // All pods of a node share the driver's one connection; Mounts arrive concurrently.
    let client = driver::connect(provider.socket()).await;
    let requests: Vec<_> = (0..MOUNTS)
        .map(|i| orders.request_for(&scenario::spc_yaml(), &pods[i % SERVICE_ACCOUNTS]))
        .collect();
    let started = std::time::Instant::now();
    for batch in requests.chunks(CONCURRENCY) {
        let calls: Vec<_> = batch
            .iter()
            .map(|request| {
                let mut client = client.clone();
                let request = request.clone();
                tokio::spawn(async move { client.mount(request).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().into_inner().files.len(), 3);
        }
    }
    let elapsed = started.elapsed();
    let (rss_kib, peak_kib) = memory_kib(pid);
    let ticks = cpu_ticks(pid) - idle_ticks;

    let (request_mib, limit_mib) = daemonset_memory();
    println!(
        "footprint: idle RSS {idle_kib} KiB; after {MOUNTS} Mounts ({SERVICE_ACCOUNTS} \
         identities, {CONCURRENCY} at a time, 3 objects each, {elapsed:?}): RSS {rss_kib} KiB, \
         peak {peak_kib} KiB; CPU {ticks} ticks; DaemonSet request {request_mib} Mi, limit \
         {limit_mib} Mi"
    );
    assert!(
        peak_kib < request_mib * 1024,
        "the peak exceeds the request"
    );
    assert!(
        peak_kib * 4 < limit_mib * 1024,
        "less than 4x headroom under the limit"
    );
    assert_eq!(orders.world.entra().requests().len(), SERVICE_ACCOUNTS);
}
