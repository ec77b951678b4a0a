//! TLS on every hop: a service serves `https` with `--tls-cert`/`--tls-key`
//! (rustls, no OpenSSL), and every HTTP client a service or the command line
//! builds verifies servers against the system's roots, or only against
//! `--ca-file` when one is given (an internal CA: the public roots cannot
//! vouch for a service).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// TLS settings (flatten into a service's or a command's settings).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs
    /// --tls-key.
    #[arg(long, env = "ROLLCALL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ROLLCALL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub trust: CaFile,
}

/// Whom a client trusts (flatten into a command that only calls out).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CaFile {
    /// Trust only the CAs in this PEM file for `https` calls (instead of the
    /// system's roots).
    #[arg(long, env = "ROLLCALL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl CaFile {
    /// `builder`, verifying servers against `--ca-file` only when one is
    /// given (the system's roots otherwise).
    pub fn client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        let Some(path) = &self.ca_file else {
            return Ok(builder);
        };
        let roots =
            reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|e| TlsError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if roots.is_empty() {
            return Err(TlsError::Ca {
                path: path.clone(),
                reason: "no PEM certificate in it".to_owned(),
            });
        }
        Ok(builder.tls_certs_only(roots))
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("--tls-cert and --tls-key go together")]
    Half,
    #[error("the certificate and key cannot serve TLS: {0}")]
    Config(String),
    #[error("the CA file {path} cannot be used: {reason}")]
    Ca { path: PathBuf, reason: String },
}

/// Accepts TLS connections for a server (cheap to clone).
#[derive(Clone)]
pub struct Acceptor(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor(..)")
    }
}

impl Acceptor {
    /// An acceptor serving `chain` (leaf first) with `key`; HTTP/1.1 only.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        // Explicitly aws-lc-rs: another crate in a program may enable ring
        // too, and then rustls would not pick a provider on its own.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// An acceptor from PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Self::new(
            chain_from_pem(cert, Path::new("(certificate)"))?,
            key_from_pem(key, Path::new("(key)"))?,
        )
    }

    /// The handshake on an accepted connection.
    pub fn accept<IO>(&self, stream: IO) -> tokio_rustls::Accept<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.0.accept(stream)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn chain_from_pem(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn key_from_pem(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl TlsArgs {
    /// Whether the service serves HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// `https` when serving TLS, `http` otherwise: the scheme of the
    /// service's own URL.
    pub fn scheme(&self) -> &'static str {
        if self.serves_tls() { "https" } else { "http" }
    }

    /// The acceptor for `--tls-cert`/`--tls-key`, or none (plain HTTP).
    /// Read once, at start: a file that cannot be used stops the service
    /// before it listens.
    pub fn acceptor(&self) -> Result<Option<Acceptor>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Acceptor::new(
                chain_from_pem(&read(cert)?, cert)?,
                key_from_pem(&read(key)?, key)?,
            )
            .map(Some),
            _ => Err(TlsError::Half),
        }
    }

    /// `builder`, verifying servers as [`CaFile::client`] does.
    pub fn client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        self.trust.client(builder)
    }

    /// The settings from the environment alone (`ROLLCALL_TLS_CERT`,
    /// `ROLLCALL_TLS_KEY`, `ROLLCALL_CA_FILE`): for code that has no flags
    /// of its own, like a library service started by a test.
    pub fn from_env() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            tls_cert: path("ROLLCALL_TLS_CERT"),
            tls_key: path("ROLLCALL_TLS_KEY"),
            trust: CaFile {
                ca_file: path("ROLLCALL_CA_FILE"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_pair_or_garbage_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("rollcall-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let half = TlsArgs {
            tls_cert: Some(junk.clone()),
            ..TlsArgs::default()
        };
        assert!(matches!(half.acceptor(), Err(TlsError::Half)));
        let both = TlsArgs {
            tls_cert: Some(junk.clone()),
            tls_key: Some(junk.clone()),
            trust: CaFile::default(),
        };
        assert!(matches!(
            both.acceptor(),
            Err(TlsError::NoCertificate { .. })
        ));
        let ca = CaFile {
            ca_file: Some(junk),
        };
        assert!(matches!(
            ca.client(reqwest::Client::builder()),
            Err(TlsError::Ca { .. })
        ));
        let missing = CaFile {
            ca_file: Some(dir.join("missing.pem")),
        };
        assert!(matches!(
            missing.client(reqwest::Client::builder()),
            Err(TlsError::Read { .. })
        ));
        assert!(TlsArgs::default().acceptor().unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
