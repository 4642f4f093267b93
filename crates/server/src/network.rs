//! Outgoing peer traffic: openraft's network over the `custos.raft.v1` gRPC service, and the
//! client cache used to forward writes and read-index requests to the leader.

use crate::codec;
use crate::node::Node;
use crate::tls::PeerClientTls;
use custos_proto::custos::raft::v1::raft_service_client::RaftServiceClient;
use custos_proto::custos::raft::v1::{RaftReply, RaftRequest};
use custos_store::{Member, SharedState, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::Channel;

/// Cached peer clients by node id, for forwarding. Rebuilt when a member's address changes or
/// the TLS material is reloaded.
pub struct PeerClients {
    tls: Arc<PeerClientTls>,
    clients: Mutex<HashMap<u64, (String, RaftServiceClient<Channel>)>>,
}

impl PeerClients {
    pub fn new(tls: Arc<PeerClientTls>) -> PeerClients {
        PeerClients {
            tls,
            clients: Mutex::default(),
        }
    }

    pub fn client(&self, node: &Node, target: u64) -> Option<RaftServiceClient<Channel>> {
        let addr = node.member(target)?.raft_addr;
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
    Snapshot,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, Member, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
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
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let reply: RaftReply = match result {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        if !reply.error.is_empty() {
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(reply.error),
            )));
        }
        let decoded: Result<Resp, RaftError<u64, E>> =
            codec::decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, Member, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, Member, RaftError<u64>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
