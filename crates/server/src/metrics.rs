//! Prometheus metrics: request counts and latency per method and code, authentication failures
//! by reason, Raft progress, the audit backlog and the member's bounds (queue depth, refusals),
//! served as text on `metrics_listen`: over HTTPS with the node's certificate when `[tls]` is
//! set (unless `metrics_tls = false`), and only to scrapers presenting the bearer token of
//! `metrics_token_file` when one is configured.
//!
//! The metric types and the text exposition (format 0.0.4) are `prometheus-client`'s. What
//! lives as long as the node (the request histograms, auth failures, the counters other modules
//! increment) is held here; what other parts of the node already count (Raft progress, read
//! index rounds, proposals, the audit trail) is read at each scrape into a registry built for it.
//!
//! Labels never carry usernames, tokens or other caller-controlled text: methods are the served
//! gRPC paths (unknown paths are counted as `other`), codes are gRPC code names, and reasons are
//! the authenticator's fixed labels.

use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use prometheus_client::metrics::counter::Counter;

/// Latency histogram bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Distinct (method, code) series kept; beyond it new series are counted as method `other`.
const MAX_SERIES: usize = 512;

/// The labels of `custos_requests_seconds`, in exposition order. The method is shared with
/// [`Metrics::methods`], so a call whose series exists allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// An OpenID provider issuer's name: configuration, never caller-controlled text.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BoundLabels {
    bound: &'static str,
}

/// Connections a listener closed because of a bound or a failed TLS handshake, by listener
/// and reason (fixed labels). Clones count into the same family.
#[derive(Clone, Default)]
pub struct ConnectionsRefused(Family<ConnectionLabels, Counter>);

impl ConnectionsRefused {
    pub fn inc(&self, listener: &'static str, reason: &'static str) {
        self.0
            .get_or_create(&ConnectionLabels { listener, reason })
            .inc();
    }
}

fn request_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

type RequestFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The counters of one node.
pub struct Metrics {
    /// Latency by method and code.
    requests: RequestFamily,
    /// The method labels in use, by path: looked up with the borrowed path, so a known method
    /// costs a read lock and a reference count, not an allocation.
    methods: RwLock<HashMap<Box<str>, Arc<str>>>,
    other: Arc<str>,
    /// Series of `requests` created; held while one is created, so the bound is exact.
    series: Mutex<usize>,
    auth_failures: Family<ReasonLabels, Counter>,
    /// Elections this node started because its leader fell silent (`election.rs`).
    pub prompt_elections: Counter,
    /// Writes the edge refused on local state and checked again after a read barrier; and
    /// those the second check let through (the member was behind a grant).
    pub edge_rechecks: Counter,
    pub edge_rechecks_allowed: Counter,
    /// Connections closed by the listeners' bounds.
    pub connections_refused: ConnectionsRefused,
    /// The bearer token scrapers must present (`metrics_token_file`), if any. Never logged.
    token: RwLock<Option<Arc<[u8]>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::new_with_constructor(request_histogram),
            methods: RwLock::default(),
            other: Arc::from("other"),
            series: Mutex::new(0),
            auth_failures: Family::default(),
            prompt_elections: Counter::default(),
            edge_rechecks: Counter::default(),
            edge_rechecks_allowed: Counter::default(),
            connections_refused: ConnectionsRefused::default(),
            token: RwLock::new(None),
        }
    }
}

/// What the rest of the node counts, read at each scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeValues {
    pub term: u64,
    pub leader_id: u64,
    pub is_leader: bool,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: u64,
    pub leader_reads: u64,
    pub leader_rounds: u64,
    pub follower_reads: u64,
    pub follower_rounds: u64,
    pub proposal_entries: u64,
    pub proposal_commands: u64,
    pub proposal_queued: u64,
    pub proposals_rejected: u64,
    pub proposals_expired: u64,
    pub proposals_abandoned: u64,
    pub forward_rpcs: u64,
    pub forward_commands: u64,
    pub forward_queued: u64,
    pub forwards_rejected: u64,
    pub forwards_expired: u64,
    pub writes_in_flight: u64,
    pub writes_rejected: u64,
    pub read_waiters: u64,
    pub reads_rejected: u64,
    pub audit_last_seq: u64,
    pub audit_first_seq: u64,
    pub audit_records: u64,
    pub audit_backlog: u64,
    pub audit_denials: u64,
    pub audit_denials_recorded: u64,
}

impl NodeValues {
    /// The values of `node` now.
    pub fn of(node: &Node) -> NodeValues {
        let m = node.raft.metrics().borrow_watched().clone();
        let (leader_reads, leader_rounds) = node.read_batcher.counts();
        let (follower_reads, follower_rounds) = node.remote_reads.counts();
        let proposals = node.proposals.snapshot();
        let forwards = node.forwarder.snapshot();
        let head = node.audit.log.head();
        let c = node.audit.counters();
        NodeValues {
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            is_leader: m.current_leader == Some(node.id),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            members: m.membership_config.membership().nodes().count() as u64,
            leader_reads,
            leader_rounds,
            follower_reads,
            follower_rounds,
            proposal_entries: proposals.entries,
            proposal_commands: proposals.commands,
            proposal_queued: proposals.queued,
            proposals_rejected: proposals.rejected,
            proposals_expired: proposals.expired,
            proposals_abandoned: proposals.abandoned,
            forward_rpcs: forwards.rpcs,
            forward_commands: forwards.commands,
            forward_queued: forwards.queued,
            forwards_rejected: forwards.rejected,
            forwards_expired: forwards.expired,
            writes_in_flight: node.write_slots.in_use() as u64,
            writes_rejected: node.write_slots.refused(),
            read_waiters: node.read_slots.in_use() as u64,
            reads_rejected: node.read_slots.refused(),
            audit_last_seq: head.last_seq(),
            audit_first_seq: head.first_seq,
            audit_records: head.len(),
            audit_backlog: node.audit.backlog(),
            audit_denials: c.denials,
            audit_denials_recorded: c.denials_recorded,
        }
    }
}

/// Whether `path` names a method of a service this node serves (else it is counted as `other`).
fn known_method(path: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "/openstorage.api.OpenStorage",
        "/custos.admin.v1.",
        "/grpc.health.v1.",
        "/grpc.reflection.",
        "/custos.raft.v1.",
    ];
    path.len() <= 128
        && PREFIXES.iter().any(|p| path.starts_with(p))
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._".contains(c))
}

impl Metrics {
    /// The label for `path`: its shared copy, or `other` for an unknown path or once
    /// [`MAX_SERIES`] methods are known.
    fn method_label(&self, path: &str) -> Arc<str> {
        if !known_method(path) {
            return self.other.clone();
        }
        if let Some(m) = self
            .methods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
        {
            return m.clone();
        }
        let mut methods = self.methods.write().unwrap_or_else(|p| p.into_inner());
        if methods.len() >= MAX_SERIES {
            return self.other.clone();
        }
        methods
            .entry(Box::from(path))
            .or_insert_with(|| Arc::from(path))
            .clone()
    }

    /// One finished call: its full gRPC method, gRPC code and duration.
    pub fn observe_request(&self, method: &str, code: i32, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let labels = RequestLabels {
            method: self.method_label(method),
            code: crate::audit::code_name(code),
        };
        if let Some(h) = self.requests.get(&labels) {
            h.observe(secs);
            return;
        }
        // A new series: created under `series`, so none is created twice or past the bound.
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let labels = if self.requests.get(&labels).is_some() || *series < MAX_SERIES {
            labels
        } else {
            RequestLabels {
                method: self.other.clone(),
                code: labels.code,
            }
        };
        if self.requests.get(&labels).is_none() {
            *series += 1;
        }
        self.requests.get_or_create(&labels).observe(secs);
    }

    /// Reads the bearer token from `file` (surrounding whitespace ignored), or forgets it when
    /// `file` is none. On error the token in force stays; the error never quotes the file.
    pub fn load_token(&self, file: Option<&std::path::Path>) -> Result<(), String> {
        let token = match file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let token = bytes.trim_ascii();
                if token.is_empty() {
                    return Err(format!("{} holds no token", path.display()));
                }
                Some(Arc::from(token))
            }
        };
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(())
    }

    /// Whether a scrape with this `Authorization` header may read the metrics: always when no
    /// token is configured; else only with `Bearer <token>`, compared in constant time.
    pub fn scrape_allowed(&self, authorization: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(token) = self.token.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return true;
        };
        let presented = authorization
            .and_then(|h| {
                h.strip_prefix(b"Bearer ")
                    .or_else(|| h.strip_prefix(b"bearer "))
            })
            .unwrap_or_default();
        bool::from(presented.ct_eq(&token))
    }

    /// An authentication failure, by the authenticator's reason label.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The Prometheus text exposition of this node.
    pub fn render(&self, node: &Node) -> String {
        self.encode_with(&NodeValues::of(node), &node.oidc.values())
    }

    /// The Prometheus text exposition of these counters and `v`.
    pub fn encode(&self, v: &NodeValues) -> String {
        self.encode_with(v, &[])
    }

    /// The Prometheus text exposition of these counters, `v` and the OpenID providers' `oidc`.
    pub fn encode_with(&self, v: &NodeValues, oidc: &[crate::oidc::IssuerValues]) -> String {
        let mut r = Registry::default();
        // Help texts without the final period: the registry adds it.
        let gauge = |r: &mut Registry, name: &str, help: &str, value: u64| {
            r.register(name, help, ConstGauge::new(value));
        };
        let counter = |r: &mut Registry, name: &str, help: &str, value: u64| {
            r.register(name, help, ConstCounter::new(value));
        };
        gauge(&mut r, "custos_raft_term", "Current Raft term", v.term);
        gauge(
            &mut r,
            "custos_raft_leader_id",
            "Id of the leader this node knows (0 = none)",
            v.leader_id,
        );
        gauge(
            &mut r,
            "custos_raft_is_leader",
            "1 if this node leads",
            u64::from(v.is_leader),
        );
        gauge(
            &mut r,
            "custos_raft_last_log_index",
            "Index of the last log entry this node holds",
            v.last_log_index,
        );
        gauge(
            &mut r,
            "custos_raft_applied_index",
            "Index of the last entry applied to the state machine",
            v.applied_index,
        );
        gauge(
            &mut r,
            "custos_raft_commit_index",
            "Highest index known committed (openraft 0.9 exposes the applied index: a lower bound)",
            v.applied_index,
        );
        gauge(
            &mut r,
            "custos_raft_members",
            "Members of the current configuration",
            v.members,
        );
        // Counter names without `_total`: the encoder appends it.
        r.register(
            "custos_raft_prompt_elections",
            "Elections this node started because its leader's lease ran out without AppendEntries",
            self.prompt_elections.clone(),
        );
        r.register(
            "custos_edge_role_rechecks",
            "Writes refused by the role check on local state, checked again after a read barrier",
            self.edge_rechecks.clone(),
        );
        r.register(
            "custos_edge_role_rechecks_allowed",
            "Of those, writes the fresh state allowed (the member was behind a grant)",
            self.edge_rechecks_allowed.clone(),
        );
        let by_role = |leader: u64, follower: u64| {
            let family = Family::<RoleLabels, Counter>::default();
            family
                .get_or_create(&RoleLabels { role: "leader" })
                .inc_by(leader);
            family
                .get_or_create(&RoleLabels { role: "follower" })
                .inc_by(follower);
            family
        };
        r.register(
            "custos_read_index_reads",
            "Linearizable reads that needed a read index, by this node's role",
            by_role(v.leader_reads, v.follower_reads),
        );
        r.register(
            "custos_read_index_rounds",
            "Read-index rounds run for them (leadership confirmations as leader, ReadIndex RPCs as follower)",
            by_role(v.leader_rounds, v.follower_rounds),
        );
        counter(
            &mut r,
            "custos_proposal_entries",
            "Raft entries this node proposed as leader (one command or a batch each)",
            v.proposal_entries,
        );
        counter(
            &mut r,
            "custos_proposal_commands",
            "Commands this node proposed as leader, alone or batched",
            v.proposal_commands,
        );
        gauge(
            &mut r,
            "custos_proposal_queue_depth",
            "Commands waiting in this leader's proposal queue for an entry slot",
            v.proposal_queued,
        );
        counter(
            &mut r,
            "custos_forward_rpcs",
            "ProposeMany RPCs this node sent as follower, forwarding its clients' writes to the leader",
            v.forward_rpcs,
        );
        counter(
            &mut r,
            "custos_forward_commands",
            "Writes this node forwarded in them (their ratio to the RPCs is the forwarding batch size)",
            v.forward_commands,
        );
        gauge(
            &mut r,
            "custos_forward_queue_depth",
            "Writes waiting in this follower's forwarding queue for an RPC slot",
            v.forward_queued,
        );
        gauge(
            &mut r,
            "custos_writes_in_flight",
            "Writes this member is handling now (bounded by [limits] max_writes_in_flight)",
            v.writes_in_flight,
        );
        gauge(
            &mut r,
            "custos_read_waiters",
            "Linearizable reads waiting for a read index now (bounded by [limits] max_read_waiters)",
            v.read_waiters,
        );
        let bounds = Family::<BoundLabels, Counter>::default();
        for (bound, value) in [
            ("writes_in_flight", v.writes_rejected),
            ("proposal_queue", v.proposals_rejected),
            ("read_waiters", v.reads_rejected),
            ("forward_queue", v.forwards_rejected),
        ] {
            bounds.get_or_create(&BoundLabels { bound }).inc_by(value);
        }
        r.register(
            "custos_overload_rejections",
            "Requests answered RESOURCE_EXHAUSTED because a bound of this member was reached, by bound",
            bounds,
        );
        counter(
            &mut r,
            "custos_proposals_expired",
            "Writes dropped before they were proposed: their deadline passed or their caller left",
            v.proposals_expired,
        );
        counter(
            &mut r,
            "custos_proposals_abandoned",
            "Entries this member proposed and stopped waiting for because it stopped leading first (their callers retry at the new leader)",
            v.proposals_abandoned,
        );
        counter(
            &mut r,
            "custos_forwards_expired",
            "Writes this follower answered unsent: their deadline passed or their caller left while they waited to be forwarded",
            v.forwards_expired,
        );
        r.register(
            "custos_connections_refused",
            "Connections closed by a listener's bounds or a failed TLS handshake, by listener and reason",
            self.connections_refused.0.clone(),
        );
        gauge(
            &mut r,
            "custos_audit_last_seq",
            "Sequence number of the last audit record on this node",
            v.audit_last_seq,
        );
        gauge(
            &mut r,
            "custos_audit_first_seq",
            "Sequence number of the oldest audit record kept on this node (retention drops \
             records before it; an export must have reached this far)",
            v.audit_first_seq,
        );
        gauge(
            &mut r,
            "custos_audit_records",
            "Audit records kept on this node",
            v.audit_records,
        );
        gauge(
            &mut r,
            "custos_audit_backlog",
            "Edge denials seen here and not yet in the replicated trail",
            v.audit_backlog,
        );
        counter(
            &mut r,
            "custos_audit_denials",
            "Edge denials seen by this node",
            v.audit_denials,
        );
        counter(
            &mut r,
            "custos_audit_denials_recorded",
            "Edge denials acknowledged in the replicated trail",
            v.audit_denials_recorded,
        );
        r.register(
            "custos_auth_failures",
            "Authentication failures by reason",
            self.auth_failures.clone(),
        );
        let (age, keys) = (
            Family::<IssuerLabels, Gauge>::default(),
            Family::<IssuerLabels, Gauge>::default(),
        );
        let (fetches, failures, unknown_kid) = (
            Family::<IssuerLabels, Counter>::default(),
            Family::<IssuerLabels, Counter>::default(),
            Family::<IssuerLabels, Counter>::default(),
        );
        for i in oidc {
            let labels = IssuerLabels {
                issuer: i.issuer.clone(),
            };
            let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            age.get_or_create(&labels).set(signed(i.key_set_age_secs));
            keys.get_or_create(&labels).set(signed(i.keys));
            fetches.get_or_create(&labels).inc_by(i.fetches);
            failures.get_or_create(&labels).inc_by(i.fetch_failures);
            unknown_kid
                .get_or_create(&labels)
                .inc_by(i.unknown_kid_refetches);
        }
        r.register(
            "custos_oidc_key_set_age_seconds",
            "Seconds since an OpenID provider's keys were last fetched (since it was configured, if never)",
            age,
        );
        r.register(
            "custos_oidc_keys",
            "Keys of an OpenID provider in force on this node",
            keys,
        );
        r.register(
            "custos_oidc_fetches",
            "Successful fetches of an OpenID provider's keys",
            fetches,
        );
        r.register(
            "custos_oidc_fetch_failures",
            "Failed fetches of an OpenID provider's keys (the keys in force stay)",
            failures,
        );
        r.register(
            "custos_oidc_unknown_kid_refetches",
            "Fetches of an OpenID provider's keys brought forward by a token naming an unknown key id",
            unknown_kid,
        );
        r.register(
            "custos_requests_seconds",
            "Calls served on the SDK and REST ports, by method and code",
            self.requests.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }
}

/// 401 for a scrape without the configured token, if one is configured.
fn refuse_scrape(node: &Node, headers: &axum::http::HeaderMap) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if node.metrics.scrape_allowed(authorization) {
        return None;
    }
    Some(
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "custos: /metrics needs the bearer token of metrics_token_file\n",
        )
            .into_response(),
    )
}

/// Serves `GET /metrics` and `GET /debug/write-stages` (JSON: `src/stages.rs`) on `listener`
/// (over TLS when `tls` is set) until `shutdown` resolves. With a token configured, a scrape
/// without it is answered 401.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<crate::tls::ReloadableServer>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let limits = crate::tls::AcceptLimits::new(
        crate::tls::Listener::Metrics,
        &node.config.limits,
        node.metrics.connections_refused.clone(),
    );
    let stages_node = node.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let node = node.clone();
                async move {
                    use axum::response::IntoResponse;
                    if let Some(refused) = refuse_scrape(&node, &headers) {
                        return refused;
                    }
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        )],
                        node.metrics.render(&node),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/debug/write-stages",
            axum::routing::get(
                move |headers: axum::http::HeaderMap, uri: axum::http::Uri| {
                    let node = stages_node.clone();
                    async move {
                        use axum::response::IntoResponse;
                        if let Some(refused) = refuse_scrape(&node, &headers) {
                            return refused;
                        }
                        let report = node.stages.report(&node).await;
                        if uri
                            .query()
                            .is_some_and(|q| q.split('&').any(|kv| kv == "reset=true"))
                        {
                            node.stages.reset();
                        }
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            serde_json::to_string(&report).unwrap_or_default(),
                        )
                            .into_response()
                    }
                },
            ),
        );
    let served = match tls {
        Some(tls) => {
            let incoming = crate::tls::AxumIncoming {
                addr,
                accepted: crate::tls::accept_tls(listener, tls, limits),
            };
            axum::serve(incoming, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            let incoming = crate::tls::AxumIncoming {
                addr,
                accepted: crate::tls::accept_plain(listener, limits),
            };
            axum::serve(incoming, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series` and a space.
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn unknown_and_hostile_paths_are_one_series() {
        let m = Metrics::default();
        m.observe_request(
            "/openstorage.api.OpenStorageVolume/Create",
            0,
            Duration::from_millis(3),
        );
        m.observe_request("/evil\"}\n/x", 12, Duration::from_millis(1));
        m.observe_request("/alice@example.com/Create", 12, Duration::from_millis(1));
        let text = m.encode(&NodeValues::default());
        let mut counts: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("custos_requests_seconds_count"))
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            vec![
                "custos_requests_seconds_count{method=\"/openstorage.api.OpenStorageVolume/Create\",code=\"OK\"} 1",
                "custos_requests_seconds_count{method=\"other\",code=\"Unimplemented\"} 2",
            ]
        );
        let other = "method=\"other\",code=\"Unimplemented\"";
        // 1 ms is above the first bound (0.5 ms) and within the second.
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("custos_requests_seconds_bucket{{{other},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0005").as_deref(), Some("0"));
        assert_eq!(bucket("0.001").as_deref(), Some("2"));
        assert_eq!(bucket("+Inf").as_deref(), Some("2"));
        assert!(!text.contains("alice"), "{text}");
        assert!(!text.contains("evil"), "{text}");
    }

    #[test]
    fn a_configured_token_is_required_exactly() {
        let m = Metrics::default();
        assert!(m.scrape_allowed(None), "no token configured: open");
        let dir = std::env::temp_dir().join(format!("custos-metrics-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        m.load_token(Some(&file)).unwrap();
        assert!(m.scrape_allowed(Some(b"Bearer s3cret-token")));
        for bad in [
            None,
            Some(&b"Bearer s3cret-toke"[..]),
            Some(b"Bearer s3cret-token2"),
            Some(b"Basic s3cret-token"),
            Some(b"s3cret-token"),
            Some(b"Bearer "),
        ] {
            assert!(!m.scrape_allowed(bad), "{bad:?}");
        }
        // An empty or unreadable file keeps the token in force, and the error quotes no secret.
        std::fs::write(&file, "  \n").unwrap();
        let err = m.load_token(Some(&file)).unwrap_err();
        assert!(err.contains("holds no token"), "{err}");
        assert!(m.load_token(Some(&dir.join("missing"))).is_err());
        assert!(m.scrape_allowed(Some(b"Bearer s3cret-token")));
        m.load_token(None).unwrap();
        assert!(m.scrape_allowed(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn series_beyond_the_bound_count_as_other() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 3 {
            m.observe_request(
                &format!("/custos.admin.v1.Audit/M{i}"),
                0,
                Duration::from_millis(1),
            );
        }
        let text = m.encode(&NodeValues::default());
        let series = text
            .lines()
            .filter(|l| l.starts_with("custos_requests_seconds_count"))
            .count();
        assert_eq!(series, MAX_SERIES + 1);
        assert_eq!(
            sample(
                &text,
                "custos_requests_seconds_count{method=\"other\",code=\"OK\"}"
            )
            .as_deref(),
            Some("3")
        );
    }

    #[test]
    fn the_exposition_has_every_metric_with_its_type_and_values() {
        let m = Metrics::default();
        m.prompt_elections.inc();
        m.edge_rechecks.inc();
        m.edge_rechecks.inc();
        m.edge_rechecks_allowed.inc();
        m.auth_failure("malformed_token");
        m.auth_failure("malformed_token");
        m.auth_failure("expired");
        m.connections_refused.inc("sdk", "handshake_limit");
        m.observe_request(
            "/openstorage.api.OpenStorageVolume/Create",
            0,
            Duration::from_millis(3),
        );
        let issuer = crate::oidc::IssuerValues {
            issuer: "https://idp.example".into(),
            key_set_age_secs: 42,
            keys: 2,
            fetches: 5,
            fetch_failures: 3,
            unknown_kid_refetches: 1,
        };
        let text = m.encode_with(
            &NodeValues {
                term: 7,
                leader_id: 2,
                is_leader: true,
                applied_index: 41,
                members: 3,
                follower_reads: 5,
                follower_rounds: 4,
                proposal_entries: 9,
                proposal_commands: 12,
                proposal_queued: 6,
                proposals_rejected: 3,
                writes_rejected: 2,
                forward_rpcs: 4,
                forward_commands: 130,
                forward_queued: 5,
                forwards_rejected: 8,
                forwards_expired: 1,
                audit_last_seq: 40,
                ..NodeValues::default()
            },
            &[issuer],
        );
        let types = [
            ("custos_raft_term", "gauge"),
            ("custos_raft_leader_id", "gauge"),
            ("custos_raft_is_leader", "gauge"),
            ("custos_raft_last_log_index", "gauge"),
            ("custos_raft_applied_index", "gauge"),
            ("custos_raft_commit_index", "gauge"),
            ("custos_raft_members", "gauge"),
            ("custos_raft_prompt_elections_total", "counter"),
            ("custos_edge_role_rechecks_total", "counter"),
            ("custos_edge_role_rechecks_allowed_total", "counter"),
            ("custos_read_index_reads_total", "counter"),
            ("custos_read_index_rounds_total", "counter"),
            ("custos_proposal_entries_total", "counter"),
            ("custos_proposal_commands_total", "counter"),
            ("custos_proposal_queue_depth", "gauge"),
            ("custos_writes_in_flight", "gauge"),
            ("custos_read_waiters", "gauge"),
            ("custos_overload_rejections_total", "counter"),
            ("custos_proposals_expired_total", "counter"),
            ("custos_proposals_abandoned_total", "counter"),
            ("custos_forward_rpcs_total", "counter"),
            ("custos_forward_commands_total", "counter"),
            ("custos_forward_queue_depth", "gauge"),
            ("custos_forwards_expired_total", "counter"),
            ("custos_connections_refused_total", "counter"),
            ("custos_audit_last_seq", "gauge"),
            ("custos_audit_first_seq", "gauge"),
            ("custos_audit_records", "gauge"),
            ("custos_audit_backlog", "gauge"),
            ("custos_audit_denials_total", "counter"),
            ("custos_audit_denials_recorded_total", "counter"),
            ("custos_auth_failures_total", "counter"),
            ("custos_oidc_key_set_age_seconds", "gauge"),
            ("custos_oidc_keys", "gauge"),
            ("custos_oidc_fetches_total", "counter"),
            ("custos_oidc_fetch_failures_total", "counter"),
            ("custos_oidc_unknown_kid_refetches_total", "counter"),
            ("custos_requests_seconds", "histogram"),
        ];
        for (name, kind) in types {
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "no TYPE {name} {kind} in\n{text}"
            );
            let help = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
                .unwrap_or_else(|| panic!("no HELP for {name} in\n{text}"));
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
        let value = |series: &str| {
            sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        assert_eq!(value("custos_raft_term"), "7");
        assert_eq!(value("custos_raft_is_leader"), "1");
        assert_eq!(value("custos_raft_commit_index"), "41");
        assert_eq!(value("custos_raft_prompt_elections_total"), "1");
        assert_eq!(value("custos_edge_role_rechecks_total"), "2");
        assert_eq!(value("custos_edge_role_rechecks_allowed_total"), "1");
        assert_eq!(
            value("custos_read_index_reads_total{role=\"follower\"}"),
            "5"
        );
        assert_eq!(
            value("custos_read_index_rounds_total{role=\"leader\"}"),
            "0"
        );
        assert_eq!(value("custos_proposal_commands_total"), "12");
        assert_eq!(value("custos_proposal_queue_depth"), "6");
        assert_eq!(value("custos_forward_rpcs_total"), "4");
        assert_eq!(value("custos_forward_commands_total"), "130");
        assert_eq!(value("custos_forward_queue_depth"), "5");
        assert_eq!(value("custos_forwards_expired_total"), "1");
        assert_eq!(
            value("custos_overload_rejections_total{bound=\"forward_queue\"}"),
            "8"
        );
        assert_eq!(
            value("custos_overload_rejections_total{bound=\"proposal_queue\"}"),
            "3"
        );
        assert_eq!(
            value("custos_overload_rejections_total{bound=\"writes_in_flight\"}"),
            "2"
        );
        assert_eq!(
            value("custos_connections_refused_total{listener=\"sdk\",reason=\"handshake_limit\"}"),
            "1"
        );
        assert_eq!(
            value("custos_auth_failures_total{reason=\"malformed_token\"}"),
            "2"
        );
        let idp = "{issuer=\"https://idp.example\"}";
        for (name, want) in [
            ("custos_oidc_key_set_age_seconds", "42"),
            ("custos_oidc_keys", "2"),
            ("custos_oidc_fetches_total", "5"),
            ("custos_oidc_fetch_failures_total", "3"),
            ("custos_oidc_unknown_kid_refetches_total", "1"),
        ] {
            assert_eq!(value(&format!("{name}{idp}")), want, "{name}");
        }
        assert_eq!(
            value("custos_requests_seconds_sum{method=\"/openstorage.api.OpenStorageVolume/Create\",code=\"OK\"}"),
            "0.003"
        );
        assert_eq!(
            value("custos_requests_seconds_bucket{method=\"/openstorage.api.OpenStorageVolume/Create\",code=\"OK\",le=\"0.0025\"}"),
            "0"
        );
        assert_eq!(
            value("custos_requests_seconds_bucket{method=\"/openstorage.api.OpenStorageVolume/Create\",code=\"OK\",le=\"0.005\"}"),
            "1"
        );
    }
}
