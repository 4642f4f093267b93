//! Prometheus metrics: request counts and latency per method and code, authentication failures
//! by reason, Raft progress and the audit backlog, served as text on `metrics_listen`.
//!
//! Labels never carry usernames, tokens or other caller-controlled text: methods are the served
//! gRPC paths (unknown paths are counted as `other`), codes are gRPC code names, and reasons are
//! the authenticator's fixed labels.

use crate::node::Node;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency histogram bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Distinct (method, code) series kept; beyond it new series are counted as method `other`.
const MAX_SERIES: usize = 512;

#[derive(Clone, Debug, Default)]
struct Histogram {
    count: u64,
    sum: f64,
    /// Cumulative per bound, as Prometheus wants them.
    buckets: [u64; BUCKETS.len()],
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        self.count += 1;
        self.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i] += 1;
            }
        }
    }
}

/// The counters of one node.
#[derive(Default)]
pub struct Metrics {
    /// By method, then code. Keyed by method first so a lookup borrows the path (no allocation
    /// per call once the series exists).
    requests: Mutex<BTreeMap<String, BTreeMap<&'static str, Histogram>>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Elections this node started because its leader fell silent (`election.rs`).
    pub prompt_elections: Counter,
    /// Writes the edge refused on local state and checked again after a read barrier; and
    /// those the second check let through (the member was behind a grant).
    pub edge_rechecks: Counter,
    pub edge_rechecks_allowed: Counter,
}

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(std::sync::atomic::AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
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
    /// One finished call: its full gRPC method, gRPC code and duration.
    pub fn observe_request(&self, method: &str, code: i32, elapsed: Duration) {
        let code = crate::audit::code_name(code);
        let method = if known_method(method) {
            method
        } else {
            "other"
        };
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let series: usize = requests.values().map(BTreeMap::len).sum();
        let known = requests
            .get(method)
            .is_some_and(|codes| codes.contains_key(code));
        let method = if known || series < MAX_SERIES {
            method
        } else {
            "other"
        };
        if !requests.contains_key(method) {
            requests.insert(method.to_string(), BTreeMap::new());
        }
        let codes = requests.get_mut(method).expect("inserted above");
        codes
            .entry(code)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// An authentication failure, by the authenticator's reason label.
    pub fn auth_failure(&self, reason: &'static str) {
        *self
            .auth_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// The Prometheus text exposition of this node.
    pub fn render(&self, node: &Node) -> String {
        let mut out = String::new();
        let m = node.raft.metrics().borrow().clone();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "custos_raft_term",
            "Current Raft term.",
            m.current_term,
        );
        gauge(
            &mut out,
            "custos_raft_leader_id",
            "Id of the leader this node knows (0 = none).",
            m.current_leader.unwrap_or(0),
        );
        gauge(
            &mut out,
            "custos_raft_is_leader",
            "1 if this node leads.",
            u64::from(m.current_leader == Some(node.id)),
        );
        gauge(
            &mut out,
            "custos_raft_last_log_index",
            "Index of the last log entry this node holds.",
            m.last_log_index.unwrap_or(0),
        );
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        gauge(
            &mut out,
            "custos_raft_applied_index",
            "Index of the last entry applied to the state machine.",
            applied,
        );
        gauge(
            &mut out,
            "custos_raft_commit_index",
            "Highest index known committed (openraft 0.9 exposes the applied index: a lower bound).",
            applied,
        );
        gauge(
            &mut out,
            "custos_raft_members",
            "Members of the current configuration.",
            m.membership_config.membership().nodes().count() as u64,
        );
        let _ = writeln!(
            out,
            "# HELP custos_raft_prompt_elections_total Elections this node started because its leader's lease ran out without AppendEntries.\n\
             # TYPE custos_raft_prompt_elections_total counter\ncustos_raft_prompt_elections_total {}",
            self.prompt_elections.get()
        );
        let _ = writeln!(
            out,
            "# HELP custos_edge_role_rechecks_total Writes refused by the role check on local state, checked again after a read barrier.\n\
             # TYPE custos_edge_role_rechecks_total counter\ncustos_edge_role_rechecks_total {}\n\
             # HELP custos_edge_role_rechecks_allowed_total Of those, writes the fresh state allowed (the member was behind a grant).\n\
             # TYPE custos_edge_role_rechecks_allowed_total counter\ncustos_edge_role_rechecks_allowed_total {}",
            self.edge_rechecks.get(),
            self.edge_rechecks_allowed.get()
        );
        let (leader_reads, leader_rounds) = node.read_batcher.counts();
        let (follower_reads, follower_rounds) = node.remote_reads.counts();
        let _ = writeln!(
            out,
            "# HELP custos_read_index_reads_total Linearizable reads that needed a read index, by this node's role.\n\
             # TYPE custos_read_index_reads_total counter\n\
             custos_read_index_reads_total{{role=\"leader\"}} {leader_reads}\n\
             custos_read_index_reads_total{{role=\"follower\"}} {follower_reads}\n\
             # HELP custos_read_index_rounds_total Read-index rounds run for them (leadership confirmations as leader, ReadIndex RPCs as follower).\n\
             # TYPE custos_read_index_rounds_total counter\n\
             custos_read_index_rounds_total{{role=\"leader\"}} {leader_rounds}\n\
             custos_read_index_rounds_total{{role=\"follower\"}} {follower_rounds}"
        );
        let (entries, commands) = node.proposals.counts();
        let _ = writeln!(
            out,
            "# HELP custos_proposal_entries_total Raft entries this node proposed as leader (one command or a batch each).\n\
             # TYPE custos_proposal_entries_total counter\ncustos_proposal_entries_total {entries}\n\
             # HELP custos_proposal_commands_total Commands this node proposed as leader, alone or batched.\n\
             # TYPE custos_proposal_commands_total counter\ncustos_proposal_commands_total {commands}"
        );
        let head = node.audit.log.head();
        gauge(
            &mut out,
            "custos_audit_last_seq",
            "Sequence number of the last audit record on this node.",
            head.last_seq(),
        );
        gauge(
            &mut out,
            "custos_audit_records",
            "Audit records kept on this node.",
            head.len(),
        );
        gauge(
            &mut out,
            "custos_audit_backlog",
            "Edge denials seen here and not yet in the replicated trail.",
            node.audit.backlog(),
        );
        let c = node.audit.counters();
        let _ = writeln!(
            out,
            "# HELP custos_audit_denials_total Edge denials seen by this node.\n\
             # TYPE custos_audit_denials_total counter\ncustos_audit_denials_total {}",
            c.denials
        );
        let _ = writeln!(
            out,
            "# HELP custos_audit_denials_recorded_total Edge denials acknowledged in the replicated trail.\n\
             # TYPE custos_audit_denials_recorded_total counter\ncustos_audit_denials_recorded_total {}",
            c.denials_recorded
        );

        let _ = writeln!(
            out,
            "# HELP custos_auth_failures_total Authentication failures by reason.\n\
             # TYPE custos_auth_failures_total counter"
        );
        for (reason, n) in self
            .auth_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "custos_auth_failures_total{{reason=\"{reason}\"}} {n}");
        }

        let _ = writeln!(
            out,
            "# HELP custos_requests_seconds Calls served on the SDK and REST ports, by method and code.\n\
             # TYPE custos_requests_seconds histogram"
        );
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let all = requests
            .iter()
            .flat_map(|(method, codes)| codes.iter().map(move |(code, h)| (method, code, h)));
        for (method, code, h) in all {
            let labels = format!("method=\"{method}\",code=\"{code}\"");
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "custos_requests_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "custos_requests_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "custos_requests_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "custos_requests_seconds_count{{{labels}}} {}", h.count);
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let node = node.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    node.metrics.render(&node),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("metrics on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let requests = m.requests.lock().unwrap();
        let keys: Vec<(&str, &str)> = requests
            .iter()
            .flat_map(|(m, codes)| codes.keys().map(move |c| (m.as_str(), *c)))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("/openstorage.api.OpenStorageVolume/Create", "OK"),
                ("other", "Unimplemented"),
            ]
        );
        let h = &requests["other"]["Unimplemented"];
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], 0); // 1 ms is above the first bound (0.5 ms)
        assert_eq!(h.buckets[1], 2);
    }
}
