//! Standalone mode through the release binary: `akv-csi-provider mount` writes the orders
//! volume into a folder, keeps it fresh, survives outages, and exits with codes scripts can
//! read.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use akv_e2e::Fault;
use akv_e2e::provider::{DEAD_END, Provider};
use akv_e2e::scenario::{self, DB_CONN, Orders, SIGNING_SALT, VAULT};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Setup {
    orders: Orders,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let orders = Orders::start().await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spc.yaml"), scenario::spc_yaml()).unwrap();
        let setup = Setup { orders, dir };
        setup.write_token("sa-orders");
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn target(&self) -> PathBuf {
        self.path("volume")
    }

    /// Writes a projected token for `service_account` into the token file, as the platform
    /// does when it rotates it.
    fn write_token(&self, service_account: &str) {
        let token = self.orders.world.sa_token(
            "orders",
            service_account,
            "vm-1",
            "uid-1",
            "api://AzureADTokenExchange",
        );
        let tmp = self.path("token.tmp");
        std::fs::write(&tmp, token).unwrap();
        std::fs::rename(tmp, self.path("token")).unwrap();
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(Provider::binary());
        command
            .arg("mount")
            .arg(format!("--spc={}", self.path("spc.yaml").display()))
            .arg(format!("--target={}", self.target().display()))
            .arg(format!(
                "--federated-token-file={}",
                self.path("token").display()
            ))
            .arg(format!("--imds-endpoint={DEAD_END}"))
            .args(extra)
            .env_clear()
            .env("HTTPS_PROXY", self.orders.world.proxy_url())
            .env("SSL_CERT_FILE", self.orders.world.ca_file())
            .stdin(Stdio::null());
        command
    }

    /// Runs `mount --once` and returns its exit code and output.
    async fn once(&self, extra: &[&str]) -> (i32, String) {
        let mut command = self.command(&[&["--once"], extra].concat());
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    fn spawn(&self, extra: &[&str]) -> Loop {
        let log = self.path("loop.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(extra)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Loop { child, log }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.target().join(name)).unwrap_or_default()
    }
}

/// A rotation loop in the background; killed on drop if still running.
struct Loop {
    child: Child,
    log: PathBuf,
}

impl Loop {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    async fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the loop did not exit:\n{}", self.output());
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every 20 ms for up to `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn once_writes_the_volume_like_kubelet() {
    let setup = Setup::new().await;

    let (code, output) = setup.once(&[]).await;

    assert_eq!(code, 0, "{output}");
    let target = setup.target();
    assert_eq!(setup.read("orders-db-conn"), DB_CONN);
    assert_eq!(setup.read("orders-signing-salt"), SIGNING_SALT);
    assert_eq!(mode(&target.join("orders-signing-salt")), 0o400);
    assert_eq!(mode(&target.join("config/api-key.txt")), 0o644);
    assert_eq!(
        std::fs::read_link(target.join("config")).unwrap(),
        Path::new("..data/config")
    );
    assert!(
        std::fs::read_link(target.join("..data"))
            .unwrap()
            .to_string_lossy()
            .starts_with("..20")
    );
    assert!(
        output.contains("secret/orders-db-conn@"),
        "changes are logged by id and version: {output}"
    );
    assert!(!output.contains(DB_CONN), "{output}");
}

#[tokio::test]
async fn exit_codes_say_which_part_failed() {
    let setup = Setup::new().await;

    let (code, output) = setup.once(&["--spc=/nonexistent/spc.yaml"]).await;
    assert_eq!(code, 2, "configuration: {output}");

    setup.write_token("sa-stranger");
    let (code, output) = setup.once(&[]).await;
    assert_eq!(code, 3, "identity: {output}");
    assert!(output.contains("AADSTS700213"), "{output}");

    setup.write_token("sa-orders");
    std::fs::write(
        setup.path("spc.yaml"),
        scenario::spc_with_objects("        - {objectName: missing, objectType: secret}\n"),
    )
    .unwrap();
    let (code, output) = setup.once(&[]).await;
    assert_eq!(code, 4, "Key Vault: {output}");
    assert!(
        !setup.target().join("..data").exists(),
        "nothing was written"
    );
}

#[tokio::test]
async fn aliases_cannot_escape_the_target() {
    let setup = Setup::new().await;
    let outside = setup.path("escaped");
    std::fs::write(
        setup.path("spc.yaml"),
        scenario::spc_with_objects(
            "        - {objectName: orders-db-conn, objectType: secret, objectAlias: ../escaped}\n",
        ),
    )
    .unwrap();

    let (code, output) = setup.once(&[]).await;

    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("objects[0] (orders-db-conn): objectAlias: "),
        "{output}"
    );
    assert!(!outside.exists());
}

#[tokio::test]
async fn rotation_swaps_complete_snapshots() {
    let setup = Setup::new().await;
    let kv = setup.orders.world.keyvault().clone();
    let mut rotation = setup.spawn(&["--rotation-poll-interval=1s"]);
    eventually(Duration::from_secs(10), "the first write", || {
        setup.read("orders-db-conn") == DB_CONN
    })
    .await;

    // A reader that checks every snapshot it can see through `..data` is whole.
    let target = setup.target();
    let reader = std::thread::spawn(move || {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Ok(folder) = std::fs::read_link(target.join("..data")) else {
                continue;
            };
            let folder = target.join(folder);
            let files = [
                "orders-db-conn",
                "config/api-key.txt",
                "orders-signing-salt",
            ];
            let contents: Vec<_> = files
                .iter()
                .map(|f| std::fs::read(folder.join(f)))
                .collect();
            // A folder that was still `..data` after the reads was current throughout them,
            // so it must have been complete; an older one may be half deleted already.
            let still_current = std::fs::read_link(target.join("..data"))
                .is_ok_and(|now| target.join(now) == folder);
            if still_current {
                assert!(
                    contents
                        .iter()
                        .all(|c| c.as_ref().is_ok_and(|c| !c.is_empty())),
                    "a current snapshot was incomplete: {contents:?}"
                );
                seen += 1;
            }
        }
        seen
    });

    kv.set_secret(VAULT, "orders-db-conn", "rotated-1", None);
    eventually(Duration::from_secs(5), "the rotated value", || {
        setup.read("orders-db-conn") == "rotated-1"
    })
    .await;
    assert!(reader.join().unwrap() > 10);

    rotation.signal(Signal::SIGTERM);
    assert_eq!(rotation.exit_code().await, 0);
    assert!(
        rotation.output().contains("secret/orders-db-conn@"),
        "{}",
        rotation.output()
    );
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_files() {
    let setup = Setup::new().await;
    let kv = setup.orders.world.keyvault().clone();
    let rotation = setup.spawn(&["--rotation-poll-interval=1s"]);
    eventually(Duration::from_secs(10), "the first write", || {
        setup.read("orders-db-conn") == DB_CONN
    })
    .await;

    kv.inject_fault(Fault::Status(503), 40);
    kv.set_secret(VAULT, "orders-db-conn", "after-the-outage", None);
    eventually(Duration::from_secs(30), "a failed round", || {
        rotation.output().contains("round failed")
    })
    .await;
    assert_eq!(setup.read("orders-db-conn"), DB_CONN);

    eventually(Duration::from_secs(60), "recovery", || {
        setup.read("orders-db-conn") == "after-the-outage"
    })
    .await;
}

#[tokio::test]
async fn the_token_file_is_reread_every_round() {
    let setup = Setup::new().await;
    setup.write_token("sa-without-federation");
    let rotation = setup.spawn(&["--rotation-poll-interval=1s"]);
    eventually(Duration::from_secs(10), "a refused round", || {
        rotation.output().contains("AADSTS700213")
    })
    .await;
    assert!(!setup.target().join("..data").exists());

    setup.write_token("sa-orders");

    eventually(Duration::from_secs(10), "the write after rotation", || {
        setup.read("orders-db-conn") == DB_CONN
    })
    .await;
}

#[tokio::test]
async fn sighup_refreshes_now_and_sigint_stops() {
    let setup = Setup::new().await;
    let kv = setup.orders.world.keyvault().clone();
    let mut rotation = setup.spawn(&["--rotation-poll-interval=1h"]);
    eventually(Duration::from_secs(10), "the first write", || {
        setup.read("orders-db-conn") == DB_CONN
    })
    .await;

    kv.set_secret(VAULT, "orders-db-conn", "refreshed", None);
    rotation.signal(Signal::SIGHUP);
    eventually(Duration::from_secs(5), "the refresh", || {
        setup.read("orders-db-conn") == "refreshed"
    })
    .await;

    rotation.signal(Signal::SIGINT);
    assert_eq!(rotation.exit_code().await, 0);
    assert!(
        rotation.output().contains("SIGINT received between rounds"),
        "{}",
        rotation.output()
    );
}
