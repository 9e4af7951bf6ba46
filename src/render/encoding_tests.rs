//! Property tests of the encodings every file passes through: PEM, and the base64 and hex of
//! `objectEncoding`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::pem::{self, Label};
use crate::keyvault::SecretBundle;
use crate::request::Encoding;

fn plain_secret(value: &str, encoding: Encoding) -> Vec<u8> {
    let spec = super::fixtures::secret_spec(encoding);
    let bundle: SecretBundle = serde_json::from_value(serde_json::json!({
        "value": value,
        "id": "https://kv.vault.azure.net/secrets/s/0",
    }))
    .unwrap();
    super::secret(&spec, &bundle).unwrap().expose().to_vec()
}

const LABELS: [(&str, Label); 5] = [
    ("CERTIFICATE", Label::Certificate),
    ("PRIVATE KEY", Label::PrivateKey),
    ("RSA PRIVATE KEY", Label::RsaPrivateKey),
    ("EC PRIVATE KEY", Label::EcPrivateKey),
    ("PUBLIC KEY", Label::PublicKey),
];

proptest! {
    #[test]
    fn pem_blocks_read_back_what_was_written(
        blocks in prop::collection::vec(
            (0..LABELS.len(), prop::collection::vec(any::<u8>(), 1..700)),
            0..4,
        ),
        junk in "[ -~]{0,40}",
    ) {
        let mut text = String::new();
        for (label, der) in &blocks {
            let block = pem::encode(LABELS[*label].0, der);
            prop_assert_eq!(block.len(), pem::encoded_len(LABELS[*label].0, der.len()));
            prop_assert!(block.lines().all(|line| line.len() <= 64 || line.starts_with("-----")));
            // Text between blocks, as openssl prints bag attributes, is skipped.
            text.push_str(&junk.replace('-', "_"));
            text.push('\n');
            text.push_str(&block);
        }

        let parsed = pem::parse(text.as_bytes()).unwrap();

        prop_assert_eq!(parsed.len(), blocks.len());
        for (block, (label, der)) in parsed.iter().zip(&blocks) {
            prop_assert_eq!(block.label, LABELS[*label].1);
            prop_assert_eq!(block.der.expose(), der.as_slice());
        }
    }

    #[test]
    fn base64_values_decode_to_their_bytes_line_breaks_or_not(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        width in 1usize..80,
        crlf in any::<bool>(),
    ) {
        let encoded = STANDARD.encode(&bytes);
        let newline = if crlf { "\r\n" } else { "\n" };
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(width)
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect();

        prop_assert_eq!(plain_secret(&encoded, Encoding::Base64), bytes.clone());
        prop_assert_eq!(plain_secret(&wrapped.join(newline), Encoding::Base64), bytes);
    }

    #[test]
    fn hex_values_decode_to_their_bytes_in_either_case(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        upper in any::<bool>(),
    ) {
        let encoded = hex::encode(&bytes);
        let encoded = if upper { encoded.to_uppercase() } else { encoded };

        prop_assert_eq!(plain_secret(&encoded, Encoding::Hex), bytes);
    }

    #[test]
    fn utf8_values_are_written_byte_for_byte(value in "\\PC*") {
        prop_assert_eq!(plain_secret(&value, Encoding::Utf8), value.as_bytes());
    }
}
