//! Every object type through the release binary: what each produces, byte for byte against
//! the files openssl computed in `fixtures/certs/` (see `fixtures/generate.sh`), with modes,
//! ids and versions, and every refusal with its gRPC code and full message.
//!
//! The rows are PARAMETERS.md's "What each object type produces" and the object rows of its
//! "Decided differences". Version history has its own file, `history.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use akv_e2e::calls::{file, mount, start};
use akv_e2e::driver::pb;
use akv_e2e::keyvault::KeyVault;
use akv_e2e::provider::Provider;
use akv_e2e::scenario::{self, DB_CONN, Orders, VAULT};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tonic::Code;

const PKCS12: &str = "application/x-pkcs12";
const PEM_FILE: &str = "application/x-pem-file";

// --- the world and the Mount -------------------------------------------------------------

async fn mounted(orders: &Orders, provider: &Provider, items: &[String]) -> pb::MountResponse {
    match mount(provider, orders.request(&spc(items))).await {
        Ok(response) => response,
        Err(status) => panic!("{:?}: {}", status.code(), status.message()),
    }
}

async fn refused(orders: &Orders, provider: &Provider, items: &[String]) -> (Code, String) {
    match mount(provider, orders.request(&spc(items))).await {
        Ok(response) => panic!("mounted {} files", response.files.len()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// The orders SecretProviderClass with these `objects` items, each a flow mapping.
fn spc(items: &[String]) -> String {
    let items: String = items.iter().map(|i| format!("        - {i}\n")).collect();
    scenario::spc_with_objects(&items)
}

/// `{objectName: <name>, objectType: <kind>, <extra>}`.
fn item(name: &str, kind: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{objectName: {name}, objectType: {kind}{extra}}}")
}

fn paths(response: &pb::MountResponse) -> Vec<&str> {
    response.files.iter().map(|f| f.path.as_str()).collect()
}

fn text(file: &pb::File) -> &str {
    std::str::from_utf8(&file.contents).expect("a PEM file is text")
}

fn versions(response: &pb::MountResponse) -> Vec<(&str, &str)> {
    response
        .object_version
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect()
}

/// Waits up to two seconds for a line of the provider's output holding every one of `parts`.
async fn logged_line(provider: &Provider, parts: &[&str]) -> String {
    for _ in 0..100 {
        let output = provider.output();
        let line = output
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)));
        if let Some(line) = line {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no line with {parts:?} in:\n{}", provider.output());
}

// --- fixtures ----------------------------------------------------------------------------

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/certs")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (rebuild with e2e/fixtures/generate.sh)",
            path.display()
        )
    })
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("a PEM fixture is text")
}

/// Several fixtures, one after the other.
fn concat(names: &[&str]) -> String {
    names.iter().map(|name| fixture_text(name)).collect()
}

/// The PEM blocks of `text`, each from its BEGIN line through its END line; anything between
/// blocks (openssl's bag attributes) is dropped.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// The DER of the first block of a PEM fixture.
fn first_der(name: &str) -> Vec<u8> {
    let block = pem_blocks(&fixture_text(name)).remove(0);
    let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("PEM base64")
}

/// Imports a certificate as Key Vault stores an uploaded PFX: its secret holds the file as
/// standard base64. `leaf` is the PEM fixture of the certificate's `cer`.
fn import_pfx(kv: &KeyVault, name: &str, p12: &str, leaf: &str) -> String {
    let value = STANDARD.encode(fixture(p12));
    kv.set_certificate(VAULT, name, &first_der(leaf), &value, PKCS12)
}

/// Imports a certificate whose secret is the PEM text `bundle`.
fn import_pem(kv: &KeyVault, name: &str, bundle: &str, leaf: &str) -> String {
    kv.set_certificate(VAULT, name, &first_der(leaf), bundle, PEM_FILE)
}

/// Runs the openssl CLI and returns what it printed.
fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// What `openssl pkcs12 -nodes` reads from a PFX: its key blocks and its certificate blocks.
fn openssl_reads_pfx(pfx: &[u8]) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.p12");
    std::fs::write(&path, pfx).unwrap();
    let printed = openssl(&[
        "pkcs12",
        "-in",
        path.to_str().unwrap(),
        "-passin",
        "pass:",
        "-nodes",
    ]);
    let blocks = pem_blocks(std::str::from_utf8(&printed).unwrap());
    blocks
        .into_iter()
        .partition(|b| b.starts_with("-----BEGIN PRIVATE KEY-----"))
}

// --- certificate-backed secrets ----------------------------------------------------------

/// Object name, PFX fixture, leaf fixture, expected rendering.
const PKCS12_CASES: [(&str, &str, &str, &str); 22] = [
    (
        "rsa2048-modern",
        "rsa2048.self.modern.p12",
        "rsa2048.self.pem",
        "rsa2048.self.expected.pem",
    ),
    (
        "rsa2048-legacy",
        "rsa2048.self.legacy.p12",
        "rsa2048.self.pem",
        "rsa2048.self.expected.pem",
    ),
    (
        "rsa2048-key-attribute",
        "rsa2048.self.keysig.p12",
        "rsa2048.self.pem",
        "rsa2048.self.expected.pem",
    ),
    (
        "rsa3072-modern",
        "rsa3072.self.modern.p12",
        "rsa3072.self.pem",
        "rsa3072.self.expected.pem",
    ),
    (
        "rsa4096-modern",
        "rsa4096.self.modern.p12",
        "rsa4096.self.pem",
        "rsa4096.self.expected.pem",
    ),
    (
        "ec256-modern",
        "ec256.self.modern.p12",
        "ec256.self.pem",
        "ec256.self.expected.pem",
    ),
    (
        "ec384-modern",
        "ec384.self.modern.p12",
        "ec384.self.pem",
        "ec384.self.expected.pem",
    ),
    (
        "ec384-legacy",
        "ec384.self.legacy.p12",
        "ec384.self.pem",
        "ec384.self.expected.pem",
    ),
    (
        "ec521-modern",
        "ec521.self.modern.p12",
        "ec521.self.pem",
        "ec521.self.expected.pem",
    ),
    (
        "ki-chain2-modern",
        "ki-chain2.modern.p12",
        "ki-leaf2.pem",
        "ki-chain2.expected.pem",
    ),
    (
        "ki-chain3-legacy",
        "ki-chain3.legacy.p12",
        "ki-leaf3.pem",
        "ki-chain3.expected.pem",
    ),
    (
        "ki-chain4-modern",
        "ki-chain4.modern.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-legacy",
        "ki-chain4.legacy.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-3des",
        "ki-chain4.3des.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-unencrypted",
        "ki-chain4.plain.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-unencrypted-no-mac",
        "ki-chain4.bare.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-modern-ber",
        "ki-chain4.modern-ber.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "ki-chain4-legacy-ber",
        "ki-chain4.legacy-ber.p12",
        "ki-leaf4.pem",
        "ki-chain4.expected.pem",
    ),
    (
        "noki-chain4-modern",
        "noki-chain4.modern.p12",
        "noki-leaf4.pem",
        "noki-chain4.expected.pem",
    ),
    (
        "noki-chain4-legacy",
        "noki-chain4.legacy.p12",
        "noki-leaf4.pem",
        "noki-chain4.expected.pem",
    ),
    (
        "two-keys-one-without-local-key-id",
        "two-keys.p12",
        "ki-leaf4.pem",
        "two-keys.expected.pem",
    ),
    (
        "ki-chain4-without-key",
        "ki-chain4-nokey.modern.p12",
        "ki-leaf4.pem",
        "ki-chain4-nokey.expected.pem",
    ),
];

#[tokio::test]
async fn pkcs12_secrets_become_pkcs8_keys_then_leaf_to_root() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let mut expected_versions = Vec::new();
    for (name, p12, leaf, _) in PKCS12_CASES {
        let version = import_pfx(kv, name, p12, leaf);
        expected_versions.push((format!("secret/{name}"), version));
    }
    let items: Vec<String> = PKCS12_CASES
        .iter()
        .map(|(name, ..)| item(name, "secret", ""))
        .collect();

    let response = mounted(&orders, &provider, &items).await;

    let expected_paths: Vec<&str> = PKCS12_CASES.iter().map(|(name, ..)| *name).collect();
    assert_eq!(paths(&response), expected_paths);
    for (name, _, _, expected) in PKCS12_CASES {
        let file = file(&response, name);
        assert_eq!(text(file), fixture_text(expected), "{name}");
        assert_eq!(file.mode, 0o644, "{name}");
    }
    let expected_versions: Vec<(&str, &str)> = expected_versions
        .iter()
        .map(|(id, version)| (id.as_str(), version.as_str()))
        .collect();
    assert_eq!(versions(&response), expected_versions);
}

/// The certificates of a chain of `length` in family `ki` or `noki`, leaf first.
fn chain(family: &str, length: usize) -> Vec<String> {
    let names: &[&str] = match length {
        2 => &["leaf2", "root"],
        3 => &["leaf3", "int1", "root"],
        _ => &["leaf4", "int2", "int1", "root"],
    };
    names.iter().map(|n| format!("{family}-{n}.pem")).collect()
}

/// A PEM bundle of the chain, shuffled, with the rsa2048 key among the certificates.
fn shuffled_bundle(family: &str, length: usize) -> String {
    let chain = chain(family, length);
    let key = "rsa2048.key.pem".to_owned();
    let stored = match length {
        2 => vec![&chain[1], &key, &chain[0]],
        3 => vec![&chain[1], &key, &chain[2], &chain[0]],
        _ => vec![&chain[1], &chain[3], &key, &chain[0], &chain[2]],
    };
    let stored: Vec<&str> = stored.iter().map(|s| s.as_str()).collect();
    concat(&stored)
}

#[tokio::test]
async fn chains_of_two_to_four_are_ordered_with_and_without_key_identifiers() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let scratch = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for family in ["ki", "noki"] {
        for length in 2..=4 {
            let bundle = shuffled_bundle(family, length);
            let leaf = chain(family, length).remove(0);
            let expected = format!("{family}-chain{length}.expected.pem");

            // The same material as a PFX, which openssl writes leaf first, then the others
            // in the order given (so not leaf → root).
            let pem_path = scratch.path().join(format!("{family}{length}.pem"));
            let p12_path = scratch.path().join(format!("{family}{length}.p12"));
            std::fs::write(&pem_path, &bundle).unwrap();
            openssl(&[
                "pkcs12",
                "-export",
                "-in",
                pem_path.to_str().unwrap(),
                "-passout",
                "pass:",
                "-out",
                p12_path.to_str().unwrap(),
            ]);
            let pfx = STANDARD.encode(std::fs::read(&p12_path).unwrap());

            let pem_name = format!("{family}-chain{length}-pem");
            let pfx_name = format!("{family}-chain{length}-pfx");
            import_pem(kv, &pem_name, &bundle, &leaf);
            kv.set_certificate(VAULT, &pfx_name, &first_der(&leaf), &pfx, PKCS12);
            cases.push((pem_name, expected.clone()));
            cases.push((pfx_name, expected));
        }
    }
    let items: Vec<String> = cases
        .iter()
        .map(|(name, _)| item(name, "secret", ""))
        .collect();

    let response = mounted(&orders, &provider, &items).await;

    assert_eq!(response.files.len(), 12);
    for (name, expected) in &cases {
        assert_eq!(
            text(file(&response, name)),
            fixture_text(expected),
            "{name}"
        );
    }
}

#[tokio::test]
async fn pfx_format_writes_the_stored_value_or_with_base64_the_binary_pfx() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cases = [
        ("modern", "ki-chain4.modern.p12", "ki-leaf4.pem"),
        ("legacy", "rsa2048.self.legacy.p12", "rsa2048.self.pem"),
        ("ber", "ki-chain4.legacy-ber.p12", "ki-leaf4.pem"),
    ];
    let mut items = Vec::new();
    let mut expected_versions = Vec::new();
    for (name, p12, leaf) in cases {
        let version = import_pfx(kv, name, p12, leaf);
        items.push(item(name, "secret", "objectFormat: pfx"));
        items.push(item(
            name,
            "secret",
            &format!("objectFormat: PFX, objectEncoding: Base64, objectAlias: {name}.pfx"),
        ));
        let id = format!("secret/{name}");
        expected_versions.push((id.clone(), version.clone()));
        expected_versions.push((id, version));
    }

    let response = mounted(&orders, &provider, &items).await;

    let expected_versions: Vec<(&str, &str)> = expected_versions
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    assert_eq!(versions(&response), expected_versions);
    for (name, p12, _) in cases {
        let stored = STANDARD.encode(fixture(p12));
        assert_eq!(text(file(&response, name)), stored, "{name}");
        let binary = file(&response, &format!("{name}.pfx"));
        assert!(binary.contents == fixture(p12), "{name}.pfx is the fixture");
        assert_eq!(binary.mode, 0o644);
    }
}

#[tokio::test]
async fn pem_file_secrets_put_the_key_first_then_leaf_to_root_whatever_the_stored_order() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cases = [
        (
            "ordered",
            "ki-chain4.ordered.bundle.pem",
            "ki-chain4.expected.pem",
        ),
        (
            "reversed",
            "ki-chain4.reversed.bundle.pem",
            "ki-chain4.expected.pem",
        ),
        (
            "shuffled",
            "ki-chain4.shuffled.bundle.pem",
            "ki-chain4.expected.pem",
        ),
        (
            "pkcs1-key",
            "ki-chain4.trad.bundle.pem",
            "ki-chain4.expected.pem",
        ),
        (
            "with-bag-attributes",
            "ki-chain4.attributes.bundle.pem",
            "ki-chain4.expected.pem",
        ),
        (
            "noki-shuffled",
            "noki-chain4.shuffled.bundle.pem",
            "noki-chain4.expected.pem",
        ),
        (
            "sec1-key",
            "ec384.self.trad.bundle.pem",
            "ec384.self.expected.pem",
        ),
    ];
    let mut items = Vec::new();
    let mut expected_versions = Vec::new();
    for (name, bundle, expected) in cases {
        let leaf = if expected.starts_with("ec384") {
            "ec384.self.pem"
        } else if expected.starts_with("noki") {
            "noki-leaf4.pem"
        } else {
            "ki-leaf4.pem"
        };
        let version = import_pem(kv, name, &fixture_text(bundle), leaf);
        expected_versions.push((format!("secret/{name}"), version));
        items.push(item(name, "secret", "objectFormat: pem"));
    }

    let response = mounted(&orders, &provider, &items).await;

    for (name, _, expected) in cases {
        assert_eq!(
            text(file(&response, name)),
            fixture_text(expected),
            "{name}"
        );
    }
    let expected_versions: Vec<(&str, &str)> = expected_versions
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    assert_eq!(versions(&response), expected_versions);
}

#[tokio::test]
async fn pfx_format_on_a_pem_file_secret_builds_a_pfx_that_openssl_reads_back() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cases = [
        ("rsa-chain", "ki-chain4.shuffled.bundle.pem", "ki-chain4"),
        ("ec-self", "ec384.self.trad.bundle.pem", "ec384.self"),
    ];
    let mut items = Vec::new();
    for (name, bundle, case) in cases {
        let leaf = format!("{}.pem", case.replace("chain4", "leaf4"));
        import_pem(kv, name, &fixture_text(bundle), &leaf);
        items.push(item(name, "secret", "objectFormat: pfx"));
        items.push(item(
            name,
            "secret",
            &format!("objectFormat: pfx, objectEncoding: base64, objectAlias: {name}.pfx"),
        ));
    }

    let response = mounted(&orders, &provider, &items).await;

    for (name, _, case) in cases {
        let expected_keys = pem_blocks(&fixture_text(&format!("{case}.expected.key")));
        let expected_certs = pem_blocks(&fixture_text(&format!("{case}.expected.crt")));
        let as_text = STANDARD
            .decode(text(file(&response, name)))
            .expect("the PFX is written as standard base64");
        let binary = &file(&response, &format!("{name}.pfx")).contents;
        for pfx in [&as_text, binary] {
            let (keys, certificates) = openssl_reads_pfx(pfx);
            assert_eq!(keys, expected_keys, "{name}");
            assert_eq!(certificates, expected_certs, "{name}");
        }
    }
}

#[tokio::test]
async fn an_unknown_content_type_on_a_certificate_secret_is_a_clear_refusal() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let value = STANDARD.encode(fixture("rsa2048.self.modern.p12"));
    let der = first_der("rsa2048.self.pem");
    let version = kv.set_certificate(VAULT, "odd", &der, &value, "application/octet-stream");

    let (code, message) = refused(&orders, &provider, &[item("odd", "secret", "")]).await;

    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        format!(
            "objects[0] (odd): contentType: the secret backs a certificate, so its content \
             type must be application/x-pkcs12 or application/x-pem-file; it is \
             \"application/octet-stream\" (version {version})"
        )
    );
    // Refused, not crashed: the next Mount is served.
    let response = mounted(&orders, &provider, &[item("orders-db-conn", "secret", "")]).await;
    assert_eq!(response.files[0].contents, DB_CONN.as_bytes());
}

#[tokio::test]
async fn a_password_protected_or_rc4_pfx_is_refused_not_written_as_garbage() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let protected = import_pfx(kv, "protected", "protected.p12", "rsa2048.self.pem");
    let rc4 = import_pfx(kv, "rc4", "rc4.p12", "rsa2048.self.pem");

    let password = refused(&orders, &provider, &[item("protected", "secret", "")]).await;
    let cipher = refused(&orders, &provider, &[item("rc4", "secret", "")]).await;

    assert_eq!(
        password,
        (
            Code::InvalidArgument,
            format!(
                "objects[0] (protected): value: the PKCS#12 archive is protected by a \
                 password: its MAC fails with the empty one (version {protected})"
            )
        )
    );
    assert_eq!(
        cipher,
        (
            Code::Unimplemented,
            format!(
                "objects[0] (rc4): RC4 encryption in a PFX (version {rc4}) is not supported yet"
            )
        )
    );
}

#[tokio::test]
async fn hex_encoding_on_a_pem_certificate_secret_is_refused_by_field() {
    let (orders, provider) = start(&[]).await;
    let version = import_pfx(
        orders.world.keyvault(),
        "tls",
        "rsa2048.self.modern.p12",
        "rsa2048.self.pem",
    );

    let (code, message) = refused(
        &orders,
        &provider,
        &[item("tls", "secret", "objectEncoding: hex")],
    )
    .await;

    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        format!(
            "objects[0] (tls): objectEncoding: hex does not apply to a certificate written as \
             PEM, which is text; it applies to objectFormat: pfx (version {version})"
        )
    );
}

// --- cert and key objects ----------------------------------------------------------------

#[tokio::test]
async fn cert_objects_are_the_leaf_alone_as_one_pem_block() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    // Object name, how it is imported, and the openssl-written certificates of the chain.
    let cases = [
        ("rsa2048", "rsa2048.self.modern.p12", "rsa2048.self"),
        ("ec521", "ec521.self.modern.p12", "ec521.self"),
        ("ki-chain4", "ki-chain4.modern.p12", "ki-chain4"),
        ("noki-chain4", "noki-chain4.legacy.p12", "noki-chain4"),
        ("pem-chain", "ki-chain4.shuffled.bundle.pem", "ki-chain4"),
    ];
    let mut items = Vec::new();
    let mut expected_versions = Vec::new();
    for (name, stored, case) in cases {
        let leaf = format!("{}.pem", case.replace("chain4", "leaf4"));
        let version = if stored.ends_with(".p12") {
            import_pfx(kv, name, stored, &leaf)
        } else {
            import_pem(kv, name, &fixture_text(stored), &leaf)
        };
        expected_versions.push((format!("cert/{name}"), version));
        items.push(item(name, "cert", ""));
    }

    let response = mounted(&orders, &provider, &items).await;

    for (name, _, case) in cases {
        let leaf = pem_blocks(&fixture_text(&format!("{case}.expected.crt"))).remove(0);
        let file = file(&response, name);
        assert_eq!(text(file), leaf, "{name}");
        assert_eq!(pem_blocks(text(file)).len(), 1);
        assert_eq!(file.mode, 0o644);
    }
    let expected_versions: Vec<(&str, &str)> = expected_versions
        .iter()
        .map(|(id, v)| (id.as_str(), v.as_str()))
        .collect();
    assert_eq!(versions(&response), expected_versions);
}

/// The JSON Web Key of a fixture key, with `kty` replaced (e.g. by its `-HSM` twin).
fn jwk(key: &str, kty: &str) -> serde_json::Value {
    let mut jwk: serde_json::Value =
        serde_json::from_slice(&fixture(&format!("{key}.jwk.json"))).unwrap();
    jwk["kty"] = kty.into();
    jwk["key_ops"] = serde_json::json!(["verify", "encrypt"]);
    jwk
}

#[tokio::test]
async fn key_objects_are_the_public_key_as_pem_for_rsa_and_ec_in_software_and_hsm() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cases = [
        ("rsa2048", "RSA"),
        ("rsa3072", "RSA"),
        ("rsa4096", "RSA-HSM"),
        ("rsa2048", "RSA-HSM"),
        ("ec256", "EC"),
        ("ec256", "EC-HSM"),
        ("ec256-lead0", "EC"),
        ("ec384", "EC"),
        ("ec384", "EC-HSM"),
        ("ec521", "EC"),
        ("ec521", "EC-HSM"),
    ];
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (key, kty) in cases {
        let name = format!("{key}-{}", kty.to_ascii_lowercase());
        let version = kv.set_key(VAULT, &name, jwk(key, kty));
        items.push(item(&name, "key", ""));
        expected.push((name, key, version));
    }
    // The managed key of an imported certificate is a key object too.
    let version = import_pfx(kv, "tls", "ec384.self.modern.p12", "ec384.self.pem");
    items.push(item("tls", "key", "filePermission: \"0400\""));
    expected.push(("tls".to_owned(), "ec384", version));

    let response = mounted(&orders, &provider, &items).await;

    for (name, key, _) in &expected {
        let file = file(&response, name);
        assert_eq!(
            text(file),
            fixture_text(&format!("{key}.pub.pem")),
            "{name}"
        );
    }
    assert_eq!(file(&response, "tls").mode, 0o400);
    assert_eq!(file(&response, "rsa3072-rsa").mode, 0o644);
    let ids: Vec<(String, &str)> = expected
        .iter()
        .map(|(name, _, version)| (format!("key/{name}"), version.as_str()))
        .collect();
    let ids: Vec<(&str, &str)> = ids.iter().map(|(id, v)| (id.as_str(), *v)).collect();
    assert_eq!(versions(&response), ids);
}

#[tokio::test]
async fn secp256k1_and_symmetric_keys_are_refused_with_the_reason() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    // The generator of secp256k1: a valid point, refused for its curve.
    let coordinate = |hex_text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex_text).unwrap())
    };
    let k256 = serde_json::json!({
        "kty": "EC",
        "crv": "P-256K",
        "key_ops": ["sign", "verify"],
        "x": coordinate("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
        "y": coordinate("483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"),
    });
    let mut k256_hsm = k256.clone();
    k256_hsm["kty"] = "EC-HSM".into();
    let oct = serde_json::json!({"kty": "oct", "key_ops": ["encrypt", "decrypt"]});
    let oct_hsm = serde_json::json!({"kty": "oct-HSM", "key_ops": ["wrapKey", "unwrapKey"]});
    let secp256k1 = "P-256K (secp256k1) keys are not supported: like the Go provider, this \
                     provider writes EC public keys on P-256, P-384 and P-521 only";
    let symmetric = |kty: &str| {
        format!(
            "{kty} keys are symmetric: Key Vault never returns their material, so there is no \
             public key to write"
        )
    };
    let cases = [
        ("k256", k256, secp256k1.to_owned()),
        ("k256-hsm", k256_hsm, secp256k1.to_owned()),
        ("aes", oct, symmetric("oct")),
        ("aes-hsm", oct_hsm, symmetric("oct-HSM")),
    ];

    for (name, jwk, reason) in cases {
        let version = kv.set_key(VAULT, name, jwk);
        let items = [item("orders-db-conn", "secret", ""), item(name, "key", "")];

        let (code, message) = refused(&orders, &provider, &items).await;

        assert_eq!(code, Code::InvalidArgument, "{name}");
        assert_eq!(
            message,
            format!("objects[1] ({name}): key: {reason} (version {version})")
        );
    }
}

// --- rendering flags ---------------------------------------------------------------------

#[tokio::test]
async fn separate_files_add_crt_and_key_with_the_same_id_and_version() {
    let (orders, provider) = start(&["--write-cert-and-key-in-separate-files"]).await;
    let kv = orders.world.keyvault();
    let tls = import_pfx(kv, "tls", "rsa2048.self.modern.p12", "rsa2048.self.pem");
    let bundle = fixture_text("ki-chain4.shuffled.bundle.pem");
    let chain = import_pem(kv, "chain", &bundle, "ki-leaf4.pem");
    let pfx = import_pfx(kv, "pfx", "ki-chain4.modern.p12", "ki-leaf4.pem");
    let nokey = import_pfx(kv, "nokey", "ki-chain4-nokey.modern.p12", "ki-leaf4.pem");
    let items = [
        item("tls", "secret", ""),
        item(
            "chain",
            "secret",
            "objectAlias: certs/chain.pem, filePermission: \"0440\"",
        ),
        item("pfx", "secret", "objectFormat: pfx"),
        item("nokey", "secret", ""),
        item("orders-db-conn", "secret", ""),
    ];

    let response = mounted(&orders, &provider, &items).await;

    let stored_pfx = STANDARD.encode(fixture("ki-chain4.modern.p12"));
    let expected: Vec<(&str, i32, String)> = vec![
        ("tls", 0o644, fixture_text("rsa2048.self.expected.pem")),
        ("tls.crt", 0o644, fixture_text("rsa2048.self.expected.crt")),
        ("tls.key", 0o644, fixture_text("rsa2048.self.expected.key")),
        (
            "certs/chain.pem",
            0o440,
            fixture_text("ki-chain4.expected.pem"),
        ),
        (
            "certs/chain.pem.crt",
            0o440,
            fixture_text("ki-chain4.expected.crt"),
        ),
        (
            "certs/chain.pem.key",
            0o440,
            fixture_text("ki-chain4.expected.key"),
        ),
        ("pfx", 0o644, stored_pfx),
        ("pfx.crt", 0o644, fixture_text("ki-chain4.expected.crt")),
        ("pfx.key", 0o644, fixture_text("ki-chain4.expected.key")),
        ("nokey", 0o644, fixture_text("ki-chain4-nokey.expected.pem")),
        (
            "nokey.crt",
            0o644,
            fixture_text("ki-chain4-nokey.expected.crt"),
        ),
        ("orders-db-conn", 0o644, DB_CONN.to_owned()),
    ];
    let actual: Vec<(&str, i32, &str)> = response
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.mode, text(f)))
        .collect();
    let expected: Vec<(&str, i32, &str)> = expected
        .iter()
        .map(|(path, mode, contents)| (*path, *mode, contents.as_str()))
        .collect();
    assert_eq!(actual, expected);
    assert_eq!(
        versions(&response),
        [
            ("secret/tls", tls.as_str()),
            ("secret/chain", chain.as_str()),
            ("secret/pfx", pfx.as_str()),
            ("secret/nokey", nokey.as_str()),
            (
                "secret/orders-db-conn",
                orders.versions["orders-db-conn"].as_str()
            ),
        ]
    );

    // The key-less certificate gets no empty `.key`, and the operator is told why.
    let line = logged_line(&provider, &["objects[3] (nokey)", "no .key"]).await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("version {nokey}")), "{line}");
}

#[tokio::test]
async fn without_construct_pem_chain_the_stored_order_is_kept() {
    let (orders, provider) = start(&["--construct-pem-chain=false"]).await;
    let kv = orders.world.keyvault();
    let bundle = fixture_text("ki-chain4.shuffled.bundle.pem");
    import_pem(kv, "pem", &bundle, "ki-leaf4.pem");
    import_pfx(kv, "pfx", "ki-chain4.modern.p12", "ki-leaf4.pem");

    let response = mounted(
        &orders,
        &provider,
        &[item("pem", "secret", ""), item("pfx", "secret", "")],
    )
    .await;

    // The bundle is int1, key, root, leaf4, int2: the key moves first, the rest stays.
    let key = fixture_text("rsa2048.self.expected.key");
    let pem_order = concat(&["ki-int1.pem", "ki-root.pem", "ki-leaf4.pem", "ki-int2.pem"]);
    assert_eq!(text(file(&response, "pem")), format!("{key}{pem_order}"));
    // The PFX's order, as openssl lists its certificates.
    let listed = openssl(&[
        "pkcs12",
        "-in",
        fixture_path("ki-chain4.modern.p12").to_str().unwrap(),
        "-passin",
        "pass:",
        "-nokeys",
    ]);
    let pfx_order: String = pem_blocks(std::str::from_utf8(&listed).unwrap()).concat();
    assert_ne!(pfx_order, fixture_text("ki-chain4.expected.crt"));
    assert_eq!(text(file(&response, "pfx")), format!("{key}{pfx_order}"));
}

#[tokio::test]
async fn certificates_that_are_not_one_chain_keep_the_stored_order_with_a_warning() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cases: [(&str, &[&str]); 3] = [
        (
            "forked",
            &[
                "ki-leaf2.pem",
                "rsa2048.key.pem",
                "ki-leaf3.pem",
                "ki-int1.pem",
                "ki-root.pem",
            ],
        ),
        (
            "incomplete",
            &[
                "rsa2048.key.pem",
                "ki-root.pem",
                "ki-leaf4.pem",
                "ki-int1.pem",
            ],
        ),
        ("cycle", &["cycle-b.pem", "cycle-a.pem"]),
    ];
    let mut items = Vec::new();
    let mut versions_by_name = Vec::new();
    for (name, stored) in cases {
        let leaf = stored.iter().find(|f| !f.contains("key")).unwrap();
        versions_by_name.push(import_pem(kv, name, &concat(stored), leaf));
        items.push(item(name, "secret", ""));
    }

    let response = mounted(&orders, &provider, &items).await;

    for (index, (name, stored)) in cases.iter().enumerate() {
        let certificates: Vec<&str> = stored
            .iter()
            .copied()
            .filter(|f| !f.contains("key"))
            .collect();
        let key = if stored.contains(&"rsa2048.key.pem") {
            fixture_text("rsa2048.self.expected.key")
        } else {
            String::new()
        };
        let expected = format!("{key}{}", concat(&certificates));
        assert_eq!(text(file(&response, name)), expected, "{name}");

        let version = &versions_by_name[index];
        let named = format!("objects[{index}] ({name}), version {version}: the certificates");
        let line = logged_line(&provider, &[&named, "do not form one chain"]).await;
        assert!(line.contains("WARN"), "{line}");
        assert!(
            line.contains("so they are written in the order Key Vault stores them"),
            "{line}"
        );
    }
}

// --- validation --------------------------------------------------------------------------

#[tokio::test]
async fn object_type_is_accepted_in_any_case() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    let cert = import_pfx(kv, "tls", "ec256.self.modern.p12", "ec256.self.pem");
    let items = [
        item("orders-db-conn", "SECRET", ""),
        item("tls", "Cert", "objectAlias: tls.crt"),
        item("tls", "kEY", "objectAlias: tls.pub"),
    ];

    let response = mounted(&orders, &provider, &items).await;

    assert_eq!(
        text(file(&response, "tls.crt")),
        fixture_text("ec256.self.expected.crt")
    );
    assert_eq!(
        text(file(&response, "tls.pub")),
        fixture_text("ec256.pub.pem")
    );
    assert_eq!(
        versions(&response),
        [
            (
                "secret/orders-db-conn",
                orders.versions["orders-db-conn"].as_str()
            ),
            ("cert/tls", cert.as_str()),
            ("key/tls", cert.as_str()),
        ]
    );
}

#[tokio::test]
async fn object_errors_are_refused_by_object_and_field_before_any_request() {
    let (orders, provider) = start(&[]).await;
    let cases = [
        (
            "{objectName: \"\", objectType: secret}",
            "objects[1]: objectName: is required",
        ),
        (
            "{objectType: secret}",
            "objects[1]: objectName: is required",
        ),
        (
            "{objectName: k, objectType: key, objectEncoding: base64}",
            "objects[1] (k): objectEncoding: applies only to objectType secret, not key",
        ),
        (
            "{objectName: c, objectType: cert, objectEncoding: HEX}",
            "objects[1] (c): objectEncoding: applies only to objectType secret, not cert",
        ),
        (
            "{objectName: k, objectType: key, objectFormat: pfx}",
            "objects[1] (k): objectFormat: applies only to objectType secret, not key",
        ),
        (
            "{objectName: c, objectType: Cert, objectFormat: PFX}",
            "objects[1] (c): objectFormat: applies only to objectType secret, not cert",
        ),
        (
            "{objectName: s, objectType: secret, objectFormat: der}",
            "objects[1] (s): objectFormat: \"der\" is not one of pem, pfx",
        ),
        (
            "{objectName: s, objectType: certificate}",
            "objects[1] (s): objectType: \"certificate\" is not one of secret, key, cert",
        ),
    ];

    for (bad, expected) in cases {
        let items = [item("orders-db-conn", "secret", ""), bad.to_owned()];
        let (code, message) = refused(&orders, &provider, &items).await;
        assert_eq!((code, message.as_str()), (Code::InvalidArgument, expected));
    }
    assert!(orders.world.entra().requests().is_empty());
    assert!(orders.world.keyvault().requests().is_empty());
}

#[tokio::test]
async fn a_response_above_4_mib_is_resource_exhausted_naming_the_largest_files() {
    let (orders, provider) = start(&[]).await;
    let kv = orders.world.keyvault();
    // Key Vault keeps values up to 25 KB, so it takes many objects to pass 4 MiB.
    let count = 176;
    let mut items = Vec::new();
    // The answer that would have been sent, encoded by prost: the driver's limit is on it.
    let mut would_send = pb::MountResponse::default();
    for index in 0..count {
        let name = format!("blob-{index:03}");
        let value = "x".repeat(24_000 + index);
        let version = kv.set_secret(VAULT, &name, &value, None);
        would_send.object_version.push(pb::ObjectVersion {
            id: format!("secret/{name}"),
            version,
        });
        would_send.files.push(pb::File {
            path: name.clone(),
            mode: 0o644,
            contents: value.into_bytes(),
        });
        items.push(item(&name, "secret", ""));
    }
    let total = prost::Message::encoded_len(&would_send);
    assert!(total > 4 << 20);

    let (code, message) = refused(&orders, &provider, &items).await;

    assert_eq!(code, Code::ResourceExhausted);
    assert_eq!(
        message,
        format!(
            "the mounted files total {total} bytes, above the driver's limit of 4194304 bytes \
             (--max-call-recv-msg-size, 4 MiB by default); largest: blob-175 (24175 bytes), \
             blob-174 (24174 bytes), blob-173 (24173 bytes)"
        )
    );
}
