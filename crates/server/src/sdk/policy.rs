//! `OpenStorageSchedulePolicy` and `OpenStoragePolicy`: schedule and storage policies, written through Raft and decided in apply (`state/policies.rs`).

use crate::node::Node;
use crate::status;
use custos_model::{Identity, Op, State};
use custos_proto::convert_policy;
use custos_proto::openstorage::api::open_storage_policy_server::OpenStoragePolicy;
use custos_proto::openstorage::api::open_storage_schedule_policy_server::OpenStorageSchedulePolicy;
use custos_proto::openstorage::api::*;
use std::sync::Arc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

pub struct SchedulePolicyService {
    pub node: Arc<Node>,
}

pub struct StoragePolicyService {
    pub node: Arc<Node>,
}

const SCHEDULE: &str = "/openstorage.api.OpenStorageSchedulePolicy/";
const STORAGE: &str = "/openstorage.api.OpenStoragePolicy/";

/// Authenticates as `method`, proposes the op `make` builds (after the edge checks it makes,
/// which run once the caller is known, as upstream's handlers run after its interceptors) and
/// waits for apply's answer.
async fn write(
    node: &Node,
    meta: &MetadataMap,
    method: &str,
    make: impl FnOnce() -> Result<Op, Status>,
) -> Result<(), Status> {
    let caller = node.writer(meta, method).await?;
    let op = make()?;
    node.write(caller.identity, caller.request_id, op, caller.deadline)
        .await?;
    Ok(())
}

/// Runs `f` over the state the caller's role decision saw ([`Node::reader`]).
async fn read<T>(
    node: &Node,
    meta: &MetadataMap,
    method: &str,
    f: impl FnOnce(&State, &Identity) -> Result<T, Status>,
) -> Result<T, Status> {
    let (caller, state) = node.reader(meta, method).await?;
    f(&state, &caller.identity)
}

fn schedule_policy(p: Option<SdkSchedulePolicy>) -> Result<custos_model::SchedulePolicy, Status> {
    p.as_ref()
        .map(convert_policy::schedule_policy_from_proto)
        .ok_or_else(|| Status::invalid_argument("SchedulePolicy object cannot be nil"))
}

#[tonic::async_trait]
impl OpenStorageSchedulePolicy for SchedulePolicyService {
    async fn create(
        &self,
        request: Request<SdkSchedulePolicyCreateRequest>,
    ) -> Result<Response<SdkSchedulePolicyCreateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{SCHEDULE}Create"), || {
            Ok(Op::CreateSchedulePolicy {
                policy: schedule_policy(req.schedule_policy)?,
            })
        })
        .await?;
        Ok(Response::new(SdkSchedulePolicyCreateResponse {}))
    }

    async fn update(
        &self,
        request: Request<SdkSchedulePolicyUpdateRequest>,
    ) -> Result<Response<SdkSchedulePolicyUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{SCHEDULE}Update"), || {
            Ok(Op::UpdateSchedulePolicy {
                policy: schedule_policy(req.schedule_policy)?,
            })
        })
        .await?;
        Ok(Response::new(SdkSchedulePolicyUpdateResponse {}))
    }

    async fn enumerate(
        &self,
        request: Request<SdkSchedulePolicyEnumerateRequest>,
    ) -> Result<Response<SdkSchedulePolicyEnumerateResponse>, Status> {
        let policies = read(
            &self.node,
            request.metadata(),
            &format!("{SCHEDULE}Enumerate"),
            |state, _| {
                Ok(state
                    .schedule_policies()
                    .map(convert_policy::schedule_policy_to_proto)
                    .collect())
            },
        )
        .await?;
        Ok(Response::new(SdkSchedulePolicyEnumerateResponse {
            policies,
        }))
    }

    async fn inspect(
        &self,
        request: Request<SdkSchedulePolicyInspectRequest>,
    ) -> Result<Response<SdkSchedulePolicyInspectResponse>, Status> {
        let name = request.get_ref().name.clone();
        let policy = read(
            &self.node,
            request.metadata(),
            &format!("{SCHEDULE}Inspect"),
            |state, _| {
                state
                    .schedule_policy(&name)
                    .map(convert_policy::schedule_policy_to_proto)
                    .map_err(status::from_rejection)
            },
        )
        .await?;
        Ok(Response::new(SdkSchedulePolicyInspectResponse {
            policy: Some(policy),
        }))
    }

    async fn delete(
        &self,
        request: Request<SdkSchedulePolicyDeleteRequest>,
    ) -> Result<Response<SdkSchedulePolicyDeleteResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{SCHEDULE}Delete"), || {
            Ok(Op::DeleteSchedulePolicy { name: req.name })
        })
        .await?;
        Ok(Response::new(SdkSchedulePolicyDeleteResponse {}))
    }
}

/// The storage policy of a Create or Update request (upstream's checks first: name, then spec).
fn storage_policy(p: Option<SdkStoragePolicy>) -> Result<custos_model::StoragePolicy, Status> {
    let p = p.unwrap_or_default();
    if p.name.is_empty() {
        return Err(Status::invalid_argument(
            custos_model::state::MUST_SUPPLY_STORAGE_POLICY_NAME,
        ));
    }
    if p.policy.is_none() {
        return Err(Status::invalid_argument("Must supply Volume Specs"));
    }
    convert_policy::storage_policy_from_proto(&p).map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl OpenStoragePolicy for StoragePolicyService {
    async fn create(
        &self,
        request: Request<SdkOpenStoragePolicyCreateRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyCreateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{STORAGE}Create"), || {
            Ok(Op::CreateStoragePolicy {
                policy: storage_policy(req.storage_policy)?,
            })
        })
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyCreateResponse {}))
    }

    async fn enumerate(
        &self,
        request: Request<SdkOpenStoragePolicyEnumerateRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyEnumerateResponse>, Status> {
        let storage_policies = read(
            &self.node,
            request.metadata(),
            &format!("{STORAGE}Enumerate"),
            |state, who| {
                Ok(state
                    .readable_storage_policies(who)
                    .map(convert_policy::storage_policy_to_proto)
                    .collect())
            },
        )
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyEnumerateResponse {
            storage_policies,
        }))
    }

    async fn inspect(
        &self,
        request: Request<SdkOpenStoragePolicyInspectRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyInspectResponse>, Status> {
        let name = request.get_ref().name.clone();
        let policy = read(
            &self.node,
            request.metadata(),
            &format!("{STORAGE}Inspect"),
            |state, who| {
                state
                    .storage_policy(who, &name)
                    .map(convert_policy::storage_policy_to_proto)
                    .map_err(status::from_rejection)
            },
        )
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyInspectResponse {
            storage_policy: Some(policy),
        }))
    }

    async fn update(
        &self,
        request: Request<SdkOpenStoragePolicyUpdateRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{STORAGE}Update"), || {
            Ok(Op::UpdateStoragePolicy {
                policy: storage_policy(req.storage_policy)?,
            })
        })
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyUpdateResponse {}))
    }

    async fn delete(
        &self,
        request: Request<SdkOpenStoragePolicyDeleteRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyDeleteResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{STORAGE}Delete"), || {
            Ok(Op::DeleteStoragePolicy { name: req.name })
        })
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyDeleteResponse {}))
    }

    async fn set_default(
        &self,
        request: Request<SdkOpenStoragePolicySetDefaultRequest>,
    ) -> Result<Response<SdkOpenStoragePolicySetDefaultResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        write(&self.node, &meta, &format!("{STORAGE}SetDefault"), || {
            Ok(Op::SetDefaultStoragePolicy { name: req.name })
        })
        .await?;
        Ok(Response::new(SdkOpenStoragePolicySetDefaultResponse {}))
    }

    async fn default_inspect(
        &self,
        request: Request<SdkOpenStoragePolicyDefaultInspectRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyDefaultInspectResponse>, Status> {
        let storage_policy = read(
            &self.node,
            request.metadata(),
            &format!("{STORAGE}DefaultInspect"),
            |state, _| {
                Ok(state
                    .default_storage_policy()
                    .map(convert_policy::storage_policy_to_proto))
            },
        )
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyDefaultInspectResponse {
            storage_policy,
        }))
    }

    async fn release(
        &self,
        request: Request<SdkOpenStoragePolicyReleaseRequest>,
    ) -> Result<Response<SdkOpenStoragePolicyReleaseResponse>, Status> {
        let (meta, _, _) = request.into_parts();
        write(&self.node, &meta, &format!("{STORAGE}Release"), || {
            Ok(Op::ReleaseStoragePolicy)
        })
        .await?;
        Ok(Response::new(SdkOpenStoragePolicyReleaseResponse {}))
    }
}
