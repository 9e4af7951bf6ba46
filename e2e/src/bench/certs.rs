//! The certificate-heavy Mount's certificates, made fresh by the benchmark: a root and an
//! intermediate CA (P-256) and leaves with RSA-2048 keys (Key Vault's default policy), each
//! exported by `openssl pkcs12 -export` as a password-less "modern" PFX (OpenSSL 3's
//! defaults: AES-256-CBC with PBKDF2, SHA-256 MAC) holding the key, the leaf and both CAs —
//! what Key Vault stores as the secret behind an imported certificate.

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

/// One certificate as Key Vault imports it.
pub struct Pfx {
    /// The leaf, DER (the certificate's `cer`).
    pub leaf_der: Vec<u8>,
    /// The PFX, standard base64 (the managed secret's value).
    pub pfx_base64: String,
}

/// Makes `count` certificates; fails when `openssl` is missing or refuses.
pub fn generate(count: usize) -> Result<Vec<Pfx>, String> {
    let dir = tempfile::Builder::new()
        .prefix("akv-bench-certs-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let root_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let root_params = ca_params("akv-bench root CA");
    let root = root_params
        .self_signed(&root_key)
        .map_err(|e| e.to_string())?;
    let root = (root.pem(), Issuer::new(root_params, root_key));

    let int_key = KeyPair::generate().map_err(|e| e.to_string())?;
    let int_params = ca_params("akv-bench issuing CA");
    let int = int_params
        .signed_by(&int_key, &root.1)
        .map_err(|e| e.to_string())?;
    let issuer = Issuer::new(int_params, int_key);
    let cas = dir.path().join("cas.pem");
    std::fs::write(&cas, format!("{}{}", int.pem(), root.0)).map_err(|e| e.to_string())?;

    // RSA key generation is the slow part: both cores at it.
    let keys: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                scope.spawn(move || {
                    (worker..count)
                        .step_by(2)
                        .map(|index| (index, rsa_key()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut keys: Vec<(usize, String)> = workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("RSA key worker"))
            .collect();
        keys.sort_by_key(|(index, _)| *index);
        keys.into_iter().map(|(_, key)| key).collect()
    });

    keys.iter()
        .enumerate()
        .map(|(index, key_pem)| leaf(dir.path(), index, key_pem, &issuer, &cas))
        .collect()
}

fn leaf(
    dir: &Path,
    index: usize,
    key_pem: &str,
    issuer: &Issuer<'_, KeyPair>,
    cas: &Path,
) -> Result<Pfx, String> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
    let host = format!("svc-{index:02}.bench.example");
    let mut params = CertificateParams::new(vec![host.clone()]).map_err(|e| e.to_string())?;
    params.distinguished_name = name(&host);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, issuer).map_err(|e| e.to_string())?;

    let key_file = dir.join(format!("leaf-{index}.key"));
    let cert_file = dir.join(format!("leaf-{index}.pem"));
    let pfx_file = dir.join(format!("leaf-{index}.p12"));
    std::fs::write(&key_file, key_pem).map_err(|e| e.to_string())?;
    std::fs::write(&cert_file, cert.pem()).map_err(|e| e.to_string())?;
    let status = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:", "-inkey"])
        .arg(&key_file)
        .arg("-in")
        .arg(&cert_file)
        .arg("-certfile")
        .arg(cas)
        .arg("-out")
        .arg(&pfx_file)
        .status()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !status.success() {
        return Err(format!("openssl pkcs12 -export exited with {status}"));
    }
    let pfx = std::fs::read(&pfx_file).map_err(|e| e.to_string())?;
    use base64::Engine as _;
    Ok(Pfx {
        leaf_der: cert.der().to_vec(),
        pfx_base64: base64::engine::general_purpose::STANDARD.encode(pfx),
    })
}

fn rsa_key() -> String {
    let mut rng = rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("generate an RSA key");
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("encode an RSA key")
        .to_string()
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "akv-csi-provider bench");
    name
}
