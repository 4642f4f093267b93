//! Incoming peer traffic: the `custos.raft.v1.RaftService` server, feeding openraft and
//! answering forwarded writes and read-index requests when this node leads.

use crate::codec;
use crate::node::{Node, ProposeAttempt};
use custos_model::Command;
use custos_proto::custos::raft::v1::raft_service_server::RaftService;
use custos_proto::custos::raft::v1::{
    LivenessReply, LivenessRequest, PingReply, PingRequest, ProposeReply, ProposeRequest,
    RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest,
};
use serde::Serialize;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct PeerService {
    pub node: Arc<Node>,
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

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check_target(req.target)?;
        let result = self.node.raft.append_entries(decode(&req.payload)?).await;
        Self::reply(&result)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check_target(req.target)?;
        let result = self.node.raft.vote(decode(&req.payload)?).await;
        Self::reply(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check_target(req.target)?;
        let result = self.node.raft.install_snapshot(decode(&req.payload)?).await;
        Self::reply(&result)
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let req = request.into_inner();
        self.check_target(req.target)?;
        let cmd: Command = decode(&req.command)?;
        match self.node.propose_local(cmd).await? {
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

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let req = request.into_inner();
        self.check_target(req.target)?;
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
        self.check_target(request.get_ref().target)?;
        Ok(Response::new(PingReply {
            node_id: self.node.id,
        }))
    }

    async fn liveness(
        &self,
        request: Request<LivenessRequest>,
    ) -> Result<Response<LivenessReply>, Status> {
        self.check_target(request.get_ref().target)?;
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
