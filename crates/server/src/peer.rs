//! Incoming peer traffic: the `custos.raft.v1.RaftService` server, feeding openraft and
//! answering forwarded writes and read-index requests when this node leads.

use crate::codec;
use crate::network::SnapshotChunk;
use crate::node::{Node, ProposeAttempt};
use custos_model::{Command, Op};
use custos_proto::custos::raft::v1::raft_service_server::RaftService;
use custos_proto::custos::raft::v1::{
    ChangeMembershipReply, ForwardedCommand, ForwardedOutcome, JoinRequest, LivenessReply,
    LivenessRequest, PingReply, PingRequest, ProposeManyReply, ProposeManyRequest, ProposeReply,
    ProposeRequest, RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest, TimeoutNowReply,
    TimeoutNowRequest,
};
use custos_store::TypeConfig;
use openraft::async_runtime::WatchReceiver;
use openraft::error::RaftError;
use openraft::raft::SnapshotResponse;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

pub struct PeerService {
    pub node: Arc<Node>,
    /// Where received snapshots are written.
    pub inbox: custos_store::SnapshotInbox,
    /// The snapshot transfer under way from each sender: at most one per sender, replaced
    /// when it starts another.
    pub inbound: tokio::sync::Mutex<HashMap<u64, Inbound>>,
}

/// A snapshot being received: its transfer id, the file so far and how many bytes it holds.
pub struct Inbound {
    transfer: u64,
    file: tokio::fs::File,
    received: u64,
}

impl PeerService {
    pub fn new(node: Arc<Node>, inbox: custos_store::SnapshotInbox) -> PeerService {
        PeerService {
            node,
            inbox,
            inbound: Default::default(),
        }
    }

    /// Takes one chunk of a snapshot transfer (`network::SnapshotChunk`); installs the
    /// snapshot through openraft when the last one has arrived. A chunk that does not continue
    /// the transfer under way is refused: the leader starts over.
    async fn receive_chunk(
        &self,
        from: u64,
        chunk: SnapshotChunk,
    ) -> Result<Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>>, Status> {
        let mut inbound = self.inbound.lock().await;
        if chunk.offset == 0 {
            let file = self
                .inbox
                .receiving_file()
                .await
                .map_err(crate::status::internal)?;
            inbound.insert(
                from,
                Inbound {
                    transfer: chunk.transfer,
                    file,
                    received: 0,
                },
            );
        }
        let Some(current) = inbound.get_mut(&from) else {
            return Err(Status::failed_precondition(format!(
                "snapshot chunk at offset {} without a transfer under way: start over",
                chunk.offset
            )));
        };
        if current.transfer != chunk.transfer || current.received != chunk.offset {
            inbound.remove(&from);
            return Err(Status::failed_precondition(
                "snapshot chunk out of order or of another transfer: start over",
            ));
        }
        current
            .file
            .write_all(&chunk.data)
            .await
            .map_err(crate::status::internal)?;
        current.received += chunk.data.len() as u64;
        if !chunk.done {
            let vote = self.node.raft.metrics().borrow_watched().vote;
            return Ok(Ok(SnapshotResponse::new(vote)));
        }
        let Some(Inbound { mut file, .. }) = inbound.remove(&from) else {
            return Err(crate::status::internal("the transfer vanished"));
        };
        drop(inbound);
        file.flush().await.map_err(crate::status::internal)?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(crate::status::internal)?;
        let snapshot = custos_store::Snapshot {
            meta: chunk.meta,
            snapshot: file,
        };
        Ok(self
            .node
            .raft
            .install_full_snapshot(chunk.vote, snapshot)
            .await
            .map_err(RaftError::Fatal))
    }
}

impl PeerService {
    /// Peers name the node they mean to reach; a mismatch means a stale address book, and
    /// answering would risk splitting the cluster.
    fn check_target(&self, target: u64) -> Result<(), Status> {
        if target != self.node.id {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {target}",
                self.node.id
            )));
        }
        Ok(())
    }

    /// Binds the claimed sender to the TLS client certificate: with peer TLS on (the default),
    /// the certificate must name node `from` (SAN URI `custos://node/<from>`). The TLS
    /// handshake already required the certificate to chain to the cluster CA.
    fn check_from<T>(&self, request: &Request<T>, from: u64) -> Result<(), Status> {
        if !self.node.tls.peer_client.enabled() {
            return Ok(());
        }
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("peer calls need a cluster client certificate")
        })?;
        let cert = certs.first().ok_or_else(|| {
            Status::unauthenticated("peer calls need a cluster client certificate")
        })?;
        match crate::tls::node_id_of(cert) {
            Some(id) if id == from => Ok(()),
            Some(id) => {
                tracing::warn!(
                    node = self.node.id,
                    certificate = id,
                    claimed = from,
                    "refused a peer call whose sender is not the node its certificate names"
                );
                Err(Status::permission_denied(format!(
                    "the client certificate names node {id}, the request claims node {from}"
                )))
            }
            None => Err(Status::permission_denied(format!(
                "the client certificate names no node (SAN URI {}<id>)",
                crate::tls::NODE_URI_PREFIX
            ))),
        }
    }

    /// A member id removed from the cluster no longer acts as a peer: its certificate still
    /// chains to the cluster CA, but the id it names is retired (`Op::RetireNode`).
    fn check_not_retired(&self, from: u64) -> Result<(), Status> {
        if from != self.node.id && self.node.is_retired(from) {
            tracing::warn!(
                node = self.node.id,
                from,
                "refused a peer call from a node removed from the cluster"
            );
            return Err(Status::permission_denied(format!(
                "node {from} was removed from the cluster: its peer calls are refused"
            )));
        }
        Ok(())
    }

    /// The checks every peer call passes: sender identity, not retired, then target.
    fn check<T>(&self, request: &Request<T>, from: u64, target: u64) -> Result<(), Status> {
        self.check_from(request, from)?;
        self.check_not_retired(from)?;
        self.check_target(target)
    }

    /// Raft traffic must come from, and reach, the data directories the node registry
    /// records: a node whose data was wiped must not vote or take entries under its old id.
    fn check_incarnations(&self, req: &RaftRequest) -> Result<(), Status> {
        if req.target_incarnation != 0 && req.target_incarnation != self.node.incarnation {
            tracing::warn!(
                node = self.node.id,
                from = req.from,
                "refused Raft traffic meant for another incarnation of this node: its data \
                 directory was replaced; remove this member and join under a new id"
            );
            return Err(Status::failed_precondition(format!(
                "node {} has a new data directory (incarnation {}, registered {}): it must be \
                 removed from the cluster and join under a new id",
                self.node.id, self.node.incarnation, req.target_incarnation
            )));
        }
        let registered = self.node.registered_incarnation(req.from);
        // 0 = not stated (every custos node states its own; a wiped one states its new one).
        if registered != 0 && req.from_incarnation != 0 && req.from_incarnation != registered {
            tracing::warn!(
                node = self.node.id,
                from = req.from,
                "refused Raft traffic from a wiped incarnation of node {}",
                req.from
            );
            return Err(Status::failed_precondition(format!(
                "node {} is registered with another data directory (incarnation {registered}, \
                 this one {}): remove it and let it join under a new id",
                req.from, req.from_incarnation
            )));
        }
        Ok(())
    }

    fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
        let payload = codec::encode(result).map_err(crate::status::internal)?;
        Ok(Response::new(RaftReply {
            payload,
            error: String::new(),
        }))
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

impl PeerService {
    /// One command of a `ProposeMany`, as `propose` handles a forwarded write: a write slot of
    /// its own, no batches, not proposed once `deadline` has passed.
    async fn propose_forwarded(
        &self,
        forwarded: ForwardedCommand,
        deadline: std::time::Instant,
    ) -> ForwardedOutcome {
        let refused = |s: Status| ForwardedOutcome {
            code: s.code() as i32,
            message: s.message().to_string(),
            ..Default::default()
        };
        let _slot = match self.node.enter_write() {
            Ok(slot) => slot,
            Err(s) => return refused(s),
        };
        let cmd: Command = match decode(&forwarded.command) {
            Ok(cmd) => cmd,
            Err(s) => return refused(s),
        };
        if matches!(cmd.op, Op::Batch { .. }) {
            return refused(Status::invalid_argument(
                "batches are formed by the leader; forward commands one by one",
            ));
        }
        match self.node.propose_local(cmd, Some(deadline)).await {
            Ok(ProposeAttempt::Done(outcome)) => match codec::encode(&outcome) {
                Ok(outcome) => ForwardedOutcome {
                    outcome,
                    ..Default::default()
                },
                Err(e) => refused(crate::status::internal(e)),
            },
            Ok(ProposeAttempt::NotLeader(hint)) => ForwardedOutcome {
                not_leader: true,
                leader_hint: hint.unwrap_or(0),
                ..Default::default()
            },
            Err(s) => refused(s),
        }
    }
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let req = request.into_inner();
        self.check_incarnations(&req)?;
        let append: openraft::raft::AppendEntriesRequest<TypeConfig> = decode(&req.payload)?;
        // A leader of this term (or a newer one) is sending: contact, whether or not this
        // call's answer still reaches it. openraft gives AppendEntries one heartbeat interval
        // and then drops the call, which cancels this handler; under load an append (its
        // flush) can take longer than that while the leader is perfectly alive, and counting
        // contact only after the answer made followers call prompt elections against working
        // leaders (hundreds of terms in the 10-minute overload run of issue #20).
        if append.vote.committed
            && append.vote.leader_id.term >= self.node.raft.metrics().borrow_watched().current_term
        {
            self.node.leader_contact.heard(req.from);
        }
        let result = self.node.raft.append_entries(append).await;
        // Anything but a refusal means this node took `from` as its leader just now.
        if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            self.node.leader_contact.heard(req.from);
        }
        Self::reply(&result)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let req = request.into_inner();
        self.check_incarnations(&req)?;
        let result = self.node.raft.vote(decode(&req.payload)?).await;
        Self::reply(&result)
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let req = request.into_inner();
        self.check_incarnations(&req)?;
        let result = self.node.raft.pre_vote(decode(&req.payload)?).await;
        Self::reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let req = request.into_inner();
        self.check_incarnations(&req)?;
        let chunk: SnapshotChunk = decode(&req.payload)?;
        let result = self.receive_chunk(req.from, chunk).await?;
        Self::reply(&result)
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        // A forwarded write counts against this leader's bounds as its own clients' do, and
        // is not proposed once the follower's deadline (sent as its timeout) has passed.
        let _slot = self.node.enter_write()?;
        let deadline = crate::edge::deadline(
            request.metadata(),
            std::time::Duration::from_millis(self.node.config.request_timeout_ms),
        );
        let req = request.into_inner();
        let cmd: Command = decode(&req.command)?;
        if matches!(cmd.op, Op::Batch { .. }) {
            return Err(Status::invalid_argument(
                "batches are formed by the leader; forward commands one by one",
            ));
        }
        match self.node.propose_local(cmd, Some(deadline)).await? {
            ProposeAttempt::Done(outcome) => Ok(Response::new(ProposeReply {
                outcome: codec::encode(&outcome).map_err(crate::status::internal)?,
                leader_hint: 0,
                not_leader: false,
            })),
            ProposeAttempt::NotLeader(hint) => Ok(Response::new(ProposeReply {
                outcome: Vec::new(),
                leader_hint: hint.unwrap_or(0),
                not_leader: true,
            })),
        }
    }

    async fn propose_many(
        &self,
        request: Request<ProposeManyRequest>,
    ) -> Result<Response<ProposeManyReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        // Each command is answered on its own: its own write slot, its own deadline (what was
        // left of it when the follower sent it), its own outcome. All are handed to the
        // proposal batcher at once, so they usually share an entry.
        let now = std::time::Instant::now();
        let fallback = std::time::Duration::from_millis(self.node.config.request_timeout_ms);
        let commands = request.into_inner().commands;
        let outcomes = futures::future::join_all(commands.into_iter().map(|forwarded| {
            // At most this member's own request timeout, as `propose` caps the follower's.
            let left = match forwarded.deadline_ms {
                0 => fallback,
                ms => std::time::Duration::from_millis(ms).min(fallback),
            };
            self.propose_forwarded(forwarded, now + left)
        }))
        .await;
        Ok(Response::new(ProposeManyReply { outcomes }))
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        match self.node.read_index_local().await? {
            ProposeAttempt::Done(index) => Ok(Response::new(ReadIndexReply {
                read_index: index,
                leader_hint: 0,
                not_leader: false,
            })),
            ProposeAttempt::NotLeader(hint) => Ok(Response::new(ReadIndexReply {
                read_index: 0,
                leader_hint: hint.unwrap_or(0),
                not_leader: true,
            })),
        }
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        Ok(Response::new(PingReply {
            node_id: self.node.id,
        }))
    }

    async fn change_membership(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ChangeMembershipReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let cmd: Command = decode(&request.into_inner().command)?;
        let attempt = self.node.lead_change(cmd).await;
        Ok(Response::new(crate::membership::encode_reply(attempt)?))
    }

    async fn join(
        &self,
        request: Request<JoinRequest>,
    ) -> Result<Response<ChangeMembershipReply>, Status> {
        // Whoever answers (target 0); the certificate must name the node that joins.
        self.check_from(&request, request.get_ref().from)?;
        let req = request.into_inner();
        if req.target != 0 {
            self.check_target(req.target)?;
        }
        tracing::info!(
            node = self.node.id,
            joiner = req.from,
            raft = %crate::bounds::cap(&req.raft_addr, crate::bounds::MAX_LOGGED_FIELD),
            "a node asks to join"
        );
        Ok(Response::new(
            crate::membership::answer_join(&self.node, &req).await,
        ))
    }

    async fn timeout_now(
        &self,
        request: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        let req = request.into_inner();
        if self.node.current_leader() != Some(req.from) {
            return Ok(Response::new(TimeoutNowReply {
                started: false,
                reason: format!("node {} is not the leader this node follows", req.from),
            }));
        }
        Ok(Response::new(
            match self.node.timeout_now(req.last_log_index).await {
                Ok(()) => TimeoutNowReply {
                    started: true,
                    reason: String::new(),
                },
                Err(reason) => TimeoutNowReply {
                    started: false,
                    reason,
                },
            },
        ))
    }

    async fn liveness(
        &self,
        request: Request<LivenessRequest>,
    ) -> Result<Response<LivenessReply>, Status> {
        self.check(&request, request.get_ref().from, request.get_ref().target)?;
        if self.node.current_leader() != Some(self.node.id) {
            return Ok(Response::new(LivenessReply {
                down: Vec::new(),
                not_leader: true,
            }));
        }
        Ok(Response::new(LivenessReply {
            down: self.node.locally_down().into_iter().collect(),
            not_leader: false,
        }))
    }
}
