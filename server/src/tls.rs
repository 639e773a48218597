//! HTTPS: phones give the camera only to secure contexts, so a FaceGate on a
//! LAN must speak TLS. Either with a certificate and key given as PEM files,
//! or with a self-signed certificate it makes once and keeps in the data
//! directory (so that a phone's "proceed anyway" survives restarts).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::write_private;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration from PEM files.
pub fn config_from_pem(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version is available")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not belong together")?;
    Ok(Arc::new(config))
}

/// The self-signed certificate kept in `dir` (made on first use, for
/// `localhost`, `127.0.0.1` and `names`): the paths of its certificate and key.
pub fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert_path, key_path) = (dir.join("self-signed.crt"), dir.join("self-signed.key"));
    let mut wanted = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    wanted.extend(names.iter().cloned());
    let names_path = dir.join("self-signed.names");
    let current = std::fs::read_to_string(&names_path).unwrap_or_default();
    if cert_path.exists() && key_path.exists() && current == wanted.join("\n") {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir)?;
    let made = rcgen::generate_simple_self_signed(wanted.clone())
        .context("cannot make a self-signed certificate (is each --tls-name a host name or IP?)")?;
    write_private(&key_path, &made.signing_key.serialize_pem())?;
    std::fs::write(&cert_path, made.cert.pem())?;
    std::fs::write(&names_path, wanted.join("\n"))?;
    tracing::info!(certificate = %cert_path.display(), names = ?wanted, "made a self-signed certificate");
    Ok((cert_path, key_path))
}

/// A listener that hands axum connections whose TLS handshake is done.
/// Handshakes run in tasks of their own, so a slow or silent client never
/// holds up the others.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // The server has stopped when nobody receives; nothing to do then.
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), &["gate.lan".to_owned()]).unwrap();
        let first = std::fs::read(&cert).unwrap();
        assert!(config_from_pem(&cert, &key).is_ok());
        self_signed(dir.path(), &["gate.lan".to_owned()]).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "the certificate was made again");
        self_signed(dir.path(), &["other.lan".to_owned()]).unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first, "new names need a new certificate");
        assert!(config_from_pem(&cert, &dir.path().join("missing.key")).is_err());
    }
}
