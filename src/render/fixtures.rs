//! Test-only access to the files `e2e/fixtures/generate.sh` writes: keys, certificates, PFX
//! files, and the outputs openssl computed for them.

use std::path::PathBuf;

/// A plain secret's spec with `encoding`, for renderer tests.
pub fn secret_spec(encoding: crate::request::Encoding) -> crate::request::ObjectSpec {
    crate::request::ObjectSpec {
        index: 0,
        name: "s".into(),
        kind: crate::request::ObjectType::Secret,
        version: None,
        history: 0,
        format: crate::request::Format::Pem,
        encoding,
        mode: 0o644,
        path: "s".into(),
    }
}

/// The folder of generated fixtures.
pub fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/fixtures/certs")
}

/// The bytes of one fixture; a missing file says how to make it.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = folder().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `make fixtures` to generate it)",
            path.display()
        )
    })
}

/// The text of one fixture.
pub fn text(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("a text fixture")
}
