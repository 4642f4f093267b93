//! Raft membership changes (add a learner, promote, remove, transfer leadership), joining a
//! running cluster, and the leadership hand-over SIGTERM performs.
//!
//! A change runs in three steps: the node that took the request pre-checks the caller's role
//! and forwards a `Command` carrying `Op::ChangeMembership` to the leader (peer
//! `ChangeMembership`); the leader validates the change against the membership it holds and
//! proposes the command, whose apply decides whether the caller may make it and writes the
//! audit record; only when that applied does the leader carry the change out through openraft.

use crate::codec;
use crate::node::{now_ms, Attempt, Node};
use crate::status;
use custos_model::{Command, MembershipChange, NodeId, Op, RequestId};
use custos_proto::custos::raft::v1::{ChangeMembershipReply, JoinRequest, TimeoutNowRequest};
use custos_store::Member;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tonic::Status;

/// How long a transfer of leadership may take before the leader takes writes again.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a joining node's catch-up may take (a large state travels as a snapshot).
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One member as the leader reports it after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub raft_addr: String,
    pub sdk_addr: String,
    pub voter: bool,
}

/// The membership after a change, as the leader saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    pub leader: u64,
    pub members: Vec<MemberView>,
}

/// What the leader answers a forwarded change with (travels bincode-encoded).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChangeResult {
    Done(MembershipView),
    /// Refused or failed: a gRPC code (as i32) and a message for the operator.
    Failed {
        code: i32,
        message: String,
    },
}

impl ChangeResult {
    fn from_status(s: Status) -> ChangeResult {
        ChangeResult::Failed {
            code: s.code() as i32,
            message: s.message().to_string(),
        }
    }

    fn into_result(self) -> Result<MembershipView, Status> {
        match self {
            ChangeResult::Done(view) => Ok(view),
            ChangeResult::Failed { code, message } => {
                Err(Status::new(tonic::Code::from_i32(code), message))
            }
        }
    }
}

impl Node {
    /// The membership this node holds, with the leader it knows.
    pub fn membership_view(&self) -> MembershipView {
        MembershipView {
            leader: self.current_leader().unwrap_or(0),
            members: self
                .members()
                .into_iter()
                .map(|(id, (m, voter))| MemberView {
                    id,
                    raft_addr: m.raft_addr,
                    sdk_addr: m.sdk_addr,
                    voter,
                })
                .collect(),
        }
    }

    /// Carries out `change` for `cmd`'s caller: forwards it to the leader, retrying across
    /// elections until `deadline`.
    pub async fn change_membership(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<MembershipView, Status> {
        let mut hint = self.current_leader();
        loop {
            let attempt = match hint {
                Some(leader) if leader == self.id => {
                    match tokio::time::timeout_at(deadline.into(), self.lead_change(cmd.clone()))
                        .await
                    {
                        Ok(a) => a,
                        Err(_) => {
                            return Err(Status::deadline_exceeded(
                                "the membership change did not finish before the deadline; \
                                 check `custos cluster status` before retrying",
                            ))
                        }
                    }
                }
                Some(leader) => self.change_remote(leader, &cmd, deadline).await,
                None => Attempt::NotLeader(None),
            };
            match attempt {
                Attempt::Done(result) => return result.into_result(),
                Attempt::NotLeader(next) => {
                    if Instant::now() >= deadline {
                        return Err(status::no_leader("membership change not accepted"));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    hint = next.or_else(|| self.current_leader());
                }
            }
        }
    }

    async fn change_remote(
        &self,
        leader: u64,
        cmd: &Command,
        deadline: Instant,
    ) -> Attempt<ChangeResult> {
        let Some(mut client) = self.peers.client(self, leader) else {
            return Attempt::NotLeader(None);
        };
        let Some(req) = self.forward_request(leader, cmd, deadline) else {
            return Attempt::NotLeader(None);
        };
        match client.change_membership(req).await {
            Ok(reply) => decode_reply(reply.into_inner(), leader),
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => {
                Attempt::Done(ChangeResult::from_status(s))
            }
            Err(_) => Attempt::NotLeader(None),
        }
    }

    /// On the node that believes it leads: validates, proposes the authorization, carries
    /// the change out.
    pub(crate) async fn lead_change(&self, cmd: Command) -> Attempt<ChangeResult> {
        let Op::ChangeMembership { change } = &cmd.op else {
            return Attempt::Done(ChangeResult::from_status(status::internal(
                "a membership change without a membership operation",
            )));
        };
        let change = change.clone();
        if self.current_leader() != Some(self.id) {
            return Attempt::NotLeader(self.current_leader());
        }
        if let Err(s) = self.validate(&change) {
            return Attempt::Done(ChangeResult::from_status(s));
        }
        let request_id = cmd.request_id.clone();
        match self.propose_local(cmd, None).await {
            Ok(Attempt::Done(outcome)) => {
                if let Err(r) = outcome.into_result() {
                    return Attempt::Done(ChangeResult::from_status(status::from_rejection(r)));
                }
            }
            Ok(Attempt::NotLeader(hint)) => return Attempt::NotLeader(hint),
            Err(s) => return Attempt::Done(ChangeResult::from_status(s)),
        }
        let removed = match &change {
            MembershipChange::Remove { id } => Some(*id),
            _ => None,
        };
        let done = match change {
            MembershipChange::AddLearner {
                id,
                raft_addr,
                sdk_addr,
            } => self
                .raft
                .add_learner(
                    id.0,
                    Member {
                        raft_addr,
                        sdk_addr,
                    },
                    true,
                )
                .await
                .map(|_| ()),
            MembershipChange::Promote { id } => self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id.0])), false)
                .await
                .map(|_| ()),
            MembershipChange::Remove { id } => match self.members().get(&id.0) {
                // Removed earlier but not retired (leadership moved in between): retire only.
                None => Ok(()),
                Some((_, voter)) => {
                    let change = if *voter {
                        ChangeMembers::RemoveVoters(BTreeSet::from([id.0]))
                    } else {
                        ChangeMembers::RemoveNodes(BTreeSet::from([id.0]))
                    };
                    self.raft.change_membership(change, false).await.map(|_| ())
                }
            },
            MembershipChange::TransferLeader { to } => {
                return Attempt::Done(match self.transfer_leadership(Some(to.0)).await {
                    Ok(view) => ChangeResult::Done(view),
                    Err(s) => ChangeResult::from_status(s),
                });
            }
        };
        match done {
            Ok(()) => {
                if let Some(id) = removed {
                    if let Err(s) = self.retire(id, &request_id).await {
                        return Attempt::Done(ChangeResult::from_status(s));
                    }
                }
                Attempt::Done(ChangeResult::Done(self.membership_view()))
            }
            // Discarded: leadership changed before it committed; the leader decides again.
            Err(RaftError::APIError(
                ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f),
            )) => Attempt::NotLeader(f.leader_id),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => Attempt::Done(
                ChangeResult::from_status(Status::failed_precondition(e.to_string())),
            ),
            Err(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => Attempt::Done(
                ChangeResult::from_status(Status::failed_precondition(e.to_string())),
            ),
            Err(RaftError::Fatal(f)) => Attempt::Done(ChangeResult::from_status(
                Status::unavailable(format!("node is stopping: {f}")),
            )),
        }
    }

    /// On the leader, once member `id` is out of the Raft membership: records it as retired,
    /// so its id (and certificate) never acts as a peer or comes back as a member.
    async fn retire(&self, id: NodeId, request_id: &RequestId) -> Result<(), Status> {
        let cmd = Command {
            request_id: RequestId(format!("{}/retire", request_id.0)),
            identity: crate::duties::node_identity(self.id),
            time_ms: now_ms(),
            origin: NodeId(self.id),
            op: Op::RetireNode { id },
        };
        match self.propose_local(cmd, None).await? {
            Attempt::Done(outcome) => outcome
                .into_result()
                .map(drop)
                .map_err(status::from_rejection),
            Attempt::NotLeader(_) => Err(Status::unavailable(format!(
                "node {id} left the membership, but leadership moved before it was retired: \
                 run the remove again"
            ))),
        }
    }

    /// Whether `change` makes sense against the membership this leader holds.
    fn validate(&self, change: &MembershipChange) -> Result<(), Status> {
        let members = self.members();
        let voters = members.values().filter(|(_, v)| *v).count();
        let pre = |m: String| Err(Status::failed_precondition(m));
        if let MembershipChange::AddLearner { id, .. } | MembershipChange::Promote { id } = change {
            if self.is_retired(id.0) {
                return pre(format!(
                    "node {id} was removed from the cluster: a removed id never comes back. Let \
                     the node join under a new id"
                ));
            }
        }
        match change {
            MembershipChange::AddLearner {
                id,
                raft_addr,
                sdk_addr,
            } => {
                if id.0 == 0 {
                    return Err(Status::invalid_argument("node ids start at 1"));
                }
                if raft_addr.is_empty() || sdk_addr.is_empty() {
                    return Err(Status::invalid_argument(
                        "a new member needs its peer (raft) and SDK addresses",
                    ));
                }
                match members.get(&id.0) {
                    Some((_, true)) => pre(format!(
                        "node {id} is already a voter. A node that lost its data must not come \
                         back under its old id: remove it (`custos cluster remove {id}`) and \
                         let it join under a new id"
                    )),
                    Some((m, false)) if m.raft_addr != *raft_addr || m.sdk_addr != *sdk_addr => {
                        pre(format!(
                            "node {id} is already a learner at {} (SDK {}): remove it first to \
                             change its addresses",
                            m.raft_addr, m.sdk_addr
                        ))
                    }
                    _ => {
                        if let Some((other, _)) = members
                            .iter()
                            .find(|(other, (m, _))| **other != id.0 && m.raft_addr == *raft_addr)
                        {
                            return pre(format!(
                                "peer address {raft_addr} belongs to member {other} already"
                            ));
                        }
                        Ok(())
                    }
                }
            }
            MembershipChange::Promote { id } => match members.get(&id.0) {
                None => Err(Status::not_found(format!(
                    "node {id} is not a member: add it as a learner first"
                ))),
                Some(_) => Ok(()),
            },
            MembershipChange::Remove { id } => match members.get(&id.0) {
                None if self.is_registered(id.0) && !self.is_retired(id.0) => Ok(()),
                None => Err(Status::not_found(format!("node {id} is not a member"))),
                Some((_, true)) if voters == 1 => pre(format!(
                    "node {id} is the last voter: a cluster cannot remove its last voter"
                )),
                Some(_) => Ok(()),
            },
            MembershipChange::TransferLeader { to } => match members.get(&to.0) {
                None => Err(Status::not_found(format!("node {to} is not a member"))),
                Some((_, false)) => pre(format!(
                    "node {to} is a learner: only a voter can lead (promote it first)"
                )),
                Some(_) if to.0 == self.id => pre(format!("node {to} leads already")),
                Some(_) => Ok(()),
            },
        }
    }

    /// The voter (other than this node) whose replication has reached furthest.
    pub fn best_successor_id(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow_watched().clone();
        let voters: Vec<u64> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id)
            .collect();
        voters.into_iter().max_by_key(|v| (matched(&m, *v), *v))
    }

    /// On the leader: hands leadership to `to` (or the best successor). Writes wait while it
    /// runs (they are retried against the new leader); heartbeats stop so the followers'
    /// leader lease runs out, then the successor, once it holds the whole log, is told to
    /// campaign. openraft 0.9 has no transfer of its own; this is Raft's TimeoutNow.
    pub async fn transfer_leadership(&self, to: Option<u64>) -> Result<MembershipView, Status> {
        if self.current_leader() != Some(self.id) {
            return Err(Status::failed_precondition("this node does not lead"));
        }
        let Some(to) = to.or_else(|| self.best_successor_id()) else {
            return Err(Status::failed_precondition(
                "no other voter to hand leadership to",
            ));
        };
        if self.transferring.swap(true, Ordering::SeqCst) {
            return Err(Status::aborted(
                "a transfer of leadership is already running",
            ));
        }
        let started = Instant::now();
        let runtime = self.raft.runtime_config();
        runtime.heartbeat(false);
        runtime.elect(false);
        let result = self.hand_over(to).await;
        runtime.heartbeat(true);
        runtime.elect(true);
        self.transferring.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => {
                tracing::info!(
                    node = self.id,
                    to,
                    took_ms = started.elapsed().as_millis() as u64,
                    "handed leadership over"
                );
                Ok(self.membership_view())
            }
            Err(e) => {
                tracing::warn!(
                    node = self.id,
                    to,
                    "transfer of leadership failed: {}",
                    e.message()
                );
                Err(e)
            }
        }
    }

    async fn hand_over(&self, to: u64) -> Result<(), Status> {
        let deadline = Instant::now() + TRANSFER_TIMEOUT;
        // Writes are held back, so the log stops growing: wait for the successor to hold it.
        let last = loop {
            let m = self.raft.metrics().borrow_watched().clone();
            let last = m.last_log_index.unwrap_or(0);
            let matched = matched(&m, to).unwrap_or(0);
            if matched >= last {
                break last;
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!(
                    "node {to} did not catch up with the log ({matched} of {last}) in time"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Followers refuse votes while the lease of the last heartbeat lasts.
        let lease = Duration::from_millis(self.config.raft.election_timeout_max_ms + 50);
        tokio::time::sleep(lease).await;
        let mut asked = false;
        while Instant::now() < deadline {
            let leader = self.current_leader();
            if leader.is_some() && leader != Some(self.id) {
                return Ok(());
            }
            if !asked {
                asked = self.ask_to_campaign(to, last).await?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Status::unavailable(format!(
            "node {to} did not take leadership within {TRANSFER_TIMEOUT:?}"
        )))
    }

    async fn ask_to_campaign(&self, to: u64, last: u64) -> Result<bool, Status> {
        let Some(mut client) = self.peers.client(self, to) else {
            return Err(Status::failed_precondition(format!(
                "node {to} is not a member"
            )));
        };
        let mut req = tonic::Request::new(TimeoutNowRequest {
            from: self.id,
            target: to,
            last_log_index: last,
        });
        req.set_timeout(Duration::from_secs(1));
        match client.timeout_now(req).await {
            Ok(r) if r.get_ref().started => Ok(true),
            Ok(r) => Err(Status::unavailable(format!(
                "node {to} would not campaign: {}",
                r.into_inner().reason
            ))),
            Err(s) => Err(Status::unavailable(format!(
                "node {to} could not be reached: {}",
                s.message()
            ))),
        }
    }

    /// On the successor: campaigns at once if it holds the leader's whole log.
    pub async fn timeout_now(&self, leader_last: u64) -> Result<(), String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let mine = m.last_log_index.unwrap_or(0);
        if mine < leader_last {
            return Err(format!(
                "it holds the log to {mine}, the leader to {leader_last}"
            ));
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return Err("it is not a voter".into());
        }
        self.raft
            .trigger()
            .elect(false)
            .await
            .map_err(|e| format!("it is stopping: {e}"))
    }

    /// Answers a node's Join: adds it as a learner and, unless it asked to stay one, promotes
    /// it once it has caught up.
    pub async fn admit(&self, req: &JoinRequest) -> Result<MembershipView, Status> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        let joiner = NodeId(req.from);
        let registered = self.registered_incarnation(req.from);
        if registered != 0 && registered != req.incarnation {
            return Err(Status::failed_precondition(format!(
                "node {joiner} was registered with another data directory (incarnation \
                 {registered}, this one {}): a node that lost its data joins under a new id",
                req.incarnation
            )));
        }
        if self.is_retired(req.from) {
            return Err(Status::failed_precondition(format!(
                "node {joiner} was removed from the cluster: a removed id never comes back. \
                 Join under a new id"
            )));
        }
        // Register the joiner (with its incarnation) before it becomes a member: a node wiped
        // between joining and its own registration would otherwise be taken for itself.
        if registered == 0 && !req.registration.is_empty() {
            let record: custos_model::StorageNodeRecord = codec::decode(&req.registration)
                .map_err(|e| Status::invalid_argument(format!("undecodable registration: {e}")))?;
            if record.id != joiner || record.incarnation != req.incarnation {
                return Err(Status::invalid_argument(format!(
                    "the registration names node {} incarnation {}, the join node {joiner} \
                     incarnation {}",
                    record.id, record.incarnation, req.incarnation
                )));
            }
            self.write(
                crate::duties::node_identity(req.from),
                RequestId(format!("join/{}/register/{}", req.from, req.incarnation)),
                Op::RegisterNode { node: record },
                deadline,
            )
            .await?;
        }
        let command = |change: MembershipChange, step: &str| Command {
            request_id: RequestId(format!("join/{}/{step}/{}", req.from, uuid::Uuid::new_v4())),
            identity: crate::duties::node_identity(req.from),
            time_ms: 0,
            origin: NodeId(self.id),
            op: Op::ChangeMembership { change },
        };
        let view = self
            .change_membership(
                command(
                    MembershipChange::AddLearner {
                        id: joiner,
                        raft_addr: req.raft_addr.clone(),
                        sdk_addr: req.sdk_addr.clone(),
                    },
                    "learner",
                ),
                deadline,
            )
            .await?;
        if req.learner || view.members.iter().any(|m| m.id == req.from && m.voter) {
            return Ok(view);
        }
        self.change_membership(
            command(MembershipChange::Promote { id: joiner }, "promote"),
            deadline,
        )
        .await
    }
}

/// The log index replication to `id` has reached, as the leader's metrics tell.
fn matched(m: &custos_store::RaftMetrics, id: u64) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
}

fn decode_reply(reply: ChangeMembershipReply, asked: u64) -> Attempt<ChangeResult> {
    if reply.not_leader {
        let hint = (reply.leader_hint != 0).then_some(reply.leader_hint);
        return Attempt::NotLeader(hint.filter(|h| *h != asked));
    }
    match codec::decode::<ChangeResult>(&reply.result) {
        Ok(r) => Attempt::Done(r),
        Err(_) => Attempt::NotLeader(None),
    }
}

/// Encodes a leader's answer for the peer reply.
pub(crate) fn encode_reply(
    attempt: Attempt<ChangeResult>,
) -> Result<ChangeMembershipReply, Status> {
    Ok(match attempt {
        Attempt::Done(result) => ChangeMembershipReply {
            result: codec::encode(&result).map_err(status::internal)?,
            leader_hint: 0,
            not_leader: false,
        },
        Attempt::NotLeader(hint) => ChangeMembershipReply {
            result: Vec::new(),
            leader_hint: hint.unwrap_or(0),
            not_leader: true,
        },
    })
}

/// Answers a Join on the receiving member (forwarding the change to the leader).
pub async fn answer_join(node: &Node, req: &JoinRequest) -> ChangeMembershipReply {
    let result = match node.admit(req).await {
        Ok(view) => ChangeResult::Done(view),
        Err(s) => ChangeResult::from_status(s),
    };
    ChangeMembershipReply {
        result: codec::encode(&result).unwrap_or_default(),
        leader_hint: 0,
        not_leader: false,
    }
}

/// A node started with `--join ADDR` and no Raft state of its own asks the member at ADDR to
/// add it, retrying until it is a member (each refusal is logged with its reason).
pub async fn join(node: std::sync::Arc<Node>, addr: String, learner: bool) {
    let (raft_addr, sdk_addr) = node.config.advertised();
    let mut pause = Duration::from_millis(500);
    loop {
        match ask_to_join(&node, &addr, &raft_addr, &sdk_addr, learner).await {
            Ok(view) => {
                let voters: Vec<u64> = view
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.id)
                    .collect();
                tracing::info!(
                    node = node.id,
                    via = %addr,
                    leader = view.leader,
                    ?voters,
                    "joined the cluster"
                );
                return;
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                tracing::error!(node = node.id, via = %addr, "the cluster refused to admit this node: {}", s.message());
            }
            Err(s) => {
                tracing::warn!(node = node.id, via = %addr, "joining: {}", s.message());
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

async fn ask_to_join(
    node: &Node,
    addr: &str,
    raft_addr: &str,
    sdk_addr: &str,
    learner: bool,
) -> Result<MembershipView, Status> {
    let channel = node
        .tls
        .peer_client
        .join_channel(addr)
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach {addr}: {e}")))?;
    let mut client =
        custos_proto::custos::raft::v1::raft_service_client::RaftServiceClient::new(channel);
    let mut req = tonic::Request::new(JoinRequest {
        from: node.id,
        target: 0,
        raft_addr: raft_addr.to_string(),
        sdk_addr: sdk_addr.to_string(),
        learner,
        incarnation: node.incarnation,
        registration: codec::encode(&crate::duties::own_record(node))
            .map_err(|e| Status::internal(format!("encoding this node's registration: {e}")))?,
    });
    req.set_timeout(JOIN_TIMEOUT);
    let reply = client.join(req).await?.into_inner();
    codec::decode::<ChangeResult>(&reply.result)
        .map_err(|e| Status::internal(format!("undecodable join answer: {e}")))?
        .into_result()
}

/// A command for an operator's change, as the edge builds it.
pub fn operator_command(
    node: &Node,
    caller: crate::edge::Caller,
    change: MembershipChange,
) -> Command {
    Command {
        request_id: caller.request_id,
        identity: caller.identity,
        time_ms: now_ms(),
        origin: NodeId(node.id),
        op: Op::ChangeMembership { change },
    }
}
