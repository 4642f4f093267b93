//! `OpenStorageVolume`: create, inspect, enumerate and delete volumes.

use super::unimplemented_methods;
use crate::node::Node;
use crate::status;
use custos_model::{Op, Reply, VolumeFilter, VolumeId, MUST_SUPPLY_VOLUME_ID};
use custos_proto::convert;
use custos_proto::openstorage::api::open_storage_volume_server::OpenStorageVolume;
use custos_proto::openstorage::api::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct VolumeService {
    pub node: Arc<Node>,
}

const SERVICE: &str = "/openstorage.api.OpenStorageVolume/";

fn method(name: &str) -> String {
    format!("{SERVICE}{name}")
}

/// `Stats` and `CapacityUsage` refuse an empty id with upstream's own text (`volume_ops.go`),
/// after the role check, as upstream's handlers run after its interceptors.
fn require_stats_id(id: &VolumeId) -> Result<(), Status> {
    if id.as_str().is_empty() {
        return Err(Status::invalid_argument("Must supply volume id"));
    }
    Ok(())
}

impl VolumeService {
    /// The SDK view of a volume; `status` is DEGRADED while a replica is on a node this member
    /// hears nothing from (until the leader re-places it).
    fn inspect_response(&self, v: &custos_model::Volume) -> SdkVolumeInspectResponse {
        let mut volume = convert::volume_to_proto(v);
        if v.replicas
            .iter()
            .any(|r| !self.node.liveness.is_up(r.0, self.node.id))
        {
            volume.status = VolumeStatus::Degraded as i32;
        }
        SdkVolumeInspectResponse {
            volume: Some(volume),
            name: v.name.clone(),
            labels: v.labels.clone().into_iter().collect(),
        }
    }

    /// Runs `f` over the state the caller's role decision saw (see [`Node::reader`]).
    async fn read<T>(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
        f: impl FnOnce(&custos_model::State, &custos_model::Identity) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let (caller, state) = self.node.reader(meta, &method(name)).await?;
        f(&state, &caller.identity)
    }

    /// Authenticates, then proposes `op` and waits for its reply.
    async fn write(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
        op: Op,
    ) -> Result<Reply, Status> {
        let caller = self.node.writer(meta, &method(name)).await?;
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await
    }

    fn filter(
        name: &str,
        labels: &std::collections::HashMap<String, String>,
        ownership: Option<&Ownership>,
    ) -> VolumeFilter {
        VolumeFilter {
            name: (!name.is_empty()).then(|| name.to_string()),
            labels: labels.clone().into_iter().collect(),
            ownership: ownership.map(convert::ownership_from_proto),
        }
    }
}

#[tonic::async_trait]
impl OpenStorageVolume for VolumeService {
    async fn create(
        &self,
        request: Request<SdkVolumeCreateRequest>,
    ) -> Result<Response<SdkVolumeCreateResponse>, Status> {
        let caller = self
            .node
            .writer(request.metadata(), &method("Create"))
            .await?;
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("Must supply a unique name"));
        }
        let Some(spec) = req.spec.as_ref() else {
            return Err(Status::invalid_argument(
                "Must supply a volume specification",
            ));
        };
        let op = Op::CreateVolume {
            id: VolumeId(uuid::Uuid::new_v4().to_string()),
            name: req.name.clone(),
            spec: convert::spec_from_proto(spec),
            labels: req.labels.into_iter().collect(),
            acls: convert::acls_from_proto(spec.ownership.as_ref()),
        };
        match self
            .node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await?
        {
            Reply::VolumeCreated { id } => {
                Ok(Response::new(SdkVolumeCreateResponse { volume_id: id.0 }))
            }
            other => Err(status::internal(format!(
                "unexpected reply to create: {other:?}"
            ))),
        }
    }

    async fn delete(
        &self,
        request: Request<SdkVolumeDeleteRequest>,
    ) -> Result<Response<SdkVolumeDeleteResponse>, Status> {
        let caller = self
            .node
            .writer(request.metadata(), &method("Delete"))
            .await?;
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(Status::invalid_argument(MUST_SUPPLY_VOLUME_ID));
        }
        let op = Op::DeleteVolume {
            id: VolumeId(req.volume_id),
        };
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await?;
        Ok(Response::new(SdkVolumeDeleteResponse {}))
    }

    async fn inspect(
        &self,
        request: Request<SdkVolumeInspectRequest>,
    ) -> Result<Response<SdkVolumeInspectResponse>, Status> {
        let id = VolumeId(request.get_ref().volume_id.clone());
        if id.0.is_empty() {
            return Err(Status::invalid_argument(MUST_SUPPLY_VOLUME_ID));
        }
        let resp = self
            .read(request.metadata(), "Inspect", |state, who| {
                state
                    .inspect_volume(who, &id)
                    .map(|v| self.inspect_response(v))
                    .map_err(status::from_rejection)
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn inspect_with_filters(
        &self,
        request: Request<SdkVolumeInspectWithFiltersRequest>,
    ) -> Result<Response<SdkVolumeInspectWithFiltersResponse>, Status> {
        let req = request.get_ref();
        let filter = Self::filter(&req.name, &req.labels, req.ownership.as_ref());
        let volumes = self
            .read(request.metadata(), "InspectWithFilters", |state, who| {
                Ok(state
                    .readable_volumes(who, &filter)
                    .map(|v| self.inspect_response(v))
                    .collect())
            })
            .await?;
        Ok(Response::new(SdkVolumeInspectWithFiltersResponse {
            volumes,
        }))
    }

    async fn enumerate(
        &self,
        request: Request<SdkVolumeEnumerateRequest>,
    ) -> Result<Response<SdkVolumeEnumerateResponse>, Status> {
        let filter = VolumeFilter::default();
        let volume_ids = self
            .read(request.metadata(), "Enumerate", |state, who| {
                Ok(state
                    .readable_volumes(who, &filter)
                    .map(|v| v.id.0.clone())
                    .collect())
            })
            .await?;
        Ok(Response::new(SdkVolumeEnumerateResponse { volume_ids }))
    }

    async fn enumerate_with_filters(
        &self,
        request: Request<SdkVolumeEnumerateWithFiltersRequest>,
    ) -> Result<Response<SdkVolumeEnumerateWithFiltersResponse>, Status> {
        let req = request.get_ref();
        let filter = Self::filter(&req.name, &req.labels, req.ownership.as_ref());
        let volume_ids = self
            .read(request.metadata(), "EnumerateWithFilters", |state, who| {
                Ok(state
                    .readable_volumes(who, &filter)
                    .map(|v| v.id.0.clone())
                    .collect())
            })
            .await?;
        Ok(Response::new(SdkVolumeEnumerateWithFiltersResponse {
            volume_ids,
        }))
    }

    async fn update(
        &self,
        request: Request<SdkVolumeUpdateRequest>,
    ) -> Result<Response<SdkVolumeUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let op = Op::UpdateVolume {
            id: VolumeId(req.volume_id),
            labels: req.labels.into_iter().collect(),
            update: req
                .spec
                .as_ref()
                .map(convert::update_from_proto)
                .unwrap_or_default(),
        };
        self.write(&meta, "Update", op).await?;
        Ok(Response::new(SdkVolumeUpdateResponse {}))
    }

    async fn clone(
        &self,
        request: Request<SdkVolumeCloneRequest>,
    ) -> Result<Response<SdkVolumeCloneResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let op = Op::CloneVolume {
            id: VolumeId(uuid::Uuid::new_v4().to_string()),
            name: req.name,
            parent: VolumeId(req.parent_id),
            labels: req.additional_labels.into_iter().collect(),
        };
        match self.write(&meta, "Clone", op).await? {
            Reply::VolumeCloned { id } => {
                Ok(Response::new(SdkVolumeCloneResponse { volume_id: id.0 }))
            }
            other => Err(status::internal(format!(
                "unexpected reply to clone: {other:?}"
            ))),
        }
    }

    async fn snapshot_create(
        &self,
        request: Request<SdkVolumeSnapshotCreateRequest>,
    ) -> Result<Response<SdkVolumeSnapshotCreateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let op = Op::CreateSnapshot {
            id: VolumeId(uuid::Uuid::new_v4().to_string()),
            volume: VolumeId(req.volume_id),
            name: req.name,
            labels: req.labels.into_iter().collect(),
        };
        match self.write(&meta, "SnapshotCreate", op).await? {
            Reply::SnapshotCreated { id } => Ok(Response::new(SdkVolumeSnapshotCreateResponse {
                snapshot_id: id.0,
            })),
            other => Err(status::internal(format!(
                "unexpected reply to snapshot create: {other:?}"
            ))),
        }
    }

    async fn snapshot_restore(
        &self,
        request: Request<SdkVolumeSnapshotRestoreRequest>,
    ) -> Result<Response<SdkVolumeSnapshotRestoreResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let op = Op::RestoreSnapshot {
            volume: VolumeId(req.volume_id),
            snapshot: VolumeId(req.snapshot_id),
        };
        self.write(&meta, "SnapshotRestore", op).await?;
        Ok(Response::new(SdkVolumeSnapshotRestoreResponse {}))
    }

    async fn snapshot_schedule_update(
        &self,
        request: Request<SdkVolumeSnapshotScheduleUpdateRequest>,
    ) -> Result<Response<SdkVolumeSnapshotScheduleUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let op = Op::UpdateSnapshotSchedule {
            id: VolumeId(req.volume_id),
            names: req.snapshot_schedule_names,
        };
        self.write(&meta, "SnapshotScheduleUpdate", op).await?;
        Ok(Response::new(SdkVolumeSnapshotScheduleUpdateResponse {}))
    }

    async fn snapshot_enumerate(
        &self,
        request: Request<SdkVolumeSnapshotEnumerateRequest>,
    ) -> Result<Response<SdkVolumeSnapshotEnumerateResponse>, Status> {
        let volume =
            Some(VolumeId(request.get_ref().volume_id.clone())).filter(|v| !v.0.is_empty());
        let labels = Default::default();
        let volume_snapshot_ids = self
            .read(request.metadata(), "SnapshotEnumerate", |state, who| {
                let snaps = state
                    .snapshots_of(who, volume.as_ref(), &labels)
                    .map_err(status::from_rejection)?;
                Ok(snaps.into_iter().map(|v| v.id.0.clone()).collect())
            })
            .await?;
        Ok(Response::new(SdkVolumeSnapshotEnumerateResponse {
            volume_snapshot_ids,
        }))
    }

    async fn snapshot_enumerate_with_filters(
        &self,
        request: Request<SdkVolumeSnapshotEnumerateWithFiltersRequest>,
    ) -> Result<Response<SdkVolumeSnapshotEnumerateWithFiltersResponse>, Status> {
        let req = request.get_ref();
        let volume = Some(VolumeId(req.volume_id.clone())).filter(|v| !v.0.is_empty());
        let labels = req.labels.clone().into_iter().collect();
        let volume_snapshot_ids = self
            .read(
                request.metadata(),
                "SnapshotEnumerateWithFilters",
                |state, who| {
                    let snaps = state
                        .snapshots_of(who, volume.as_ref(), &labels)
                        .map_err(status::from_rejection)?;
                    Ok(snaps.into_iter().map(|v| v.id.0.clone()).collect())
                },
            )
            .await?;
        Ok(Response::new(
            SdkVolumeSnapshotEnumerateWithFiltersResponse {
                volume_snapshot_ids,
            },
        ))
    }

    /// Usage comes from storage nodes' reports (`custos.admin.v1.ClusterAdmin/ReportUsage`);
    /// until a node reports, every figure is zero ("not reported", docs/compatibility.md). The
    /// access check is Read.
    async fn stats(
        &self,
        request: Request<SdkVolumeStatsRequest>,
    ) -> Result<Response<SdkVolumeStatsResponse>, Status> {
        let id = VolumeId(request.get_ref().volume_id.clone());
        let usage = self
            .read(request.metadata(), "Stats", |state, who| {
                require_stats_id(&id)?;
                state
                    .inspect_volume(who, &id)
                    .map_err(status::from_rejection)?;
                Ok(state.volume_usage(&id).unwrap_or_default())
            })
            .await?;
        let stats = Stats {
            reads: usage.reads,
            writes: usage.writes,
            read_bytes: usage.read_bytes,
            write_bytes: usage.write_bytes,
            bytes_used: usage.bytes_used,
            ..Default::default()
        };
        Ok(Response::new(SdkVolumeStatsResponse { stats: Some(stats) }))
    }

    async fn capacity_usage(
        &self,
        request: Request<SdkVolumeCapacityUsageRequest>,
    ) -> Result<Response<SdkVolumeCapacityUsageResponse>, Status> {
        let id = VolumeId(request.get_ref().volume_id.clone());
        let usage = self
            .read(request.metadata(), "CapacityUsage", |state, who| {
                require_stats_id(&id)?;
                state
                    .inspect_volume(who, &id)
                    .map_err(status::from_rejection)?;
                Ok(state.volume_usage(&id).unwrap_or_default())
            })
            .await?;
        let info = CapacityUsageInfo {
            exclusive_bytes: usage.bytes_used as i64,
            shared_bytes: 0,
            total_bytes: usage.bytes_used as i64,
        };
        Ok(Response::new(SdkVolumeCapacityUsageResponse {
            capacity_usage_info: Some(info),
        }))
    }

    unimplemented_methods! { "OpenStorageVolume";
        volume_catalog => "VolumeCatalog" (SdkVolumeCatalogRequest) -> SdkVolumeCatalogResponse;
    }
}
