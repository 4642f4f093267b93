//! OpenID provider issuers on a node: one fetcher per provider reads its discovery document and
//! key set over HTTPS, on a schedule and (rate-limited) when a token names an unknown `kid`, and
//! installs the keys in the authenticator's shared key set ([`custos_auth::OidcKeys`]).
//!
//! Verification never waits for the network: a token whose key is not in the set is refused at
//! once, and the fetcher is woken. It fetches no sooner than `min_refetch_interval_secs` after
//! its previous attempt, so a flood of made-up `kid`s costs the provider one request pair per
//! interval. While the provider cannot be reached the last good set stays in force; a node that
//! starts while it is down serves without that issuer's keys (its tokens are refused with
//! `keys_not_loaded`) and retries with backoff. Plain `http://` is never fetched; the provider's
//! certificate must chain to `ca_file`, or to the system trust store when that is unset.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use custos_auth::{
    parse_discovery, parse_jwks, AuthConfig, Authenticator, ConfigError, Jwks, OidcConfig,
    OidcDocError, OidcKeys,
};
use http_body_util::BodyExt as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::rustls;

use crate::tls::{self, TlsError};

/// How long one HTTPS request (connect, handshake, response) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The first retry after a failed fetch; each further failure doubles the wait, up to
/// [`MAX_RETRY`] (and never beyond `refresh_secs`).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Where the system's trust store is looked for when an issuer has no `ca_file` (after
/// `SSL_CERT_FILE`): Debian/Ubuntu/Alpine, Fedora/RHEL, and others.
const SYSTEM_CA_FILES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a fetch failed. The keys in force stay.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("no system trust store found (looked at SSL_CERT_FILE and {SYSTEM_CA_FILES:?}): set oidc.ca_file")]
    NoTrustStore,
    #[error("{url:?} is not a usable https:// URL")]
    BadUrl { url: String },
    #[error("{url}: {error}")]
    Io {
        url: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{url}: {error}")]
    Http {
        url: String,
        #[source]
        error: hyper::Error,
    },
    #[error("{url}: no answer within {FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: {error}")]
    Document {
        url: String,
        #[source]
        error: OidcDocError,
    },
}

/// What a node counts about one provider (metrics; no caller-controlled text).
struct Stats {
    /// When the issuer was configured, then when its keys were last fetched successfully.
    fresh_since: Mutex<Instant>,
    fetches: AtomicU64,
    failures: AtomicU64,
    unknown_kid_refetches: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            fresh_since: Mutex::new(Instant::now()),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            unknown_kid_refetches: AtomicU64::new(0),
        }
    }
}

/// One provider's values at a scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerValues {
    pub issuer: String,
    /// Seconds since its keys were last fetched successfully (since it was configured, if never).
    pub key_set_age_secs: u64,
    pub keys: u64,
    pub fetches: u64,
    pub fetch_failures: u64,
    pub unknown_kid_refetches: u64,
}

struct Entry {
    config: OidcConfig,
    keys: Arc<OidcKeys>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
    fetcher: Option<tokio::task::JoinHandle<()>>,
}

impl Entry {
    fn new(name: &str, config: &OidcConfig, stats: Arc<Stats>) -> Entry {
        let wake = Arc::new(Notify::new());
        let hook = wake.clone();
        Entry {
            config: config.clone(),
            // `notify_one` keeps one wake-up when the fetcher is busy: many unknown kids
            // during a fetch or a cool-down make one more fetch, not one each.
            keys: OidcKeys::new(name, move || hook.notify_one()),
            stats,
            wake,
            fetcher: None,
        }
    }
}

/// The OpenID provider issuers of one node and their fetchers. It outlives the authenticators
/// built from it: a reload keeps the key set and fetcher of an issuer whose settings are the same.
#[derive(Default)]
pub struct OidcRegistry {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl OidcRegistry {
    /// Builds the authenticator for `auth`. OpenID provider issuers whose settings did not
    /// change keep their keys and fetcher; new or changed ones get a fetcher (a changed one
    /// starts from the keys it had); those no longer configured are stopped. On error nothing
    /// changes. Must run inside the Tokio runtime (fetchers are spawned on it).
    pub fn authenticator(&self, auth: &AuthConfig) -> Result<Authenticator, ConfigError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept: Vec<String> = Vec::new();
        let mut fresh: BTreeMap<String, Entry> = BTreeMap::new();
        let authenticator = Authenticator::from_config_with(
            auth,
            &|var| std::env::var_os(var),
            &mut |name, config| match entries.get(name) {
                Some(old) if old.config == *config => {
                    kept.push(name.to_string());
                    old.keys.clone()
                }
                old => {
                    let stats = old.map_or_else(|| Arc::new(Stats::new()), |o| o.stats.clone());
                    let entry = Entry::new(name, config, stats);
                    if let Some(old) = old {
                        entry.keys.carry_over(&old.keys);
                    }
                    let keys = entry.keys.clone();
                    fresh.insert(name.to_string(), entry);
                    keys
                }
            },
        )?;
        let old = std::mem::take(&mut *entries);
        for (name, entry) in old {
            if kept.contains(&name) {
                entries.insert(name, entry);
            } else if let Some(task) = entry.fetcher {
                task.abort();
            }
        }
        for (name, mut entry) in fresh {
            tracing::info!(issuer = %name, audience = %entry.config.audience, "trusting an OpenID provider: fetching its keys");
            entry.fetcher = Some(tokio::spawn(fetch_loop(
                name.clone(),
                entry.config.clone(),
                entry.keys.clone(),
                entry.stats.clone(),
                entry.wake.clone(),
            )));
            entries.insert(name, entry);
        }
        Ok(authenticator)
    }

    /// Every provider's values now, by issuer name.
    pub fn values(&self) -> Vec<IssuerValues> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .map(|(name, e)| IssuerValues {
                issuer: name.clone(),
                key_set_age_secs: e
                    .stats
                    .fresh_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .elapsed()
                    .as_secs(),
                keys: e.keys.len() as u64,
                fetches: e.stats.fetches.load(Ordering::Relaxed),
                fetch_failures: e.stats.failures.load(Ordering::Relaxed),
                unknown_kid_refetches: e.stats.unknown_kid_refetches.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops every fetcher (the node is stopping).
    pub fn stop(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.values_mut() {
            if let Some(task) = entry.fetcher.take() {
                task.abort();
            }
        }
    }
}

impl Drop for OidcRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fetches `issuer`'s keys now, then every `refresh_secs` (after a failure: with backoff), and
/// when woken by an unknown `kid`, never sooner than `min_refetch_interval_secs` after the
/// previous attempt.
async fn fetch_loop(
    issuer: String,
    config: OidcConfig,
    keys: Arc<OidcKeys>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
) {
    let refresh = Duration::from_secs(config.refresh_secs);
    let min_gap = Duration::from_secs(config.min_refetch_interval_secs);
    let mut retry = FIRST_RETRY;
    loop {
        let attempt = Instant::now();
        let next = match fetch_keys(&issuer, &config).await {
            Ok(jwks) => {
                retry = FIRST_RETRY;
                stats.fetches.fetch_add(1, Ordering::Relaxed);
                *stats.fresh_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                install(&issuer, &keys, jwks);
                attempt + refresh
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY).min(refresh.max(FIRST_RETRY));
                tracing::warn!(
                    issuer = %issuer,
                    keys_in_force = keys.len(),
                    retry_in = ?wait,
                    "fetching the OpenID provider's keys failed: {e}"
                );
                attempt + wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = wake.notified() => {
                let earliest = attempt + min_gap;
                tokio::time::sleep_until(earliest.min(next)).await;
                if earliest < next {
                    stats.unknown_kid_refetches.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(issuer = %issuer, "a token named a key id the set lacks: fetching the keys again");
                }
            }
        }
    }
}

/// Puts a fetched set in force, and says so when it changed.
fn install(issuer: &str, keys: &OidcKeys, jwks: Jwks) {
    let kids: Vec<String> = jwks
        .kids()
        .iter()
        .map(|k| k.unwrap_or("(none)").to_string())
        .collect();
    let skipped: Vec<String> = jwks.skipped().to_vec();
    if keys.install(jwks) {
        for note in &skipped {
            tracing::info!(issuer = %issuer, "ignoring a published key: {note}");
        }
        if kids.is_empty() {
            tracing::warn!(issuer = %issuer, "the OpenID provider publishes no usable key: its tokens are refused");
        } else {
            tracing::info!(issuer = %issuer, ?kids, "installed the OpenID provider's keys");
        }
    }
}

/// The provider's key set: its discovery document, then the `jwks_uri` it names.
async fn fetch_keys(issuer: &str, config: &OidcConfig) -> Result<Jwks, FetchError> {
    let tls = client_config(config.ca_file.as_deref())?;
    let discovery = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = get(&tls, &discovery).await?;
    let jwks_uri = parse_discovery(&body, issuer).map_err(|error| FetchError::Document {
        url: discovery.clone(),
        error,
    })?;
    let body = get(&tls, &jwks_uri).await?;
    parse_jwks(&body).map_err(|error| FetchError::Document {
        url: jwks_uri,
        error,
    })
}

/// A TLS client trusting `ca_file`, or the system's trust store. Read at every fetch, so a
/// replaced CA file needs no reload.
fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    let roots = match ca_file {
        Some(path) => tls::read_roots(path)?,
        None => system_roots()?,
    };
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::from)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn system_roots() -> Result<rustls::RootCertStore, FetchError> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(std::path::PathBuf::from));
    for path in candidates {
        let Ok(certs) = tls::read_certs(&path) else {
            continue;
        };
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added > 0 {
            return Ok(roots);
        }
    }
    Err(FetchError::NoTrustStore)
}

/// `GET url` over HTTPS (HTTP/1.1), the body if the status is 2xx. No redirects are followed.
async fn get(tls: &Arc<rustls::ClientConfig>, url: &str) -> Result<Bytes, FetchError> {
    let bad_url = || FetchError::BadUrl {
        url: url.to_string(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad_url())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad_url());
    }
    let authority = uri.authority().ok_or_else(bad_url)?.clone();
    if authority.as_str().contains('@') {
        return Err(bad_url());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let server_name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| bad_url())?;
    let io = |error| FetchError::Io {
        url: url.to_string(),
        error,
    };
    let http = |error| FetchError::Http {
        url: url.to_string(),
        error,
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(io)?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(io)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(http)?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "custos")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|_| bad_url())?;
        let response = sender.send_request(request).await.map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => http(*e),
                Err(_) => FetchError::TooLarge {
                    url: url.to_string(),
                },
            })?
            .to_bytes();
        drop(driver);
        Ok(body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| FetchError::Timeout {
            url: url.to_string(),
        })?
}

/// Stops the connection task when the request is done or abandoned (timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
