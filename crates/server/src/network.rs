//! Outgoing peer traffic: openraft's network over the `custos.raft.v1` gRPC service, and the
//! client cache used to forward writes and read-index requests to the leader.

use crate::codec;
use crate::node::Node;
use crate::tls::PeerClientTls;
use custos_proto::custos::raft::v1::raft_service_client::RaftServiceClient;
use custos_proto::custos::raft::v1::{RaftReply, RaftRequest};
use custos_store::{Member, SharedState, SnapshotMeta, TypeConfig, Vote};
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::transport::Channel;

/// The peer client of each node id, with the address it was made for.
type ClientCache = HashMap<u64, (String, RaftServiceClient<Channel>)>;

/// Cached peer clients by node id, for forwarding. Rebuilt when a member's address changes or
/// the TLS material is reloaded. Clones share the cache.
#[derive(Clone)]
pub struct PeerClients {
    tls: Arc<PeerClientTls>,
    clients: Arc<Mutex<ClientCache>>,
}

impl PeerClients {
    pub fn new(tls: Arc<PeerClientTls>) -> PeerClients {
        PeerClients {
            tls,
            clients: Arc::default(),
        }
    }

    pub fn client(&self, node: &Node, target: u64) -> Option<RaftServiceClient<Channel>> {
        self.client_via(&node.raft, target)
    }

    /// A client of `target` at the address `raft`'s membership records for it.
    pub fn client_via(
        &self,
        raft: &custos_store::Raft,
        target: u64,
    ) -> Option<RaftServiceClient<Channel>> {
        use openraft::async_runtime::WatchReceiver;
        let addr = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&target)?
            .raft_addr
            .clone();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, client)) = clients.get(&target) {
            if *cached == addr {
                return Some(client.clone());
            }
        }
        let client = RaftServiceClient::new(self.tls.channel(target, &addr)?);
        clients.insert(target, (addr, client.clone()));
        Some(client)
    }

    /// Drops the cached connections, so the next calls connect with fresh TLS material.
    pub fn forget(&self) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Builds one [`PeerConnection`] per target for openraft.
///
/// openraft asks for a new client for every heartbeat round it sends outside replication (each
/// linearizable read's leadership check among them), so the channel to each peer is cached here
/// and shared: a fresh channel per call costs a TCP and HTTP/2 handshake each time, and under
/// load thousands of sockets in TIME_WAIT (measured by the issue #7 benchmark).
pub struct PeerNetwork {
    pub self_id: u64,
    pub tls: Arc<PeerClientTls>,
    /// The replicated state, for the targets' registered incarnations.
    state: SharedState,
    incarnation: u64,
    /// The channel to each peer, with the address and TLS generation it was made for.
    channels: HashMap<u64, (String, u64, Channel)>,
}

impl PeerNetwork {
    pub fn new(
        self_id: u64,
        tls: Arc<PeerClientTls>,
        state: SharedState,
        incarnation: u64,
    ) -> PeerNetwork {
        PeerNetwork {
            self_id,
            tls,
            state,
            incarnation,
            channels: HashMap::new(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &Member) -> PeerConnection {
        let generation = self.tls.generation();
        let cached = self
            .channels
            .get(&target)
            .filter(|(addr, g, _)| *addr == node.raft_addr && *g == generation)
            .map(|(_, _, ch)| ch.clone());
        let channel = cached.or_else(|| {
            let ch = self.tls.channel(target, &node.raft_addr)?;
            self.channels
                .insert(target, (node.raft_addr.clone(), generation, ch.clone()));
            Some(ch)
        });
        PeerConnection {
            self_id: self.self_id,
            target,
            client: channel.map(RaftServiceClient::new),
            state: self.state.clone(),
            incarnation: self.incarnation,
        }
    }
}

/// openraft's connection to one peer.
pub struct PeerConnection {
    self_id: u64,
    target: u64,
    client: Option<RaftServiceClient<Channel>>,
    state: SharedState,
    incarnation: u64,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    PreVote,
    Snapshot,
}

/// How many snapshot bytes one `InstallSnapshot` call carries.
pub const SNAPSHOT_CHUNK: usize = 2 << 20;

/// One piece of a snapshot on its way to a follower: openraft 0.10 hands the network the
/// whole snapshot file, and custos sends it in chunks over the peer service's
/// `InstallSnapshot` call; the receiver (`peer.rs`) writes them to a file of its own and gives
/// the complete file to openraft (`Raft::install_full_snapshot`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// Names one transfer: a chunk of another transfer, or out of order, is refused and the
    /// leader starts over.
    pub transfer: u64,
    /// The sending leader's vote.
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// Where `data` starts in the snapshot file.
    pub offset: u64,
    pub data: Vec<u8>,
    /// The last chunk: the receiver installs the snapshot.
    pub done: bool,
}

/// A fresh transfer id: unique enough per process and per sender.
fn next_transfer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = rand::random::<u64>() & !0xffff;
    base | (NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff)
}

impl PeerConnection {
    /// Sends `req` as `rpc` and decodes the peer's openraft answer.
    async fn call<Req, Resp>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        match self.send(rpc, req, option).await? {
            Ok(reply) => decode_reply(reply),
            Err(status) => Err(status_error(status)),
        }
    }

    /// Sends `req` as `rpc`: the peer's reply or its gRPC status, or an error when it could
    /// not be sent at all.
    async fn send<Req: Serialize>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Result<RaftReply, tonic::Status>, RPCError<TypeConfig>> {
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other("peer address is not a valid URI"),
            )));
        };
        let payload = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftRequest {
            from: self.self_id,
            target: self.target,
            payload,
            from_incarnation: self.incarnation,
            target_incarnation: crate::node::registered_incarnation(&self.state, self.target),
        });
        request.set_timeout(option.hard_ttl());
        let result = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::PreVote => client.pre_vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        Ok(result.map(tonic::Response::into_inner))
    }
}

/// A peer's gRPC status as openraft's network error: UNAVAILABLE (no connection) is
/// unreachable, anything else a network error.
fn status_error(status: tonic::Status) -> RPCError<TypeConfig> {
    if status.code() == tonic::Code::Unavailable {
        RPCError::Unreachable(Unreachable::new(&status))
    } else {
        RPCError::Network(NetworkError::new(&status))
    }
}

/// The openraft answer in a peer's reply.
fn decode_reply<Resp: DeserializeOwned>(reply: RaftReply) -> Result<Resp, RPCError<TypeConfig>> {
    if !reply.error.is_empty() {
        return Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other(reply.error),
        )));
    }
    let decoded: Result<Resp, RaftError<TypeConfig>> =
        codec::decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    // The peer's Raft has stopped (a fatal error there): as good as unreachable.
    decoded.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.send(Rpc::PreVote, &rpc, &option).await? {
            Ok(reply) => decode_reply(reply),
            // A member of an earlier build has no PreVote call: count its answer as a grant,
            // as openraft does for a network without Pre-Vote, so elections go on while a
            // cluster is upgraded member by member. An unreachable member is not a grant.
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Ok(VoteResponse::new(rpc.vote, None, true))
            }
            Err(status) => Err(status_error(status)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: custos_store::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let transfer = next_transfer_id();
        let custos_store::Snapshot {
            meta,
            snapshot: mut file,
        } = snapshot;
        let unreadable = |e: std::io::Error| {
            StreamingError::StorageError(openraft::StorageError::from_io_error(
                openraft::ErrorSubject::Snapshot(None),
                openraft::ErrorVerb::Read,
                e,
            ))
        };
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(unreadable)?;
        tokio::pin!(cancel);
        let mut offset = 0u64;
        loop {
            let mut data = Vec::with_capacity(SNAPSHOT_CHUNK);
            (&mut file)
                .take(SNAPSHOT_CHUNK as u64)
                .read_to_end(&mut data)
                .await
                .map_err(unreadable)?;
            let done = data.len() < SNAPSHOT_CHUNK;
            let len = data.len() as u64;
            let chunk = SnapshotChunk {
                transfer,
                vote,
                meta: meta.clone(),
                offset,
                data,
                done,
            };
            let reply: SnapshotResponse<TypeConfig> = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                reply = self.call(Rpc::Snapshot, &chunk, &option) => reply?,
            };
            // The receiver has seen a newer leader: stop; openraft steps down on its vote.
            if done || reply.vote > vote {
                return Ok(reply);
            }
            offset += len;
        }
    }
}
