//! HTTPS with rustls and the ring provider (never OpenSSL or aws-lc).

use std::{future::Future, path::Path, path::PathBuf, sync::Arc, time::Duration};

use axum::Router;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;

use crate::{Result, ServerLimits};

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable or not PEM.
    #[error("cannot read certificate {}", path.display())]
    ReadCert {
        /// The certificate file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate found in {}", path.display())]
    NoCert {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file is missing, unreadable or holds no private key.
    #[error("cannot read a private key from {}", path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The provider offers none of the safe default protocol versions.
    #[error("TLS protocol versions")]
    Protocols(#[source] rustls::Error),
    /// The client CA bundle is not usable.
    #[error("client CA")]
    ClientCa(#[source] rustls::Error),
    /// rustls refused the certificate chain with this key.
    #[error("certificate and key do not match")]
    KeyMismatch(#[source] rustls::Error),
    /// The session ticket key could not be made.
    #[error("TLS session tickets")]
    Tickets(#[source] rustls::Error),
}

/// Set on every request that arrived over TLS: whether the client presented a certificate
/// the server verified against its client CA ([`server_config_with_client_ca`]). Without a
/// client CA no certificate is asked for and `verified` is always false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert {
    /// A client certificate chained to the configured CA was presented.
    pub verified: bool,
}

/// Installs ring as the process-wide rustls provider (idempotent).
pub fn install_provider() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server config from PEM files, offering HTTP/2 and HTTP/1.1 via ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    server_config_with_client_ca(cert, key, None)
}

/// Like [`server_config`], and with `client_ca` (a PEM bundle) clients may present a
/// certificate chained to it; those requests carry a verified [`ClientCert`]. A client
/// without a certificate is still admitted (operators' tools, probes): what a request may do
/// without one is the application's decision.
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = match client_ca {
        None => rustls::server::WebPkiClientVerifier::no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(TlsError::ClientCa)?;
            }
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::ClientCa(rustls::Error::General(e.to_string())))?
        }
    };
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(TlsError::KeyMismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // A client that reconnects (after `Connection: close`, an idle timeout or a refusal under
    // load) resumes with a ticket instead of paying for a full handshake, whichever server
    // thread it lands on.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Tickets)?;
    Ok(config)
}

/// The certificates of a PEM file; a file without one is an error.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::ReadCert {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// TLS handshakes in the shared accept loop; each connection's requests carry its
/// [`ClientCert`].
#[derive(Clone)]
struct TlsAccept {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl crate::conn::Accept for TlsAccept {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

    async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> Option<(Self::Io, axum::http::Extensions)> {
        let stream = match self.acceptor.accept(tcp).await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(error = %err, "TLS handshake failed");
                return None;
            }
        };
        // rustls has verified any certificate it kept against the client CA.
        let verified = stream
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let mut extensions = axum::http::Extensions::new();
        extensions.insert(ClientCert { verified });
        Some((stream, extensions))
    }
}

/// Serves `app` over HTTPS on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish for at most `grace`. Connections are bounded by
/// [`ServerLimits::default`].
///
/// Accepted sockets get `TCP_NODELAY`, as in [`crate::serve`].
pub async fn serve_tls<F>(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: F,
    grace: Duration,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_tls_with_limits(
        listener,
        app,
        config,
        shutdown,
        grace,
        ServerLimits::default(),
    )
    .await
}

/// [`serve_tls`] with the connection bounds of `limits`; the TLS handshake must end within
/// [`ServerLimits::header_read_timeout`].
pub async fn serve_tls_with_limits<F>(
    listener: TcpListener,
    app: Router,
    config: Arc<ServerConfig>,
    shutdown: F,
    grace: Duration,
    limits: ServerLimits,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    install_provider();
    let acceptor = TlsAccept {
        acceptor: tokio_rustls::TlsAcceptor::from(config),
    };
    crate::conn::run(listener, app, shutdown, Some(grace), limits, acceptor).await
}
