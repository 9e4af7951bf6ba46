//! PKCS#12 (PFX) archives with the empty password, read and written.
//!
//! Key Vault stores a certificate with its key as a password-less PFX. [`decode`] reads every
//! private key and certificate out of one, whatever wrote it: OpenSSL 3's default (PBES2 with
//! AES-256-CBC, SHA-256 MAC), the legacy schemes (3DES and RC2 keyed by the PKCS#12 KDF, SHA-1
//! MAC) that Key Vault, Windows and OpenSSL 1.x use, and unencrypted archives; BER from
//! Windows and Java included. Keys come out as stored (PKCS#8) and in bag order, with or
//! without a `localKeyId`; certificates in bag order.
//!
//! [`encode`] builds the archive `objectFormat: pfx` asks for when Key Vault holds PEM: the
//! layout OpenSSL 3 writes by default, which OpenSSL, Java, .NET and Windows all read.
//!
//! "The empty password" is two things in PKCS#12: the PKCS#12 KDF encodes a password as a
//! BMPString with a two-byte terminator, so "" becomes `00 00`, but some writers pass no bytes
//! at all. The MAC tells which one an archive used; without a MAC both are tried. PBES2 takes
//! the password as plain bytes, so "" is always empty there.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Encode as _, Sequence, Tag, TagNumber, Tagged as _};
use hmac::{Mac as _, SimpleHmac};
use sha2::digest::core_api::BlockSizeUser;
use sha2::digest::{Digest, FixedOutputReset, OutputSizeUser};
use sha2::{Sha256, Sha384, Sha512};
use spki::AlgorithmIdentifierRef;
use zeroize::Zeroizing;

use super::ber;
use crate::secret::SecretBytes;

/// Iteration counts above this are refused: they only make a hostile archive slow to read.
/// Real ones use 1 to 10,000 (OpenSSL and Windows 2,048, Java 10,000).
const MAX_ITERATIONS: u32 = 1_000_000;

/// The two spellings of the empty password for the PKCS#12 KDF, most common first.
const EMPTY_PASSWORDS: [&[u8]; 2] = [&[0, 0], &[]];

/// Nested safe-contents bags deeper than this are refused.
const MAX_NESTING: usize = 4;

mod encode;

pub use encode::encode;

mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub const ENCRYPTED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.6");
    pub const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");

    pub const KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.1");
    pub const SHROUDED_KEY_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.2");
    pub const CERT_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.3");
    pub const SAFE_CONTENTS_BAG: Oid = Oid::new_unwrap("1.2.840.113549.1.12.10.1.6");
    pub const X509_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.22.1");
    pub const LOCAL_KEY_ID: Oid = Oid::new_unwrap("1.2.840.113549.1.9.21");

    pub const PBE_SHA1_RC4_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.1");
    pub const PBE_SHA1_RC4_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.2");
    pub const PBE_SHA1_3DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.3");
    pub const PBE_SHA1_2DES: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.4");
    pub const PBE_SHA1_RC2_128: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.5");
    pub const PBE_SHA1_RC2_40: Oid = Oid::new_unwrap("1.2.840.113549.1.12.1.6");
    pub const PBES2: Oid = Oid::new_unwrap("1.2.840.113549.1.5.13");

    pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub const PBMAC1: Oid = Oid::new_unwrap("1.2.840.113549.1.5.14");
}

/// What a PFX holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    /// Private keys, PKCS#8 DER as stored, in bag order.
    pub keys: Vec<SecretBytes>,
    /// Certificates, DER, in bag order.
    pub certificates: Vec<Vec<u8>>,
}

/// Why a PFX cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    /// The bytes are not a PKCS#12 archive.
    #[error("not a PKCS#12 archive: {0}")]
    Malformed(String),
    /// The MAC does not verify with either form of the empty password.
    #[error("the PKCS#12 archive is protected by a password: its MAC fails with the empty one")]
    Password,
    /// A part could not be decrypted with the empty password.
    #[error("cannot decrypt the PKCS#12 archive's {0} with the empty password")]
    Decrypt(&'static str),
    /// An algorithm or structure this provider does not implement.
    #[error("the PKCS#12 archive uses {0}, which is not supported")]
    Unsupported(String),
    /// Building an archive failed.
    #[error("cannot build a PKCS#12 archive: {0}")]
    Encode(String),
}

impl From<der::Error> for Pkcs12Error {
    fn from(error: der::Error) -> Self {
        Self::Malformed(error.to_string())
    }
}

impl From<ber::BerError> for Pkcs12Error {
    fn from(error: ber::BerError) -> Self {
        Self::Malformed(error.to_string())
    }
}

// --- ASN.1 (RFC 7292, RFC 5652) -----------------------------------------------------------

#[derive(Sequence)]
struct Pfx<'a> {
    version: u8,
    auth_safe: ContentInfo<'a>,
    mac_data: Option<MacData<'a>>,
}

#[derive(Sequence)]
struct ContentInfo<'a> {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    content: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct MacData<'a> {
    mac: DigestInfo<'a>,
    mac_salt: OctetStringRef<'a>,
    #[asn1(default = "one")]
    iterations: u32,
}

fn one() -> u32 {
    1
}

#[derive(Sequence)]
struct DigestInfo<'a> {
    algorithm: AlgorithmIdentifierRef<'a>,
    digest: OctetStringRef<'a>,
}

#[derive(Sequence)]
struct SafeBag<'a> {
    bag_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    bag_value: AnyRef<'a>,
    bag_attributes: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct CertBag<'a> {
    cert_id: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    cert_value: OctetStringRef<'a>,
}

#[derive(Sequence)]
struct Attribute<'a> {
    attr_type: ObjectIdentifier,
    values: AnyRef<'a>,
}

#[derive(Sequence)]
struct EncryptedData<'a> {
    version: u8,
    info: EncryptedContentInfo<'a>,
}

#[derive(Sequence)]
struct EncryptedContentInfo<'a> {
    content_type: ObjectIdentifier,
    algorithm: AlgorithmIdentifierRef<'a>,
    /// `[0] IMPLICIT OCTET STRING`, primitive in DER but often constructed in BER: read as any
    /// element and unpacked by [`encrypted_content`].
    content: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct EncryptedPrivateKeyInfo<'a> {
    algorithm: AlgorithmIdentifierRef<'a>,
    data: OctetStringRef<'a>,
}

#[derive(Sequence)]
struct PbeParams<'a> {
    salt: OctetStringRef<'a>,
    iterations: u32,
}

// --- decoding -----------------------------------------------------------------------------

/// Reads every private key and certificate of a password-less PFX (binary DER or BER).
pub fn decode(pfx: &[u8]) -> Result<Archive, Pkcs12Error> {
    WORK_LEFT.set(WORK_BUDGET);
    let der = Zeroizing::new(ber::to_der(pfx)?);
    let pfx = Pfx::from_der(&der)?;
    if pfx.version != 3 {
        return Err(Pkcs12Error::Malformed(format!(
            "version {} (expected 3)",
            pfx.version
        )));
    }
    let auth_safe = data_content(&pfx.auth_safe)?;

    // Knowing the password's spelling from the MAC spares the decryption a guess.
    let passwords: Vec<&[u8]> = match &pfx.mac_data {
        Some(mac) => vec![verify_mac(mac, auth_safe)?],
        None => EMPTY_PASSWORDS.to_vec(),
    };

    let auth_safe = Zeroizing::new(ber::to_der(auth_safe)?);
    let safes = Vec::<ContentInfo<'_>>::from_der(&auth_safe)?;
    let mut archive = Archive::default();
    for safe in &safes {
        let contents = match safe.content_type {
            oid::DATA => Zeroizing::new(ber::to_der(data_content(safe)?)?),
            oid::ENCRYPTED_DATA => decrypt_safe(safe, &passwords)?,
            oid::ENVELOPED_DATA => {
                return Err(Pkcs12Error::Unsupported(
                    "a safe encrypted to a public key".into(),
                ));
            }
            other => {
                return Err(Pkcs12Error::Unsupported(format!(
                    "a safe of content type {other}"
                )));
            }
        };
        read_bags(&contents, &passwords, &mut archive, 0)?;
    }
    Ok(archive)
}

/// The octets of a `data` ContentInfo.
fn data_content<'a>(info: &ContentInfo<'a>) -> Result<&'a [u8], Pkcs12Error> {
    match info.content_type {
        oid::DATA => {}
        oid::SIGNED_DATA => {
            return Err(Pkcs12Error::Unsupported(
                "public-key integrity (a signed archive)".into(),
            ));
        }
        other => {
            return Err(Pkcs12Error::Malformed(format!(
                "content of type {other} where data was expected"
            )));
        }
    }
    let content = info
        .content
        .ok_or_else(|| Pkcs12Error::Malformed("a data ContentInfo has no content".into()))?;
    Ok(content.decode_as::<OctetStringRef<'a>>()?.as_bytes())
}

/// Checks the MAC and returns the spelling of the empty password it was made with.
fn verify_mac(mac: &MacData<'_>, data: &[u8]) -> Result<&'static [u8], Pkcs12Error> {
    let salt = mac.mac_salt.as_bytes();
    let iterations = checked_iterations(mac.iterations)?;
    let expected = mac.mac.digest.as_bytes();
    let matches = |password: &[u8]| match mac.mac.algorithm.oid {
        oid::SHA1 => Ok(mac_matches::<sha1::Sha1>(
            password, salt, iterations, data, expected,
        )),
        oid::SHA256 => Ok(mac_matches::<Sha256>(
            password, salt, iterations, data, expected,
        )),
        oid::SHA384 => Ok(mac_matches::<Sha384>(
            password, salt, iterations, data, expected,
        )),
        oid::SHA512 => Ok(mac_matches::<Sha512>(
            password, salt, iterations, data, expected,
        )),
        oid::PBMAC1 => Err(Pkcs12Error::Unsupported("a PBMAC1 MAC".into())),
        other => Err(Pkcs12Error::Unsupported(format!("MAC digest {other}"))),
    };
    for password in EMPTY_PASSWORDS {
        if matches(password)? {
            return Ok(password);
        }
    }
    Err(Pkcs12Error::Password)
}

/// HMAC with a key from the PKCS#12 KDF (RFC 7292 appendix B), compared in constant time.
fn mac_matches<D>(
    password: &[u8],
    salt: &[u8],
    iterations: i32,
    data: &[u8],
    expected: &[u8],
) -> bool
where
    D: Digest + FixedOutputReset + BlockSizeUser,
{
    let key = mac_key::<D>(password, salt, iterations);
    let Ok(mut mac) = SimpleHmac::<D>::new_from_slice(&key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}

fn mac_key<D>(password: &[u8], salt: &[u8], iterations: i32) -> Zeroizing<Vec<u8>>
where
    D: Digest + FixedOutputReset + BlockSizeUser,
{
    let len = <D as OutputSizeUser>::output_size();
    Zeroizing::new(pkcs12::kdf::derive_key::<D>(
        password,
        salt,
        pkcs12::kdf::Pkcs12KeyType::Mac,
        iterations,
        len,
    ))
}

fn checked_iterations(iterations: u32) -> Result<i32, Pkcs12Error> {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(Pkcs12Error::Unsupported(format!(
            "an iteration count of {iterations}"
        )));
    }
    // Each archive gets a total budget too: many bags each at the largest count would
    // otherwise add up to minutes of CPU.
    let left = WORK_LEFT.get();
    if u64::from(iterations) > left {
        return Err(Pkcs12Error::Unsupported(format!(
            "more than {WORK_BUDGET} key-derivation iterations in one archive"
        )));
    }
    WORK_LEFT.set(left - u64::from(iterations));
    Ok(iterations as i32)
}

/// Key-derivation iterations one archive may cost in all: a real one needs a few thousand
/// (a MAC and a key, 2,048 each), tried with both spellings of the empty password.
const WORK_BUDGET: u64 = 2_500_000;

thread_local! {
    /// What is left of [`WORK_BUDGET`] for the archive being decoded on this thread; decoding
    /// is synchronous, so one archive never spans threads.
    static WORK_LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(WORK_BUDGET) };
}

/// Decrypts an `encryptedData` safe and returns its SafeContents as DER.
fn decrypt_safe(
    info: &ContentInfo<'_>,
    passwords: &[&[u8]],
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let content = info
        .content
        .ok_or_else(|| Pkcs12Error::Malformed("an encrypted safe has no content".into()))?;
    let data = content.decode_as::<EncryptedData<'_>>()?;
    let sealed = encrypted_content(&data.info)?;
    let plain = decrypt(&data.info.algorithm, &sealed, passwords, "certificates")?;
    Ok(Zeroizing::new(ber::to_der(&plain)?))
}

/// The ciphertext of an EncryptedContentInfo: a primitive `[0]`, or a constructed one holding
/// octet-string pieces.
fn encrypted_content(info: &EncryptedContentInfo<'_>) -> Result<Vec<u8>, Pkcs12Error> {
    let missing = || Pkcs12Error::Malformed("an encrypted safe has no ciphertext".into());
    let content = info.content.ok_or_else(missing)?;
    match content.tag() {
        Tag::ContextSpecific {
            constructed: false,
            number: TagNumber::N0,
        } => Ok(content.value().to_vec()),
        Tag::ContextSpecific {
            constructed: true,
            number: TagNumber::N0,
        } => {
            let mut reader = der::SliceReader::new(content.value())?;
            let mut joined = Vec::new();
            while !der::Reader::is_finished(&reader) {
                let piece: OctetStringRef<'_> = der::Reader::decode(&mut reader)?;
                joined.extend_from_slice(piece.as_bytes());
            }
            Ok(joined)
        }
        _ => Err(missing()),
    }
}

fn read_bags(
    contents: &[u8],
    passwords: &[&[u8]],
    archive: &mut Archive,
    depth: usize,
) -> Result<(), Pkcs12Error> {
    let bags = Vec::<SafeBag<'_>>::from_der(contents)?;
    for bag in &bags {
        match bag.bag_id {
            oid::KEY_BAG => {
                let key = bag.bag_value.to_der()?;
                archive.keys.push(SecretBytes::new(key));
            }
            oid::SHROUDED_KEY_BAG => {
                let sealed = bag.bag_value.decode_as::<EncryptedPrivateKeyInfo<'_>>()?;
                let plain = decrypt(&sealed.algorithm, sealed.data.as_bytes(), passwords, "key")?;
                archive.keys.push(SecretBytes::new(ber::to_der(&plain)?));
            }
            oid::CERT_BAG => {
                let cert = bag.bag_value.decode_as::<CertBag<'_>>()?;
                // The other certificate type, SDSI, has never been seen in a PFX.
                if cert.cert_id == oid::X509_CERTIFICATE {
                    archive
                        .certificates
                        .push(cert.cert_value.as_bytes().to_vec());
                }
            }
            oid::SAFE_CONTENTS_BAG if depth < MAX_NESTING => {
                let nested = Zeroizing::new(bag.bag_value.to_der()?);
                read_bags(&nested, passwords, archive, depth + 1)?;
            }
            oid::SAFE_CONTENTS_BAG => {
                return Err(Pkcs12Error::Malformed(
                    "safe contents nest too deeply".into(),
                ));
            }
            // CRLs and secret bags have no place in a certificate's files.
            _ => {}
        }
    }
    Ok(())
}

/// Decrypts with the empty password, trying each of its spellings for the PKCS#12 KDF.
fn decrypt(
    algorithm: &AlgorithmIdentifierRef<'_>,
    sealed: &[u8],
    passwords: &[&[u8]],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let pbe = match algorithm.oid {
        oid::PBES2 => return pbes2_decrypt(algorithm, sealed, what),
        oid::PBE_SHA1_3DES => Pbe::TripleDes,
        oid::PBE_SHA1_2DES => Pbe::TwoKeyTripleDes,
        oid::PBE_SHA1_RC2_40 => Pbe::Rc2 { bits: 40 },
        oid::PBE_SHA1_RC2_128 => Pbe::Rc2 { bits: 128 },
        oid::PBE_SHA1_RC4_40 | oid::PBE_SHA1_RC4_128 => {
            return Err(Pkcs12Error::Unsupported("RC4 encryption".into()));
        }
        other => {
            return Err(Pkcs12Error::Unsupported(format!(
                "encryption algorithm {other}"
            )));
        }
    };
    let params = algorithm
        .parameters
        .ok_or_else(|| Pkcs12Error::Malformed("PBE parameters are missing".into()))?
        .decode_as::<PbeParams<'_>>()?;
    let iterations = checked_iterations(params.iterations)?;

    passwords
        .iter()
        .find_map(|password| pbe.decrypt(password, params.salt.as_bytes(), iterations, sealed))
        .ok_or(Pkcs12Error::Decrypt(what))
}

fn pbes2_decrypt(
    algorithm: &AlgorithmIdentifierRef<'_>,
    sealed: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let scheme = pkcs5::EncryptionScheme::try_from(*algorithm)
        .map_err(|_| Pkcs12Error::Unsupported("a PBES2 variant".into()))?;
    let Some(params) = scheme.pbes2() else {
        return Err(Pkcs12Error::Unsupported("a PBES2 variant".into()));
    };
    // scrypt never appears in PFX files and its cost parameters could exhaust memory.
    match params.kdf.pbkdf2() {
        Some(kdf) => checked_iterations(kdf.iteration_count)?,
        None => return Err(Pkcs12Error::Unsupported("the scrypt key derivation".into())),
    };
    scheme
        .decrypt(b"", sealed)
        .map(Zeroizing::new)
        .map_err(|_| Pkcs12Error::Decrypt(what))
}

/// The password-based encryption schemes of PKCS#12 itself (RFC 7292 appendix C), all keyed
/// by the PKCS#12 KDF with SHA-1.
#[derive(Clone, Copy)]
enum Pbe {
    TripleDes,
    TwoKeyTripleDes,
    Rc2 { bits: usize },
}

impl Pbe {
    fn key_len(self) -> usize {
        match self {
            Self::TripleDes => 24,
            Self::TwoKeyTripleDes => 16,
            Self::Rc2 { bits } => bits / 8,
        }
    }

    /// The plaintext, or `None` when the padding shows the password was wrong.
    fn decrypt(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: i32,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        use cbc::cipher::block_padding::Pkcs7;
        use cbc::cipher::{BlockDecryptMut as _, InnerIvInit as _, KeyIvInit as _};
        use pkcs12::kdf::{Pkcs12KeyType, derive_key};

        let key = Zeroizing::new(derive_key::<sha1::Sha1>(
            password,
            salt,
            Pkcs12KeyType::EncryptionKey,
            iterations,
            self.key_len(),
        ));
        let iv = derive_key::<sha1::Sha1>(password, salt, Pkcs12KeyType::Iv, iterations, 8);

        let plain = match self {
            Self::TripleDes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .ok()?
                .decrypt_padded_vec_mut::<Pkcs7>(sealed),
            Self::TwoKeyTripleDes => cbc::Decryptor::<des::TdesEde2>::new_from_slices(&key, &iv)
                .ok()?
                .decrypt_padded_vec_mut::<Pkcs7>(sealed),
            Self::Rc2 { bits } => {
                let cipher = rc2::Rc2::new_with_eff_key_len(&key, bits);
                cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(cipher, &iv)
                    .ok()?
                    .decrypt_padded_vec_mut::<Pkcs7>(sealed)
            }
        };
        plain.ok().map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests;
