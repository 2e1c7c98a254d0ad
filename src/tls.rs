//! TLS material from PEM files, for every outbound connection: a private CA to trust and a
//! client identity (mutual TLS), checked when read (before any call) and turned into ureq's
//! configuration (the cloud, OTLP/HTTP) or kept as PEM for tonic (OTLP/gRPC). TLS is always
//! verified; a certificate the server presents that these roots do not trust is the
//! configuration's fault, not the network's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig};

/// Cap on a PEM file: Mozilla's whole root store is about 250 KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why TLS material cannot be used; names the option or variable it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {}: {reason}", path.display())]
pub struct TlsError {
    pub option: String,
    pub path: PathBuf,
    pub reason: String,
}

/// Where the material came from, for messages (`--ca-file`, `OTEL_EXPORTER_OTLP_CERTIFICATE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub option: String,
    pub path: PathBuf,
}

/// PEM files as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trusted CAs, in addition to none: when set, only these are trusted.
    pub ca: Option<Named>,
    pub client_cert: Option<Named>,
    pub client_key: Option<Named>,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: Arc<Vec<u8>>,
    pub key_pem: Arc<Vec<u8>>,
}

/// PEM material, read and checked.
#[derive(Clone, Debug, Default)]
pub struct TlsMaterial {
    pub ca_pem: Option<Arc<Vec<u8>>>,
    /// This side's certificate chain and private key (mutual TLS).
    pub identity: Option<Identity>,
    /// The option that named the CA, for "not trusted" messages.
    pub ca_option: Option<String>,
}

fn read(n: &Named) -> Result<Vec<u8>, TlsError> {
    crate::files::read_regular(&n.path, MAX_PEM_BYTES).map_err(|e| bad(n, e.to_string()))
}

fn bad(n: &Named, reason: String) -> TlsError {
    TlsError {
        option: n.option.clone(),
        path: n.path.clone(),
        reason,
    }
}

/// What a PEM file holds: certificates and private keys, parsed.
fn items(n: &Named, pem: &[u8]) -> Result<Vec<PemItem<'static>>, TlsError> {
    ureq::tls::parse_pem(pem)
        .map(|item| item.map_err(|e| bad(n, e.to_string())))
        .collect()
}

impl TlsFiles {
    /// Reads and checks every file: each must hold what its option says.
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let mut m = TlsMaterial::default();
        if let Some(ca) = &self.ca {
            let pem = read(ca)?;
            let certs = items(ca, &pem)?
                .into_iter()
                .filter(|i| matches!(i, PemItem::Certificate(_)))
                .count();
            if certs == 0 {
                return Err(bad(ca, "no PEM certificate found".into()));
            }
            m.ca_pem = Some(Arc::new(pem));
            m.ca_option = Some(ca.option.clone());
        }
        match (&self.client_cert, &self.client_key) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                let cert = read(c)?;
                if !items(c, &cert)?
                    .iter()
                    .any(|i| matches!(i, PemItem::Certificate(_)))
                {
                    return Err(bad(c, "no PEM certificate found".into()));
                }
                let key = read(k)?;
                // Never quoted: the key's text is a secret.
                if !items(k, &key)?
                    .iter()
                    .any(|i| matches!(i, PemItem::PrivateKey(_)))
                {
                    return Err(bad(k, "no PEM private key found".into()));
                }
                m.identity = Some(Identity {
                    cert_pem: Arc::new(cert),
                    key_pem: Arc::new(key),
                });
            }
            (Some(c), None) => return Err(bad(c, "a client certificate needs its key too".into())),
            (None, Some(k)) => return Err(bad(k, "a client key needs its certificate too".into())),
        }
        Ok(m)
    }
}

impl TlsMaterial {
    /// ureq's TLS configuration: the given CAs (else the Mozilla roots) and the identity.
    pub fn ureq(&self) -> TlsConfig {
        let mut b = TlsConfig::builder();
        if let Some(pem) = &self.ca_pem {
            let certs: Vec<_> = ureq::tls::parse_pem(pem)
                .filter_map(Result::ok)
                .filter_map(|i| match i {
                    PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect();
            b = b.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let Some(Identity { cert_pem, key_pem }) = &self.identity {
            let chain: Vec<_> = ureq::tls::parse_pem(cert_pem)
                .filter_map(Result::ok)
                .filter_map(|i| match i {
                    PemItem::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect();
            let key = ureq::tls::parse_pem(key_pem)
                .filter_map(Result::ok)
                .find_map(|i| match i {
                    PemItem::PrivateKey(k) => Some(k),
                    _ => None,
                });
            if let Some(key) = key {
                b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            }
        }
        b.build()
    }

    /// "... not trusted ...; point <the option> at the CA's PEM bundle".
    pub fn untrusted_message(&self, why: &str, default_option: &str) -> String {
        format!(
            "the server's TLS certificate is not trusted ({why}); if it is signed by a private CA, point {} at that CA's PEM bundle",
            self.ca_option.as_deref().unwrap_or(default_option)
        )
    }
}

/// The certificate problem behind an error, if that is what it is: ureq's errors, and any
/// error whose sources lead to rustls (tonic's).
pub fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let invalid = |r: &rustls::Error| match r {
        rustls::Error::InvalidCertificate(why) => Some(format!("{why:?}")),
        _ => None,
    };
    let in_io = |io: &std::io::Error| {
        io.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(invalid)
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let found = if let Some(u) = err.downcast_ref::<ureq::Error>() {
            match u {
                ureq::Error::Rustls(r) => invalid(r),
                ureq::Error::Io(io) => in_io(io),
                _ => None,
            }
        } else if let Some(r) = err.downcast_ref::<rustls::Error>() {
            invalid(r)
        } else if let Some(io) = err.downcast_ref::<std::io::Error>() {
            in_io(io)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
        cur = err.source();
    }
    None
}

/// A `Named` for `path` given by `option`.
pub fn named(option: &str, path: &Path) -> Named {
    Named {
        option: option.to_string(),
        path: path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.pem");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn each_file_must_hold_what_its_option_says() {
        let (_d, empty) = file("not pem at all");
        let files = TlsFiles {
            ca: Some(named("--ca-file", &empty)),
            ..Default::default()
        };
        let e = files.load().unwrap_err();
        assert!(e.to_string().starts_with("--ca-file "), "{e}");
        assert!(e.reason.contains("no PEM certificate"), "{e}");
        let half = TlsFiles {
            client_cert: Some(named("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &empty)),
            ..Default::default()
        };
        assert!(half
            .load()
            .unwrap_err()
            .to_string()
            .contains("needs its key too"));
        assert!(TlsFiles::default().load().unwrap().ca_pem.is_none());
    }
}
