//! JSON Web Keys to SubjectPublicKeyInfo, against the public keys openssl wrote, and the
//! refusals of keys that have no public half to write.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::render::fixtures::{fixture, text};
use crate::request::{Encoding, Format, ObjectType};

fn jwk(name: &str) -> JsonWebKey {
    serde_json::from_slice(&fixture(&format!("{name}.jwk.json"))).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &Option<String>) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.as_deref().unwrap()).unwrap()
}

#[test]
fn matches_openssl_for_every_key_type() {
    for name in ["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384", "ec521"] {
        assert_eq!(
            jwk(name).public_key_pem().unwrap(),
            text(&format!("{name}.pub.pem")),
            "{name}"
        );
    }
}

#[test]
fn hsm_types_are_written_like_software_ones() {
    for (name, kty) in [("rsa2048", "RSA-HSM"), ("ec384", "EC-HSM")] {
        let key = JsonWebKey {
            kty: kty.into(),
            ..jwk(name)
        };
        assert_eq!(
            key.public_key_pem().unwrap(),
            text(&format!("{name}.pub.pem"))
        );
    }
}

#[test]
fn leading_zeros_are_read_like_go_reads_them() {
    // The fixture's x starts with a zero byte: a short x is padded back.
    let mut key = jwk("ec256-lead0");
    let x = unb64(&key.x);
    assert_eq!(x[0], 0);
    key.x = Some(b64(&x[1..]));
    assert_eq!(key.public_key_pem().unwrap(), text("ec256-lead0.pub.pem"));

    // An extra zero in front of n or of a coordinate changes nothing.
    let mut key = jwk("rsa2048");
    key.n = Some(b64(&[&[0][..], &unb64(&key.n)].concat()));
    assert_eq!(key.public_key_pem().unwrap(), text("rsa2048.pub.pem"));
    let mut key = jwk("ec521");
    key.y = Some(b64(&[&[0, 0][..], &unb64(&key.y)].concat()));
    assert_eq!(key.public_key_pem().unwrap(), text("ec521.pub.pem"));
}

#[test]
fn symmetric_keys_say_why_they_have_no_file() {
    for kty in ["oct", "oct-HSM"] {
        let key = JsonWebKey {
            kty: kty.into(),
            ..Default::default()
        };
        let error = key.public_key_pem().unwrap_err().to_string();
        assert!(error.contains("symmetric"), "{error}");
        assert!(error.contains("never returns their material"), "{error}");
    }
}

#[test]
fn secp256k1_is_refused_with_a_reason() {
    let key = JsonWebKey {
        crv: Some("P-256K".into()),
        ..jwk("ec256")
    };
    let error = key.public_key_pem().unwrap_err();
    assert_eq!(error, JwkError::Secp256k1);
    assert!(error.to_string().contains("P-256K (secp256k1)"));
}

#[test]
fn a_point_off_the_curve_is_refused() {
    let mut key = jwk("ec256");
    let mut y = unb64(&key.y);
    y[31] ^= 1;
    key.y = Some(b64(&y));
    assert_eq!(key.public_key_der(), Err(JwkError::NotOnCurve("P-256")));

    // A point from another curve's coordinates does not fit.
    let key = JsonWebKey {
        crv: Some("P-256".into()),
        ..jwk("ec384")
    };
    assert!(matches!(
        key.public_key_der(),
        Err(JwkError::OutOfRange { member: "x", .. })
    ));
}

#[test]
fn bad_members_are_named() {
    let cases = [
        (
            JsonWebKey {
                n: None,
                ..jwk("rsa2048")
            },
            JwkError::Missing("n"),
        ),
        (
            JsonWebKey {
                y: None,
                ..jwk("ec256")
            },
            JwkError::Missing("y"),
        ),
        (
            JsonWebKey {
                crv: None,
                ..jwk("ec256")
            },
            JwkError::Missing("crv"),
        ),
        (
            JsonWebKey {
                e: Some("AQAB!".into()),
                ..jwk("rsa2048")
            },
            JwkError::NotBase64url("e"),
        ),
        (
            JsonWebKey {
                crv: Some("P-192".into()),
                ..jwk("ec256")
            },
            JwkError::UnsupportedCurve("P-192".into()),
        ),
        (
            JsonWebKey {
                kty: "OKP".into(),
                ..jwk("ec256")
            },
            JwkError::UnsupportedType("OKP".into()),
        ),
    ];
    for (key, expected) in cases {
        assert_eq!(key.public_key_der(), Err(expected));
    }
    let n = jwk("rsa2048").n.unwrap();
    for (n, e) in [
        ("AQAB", "AQAB"),
        ("", "AQAB"),
        ("AAAA", "AQAB"),
        (&n, "AQ"),
        (&n, ""),
    ] {
        let key = JsonWebKey {
            n: Some(n.into()),
            e: Some(e.into()),
            ..jwk("rsa2048")
        };
        assert!(matches!(
            key.public_key_der(),
            Err(JwkError::OutOfRange { .. })
        ));
    }
}

#[test]
fn padding_is_tolerated() {
    let key = jwk("rsa2048");
    // 256 bytes of modulus take 342 characters: two short of a multiple of four.
    let padded = JsonWebKey {
        n: Some(format!("{}==", key.n.clone().unwrap())),
        ..key.clone()
    };
    assert_eq!(padded.public_key_der(), key.public_key_der());
}

fn spec() -> ObjectSpec {
    ObjectSpec {
        index: 3,
        name: "signing".into(),
        kind: ObjectType::Key,
        version: None,
        history: 0,
        format: Format::Pem,
        encoding: Encoding::Utf8,
        mode: 0o644,
        path: "signing".into(),
    }
}

fn bundle(key: serde_json::Value) -> KeyBundle {
    serde_json::from_value(json!({ "key": key })).unwrap()
}

#[test]
fn renders_a_key_bundle() {
    let mut key: serde_json::Value = serde_json::from_slice(&fixture("ec521.jwk.json")).unwrap();
    key["kid"] = json!("https://kv.vault.azure.net/keys/signing/0123456789abcdef0123456789abcdef");
    key["key_ops"] = json!(["sign", "verify"]);

    let file = render(&spec(), &bundle(key)).unwrap();

    assert_eq!(file.expose(), fixture("ec521.pub.pem"));
}

#[test]
fn render_errors_name_the_object() {
    let oct = bundle(json!({ "kty": "oct", "kid": "https://kv.vault.azure.net/keys/k/v1" }));
    let error = render(&spec(), &oct).unwrap_err().to_string();
    assert!(
        error.starts_with("objects[3] (signing): key: oct keys are symmetric"),
        "{error}"
    );

    let k1 = bundle(json!({
        "kty": "EC", "crv": "P-256K", "x": "AA", "y": "AA",
        "kid": "https://kv.vault.azure.net/keys/k/v2",
    }));
    let error = render(&spec(), &k1).unwrap_err().to_string();
    assert!(
        error.starts_with("objects[3] (signing): key: P-256K (secp256k1)"),
        "{error}"
    );
    assert!(error.ends_with("(version v2)"), "{error}");
}

proptest! {
    /// Any JSON object with string members gives a key or an error, never a panic.
    #[test]
    fn arbitrary_members_never_panic(
        kty in prop::sample::select(vec!["RSA", "EC", "EC-HSM", "oct", "x"]),
        crv in prop::option::of(prop::sample::select(vec!["P-256", "P-384", "P-521", "P-256K"])),
        n in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        e in prop::option::of(prop::collection::vec(any::<u8>(), 0..6)),
        x in prop::option::of(prop::collection::vec(any::<u8>(), 0..70)),
        y in prop::option::of(prop::collection::vec(any::<u8>(), 0..70)),
    ) {
        let key = JsonWebKey {
            kty: kty.into(),
            crv: crv.map(Into::into),
            n: n.as_deref().map(b64),
            e: e.as_deref().map(b64),
            x: x.as_deref().map(b64),
            y: y.as_deref().map(b64),
        };
        let _ = key.public_key_der();
    }
}
