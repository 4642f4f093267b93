//! `OpenStorageRole`: the replicated role registry.

use crate::node::Node;
use crate::status;
use custos_model::{Op, Reply};
use custos_proto::convert;
use custos_proto::openstorage::api::open_storage_role_server::OpenStorageRole;
use custos_proto::openstorage::api::*;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct RoleService {
    pub node: Arc<Node>,
}

fn method(name: &str) -> String {
    format!("/openstorage.api.OpenStorageRole/{name}")
}

impl RoleService {
    async fn write_role(
        &self,
        meta: &tonic::metadata::MetadataMap,
        name: &str,
        role: Option<SdkRole>,
        update: bool,
    ) -> Result<SdkRole, Status> {
        let caller = self.node.writer(meta, &method(name)).await?;
        let Some(role) = role else {
            return Err(Status::invalid_argument("Must supply a role"));
        };
        let role = convert::role_from_proto(&role);
        let op = if update {
            Op::UpdateRole { role }
        } else {
            Op::CreateRole { role }
        };
        match self
            .node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await?
        {
            Reply::Role(r) => Ok(convert::role_to_proto(&r)),
            other => Err(status::internal(format!(
                "unexpected reply to role {name}: {other:?}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl OpenStorageRole for RoleService {
    async fn create(
        &self,
        request: Request<SdkRoleCreateRequest>,
    ) -> Result<Response<SdkRoleCreateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let role = self.write_role(&meta, "Create", req.role, false).await?;
        Ok(Response::new(SdkRoleCreateResponse { role: Some(role) }))
    }

    async fn update(
        &self,
        request: Request<SdkRoleUpdateRequest>,
    ) -> Result<Response<SdkRoleUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let role = self.write_role(&meta, "Update", req.role, true).await?;
        Ok(Response::new(SdkRoleUpdateResponse { role: Some(role) }))
    }

    async fn delete(
        &self,
        request: Request<SdkRoleDeleteRequest>,
    ) -> Result<Response<SdkRoleDeleteResponse>, Status> {
        let caller = self
            .node
            .writer(request.metadata(), &method("Delete"))
            .await?;
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("Must supply a role name"));
        }
        self.node
            .write(
                caller.identity,
                caller.request_id,
                Op::DeleteRole { name },
                caller.deadline,
            )
            .await?;
        Ok(Response::new(SdkRoleDeleteResponse {}))
    }

    async fn enumerate(
        &self,
        request: Request<SdkRoleEnumerateRequest>,
    ) -> Result<Response<SdkRoleEnumerateResponse>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), &method("Enumerate"))
            .await?;
        Ok(Response::new(SdkRoleEnumerateResponse {
            names: state.role_names().map(str::to_string).collect(),
        }))
    }

    async fn inspect(
        &self,
        request: Request<SdkRoleInspectRequest>,
    ) -> Result<Response<SdkRoleInspectResponse>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), &method("Inspect"))
            .await?;
        let name = &request.get_ref().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("Must supply a role name"));
        }
        let role = state
            .role(name)
            .ok_or_else(|| Status::not_found(format!("Role {name} not found")))?;
        Ok(Response::new(SdkRoleInspectResponse {
            role: Some(convert::role_to_proto(role)),
        }))
    }
}
