//! TLS for config sync: the node's certificate (configured, or self-signed and kept in the
//! state dir), its SHA-256 fingerprint, and how a primary checks a peer: the certificate
//! pinned by fingerprint, or signed by a cluster CA.

use configsync::area::hex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Pin(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's certificate chain and key.
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_path: PathBuf,
    /// `sha256:AB:CD:...` of the first certificate.
    pub fingerprint: String,
}

/// The SHA-256 fingerprint of a DER certificate as `sha256:AB:CD:...` (openssl's form).
pub fn fingerprint(der: &[u8]) -> String {
    let h = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()).to_uppercase();
    let pairs: Vec<&str> = h
        .as_bytes()
        .chunks(2)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!("sha256:{}", pairs.join(":"))
}

/// Parses a pinned fingerprint: 64 hex digits, with or without `sha256:` and colons.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let t = s.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a SHA-256 fingerprint (64 hex digits, e.g. \"sha256:AB:CD:...\" as `tandem status` prints it)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{s:?}: bad hex"))?;
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        msg: format!("cannot read: {e}"),
    })
}

fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
    let cert_pem = read(cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::File {
            path: cert_path.to_path_buf(),
            msg: format!("not a PEM certificate: {e}"),
        })?;
    let first = certs.first().ok_or_else(|| TlsError::File {
        path: cert_path.to_path_buf(),
        msg: "holds no certificate".into(),
    })?;
    let fingerprint = fingerprint(first);
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::File {
        path: key_path.to_path_buf(),
        msg: format!("not a PEM private key: {e}"),
    })?;
    Ok(Identity {
        certs,
        key,
        cert_path: cert_path.to_path_buf(),
        fingerprint,
    })
}

/// The configured certificate and key, or the node's own self-signed pair in `state_dir`
/// (`cert.pem`, `key.pem`), made on first use for `names` (IP addresses and DNS names).
pub fn identity(
    configured: Option<(&Path, &Path)>,
    state_dir: &Path,
    names: &[String],
) -> Result<Identity, TlsError> {
    if let Some((c, k)) = configured {
        return load(c, k);
    }
    let cert = state_dir.join("cert.pem");
    let key = state_dir.join("key.pem");
    if !cert.exists() || !key.exists() {
        let ck = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        std::fs::create_dir_all(state_dir).map_err(|e| TlsError::File {
            path: state_dir.to_path_buf(),
            msg: format!("cannot create: {e}"),
        })?;
        write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, ck.cert.pem()).map_err(|e| TlsError::File {
            path: cert.clone(),
            msg: format!("cannot write: {e}"),
        })?;
        tracing::info!(
            "config sync: made a self-signed certificate {} for {}",
            cert.display(),
            names.join(", ")
        );
    }
    load(&cert, &key)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            msg: format!("cannot write: {e}"),
        })?;
    f.write_all(bytes).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        msg: format!("cannot write: {e}"),
    })
}

/// The server's TLS: its identity, and a client certificate asked for but not required. A
/// client that presents one proves it holds its key (the handshake signature is checked
/// here); whose certificate it is, the caller of the server decides (a peer takes pushes only
/// from its primary's, pinned). Clients without one (an operator's XML-RPC client) still get
/// the calls that need only the password.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut c = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyClientCert { provider }))
        .with_single_cert(id.certs.clone(), id.key.clone_key())?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Accepts any client certificate (or none) at the TLS level, checking only that the client
/// signed the handshake with its key; which certificate it was is checked by fingerprint above
/// TLS.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a peer's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Exactly this certificate (SHA-256 of its DER).
    Pinned([u8; 32]),
    /// Any certificate for the peer's name that chains to this CA (PEM file).
    Ca(PathBuf),
}

/// Accepts exactly one certificate, by fingerprint; the handshake signature is still checked,
/// so only the holder of its key can answer.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if got.as_ref() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "peer certificate {} is not the pinned one {}",
                fingerprint(end_entity),
                fingerprint_of_hash(&self.sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sha256:AB:CD:...` of a SHA-256 hash (as [`fingerprint`] prints it).
pub fn fingerprint_of_hash(h: &[u8; 32]) -> String {
    let s = hex(h).to_uppercase();
    let pairs: Vec<&str> = s
        .as_bytes()
        .chunks(2)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!("sha256:{}", pairs.join(":"))
}

/// The client's TLS: how the peer is checked, and the node's own certificate presented to
/// it (the peer takes pushes only from the certificate it pinned for its primary).
pub fn client_config(
    trust: &Trust,
    me: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verified = match trust {
        Trust::Pinned(sha256) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: *sha256,
                provider,
            })),
        Trust::Ca(path) => {
            let pem = read(path)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| TlsError::File {
                    path: path.clone(),
                    msg: format!("not a PEM certificate: {e}"),
                })?;
                roots.add(c)?;
            }
            if roots.is_empty() {
                return Err(TlsError::File {
                    path: path.clone(),
                    msg: "holds no CA certificate".into(),
                });
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut c = match me {
        Some(id) => verified.with_client_auth_cert(id.certs.clone(), id.key.clone_key())?,
        None => verified.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_common_form() {
        let der = b"not really a certificate";
        let fp = fingerprint(der);
        assert!(fp.starts_with("sha256:"));
        assert_eq!(fp.len(), 7 + 32 * 3 - 1);
        let raw = parse_fingerprint(&fp).expect("own form");
        assert_eq!(fingerprint_of_hash(&raw), fp);
        let bare: String = fp[7..].chars().filter(|c| *c != ':').collect();
        assert_eq!(parse_fingerprint(&bare.to_lowercase()), Ok(raw));
        let e = parse_fingerprint("sha256:AB:CD").expect_err("short");
        assert!(e.contains("not a SHA-256 fingerprint"), "{e}");
    }

    #[test]
    fn self_signed_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let names = vec!["203.0.113.1".to_string(), "fw1".to_string()];
        let a = identity(None, dir.path(), &names).expect("made");
        let b = identity(None, dir.path(), &names).expect("loaded");
        assert_eq!(a.fingerprint, b.fingerprint);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        server_config(&a).expect("server config");
        client_config(
            &Trust::Pinned(parse_fingerprint(&a.fingerprint).expect("fp")),
            Some(&a),
        )
        .expect("client config");
        client_config(&Trust::Ca(a.cert_path.clone()), None).expect("ca config");
    }
}
