//! Prompt elections: a voter that stops hearing from its leader asks for votes as soon as the
//! other voters can grant them, instead of waiting out openraft's randomized timer on top.
//!
//! openraft gives every follower a leader lease of `election_timeout_max` from the
//! leader's last AppendEntries: until it runs out the follower refuses vote requests, and it
//! starts an election of its own only after the lease *plus* a random election timeout. A
//! killed leader was therefore replaced 1.5 to 2 lease lengths after its last heartbeat
//! (measured: 0.97–1.13 s with 300–600 ms timeouts, `BENCHMARKS.md`). Here each voting
//! follower watches the time since its leader's last AppendEntries and triggers an election
//! (`Raft::trigger().elect()`) once the lease has run out, plus a margin for the followers
//! having heard the last heartbeat at slightly different moments, plus its *rank* times a
//! stagger: the followers ordered by id take turns, so the lowest asks first and the others
//! do not split the vote by asking at the same moment. Safety is untouched: the vote still
//! needs a quorum whose leases have expired and whose logs are not ahead of the candidate's.
//!
//! Prompt elections replace a leader that is *gone*, not one that is quiet: before asking for
//! votes the follower pings the leader (`election_timeout_min` at most), and only a leader
//! that cannot be reached at all (connection refused or reset: a killed process) is replaced
//! early; one that answers, or does not answer in time (paused, cut off, or slow on a loaded
//! machine), is left alone. That keeps a leadership transfer (the leader stops its heartbeats on
//! purpose and names its successor) from being overtaken, and leaves a leader that is alive but
//! slow to openraft's own timer (lease plus a random election timeout), which stays in force.
//!
//! The election starts with Pre-Vote when `[raft] pre_vote` is on (the default): the lowest
//! id may be the follower whose log is behind, and without Pre-Vote it raised the term and
//! voted for itself, so the follower that could win was refused until a later round (the
//! slowest kill -9 failover trials, 520–559 ms).

use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a follower looks at the time since its leader's last AppendEntries.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// When this node last accepted AppendEntries, and from whom.
#[derive(Default)]
pub struct LeaderContact {
    last: Mutex<Option<(u64, Instant)>>,
}

impl LeaderContact {
    /// Records that `leader`'s AppendEntries was just accepted.
    pub fn heard(&self, leader: u64) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((leader, Instant::now()));
    }

    fn last(&self) -> Option<(u64, Instant)> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The schedule of prompt elections, from the Raft timing in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// openraft's leader lease on a follower: `election_timeout_max`.
    pub lease: Duration,
    /// Slack for the voters' last heartbeats arriving at different moments.
    pub margin: Duration,
    /// How long each rank waits after the one before, and how long a candidate waits before
    /// asking again.
    pub stagger: Duration,
}

impl Schedule {
    pub fn new(
        heartbeat_ms: u64,
        election_timeout_min_ms: u64,
        election_timeout_max_ms: u64,
    ) -> Self {
        Schedule {
            lease: Duration::from_millis(election_timeout_max_ms),
            margin: Duration::from_millis((heartbeat_ms / 2).max(10)),
            stagger: Duration::from_millis((election_timeout_min_ms / 2).max(20)),
        }
    }

    /// How long the follower of `rank` (0 = lowest id among the voters other than the silent
    /// leader) waits after the leader's last AppendEntries before asking for votes.
    pub fn wait(&self, rank: usize) -> Duration {
        self.lease + self.margin + self.stagger * rank as u32
    }
}

/// `me`'s position among `voters` without `leader`, in id order; `None` if `me` is not one.
pub fn rank(voters: impl IntoIterator<Item = u64>, leader: u64, me: u64) -> Option<usize> {
    let mut others: Vec<u64> = voters.into_iter().filter(|v| *v != leader).collect();
    others.sort_unstable();
    others.dedup();
    others.iter().position(|v| *v == me)
}

/// Watches for a silent leader until the task is aborted.
pub async fn watch(node: Arc<Node>) {
    let cfg = &node.config.raft;
    let schedule = Schedule::new(
        cfg.heartbeat_ms,
        cfg.election_timeout_min_ms,
        cfg.election_timeout_max_ms,
    );
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trigger: Option<Instant> = None;
    loop {
        tick.tick().await;
        // Only a follower that has had a leader: at start-up openraft's own timer elects.
        let Some((leader, heard)) = node.leader_contact.last() else {
            continue;
        };
        // Nothing to look at before the earliest rank's turn (the common case, every tick).
        if heard.elapsed() < schedule.wait(0) {
            continue;
        }
        let (is_leader, voters) = {
            let m = node.raft.metrics().borrow_watched().clone();
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
            (m.current_leader == Some(node.id), voters)
        };
        if is_leader {
            continue;
        }
        let Some(rank) = rank(voters, leader, node.id) else {
            continue;
        };
        let silent = heard.elapsed();
        if silent < schedule.wait(rank) {
            continue;
        }
        // A candidate that did not win asks again only after a stagger (openraft's timer may
        // be quicker by then; either way the term does not race upwards every tick), and a
        // leader that answered is pinged again no sooner either.
        if last_trigger.is_some_and(|t| t.elapsed() < schedule.stagger.max(schedule.lease / 2)) {
            continue;
        }
        last_trigger = Some(Instant::now());
        // Only a leader that is *gone* is replaced early: a killed one refuses the connection
        // at once. One that is paused, cut off or merely slow (a loaded machine) cannot be
        // told apart from here, and is left to openraft's own timer (lease plus a random
        // election timeout): asking for votes against a slow but working leader deposed it
        // hundreds of times in the 10-minute overload run of issue #20.
        let probe = Duration::from_millis(cfg.election_timeout_min_ms.max(20));
        match crate::liveness::ping_outcome(&node, leader, probe).await {
            crate::liveness::Ping::Unreachable => {}
            outcome => {
                tracing::debug!(
                    node = node.id,
                    leader,
                    ?outcome,
                    "leader silent but not gone: leaving the election to openraft's timer"
                );
                continue;
            }
        }
        tracing::info!(
            node = node.id,
            leader,
            silent_ms = silent.as_millis() as u64,
            rank,
            "no AppendEntries from the leader past its lease and no answer: asking for votes"
        );
        node.metrics.prompt_elections.inc();
        // With Pre-Vote on, a member whose log is behind asks first and learns it cannot win
        // without raising the term: the member that can win is not refused for a round.
        if let Err(e) = node.raft.trigger().elect(cfg.pre_vote).await {
            tracing::warn!(node = node.id, "could not start an election: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_follower_asks_first_and_the_rest_take_turns() {
        assert_eq!(rank([1, 2, 3], 1, 2), Some(0));
        assert_eq!(rank([1, 2, 3], 1, 3), Some(1));
        assert_eq!(rank([3, 1, 2], 2, 1), Some(0));
        assert_eq!(rank([3, 1, 2], 2, 3), Some(1));
        // A learner or a stranger never asks.
        assert_eq!(rank([1, 2, 3], 1, 4), None);
        // The silent leader itself (after a restart, say) is not ranked.
        assert_eq!(rank([1, 2, 3], 1, 1), None);
    }

    #[test]
    fn the_first_ask_comes_right_after_the_lease() {
        let s = Schedule::new(50, 150, 300);
        assert_eq!(s.lease, Duration::from_millis(300));
        assert_eq!(s.wait(0), Duration::from_millis(325));
        assert_eq!(s.wait(1), Duration::from_millis(400));
        // Below openraft's own first election (lease + at least election_timeout_min).
        assert!(s.wait(1) < Duration::from_millis(300 + 150));
        let slow = Schedule::new(1000, 3000, 6000);
        assert_eq!(slow.wait(0), Duration::from_millis(6500));
    }
}
