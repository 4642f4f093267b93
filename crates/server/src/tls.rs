//! Transport security: rustls server and client configurations built from the `[tls]` section,
//! reloadable on SIGHUP, and the node identity carried by a node's certificate.
//!
//! A node certificate names its node with a SAN URI `custos://node/<id>` (read by
//! [`node_id_of`]) and a SAN DNS name `custos-node-<id>` (what peer clients verify, see
//! [`node_server_name`]). The peer listener requires a client certificate from the cluster CA
//! and the peer service checks that the certificate's node id is the request's `from`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::config::TlsSettings;

/// The SAN URI prefix that names a node in its certificate.
pub const NODE_URI_PREFIX: &str = "custos://node/";

/// The DNS name a node certificate carries and peer clients verify: `custos-node-<id>`.
pub fn node_server_name(id: u64) -> String {
    format!("custos-node-{id}")
}

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Every certificate in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no certificate"));
    }
    Ok(certs)
}

/// The private key in a PEM file. The error never contains key material. A key file others
/// may read is used, with a warning.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the TLS private key file is readable by group or others: chmod 600 it"
            );
        }
    }
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        invalid(
            path,
            "holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })
}

pub(crate) fn read_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node id a certificate names with a SAN URI `custos://node/<id>`; none when it names
/// none, or more than one.
pub fn node_id_of(cert: &[u8]) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri
                .strip_prefix(NODE_URI_PREFIX)
                .map(|id| id.parse::<u64>().ok()),
            _ => None,
        });
    match (ids.next(), ids.next()) {
        (Some(Some(id)), None) if id != 0 => Some(id),
        _ => None,
    }
}

/// Which listener a server configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Peer traffic: a client certificate from the cluster CA is required.
    Peer,
    /// The SDK (gRPC) listener: client certificates from `client_ca_file` when set.
    Sdk,
    /// The REST gateway: like the SDK, over HTTP/1.1.
    Rest,
    /// Prometheus metrics (`GET /metrics`) over HTTPS: no client certificate.
    Metrics,
}

impl Listener {
    /// The listener's name in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Peer => "peer",
            Listener::Sdk => "sdk",
            Listener::Rest => "rest",
            Listener::Metrics => "metrics",
        }
    }
}

/// A rustls server configuration for `listener`, read from the files `settings` names.
pub fn server_config(
    settings: &TlsSettings,
    listener: Listener,
) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(&settings.cert_file)?;
    let key = read_key(&settings.key_file)?;
    let client_ca = match listener {
        Listener::Peer => Some(settings.ca_file.as_path()),
        Listener::Sdk | Listener::Rest => settings.client_ca_file.as_deref(),
        Listener::Metrics => None,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(path) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(read_roots(path)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = match listener {
        Listener::Peer | Listener::Sdk => vec![b"h2".to_vec()],
        Listener::Rest | Listener::Metrics => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// A TLS server configuration that SIGHUP can replace; connections accepted afterwards use the
/// new certificate, key and CAs, established ones keep theirs.
pub struct ReloadableServer {
    listener: Listener,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ReloadableServer {
    pub fn new(settings: &TlsSettings, listener: Listener) -> Result<ReloadableServer, TlsError> {
        Ok(ReloadableServer {
            listener,
            current: RwLock::new(Arc::new(server_config(settings, listener)?)),
        })
    }

    /// Reads the files into a configuration [`ReloadableServer::install`] can put in force.
    pub fn prepare(&self, settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(Arc::new(server_config(settings, self.listener)?))
    }

    /// Puts a prepared configuration in force for connections accepted from now on.
    pub fn install(&self, fresh: Arc<rustls::ServerConfig>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The bounds of one listener's accept loop (`[limits]`).
#[derive(Clone)]
pub struct AcceptLimits {
    pub listener: Listener,
    /// TLS handshakes in progress at once; connections beyond are closed at once.
    pub handshakes: usize,
    pub handshake_timeout: Duration,
    /// Open connections per client IP address (none: unlimited, for the peer and metrics
    /// listeners).
    pub per_address: Option<usize>,
    /// Connections closed by these bounds, by listener and reason.
    pub refused: crate::metrics::ConnectionsRefused,
}

impl AcceptLimits {
    /// The bounds `limits` sets for `listener`.
    pub fn new(
        listener: Listener,
        limits: &crate::config::LimitSettings,
        refused: crate::metrics::ConnectionsRefused,
    ) -> AcceptLimits {
        AcceptLimits {
            listener,
            handshakes: limits.max_tls_handshakes,
            handshake_timeout: Duration::from_millis(limits.tls_handshake_timeout_ms),
            per_address: matches!(listener, Listener::Sdk | Listener::Rest)
                .then_some(limits.max_connections_per_address),
            refused,
        }
    }

    fn refuse(&self, reason: &'static str) {
        self.refused.inc(self.listener.label(), reason);
    }
}

/// An accepted connection, counted against its client address for as long as it is open.
pub struct Tracked<S> {
    inner: S,
    _address: Option<crate::bounds::AddressSlot>,
}

impl<S> Tracked<S> {
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Tracked<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Connections accepted by [`accept_tls`] or [`accept_plain`], with their client address.
pub type Accepted<S> = tokio::sync::mpsc::Receiver<(Tracked<S>, SocketAddr)>;

/// Accepts TCP connections on `listener` while `tx` is open, counting each against its client
/// address when `limits` says so (a connection over the bound is closed at once), and hands
/// each to `handle`.
fn accept_loop<S: Send + 'static>(
    listener: TcpListener,
    limits: AcceptLimits,
    tx: tokio::sync::mpsc::Sender<(Tracked<S>, SocketAddr)>,
    mut handle: impl FnMut(
            TcpStream,
            SocketAddr,
            Option<crate::bounds::AddressSlot>,
            &tokio::sync::mpsc::Sender<(Tracked<S>, SocketAddr)>,
        ) + Send
        + 'static,
) {
    let per_address = limits.per_address.map(crate::bounds::PerAddress::new);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let slot = match &per_address {
                Some(table) => match table.try_open(addr.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        limits.refuse("address_limit");
                        tracing::debug!(listener = ?limits.listener, %addr, "refused a connection: too many open from this address");
                        continue;
                    }
                },
                None => None,
            };
            let _ = tcp.set_nodelay(true);
            handle(tcp, addr, slot, &tx);
        }
    });
}

/// Accepts plaintext TCP connections on `listener` within `limits` (connections per address).
pub fn accept_plain(listener: TcpListener, limits: AcceptLimits) -> Accepted<TcpStream> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    accept_loop(listener, limits, tx, |tcp, addr, slot, tx| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let conn = Tracked {
                inner: tcp,
                _address: slot,
            };
            let _ = tx.send((conn, addr)).await;
        });
    });
    rx
}

/// Accepts TCP connections on `listener` and yields those that complete a TLS handshake with
/// the configuration in force. At most `limits.handshakes` handshakes run at once (a
/// connection beyond is closed at once) and each must finish within `limits.handshake_timeout`,
/// so connections that never finish their handshake hold nothing for long. Failures are logged
/// at debug level (a scanner must not fill the log) and counted.
pub fn accept_tls(
    listener: TcpListener,
    tls: Arc<ReloadableServer>,
    limits: AcceptLimits,
) -> Accepted<TlsStream<TcpStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.handshakes));
    let accept_limits = limits.clone();
    accept_loop(listener, accept_limits, tx, move |tcp, addr, slot, tx| {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            limits.refuse("handshake_limit");
            tracing::debug!(listener = ?limits.listener, %addr, "refused a connection: too many TLS handshakes in progress");
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let (tx, limits) = (tx.clone(), limits.clone());
        tokio::spawn(async move {
            let kind = limits.listener;
            let handshake =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => {
                    let conn = Tracked {
                        inner: stream,
                        _address: slot,
                    };
                    let _ = tx.send((conn, addr)).await;
                }
                Ok(Err(e)) => {
                    limits.refuse("handshake_failed");
                    tracing::debug!(listener = ?kind, %addr, "TLS handshake failed: {e}")
                }
                Err(_) => {
                    limits.refuse("handshake_timeout");
                    tracing::debug!(listener = ?kind, %addr, "TLS handshake timed out")
                }
            }
        });
    });
    rx
}

/// Accepted connections as an axum listener (the REST gateway and the metrics endpoint).
pub struct AxumIncoming<S> {
    pub addr: SocketAddr,
    pub accepted: Accepted<S>,
}

impl<S> axum::serve::Listener for AxumIncoming<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = Tracked<S>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The acceptor only stops when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// The peer client's TLS: the cluster CA to verify peers and this node's certificate to present.
/// New peer connections use the configuration in force; SIGHUP replaces it.
/// How this node reaches its peers over TLS: by node id, and (joining) whichever member.
#[derive(Clone)]
pub struct PeerClientConfig {
    tonic: tonic::transport::ClientTlsConfig,
    join: Arc<rustls::ClientConfig>,
}

/// Accepts a server certificate that chains to the cluster CA and names some node, verified
/// as that node's (`custos-node-<id>`); for joining, when the member's id is not known.
#[derive(Debug)]
struct AnyMember {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for AnyMember {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let id = node_id_of(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))?;
        let name = rustls::pki_types::ServerName::try_from(node_server_name(id))
            .map_err(|_| rustls::Error::General("bad node name".into()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub struct PeerClientTls {
    current: RwLock<Option<PeerClientConfig>>,
    /// Bumped by every install, so cached channels know they are stale.
    generation: std::sync::atomic::AtomicU64,
}

impl PeerClientTls {
    /// `None` settings: plaintext peers (`insecure = true`).
    pub fn new(settings: Option<&TlsSettings>) -> Result<PeerClientTls, TlsError> {
        Ok(PeerClientTls {
            current: RwLock::new(settings.map(Self::build).transpose()?),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn build(settings: &TlsSettings) -> Result<PeerClientConfig, TlsError> {
        let ca = std::fs::read(&settings.ca_file).map_err(|source| TlsError::Read {
            path: settings.ca_file.display().to_string(),
            source,
        })?;
        // Parse now, so a bad file is reported at start-up or reload, not on first connect.
        read_certs(&settings.ca_file)?;
        read_certs(&settings.cert_file)?;
        read_key(&settings.key_file)?;
        let cert = read(&settings.cert_file)?;
        let key = read(&settings.key_file)?;
        let tonic = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .identity(tonic::transport::Identity::from_pem(cert, key));
        // Joining: the member answering is not known by id yet, so its certificate is
        // checked for the cluster CA and for naming some node, whichever.
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(read_roots(&settings.ca_file)?),
            provider(),
        )
        .build()
        .map_err(|e| invalid(&settings.ca_file, format!("not a usable CA: {e}")))?;
        let mut join = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyMember { inner: verifier }))
            .with_client_auth_cert(
                read_certs(&settings.cert_file)?,
                read_key(&settings.key_file)?,
            )?;
        join.alpn_protocols = vec![b"h2".to_vec()];
        Ok(PeerClientConfig {
            tonic,
            join: Arc::new(join),
        })
    }

    /// A connected channel to whichever member listens at `addr`, for a node that joins: the
    /// server's certificate must chain to the cluster CA and name a node (any node).
    pub async fn join_channel(&self, addr: &str) -> Result<tonic::transport::Channel, String> {
        let join = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.join.clone());
        let Some(config) = join else {
            return tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await
                .map_err(|e| e.to_string());
        };
        let addr = addr.to_string();
        let connector = tower::service_fn(move |_: http::Uri| {
            let (config, addr) = (config.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::try_from("custos-member")
                    .map_err(std::io::Error::other)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        tonic::transport::Endpoint::from_static("http://custos-member")
            .connect_timeout(Duration::from_secs(2))
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                )
            })
    }

    /// Reads the files into a configuration [`PeerClientTls::install`] can put in force.
    pub fn prepare(&self, settings: &TlsSettings) -> Result<PeerClientConfig, TlsError> {
        Self::build(settings)
    }

    /// Puts a prepared configuration in force for connections made from now on.
    pub fn install(&self, fresh: PeerClientConfig) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Changes whenever new TLS material is installed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether peers are reached over TLS.
    pub fn enabled(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// A lazily connecting channel to node `target` at `addr`, verifying that the server's
    /// certificate names `target`.
    pub fn channel(&self, target: u64, addr: &str) -> Option<tonic::transport::Channel> {
        let tls = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.tonic.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls.domain_name(node_server_name(target)))
                .ok()?;
        }
        Some(endpoint.connect_lazy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> CertificateDer<'static> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tls")
            .join(format!("{name}.pem"));
        read_certs(&path).unwrap().remove(0)
    }

    #[test]
    fn the_node_id_comes_from_exactly_one_custos_node_uri() {
        assert_eq!(node_id_of(&cert("node7")), Some(7));
        // Two node URIs, none, node 0 and a non-number name no node.
        assert_eq!(node_id_of(&cert("two")), None);
        assert_eq!(node_id_of(&cert("none")), None);
        assert_eq!(node_id_of(&cert("zero")), None);
        assert_eq!(node_id_of(&cert("junk")), None);
        assert_eq!(node_id_of(b"not a certificate"), None);
    }

    #[test]
    fn unreadable_or_empty_files_are_refused_without_echoing_them() {
        let dir = std::env::temp_dir().join(format!("custos-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "SECRET-LOOKING-TEXT").unwrap();
        let err = read_key(&bad).unwrap_err().to_string();
        assert!(!err.contains("SECRET-LOOKING-TEXT"), "{err}");
        assert!(read_certs(&bad).is_err());
        assert!(read_certs(&dir.join("missing.pem")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
