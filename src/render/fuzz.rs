//! Entry points for the fuzz targets in `fuzz/`, one per parser of untrusted input.
//!
//! Each takes arbitrary bytes and must return without panicking, whatever they are. They live
//! here rather than in the fuzz crate so that a unit test runs the same bodies over a seed
//! corpus on every `cargo test`: real fuzzing needs a nightly toolchain and `cargo fuzz`, which
//! not every machine has. Not part of the provider's API.

use crate::keyvault::SecretBundle;
use crate::render::{RenderOptions, certificate, jwk, pem, pkcs12};
use crate::request::{self, Encoding, Format, ObjectSpec, ObjectType};

/// A PFX: decoded alone, then as the base64 value of a certificate's secret.
pub fn pkcs12(data: &[u8]) {
    let _ = pkcs12::decode(data);
    let value = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data);
    certificate_secret(&value, "application/x-pkcs12");
}

/// PEM text: parsed alone, then as the value of a certificate's secret (keys, chain order).
pub fn pem(data: &[u8]) {
    let _ = pem::parse(data);
    let _ = pem::skipped_labels(data);
    certificate_secret(&String::from_utf8_lossy(data), "application/x-pem-file");
}

/// A KeyBundle's `key` member, as JSON.
pub fn jwk(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(key) = jwk::JsonWebKey::from_value(&value)
    {
        let _ = key.public_key_der();
    }
}

/// The `objects` parameter, through the request parser that reads it.
pub fn objects(data: &[u8]) {
    let attributes = serde_json::json!({
        "keyvaultName": "fuzz-vault",
        "useVMManagedIdentity": "true",
        "objects": String::from_utf8_lossy(data),
    });
    let defaults = request::Defaults {
        cloud_name: "AzurePublicCloud".into(),
        authority_host: None,
    };
    let _ = request::parse(&attributes.to_string(), "{}", "420", &defaults);
}

fn certificate_secret(value: &str, content_type: &str) {
    let bundle: SecretBundle = match serde_json::from_value(serde_json::json!({
        "value": value,
        "id": "https://fuzz-vault.vault.azure.net/secrets/fuzz/0",
        "contentType": content_type,
        "kid": "https://fuzz-vault.vault.azure.net/keys/fuzz/0",
    })) {
        Ok(bundle) => bundle,
        Err(_) => return,
    };
    let spec = ObjectSpec {
        index: 0,
        name: "fuzz".into(),
        kind: ObjectType::Secret,
        version: None,
        history: 0,
        format: Format::Pem,
        encoding: Encoding::Utf8,
        mode: 0o644,
        path: "fuzz".into(),
    };
    let options = RenderOptions {
        construct_pem_chain: true,
        write_cert_and_key_in_separate_files: true,
    };
    let _ = certificate::secret(&spec, &bundle, options);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::folder;

    /// Every fixture, then copies cut short and with single bytes flipped: the seed corpus
    /// the fuzz targets start from, with a few cheap mutations of our own.
    fn corpus() -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(folder())
            .unwrap()
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        seeds.extend([
            b"".to_vec(),
            b"array:\n  - |\n    objectName: a\n    objectType: secret\n".to_vec(),
            b"array:\n  - objectName: a\n    objectType: cert\n    objectFormat: pfx\n".to_vec(),
            br#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.to_vec(),
            br#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#.to_vec(),
        ]);

        let mut corpus = Vec::new();
        for seed in seeds {
            let len = seed.len();
            for cut in [len / 3, len / 2, len.saturating_sub(1)] {
                corpus.push(seed[..cut].to_vec());
            }
            for position in [0, len / 7, len / 3, len / 2, len * 3 / 4]
                .into_iter()
                .filter(|p| *p < len)
            {
                let mut flipped = seed.clone();
                flipped[position] ^= 0x41;
                corpus.push(flipped);
            }
            corpus.push(seed);
        }
        corpus
    }

    #[test]
    fn fuzz_bodies_survive_the_seed_corpus() {
        for input in corpus() {
            pkcs12(&input);
            pem(&input);
            jwk(&input);
            objects(&input);
        }
    }

    #[test]
    fn the_objects_body_reaches_the_objects_parser() {
        let attributes = serde_json::json!({
            "keyvaultName": "fuzz-vault",
            "useVMManagedIdentity": "true",
            "objects": "array:\n  - |\n    objectName: a\n    objectType: secret\n",
        });
        let defaults = request::Defaults {
            cloud_name: "AzurePublicCloud".into(),
            authority_host: None,
        };
        let params = request::parse(&attributes.to_string(), "{}", "420", &defaults).unwrap();
        assert_eq!(params.objects.len(), 1);
    }
}
