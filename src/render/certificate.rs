//! Certificates: the secret that backs a certificate, and `cert` objects.
//!
//! A Key Vault certificate's secret (a SecretBundle with `kid`) holds its key and chain, as a
//! password-less PFX (`application/x-pkcs12`) or as PEM (`application/x-pem-file`). What is
//! written:
//!
//! - `objectFormat: pem` (the default), either content type: the keys as PKCS#8, then the
//!   certificates.
//! - `objectFormat: pfx` on `application/x-pkcs12`: the stored value, base64 text; with
//!   `objectEncoding: base64`, the binary PFX.
//! - `objectFormat: pfx` on `application/x-pem-file`: a PFX built from the PEM (see
//!   [`pkcs12::encode`]), as base64 text or, with `objectEncoding: base64`, binary. The Go
//!   provider wrote the PEM unchanged here.
//!
//! Keys are rewritten in the canonical PKCS#8 form of [`keys`], PKCS#1 and SEC1 ones
//! included; certificates follow in chain order (see [`chain`]) unless
//! `--construct-pem-chain=false` keeps the stored order. Both content types are ordered alike,
//! where the Go provider wrote PEM secrets as stored.
//!
//! With `--write-cert-and-key-in-separate-files`, `<file>.crt` gets the certificate blocks and
//! `<file>.key` the key blocks, whatever the format. A file that would be empty is not
//! written, and the Mount's warning says so: a certificate whose key is not exportable has no
//! `.key`. `objectEncoding` other than `utf-8` applies only to `objectFormat: pfx`: PEM is
//! text.
//!
//! A `cert` object is the leaf alone: the bundle's `cer` as one `CERTIFICATE` block.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Output, RenderError, RenderOptions, Rendered, chain, keys, pem, pkcs12};
use crate::keyvault::{CertificateBundle, SecretBundle};
use crate::request::{Encoding, Format, ObjectSpec};
use crate::secret::SecretBytes;

const PKCS12: &str = "application/x-pkcs12";
const PEM_FILE: &str = "application/x-pem-file";

/// The files of a secret that backs a certificate (its bundle has a `kid`).
pub fn secret(
    spec: &ObjectSpec,
    bundle: &SecretBundle,
    options: RenderOptions,
) -> Result<Rendered, RenderError> {
    let version = bundle.version();
    let value = bundle.value.as_ref().map(|v| v.expose());
    let files = value
        .ok_or_else(|| Problem::mismatch("value", "Key Vault's answer has no value"))
        .and_then(|value| {
            let content_type = bundle.content_type.as_deref();
            render(value, content_type, spec.format, spec.encoding, options)
        })
        .map_err(|problem| problem.into_error(spec, version))?;

    let mut outputs = vec![Output {
        suffix: "",
        contents: files.main,
    }];
    for (suffix, contents) in [(".crt", files.crt), (".key", files.key)] {
        if let Some(contents) = contents {
            outputs.push(Output { suffix, contents });
        }
    }
    let warning = (!files.notes.is_empty()).then(|| {
        format!(
            "objects[{}] ({}), version {version}: {}",
            spec.index,
            spec.name,
            files.notes.join("; ")
        )
    });
    Ok(Rendered { outputs, warning })
}

/// The file of a `cert` object: the leaf certificate as one PEM `CERTIFICATE` block.
pub fn cert(spec: &ObjectSpec, bundle: &CertificateBundle) -> Result<SecretBytes, RenderError> {
    let der = bundle
        .cer
        .as_deref()
        .ok_or_else(|| Problem::mismatch("cer", "Key Vault's answer has no certificate"))
        .and_then(|cer| match standard_base64(cer) {
            Some(der) if !der.is_empty() => Ok(der),
            Some(_) => Err(Problem::mismatch("cer", "the certificate is empty")),
            None => Err(Problem::mismatch(
                "cer",
                "the certificate is not standard base64",
            )),
        })
        .map_err(|problem| problem.into_error(spec, bundle.version()))?;
    Ok(SecretBytes::new(
        pem::encode("CERTIFICATE", &der).into_bytes(),
    ))
}

/// What a certificate renders to, before it is tied to an object.
#[derive(Debug)]
struct Files {
    main: SecretBytes,
    crt: Option<SecretBytes>,
    key: Option<SecretBytes>,
    /// Degraded behaviour worth a warning.
    notes: Vec<String>,
}

/// Why a certificate cannot be rendered, before it is tied to an object.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// The stored value or a field of the object does not fit.
    Mismatch { field: &'static str, reason: String },
    /// Something this provider does not implement, as a noun phrase ("RC4 encryption in a
    /// PFX"): the error reads "... is not supported yet".
    Unsupported(String),
}

impl Problem {
    fn mismatch(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Mismatch {
            field,
            reason: reason.into(),
        }
    }

    /// The problem as a sentence, for a note.
    fn reason(self) -> String {
        match self {
            Self::Mismatch { reason, .. } => reason,
            Self::Unsupported(what) => format!("{what} is not supported"),
        }
    }

    fn into_error(self, spec: &ObjectSpec, version: &str) -> RenderError {
        match self {
            Self::Mismatch { field, reason } => RenderError::Mismatch {
                index: spec.index,
                name: spec.name.clone(),
                field,
                reason: format!("{reason} (version {version})"),
            },
            Self::Unsupported(what) => RenderError::Unsupported {
                index: spec.index,
                name: spec.name.clone(),
                what: format!("{what} (version {version})"),
            },
        }
    }
}

/// The stored form of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Pkcs12,
    Pem,
}

/// A certificate's keys (canonical PKCS#8) and certificates, in the order they are written.
#[derive(Default)]
struct Material {
    keys: Vec<SecretBytes>,
    certificates: Vec<Vec<u8>>,
    notes: Vec<String>,
}

fn render(
    value: &str,
    content_type: Option<&str>,
    format: Format,
    encoding: Encoding,
    options: RenderOptions,
) -> Result<Files, Problem> {
    let stored = stored_form(content_type)?;
    check_encoding(format, encoding)?;

    // A PFX written as stored needs no decoding; the separate files still do.
    let passthrough = stored == Stored::Pkcs12 && format == Format::Pfx;
    let separate = options.write_cert_and_key_in_separate_files;
    let mut material = match (passthrough, separate) {
        (true, false) => Material::default(),
        (true, true) => read(stored, value).unwrap_or_else(|problem| Material {
            notes: vec![format!(
                "the PFX is written as stored, but no .crt and .key files are: {}",
                problem.reason()
            )],
            ..Material::default()
        }),
        (false, _) => read(stored, value)?,
    };
    if options.construct_pem_chain {
        material.order_chain();
    }

    let (crt, key) = if separate {
        material.separate_files()
    } else {
        (None, None)
    };
    let main = match (format, stored) {
        (Format::Pem, _) => material.pem(),
        (Format::Pfx, Stored::Pkcs12) => match encoding {
            Encoding::Base64 => standard_base64(value)
                .map(|bytes| SecretBytes::new(bytes.to_vec()))
                .ok_or_else(not_base64)?,
            _ => SecretBytes::new(value.as_bytes().to_vec()),
        },
        (Format::Pfx, Stored::Pem) => material.pfx(encoding)?,
    };
    Ok(Files {
        main,
        crt,
        key,
        notes: material.notes,
    })
}

impl Material {
    /// Puts the certificates in chain order, or notes why they keep the stored order.
    fn order_chain(&mut self) {
        let chain::Ordered { order, problem } = chain::order(&self.certificates);
        if let Some(problem) = problem {
            self.notes.push(format!(
                "the certificates do not form one chain ({problem}), so they are written in \
                 the order Key Vault stores them"
            ));
            return;
        }
        let mut stored = std::mem::take(&mut self.certificates);
        self.certificates = order
            .iter()
            .map(|i| std::mem::take(&mut stored[*i]))
            .collect();
    }

    /// The `.crt` and `.key` files; an empty one is left out, and a missing key noted.
    fn separate_files(&mut self) -> (Option<SecretBytes>, Option<SecretBytes>) {
        let certificates = certificate_ders(&self.certificates);
        let crt = (!certificates.is_empty()).then(|| pem_text(CERTIFICATE, &certificates));
        let key = (!self.keys.is_empty()).then(|| pem_text(PRIVATE_KEY, &key_ders(&self.keys)));
        if key.is_none() {
            self.notes.push(
                "the certificate holds no private key (is its key exportable?), so no .key \
                 file is written"
                    .into(),
            );
        }
        (crt, key)
    }

    /// Keys, then certificates, as PEM.
    fn pem(&self) -> SecretBytes {
        let (keys, certificates) = (key_ders(&self.keys), certificate_ders(&self.certificates));
        let mut text = Zeroizing::new(Vec::new());
        text.reserve_exact(blocks_len(PRIVATE_KEY, &keys) + blocks_len(CERTIFICATE, &certificates));
        append_blocks(&mut text, PRIVATE_KEY, &keys);
        append_blocks(&mut text, CERTIFICATE, &certificates);
        SecretBytes::new(std::mem::take(&mut *text))
    }

    /// A PFX of the keys and certificates: binary with `objectEncoding: base64`, else its
    /// base64 text.
    fn pfx(&self, encoding: Encoding) -> Result<SecretBytes, Problem> {
        let pfx = pkcs12::encode(&key_ders(&self.keys), &certificate_ders(&self.certificates))
            .map_err(|e| Problem::mismatch("objectFormat", e.to_string()))?;
        Ok(match encoding {
            Encoding::Base64 => pfx,
            _ => SecretBytes::new(
                base64::engine::general_purpose::STANDARD
                    .encode(pfx.expose())
                    .into_bytes(),
            ),
        })
    }
}

fn stored_form(content_type: Option<&str>) -> Result<Stored, Problem> {
    match content_type {
        Some(t) if t.eq_ignore_ascii_case(PKCS12) => Ok(Stored::Pkcs12),
        Some(t) if t.eq_ignore_ascii_case(PEM_FILE) => Ok(Stored::Pem),
        other => {
            let found = other.map_or("none".to_owned(), |t| format!("{t:?}"));
            Err(Problem::mismatch(
                "contentType",
                format!(
                    "the secret backs a certificate, so its content type must be {PKCS12} or \
                     {PEM_FILE}; it is {found}"
                ),
            ))
        }
    }
}

/// `objectEncoding` other than `utf-8` only makes sense for the PFX's bytes.
fn check_encoding(format: Format, encoding: Encoding) -> Result<(), Problem> {
    let name = match encoding {
        Encoding::Utf8 => return Ok(()),
        Encoding::Base64 if format == Format::Pfx => return Ok(()),
        Encoding::Base64 => "base64",
        Encoding::Hex => "hex",
    };
    let reason = match format {
        Format::Pem => format!(
            "{name} does not apply to a certificate written as PEM, which is text; it applies \
             to objectFormat: pfx"
        ),
        Format::Pfx => format!(
            "{name} does not apply to a PFX: use utf-8 for its base64 text or base64 for its \
             bytes"
        ),
    };
    Err(Problem::mismatch("objectEncoding", reason))
}

fn read(stored: Stored, value: &str) -> Result<Material, Problem> {
    match stored {
        Stored::Pkcs12 => from_pkcs12(value),
        Stored::Pem => from_pem(value),
    }
}

fn not_base64() -> Problem {
    Problem::mismatch(
        "value",
        format!("the secret is {PKCS12} but its value is not standard base64"),
    )
}

fn from_pkcs12(value: &str) -> Result<Material, Problem> {
    let pfx = standard_base64(value).ok_or_else(not_base64)?;
    let archive = pkcs12::decode(&pfx).map_err(|e| match e {
        pkcs12::Pkcs12Error::Unsupported(what) => Problem::Unsupported(format!("{what} in a PFX")),
        _ => Problem::mismatch("value", e.to_string()),
    })?;
    let keys = archive
        .keys
        .iter()
        .map(|key| keys::from_pkcs8(key.expose()))
        .collect::<Result<_, _>>()
        .map_err(|e| Problem::mismatch("value", e.to_string()))?;
    material(keys, archive.certificates, Vec::new())
}

fn from_pem(value: &str) -> Result<Material, Problem> {
    let mut notes = Vec::new();
    for label in pem::skipped_labels(value.as_bytes()) {
        if label.contains("PRIVATE KEY") {
            return Err(Problem::mismatch(
                "value",
                format!(
                    "the PEM holds a {label:?} block, which this provider cannot read (an \
                     encrypted key needs a password Key Vault does not have)"
                ),
            ));
        }
        notes.push(format!("a {label:?} block of the PEM is not written"));
    }

    let blocks =
        pem::parse(value.as_bytes()).map_err(|e| Problem::mismatch("value", e.to_string()))?;
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    for block in blocks {
        let key = match block.label {
            pem::Label::Certificate => {
                certificates.push(block.der.expose().to_vec());
                continue;
            }
            pem::Label::PrivateKey => keys::from_pkcs8(block.der.expose()),
            pem::Label::RsaPrivateKey => keys::from_pkcs1(block.der.expose()),
            pem::Label::EcPrivateKey => keys::from_sec1(block.der.expose()),
            pem::Label::PublicKey | pem::Label::Other => {
                notes.push(format!(
                    "a {} block of the PEM is not written",
                    block.label.as_str()
                ));
                continue;
            }
        };
        keys.push(key.map_err(|e| Problem::mismatch("value", e.to_string()))?);
    }
    material(keys, certificates, notes)
}

fn material(
    keys: Vec<SecretBytes>,
    certificates: Vec<Vec<u8>>,
    notes: Vec<String>,
) -> Result<Material, Problem> {
    if keys.is_empty() && certificates.is_empty() {
        return Err(Problem::mismatch(
            "value",
            "the certificate's secret holds no certificate and no private key",
        ));
    }
    Ok(Material {
        keys,
        certificates,
        notes,
    })
}

const CERTIFICATE: &str = "CERTIFICATE";
const PRIVATE_KEY: &str = "PRIVATE KEY";

/// The DER of each key, for the PEM and PKCS#12 writers.
fn key_ders(keys: &[SecretBytes]) -> Vec<&[u8]> {
    keys.iter().map(SecretBytes::expose).collect()
}

fn certificate_ders(certificates: &[Vec<u8>]) -> Vec<&[u8]> {
    certificates.iter().map(Vec::as_slice).collect()
}

fn blocks_len(label: &str, ders: &[&[u8]]) -> usize {
    ders.iter()
        .map(|der| pem::encoded_len(label, der.len()))
        .sum()
}

fn append_blocks(out: &mut Vec<u8>, label: &str, ders: &[&[u8]]) {
    for der in ders {
        pem::append(out, label, der);
    }
}

/// PEM blocks in a buffer sized up front, so no copy of a key is left behind by growth.
fn pem_text(label: &str, ders: &[&[u8]]) -> SecretBytes {
    let mut text = Vec::with_capacity(blocks_len(label, ders));
    append_blocks(&mut text, label, ders);
    SecretBytes::new(text)
}

/// Standard base64 with padding; line breaks are skipped, as Go's decoder skips them.
fn standard_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(&*compact)
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests;
