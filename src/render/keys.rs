//! Private keys of certificates, rewritten in the one form the provider writes: PKCS#8.
//!
//! A key may arrive as PKCS#8 from a PFX (sometimes with attributes, such as the key-usage one
//! Windows adds), as PKCS#8, PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) in a PEM
//! secret. Go's provider parses every key and writes it again with `MarshalPKCS8PrivateKey`;
//! `openssl pkey` writes the same bytes. We produce that form too, so that files match the
//! Go provider's byte for byte:
//!
//! - RSA: version 0, `rsaEncryption` with NULL parameters, the PKCS#1 key; no attributes.
//! - EC on P-256, P-384, P-521: version 0, `id-ecPublicKey` with the named curve; inside, the
//!   SEC1 key with the private scalar padded to the curve size, no parameters, and the public
//!   point computed from the scalar.
//!
//! Any other algorithm (Ed25519, secp256k1, ...) is kept exactly as stored: it cannot be
//! normalised, and refusing it would break a certificate that works as it is.

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _};
use pkcs8::PrivateKeyInfo;
use sec1::{EcParameters, EcPrivateKey};
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::curve::{self, Curve};
use crate::secret::SecretBytes;

/// `rsaEncryption` (RFC 8017).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a private key cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not the structure their label or bag says.
    #[error("a private key is not valid {0}")]
    Malformed(&'static str),
    /// An EC key whose curve is named nowhere, so it cannot be written as PKCS#8.
    #[error("an EC private key names no curve")]
    NoCurve,
    /// An EC key on a curve this provider cannot convert from SEC1.
    #[error("an EC private key is on a curve this provider does not support ({0})")]
    UnsupportedCurve(String),
    /// The private scalar is zero, too large, or not below the curve order.
    #[error("an EC private key's scalar is out of range for its curve")]
    BadScalar,
}

/// A PKCS#8 key in the canonical form described above.
pub fn from_pkcs8(der: &[u8]) -> Result<SecretBytes, KeyError> {
    let info = PrivateKeyInfo::from_der(der).map_err(|_| KeyError::Malformed("PKCS#8"))?;
    match info.algorithm.oid {
        RSA_ENCRYPTION => rsa(info.private_key),
        curve::EC_PUBLIC_KEY => {
            let named = match info.algorithm.parameters {
                Some(any) => Some(
                    any.decode_as::<ObjectIdentifier>()
                        .map_err(|_| KeyError::Malformed("PKCS#8 EC parameters"))?,
                ),
                None => None,
            };
            match named.map(|oid| (oid, Curve::from_oid(&oid))) {
                Some((_, Some(curve))) => ec(info.private_key, Some(curve)),
                None => ec(info.private_key, None),
                // An EC curve we have no arithmetic for: keep the key as stored.
                Some((_, None)) => Ok(SecretBytes::new(der.to_vec())),
            }
        }
        _ => Ok(SecretBytes::new(der.to_vec())),
    }
}

/// A PKCS#1 `RSA PRIVATE KEY`, as PKCS#8.
pub fn from_pkcs1(der: &[u8]) -> Result<SecretBytes, KeyError> {
    rsa(der)
}

/// A SEC1 `EC PRIVATE KEY`, as PKCS#8. Its curve must be named in its parameters.
pub fn from_sec1(der: &[u8]) -> Result<SecretBytes, KeyError> {
    ec(der, None)
}

/// The public key of a canonical PKCS#8 key, as the `subjectPublicKey` bits of a certificate
/// for it hold it. `None` for algorithms that are kept as stored.
pub fn public_key(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let info = PrivateKeyInfo::from_der(pkcs8).ok()?;
    match info.algorithm.oid {
        RSA_ENCRYPTION => {
            let key = pkcs1::RsaPrivateKey::from_der(info.private_key).ok()?;
            let public = pkcs1::RsaPublicKey {
                modulus: key.modulus,
                public_exponent: key.public_exponent,
            };
            public.to_der().ok()
        }
        curve::EC_PUBLIC_KEY => {
            let key = EcPrivateKey::from_der(info.private_key).ok()?;
            key.public_key.map(<[u8]>::to_vec)
        }
        _ => None,
    }
}

fn rsa(pkcs1_der: &[u8]) -> Result<SecretBytes, KeyError> {
    // Decoding checks the structure; DER has one encoding, so the bytes are kept as they are.
    pkcs1::RsaPrivateKey::from_der(pkcs1_der).map_err(|_| KeyError::Malformed("PKCS#1"))?;
    let algorithm = AlgorithmIdentifierRef {
        oid: RSA_ENCRYPTION,
        parameters: Some(AnyRef::NULL),
    };
    wrap(algorithm, pkcs1_der)
}

/// Rewrites a SEC1 key; `outer` is the curve the PKCS#8 wrapper names, if any.
fn ec(sec1_der: &[u8], outer: Option<Curve>) -> Result<SecretBytes, KeyError> {
    let key = EcPrivateKey::from_der(sec1_der).map_err(|_| KeyError::Malformed("SEC1"))?;
    let inner = key.parameters.map(|EcParameters::NamedCurve(oid)| oid);
    let curve = match (outer, inner) {
        (Some(curve), _) => curve,
        (None, Some(oid)) => {
            Curve::from_oid(&oid).ok_or_else(|| KeyError::UnsupportedCurve(oid.to_string()))?
        }
        (None, None) => return Err(KeyError::NoCurve),
    };

    let scalar = Zeroizing::new(
        curve::fixed_width(key.private_key, curve.size()).ok_or(KeyError::BadScalar)?,
    );
    // Like Go, derive the public point from the scalar rather than trust a stored one.
    let point = curve.public_point(&scalar).ok_or(KeyError::BadScalar)?;
    let canonical = EcPrivateKey {
        private_key: &scalar,
        parameters: None,
        public_key: Some(&point),
    };
    let inner_der = Zeroizing::new(
        canonical
            .to_der()
            .map_err(|_| KeyError::Malformed("SEC1"))?,
    );

    let curve_oid = curve.oid();
    let algorithm = AlgorithmIdentifierRef {
        oid: curve::EC_PUBLIC_KEY,
        parameters: Some(AnyRef::from(&curve_oid)),
    };
    wrap(algorithm, &inner_der)
}

fn wrap(
    algorithm: AlgorithmIdentifierRef<'_>,
    private_key: &[u8],
) -> Result<SecretBytes, KeyError> {
    let info = PrivateKeyInfo {
        algorithm,
        private_key,
        public_key: None,
    };
    let mut der = Vec::new();
    info.encode_to_vec(&mut der)
        .map_err(|_| KeyError::Malformed("PKCS#8"))?;
    Ok(SecretBytes::new(der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::fixture;
    use crate::render::pem;

    fn one_block(name: &str) -> SecretBytes {
        let blocks = pem::parse(&fixture(name)).unwrap();
        assert_eq!(blocks.len(), 1, "{name}");
        blocks[0].der.clone()
    }

    #[test]
    fn pkcs8_from_openssl_is_already_canonical() {
        for name in ["rsa2048", "rsa4096", "ec256", "ec384", "ec521"] {
            let der = one_block(&format!("{name}.key.pem"));
            assert_eq!(from_pkcs8(der.expose()).unwrap(), der, "{name}");
        }
    }

    #[test]
    fn traditional_keys_become_the_pkcs8_openssl_writes() {
        let rsa = one_block("rsa3072.trad.pem");
        assert_eq!(
            from_pkcs1(rsa.expose()).unwrap(),
            one_block("rsa3072.key.pem")
        );
        for name in ["ec256", "ec384", "ec521"] {
            let sec1 = one_block(&format!("{name}.trad.pem"));
            assert_eq!(
                from_sec1(sec1.expose()).unwrap(),
                one_block(&format!("{name}.key.pem")),
                "{name}"
            );
        }
    }

    #[test]
    fn ec_public_point_is_recomputed_and_parameters_dropped() {
        // A SEC1 key with its curve but without its public point, as `openssl ec -no_public`
        // writes it: the output must equal the full key's PKCS#8.
        let full = one_block("ec384.trad.pem");
        let key = EcPrivateKey::from_der(full.expose()).unwrap();
        let stripped = EcPrivateKey {
            public_key: None,
            ..key
        }
        .to_der()
        .unwrap();

        assert_eq!(from_sec1(&stripped).unwrap(), one_block("ec384.key.pem"));
    }

    #[test]
    fn public_key_matches_the_certificate() {
        use x509_cert::Certificate;
        for name in ["rsa2048", "ec521"] {
            let key = one_block(&format!("{name}.key.pem"));
            let cert = one_block(&format!("{name}.self.pem"));
            let cert = Certificate::from_der(cert.expose()).unwrap();
            let bits = cert
                .tbs_certificate
                .subject_public_key_info
                .subject_public_key;

            assert_eq!(
                public_key(key.expose()).as_deref(),
                bits.as_bytes(),
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(from_pkcs8(b"nope"), Err(KeyError::Malformed("PKCS#8")));
        assert_eq!(from_pkcs1(&[0x30, 0]), Err(KeyError::Malformed("PKCS#1")));
        assert_eq!(from_sec1(&[0x30, 0]), Err(KeyError::Malformed("SEC1")));
    }
}
