//! PKCS#12 decoding of every fixture flavour, and our encoder read back by our decoder.

use super::encode::local_key_ids;
use super::*;
use crate::render::fixtures::{fixture, folder};
use crate::render::{keys, pem};

/// The DER of every block of a PEM fixture.
fn blocks(name: &str) -> Vec<Vec<u8>> {
    pem::parse(&fixture(name))
        .unwrap()
        .iter()
        .map(|b| b.der.expose().to_vec())
        .collect()
}

fn normalized_keys(archive: &Archive) -> Vec<Vec<u8>> {
    archive
        .keys
        .iter()
        .map(|k| keys::from_pkcs8(k.expose()).unwrap().expose().to_vec())
        .collect()
}

fn sorted(mut ders: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    ders.sort();
    ders
}

/// Decodes `pfx` and checks its keys and certificates against the openssl-computed `case`.
fn check(pfx: &str, case: &str) {
    let archive = decode(&fixture(pfx)).unwrap_or_else(|e| panic!("{pfx}: {e}"));

    assert_eq!(
        normalized_keys(&archive),
        blocks(&format!("{case}.expected.key")),
        "{pfx}"
    );
    assert_eq!(
        sorted(archive.certificates.clone()),
        sorted(blocks(&format!("{case}.expected.crt"))),
        "{pfx}"
    );
}

#[test]
fn reads_modern_archives_of_every_key_type() {
    for key in ["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384", "ec521"] {
        check(&format!("{key}.self.modern.p12"), &format!("{key}.self"));
    }
}

#[test]
fn reads_legacy_archives() {
    check("rsa2048.self.legacy.p12", "rsa2048.self");
    check("ec384.self.legacy.p12", "ec384.self");
    check("ki-chain3.legacy.p12", "ki-chain3");
    check("ki-chain4.legacy.p12", "ki-chain4");
    check("noki-chain4.legacy.p12", "noki-chain4");
    check("ki-chain4.3des.p12", "ki-chain4");
}

#[test]
fn reads_unencrypted_archives_with_and_without_mac() {
    check("ki-chain4.plain.p12", "ki-chain4");
    check("ki-chain4.bare.p12", "ki-chain4");
}

#[test]
fn reads_ber_archives() {
    check("ki-chain4.modern-ber.p12", "ki-chain4");
    check("ki-chain4.legacy-ber.p12", "ki-chain4");
}

#[test]
fn keeps_the_stored_order_of_certificates() {
    // openssl puts the leaf first, then the -certfile certificates in file order.
    let archive = decode(&fixture("ki-chain4.modern.p12")).unwrap();
    let expected: Vec<Vec<u8>> = ["ki-leaf4.pem", "ki-root.pem", "ki-int1.pem", "ki-int2.pem"]
        .iter()
        .flat_map(|name| blocks(name))
        .collect();

    assert_eq!(archive.certificates, expected);
}

#[test]
fn drops_pkcs8_attributes_from_keys() {
    let archive = decode(&fixture("rsa2048.self.keysig.p12")).unwrap();
    // The stored key carries the key-usage attribute...
    assert_ne!(archive.keys[0].expose(), blocks("rsa2048.key.pem")[0]);
    // ...which the canonical form drops.
    check("rsa2048.self.keysig.p12", "rsa2048.self");
}

#[test]
fn reads_several_keys_with_and_without_local_key_id() {
    let archive = decode(&fixture("two-keys.p12")).unwrap();

    assert_eq!(normalized_keys(&archive), blocks("two-keys.expected.key"));
    let stored: Vec<Vec<u8>> = ["ki-root.pem", "ki-leaf4.pem", "ki-int1.pem", "ki-int2.pem"]
        .iter()
        .flat_map(|name| blocks(name))
        .collect();
    assert_eq!(archive.certificates, stored);
}

#[test]
fn reads_certificates_without_a_key() {
    let archive = decode(&fixture("ki-chain4-nokey.modern.p12")).unwrap();

    assert!(archive.keys.is_empty());
    assert_eq!(
        sorted(archive.certificates),
        sorted(blocks("ki-chain4-nokey.expected.crt"))
    );
}

#[test]
fn refuses_a_real_password() {
    assert_eq!(
        decode(&fixture("protected.p12")),
        Err(Pkcs12Error::Password)
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let good = fixture("ki-chain4.legacy.p12");
    assert!(decode(b"").is_err());
    assert!(decode(b"not a pfx").is_err());
    assert!(decode(&good[..good.len() / 2]).is_err());
}

fn roundtrip_inputs() -> (Vec<SecretBytes>, Vec<Vec<u8>>) {
    let keys = blocks("two-keys.expected.key")
        .into_iter()
        .map(SecretBytes::new)
        .collect();
    (keys, blocks("ki-chain4.expected.crt"))
}

fn encode_all(keys: &[SecretBytes], certs: &[Vec<u8>]) -> SecretBytes {
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose()).collect();
    let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
    encode(&keys, &certs).unwrap()
}

#[test]
fn encoded_archives_read_back_the_same() {
    let (keys, certs) = roundtrip_inputs();

    let pfx = encode_all(&keys, &certs);
    let archive = decode(pfx.expose()).unwrap();

    assert_eq!(archive.keys, keys);
    assert_eq!(archive.certificates, certs);
}

#[test]
fn encoding_is_deterministic() {
    let (keys, certs) = roundtrip_inputs();
    assert_eq!(encode_all(&keys, &certs), encode_all(&keys, &certs));
    assert_ne!(
        encode_all(&keys, &certs),
        encode_all(&keys[..1], &certs),
        "different contents give different bytes"
    );
}

#[test]
fn encodes_archives_with_only_keys_or_only_certificates() {
    let (keys, certs) = roundtrip_inputs();
    for (keys, certs) in [(&keys[..], &[][..]), (&[][..], &certs[..])] {
        let archive = decode(encode_all(keys, certs).expose()).unwrap();
        assert_eq!(archive.keys, keys);
        assert_eq!(archive.certificates, certs);
    }
}

#[test]
fn pairs_each_key_with_its_certificate() {
    // rsa2048's key belongs to the leaf; ec256's key to no certificate here.
    let (keys, certs) = roundtrip_inputs();
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose()).collect();
    let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();

    let (key_ids, cert_ids) = local_key_ids(&keys, &certs);

    let thumbprint = sha1::Sha1::digest(certs[0]).to_vec();
    assert_eq!(key_ids, [Some(thumbprint.clone()), None]);
    assert_eq!(cert_ids, [Some(thumbprint), None, None, None]);
}

/// OpenSSL 3 is the reference reader: it must verify the MAC, decrypt everything, and give
/// back the same keys and certificates, the key paired with its certificate.
#[test]
fn openssl_reads_encoded_archives() {
    let (keys, certs) = roundtrip_inputs();
    let pfx = encode_all(&keys[..1], &certs);
    let dir = std::env::temp_dir().join(format!("akv-pkcs12-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("encoded.p12");
    std::fs::write(&path, pfx.expose()).unwrap();

    let output = std::process::Command::new("openssl")
        .args(["pkcs12", "-passin", "pass:", "-nodes", "-in"])
        .arg(&path)
        .current_dir(folder())
        .output()
        .expect("the openssl CLI (it also generates the fixtures)");
    std::fs::remove_dir_all(&dir).unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Vec<Vec<u8>> = pem::parse(stdout.as_bytes())
        .unwrap()
        .iter()
        .map(|b| b.der.expose().to_vec())
        .collect();
    let mut expected = certs.clone();
    expected.push(keys[0].expose().to_vec());
    assert_eq!(sorted(printed), sorted(expected));
    // The key and the leaf carry the same localKeyID.
    assert_eq!(stdout.matches("localKeyID").count(), 2, "{stdout}");
}
