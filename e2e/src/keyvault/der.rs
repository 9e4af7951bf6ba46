//! Just enough X.509 reading for the Key Vault double to import a certificate as the service
//! does: its validity (the bundle's `nbf` and `exp`) and its public key (the managed key's
//! JSON Web Key). Input comes from the tests themselves, so a certificate this cannot read
//! is simply imported without those fields.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_VERSION: u8 = 0xa0;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// Named curves and their JWK `crv`.
const CURVES: [(&[u8], &str); 4] = [
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], "P-256"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "P-256K"),
];

/// What the double takes from a certificate.
#[derive(Debug, Clone)]
pub(super) struct ParsedCertificate {
    pub not_before: i64,
    pub not_after: i64,
    /// The public key as a JWK (no `kid`), when it is RSA or EC on a known curve.
    pub jwk: Option<Value>,
}

/// Reads validity and public key from a DER certificate.
pub(super) fn parse_certificate(der: &[u8]) -> Option<ParsedCertificate> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&EXPLICIT_VERSION) {
        tbs = tlv(tbs)?.2;
    }
    let (_serial, rest) = expect(tbs, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (_subject, rest) = expect(rest, SEQUENCE)?;
    let (spki, _) = expect(rest, SEQUENCE)?;

    let (tag, not_before, rest) = tlv(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = tlv(rest)?;
    let not_after = time(tag, not_after)?;

    Some(ParsedCertificate {
        not_before,
        not_after,
        jwk: public_key_jwk(spki),
    })
}

/// `key_props` of a certificate policy for a key with this JWK.
pub(super) fn key_props(jwk: &Value) -> Value {
    let mut props = json!({"exportable": true, "kty": jwk["kty"], "reuse_key": false});
    if let Some(n) = jwk.get("n").and_then(Value::as_str) {
        let bytes = URL_SAFE_NO_PAD.decode(n).unwrap_or_default();
        props["key_size"] = json!(bytes.len() * 8);
    }
    if let Some(crv) = jwk.get("crv") {
        props["crv"] = crv.clone();
    }
    props
}

fn public_key_jwk(spki: &[u8]) -> Option<Value> {
    let (algorithm, rest) = expect(spki, SEQUENCE)?;
    let (key_bits, _) = expect(rest, BIT_STRING)?;
    let (&unused_bits, key) = key_bits.split_first()?;
    if unused_bits != 0 {
        return None;
    }
    let (oid, parameters) = expect(algorithm, OID)?;

    if oid == RSA_ENCRYPTION {
        let (rsa_key, _) = expect(key, SEQUENCE)?;
        let (n, rest) = expect(rsa_key, INTEGER)?;
        let (e, _) = expect(rest, INTEGER)?;
        return Some(json!({
            "kty": "RSA",
            "key_ops": ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"],
            "n": URL_SAFE_NO_PAD.encode(strip_sign_byte(n)),
            "e": URL_SAFE_NO_PAD.encode(strip_sign_byte(e)),
        }));
    }
    if oid == EC_PUBLIC_KEY {
        let (curve, _) = expect(parameters, OID)?;
        let (_, crv) = CURVES.iter().find(|(known, _)| *known == curve)?;
        let point = key.strip_prefix(&[0x04])?;
        let (x, y) = point.split_at(point.len() / 2);
        return Some(json!({
            "kty": "EC",
            "key_ops": ["sign", "verify"],
            "crv": crv,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }));
    }
    None
}

fn strip_sign_byte(integer: &[u8]) -> &[u8] {
    match integer {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => integer,
    }
}

/// Splits one TLV off `input`: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    let (content, rest) = rest.split_at(length);
    Some((tag, content, rest))
}

/// Splits one TLV with tag `tag` off `input`: (content, rest).
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = tlv(input)?;
    (found == tag).then_some((content, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(tag: u8, content: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME => {
            let year: i64 = text.get(..2)?.parse().ok()?;
            (
                if year < 50 { 2000 + year } else { 1900 + year },
                &text[2..],
            )
        }
        GENERALIZED_TIME => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let days = days_from_civil(year, field(0)?, field(2)?);
    Some(days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_validity_and_ec_key_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["leaf.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let cert = params.self_signed(&key).unwrap();

        let parsed = parse_certificate(cert.der()).unwrap();
        assert_eq!(parsed.not_before, 1_709_164_800);
        assert_eq!(parsed.not_after, 2_556_230_400);
        let jwk = parsed.jwk.unwrap();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(parse_certificate(b"not a certificate").is_none());
    }
}
