//! Nothing secret reaches the provider's output, at its most verbose, in text or JSON: not
//! the secret values, not the pod's token, not the Entra access token.

use akv_e2e::driver;
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, API_KEY, DB_CONN, Orders, SIGNING_SALT};

async fn output_after_mounts(args: &[&str], env: &[(&str, &str)]) -> (Orders, String, Vec<String>) {
    let orders = Orders::start().await;
    let provider = Provider::start(orders.provider_options_with_env(args, env)).await;
    let mut client = driver::connect(provider.socket()).await;

    let mut tokens = Vec::new();
    for round in 0..4 {
        let request = orders.request(&scenario::spc_yaml());
        tokens.push(pod_token(&request.attributes));
        client.mount(request).await.unwrap();
        if round == 1 {
            // A refused Mount too: its error path must not leak either.
            let stranger = akv_e2e::driver::Pod::new("orders", "x", "sa-x");
            let request = orders.request_for(&scenario::spc_yaml(), &stranger);
            tokens.push(pod_token(&request.attributes));
            client.mount(request).await.unwrap_err();
        }
    }
    let (_, output) = provider.stop().await;
    (orders, output, tokens)
}

fn pod_token(attributes: &str) -> String {
    let attributes: serde_json::Value = serde_json::from_str(attributes).unwrap();
    let tokens = attributes["csi.storage.k8s.io/serviceAccount.tokens"]
        .as_str()
        .unwrap();
    let tokens: serde_json::Value = serde_json::from_str(tokens).unwrap();
    tokens["api://AzureADTokenExchange"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn assert_clean(output: &str, orders: &Orders, pod_tokens: &[String]) {
    assert!(
        output.lines().count() > 10,
        "expected verbose output, got:\n{output}"
    );
    for secret in [DB_CONN, API_KEY, SIGNING_SALT] {
        assert!(!output.contains(secret), "a secret value leaked:\n{output}");
    }
    for token in pod_tokens {
        // The signature alone is enough to replay nothing, but no part of a token may show.
        for part in token.split('.') {
            assert!(!output.contains(part), "a pod token part leaked:\n{output}");
        }
    }
    for token in orders.world.entra().issued_tokens() {
        assert!(
            !output.contains(token.split('.').nth(2).unwrap()),
            "an access token leaked:\n{output}"
        );
    }
}

#[tokio::test]
async fn most_verbose_text_logs_carry_no_secret() {
    let (orders, output, tokens) = output_after_mounts(&["-v=10"], &[]).await;
    assert!(output.contains("fetched"), "debug lines are on:\n{output}");
    assert_clean(&output, &orders, &tokens);
}

#[tokio::test]
async fn most_verbose_json_logs_carry_no_secret() {
    let (orders, output, tokens) = output_after_mounts(&["-v=10", "--log-format-json"], &[]).await;
    assert_clean(&output, &orders, &tokens);
}

#[tokio::test]
async fn rust_log_trace_for_every_library_carries_no_secret() {
    let (orders, output, tokens) = output_after_mounts(&[], &[("RUST_LOG", "trace")]).await;
    assert_clean(&output, &orders, &tokens);
}
