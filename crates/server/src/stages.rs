//! Where a write's time goes: custos' own stages of a write on the member that takes it, and
//! openraft's per-entry stages (its `runtime-stats`), served as JSON at `/debug/write-stages`
//! on the metrics listener (`?reset=true` forgets custos' stages after answering) for
//! `scripts/bench.sh stages` (issue #23's breakdown table).
//!
//! custos' stages, on the member that took the client's call:
//! - `propose`: `Node::propose`, from the command built (request decoded, caller
//!   authenticated) to its outcome;
//! - `forward`: on a follower, one forwarding RPC to the leader and its answer (one sample per
//!   RPC, which carries one write or several: `forwarder.rs`);
//! - `queue`: on the leader, waiting in the proposal batcher for an entry slot;
//! - `raft`: on the leader, `Raft::client_write` of the entry carrying the command, to its
//!   answer (openraft's stages below split it).
//!
//! openraft's stages (per entry, on every member; a follower back-fills the leader-only ones):
//! proposed → received (its API channel) → submitted (the append call began) → persisted (the
//! flush callback) → committed (a quorum has it) → applied (the state machine's answer).

use base2histogram::Histogram;
use openraft::async_runtime::WatchReceiver;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Duration;

/// A custos stage of a write.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Propose,
    Forward,
    Queue,
    Raft,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Propose, Stage::Forward, Stage::Queue, Stage::Raft];

    fn name(self) -> &'static str {
        match self {
            Stage::Propose => "propose",
            Stage::Forward => "forward",
            Stage::Queue => "queue",
            Stage::Raft => "raft",
        }
    }
}

/// Durations of custos' stages since start, in microseconds.
#[derive(Default)]
pub struct Stages {
    hists: Mutex<[Histogram; 4]>,
}

/// One stage's distribution, in microseconds.
#[derive(Debug, Serialize)]
pub struct StageStats {
    pub stage: String,
    pub samples: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
}

/// What `/debug/write-stages` answers.
#[derive(Debug, Serialize)]
pub struct Report {
    pub node: u64,
    pub leader: bool,
    pub custos: Vec<StageStats>,
    pub openraft: Vec<StageStats>,
}

fn stats(stage: &str, h: &Histogram) -> StageStats {
    let p = h.percentile_stats();
    StageStats {
        stage: stage.to_string(),
        samples: p.samples,
        p50_us: p.p50,
        p90_us: p.p90,
        p99_us: p.p99,
    }
}

impl Stages {
    pub fn record(&self, stage: Stage, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.hists.lock().unwrap_or_else(|p| p.into_inner())[stage as usize].record(us);
    }

    /// Forgets custos' stages so far (openraft's keep its last `log_stage_capacity` entries,
    /// 1,024 by default, anyway).
    pub fn reset(&self) {
        for h in self
            .hists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
        {
            h.clear();
        }
    }

    /// Both breakdowns as they stand.
    pub async fn report(&self, node: &crate::node::Node) -> Report {
        let custos = {
            let hists = self.hists.lock().unwrap_or_else(|p| p.into_inner());
            Stage::ALL
                .iter()
                .map(|s| stats(s.name(), &hists[*s as usize]))
                .collect()
        };
        let openraft = match node.raft.runtime_stats().await {
            Ok(mut rs) => {
                rs.build_log_stage_histograms();
                let h = &rs.log_stage_histograms;
                vec![
                    stats("proposed_to_received", &h.proposed_to_received),
                    stats("received_to_submitted", &h.received_to_submitted),
                    stats("submitted_to_persisted", &h.submitted_to_persisted),
                    stats("persisted_to_committed", &h.persisted_to_committed),
                    stats("committed_to_applied", &h.committed_to_applied),
                    stats("proposed_to_applied", &h.proposed_to_applied),
                ]
            }
            Err(_) => Vec::new(),
        };
        Report {
            node: node.id,
            leader: node.raft.metrics().borrow_watched().current_leader == Some(node.id),
            custos,
            openraft,
        }
    }
}
