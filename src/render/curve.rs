//! The elliptic curves whose keys the provider writes: NIST P-256, P-384 and P-521.
//!
//! Key Vault's EC keys and certificates use these three (and P-256K, which neither Go's
//! standard library nor this provider writes). Both the public keys of `key` objects and the
//! private keys of certificates need a curve's object identifier, its size, and point
//! arithmetic to check or derive a public point; that is gathered here.

use der::asn1::ObjectIdentifier;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;

/// `id-ecPublicKey` (RFC 5480): the algorithm of every EC key.
pub const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// A NIST prime curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// secp256r1.
    P256,
    /// secp384r1.
    P384,
    /// secp521r1.
    P521,
}

impl Curve {
    /// The curve named by a JSON Web Key's `crv`.
    pub fn from_jwk_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    /// The curve with this `namedCurve` object identifier.
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::P256, Self::P384, Self::P521]
            .into_iter()
            .find(|curve| curve.oid() == *oid)
    }

    /// The `namedCurve` object identifier (RFC 5480).
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7"),
            Self::P384 => ObjectIdentifier::new_unwrap("1.3.132.0.34"),
            Self::P521 => ObjectIdentifier::new_unwrap("1.3.132.0.35"),
        }
    }

    /// Bytes of a coordinate or of a private scalar.
    pub fn size(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// Whether `point` (SEC1 uncompressed: 0x04, x, y) lies on the curve and is not the
    /// identity.
    pub fn is_valid_point(self, point: &[u8]) -> bool {
        match self {
            Self::P256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
            Self::P384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
            Self::P521 => p521::PublicKey::from_sec1_bytes(point).is_ok(),
        }
    }

    /// The uncompressed public point of the private scalar `secret` (exactly
    /// [`size`](Self::size) bytes), or `None` when it is zero or not below the curve order.
    pub fn public_point(self, secret: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::P256 => p256::SecretKey::from_slice(secret)
                .ok()
                .map(|k| k.public_key().to_encoded_point(false).as_bytes().to_vec()),
            Self::P384 => p384::SecretKey::from_slice(secret)
                .ok()
                .map(|k| k.public_key().to_encoded_point(false).as_bytes().to_vec()),
            Self::P521 => p521::SecretKey::from_slice(secret)
                .ok()
                .map(|k| k.public_key().to_encoded_point(false).as_bytes().to_vec()),
        }
    }
}

/// `bytes` as a big-endian number of exactly `size` bytes: leading zeros are dropped or added,
/// as Go's `big.Int` would read it. `None` when the number does not fit.
pub fn fixed_width(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let digits = &bytes[skip..];
    if digits.len() > size {
        return None;
    }
    let mut out = vec![0; size - digits.len()];
    out.extend_from_slice(digits);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_pads_and_trims_leading_zeros() {
        assert_eq!(fixed_width(&[1, 2], 4), Some(vec![0, 0, 1, 2]));
        assert_eq!(fixed_width(&[0, 0, 0, 1, 2], 4), Some(vec![0, 0, 1, 2]));
        assert_eq!(fixed_width(&[1, 2, 3], 2), None);
    }

    #[test]
    fn rejects_a_point_off_the_curve() {
        let generator_x =
            hex::decode("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
                .unwrap();
        let mut point = vec![4];
        point.extend_from_slice(&generator_x);
        point.extend_from_slice(&[0x11; 32]);

        assert!(!Curve::P256.is_valid_point(&point));
        assert!(Curve::P256.public_point(&[0; 32]).is_none());
    }
}
