//! The test certificate authority: a fresh CA per world, written to a PEM file that the
//! provider and the Python SDKs trust (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`), and the server
//! certificate it issues to the HTTPS front for every Azure host name the world imitates.
//!
//! Nothing is pasted: keys and certificates are generated when a world starts, so no test
//! depends on a checked-in key, and a certificate can never expire under the test suite.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate authority that exists for one test world.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("file", &self.file).finish()
    }
}

/// A certificate chain (leaf first) and its private key, ready for rustls.
pub struct IssuedCertificate {
    /// The leaf, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// Generates a CA and writes its certificate to `ca.pem` in a new temporary folder.
    pub fn generate() -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("akv-e2e test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the test CA");
        let cert_pem = cert.pem();

        let dir = tempfile::tempdir().expect("temporary folder for the test CA");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &cert_pem).expect("write the test CA file");

        TestCa {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_pem,
            file,
            _dir: dir,
        }
    }

    /// Path of the PEM file holding the CA certificate.
    pub fn ca_file(&self) -> &Path {
        &self.file
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a server certificate for `names` (DNS names, wildcards or IP addresses).
    pub fn issue_server(&self, names: &[String]) -> IssuedCertificate {
        let key = KeyPair::generate().expect("generate server key");
        let mut params = CertificateParams::new(names.to_vec()).expect("valid server names");
        params.distinguished_name = distinguished_name("akv-e2e front");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");

        IssuedCertificate {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A TLS server configuration for `names`, offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self, names: &[String]) -> Arc<rustls::ServerConfig> {
        let issued = self.issue_server(names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(issued.chain, issued.key)
            .expect("server certificate matches its key");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A TLS client configuration that trusts this CA and nothing else.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .expect("the test CA is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "akv-csi-provider tests");
    name
}
