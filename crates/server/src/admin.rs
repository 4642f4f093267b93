//! `custos.admin.v1.ClusterAdmin`: what operators and `custos dev` ask a node about its cluster.

use crate::node::Node;
use custos_model::command::REPORT_USAGE_METHOD;
use custos_model::{NodeId, Op, Reply, VolumeId, VolumeUsage};
use custos_proto::custos::admin::v1::cluster_admin_server::ClusterAdmin;
use custos_proto::custos::admin::v1::{
    Member, ReportUsageReply, ReportUsageRequest, StatusReply, StatusRequest,
};
use openraft::ServerState;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        // Cluster status reveals topology, not data: the same role check as Cluster.InspectCurrent.
        self.node.caller(
            request.metadata(),
            "/openstorage.api.OpenStorageCluster/InspectCurrent",
        )?;
        let m = self.node.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let members = self
            .node
            .members()
            .into_iter()
            .map(|(id, (member, voter))| Member {
                id,
                raft_addr: member.raft_addr,
                sdk_addr: member.sdk_addr,
                voter,
            })
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(Response::new(StatusReply {
            node_id: self.node.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            // openraft 0.9's metrics carry no commit index; everything applied is committed,
            // so this is a lower bound.
            committed_index: applied,
            applied_index: applied,
            state: state.to_string(),
            members,
            cluster_id: self.node.config.cluster_id.clone(),
            cluster_name: self.node.config.cluster_name.clone(),
            serving: self.node.has_live_leader(&m) && m.running_state.is_ok(),
        }))
    }

    async fn report_usage(
        &self,
        request: Request<ReportUsageRequest>,
    ) -> Result<Response<ReportUsageReply>, Status> {
        let caller = self.node.caller(request.metadata(), REPORT_USAGE_METHOD)?;
        let req = request.into_inner();
        let volumes = req
            .volumes
            .into_iter()
            .map(|v| {
                let usage = VolumeUsage {
                    bytes_used: v.bytes_used,
                    reads: v.reads,
                    writes: v.writes,
                    read_bytes: v.read_bytes,
                    write_bytes: v.write_bytes,
                    reported_ms: 0,
                };
                (VolumeId(v.volume_id), usage)
            })
            .collect();
        let op = Op::ReportUsage {
            node: NodeId(req.node_id),
            volumes,
        };
        match self
            .node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await?
        {
            Reply::UsageRecorded { ignored } => Ok(Response::new(ReportUsageReply {
                ignored: ignored.into_iter().map(|v| v.0).collect(),
            })),
            other => Err(crate::status::internal(format!(
                "unexpected reply to a usage report: {other:?}"
            ))),
        }
    }
}
