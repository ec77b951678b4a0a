//! A certificate authority made at run time, for tests over TLS: its CA
//! certificate, and a server certificate it signed for `127.0.0.1` and
//! `localhost`, written as PEM files into a directory of the test's own.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rollcall_http::tls::{Acceptor, CaFile, TlsArgs};

/// A CA and one server certificate it signed, as files.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    /// A new CA (named `name`) and server certificate, written under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "rollcall test service");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &ca).unwrap();

        std::fs::create_dir_all(dir).unwrap();
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), &cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &key_pem).unwrap();
        Self {
            dir: dir.to_owned(),
            cert_pem,
            key_pem,
        }
    }

    /// The CA certificate's file (what clients trust).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Settings that serve with the server certificate and trust this CA.
    pub fn args(&self) -> TlsArgs {
        TlsArgs {
            tls_cert: Some(self.cert_file()),
            tls_key: Some(self.key_file()),
            trust: CaFile {
                ca_file: Some(self.ca_file()),
            },
        }
    }

    /// The flags that say the same to the `rollcall` binary.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--tls-cert", self.cert_file()),
            ("--tls-key", self.key_file()),
            ("--ca-file", self.ca_file()),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.to_string_lossy().into_owned()])
        .collect()
    }

    pub fn acceptor(&self) -> Acceptor {
        Acceptor::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// An HTTP client that trusts this CA only (and follows no redirects).
    pub fn client(&self) -> reqwest::Client {
        self.args()
            .client(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()))
            .unwrap()
            .build()
            .unwrap()
    }
}
