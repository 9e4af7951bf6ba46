//! The release binary's logs: JSON lines that parse and carry the Mount's fields, the text
//! default, and verbosity from `-v` and `RUST_LOG`.

use akv_e2e::driver::{self, Pod};
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, Orders};
use serde_json::Value;

/// The output of a provider started with `args` and `env` after one good Mount, one that
/// Entra ID refuses and one with an invalid object type.
async fn output_after_mounts(args: &[&str], env: &[(&str, &str)]) -> String {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options_with_env(args, env)).await;
    let mut client = driver::connect(provider.socket()).await;

    client
        .mount(orders.request(&scenario::spc_yaml()))
        .await
        .unwrap();
    let stranger = Pod::new("orders", "orders-batch", "sa-batch");
    client
        .mount(orders.request_for(&scenario::spc_yaml(), &stranger))
        .await
        .unwrap_err();
    let invalid = scenario::spc_with_objects("        - {objectName: a, objectType: nope}\n");
    client.mount(orders.request(&invalid)).await.unwrap_err();

    let (status, output) = provider.stop().await;
    assert!(status.success(), "{status}: {output}");
    output
}

fn json_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line in {lines:#?}"))
}

#[tokio::test]
async fn json_lines_parse_and_carry_the_mount_fields() {
    for flag in ["--log-format-json", "--log-format=json"] {
        let output = output_after_mounts(&[flag], &[]).await;
        let lines = json_lines(&output);

        for line in &lines {
            assert!(line["timestamp"].is_string(), "{line}");
            assert!(line["level"].is_string(), "{line}");
            assert!(line["message"].is_string(), "{line}");
        }
        let mounted = find(&lines, "mounted");
        assert_eq!(mounted["level"], "INFO");
        assert_eq!(mounted["result"], "success");
        assert_eq!(mounted["objects"], 3);
        assert_eq!(mounted["files"], 3);
        assert!(mounted["duration_ms"].is_u64(), "{mounted}");
        let span = &mounted["span"];
        assert_eq!(span["name"], "mount");
        assert_eq!(span["pod.namespace"], "orders");
        assert_eq!(span["pod.name"], "orders-api");
        assert_eq!(span["spc"], "spc-orders-kv");
        assert_eq!(span["vault.name"], scenario::VAULT);

        let failed = find(&lines, "mount failed");
        assert_eq!(failed["level"], "ERROR");
        assert_eq!(failed["result"], "error");
        assert_eq!(failed["code"], "PermissionDenied");
        assert_eq!(failed["span"]["pod.name"], "orders-batch");
        assert!(
            failed["error"].as_str().unwrap().contains("AADSTS700213"),
            "{failed}"
        );

        let refused = find(&lines, "mount refused: invalid request");
        assert_eq!(refused["code"], "InvalidArgument");
        assert_eq!(refused["span"]["pod.name"], "orders-api");
        assert_eq!(refused["span"]["spc"], "spc-orders-kv");

        let probes = find(&lines, "health probes listening");
        assert!(probes["addr"].is_string() && probes["path"] == "/healthz");
        find(&lines, "stopped");
        assert!(
            !lines.iter().any(|l| l["message"] == "fetched"),
            "debug lines are off by default"
        );
    }
}

#[tokio::test]
async fn text_is_the_default_with_one_line_per_mount() {
    let output = output_after_mounts(&[], &[]).await;

    assert!(!output.contains('\u{1b}'), "no colour codes off a terminal");
    let mounted: Vec<&str> = output.lines().filter(|l| l.contains("mounted")).collect();
    assert_eq!(mounted.len(), 1, "{output}");
    let line = mounted[0];
    for field in [
        " INFO ",
        "pod.namespace=orders",
        "pod.name=orders-api",
        "spc=\"spc-orders-kv\"",
        "result=\"success\"",
        "objects=3",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let failed: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("mount failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{output}");
    assert!(failed[0].contains(" ERROR ") && failed[0].contains("pod.name=orders-batch"));
    let refused = output
        .lines()
        .find(|l| l.contains("mount refused: invalid request"))
        .unwrap();
    assert!(
        refused.contains("pod.name=orders-api") && refused.contains("result=\"error\""),
        "{refused}"
    );
    assert!(!output.contains("fetched"), "{output}");
}

#[tokio::test]
async fn verbosity_comes_from_v_or_rust_log() {
    let klog = output_after_mounts(&["-v", "4"], &[]).await;
    assert!(
        klog.contains(" DEBUG ") && klog.contains("fetched"),
        "{klog}"
    );

    let rust_log = output_after_mounts(&[], &[("RUST_LOG", "warn,akv_csi_provider=debug")]).await;
    assert!(rust_log.contains("fetched"), "{rust_log}");

    let quiet = output_after_mounts(&[], &[("RUST_LOG", "error")]).await;
    assert!(
        !quiet.contains("mounted") && quiet.contains("mount failed"),
        "{quiet}"
    );
}
