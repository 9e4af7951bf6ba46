//! `objectVersionHistory` through the release binary: the newest N enabled versions of a
//! secret, key or certificate as `<file>/0` … `<file>/N-1`, ids `<type>/<name>/<i>`, listed
//! across pages (empty ones included) and ordered by `created`, not by the order Key Vault
//! lists or stores them.
//!
//! Where the Go provider returns N+1 files, or nothing at all for a pinned start that is gone,
//! we return exactly min(N, enabled versions) or an error naming the version
//! (PARAMETERS.md, "Decided differences").

use std::path::Path;

use akv_e2e::calls::start;
use akv_e2e::driver::{self, pb};
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, Orders, VAULT};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tonic::Code;

/// A creation time in the past, so the versions written here are ordered by `created` alone.
const BASE: i64 = 1_700_000_000;

async fn mount(
    orders: &Orders,
    provider: &Provider,
    items: &[&str],
) -> Result<pb::MountResponse, (Code, String)> {
    let items: String = items.iter().map(|i| format!("        - {i}\n")).collect();
    let request = orders.request(&scenario::spc_with_objects(&items));
    let mut client = driver::connect(provider.socket()).await;
    match client.mount(request).await {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err((status.code(), status.message().to_owned())),
    }
}

/// Every file as (path, mode, text).
fn files(response: &pb::MountResponse) -> Vec<(&str, i32, &str)> {
    response
        .files
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(&f.contents).expect("text files");
            (f.path.as_str(), f.mode, text)
        })
        .collect()
}

fn versions(response: &pb::MountResponse) -> Vec<(&str, &str)> {
    response
        .object_version
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/certs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("a PEM fixture is text")
}

/// How many distinct pages of `collection/name`'s versions were asked for (identical GETs in
/// flight at once are sent once, so concurrent listings may share pages); all answered 200.
fn version_pages(orders: &Orders, collection: &str, name: &str) -> usize {
    let path = format!("/{collection}/{name}/versions");
    let pages: Vec<_> = orders
        .world
        .keyvault()
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert!(pages.iter().all(|r| r.status == 200), "{pages:?}");
    let distinct: std::collections::BTreeSet<_> = pages.iter().map(|r| &r.query).collect();
    distinct.len()
}

/// Secret `rotating` with five versions written out of creation order; the one created at
/// +400 is disabled. Returns the version ids by creation offset: +100, +200, +300, +400, +500.
fn rotating_secret(orders: &Orders) -> [String; 5] {
    let kv = orders.world.keyvault();
    let mut written = Vec::new();
    for offset in [300, 100, 500, 200, 400] {
        let value = format!("value created at +{offset}");
        let version = kv.set_secret_at(VAULT, "rotating", &value, None, BASE + offset);
        written.push((offset, version));
    }
    written.sort();
    let [a, b, c, d, e] = <[_; 5]>::try_from(written).unwrap().map(|(_, v)| v);
    kv.disable_secret_version(VAULT, "rotating", &d);
    [a, b, c, d, e]
}

#[tokio::test]
async fn secret_history_is_the_newest_enabled_versions_across_pages() {
    let (orders, provider) = start(&[]).await;
    let [v100, v200, v300, _v400, v500] = rotating_secret(&orders);
    orders.world.keyvault().set_page_size(2);
    orders.world.keyvault().set_empty_pages(true);
    let from_300 = format!(
        "{{objectName: rotating, objectType: secret, objectVersionHistory: 3, \
         objectVersion: {v300}, objectAlias: from-300}}"
    );
    let items = [
        "{objectName: rotating, objectType: secret, objectVersionHistory: 3}",
        "{objectName: rotating, objectType: secret, objectVersionHistory: 10, \
         objectAlias: all, filePermission: \"0400\"}",
        &from_300,
        "{objectName: rotating, objectType: secret, objectVersionHistory: 1, objectAlias: one}",
    ];

    let response = mount(&orders, &provider, &items).await.unwrap();

    let value = |offset: u32| format!("value created at +{offset}");
    let (s500, s300, s200, s100) = (value(500), value(300), value(200), value(100));
    assert_eq!(
        files(&response),
        [
            // Exactly N, though more versions exist (the Go provider wrote N+1).
            ("rotating/0", 0o644, s500.as_str()),
            ("rotating/1", 0o644, s300.as_str()),
            ("rotating/2", 0o644, s200.as_str()),
            // Exactly the four enabled versions, though ten were asked for.
            ("all/0", 0o400, s500.as_str()),
            ("all/1", 0o400, s300.as_str()),
            ("all/2", 0o400, s200.as_str()),
            ("all/3", 0o400, s100.as_str()),
            // Starting at the pinned version.
            ("from-300/0", 0o644, s300.as_str()),
            ("from-300/1", 0o644, s200.as_str()),
            ("from-300/2", 0o644, s100.as_str()),
            // A history of one is the plain file.
            ("one", 0o644, s500.as_str()),
        ]
    );
    assert_eq!(
        versions(&response),
        [
            ("secret/rotating/0", v500.as_str()),
            ("secret/rotating/1", v300.as_str()),
            ("secret/rotating/2", v200.as_str()),
            ("secret/rotating/0", v500.as_str()),
            ("secret/rotating/1", v300.as_str()),
            ("secret/rotating/2", v200.as_str()),
            ("secret/rotating/3", v100.as_str()),
            ("secret/rotating/0", v300.as_str()),
            ("secret/rotating/1", v200.as_str()),
            ("secret/rotating/2", v100.as_str()),
            ("secret/rotating", v500.as_str()),
        ]
    );
    // Five versions, two a page, with an empty page before each: six pages.
    assert_eq!(version_pages(&orders, "secrets", "rotating"), 6);
}

#[tokio::test]
async fn a_pinned_history_start_that_is_disabled_or_missing_is_an_error_naming_it() {
    let (orders, provider) = start(&[]).await;
    let [_, _, _, v400, _] = rotating_secret(&orders);
    let missing = "0123456789abcdef0123456789abcdef";

    for pinned in [v400.as_str(), missing] {
        let item = format!(
            "{{objectName: rotating, objectType: secret, objectVersionHistory: 2, \
             objectVersion: {pinned}}}"
        );

        let refusal = mount(&orders, &provider, &[&item]).await.unwrap_err();

        assert_eq!(
            refusal,
            (
                Code::NotFound,
                format!(
                    "secret \"rotating\" in vault kv-plat-prod-001 (version {pinned}) was not \
                     found: the pinned objectVersion is not among the object's enabled \
                     versions, so its history cannot start there"
                )
            )
        );
    }
}

/// A fixture's JSON Web Key.
fn jwk(key: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(&format!("{key}.jwk.json"))).unwrap()
}

#[tokio::test]
async fn key_history_skips_a_disabled_newest_version() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let rsa = kv.set_key(VAULT, "signing", jwk("rsa2048"));
    let ec256 = kv.set_key(VAULT, "signing", jwk("ec256"));
    let ec384 = kv.set_key(VAULT, "signing", jwk("ec384"));
    kv.disable_key_version(VAULT, "signing", &ec384);
    kv.set_page_size(1);
    kv.set_empty_pages(true);

    let response = mount(
        &orders,
        &provider,
        &["{objectName: signing, objectType: key, objectVersionHistory: 5}"],
    )
    .await
    .unwrap();

    let (p256, p2048) = (
        fixture_text("ec256.pub.pem"),
        fixture_text("rsa2048.pub.pem"),
    );
    assert_eq!(
        files(&response),
        [
            ("signing/0", 0o644, p256.as_str()),
            ("signing/1", 0o644, p2048.as_str()),
        ]
    );
    assert_eq!(
        versions(&response),
        [
            ("key/signing/0", ec256.as_str()),
            ("key/signing/1", rsa.as_str())
        ]
    );
    // Three versions, one a page, each after an empty page.
    assert_eq!(version_pages(&orders, "keys", "signing"), 6);
}

#[tokio::test]
async fn certificate_history_for_cert_key_and_secret_objects_with_separate_files() {
    let (orders, provider) = start(&["--write-cert-and-key-in-separate-files"]).await;
    let kv = orders.world.keyvault();
    let mut written = Vec::new();
    for key in ["rsa2048", "ec256", "ec384"] {
        let leaf = fixture_text(&format!("{key}.self.pem"));
        let body: String = leaf.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        let pfx = STANDARD.encode(fixture(&format!("{key}.self.modern.p12")));
        let version = kv.set_certificate(VAULT, "tls", &der, &pfx, "application/x-pkcs12");
        written.push(version);
    }
    kv.disable_certificate_version(VAULT, "tls", &written[1]);
    kv.set_page_size(2);
    kv.set_empty_pages(true);
    let items = [
        "{objectName: tls, objectType: cert, objectVersionHistory: 3}",
        "{objectName: tls, objectType: key, objectVersionHistory: 3, objectAlias: tls-key}",
        "{objectName: tls, objectType: secret, objectVersionHistory: 3, objectAlias: tls-pem}",
    ];

    let response = mount(&orders, &provider, &items).await.unwrap();

    let expected: Vec<(String, String)> = [
        ("tls/0", "ec384.self.expected.crt"),
        ("tls/1", "rsa2048.self.expected.crt"),
        ("tls-key/0", "ec384.pub.pem"),
        ("tls-key/1", "rsa2048.pub.pem"),
        ("tls-pem/0", "ec384.self.expected.pem"),
        ("tls-pem/0.crt", "ec384.self.expected.crt"),
        ("tls-pem/0.key", "ec384.self.expected.key"),
        ("tls-pem/1", "rsa2048.self.expected.pem"),
        ("tls-pem/1.crt", "rsa2048.self.expected.crt"),
        ("tls-pem/1.key", "rsa2048.self.expected.key"),
    ]
    .iter()
    .map(|(path, name)| ((*path).to_owned(), fixture_text(name)))
    .collect();
    let expected: Vec<(&str, i32, &str)> = expected
        .iter()
        .map(|(path, text)| (path.as_str(), 0o644, text.as_str()))
        .collect();
    assert_eq!(files(&response), expected);
    let (newest, oldest) = (written[2].as_str(), written[0].as_str());
    assert_eq!(
        versions(&response),
        [
            ("cert/tls/0", newest),
            ("cert/tls/1", oldest),
            ("key/tls/0", newest),
            ("key/tls/1", oldest),
            ("secret/tls/0", newest),
            ("secret/tls/1", oldest),
        ]
    );
    for collection in ["certificates", "keys", "secrets"] {
        assert_eq!(version_pages(&orders, collection, "tls"), 4, "{collection}");
    }
}
