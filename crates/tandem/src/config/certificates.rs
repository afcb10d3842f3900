//! The synced area `certificates` (`[[certificates]]`): named PEM certificates with their
//! private keys, given inline (the area travels as text over the authenticated sync channel,
//! so a path would name a file the peer does not have). Checked here, without I/O: the PEM
//! parses, the key is PKCS#8 and matches the certificate, names are unique and usable as
//! file names. The key is never shown: not in errors, not in `Debug`.

use super::Errors;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    name: Spanned<String>,
    /// The certificate, PEM; more `CERTIFICATE` blocks after it are its chain.
    cert: Spanned<String>,
    /// The private key, PEM (`-----BEGIN PRIVATE KEY-----`, unencrypted PKCS#8).
    key: Spanned<String>,
}

/// A private key in PEM: its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(String);

impl KeyPem {
    #[cfg(test)]
    pub fn new(pem: String) -> KeyPem {
        KeyPem(pem)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<secret>)")
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's distinguished name (`CN=fw.example.org, O=Example`).
    pub subject: String,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the leaf certificate's DER, lowercase hex.
    pub sha256: String,
    /// Certificates after the leaf (its chain).
    pub chain: usize,
}

/// One checked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub name: String,
    /// The certificate (and chain) as written, normalized to end in one newline.
    pub cert_pem: String,
    pub key_pem: KeyPem,
    pub info: CertInfo,
}

/// A name is a file name in the certificates directory: letters, digits, `.`, `_`, `-`, not
/// starting with a dot, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn normalized(pem: &str) -> String {
    let mut s = pem.trim().to_string();
    s.push('\n');
    s
}

/// Parses the certificate PEM (leaf first, then its chain).
pub fn parse_cert(pem: &str) -> Result<CertInfo, String> {
    use x509_parser::pem::Pem;
    let mut leaf = None;
    let mut chain = 0;
    for (i, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let block = block.map_err(|e| format!("PEM block {}: {e}", i + 1))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "PEM block {} is `{}`, not `CERTIFICATE` (the key goes in `key`)",
                i + 1,
                configsync::area::shown(&block.label)
            ));
        }
        let cert = block
            .parse_x509()
            .map_err(|e| format!("certificate {} does not parse: {e}", i + 1))?;
        if i == 0 {
            leaf = Some(CertInfo {
                subject: cert.subject().to_string(),
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                sha256: configsync::area::hex(
                    ring::digest::digest(&ring::digest::SHA256, &block.contents).as_ref(),
                ),
                chain: 0,
            });
        } else {
            chain += 1;
        }
    }
    let mut info = leaf.ok_or("no `-----BEGIN CERTIFICATE-----` block")?;
    info.chain = chain;
    Ok(info)
}

/// The public key of the leaf certificate (the BIT STRING of its SubjectPublicKeyInfo).
fn cert_public_key(pem: &str) -> Option<Vec<u8>> {
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()?
        .ok()?;
    let cert = block.parse_x509().ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// Parses the key (unencrypted PKCS#8: ECDSA P-256/P-384, Ed25519 or RSA) and returns its
/// public key as a certificate carries it. Errors never hold any of the key.
fn key_public_key(pem: &str) -> Result<Vec<u8>, String> {
    let mut blocks = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes());
    let block = match blocks.next() {
        Some(Ok(b)) => b,
        Some(Err(_)) | None => return Err("no PEM block `-----BEGIN PRIVATE KEY-----`".into()),
    };
    if blocks.next().is_some() {
        return Err("more than one PEM block: give the one private key only".into());
    }
    match block.label.as_str() {
        "PRIVATE KEY" => {}
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
            return Err(format!(
                "the key is `{}`; give it as PKCS#8 (`openssl pkcs8 -topk8 -nocrypt -in KEY`)",
                block.label
            ))
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err("the key is encrypted; give it unencrypted (`openssl pkcs8 -topk8 -nocrypt -in KEY`); the config file and the state dir are readable by root only".into())
        }
        other => {
            return Err(format!(
                "PEM block is `{}`, not `PRIVATE KEY`",
                configsync::area::shown(other)
            ))
        }
    }
    let kp = rcgen::KeyPair::try_from(block.contents.as_slice()).map_err(|_| {
        "the key does not parse (supported: ECDSA P-256 and P-384, Ed25519, RSA of 2048 bits or more)"
            .to_string()
    })?;
    Ok(rcgen::PublicKeyData::der_bytes(&kp).to_vec())
}

/// Checks one certificate and its key; the error says what is wrong and which field.
pub fn inspect(cert_pem: &str, key_pem: &str) -> Result<CertInfo, (bool, String)> {
    let info = parse_cert(cert_pem).map_err(|e| (false, e))?;
    let key = key_public_key(key_pem).map_err(|e| (true, e))?;
    if cert_public_key(cert_pem).as_deref() != Some(key.as_slice()) {
        return Err((
            true,
            "the key does not match the certificate (its public key is another)".into(),
        ));
    }
    if info.not_after < info.not_before {
        return Err((false, "the certificate expires before it begins".into()));
    }
    Ok(info)
}

/// Checks the `[[certificates]]` entries; errors are located at the field at fault.
pub fn certificates(errs: &mut Errors<'_>, raw: &[Spanned<RawCertificate>]) -> Vec<Certificate> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut warned = std::collections::BTreeSet::new();
    for r in raw.iter().map(Spanned::get_ref) {
        let name = r.name.get_ref();
        if !valid_name(name) {
            errs.at(
                r.name.span(),
                format!(
                    "certificate name {} must be 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` (it names the files NAME.crt and NAME.key)",
                    configsync::area::shown(name)
                ),
            );
            continue;
        }
        if seen.insert(name.clone(), ()).is_some() {
            errs.at(
                r.name.span(),
                format!("certificate name {name:?} is used twice"),
            );
            continue;
        }
        if let Some(file) = errs.sources.file_of(&r.key.span()) {
            if warned.insert(file.to_path_buf()) {
                super::secret::warn_if_shared(file, "the config file holding certificate keys");
            }
        }
        match inspect(r.cert.get_ref(), r.key.get_ref()) {
            Ok(info) => out.push(Certificate {
                name: name.clone(),
                cert_pem: normalized(r.cert.get_ref()),
                key_pem: KeyPem(normalized(r.key.get_ref())),
                info,
            }),
            Err((in_key, e)) => {
                let (span, field) = if in_key {
                    (r.key.span(), "key")
                } else {
                    (r.cert.span(), "cert")
                };
                errs.at(span, format!("certificate {name:?}: {field}: {e}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cn: &str) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec![cn.to_string()]).expect("rcgen");
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_is_inspected() {
        let (c, k) = pair("fw.example.org");
        let info = inspect(&c, &k).expect("valid");
        assert!(
            info.subject.contains("CN=rcgen self signed cert"),
            "{info:?}"
        );
        assert!(info.not_after > info.not_before);
        assert_eq!(info.sha256.len(), 64);
        assert_eq!(info.chain, 0);
        // A chain after the leaf is counted.
        let (c2, _) = pair("ca.example.org");
        assert_eq!(inspect(&format!("{c}{c2}"), &k).expect("chain").chain, 1);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_without_showing_it() {
        let (c, _) = pair("a.example.org");
        let (_, k) = pair("b.example.org");
        let (in_key, e) = inspect(&c, &k).expect_err("mismatch");
        assert!(in_key);
        assert!(e.contains("does not match"), "{e}");
        let body: String = k.lines().nth(1).unwrap_or("").to_string();
        assert!(!e.contains(&body));
    }

    #[test]
    fn broken_pem_is_refused() {
        let (c, k) = pair("a.example.org");
        assert!(!inspect("not a pem", &k).expect_err("no pem").0);
        assert!(inspect(&c, &c).expect_err("cert as key").0);
        assert!(!inspect(&k, &k).expect_err("key as cert").0);
        let cut = c.replace(&c.lines().nth(2).unwrap_or("").to_string(), "AAAA");
        assert!(!inspect(&cut, &k).expect_err("garbled").0);
        let rsa = k.replace("PRIVATE KEY", "EC PRIVATE KEY");
        let (_, e) = inspect(&c, &rsa).expect_err("sec1");
        assert!(e.contains("PKCS#8"), "{e}");
        let (_, e) = inspect(&c, &format!("{k}{k}")).expect_err("two keys");
        assert!(e.contains("more than one"), "{e}");
    }

    #[test]
    fn names_are_file_names() {
        for ok in ["web", "web.example.org", "a_b-c.1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    const NODE: &str = "[node]\nname = \"fw1\"\ncontrol_socket = \"/run/t.sock\"\n[interfaces]\nlan = \"eth0\"\n[carp]\npassphrase = \"s3cret\"\n";

    fn entry(name: &str, c: &str, k: &str) -> String {
        format!("\n[[certificates]]\nname = {name:?}\ncert = '''\n{c}'''\nkey = '''\n{k}'''\n")
    }

    fn build(text: &str) -> Result<crate::config::Config, Vec<String>> {
        let file = std::path::Path::new("t.toml");
        crate::config::ParsedFile::parse(file, text.to_string())
            .and_then(|p| crate::config::Config::build(p, file))
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn errors_are_located_and_name_the_certificate() {
        let (c, k) = pair("a.example.org");
        let (_, other) = pair("b.example.org");
        let good = format!("{NODE}{}", entry("web", &c, &k));
        let cfg = build(&good).expect("valid");
        assert_eq!(cfg.certificates.len(), 1);
        assert_eq!(cfg.certificates[0].key_pem.expose(), k);
        // The key of another certificate: the error points at `key`, line and column.
        let bad = format!("{NODE}{}", entry("web", &c, &other));
        let e = build(&bad).expect_err("mismatch");
        let key_line = bad
            .lines()
            .position(|l| l.starts_with("key = "))
            .expect("key")
            + 1;
        assert!(
            e[0].starts_with(&format!(
                "t.toml:{key_line}:7: certificate \"web\": key: the key does not match"
            )),
            "{e:?}"
        );
        assert!(!e[0].contains(k.lines().nth(1).unwrap_or("-")));
        // Names are unique; the second is the one at fault.
        let twice = format!("{good}{}", entry("web", &c, &k));
        let e = build(&twice).expect_err("twice");
        let second = twice
            .match_indices("name = \"web\"")
            .nth(1)
            .expect("second")
            .0;
        let line = twice[..second].matches('\n').count() + 1;
        assert_eq!(
            e,
            vec![format!(
                "t.toml:{line}:8: certificate name \"web\" is used twice"
            )]
        );
        let e = build(&format!("{NODE}{}", entry("../x", &c, &k))).expect_err("name");
        assert!(e[0].contains("certificate name \"../x\" must be"), "{e:?}");
        let e =
            build(&format!("{NODE}{}key_file = \"/x\"\n", entry("w", &c, &k))).expect_err("field");
        assert!(e[0].contains("key_file"), "{e:?}");
    }

    #[test]
    fn debug_hides_the_key() {
        let k = KeyPem("-----BEGIN PRIVATE KEY-----\nSECRET\n".into());
        assert!(!format!("{k:?}").contains("SECRET"));
    }
}
