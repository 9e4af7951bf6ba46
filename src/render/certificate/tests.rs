//! Certificate-backed secrets and `cert` objects rendered against the outputs openssl
//! computed for each fixture.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;
use crate::render::fixtures::fixture;
use crate::request::ObjectType;

const ORDER_AND_SPLIT: RenderOptions = RenderOptions {
    construct_pem_chain: true,
    write_cert_and_key_in_separate_files: true,
};

const AS_STORED: RenderOptions = RenderOptions {
    construct_pem_chain: false,
    write_cert_and_key_in_separate_files: false,
};

/// The value Key Vault holds for a PFX fixture: its standard base64.
fn pfx_value(name: &str) -> String {
    STANDARD.encode(fixture(name))
}

fn pem_value(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn pem(value: &str, content_type: &str, options: RenderOptions) -> Files {
    render(
        value,
        Some(content_type),
        Format::Pem,
        Encoding::Utf8,
        options,
    )
    .unwrap()
}

/// Checks the three files against what openssl computed for `case`.
fn check(files: &Files, case: &str, source: &str) {
    assert_eq!(
        String::from_utf8_lossy(files.main.expose()),
        String::from_utf8_lossy(&fixture(&format!("{case}.expected.pem"))),
        "{source}"
    );
    let crt = files.crt.as_ref().expect("a .crt file");
    assert_eq!(
        crt.expose(),
        fixture(&format!("{case}.expected.crt")),
        "{source}"
    );
    let key = files.key.as_ref().expect("a .key file");
    assert_eq!(
        key.expose(),
        fixture(&format!("{case}.expected.key")),
        "{source}"
    );
    assert!(files.notes.is_empty(), "{source}: {:?}", files.notes);
}

#[test]
fn pfx_secrets_render_like_openssl() {
    let cases = [
        ("rsa2048.self.modern.p12", "rsa2048.self"),
        ("rsa3072.self.modern.p12", "rsa3072.self"),
        ("rsa4096.self.modern.p12", "rsa4096.self"),
        ("ec256.self.modern.p12", "ec256.self"),
        ("ec384.self.modern.p12", "ec384.self"),
        ("ec521.self.modern.p12", "ec521.self"),
        ("rsa2048.self.legacy.p12", "rsa2048.self"),
        ("ec384.self.legacy.p12", "ec384.self"),
        ("rsa2048.self.keysig.p12", "rsa2048.self"),
        ("ki-chain2.modern.p12", "ki-chain2"),
        ("ki-chain3.legacy.p12", "ki-chain3"),
        ("ki-chain4.modern.p12", "ki-chain4"),
        ("ki-chain4.legacy.p12", "ki-chain4"),
        ("ki-chain4.3des.p12", "ki-chain4"),
        ("ki-chain4.plain.p12", "ki-chain4"),
        ("ki-chain4.bare.p12", "ki-chain4"),
        ("ki-chain4.modern-ber.p12", "ki-chain4"),
        ("ki-chain4.legacy-ber.p12", "ki-chain4"),
        ("noki-chain4.modern.p12", "noki-chain4"),
        ("noki-chain4.legacy.p12", "noki-chain4"),
        ("two-keys.p12", "two-keys"),
    ];
    for (source, case) in cases {
        check(
            &pem(&pfx_value(source), PKCS12, ORDER_AND_SPLIT),
            case,
            source,
        );
    }
}

#[test]
fn pem_secrets_render_like_openssl_whatever_their_order() {
    let cases = [
        ("ki-chain4.ordered.bundle.pem", "ki-chain4"),
        ("ki-chain4.reversed.bundle.pem", "ki-chain4"),
        ("ki-chain4.shuffled.bundle.pem", "ki-chain4"),
        ("ki-chain4.trad.bundle.pem", "ki-chain4"),
        ("ki-chain4.attributes.bundle.pem", "ki-chain4"),
        ("noki-chain4.shuffled.bundle.pem", "noki-chain4"),
        ("ec384.self.trad.bundle.pem", "ec384.self"),
    ];
    for (source, case) in cases {
        check(
            &pem(&pem_value(source), PEM_FILE, ORDER_AND_SPLIT),
            case,
            source,
        );
    }
}

#[test]
fn content_types_are_matched_without_regard_to_case() {
    let files = pem(
        &pem_value("ec384.self.trad.bundle.pem"),
        "Application/X-PEM-File",
        AS_STORED,
    );
    assert_eq!(files.main.expose(), fixture("ec384.self.expected.pem"));
}

#[test]
fn without_chain_construction_the_stored_order_is_kept() {
    let files = pem(&pfx_value("ki-chain4.modern.p12"), PKCS12, AS_STORED);

    // openssl stored the leaf, then the -certfile certificates root first.
    let mut expected = fixture("ki-chain4.expected.key");
    for name in ["ki-leaf4", "ki-root", "ki-int1", "ki-int2"] {
        expected.extend(fixture(&format!("{name}.pem")));
    }
    assert_eq!(files.main.expose(), expected);
    assert!(files.crt.is_none() && files.key.is_none());
}

#[test]
fn a_set_that_is_no_chain_is_kept_in_stored_order_with_a_note() {
    let value =
        pem_value("rsa2048.key.pem") + &pem_value("ki-root.pem") + &pem_value("ki-leaf4.pem");

    let files = pem(&value, PEM_FILE, ORDER_AND_SPLIT);

    let expected =
        pem_value("rsa2048.key.pem") + &pem_value("ki-root.pem") + &pem_value("ki-leaf4.pem");
    assert_eq!(String::from_utf8_lossy(files.main.expose()), expected);
    assert_eq!(files.notes.len(), 1);
    assert!(
        files.notes[0].starts_with("the certificates do not form one chain"),
        "{:?}",
        files.notes
    );
}

#[test]
fn a_certificate_without_its_key_has_no_key_file() {
    let files = pem(
        &pfx_value("ki-chain4-nokey.modern.p12"),
        PKCS12,
        ORDER_AND_SPLIT,
    );

    assert_eq!(files.main.expose(), fixture("ki-chain4-nokey.expected.pem"));
    assert_eq!(
        files.crt.unwrap().expose(),
        fixture("ki-chain4-nokey.expected.crt")
    );
    assert!(files.key.is_none());
    assert_eq!(files.notes.len(), 1);
    assert!(
        files.notes[0].contains("no private key"),
        "{:?}",
        files.notes
    );
}

#[test]
fn pfx_format_keeps_the_stored_value() {
    let value = pfx_value("ki-chain4.legacy.p12");

    let text = render(&value, Some(PKCS12), Format::Pfx, Encoding::Utf8, AS_STORED).unwrap();
    let binary = render(
        &value,
        Some(PKCS12),
        Format::Pfx,
        Encoding::Base64,
        AS_STORED,
    )
    .unwrap();

    assert_eq!(text.main.expose(), value.as_bytes());
    assert_eq!(binary.main.expose(), fixture("ki-chain4.legacy.p12"));
}

#[test]
fn pfx_format_still_writes_separate_pem_files() {
    let value = pfx_value("ki-chain4.modern.p12");

    let files = render(
        &value,
        Some(PKCS12),
        Format::Pfx,
        Encoding::Base64,
        ORDER_AND_SPLIT,
    )
    .unwrap();

    assert_eq!(files.main.expose(), fixture("ki-chain4.modern.p12"));
    assert_eq!(
        files.crt.unwrap().expose(),
        fixture("ki-chain4.expected.crt")
    );
    assert_eq!(
        files.key.unwrap().expose(),
        fixture("ki-chain4.expected.key")
    );
}

#[test]
fn an_unreadable_pfx_is_still_written_as_stored() {
    let value = pfx_value("protected.p12");

    let files = render(
        &value,
        Some(PKCS12),
        Format::Pfx,
        Encoding::Utf8,
        ORDER_AND_SPLIT,
    )
    .unwrap();

    assert_eq!(files.main.expose(), value.as_bytes());
    assert!(files.crt.is_none() && files.key.is_none());
    assert!(
        files.notes[0].contains("protected by a password"),
        "{:?}",
        files.notes
    );
}

#[test]
fn pem_secrets_become_a_pfx_on_request() {
    let value = pem_value("ki-chain4.shuffled.bundle.pem");

    let text = render(
        &value,
        Some(PEM_FILE),
        Format::Pfx,
        Encoding::Utf8,
        ORDER_AND_SPLIT,
    )
    .unwrap();
    let binary = render(
        &value,
        Some(PEM_FILE),
        Format::Pfx,
        Encoding::Base64,
        ORDER_AND_SPLIT,
    )
    .unwrap();

    assert_eq!(
        STANDARD.decode(text.main.expose()).unwrap(),
        binary.main.expose()
    );
    let archive = pkcs12::decode(binary.main.expose()).unwrap();
    let expected = pem(&value, PEM_FILE, ORDER_AND_SPLIT);
    assert_eq!(archive.keys.len(), 1);
    assert_eq!(
        pem_text(PRIVATE_KEY, &key_ders(&archive.keys)),
        expected.key.unwrap()
    );
    let certificates = certificate_ders(&archive.certificates);
    assert_eq!(pem_text(CERTIFICATE, &certificates), expected.crt.unwrap());
    assert_eq!(
        binary.crt.unwrap().expose(),
        fixture("ki-chain4.expected.crt")
    );
}

#[test]
fn encodings_that_do_not_apply_are_refused() {
    let value = pfx_value("ec256.self.modern.p12");
    for (format, encoding) in [
        (Format::Pem, Encoding::Base64),
        (Format::Pem, Encoding::Hex),
        (Format::Pfx, Encoding::Hex),
    ] {
        let problem = render(&value, Some(PKCS12), format, encoding, AS_STORED).unwrap_err();
        assert!(
            matches!(
                problem,
                Problem::Mismatch {
                    field: "objectEncoding",
                    ..
                }
            ),
            "{format:?} {encoding:?}: {problem:?}"
        );
    }
}

#[test]
fn other_content_types_are_named_in_the_error() {
    for content_type in [None, Some("text/plain")] {
        let problem =
            render("x", content_type, Format::Pem, Encoding::Utf8, AS_STORED).unwrap_err();
        let Problem::Mismatch { field, reason } = problem else {
            panic!("{problem:?}");
        };
        assert_eq!(field, "contentType");
        let named = content_type.map_or("none".into(), |t| format!("{t:?}"));
        assert!(reason.ends_with(&format!("it is {named}")), "{reason}");
    }
}

#[test]
fn unreadable_values_are_errors() {
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let cases = [
        (PKCS12, "not base64!".to_owned(), "not standard base64"),
        (
            PKCS12,
            STANDARD.encode("not a pfx"),
            "not a PKCS#12 archive",
        ),
        (
            PKCS12,
            pfx_value("protected.p12"),
            "protected by a password",
        ),
        (
            PEM_FILE,
            "no blocks at all".to_owned(),
            "no certificate and no private key",
        ),
        (
            PEM_FILE,
            encrypted.to_owned() + &pem_value("ki-root.pem"),
            "ENCRYPTED PRIVATE KEY",
        ),
        (
            PEM_FILE,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            "not valid PKCS#8",
        ),
    ];
    for (content_type, value, expected) in cases {
        let problem = render(
            &value,
            Some(content_type),
            Format::Pem,
            Encoding::Utf8,
            AS_STORED,
        )
        .unwrap_err();
        let Problem::Mismatch {
            field: "value",
            reason,
        } = &problem
        else {
            panic!("{problem:?}");
        };
        assert!(reason.contains(expected), "{reason}");
        assert!(!reason.contains("AAAA"), "{reason}");
    }
}

#[test]
fn other_blocks_are_noted_not_written() {
    let value =
        pem_value("ec256.key.pem") + &pem_value("ec256.self.pem") + &pem_value("ec256.pub.pem");

    let files = pem(&value, PEM_FILE, AS_STORED);

    assert_eq!(files.main.expose(), fixture("ec256.self.expected.pem"));
    assert_eq!(
        files.notes,
        ["a PUBLIC KEY block of the PEM is not written"]
    );
}

fn spec(format: Format) -> ObjectSpec {
    ObjectSpec {
        index: 2,
        name: "web-tls".into(),
        kind: ObjectType::Secret,
        version: None,
        history: 0,
        format,
        encoding: Encoding::Utf8,
        mode: 0o644,
        path: "tls/web".into(),
    }
}

fn secret_bundle(value: &str, content_type: &str) -> SecretBundle {
    serde_json::from_value(json!({
        "value": value,
        "id": "https://kv.vault.azure.net/secrets/web-tls/0123456789abcdef0123456789abcdef",
        "contentType": content_type,
        "kid": "https://kv.vault.azure.net/keys/web-tls/0123456789abcdef0123456789abcdef",
    }))
    .unwrap()
}

#[test]
fn secret_gives_the_main_crt_and_key_outputs() {
    let bundle = secret_bundle(&pfx_value("ki-chain4.modern.p12"), PKCS12);

    let rendered = secret(&spec(Format::Pem), &bundle, ORDER_AND_SPLIT).unwrap();

    let suffixes: Vec<&str> = rendered.outputs.iter().map(|o| o.suffix).collect();
    assert_eq!(suffixes, ["", ".crt", ".key"]);
    assert_eq!(
        rendered.outputs[0].contents.expose(),
        fixture("ki-chain4.expected.pem")
    );
    assert!(rendered.warning.is_none());
    // Nothing of the key shows in Debug output.
    let key_line = pem_value("rsa2048.key.pem")
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(!format!("{rendered:?}").contains(&key_line));
}

#[test]
fn secret_warnings_and_errors_name_the_object_and_version() {
    let bundle = secret_bundle(&pfx_value("ki-chain4-nokey.modern.p12"), PKCS12);
    let rendered = secret(&spec(Format::Pem), &bundle, ORDER_AND_SPLIT).unwrap();
    assert_eq!(rendered.outputs.len(), 2);
    let warning = rendered.warning.unwrap();
    assert!(
        warning.starts_with("objects[2] (web-tls), version 0123456789abcdef0123456789abcdef: "),
        "{warning}"
    );

    let bundle = secret_bundle("x", "text/plain");
    let error = secret(&spec(Format::Pem), &bundle, AS_STORED)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("objects[2] (web-tls): contentType: "),
        "{error}"
    );
    assert!(
        error.ends_with("(version 0123456789abcdef0123456789abcdef)"),
        "{error}"
    );
}

#[test]
fn cert_objects_are_the_leaf_as_pem() {
    for name in ["rsa2048", "ec521"] {
        let bundle: CertificateBundle = serde_json::from_value(json!({
            "id": "https://kv.vault.azure.net/certificates/c/v1",
            "cer": pem_value(&format!("{name}.self.cer.b64")),
        }))
        .unwrap();

        let file = cert(&spec(Format::Pem), &bundle).unwrap();

        assert_eq!(
            file.expose(),
            fixture(&format!("{name}.self.pem")),
            "{name}"
        );
    }
    let empty: CertificateBundle =
        serde_json::from_value(json!({ "id": "https://kv.vault.azure.net/certificates/c/v1" }))
            .unwrap();
    let error = cert(&spec(Format::Pem), &empty).unwrap_err().to_string();
    assert_eq!(
        error,
        "objects[2] (web-tls): cer: Key Vault's answer has no certificate (version v1)"
    );
}

#[test]
fn unsupported_algorithms_are_named() {
    let bundle = secret_bundle(&pfx_value("rc4.p12"), PKCS12);

    let error = secret(&spec(Format::Pem), &bundle, AS_STORED).unwrap_err();

    assert!(matches!(error, RenderError::Unsupported { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "objects[2] (web-tls): RC4 encryption in a PFX (version \
         0123456789abcdef0123456789abcdef) is not supported yet"
    );
}
