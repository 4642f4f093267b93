//! `OpenStorageCredentials`: cloud credentials, their secrets sealed here, at the edge, before anything is proposed.
//!
//! The request's secret fields are sealed with the cluster data key ([`crate::secrets`]) as
//! soon as the request is taken apart; the command, the Raft log, the state, snapshots,
//! backups and audit records only ever hold the sealed bytes. No answer carries a secret.
//! Ownership is decided in apply (writes) or on the read's state (reads), as for volumes.

use crate::node::Node;
use crate::status;
use custos_model::{CredentialId, Op, Reply, SealedSecret, SecretField};
use custos_proto::convert::credentials as convert;
use custos_proto::openstorage::api::open_storage_credentials_server::OpenStorageCredentials;
use custos_proto::openstorage::api::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct CredentialsService {
    pub node: Arc<Node>,
}

fn method(name: &str) -> String {
    format!("/openstorage.api.OpenStorageCredentials/{name}")
}

/// The refusal of a credential with secrets on a member without a data key.
const NO_DATA_KEY: &str = "custos has no data key configured ([secrets] data_key_file on every \
                           member): a credential's secrets are never stored in clear";

impl CredentialsService {
    /// Seals each secret for credential `id`; the plaintext is not kept.
    fn seal(
        &self,
        id: &CredentialId,
        secrets: Vec<(SecretField, &str)>,
    ) -> Result<BTreeMap<SecretField, SealedSecret>, Status> {
        if secrets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys = self
            .node
            .data_keys
            .as_ref()
            .ok_or_else(|| Status::failed_precondition(NO_DATA_KEY))?;
        Ok(secrets
            .into_iter()
            .map(|(field, plain)| {
                let sealed = keys.seal(&self.node.config.cluster_id, id, field, plain.as_bytes());
                (field, sealed)
            })
            .collect())
    }

    async fn write(&self, caller: crate::edge::Caller, op: Op) -> Result<Reply, Status> {
        self.node
            .write(caller.identity, caller.request_id, op, caller.deadline)
            .await
    }
}

#[tonic::async_trait]
impl OpenStorageCredentials for CredentialsService {
    async fn create(
        &self,
        request: Request<SdkCredentialCreateRequest>,
    ) -> Result<Response<SdkCredentialCreateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.node.writer(&meta, &method("Create")).await?;
        if req.name.is_empty() {
            return Err(Status::invalid_argument("Must supply a name"));
        }
        let parsed = convert::credential_from_proto(&req).map_err(status::from_rejection)?;
        let id = CredentialId(uuid::Uuid::new_v4().to_string());
        let secrets = self.seal(&id, parsed.secrets)?;
        let op = Op::CreateCredential {
            id,
            spec: parsed.spec,
            acls: parsed.acls,
            secrets,
        };
        drop(req);
        match self.write(caller, op).await? {
            Reply::CredentialCreated { id } => Ok(Response::new(SdkCredentialCreateResponse {
                credential_id: id.0,
            })),
            other => Err(status::internal(format!(
                "unexpected reply to credential create: {other:?}"
            ))),
        }
    }

    async fn update(
        &self,
        request: Request<SdkCredentialUpdateRequest>,
    ) -> Result<Response<SdkCredentialUpdateResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.node.writer(&meta, &method("Update")).await?;
        if req.credential_id.is_empty() {
            return Err(Status::invalid_argument("Must supply credentialId"));
        }
        let Some(update) = req.update_req.as_ref() else {
            return Err(Status::invalid_argument(convert::UNKNOWN_TYPE));
        };
        let parsed = convert::credential_from_proto(update).map_err(status::from_rejection)?;
        // Secrets are sealed for the credential's id; the request may name it by name. Apply
        // refuses the update if the name then resolves to another credential.
        let sealed_for = {
            let state = self.node.state.read().unwrap_or_else(|p| p.into_inner());
            state
                .inspect_credential(
                    &custos_model::Identity::internal_admin(""),
                    &req.credential_id,
                )
                .map(|c| c.id.clone())
                .unwrap_or_else(|_| CredentialId(req.credential_id.clone()))
        };
        let secrets = self.seal(&sealed_for, parsed.secrets)?;
        let op = Op::UpdateCredential {
            id: req.credential_id.clone(),
            spec: parsed.spec,
            secrets,
            sealed_for,
        };
        self.write(caller, op).await?;
        Ok(Response::new(SdkCredentialUpdateResponse {}))
    }

    async fn enumerate(
        &self,
        request: Request<SdkCredentialEnumerateRequest>,
    ) -> Result<Response<SdkCredentialEnumerateResponse>, Status> {
        let (caller, state) = self
            .node
            .reader(request.metadata(), &method("Enumerate"))
            .await?;
        Ok(Response::new(SdkCredentialEnumerateResponse {
            credential_ids: state
                .readable_credentials(&caller.identity)
                .map(|c| c.id.0.clone())
                .collect(),
        }))
    }

    async fn inspect(
        &self,
        request: Request<SdkCredentialInspectRequest>,
    ) -> Result<Response<SdkCredentialInspectResponse>, Status> {
        let (caller, state) = self
            .node
            .reader(request.metadata(), &method("Inspect"))
            .await?;
        let id = &request.get_ref().credential_id;
        let c = state
            .inspect_credential(&caller.identity, id)
            .map_err(status::from_rejection)?;
        Ok(Response::new(convert::credential_to_inspect(c, id)))
    }

    async fn delete(
        &self,
        request: Request<SdkCredentialDeleteRequest>,
    ) -> Result<Response<SdkCredentialDeleteResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.node.writer(&meta, &method("Delete")).await?;
        if req.credential_id.is_empty() {
            return Err(Status::invalid_argument(
                custos_model::state::MUST_PROVIDE_CREDENTIAL_ID,
            ));
        }
        self.write(
            caller,
            Op::DeleteCredential {
                id: req.credential_id,
            },
        )
        .await?;
        Ok(Response::new(SdkCredentialDeleteResponse {}))
    }

    /// Upstream asks the driver to reach the object store; custos checks the shape locally:
    /// the fields upstream's create requires, and that every sealed secret opens with this
    /// member's data keys (docs/compatibility.md).
    async fn validate(
        &self,
        request: Request<SdkCredentialValidateRequest>,
    ) -> Result<Response<SdkCredentialValidateResponse>, Status> {
        let (caller, state) = self
            .node
            .reader(request.metadata(), &method("Validate"))
            .await?;
        let id = &request.get_ref().credential_id;
        if id.is_empty() {
            return Err(Status::invalid_argument(
                custos_model::state::MUST_PROVIDE_CREDENTIAL_ID,
            ));
        }
        let c = state
            .inspect_credential(&caller.identity, id)
            .map_err(status::from_rejection)?
            .clone();
        drop(state);
        let failed = |e: &dyn std::fmt::Display| {
            Status::internal(format!("failed to validate credentials: {e}"))
        };
        c.spec
            .validate_create(&c.secrets)
            .map_err(|r| failed(&r.message))?;
        if !c.secrets.is_empty() {
            let keys = self
                .node
                .data_keys
                .as_ref()
                .ok_or_else(|| failed(&NO_DATA_KEY))?;
            for (field, sealed) in &c.secrets {
                keys.open(&self.node.config.cluster_id, &c.id, *field, sealed)
                    .map_err(|e| failed(&format!("{}: {e}", field.name())))?;
            }
        }
        Ok(Response::new(SdkCredentialValidateResponse {}))
    }

    async fn delete_references(
        &self,
        request: Request<SdkCredentialDeleteReferencesRequest>,
    ) -> Result<Response<SdkCredentialDeleteReferencesResponse>, Status> {
        let (meta, _, req) = request.into_parts();
        let caller = self.node.writer(&meta, &method("DeleteReferences")).await?;
        if req.credential_id.is_empty() {
            return Err(Status::invalid_argument(
                "Must provide credentials name/uuid",
            ));
        }
        self.write(
            caller,
            Op::DeleteCredentialReferences {
                id: req.credential_id,
            },
        )
        .await?;
        Ok(Response::new(SdkCredentialDeleteReferencesResponse {}))
    }
}
