//! PEM text in and out, for every certificate, key and public key the provider writes.
//!
//! Users diff and hash the files we write, so [`encode`] writes exactly what Go's
//! `encoding/pem` writes for a block without headers: the `BEGIN` line, standard base64 in lines
//! of 64 characters, the `END` line, every line ending in `\n`. [`parse`] reads the blocks of a
//! PEM bundle and skips any text between them, such as the `Bag Attributes` that
//! `openssl pkcs12` prints; the base64 and line handling come from `rustls-pki-types`.

use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject as _, SectionKind};
use zeroize::Zeroize as _;

use crate::secret::SecretBytes;

/// Characters of base64 per line, as Go and OpenSSL write them.
const LINE: usize = 64;

/// What a PEM block holds, by its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// `CERTIFICATE`: an X.509 certificate.
    Certificate,
    /// `PRIVATE KEY`: an unencrypted PKCS#8 private key.
    PrivateKey,
    /// `RSA PRIVATE KEY`: a PKCS#1 RSA private key.
    RsaPrivateKey,
    /// `EC PRIVATE KEY`: a SEC1 elliptic-curve private key.
    EcPrivateKey,
    /// `PUBLIC KEY`: a SubjectPublicKeyInfo.
    PublicKey,
    /// A label the provider reads but never uses (`X509 CRL`, `CERTIFICATE REQUEST`, ...).
    Other,
}

impl Label {
    /// The text between `BEGIN ` and the dashes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certificate => "CERTIFICATE",
            Self::PrivateKey => "PRIVATE KEY",
            Self::RsaPrivateKey => "RSA PRIVATE KEY",
            Self::EcPrivateKey => "EC PRIVATE KEY",
            Self::PublicKey => "PUBLIC KEY",
            Self::Other => "other",
        }
    }

    /// Whether the block holds a private key.
    pub fn is_private_key(self) -> bool {
        matches!(
            self,
            Self::PrivateKey | Self::RsaPrivateKey | Self::EcPrivateKey
        )
    }

    fn from_kind(kind: SectionKind) -> Self {
        match kind {
            SectionKind::Certificate => Self::Certificate,
            SectionKind::PrivateKey => Self::PrivateKey,
            SectionKind::RsaPrivateKey => Self::RsaPrivateKey,
            SectionKind::EcPrivateKey => Self::EcPrivateKey,
            SectionKind::PublicKey => Self::PublicKey,
            _ => Self::Other,
        }
    }
}

/// One decoded block. The DER is held as [`SecretBytes`] because it may be a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// What the block holds.
    pub label: Label,
    /// The decoded contents.
    pub der: SecretBytes,
}

/// Why text is not a PEM bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid PEM: {0}")]
pub struct PemError(String);

/// The PEM text of one block, exactly as Go's `pem.Encode` writes it without headers.
pub fn encode(label: &str, der: &[u8]) -> String {
    let mut out = Vec::new();
    append(&mut out, label, der);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the PEM text of one block to `out`.
///
/// The room is reserved first so that a private key's text is never left behind in a buffer
/// that grew and was freed.
pub fn append(out: &mut Vec<u8>, label: &str, der: &[u8]) {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines = body.len().div_ceil(LINE);
    out.reserve(2 * (label.len() + 16) + body.len() + lines);

    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    for line in body.as_bytes().chunks(LINE) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");

    let mut body = body;
    body.zeroize();
}

/// The number of bytes [`append`] adds for a block of `der_len` bytes.
pub fn encoded_len(label: &str, der_len: usize) -> usize {
    let body = der_len.div_ceil(3) * 4;
    2 * (label.len() + 16) + body + body.div_ceil(LINE)
}

/// Every block of a PEM bundle, in order. Text outside blocks is skipped, and so are blocks
/// whose label is not one of [`Label`]'s or [`Label::Other`]'s; [`skipped_labels`] names them.
pub fn parse(text: &[u8]) -> Result<Vec<Block>, PemError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(text)
        .map(|item| {
            item.map(|(kind, der)| Block {
                label: Label::from_kind(kind),
                der: SecretBytes::new(der),
            })
            .map_err(|e| PemError(describe(&e)))
        })
        .collect()
}

/// The labels of the blocks [`parse`] skips, in order, such as `ENCRYPTED PRIVATE KEY`.
pub fn skipped_labels(text: &[u8]) -> Vec<String> {
    text.split(|b| *b == b'\n' || *b == b'\r')
        .filter_map(|line| line.strip_prefix(b"-----BEGIN "))
        .map(|rest| {
            let end = rest.iter().position(|b| *b == b'-').unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|label| SectionKind::try_from(*label).is_err())
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect()
}

/// The error text, without the bytes of the offending line: it may be part of a private key.
fn describe(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a block labelled {:?} has no END line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a block's body is not base64".into(),
        pem::Error::SectionTooLarge => "a block is too large".into(),
        _ => "the text cannot be read".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::fixture;

    #[test]
    fn matches_openssl_byte_for_byte() {
        // The fixture was written by openssl, which wraps and terminates lines like Go does.
        let text = fixture("ki-root.pem");
        let blocks = parse(&text).unwrap();

        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, Label::Certificate);
        assert_eq!(
            encode("CERTIFICATE", blocks[0].der.expose()).as_bytes(),
            text
        );
    }

    #[test]
    fn short_and_empty_bodies() {
        assert_eq!(
            encode("X", &[1, 2, 3]),
            "-----BEGIN X-----\nAQID\n-----END X-----\n"
        );
        assert_eq!(encode("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
        assert_eq!(encoded_len("X", 3), encode("X", &[1, 2, 3]).len());
        assert_eq!(encoded_len("X", 0), encode("X", &[]).len());
    }

    #[test]
    fn skips_bag_attributes_between_blocks() {
        let text = fixture("ki-chain4.attributes.bundle.pem");
        assert!(String::from_utf8_lossy(&text).contains("Bag Attributes"));

        let labels: Vec<Label> = parse(&text).unwrap().iter().map(|b| b.label).collect();

        assert_eq!(
            labels,
            [
                Label::Certificate,
                Label::Certificate,
                Label::Certificate,
                Label::Certificate,
                Label::PrivateKey
            ]
        );
    }

    #[test]
    fn lists_labels_it_does_not_decode() {
        let mut text = b"junk\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n\
                         -----END ENCRYPTED PRIVATE KEY-----\n"
            .to_vec();
        text.extend_from_slice(&fixture("ki-root.pem"));

        assert_eq!(parse(&text).unwrap().len(), 1);
        assert_eq!(skipped_labels(&text), ["ENCRYPTED PRIVATE KEY"]);
    }

    #[test]
    fn errors_do_not_echo_the_text() {
        let text = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0!!\n-----END PRIVATE KEY-----\n";

        let error = parse(text).unwrap_err().to_string();

        assert_eq!(error, "not valid PEM: a block's body is not base64");
        let unterminated = parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert!(
            unterminated.to_string().contains("no END line"),
            "{unterminated}"
        );
    }

    #[test]
    fn crlf_line_ends_are_read() {
        let text = encode("CERTIFICATE", b"certificate bytes").replace('\n', "\r\n");

        let blocks = parse(text.as_bytes()).unwrap();

        assert_eq!(blocks[0].der.expose(), b"certificate bytes");
    }
}
