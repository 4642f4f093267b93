//! `OpenStorageIdentity`, `OpenStorageCluster`, `OpenStorageNode` and `OpenStorageMountAttach`.

use crate::node::Node;
use custos_proto::openstorage::api::open_storage_cluster_server::OpenStorageCluster;
use custos_proto::openstorage::api::open_storage_identity_server::OpenStorageIdentity;
use custos_proto::openstorage::api::open_storage_mount_attach_server::OpenStorageMountAttach;
use custos_proto::openstorage::api::open_storage_node_server::OpenStorageNode;
use custos_proto::openstorage::api::{self, *};
use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The SDK version custos speaks: that of the pinned Python client.
pub const SDK_VERSION: (i32, i32, i32) = (0, 101, 39);

pub struct IdentityService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl OpenStorageIdentity for IdentityService {
    async fn version(
        &self,
        request: Request<SdkIdentityVersionRequest>,
    ) -> Result<Response<SdkIdentityVersionResponse>, Status> {
        self.node
            .reader(
                request.metadata(),
                "/openstorage.api.OpenStorageIdentity/Version",
            )
            .await
            .map(drop)?;
        let (major, minor, patch) = SDK_VERSION;
        Ok(Response::new(SdkIdentityVersionResponse {
            sdk_version: Some(SdkVersion {
                major,
                minor,
                patch,
                version: format!("{major}.{minor}.{patch}"),
            }),
            version: Some(StorageVersion {
                driver: "custos".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                details: [(
                    "cluster_id".to_string(),
                    self.node.config.cluster_id.clone(),
                )]
                .into_iter()
                .collect(),
            }),
        }))
    }

    async fn capabilities(
        &self,
        request: Request<SdkIdentityCapabilitiesRequest>,
    ) -> Result<Response<SdkIdentityCapabilitiesResponse>, Status> {
        self.node
            .reader(
                request.metadata(),
                "/openstorage.api.OpenStorageIdentity/Capabilities",
            )
            .await
            .map(drop)?;
        use sdk_service_capability::open_storage_service::Type;
        let served = [
            Type::Cluster,
            Type::Node,
            Type::Volume,
            Type::MountAttach,
            Type::Role,
            Type::SchedulePolicy,
            Type::StoragePolicy,
            Type::Credentials,
            Type::Alerts,
        ];
        let capabilities = served
            .into_iter()
            .map(|t| SdkServiceCapability {
                r#type: Some(sdk_service_capability::Type::Service(
                    sdk_service_capability::OpenStorageService { r#type: t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(SdkIdentityCapabilitiesResponse {
            capabilities,
        }))
    }
}

pub struct ClusterService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl OpenStorageCluster for ClusterService {
    async fn inspect_current(
        &self,
        request: Request<SdkClusterInspectCurrentRequest>,
    ) -> Result<Response<SdkClusterInspectCurrentResponse>, Status> {
        // A linearizable call decides after the barrier, so a member without a quorum answers
        // NotInQuorum only to a serializable one (docs/compatibility.md).
        self.node
            .reader(
                request.metadata(),
                "/openstorage.api.OpenStorageCluster/InspectCurrent",
            )
            .await
            .map(drop)?;
        let live = self
            .node
            .has_live_leader(&self.node.raft.metrics().borrow_watched());
        let status = if live {
            api::Status::Ok
        } else {
            api::Status::NotInQuorum
        };
        Ok(Response::new(SdkClusterInspectCurrentResponse {
            cluster: Some(StorageCluster {
                status: status as i32,
                id: self.node.config.cluster_id.clone(),
                name: self.node.config.cluster_name.clone(),
            }),
        }))
    }
}

pub struct NodeService {
    pub node: Arc<Node>,
}

impl NodeService {
    /// A registered node as the SDK shows it: status from the leader's liveness view, one
    /// pool whose `Used` is the bytes placed on the node (allocated, not written).
    fn storage_node(
        &self,
        record: &custos_model::StorageNodeRecord,
        placed: u64,
        down: &std::collections::BTreeSet<u64>,
    ) -> StorageNode {
        let up = !down.contains(&record.id.0);
        StorageNode {
            id: record.id.0.to_string(),
            status: if up {
                api::Status::Ok
            } else {
                api::Status::Offline
            } as i32,
            mgmt_ip: record.mgmt_ip.clone(),
            data_ip: record.data_ip.clone(),
            hostname: record.hostname.clone(),
            node_labels: record.labels.clone().into_iter().collect(),
            scheduler_node_name: record.hostname.clone(),
            pools: vec![StoragePool {
                id: 0,
                total_size: record.capacity_bytes,
                used: placed,
                labels: record.labels.clone().into_iter().collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Registered nodes (members that have not registered yet are absent).
    async fn nodes(&self) -> Vec<StorageNode> {
        let down = self.node.down_members().await;
        let state = self.node.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .nodes()
            .map(|n| self.storage_node(n, state.node_load(n.id), &down))
            .collect()
    }

    async fn find(&self, id: &str) -> Result<StorageNode, tonic::Status> {
        if id.is_empty() {
            return Err(tonic::Status::invalid_argument("Node id must be provided"));
        }
        let down = self.node.down_members().await;
        let state = self.node.state.read().unwrap_or_else(|p| p.into_inner());
        let record = id
            .parse::<u64>()
            .ok()
            .and_then(|n| state.node(custos_model::NodeId(n)))
            .or_else(|| state.nodes().find(|n| n.answers_to(id)));
        match record {
            Some(r) => Ok(self.storage_node(r, state.node_load(r.id), &down)),
            None => Err(tonic::Status::not_found(format!("Node {id} not found"))),
        }
    }

    fn method(name: &str) -> String {
        format!("/openstorage.api.OpenStorageNode/{name}")
    }

    fn node_id(id: &str) -> Result<custos_model::NodeId, tonic::Status> {
        id.parse::<u64>().map(custos_model::NodeId).map_err(|_| {
            tonic::Status::invalid_argument(format!("Node id must be a number, not {id:?}"))
        })
    }

    async fn write(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
        op: custos_model::Op,
    ) -> Result<custos_model::Reply, tonic::Status> {
        let caller = self.node.writer(meta, &Self::method(name)).await?;
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await
    }

    /// The role decision of a read (see [`Node::reader`]): linearizable unless asked
    /// otherwise, like volume reads. The node reads then fetch the liveness view (from the
    /// leader) and read the state again: a state at least as new as the one decided on.
    async fn authorize_read(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
    ) -> Result<(), tonic::Status> {
        self.node.reader(meta, &Self::method(name)).await.map(drop)
    }
}

#[tonic::async_trait]
impl OpenStorageNode for NodeService {
    async fn inspect(
        &self,
        request: Request<SdkNodeInspectRequest>,
    ) -> Result<Response<SdkNodeInspectResponse>, tonic::Status> {
        self.authorize_read(request.metadata(), "Inspect").await?;
        let node = self.find(&request.get_ref().node_id).await?;
        Ok(Response::new(SdkNodeInspectResponse { node: Some(node) }))
    }

    async fn inspect_current(
        &self,
        request: Request<SdkNodeInspectCurrentRequest>,
    ) -> Result<Response<SdkNodeInspectCurrentResponse>, tonic::Status> {
        self.authorize_read(request.metadata(), "InspectCurrent")
            .await?;
        let node = self.find(&self.node.id.to_string()).await?;
        Ok(Response::new(SdkNodeInspectCurrentResponse {
            node: Some(node),
        }))
    }

    async fn enumerate(
        &self,
        request: Request<SdkNodeEnumerateRequest>,
    ) -> Result<Response<SdkNodeEnumerateResponse>, tonic::Status> {
        self.authorize_read(request.metadata(), "Enumerate").await?;
        let node_ids = self.nodes().await.into_iter().map(|n| n.id).collect();
        Ok(Response::new(SdkNodeEnumerateResponse { node_ids }))
    }

    async fn enumerate_with_filters(
        &self,
        request: Request<SdkNodeEnumerateWithFiltersRequest>,
    ) -> Result<Response<SdkNodeEnumerateWithFiltersResponse>, tonic::Status> {
        self.authorize_read(request.metadata(), "EnumerateWithFilters")
            .await?;
        Ok(Response::new(SdkNodeEnumerateWithFiltersResponse {
            nodes: self.nodes().await,
        }))
    }

    async fn cordon_attachments(
        &self,
        request: Request<SdkNodeCordonAttachmentsRequest>,
    ) -> Result<Response<SdkNodeCordonAttachmentsResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let id = Self::node_id(&req.node_id)?;
        self.write(
            &meta,
            "CordonAttachments",
            custos_model::Op::CordonNode { id },
        )
        .await?;
        Ok(Response::new(SdkNodeCordonAttachmentsResponse {}))
    }

    async fn uncordon_attachments(
        &self,
        request: Request<SdkNodeUncordonAttachmentsRequest>,
    ) -> Result<Response<SdkNodeUncordonAttachmentsResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let id = Self::node_id(&req.node_id)?;
        self.write(
            &meta,
            "UncordonAttachments",
            custos_model::Op::UncordonNode { id },
        )
        .await?;
        Ok(Response::new(SdkNodeUncordonAttachmentsResponse {}))
    }

    /// Drain is one recorded command, so the job is done when the call returns.
    async fn drain_attachments(
        &self,
        request: Request<SdkNodeDrainAttachmentsRequest>,
    ) -> Result<Response<SdkJobResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self
            .node
            .writer(&meta, &Self::method("DrainAttachments"))
            .await?;
        let op = custos_model::Op::DrainNode {
            id: Self::node_id(&req.node_id)?,
        };
        let job_id = caller.request_id.0.clone();
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await?;
        let job = Job {
            id: job_id,
            state: job::State::Done as i32,
            r#type: job::Type::DrainAttachments as i32,
            ..Default::default()
        };
        Ok(Response::new(SdkJobResponse { job: Some(job) }))
    }

    /// What the node last reported for the volumes it holds (empty until it reports).
    async fn volume_usage_by_node(
        &self,
        request: Request<SdkNodeVolumeUsageByNodeRequest>,
    ) -> Result<Response<SdkNodeVolumeUsageByNodeResponse>, tonic::Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), &Self::method("VolumeUsageByNode"))
            .await?;
        let id = Self::node_id(&request.get_ref().node_id)?;
        if state.node(id).is_none() {
            return Err(tonic::Status::not_found(format!("Node {} not found", id.0)));
        }
        let volume_usage = state
            .node_usage(id)
            .into_iter()
            .map(|(vid, u)| VolumeUsage {
                volume_name: state
                    .volume(&vid)
                    .map(|v| v.name.clone())
                    .unwrap_or_default(),
                volume_id: vid.0,
                exclusive_bytes: u.bytes_used,
                total_bytes: u.bytes_used,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(SdkNodeVolumeUsageByNodeResponse {
            volume_usage_info: Some(VolumeUsageByNode { volume_usage }),
        }))
    }
}

/// `OpenStorageMountAttach`: attachments are recorded on the node that takes the request,
/// as upstream attaches on the node serving the call.
pub struct MountAttachService {
    pub node: Arc<Node>,
}

impl MountAttachService {
    async fn write(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
        op: custos_model::Op,
    ) -> Result<custos_model::Reply, tonic::Status> {
        let caller = self
            .node
            .writer(
                meta,
                &format!("/openstorage.api.OpenStorageMountAttach/{name}"),
            )
            .await?;
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await
    }
}

#[tonic::async_trait]
impl OpenStorageMountAttach for MountAttachService {
    async fn attach(
        &self,
        request: Request<SdkVolumeAttachRequest>,
    ) -> Result<Response<SdkVolumeAttachResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let op = custos_model::Op::AttachVolume {
            id: custos_model::VolumeId(req.volume_id),
            node: self.node.id.to_string(),
        };
        match self.write(&meta, "Attach", op).await? {
            custos_model::Reply::Attached { device_path } => {
                Ok(Response::new(SdkVolumeAttachResponse { device_path }))
            }
            other => Err(crate::status::internal(format!(
                "unexpected reply to attach: {other:?}"
            ))),
        }
    }

    async fn detach(
        &self,
        request: Request<SdkVolumeDetachRequest>,
    ) -> Result<Response<SdkVolumeDetachResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        self.write(
            &meta,
            "Detach",
            custos_model::Op::DetachVolume {
                id: custos_model::VolumeId(req.volume_id),
            },
        )
        .await?;
        Ok(Response::new(SdkVolumeDetachResponse {}))
    }

    async fn mount(
        &self,
        request: Request<SdkVolumeMountRequest>,
    ) -> Result<Response<SdkVolumeMountResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let op = custos_model::Op::MountVolume {
            id: custos_model::VolumeId(req.volume_id),
            path: req.mount_path,
        };
        self.write(&meta, "Mount", op).await?;
        Ok(Response::new(SdkVolumeMountResponse {}))
    }

    async fn unmount(
        &self,
        request: Request<SdkVolumeUnmountRequest>,
    ) -> Result<Response<SdkVolumeUnmountResponse>, tonic::Status> {
        let (meta, _, req) = request.into_parts();
        let op = custos_model::Op::UnmountVolume {
            id: custos_model::VolumeId(req.volume_id),
            path: req.mount_path,
        };
        self.write(&meta, "Unmount", op).await?;
        Ok(Response::new(SdkVolumeUnmountResponse {}))
    }
}
