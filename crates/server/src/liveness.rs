//! Member liveness as this node sees it: every member is pinged over the peer channel; one that
//! has not answered for a while is Down. The leader's view drives re-placement.

use crate::node::Node;
use custos_proto::custos::raft::v1::{LivenessRequest, PingRequest};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often members are pinged.
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// A member that has not answered a ping for this long is reported Down.
pub const DOWN_AFTER: Duration = Duration::from_secs(2);

/// When each member last answered.
pub struct Liveness {
    started: Instant,
    last_seen: Mutex<HashMap<u64, Instant>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            started: Instant::now(),
            last_seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Liveness {
    pub fn saw(&self, id: u64) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    /// How long `id` has been silent (since this node started, if it never answered).
    pub fn silent_for(&self, id: u64) -> Duration {
        let seen = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        seen.unwrap_or(self.started).elapsed()
    }

    pub fn is_up(&self, id: u64, self_id: u64) -> bool {
        id == self_id || self.silent_for(id) < DOWN_AFTER
    }
}

/// Whether member `target` answers a ping (as itself) within `timeout`.
pub async fn ping(node: &Node, target: u64, timeout: Duration) -> bool {
    ping_outcome(node, target, timeout).await == Ping::Answered
}

/// How a ping ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// `target` answered, as itself.
    Answered,
    /// Nobody is there: the connection was refused or reset, or another process answers at
    /// its address. A killed member looks like this at once.
    Unreachable,
    /// No answer before the deadline: a member that is paused, cut off, or just slow (a
    /// loaded machine), which cannot be told apart from here.
    Silent,
}

/// Pings `target`, waiting at most `timeout`.
pub async fn ping_outcome(node: &Node, target: u64, timeout: Duration) -> Ping {
    let Some(mut client) = node.peers.client(node, target) else {
        return Ping::Unreachable;
    };
    let mut req = tonic::Request::new(PingRequest {
        from: node.id,
        target,
    });
    req.set_timeout(timeout);
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, client.ping(req)).await {
        Ok(Ok(reply)) if reply.get_ref().node_id == target => Ping::Answered,
        Ok(Ok(_)) => Ping::Unreachable,
        // A transport failure well before the deadline: refused or reset.
        Ok(Err(s))
            if s.code() == tonic::Code::Unavailable && started.elapsed() < timeout * 9 / 10 =>
        {
            Ping::Unreachable
        }
        Ok(Err(_)) | Err(_) => Ping::Silent,
    }
}

/// Pings every other member forever (until the task is aborted).
pub async fn probe(node: Arc<Node>) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets: Vec<u64> = node
            .members()
            .keys()
            .copied()
            .filter(|id| *id != node.id)
            .collect();
        let pings = targets.into_iter().map(|target| {
            let node = node.clone();
            async move {
                if ping(&node, target, PING_INTERVAL).await {
                    node.liveness.saw(target);
                }
            }
        });
        futures::future::join_all(pings).await;
    }
}

impl Node {
    /// Members this node hears nothing from.
    pub fn locally_down(&self) -> BTreeSet<u64> {
        self.members()
            .keys()
            .copied()
            .filter(|id| !self.liveness.is_up(*id, self.id))
            .collect()
    }

    /// Members considered down, in the leader's view (node status follows the leader, as
    /// re-placement does); this node's own view when the leader cannot be asked.
    pub async fn down_members(&self) -> BTreeSet<u64> {
        match self.current_leader() {
            Some(leader) if leader != self.id => {
                if let Some(mut client) = self.peers.client(self, leader) {
                    let mut req = tonic::Request::new(LivenessRequest {
                        from: self.id,
                        target: leader,
                    });
                    req.set_timeout(PING_INTERVAL);
                    if let Ok(reply) = client.liveness(req).await {
                        let reply = reply.into_inner();
                        if !reply.not_leader {
                            return reply.down.into_iter().collect();
                        }
                    }
                }
                self.locally_down()
            }
            _ => self.locally_down(),
        }
    }
}
