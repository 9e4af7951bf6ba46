//! `key` objects: the public half of a Key Vault key, written as a PEM `PUBLIC KEY`.
//!
//! Key Vault returns a key as a JSON Web Key holding public members only. RSA and RSA-HSM keys
//! become a SubjectPublicKeyInfo with `rsaEncryption` and NULL parameters; EC and EC-HSM keys
//! on P-256, P-384 and P-521 one with `id-ecPublicKey`, the named curve and the uncompressed
//! point, checked to lie on the curve. This is the DER Go's `x509.MarshalPKIXPublicKey`
//! writes, so files match the Go provider's.
//!
//! Like Go's `big.Int`, numbers are read without regard to leading zero bytes: a coordinate
//! one byte short is padded, and `n` or `e` with a zero in front is trimmed.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use der::Encode as _;
use der::asn1::{AnyRef, BitStringRef, UintRef};
use serde::Deserialize;
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};

use super::curve::{self, Curve};
use super::{RenderError, keys, pem};
use crate::keyvault::KeyBundle;
use crate::request::ObjectSpec;
use crate::secret::SecretBytes;

/// Base64url as JSON Web Keys use it; padding is tolerated although Key Vault sends none.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Smallest and largest RSA moduli accepted, in bits. Key Vault makes 2048 to 4096.
const RSA_BITS: std::ops::RangeInclusive<usize> = 512..=16384;

/// The public members of a Key Vault JSON Web Key. Other members (`kid`, `key_ops`, ...) are
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct JsonWebKey {
    /// Key type: `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`.
    pub kty: String,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve: `P-256`, `P-384`, `P-521`, `P-256K`.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
}

/// Why a JSON Web Key has no public key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The JSON is not a JSON Web Key.
    #[error("not a JSON Web Key: {0}")]
    NotJwk(String),
    /// A symmetric key: Key Vault never returns its material.
    #[error(
        "{kty} keys are symmetric: Key Vault never returns their material, so there is no \
         public key to write"
    )]
    Symmetric {
        /// `oct` or `oct-HSM`.
        kty: String,
    },
    /// A key type this provider does not write.
    #[error("key type {0:?} is not supported (RSA, RSA-HSM, EC and EC-HSM are)")]
    UnsupportedType(String),
    /// secp256k1.
    #[error(
        "P-256K (secp256k1) keys are not supported: like the Go provider, this provider writes \
         EC public keys on P-256, P-384 and P-521 only"
    )]
    Secp256k1,
    /// A curve Key Vault does not have.
    #[error("curve {0:?} is not supported (P-256, P-384 and P-521 are)")]
    UnsupportedCurve(String),
    /// A member the key type needs is missing.
    #[error("member {0:?} is missing")]
    Missing(&'static str),
    /// A member is not base64url.
    #[error("member {0:?} is not base64url")]
    NotBase64url(&'static str),
    /// A member has a value no valid key has.
    #[error("member {member:?} is out of range: {why}")]
    OutOfRange {
        /// The member.
        member: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The EC point is not on its curve.
    #[error("the point (x, y) is not on curve {0}")]
    NotOnCurve(&'static str),
}

impl JsonWebKey {
    /// Reads the `key` member of a KeyBundle.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, JwkError> {
        Self::deserialize(value).map_err(|e| JwkError::NotJwk(e.to_string()))
    }

    /// The SubjectPublicKeyInfo DER of the key.
    pub fn public_key_der(&self) -> Result<Vec<u8>, JwkError> {
        match self.kty.as_str() {
            "RSA" | "RSA-HSM" => self.rsa(),
            "EC" | "EC-HSM" => self.ec(),
            "oct" | "oct-HSM" => Err(JwkError::Symmetric {
                kty: self.kty.clone(),
            }),
            other => Err(JwkError::UnsupportedType(other.to_owned())),
        }
    }

    /// The key as one PEM `PUBLIC KEY` block.
    pub fn public_key_pem(&self) -> Result<String, JwkError> {
        Ok(pem::encode("PUBLIC KEY", &self.public_key_der()?))
    }

    fn rsa(&self) -> Result<Vec<u8>, JwkError> {
        let n = member("n", &self.n)?;
        let e = member("e", &self.e)?;
        let n = strip_zeros(&n);
        let e = strip_zeros(&e);

        // After stripping, the first byte (if any) is not zero.
        let bits = n
            .first()
            .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
        if !RSA_BITS.contains(&bits) {
            return Err(JwkError::OutOfRange {
                member: "n",
                why: "an RSA modulus has 512 to 16384 bits",
            });
        }
        if n.last().is_some_and(|b| b % 2 == 0) {
            return Err(JwkError::OutOfRange {
                member: "n",
                why: "an RSA modulus is odd",
            });
        }
        // Go keeps the exponent in an int; Key Vault uses 65537.
        if e.len() > 4 || e.last().is_none_or(|b| b % 2 == 0) || e == [1] {
            return Err(JwkError::OutOfRange {
                member: "e",
                why: "an RSA exponent is odd, above 1, and fits in 32 bits",
            });
        }

        let invalid = |_| JwkError::OutOfRange {
            member: "n",
            why: "not encodable",
        };
        let public = pkcs1::RsaPublicKey {
            modulus: UintRef::new(n).map_err(invalid)?,
            public_exponent: UintRef::new(e).map_err(invalid)?,
        };
        let bits = public.to_der().map_err(invalid)?;
        let algorithm = AlgorithmIdentifierRef {
            oid: keys::RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        };
        spki_der(algorithm, &bits)
    }

    fn ec(&self) -> Result<Vec<u8>, JwkError> {
        let name = self.crv.as_deref().ok_or(JwkError::Missing("crv"))?;
        let curve = match Curve::from_jwk_name(name) {
            Some(curve) => curve,
            None if name == "P-256K" || name == "SECP256K1" => return Err(JwkError::Secp256k1),
            None => return Err(JwkError::UnsupportedCurve(name.to_owned())),
        };

        let mut point = vec![4];
        for (name, value) in [("x", &self.x), ("y", &self.y)] {
            let coordinate = curve::fixed_width(&member(name, value)?, curve.size()).ok_or(
                JwkError::OutOfRange {
                    member: name,
                    why: "longer than the curve's coordinates",
                },
            )?;
            point.extend_from_slice(&coordinate);
        }
        if !curve.is_valid_point(&point) {
            return Err(JwkError::NotOnCurve(jwk_name(curve)));
        }

        let curve_oid = curve.oid();
        let algorithm = AlgorithmIdentifierRef {
            oid: curve::EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&curve_oid)),
        };
        spki_der(algorithm, &point)
    }
}

/// The PEM file of a `key` object.
pub fn render(spec: &ObjectSpec, bundle: &KeyBundle) -> Result<SecretBytes, RenderError> {
    let pem = JsonWebKey::from_value(&bundle.key).and_then(|jwk| jwk.public_key_pem());
    // Every refusal is a Mismatch: its reason says why, which `Unsupported` would not carry.
    pem.map(|text| SecretBytes::new(text.into_bytes()))
        .map_err(|problem| RenderError::Mismatch {
            index: spec.index,
            name: spec.name.clone(),
            field: "key",
            reason: format!("{problem} (version {})", bundle.version()),
        })
}

fn jwk_name(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "P-256",
        Curve::P384 => "P-384",
        Curve::P521 => "P-521",
    }
}

fn member(name: &'static str, value: &Option<String>) -> Result<Vec<u8>, JwkError> {
    let text = value.as_deref().ok_or(JwkError::Missing(name))?;
    BASE64URL
        .decode(text)
        .map_err(|_| JwkError::NotBase64url(name))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    &bytes[skip..]
}

fn spki_der(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Vec<u8>, JwkError> {
    let invalid = |_| JwkError::OutOfRange {
        member: "key",
        why: "not encodable",
    };
    let info = SubjectPublicKeyInfoRef {
        algorithm,
        subject_public_key: BitStringRef::from_bytes(key).map_err(invalid)?,
    };
    info.to_der().map_err(invalid)
}

#[cfg(test)]
mod tests;
