//! `OpenStorageIdentity`, `OpenStorageCluster`, `OpenStorageNode` and `OpenStorageMountAttach`.

use super::unimplemented_methods;
use crate::node::Node;
use custos_proto::openstorage::api::open_storage_cluster_server::OpenStorageCluster;
use custos_proto::openstorage::api::open_storage_identity_server::OpenStorageIdentity;
use custos_proto::openstorage::api::open_storage_mount_attach_server::OpenStorageMountAttach;
use custos_proto::openstorage::api::open_storage_node_server::OpenStorageNode;
use custos_proto::openstorage::api::{self, *};
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
        self.node.caller(
            request.metadata(),
            "/openstorage.api.OpenStorageIdentity/Version",
        )?;
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
        self.node.caller(
            request.metadata(),
            "/openstorage.api.OpenStorageIdentity/Capabilities",
        )?;
        use sdk_service_capability::open_storage_service::Type;
        let served = [
            Type::Cluster,
            Type::Node,
            Type::Volume,
            Type::MountAttach,
            Type::Role,
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
        self.node.caller(
            request.metadata(),
            "/openstorage.api.OpenStorageCluster/InspectCurrent",
        )?;
        let status = if self.node.current_leader().is_some() {
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
    fn storage_node(&self, id: u64, member: &custos_store::Member) -> StorageNode {
        let up = self.node.current_leader().is_some();
        let host = |addr: &str| {
            addr.rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default()
        };
        StorageNode {
            id: id.to_string(),
            status: if up {
                api::Status::Ok
            } else {
                api::Status::NotInQuorum
            } as i32,
            mgmt_ip: host(&member.sdk_addr),
            data_ip: host(&member.raft_addr),
            hostname: host(&member.sdk_addr),
            scheduler_node_name: id.to_string(),
            ..Default::default()
        }
    }

    fn method(name: &str) -> String {
        format!("/openstorage.api.OpenStorageNode/{name}")
    }
}

#[tonic::async_trait]
impl OpenStorageNode for NodeService {
    async fn inspect(
        &self,
        request: Request<SdkNodeInspectRequest>,
    ) -> Result<Response<SdkNodeInspectResponse>, Status> {
        self.node
            .caller(request.metadata(), &Self::method("Inspect"))?;
        let id = request.into_inner().node_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("Node id must be provided"));
        }
        let member = id
            .parse::<u64>()
            .ok()
            .and_then(|n| self.node.member(n).map(|m| (n, m)));
        let Some((n, member)) = member else {
            return Err(Status::not_found(format!("Node {id} not found")));
        };
        Ok(Response::new(SdkNodeInspectResponse {
            node: Some(self.storage_node(n, &member)),
        }))
    }

    async fn inspect_current(
        &self,
        request: Request<SdkNodeInspectCurrentRequest>,
    ) -> Result<Response<SdkNodeInspectCurrentResponse>, Status> {
        self.node
            .caller(request.metadata(), &Self::method("InspectCurrent"))?;
        let member = self.node.member(self.node.id).unwrap_or_default();
        Ok(Response::new(SdkNodeInspectCurrentResponse {
            node: Some(self.storage_node(self.node.id, &member)),
        }))
    }

    async fn enumerate(
        &self,
        request: Request<SdkNodeEnumerateRequest>,
    ) -> Result<Response<SdkNodeEnumerateResponse>, Status> {
        self.node
            .caller(request.metadata(), &Self::method("Enumerate"))?;
        let node_ids = self
            .node
            .members()
            .keys()
            .map(|id| id.to_string())
            .collect();
        Ok(Response::new(SdkNodeEnumerateResponse { node_ids }))
    }

    async fn enumerate_with_filters(
        &self,
        request: Request<SdkNodeEnumerateWithFiltersRequest>,
    ) -> Result<Response<SdkNodeEnumerateWithFiltersResponse>, Status> {
        self.node
            .caller(request.metadata(), &Self::method("EnumerateWithFilters"))?;
        let nodes = self
            .node
            .members()
            .iter()
            .map(|(id, (m, _))| self.storage_node(*id, m))
            .collect();
        Ok(Response::new(SdkNodeEnumerateWithFiltersResponse { nodes }))
    }

    unimplemented_methods! { "OpenStorageNode";
        volume_usage_by_node => "VolumeUsageByNode" (SdkNodeVolumeUsageByNodeRequest) -> SdkNodeVolumeUsageByNodeResponse;
        drain_attachments => "DrainAttachments" (SdkNodeDrainAttachmentsRequest) -> SdkJobResponse;
        cordon_attachments => "CordonAttachments" (SdkNodeCordonAttachmentsRequest) -> SdkNodeCordonAttachmentsResponse;
        uncordon_attachments => "UncordonAttachments" (SdkNodeUncordonAttachmentsRequest) -> SdkNodeUncordonAttachmentsResponse;
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
        let caller = self.node.caller(
            meta,
            &format!("/openstorage.api.OpenStorageMountAttach/{name}"),
        )?;
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
