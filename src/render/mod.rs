//! The fourth step of a Mount: turn a fetched object into file contents.
//!
//! A plain secret's value is written byte for byte (nothing added or trimmed), or decoded
//! from base64 or hex when the object asks for it. A secret that backs a certificate becomes
//! PEM (keys as PKCS#8, then the chain leaf → root) or PKCS#12 ([`certificate`]); a key
//! becomes its public key as SubjectPublicKeyInfo PEM ([`jwk`]); a certificate its leaf.

mod ber;
pub mod certificate;
pub mod chain;
mod curve;
#[cfg(test)]
mod encoding_tests;
#[cfg(test)]
mod fixtures;
#[doc(hidden)]
pub mod fuzz;
pub mod jwk;
pub mod keys;
pub mod pem;
pub mod pkcs12;

use base64::Engine as _;

use crate::keyvault::{CertificateBundle, KeyBundle, SecretBundle};
use crate::request::{Encoding, ObjectSpec};
use crate::secret::SecretBytes;

/// An object as fetched from its collection.
#[derive(Debug)]
pub enum Fetched {
    /// From `/secrets`.
    Secret(SecretBundle),
    /// From `/keys`.
    Key(KeyBundle),
    /// From `/certificates`.
    Cert(CertificateBundle),
}

impl Fetched {
    /// The Key Vault version it came from.
    pub fn version(&self) -> &str {
        match self {
            Self::Secret(bundle) => bundle.version(),
            Self::Key(bundle) => bundle.version(),
            Self::Cert(bundle) => bundle.version(),
        }
    }
}

/// Process-wide rendering switches, from the flags the Go provider's chart passes.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// `--construct-pem-chain`: order certificates leaf → root.
    pub construct_pem_chain: bool,
    /// `--write-cert-and-key-in-separate-files`: also `<file>.crt` and `<file>.key`.
    pub write_cert_and_key_in_separate_files: bool,
}

/// One file of an object: its path is the object's path plus `suffix`.
#[derive(Debug)]
pub struct Output {
    /// `""` for the main file, `".crt"` or `".key"` for the separate files.
    pub suffix: &'static str,
    /// The bytes.
    pub contents: SecretBytes,
}

/// Everything an object renders to.
#[derive(Debug)]
pub struct Rendered {
    /// Its files.
    pub outputs: Vec<Output>,
    /// Something the operator should know, e.g. a chain kept in stored order.
    pub warning: Option<String>,
}

/// Renders a fetched object as its spec asks.
pub fn object(
    spec: &ObjectSpec,
    fetched: &Fetched,
    options: RenderOptions,
) -> Result<Rendered, RenderError> {
    let contents = match fetched {
        // A secret with a `kid` backs a certificate: PKCS#12 or PEM, rendered as a whole.
        Fetched::Secret(bundle) if bundle.kid.is_some() => {
            return certificate::secret(spec, bundle, options);
        }
        Fetched::Secret(bundle) => secret(spec, bundle)?,
        Fetched::Key(bundle) => jwk::render(spec, bundle)?,
        Fetched::Cert(bundle) => certificate::cert(spec, bundle)?,
    };
    Ok(Rendered {
        outputs: vec![Output {
            suffix: "",
            contents,
        }],
        warning: None,
    })
}

/// Why an object's value cannot become file contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The stored value does not fit what the object asks for.
    #[error("objects[{index}] ({name}): {field}: {reason}")]
    Mismatch {
        /// Position in the list.
        index: usize,
        /// Object name.
        name: String,
        /// The field whose demand the value does not meet.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The object is of a kind this provider does not render yet.
    #[error("objects[{index}] ({name}): {what} is not supported yet")]
    Unsupported {
        /// Position in the list.
        index: usize,
        /// Object name.
        name: String,
        /// What.
        what: String,
    },
}

/// The file contents of a secret.
pub fn secret(spec: &ObjectSpec, bundle: &SecretBundle) -> Result<SecretBytes, RenderError> {
    if bundle.kid.is_some() {
        return Err(RenderError::Unsupported {
            index: spec.index,
            name: spec.name.clone(),
            what: "a secret that backs a certificate".into(),
        });
    }
    let value = bundle
        .value
        .as_ref()
        .map(|v| v.expose())
        .unwrap_or_default();
    decode(spec, value)
}

/// Applies `objectEncoding`.
fn decode(spec: &ObjectSpec, value: &str) -> Result<SecretBytes, RenderError> {
    let mismatch = |reason: &str| RenderError::Mismatch {
        index: spec.index,
        name: spec.name.clone(),
        field: "objectEncoding",
        reason: format!(
            "{reason} (version {})",
            spec.version.as_deref().unwrap_or("latest")
        ),
    };
    match spec.encoding {
        Encoding::Utf8 => Ok(SecretBytes::new(value.as_bytes().to_vec())),
        Encoding::Base64 => {
            // Go's decoder skips line breaks; so do we.
            let compact: Vec<u8> = value
                .bytes()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(SecretBytes::new)
                .map_err(|_| mismatch("the stored value is not standard padded base64"))
        }
        Encoding::Hex => hex::decode(value.as_bytes())
            .map(SecretBytes::new)
            .map_err(|_| mismatch("the stored value is not hexadecimal")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(encoding: Encoding) -> ObjectSpec {
        super::fixtures::secret_spec(encoding)
    }

    #[test]
    fn utf8_is_byte_for_byte() {
        let out = decode(&spec(Encoding::Utf8), "line one\n  two \n").unwrap();
        assert_eq!(out.expose(), b"line one\n  two \n");
    }

    #[test]
    fn base64_ignores_line_breaks_and_needs_padding() {
        let out = decode(&spec(Encoding::Base64), "AAEC\r\n/w==").unwrap();
        assert_eq!(out.expose(), [0, 1, 2, 255]);
        assert!(decode(&spec(Encoding::Base64), "AAEC/w").is_err());
    }

    #[test]
    fn hex_takes_both_cases() {
        assert_eq!(
            decode(&spec(Encoding::Hex), "00fFaB").unwrap().expose(),
            [0, 255, 171]
        );
        let error = decode(&spec(Encoding::Hex), "xyz").unwrap_err().to_string();
        assert_eq!(
            error,
            "objects[0] (s): objectEncoding: the stored value is not hexadecimal (version latest)"
        );
    }
}
