//! `custos.admin.v1.ClusterAdmin`: what operators and `custos dev` ask a node about its cluster.

use crate::node::Node;
use custos_proto::custos::admin::v1::cluster_admin_server::ClusterAdmin;
use custos_proto::custos::admin::v1::{Member, StatusReply, StatusRequest};
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
            serving: m.current_leader.is_some() && m.running_state.is_ok(),
        }))
    }
}
