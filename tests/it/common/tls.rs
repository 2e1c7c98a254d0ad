//! TLS on loopback for the tests: a private CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate, and a second CA that trusts none of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Pki {
    /// PEM files in a temporary directory.
    pub ca_pem: PathBuf,
    pub other_ca_pem: PathBuf,
    pub client_cert_pem: PathBuf,
    pub client_key_pem: PathBuf,
    /// The server's certificate and key as PEM text (for tonic's server).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    ca_der: CertificateDer<'static>,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    pub fn new() -> Pki {
        let dir = super::tempdir();
        let ca = new_ca("maas-usage test CA");
        let other = new_ca("someone else's CA");

        let server_key = KeyPair::generate().unwrap();
        // maas.test: a name only the tests' CONNECT proxy resolves.
        let mut p = CertificateParams::new(vec![
            "127.0.0.1".into(),
            "localhost".into(),
            "maas.test".into(),
        ])
        .unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = p.signed_by(&server_key, &ca).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "maas-usage client");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = p.signed_by(&client_key, &ca).unwrap();

        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Pki {
            ca_pem: write("ca.pem", ca.pem()),
            other_ca_pem: write("other-ca.pem", other.pem()),
            client_cert_pem: write("client.pem", client.pem()),
            client_key_pem: write("client.key", client_key.serialize_pem()),
            server_cert_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            ca_der: ca.der().clone(),
        }
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()))
    }

    /// A server that asks for no client certificate.
    pub fn server(&self) -> Arc<rustls::ServerConfig> {
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(self.server_chain.clone(), self.key())
                .unwrap(),
        )
    }

    /// A server that requires a client certificate signed by the test CA (mutual TLS).
    pub fn mutual_server(&self) -> Arc<rustls::ServerConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.server_chain.clone(), self.key())
                .unwrap(),
        )
    }
}
