//! Node configuration: the TOML file, with command-line overrides applied by the binary.

use custos_auth::AuthConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberConfig {
    pub id: u64,
    /// Peer address (Raft and forwarding), `host:port`.
    pub raft_addr: String,
    /// SDK address clients use, `host:port`.
    pub sdk_addr: String,
}

/// Raft timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (the rest are purged), so a follower that lags a
    /// little catches up from the log instead of a whole snapshot.
    pub keep_log_entries: u64,
    /// How long one snapshot chunk may take to reach a member and be taken, in milliseconds.
    /// The last chunk's answer waits for the whole install, so this bounds an install too:
    /// openraft's default (200 ms) made a loaded member re-receive the same snapshot forever
    /// (the leader gave up on each install that succeeded a moment later).
    pub install_snapshot_timeout_ms: u64,
    /// Log entries in one AppendEntries call, at most. openraft gives each call one heartbeat
    /// interval; an entry can be a batch of up to 128 writes, and openraft's default (300
    /// entries, megabytes under load) made calls to a lagging follower outlast that deadline
    /// again and again, so it never caught up (issue #20's overload run).
    pub max_payload_entries: u64,
    /// Pre-Vote (Raft thesis §9.6): a follower asks whether it *would* win before it raises
    /// its term and votes for itself. Keeps a member that cannot win (its log is behind, or it
    /// was cut off) from bumping the term and refusing the member that can, which cost a whole
    /// extra election round after a leader was killed (`BENCHMARKS.md`, failover).
    pub pre_vote: bool,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_every: 5000,
            keep_log_entries: 1000,
            install_snapshot_timeout_ms: 10_000,
            max_payload_entries: 16,
            pre_vote: true,
        }
    }
}

/// What this node tells the cluster about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Labels, topology among them: `topology.kubernetes.io/zone`, `rack`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Bytes this node offers for replicas; placement never exceeds it.
    pub capacity_bytes: u64,
    /// Reported host name; defaults to the SDK listen address's host.
    pub hostname: Option<String>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            labels: Default::default(),
            capacity_bytes: 1 << 40,
            hostname: None,
        }
    }
}

/// The default bound of the audit trail by count. A record takes a few hundred bytes on disk
/// (a 1,000,000-record trail is about 200 MiB in a snapshot, BENCHMARKS.md), and every member
/// and every snapshot holds the whole trail: export what must be kept longer
/// (`custos audit export`, docs/operations.md).
pub const DEFAULT_AUDIT_MAX_RECORDS: u64 = 1_000_000;

/// The default size at which a local log file is rotated (`[audit] max_log_file_bytes`).
pub const DEFAULT_MAX_LOG_FILE_BYTES: u64 = 256 << 20;

/// The default bound of the audit trail by age.
pub const DEFAULT_AUDIT_MAX_AGE: &str = "90d";

/// The audit trail: local files, edge-denial batching and retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Where `audit.log` and `access.log` are written; the data dir when unset.
    pub log_dir: Option<PathBuf>,
    /// Edge denials are proposed to the replicated trail this often (milliseconds).
    pub batch_ms: u64,
    /// Distinct kinds of denial one batch keeps apart; further kinds are coalesced per code,
    /// so memory stays bounded under a flood of varied bad requests.
    pub max_distinct_denials: usize,
    /// Retention by count: the leader truncates the oldest records beyond this many (0 = no
    /// limit by count). At least 1,000 when set. Default [`DEFAULT_AUDIT_MAX_RECORDS`].
    pub max_records: u64,
    /// Retention by age (`30d`, `12h`, ...; at least one hour): the leader truncates records
    /// older than this. `""` sets no limit by age. Default [`DEFAULT_AUDIT_MAX_AGE`].
    pub max_age: Option<String>,
    /// Local `audit.log` and `access.log` lines are buffered and written out this often
    /// (milliseconds), or sooner when 64 KiB are waiting; 0 writes every line at once. A node
    /// killed with SIGKILL loses at most this much of its local lines (the replicated trail
    /// loses nothing); SIGTERM, SIGHUP and a clean stop write them out.
    pub log_flush_ms: u64,
    /// Each local log file (`audit.log`, `access.log`) is rotated to `<name>.1` (replacing an
    /// older one) when it reaches this many bytes, so a flood of calls cannot fill the disk:
    /// each takes at most about twice this. 0: unbounded (for logrotate; then rotate often).
    /// Default 256 MiB; at least 1 MiB when set.
    pub max_log_file_bytes: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            log_dir: None,
            batch_ms: 100,
            max_distinct_denials: 256,
            max_records: DEFAULT_AUDIT_MAX_RECORDS,
            max_age: Some(DEFAULT_AUDIT_MAX_AGE.to_string()),
            log_flush_ms: 100,
            max_log_file_bytes: DEFAULT_MAX_LOG_FILE_BYTES,
        }
    }
}

impl AuditSettings {
    /// The age limit in seconds, if any.
    pub fn max_age_secs(&self) -> Result<Option<u64>, String> {
        match self.max_age.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => custos_auth::parse_duration(s)
                .map(Some)
                .map_err(|e| format!("[audit] max_age: {e}")),
        }
    }
}

/// Bounds on the work and connections one member takes on (`[limits]`). Beyond them a member
/// answers RESOURCE_EXHAUSTED (or closes the connection) at once instead of queueing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Writes this member handles at once: its clients' writes (proposed here or forwarded to
    /// the leader), writes forwarded to it as leader, and refused writes waiting for the read
    /// barrier that confirms the refusal.
    pub max_writes_in_flight: usize,
    /// Commands the leader's proposal queue holds waiting for a free entry slot; on a
    /// follower, also the bound of its queue of writes waiting to be forwarded (`forwarder.rs`).
    pub max_queued_proposals: usize,
    /// Linearizable reads (and refusal confirmations) waiting for a read index at once.
    pub max_read_waiters: usize,
    /// TLS handshakes in progress per listener; connections beyond are closed at once.
    pub max_tls_handshakes: usize,
    /// How long a client may take to finish the TLS handshake, in milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Open connections per client IP address on the SDK and REST listeners.
    pub max_connections_per_address: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_writes_in_flight: 1024,
            max_queued_proposals: 4096,
            max_read_waiters: 4096,
            max_tls_handshakes: 128,
            tls_handshake_timeout_ms: 10_000,
            max_connections_per_address: 256,
        }
    }
}

/// Transport security (`[tls]`). Peer traffic is always mutual TLS with these files unless
/// the node runs with `insecure = true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster CA (PEM): every peer's certificate must chain to it.
    pub ca_file: PathBuf,
    /// This node's certificate chain (PEM), signed by the cluster CA. It must name the node
    /// with a SAN URI `custos://node/<id>` and a SAN DNS name `custos-node-<id>`; it is served
    /// on the peer, SDK and REST listeners and presented to peers.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM); keep it mode 0600.
    pub key_file: PathBuf,
    /// When set, SDK and REST clients must present a certificate from this CA (PEM).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Serve the SDK and REST listeners over TLS (default). False keeps them plaintext while
    /// peers still use mutual TLS.
    #[serde(default = "yes")]
    pub sdk: bool,
}

/// The whole configuration of one node.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub node_id: u64,
    #[serde(default = "default_cluster_id")]
    pub cluster_id: String,
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    pub data_dir: PathBuf,
    /// Where the SDK (and admin) gRPC server listens.
    pub sdk_listen: SocketAddr,
    /// Where the peer gRPC server listens.
    pub raft_listen: SocketAddr,
    /// Where the REST gateway (the SDK over HTTP/JSON) listens; none serves no REST.
    #[serde(default)]
    pub rest_listen: Option<SocketAddr>,
    /// Where Prometheus metrics are served (`GET /metrics`); none serves none. Over HTTPS with
    /// the node's certificate when `[tls]` is set, unless `metrics_tls = false`.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// With `[tls]`: serve `/metrics` over HTTPS (default). False keeps it plaintext, for
    /// scrapers or probes that cannot speak TLS; say so explicitly.
    #[serde(default = "yes")]
    pub metrics_tls: bool,
    /// A file holding a bearer token scrapers must send (`Authorization: Bearer <token>`);
    /// unset, `/metrics` answers anyone who reaches it. Read at start and on SIGHUP.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
    /// The static initial membership the cluster bootstraps from.
    #[serde(default)]
    pub initial_members: Vec<MemberConfig>,
    /// When false, every caller is treated as an administrator (upstream's "auth off").
    #[serde(default = "yes")]
    pub auth_enabled: bool,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub raft: RaftTuning,
    #[serde(default)]
    pub node: NodeSettings,
    #[serde(default)]
    pub audit: AuditSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    /// The cluster data key that seals credential secrets (`[secrets]`).
    #[serde(default)]
    pub secrets: crate::secrets::SecretsSettings,
    /// Transport security; required unless `insecure = true`.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Plaintext, unauthenticated peer and SDK traffic: for tests only. Anyone who reaches the
    /// peer port can then vote, append entries and install snapshots.
    #[serde(default)]
    pub insecure: bool,
    /// A member silent for this long has its replicas re-placed by the leader.
    #[serde(default = "default_replace_after_secs")]
    pub replica_replace_after_secs: u64,
    /// How long a write or linearizable read may wait for a leader, in milliseconds, when the
    /// client sets no deadline.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// A member's peer address (`host:port`) to join through when this node holds no Raft
    /// state yet: it is added as a learner, catches up (by snapshot when the log was purged)
    /// and is promoted to voter unless `join_as_learner`. Ignored once the node is a member.
    #[serde(default)]
    pub join: Option<String>,
    /// With `join`: stay a learner (promote later with `custos cluster promote`).
    #[serde(default)]
    pub join_as_learner: bool,
    /// The peer address (`host:port`) the other members reach this node at, when it differs
    /// from `raft_listen` (a proxy, NAT, a Kubernetes Service) and the node is not named in
    /// `initial_members`: what a joining node announces.
    #[serde(default)]
    pub advertise_raft_addr: Option<String>,
    /// The SDK address clients are sent to, when it differs from `sdk_listen`; as
    /// `advertise_raft_addr`.
    #[serde(default)]
    pub advertise_sdk_addr: Option<String>,
    /// A backup file (`custos cluster backup`) to seed this node's empty data dir from: the
    /// node becomes the only voter of a new cluster holding the backed-up state; others join
    /// it. Set by `custos server --restore`, never read from the file.
    #[serde(skip)]
    pub restore: Option<PathBuf>,
}

fn yes() -> bool {
    true
}
fn default_cluster_id() -> String {
    "custos".to_string()
}
fn default_cluster_name() -> String {
    "custos".to_string()
}
fn default_replace_after_secs() -> u64 {
    60
}
fn default_request_timeout_ms() -> u64 {
    10_000
}

/// A configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ServerConfig {
    pub fn from_file(path: &std::path::Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// The addresses this node announces (peer, SDK): its `initial_members` entry if any,
    /// else `advertise_raft_addr`/`advertise_sdk_addr`, else its listen addresses. Used to
    /// register, to join and to restore.
    pub fn advertised(&self) -> (String, String) {
        match self.initial_members.iter().find(|m| m.id == self.node_id) {
            Some(m) => (m.raft_addr.clone(), m.sdk_addr.clone()),
            None => (
                self.advertise_raft_addr
                    .clone()
                    .unwrap_or_else(|| self.raft_listen.to_string()),
                self.advertise_sdk_addr
                    .clone()
                    .unwrap_or_else(|| self.sdk_listen.to_string()),
            ),
        }
    }

    /// The directory of `audit.log` and `access.log`.
    pub fn audit_log_dir(&self) -> PathBuf {
        self.audit
            .log_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone())
    }

    /// Checks what serde cannot: ids, membership, audit settings, and that auth has key material.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::Invalid("node_id must be 1 or greater".into()));
        }
        let mut ids: Vec<u64> = self.initial_members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(
                "initial_members lists an id twice".into(),
            ));
        }
        if self.join.is_some() && self.restore.is_some() {
            return Err(ConfigError::Invalid(
                "join and restore contradict each other: a restored node starts a new cluster \
                 that others join"
                    .into(),
            ));
        }
        if self.join.as_deref().is_some_and(|j| j.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "join is empty: give a member's peer address (host:port)".into(),
            ));
        }
        for (key, value) in [
            ("advertise_raft_addr", &self.advertise_raft_addr),
            ("advertise_sdk_addr", &self.advertise_sdk_addr),
        ] {
            if let Some(v) = value {
                let port = v
                    .rsplit_once(':')
                    .map(|(host, port)| (host, port.parse::<u16>()));
                if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                    return Err(ConfigError::Invalid(format!(
                        "{key} {v:?} is not host:port"
                    )));
                }
            }
        }
        if self.join.is_none() && !self.initial_members.is_empty() && !ids.contains(&self.node_id) {
            return Err(ConfigError::Invalid(format!(
                "node_id {} is not one of initial_members {ids:?}",
                self.node_id
            )));
        }
        if self.replica_replace_after_secs < 5 {
            return Err(ConfigError::Invalid(
                "replica_replace_after_secs must be at least 5: a shorter grace moves replicas on every hiccup".into(),
            ));
        }
        if self.audit.max_records != 0 && self.audit.max_records < 1000 {
            return Err(ConfigError::Invalid(
                "[audit] max_records must be 0 (no limit by count) or at least 1000".into(),
            ));
        }
        if self.audit.max_log_file_bytes != 0 && self.audit.max_log_file_bytes < 1 << 20 {
            return Err(ConfigError::Invalid(
                "[audit] max_log_file_bytes must be 0 (unbounded) or at least 1048576 (1 MiB)"
                    .into(),
            ));
        }
        if self.audit.log_flush_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "[audit] log_flush_ms must be at most 10000".into(),
            ));
        }
        if self.audit.batch_ms == 0 || self.audit.batch_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "[audit] batch_ms must be between 1 and 10000".into(),
            ));
        }
        if self.audit.max_distinct_denials == 0 {
            return Err(ConfigError::Invalid(
                "[audit] max_distinct_denials must be at least 1".into(),
            ));
        }
        if let Some(secs) = self.audit.max_age_secs().map_err(ConfigError::Invalid)? {
            if secs < 3600 {
                return Err(ConfigError::Invalid(
                    "[audit] max_age must be at least 1h (or \"\" for no limit by age)".into(),
                ));
            }
        }
        self.validate_limits()?;
        if self.insecure && self.tls.is_some() {
            return Err(ConfigError::Invalid(
                "insecure = true and a [tls] section contradict each other: remove one".into(),
            ));
        }
        if self.auth_enabled && self.auth.issuers.is_empty() {
            return Err(ConfigError::Invalid(
                "auth is enabled but no issuer is configured: add [[auth.issuers]] with a key \
                 read from a file or environment variable, or set auth_enabled = false"
                    .into(),
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (key, value, min, max) in [
            ("max_writes_in_flight", l.max_writes_in_flight, 1, 1 << 20),
            ("max_queued_proposals", l.max_queued_proposals, 1, 1 << 20),
            ("max_read_waiters", l.max_read_waiters, 1, 1 << 20),
            ("max_tls_handshakes", l.max_tls_handshakes, 1, 65_536),
            (
                "max_connections_per_address",
                l.max_connections_per_address,
                1,
                1 << 20,
            ),
        ] {
            if value < min || value > max {
                return Err(ConfigError::Invalid(format!(
                    "[limits] {key} must be between {min} and {max}"
                )));
            }
        }
        if !(100..=60_000).contains(&l.tls_handshake_timeout_ms) {
            return Err(ConfigError::Invalid(
                "[limits] tls_handshake_timeout_ms must be between 100 and 60000".into(),
            ));
        }
        if self
            .metrics_token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(ConfigError::Invalid(
                "metrics_token_file is empty: name a file holding the token, or remove it".into(),
            ));
        }
        Ok(())
    }

    /// Checked after the auth keys load: peers need TLS material or an explicit `insecure`.
    pub fn validate_transport(&self) -> Result<(), ConfigError> {
        if self.tls.is_none() && !self.insecure {
            return Err(ConfigError::Invalid(
                "peer traffic must be authenticated: add a [tls] section (ca_file, cert_file, \
                 key_file), or set insecure = true to run plaintext (tests only)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The configuration as TOML (`custos server --print-config`). It holds no secret: keys are
/// named by file or environment variable, never written inline.
pub fn render(config: &ServerConfig) -> Result<String, ConfigError> {
    toml::to_string(config).map_err(|e| ConfigError::Invalid(format!("rendering the config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> ServerConfig {
        toml::from_str(&format!(
            "node_id = 4\ndata_dir = \"/tmp/x\"\nsdk_listen = \"127.0.0.1:9100\"\n\
             raft_listen = \"127.0.0.1:9200\"\nauth_enabled = false\ninsecure = true\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn a_node_announces_its_member_entry_then_its_advertised_then_its_listen_addresses() {
        let plain = config("");
        assert_eq!(
            plain.advertised(),
            ("127.0.0.1:9200".into(), "127.0.0.1:9100".into())
        );
        let behind_proxy = config(
            "join = \"10.0.0.1:9200\"\nadvertise_raft_addr = \"proxy:7000\"\n\
             advertise_sdk_addr = \"custos-4.example:9100\"\n",
        );
        behind_proxy.validate().unwrap();
        assert_eq!(
            behind_proxy.advertised(),
            ("proxy:7000".into(), "custos-4.example:9100".into())
        );
        let member = config(
            "advertise_raft_addr = \"proxy:7000\"\n[[initial_members]]\nid = 4\n\
             raft_addr = \"m:1\"\nsdk_addr = \"m:2\"\n",
        );
        assert_eq!(member.advertised(), ("m:1".into(), "m:2".into()));
    }

    #[test]
    fn an_advertised_address_without_a_port_is_refused_by_name() {
        for bad in ["proxy", "proxy:", ":7000", "proxy:0", "proxy:99999"] {
            let err = config(&format!("advertise_raft_addr = {bad:?}\n"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains("advertise_raft_addr"), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_have_documented_defaults_and_are_bounded() {
        let l = config("").limits;
        assert_eq!(l, LimitSettings::default());
        assert_eq!(
            (
                l.max_writes_in_flight,
                l.max_queued_proposals,
                l.max_read_waiters
            ),
            (1024, 4096, 4096)
        );
        assert_eq!(l.max_connections_per_address, 256);
        config("[limits]\nmax_writes_in_flight = 8\ntls_handshake_timeout_ms = 500\n")
            .validate()
            .unwrap();
        for (bad, key) in [
            ("max_writes_in_flight = 0", "max_writes_in_flight"),
            ("max_queued_proposals = 0", "max_queued_proposals"),
            ("max_read_waiters = 0", "max_read_waiters"),
            ("max_tls_handshakes = 0", "max_tls_handshakes"),
            (
                "max_connections_per_address = 0",
                "max_connections_per_address",
            ),
            ("tls_handshake_timeout_ms = 10", "tls_handshake_timeout_ms"),
        ] {
            let err = config(&format!("[limits]\n{bad}\n"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
        assert!(config("metrics_token_file = \"\"\n").validate().is_err());
        assert!(config("").metrics_tls);
    }

    #[test]
    fn the_local_log_flush_period_defaults_to_100_ms_and_is_bounded() {
        assert_eq!(config("").audit.log_flush_ms, 100);
        for ok in [0, 100, 10_000] {
            config(&format!("[audit]\nlog_flush_ms = {ok}\n"))
                .validate()
                .unwrap();
        }
        let err = config("[audit]\nlog_flush_ms = 10001\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("log_flush_ms"), "{err}");
    }

    #[test]
    fn audit_retention_is_on_by_default_and_can_be_lifted_explicitly() {
        let audit = config("").audit;
        assert_eq!(audit.max_records, 1_000_000);
        assert_eq!(audit.max_age_secs(), Ok(Some(90 * 86_400)));
        let off = config(
            "[audit]
max_records = 0
max_age = \"\"\n",
        );
        off.validate().unwrap();
        assert_eq!(
            (off.audit.max_records, off.audit.max_age_secs()),
            (0, Ok(None))
        );
        config(
            "[audit]
max_records = 1000
max_age = \"1h\"\n",
        )
        .validate()
        .unwrap();
        for bad in [
            "max_records = 999",
            "max_age = \"59m\"",
            "max_age = \"0s\"",
            "max_age = \"soon\"",
        ] {
            let err = config(&format!("[audit]\n{bad}\n"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains("[audit] max_"), "{bad}: {err}");
        }
    }
}
