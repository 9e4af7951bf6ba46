//! Tests of the test world itself: the doubles answer like Entra ID and Key Vault do, and the
//! proxy lets nothing out. Each test starts its own world and talks to it through the proxy,
//! as the provider does.

use akv_e2e::entra::{GrantSeen, TokenOutcome};
use akv_e2e::world::TOKEN_EXCHANGE_AUDIENCE;
use akv_e2e::{Cloud, Fault, World};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5a7d6e0c-3c3b-4d0e-9d2a-6f4b1c2d3e4f";
const VAULT: &str = "kv-e2e";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A world with one workload identity allowed to read one vault.
async fn seeded_world() -> World {
    let world = World::start().await;
    world.add_workload_identity(TENANT, CLIENT, "default", "app");
    world.keyvault().create_vault(VAULT, TENANT);
    world.keyvault().grant(VAULT, CLIENT);
    world
}

fn pod_token(world: &World, service_account: &str) -> String {
    world.sa_token(
        "default",
        service_account,
        "pod-0",
        "uid-0",
        TOKEN_EXCHANGE_AUDIENCE,
    )
}

/// POSTs a form to the public cloud's token endpoint of `tenant`.
async fn post_token(world: &World, tenant: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = world
        .http_client()
        .post(format!(
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn exchange(world: &World, client_id: &str, assertion: &str) -> (u16, Value) {
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", "https://vault.azure.net/.default"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    post_token(world, TENANT, &fields).await
}

fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0].as_u64().unwrap()
}

/// GETs `https://kv-e2e.vault.azure.net{path_and_query}` with an optional bearer token.
async fn kv_get(world: &World, path_and_query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = world
        .http_client()
        .get(format!("https://{VAULT}.vault.azure.net{path_and_query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn vault_token(world: &World) -> String {
    world
        .entra()
        .mint_access_token(Cloud::Public, TENANT, CLIENT, "https://vault.azure.net")
}

#[tokio::test]
async fn entra_exchanges_a_federated_token_for_an_access_token() {
    let world = seeded_world().await;
    let (status, body) = exchange(&world, CLIENT, &pod_token(&world, "app")).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let jwt = world.entra().verify_access_token(token).unwrap();
    assert_eq!(jwt.claims["aud"], "https://vault.azure.net");
    assert_eq!(jwt.claims["tid"], TENANT);
    assert_eq!(jwt.claims["appid"], CLIENT);
    assert_eq!(
        jwt.claims["iss"],
        format!("https://sts.windows.net/{TENANT}/")
    );

    let seen = world.entra().requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].grant, GrantSeen::Assertion);
    assert_eq!(seen[0].outcome, TokenOutcome::Issued);
    assert_eq!(
        seen[0].assertion_issuer.as_deref(),
        Some(world.issuer_url().as_str())
    );
    assert_eq!(
        seen[0].assertion_subject.as_deref(),
        Some("system:serviceaccount:default:app")
    );
    // Entra fetched the issuer's documents through the proxy.
    let connects = world.proxy_connects();
    assert!(connects.contains(&"eastus.oic.prod-aks.azure.com:443".to_owned()));
}

#[tokio::test]
async fn entra_refuses_assertions_with_the_codes_entra_uses() {
    let world = seeded_world().await;
    let issuer = world.issuer_url();
    world.entra().add_app(TENANT, "case-app");
    world.entra().add_federated_credential(
        "case-app",
        &issuer,
        "system:serviceaccount:default:App",
        TOKEN_EXCHANGE_AUDIENCE,
    );
    let unreachable_issuer = format!("{issuer}gone/");
    world.entra().add_app(TENANT, "lost-app");
    world.entra().add_federated_credential(
        "lost-app",
        &unreachable_issuer,
        "system:serviceaccount:default:app",
        TOKEN_EXCHANGE_AUDIENCE,
    );

    // An assertion for the right subject and audience, from `iss`, expiring at `exp`.
    let now = akv_now();
    let signed = |iss: &str, exp: i64| {
        world.sa_token_with(json!({
            "iss": iss,
            "sub": "system:serviceaccount:default:app",
            "aud": [TOKEN_EXCHANGE_AUDIENCE],
            "exp": exp,
            "nbf": now - 60,
            "iat": now,
        }))
    };
    let valid = pod_token(&world, "app");
    let (head, _) = valid.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(342));
    let wrong_audience = world.sa_token("default", "app", "p", "u", "api://wrong");

    let cases: Vec<(&str, String, u64, u16)> = vec![
        (CLIENT, signed("https://other/", now + 600), 700211, 401),
        (CLIENT, pod_token(&world, "other"), 700213, 401),
        ("case-app", valid.clone(), 7002138, 401),
        (CLIENT, wrong_audience, 700212, 401),
        (CLIENT, signed(&issuer, now - 3600), 700024, 401),
        (CLIENT, forged, 700027, 401),
        (
            "lost-app",
            signed(&unreachable_issuer, now + 600),
            90061,
            400,
        ),
        ("no-such-app", valid.clone(), 700016, 400),
    ];
    for (client, assertion, code, status) in cases {
        let (got_status, body) = exchange(&world, client, &assertion).await;
        assert_eq!((aadsts(&body), got_status), (code, status), "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{description}"
        );
        assert!(description.contains("Trace ID: "), "{description}");
        assert!(description.contains("Correlation ID: "), "{description}");
        for field in [
            "error",
            "timestamp",
            "trace_id",
            "correlation_id",
            "error_uri",
        ] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
    }

    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("scope", "https://vault.azure.net/.default"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", valid.as_str()),
    ];
    let (status, body) = post_token(&world, "00000000-0000-0000-0000-000000000000", &fields).await;
    assert_eq!((status, aadsts(&body)), (400, 90002));
    assert_eq!(body["error"], "invalid_tenant");

    let mut no_default = fields;
    no_default[2] = ("scope", "https://vault.azure.net");
    let (_, body) = post_token(&world, TENANT, &no_default).await;
    assert_eq!(aadsts(&body), 1002012);

    let outcomes: Vec<TokenOutcome> = world.entra().requests().iter().map(|r| r.outcome).collect();
    assert!(outcomes.contains(&TokenOutcome::Refused(700213)));
    assert!(!outcomes.contains(&TokenOutcome::Issued));
}

#[tokio::test]
async fn entra_checks_client_secrets() {
    let world = seeded_world().await;
    world.entra().add_client_secret(CLIENT, "s3cret");
    let secret_form = |secret: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("scope", "https://vault.azure.net/.default"),
            ("client_secret", secret),
        ]
    };

    let (status, body) = post_token(&world, TENANT, &secret_form("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_token(&world, TENANT, &secret_form("wrong")).await;
    assert_eq!((status, aadsts(&body)), (401, 7000215));
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(world.entra().requests()[0].grant, GrantSeen::Secret);
}

#[tokio::test]
async fn key_vault_challenges_requests_without_a_token() {
    let world = seeded_world().await;
    let response = kv_get(&world, "/secrets/db/?api-version=7.6", None).await;

    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{TENANT}\", \
             resource=\"https://vault.azure.net\""
        )
        .as_str()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    let seen = world.keyvault().requests();
    assert_eq!((seen[0].had_bearer, seen[0].status), (false, 401));
}

#[tokio::test]
async fn key_vault_serves_secret_bundles_shaped_like_the_fixtures() {
    let world = seeded_world().await;
    let kv = world.keyvault();
    let first = kv.set_secret(VAULT, "db", "one", None);
    let second = kv.set_secret(VAULT, "db", "two", Some("text/plain"));
    let token = vault_token(&world);

    let latest: Value = kv_get(&world, "/secrets/db/?api-version=7.6", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest["value"], "two");
    assert_eq!(latest["contentType"], "text/plain");
    assert_eq!(
        latest["id"],
        format!("https://{VAULT}.vault.azure.net/secrets/db/{second}")
    );
    let keys: Vec<&String> = latest["attributes"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["created", "enabled", "recoveryLevel", "updated"]);
    assert_eq!(
        latest["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );

    let pinned: Value = kv_get(
        &world,
        &format!("/secrets/db/{first}?api-version=7.6"),
        Some(&token),
    )
    .await
    .json()
    .await
    .unwrap();
    let keys: Vec<&String> = pinned.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["attributes", "id", "value"]);
    assert!(pinned["attributes"]["created"].as_i64() < latest["attributes"]["created"].as_i64());

    assert_eq!(first.len(), 32);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(kv.requests()[0].caller.as_deref(), Some(CLIENT));
}

#[tokio::test]
async fn key_vault_refuses_like_the_service() {
    let world = seeded_world().await;
    let kv = world.keyvault();
    let version = kv.set_secret(VAULT, "db", "one", None);
    kv.disable_secret_version(VAULT, "db", &version);
    let token = vault_token(&world);
    let storage_token =
        world
            .entra()
            .mint_access_token(Cloud::Public, TENANT, CLIENT, "https://storage.azure.com");
    let other_tenant_token = world.entra().mint_access_token(
        Cloud::Public,
        "11111111-1111-1111-1111-111111111111",
        CLIENT,
        "https://vault.azure.net",
    );
    world.entra().add_app(TENANT, "stranger");
    let stranger = world.entra().mint_access_token(
        Cloud::Public,
        TENANT,
        "stranger",
        "https://vault.azure.net",
    );

    let cases = [
        ("/secrets/db", Some(&token), 400, "BadParameter", None, ""),
        (
            "/secrets/db?api-version=1.0",
            Some(&token),
            400,
            "BadParameter",
            None,
            "",
        ),
        (
            "/secrets/db?api-version=7.6",
            Some(&storage_token),
            401,
            "Unauthorized",
            None,
            "AKV10022",
        ),
        (
            "/secrets/db?api-version=7.6",
            Some(&other_tenant_token),
            401,
            "Unauthorized",
            None,
            "AKV10032",
        ),
        (
            "/secrets/db?api-version=7.6",
            Some(&stranger),
            403,
            "Forbidden",
            Some("ForbiddenByRbac"),
            "Caller: appid=stranger",
        ),
        (
            "/secrets/nope?api-version=7.6",
            Some(&token),
            404,
            "SecretNotFound",
            None,
            "(name/id) nope",
        ),
        (
            "/keys/nope?api-version=7.6",
            Some(&token),
            404,
            "KeyNotFound",
            None,
            "",
        ),
        (
            "/certificates/nope/versions?api-version=7.6",
            Some(&token),
            404,
            "CertificateNotFound",
            None,
            "",
        ),
        (
            "/secrets/db?api-version=7.6",
            Some(&token),
            403,
            "Forbidden",
            Some("SecretDisabled"),
            "disabled secret",
        ),
    ];
    for (path, token, status, code, inner, text) in cases {
        let response = kv_get(&world, path, token.map(String::as_str)).await;
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(
            body["error"]["innererror"]["code"].as_str(),
            inner,
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{path}: {message}");
    }

    let response = kv_get(&world, "/storage/x?api-version=7.6", Some(&token)).await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().starts_with("<!DOCTYPE html"));
}

#[tokio::test]
async fn key_vault_pages_versions_with_absolute_next_links() {
    let world = seeded_world().await;
    let kv = world.keyvault();
    let mut written: Vec<String> = (0..7)
        .map(|i| kv.set_secret_at(VAULT, "db", &format!("v{i}"), None, 1_700_000_000 - i))
        .collect();
    kv.set_page_size(3);
    kv.set_empty_pages(true);
    let token = vault_token(&world);

    let mut url = format!("https://{VAULT}.vault.azure.net/secrets/db/versions?api-version=7.6");
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut empty_pages = 0;
    loop {
        let page: Value = world
            .http_client()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        let items = page["value"].as_array().unwrap();
        empty_pages += usize::from(items.is_empty());
        for item in items {
            let id = item["id"].as_str().unwrap();
            seen.push(id.rsplit('/').next().unwrap().to_owned());
            assert!(item["attributes"].get("recoveryLevel").is_none());
        }
        match page["nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&format!("https://{VAULT}.vault.azure.net:443/")));
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!((pages, empty_pages), (6, 3));
    seen.sort();
    written.sort();
    assert_eq!(seen, written);

    // The newest by `created` is current, whatever the write order.
    let latest: Value = kv_get(&world, "/secrets/db?api-version=7.6", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(latest["value"], "v0");

    let too_many = kv_get(
        &world,
        "/secrets/db/versions?api-version=7.6&maxresults=26",
        Some(&token),
    )
    .await;
    assert_eq!(too_many.status(), 400);
}

#[tokio::test]
async fn key_vault_imports_certificates_with_their_secret_and_key() {
    let world = seeded_world().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["leaf.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    let version =
        world
            .keyvault()
            .set_certificate(VAULT, "tls", cert.der(), &pem, "application/x-pem-file");
    let token = vault_token(&world);
    let get = |kind: &'static str| {
        let world = &world;
        let token = token.clone();
        async move {
            let path = format!("/{kind}/tls?api-version=7.6");
            kv_get(world, &path, Some(&token))
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    let certificate = get("certificates").await;
    let base = format!("https://{VAULT}.vault.azure.net");
    assert_eq!(
        certificate["id"],
        format!("{base}/certificates/tls/{version}")
    );
    assert_eq!(certificate["sid"], format!("{base}/secrets/tls/{version}"));
    assert_eq!(certificate["kid"], format!("{base}/keys/tls/{version}"));
    assert_eq!(certificate["x5t"].as_str().unwrap().len(), 27);
    assert_eq!(
        certificate["policy"]["secret_props"]["contentType"],
        "application/x-pem-file"
    );
    assert!(certificate["attributes"]["exp"].is_i64());

    let secret = get("secrets").await;
    assert_eq!(secret["value"], pem);
    assert_eq!(secret["managed"], true);
    assert_eq!(secret["kid"], format!("{base}/keys/tls/{version}"));
    assert_eq!(secret["contentType"], "application/x-pem-file");

    let key = get("keys").await;
    assert_eq!(key["key"]["kty"], "EC");
    assert_eq!(key["key"]["crv"], "P-256");
    assert_eq!(key["managed"], true);
}

#[tokio::test]
async fn injected_faults_are_spent_one_request_each() {
    let world = seeded_world().await;
    world.keyvault().set_secret(VAULT, "db", "one", None);
    world.keyvault().inject_fault(
        Fault::Throttle {
            retry_after: Some(2),
        },
        1,
    );
    world.keyvault().inject_fault(Fault::Status(503), 1);
    world.keyvault().inject_fault(Fault::Reset, 1);
    let token = vault_token(&world);
    let path = "/secrets/db?api-version=7.6";

    let throttled = kv_get(&world, path, Some(&token)).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "2");
    assert_eq!(kv_get(&world, path, Some(&token)).await.status(), 503);
    let reset = world
        .http_client()
        .get(format!("https://{VAULT}.vault.azure.net{path}"))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(reset.is_err());
    assert_eq!(kv_get(&world, path, Some(&token)).await.status(), 200);

    let statuses: Vec<u16> = world
        .keyvault()
        .requests()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 503, 0, 200]);
}

#[tokio::test]
async fn front_speaks_http2_and_serves_entra_metadata() {
    let world = seeded_world().await;
    let response = world
        .http_client()
        .get(format!(
            "https://login.microsoftonline.com/{TENANT}/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(
        metadata["token_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
}

#[tokio::test]
async fn proxy_tunnels_only_to_the_worlds_hosts() {
    let world = seeded_world().await;
    let targets = [
        ("login.microsoftonline.com:443", true),
        ("kv-e2e.vault.azure.net:443", true),
        ("no-such-vault.vault.azure.net:443", false),
        ("kv-e2e.vault.usgovcloudapi.net:443", false),
        ("login.microsoftonline.com:80", false),
        ("example.com:443", false),
        ("169.254.169.254:80", false),
    ];
    for (target, tunnels) in targets {
        let address = world.proxy_url().trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        let expected: &[u8] = if tunnels {
            b"HTTP/1.1 200"
        } else {
            b"HTTP/1.1 502"
        };
        assert_eq!(&answer, expected, "{target}");
    }

    let connects = world.proxy_connects();
    assert_eq!(connects.len(), targets.len());
    assert_eq!(connects[5], "example.com:443");
    let refused = world
        .proxy_requests()
        .iter()
        .filter(|r| !r.tunnelled)
        .count();
    assert_eq!(refused, 5);
}

#[tokio::test]
async fn worlds_are_independent_and_stop_when_dropped() {
    let (first, second) = tokio::join!(seeded_world(), seeded_world());
    assert_ne!(first.issuer_url(), second.issuer_url());

    // A token from one world's cluster means nothing to the other's Entra.
    let (status, body) = exchange(&second, CLIENT, &pod_token(&first, "app")).await;
    assert_eq!((status, aadsts(&body)), (401, 700211));

    let address = first.proxy_url().trim_start_matches("http://").to_owned();
    drop(first);
    tokio::task::yield_now().await;
    let mut stream = tokio::net::TcpStream::connect(&address).await;
    for _ in 0..50 {
        if stream.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        stream = tokio::net::TcpStream::connect(&address).await;
    }
    assert!(
        stream.is_err(),
        "the proxy still accepts after the world was dropped"
    );
}

fn akv_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

#[tokio::test]
async fn other_clouds_answer_on_their_own_hosts_with_their_own_resources() {
    let world = seeded_world().await;
    world
        .keyvault()
        .create_vault_in(Cloud::Stack, "kv-stack", TENANT);
    world.keyvault().grant("kv-stack", CLIENT);
    world
        .keyvault()
        .set_secret("kv-stack", "s", "on-prem", None);
    assert_eq!(
        world.keyvault().vault_url("kv-stack"),
        "https://kv-stack.vault.local.azurestack.external/"
    );

    let client = world.http_client();
    let url = "https://kv-stack.vault.local.azurestack.external/secrets/s?api-version=7.5";
    let challenge = client.get(url).send().await.unwrap();
    assert_eq!(
        challenge.headers()["www-authenticate"],
        format!(
            "Bearer authorization=\"https://adfs.local.azurestack.external/{TENANT}\", \
             resource=\"https://vault.local.azurestack.external\""
        )
        .as_str()
    );

    // Each authority knows only its own cloud's resources.
    let token_request = |authority: &'static str, scope: &'static str| {
        let assertion = pod_token(&world, "app");
        let client = client.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT),
                    ("scope", scope),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion.as_str()),
                ])
                .finish();
            let response = client
                .post(format!("https://{authority}/{TENANT}/oauth2/v2.0/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let stack_scope = "https://vault.local.azurestack.external/.default";
    let refused = token_request("login.microsoftonline.com", stack_scope).await;
    assert_eq!(aadsts(&refused), 500011);
    let issued = token_request("adfs.local.azurestack.external", stack_scope).await;
    let token = issued["access_token"].as_str().unwrap();

    let secret: Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secret["value"], "on-prem");
    let environment = Cloud::Stack.environment_file();
    assert_eq!(
        environment["keyVaultDNSSuffix"],
        "vault.local.azurestack.external"
    );
}
