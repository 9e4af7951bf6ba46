//! The PKCS#12 writer: a password-less PFX from PKCS#8 keys and certificates, for
//! `objectFormat: pfx` on a certificate Key Vault holds as PEM.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _, Tag, TagNumber};
use hmac::{Mac as _, SimpleHmac};
use sha2::{Digest as _, Sha256};
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::{
    Attribute, CertBag, ContentInfo, DigestInfo, EMPTY_PASSWORDS, EncryptedContentInfo,
    EncryptedData, EncryptedPrivateKeyInfo, MacData, Pfx, Pkcs12Error, SafeBag, mac_key, oid,
};
use crate::render::keys;
use crate::secret::SecretBytes;

/// Iterations and salt size of the archives [`encode`] writes: OpenSSL 3's defaults.
const ITERATIONS: u32 = 2048;
const SALT_LEN: usize = 8;

/// Builds a PFX with the empty password from PKCS#8 keys and DER certificates, in the layout
/// OpenSSL 3 writes by default: the certificates in one PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)
/// encrypted safe, the keys as PBES2 shrouded key bags in a plain one, and an HMAC-SHA256 MAC;
/// 2,048 iterations throughout.
///
/// A key and the certificate holding its public key share a `localKeyId` (the certificate's
/// SHA-1 thumbprint), which is how Windows and .NET pair them. Salts and IVs are derived from
/// the contents rather than drawn at random, so the same key and certificates always give the
/// same bytes: with an empty password they protect nothing, and stable files can be compared.
pub fn encode(keys: &[&[u8]], certificates: &[&[u8]]) -> Result<SecretBytes, Pkcs12Error> {
    let seed = Seed::new(keys, certificates);
    let (key_ids, cert_ids) = local_key_ids(keys, certificates);
    let mut safes = Vec::new();

    if !certificates.is_empty() {
        let mut bags = Vec::new();
        for (cert, id) in certificates.iter().zip(&cert_ids) {
            let value = CertBag {
                cert_id: oid::X509_CERTIFICATE,
                cert_value: OctetStringRef::new(cert)?,
            }
            .to_der()?;
            bags.push(bag_der(oid::CERT_BAG, &value, id.as_deref())?);
        }
        let plain = sequence_of(&bags)?;
        let (algorithm, sealed) = seal(&seed, 0, &plain)?;
        let content = EncryptedContentInfo {
            content_type: oid::DATA,
            algorithm: AlgorithmIdentifierRef::from_der(&algorithm)?,
            content: Some(AnyRef::new(
                Tag::ContextSpecific {
                    constructed: false,
                    number: TagNumber::N0,
                },
                &sealed,
            )?),
        };
        let data = EncryptedData {
            version: 0,
            info: content,
        }
        .to_der()?;
        safes.push(content_info_der(oid::ENCRYPTED_DATA, &data)?);
    }

    if !keys.is_empty() {
        let mut bags = Vec::new();
        for (n, (key, id)) in keys.iter().zip(&key_ids).enumerate() {
            let (algorithm, sealed) = seal(&seed, n + 1, key)?;
            let value = EncryptedPrivateKeyInfo {
                algorithm: AlgorithmIdentifierRef::from_der(&algorithm)?,
                data: OctetStringRef::new(&sealed)?,
            }
            .to_der()?;
            bags.push(bag_der(oid::SHROUDED_KEY_BAG, &value, id.as_deref())?);
        }
        let contents = sequence_of(&bags)?;
        let octets = OctetStringRef::new(&contents)?.to_der()?;
        safes.push(content_info_der(oid::DATA, &octets)?);
    }

    let auth_safe = Zeroizing::new(sequence_of(&safes)?);
    let salt = seed.derive(b"mac salt", 0);
    let salt = &salt[..SALT_LEN];
    let key = mac_key::<Sha256>(EMPTY_PASSWORDS[0], salt, ITERATIONS as i32);
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| Pkcs12Error::Encode(e.to_string()))?;
    mac.update(&auth_safe);
    let digest = mac.finalize().into_bytes();

    let sha256 = AlgorithmIdentifierRef {
        oid: oid::SHA256,
        parameters: Some(AnyRef::NULL),
    };
    let pfx = Pfx {
        version: 3,
        auth_safe: ContentInfo {
            content_type: oid::DATA,
            content: Some(OctetStringRef::new(&auth_safe)?.into()),
        },
        mac_data: Some(MacData {
            mac: DigestInfo {
                algorithm: sha256,
                digest: OctetStringRef::new(&digest)?,
            },
            mac_salt: OctetStringRef::new(salt)?,
            iterations: ITERATIONS,
        }),
    };
    Ok(SecretBytes::new(pfx.to_der()?))
}

/// Salts and IVs derived from the archive's contents.
struct Seed([u8; 32]);

impl Seed {
    fn new(keys: &[&[u8]], certificates: &[&[u8]]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"akv-csi-provider pkcs12 v1");
        for part in keys.iter().chain(certificates) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Self(hash.finalize().into())
    }

    fn derive(&self, purpose: &[u8], n: usize) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(purpose);
        hash.update((n as u64).to_be_bytes());
        hash.finalize().into()
    }
}

/// PBES2-encrypts `plain`; returns the AlgorithmIdentifier's DER and the ciphertext.
fn seal(seed: &Seed, n: usize, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Pkcs12Error> {
    let encode_error = |e: pkcs5::Error| Pkcs12Error::Encode(e.to_string());
    let salt = seed.derive(b"salt", n);
    let iv_bytes = seed.derive(b"iv", n);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&iv_bytes[..16]);

    let params =
        pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(ITERATIONS, &salt[..SALT_LEN], &iv)
            .map_err(encode_error)?;
    let scheme = pkcs5::EncryptionScheme::from(params);
    let sealed = scheme.encrypt(b"", plain).map_err(encode_error)?;
    Ok((scheme.to_der()?, sealed))
}

/// One optional `localKeyId` per key or per certificate.
type LocalKeyIds = Vec<Option<Vec<u8>>>;

/// The `localKeyId` of each key and of each certificate: a key and the certificate of its
/// public key share the certificate's SHA-1 thumbprint.
pub(super) fn local_key_ids(keys: &[&[u8]], certificates: &[&[u8]]) -> (LocalKeyIds, LocalKeyIds) {
    let public_keys: Vec<Option<Vec<u8>>> = certificates
        .iter()
        .map(|der| {
            let cert = x509_cert::Certificate::from_der(der).ok()?;
            let spki = cert.tbs_certificate.subject_public_key_info;
            spki.subject_public_key.as_bytes().map(<[u8]>::to_vec)
        })
        .collect();

    let mut cert_ids = vec![None; certificates.len()];
    let key_ids = keys
        .iter()
        .map(|key| {
            let public = keys::public_key(key)?;
            let index = public_keys
                .iter()
                .position(|p| p.as_deref() == Some(public.as_slice()))?;
            let id = sha1::Sha1::digest(certificates[index]).to_vec();
            cert_ids[index] = Some(id.clone());
            Some(id)
        })
        .collect();
    (key_ids, cert_ids)
}

/// A SafeBag's DER, with a `localKeyId` attribute when `id` is given.
fn bag_der(
    bag_id: ObjectIdentifier,
    value: &[u8],
    id: Option<&[u8]>,
) -> Result<Vec<u8>, Pkcs12Error> {
    // Sets of one element need no sorting, so they are written as plain tagged bytes.
    let attributes = match id {
        Some(id) => {
            let values = OctetStringRef::new(id)?.to_der()?;
            let attribute = Attribute {
                attr_type: oid::LOCAL_KEY_ID,
                values: AnyRef::new(Tag::Set, &values)?,
            }
            .to_der()?;
            Some(AnyRef::new(Tag::Set, &attribute)?.to_der()?)
        }
        None => None,
    };
    SafeBag {
        bag_id,
        bag_value: AnyRef::from_der(value)?,
        bag_attributes: attributes.as_deref().map(AnyRef::from_der).transpose()?,
    }
    .to_der()
    .map_err(Into::into)
}

/// The DER of a SEQUENCE OF already-encoded elements.
fn sequence_of(elements: &[Vec<u8>]) -> Result<Vec<u8>, Pkcs12Error> {
    let body: Vec<u8> = elements.iter().flatten().copied().collect();
    Ok(AnyRef::new(Tag::Sequence, &body)?.to_der()?)
}

fn content_info_der(
    content_type: ObjectIdentifier,
    content: &[u8],
) -> Result<Vec<u8>, Pkcs12Error> {
    ContentInfo {
        content_type,
        content: Some(AnyRef::from_der(content)?),
    }
    .to_der()
    .map_err(Into::into)
}
