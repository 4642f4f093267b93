//! custos client library: SDK and admin calls over gRPC with a bearer token, failing over
//! among a list of endpoints.

pub use custos_model as model;

pub mod credentials;
mod policy;

use custos_model::audit::{AuditQuery, AuditRecord};
use custos_model::{Code, Role, Volume, VolumeUpdate, VolumeUsage};
use custos_proto::convert;
use custos_proto::custos::admin::v1::access_client::AccessClient;
use custos_proto::custos::admin::v1::audit_client::AuditClient;
use custos_proto::custos::admin::v1::auth_client::AuthClient;
use custos_proto::custos::admin::v1::cluster_admin_client::ClusterAdminClient;
use custos_proto::custos::admin::v1::quotas_client::QuotasClient;
use custos_proto::custos::admin::v1::{
    AddLearnerRequest, AuditFollowRequest, AuditListRequest, AuditVerifyRequest, BackupRequest,
    PromoteRequest, RemoveRequest, ReportUsageRequest, StatusRequest, TransferLeaderRequest,
    VolumeUsageReport,
};
pub use custos_proto::custos::admin::v1::{
    AuditVerifyReply, ExplainReply, ExplainRequest, ListRevocationsRequest, Member,
    MembershipReply, Revocation, RevokeReply, RevokeRequest, StatusReply,
};
use custos_proto::custos::admin::v1::{ListQuotasRequest, QuotaUsageRequest, RemoveQuotaRequest};
pub use custos_proto::custos::admin::v1::{Quota, QuotaSubject, QuotaUse, SetQuotaRequest};
use custos_proto::openstorage::api::open_storage_cluster_client::OpenStorageClusterClient;
use custos_proto::openstorage::api::open_storage_identity_client::OpenStorageIdentityClient;
use custos_proto::openstorage::api::open_storage_mount_attach_client::OpenStorageMountAttachClient;
use custos_proto::openstorage::api::open_storage_node_client::OpenStorageNodeClient;
use custos_proto::openstorage::api::open_storage_role_client::OpenStorageRoleClient;
use custos_proto::openstorage::api::open_storage_volume_client::OpenStorageVolumeClient;
use custos_proto::openstorage::api::{self, *};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{}: {message}", code.name())]
    Status { code: Code, message: String },
    /// No endpoint could be reached.
    #[error("no endpoint reachable ({endpoints}): {last}")]
    Unreachable { endpoints: String, last: String },
    #[error("invalid endpoint {0:?}: expected host:port")]
    InvalidEndpoint(String),
    #[error("invalid token: it must be printable ASCII")]
    InvalidToken,
    #[error("unexpected server answer: {0}")]
    Protocol(String),
    /// TLS material could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Writing what the server sent (a backup) failed.
    #[error("writing: {0}")]
    Io(#[source] std::io::Error),
}

/// TLS for SDK connections: the CA that signed the servers' certificates and, for servers that
/// verify clients (`[tls] client_ca_file`), a client certificate.
#[derive(Clone, Debug)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Trust the CA certificate(s) in the PEM file `path`.
    pub fn from_ca_file(path: &std::path::Path) -> Result<ClientTls, ClientError> {
        let ca_pem = std::fs::read(path)
            .map_err(|e| ClientError::Tls(format!("cannot read {}: {e}", path.display())))?;
        if !String::from_utf8_lossy(&ca_pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ClientError::Tls(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        Ok(ClientTls {
            ca_pem,
            identity: None,
        })
    }

    /// Also present this client certificate and key (PEM).
    pub fn with_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> ClientTls {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    fn config(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(self.ca_pem.clone()));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl ClientError {
    /// The domain code of a status error, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            ClientError::Unreachable { .. } => Some(Code::Unavailable),
            _ => None,
        }
    }

    fn from_status(s: tonic::Status) -> ClientError {
        let code = match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Code::InvalidArgument,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::AlreadyExists => Code::AlreadyExists,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            tonic::Code::Unauthenticated => Code::Unauthenticated,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::Aborted => Code::Aborted,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::Unimplemented => Code::Unimplemented,
            _ => Code::Unavailable,
        };
        ClientError::Status {
            code,
            message: s.message().to_string(),
        }
    }
}

/// The role in a Role service reply, which must carry one.
fn role_reply(role: Option<SdkRole>, method: &str) -> Result<Role, ClientError> {
    role.map(|r| convert::role_from_proto(&r))
        .ok_or_else(|| ClientError::Protocol(format!("{method} returned no role")))
}

/// A connection to a custos cluster through any of its members.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<(String, Channel)>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
    /// Reads ask for the answering member's local state (`x-custos-consistency: serializable`).
    serializable: bool,
}

/// A registered storage node as the SDK reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Up in the answering member's liveness view.
    pub up: bool,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub capacity_bytes: u64,
    /// Bytes of replicas placed on the node.
    pub placed_bytes: u64,
}

/// Options of a volume create.
#[derive(Clone, Debug, Default)]
pub struct CreateVolume {
    pub name: String,
    pub size: u64,
    pub ha_level: i64,
    pub labels: BTreeMap<String, String>,
    pub shared: bool,
    pub encrypted: bool,
}

/// The `authorization` value of a token.
fn bearer(
    token: Option<&str>,
) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, ClientError> {
    token
        .filter(|t| !t.is_empty())
        .map(|t| {
            format!("bearer {t}")
                .parse()
                .map_err(|_| ClientError::InvalidToken)
        })
        .transpose()
}

/// One page of `audit_list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_page_token: Option<String>,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl Client {
    /// Prepares plaintext channels to `endpoints` (`host:port`); connections are made on first
    /// use.
    pub fn new(endpoints: &[String], token: Option<&str>) -> Result<Client, ClientError> {
        Client::with_tls(endpoints, token, None)
    }

    /// Prepares channels to `endpoints` (`host:port`, or `https://host:port`), over TLS when
    /// `tls` is given (an `https://` endpoint needs it); connections are made on first use.
    pub fn with_tls(
        endpoints: &[String],
        token: Option<&str>,
        tls: Option<&ClientTls>,
    ) -> Result<Client, ClientError> {
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let (https, hostport) = match e.strip_prefix("https://") {
                    Some(rest) => (true, rest),
                    None => (false, e.strip_prefix("http://").unwrap_or(e)),
                };
                if https && tls.is_none() {
                    return Err(ClientError::Tls(format!(
                        "{e} is an https endpoint: give the CA that signed its certificate (--ca)"
                    )));
                }
                let scheme = if tls.is_some() { "https" } else { "http" };
                let mut ep = Endpoint::from_shared(format!("{scheme}://{hostport}"))
                    .map_err(|_| ClientError::InvalidEndpoint(e.clone()))?
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true);
                if let Some(tls) = tls {
                    ep = ep
                        .tls_config(tls.config())
                        .map_err(|err| ClientError::Tls(format!("{e}: {err}")))?;
                }
                Ok((e.clone(), ep.connect_lazy()))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::InvalidEndpoint(String::new()));
        }
        Ok(Client {
            endpoints,
            token: bearer(token)?,
            timeout: Duration::from_secs(15),
            serializable: false,
        })
    }

    /// The same endpoints and connections with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Result<Client, ClientError> {
        Ok(Client {
            endpoints: self.endpoints.clone(),
            token: bearer(token)?,
            timeout: self.timeout,
            serializable: self.serializable,
        })
    }

    /// Sets the per-call deadline (sent to the server as `grpc-timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Makes reads serializable: answered from the contacted member's applied state, without
    /// a read barrier, so they may miss the latest writes. Writes are unaffected.
    pub fn with_serializable_reads(mut self) -> Client {
        self.serializable = true;
        self
    }

    fn request<T>(&self, msg: T, request_id: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        if self.serializable {
            req.metadata_mut().insert(
                "x-custos-consistency",
                MetadataValue::from_static("serializable"),
            );
        }
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        if let Ok(v) = request_id.parse() {
            req.metadata_mut().insert("x-request-id", v);
        }
        req
    }

    /// Runs `call` against each endpoint in turn until one answers. Only connection failures
    /// and `UNAVAILABLE` move on; every other answer is final. A write keeps one request id
    /// across endpoints, so the cluster applies it at most once.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut last = String::new();
        for (addr, channel) in &self.endpoints {
            match call(channel.clone(), request_id.clone()).await {
                Ok(v) => return Ok(v),
                Err(s)
                    if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::Unknown =>
                {
                    last = format!("{addr}: {}", s.message());
                }
                Err(s) => return Err(ClientError::from_status(s)),
            }
        }
        Err(ClientError::Unreachable {
            endpoints: self
                .endpoints
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            last,
        })
    }

    pub async fn version(&self) -> Result<SdkIdentityVersionResponse, ClientError> {
        self.call(|ch, id| async move {
            let mut c = OpenStorageIdentityClient::new(ch);
            c.version(self.request(SdkIdentityVersionRequest {}, &id))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    pub async fn cluster(&self) -> Result<StorageCluster, ClientError> {
        self.call(|ch, id| async move {
            let mut c = OpenStorageClusterClient::new(ch);
            c.inspect_current(self.request(SdkClusterInspectCurrentRequest {}, &id))
                .await
                .map(|r| r.into_inner())
        })
        .await?
        .cluster
        .ok_or_else(|| ClientError::Protocol("InspectCurrent returned no cluster".into()))
    }

    /// Raft status of the first reachable endpoint.
    pub async fn status(&self) -> Result<StatusReply, ClientError> {
        self.call(|ch, id| async move {
            let mut c = ClusterAdminClient::new(ch);
            c.status(self.request(StatusRequest {}, &id))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// Adds node `id` as a learner; answers once it has caught up with the leader.
    pub async fn add_learner(
        &self,
        id: u64,
        raft_addr: &str,
        sdk_addr: &str,
    ) -> Result<MembershipReply, ClientError> {
        let msg = AddLearnerRequest {
            node_id: id,
            raft_addr: raft_addr.to_string(),
            sdk_addr: sdk_addr.to_string(),
        };
        self.call(|ch, rid| {
            let msg = msg.clone();
            async move {
                let mut c = ClusterAdminClient::new(ch);
                c.add_learner(self.request(msg, &rid))
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: u64) -> Result<MembershipReply, ClientError> {
        self.call(|ch, rid| async move {
            let mut c = ClusterAdminClient::new(ch);
            c.promote(self.request(PromoteRequest { node_id: id }, &rid))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// Removes member `id` (voter or learner, alive or dead).
    pub async fn remove_member(&self, id: u64) -> Result<MembershipReply, ClientError> {
        self.call(|ch, rid| async move {
            let mut c = ClusterAdminClient::new(ch);
            c.remove(self.request(RemoveRequest { node_id: id }, &rid))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// Hands leadership to voter `id` (0: ask the endpoint, which must lead, to choose).
    pub async fn transfer_leader(&self, id: u64) -> Result<MembershipReply, ClientError> {
        self.call(|ch, rid| async move {
            let mut c = ClusterAdminClient::new(ch);
            c.transfer_leader(self.request(TransferLeaderRequest { node_id: id }, &rid))
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// A backup file of the replicated state, as of a linearizable point during the call,
    /// written to `out` as it arrives (chunk by chunk: never whole in memory). Returns its
    /// size in bytes.
    pub async fn backup_into<W>(&self, out: &mut W) -> Result<u64, ClientError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut stream = self
            .call(|ch, rid| async move {
                let mut c = ClusterAdminClient::new(ch);
                c.backup(self.request(BackupRequest {}, &rid))
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let data = chunk.map_err(ClientError::from_status)?.data;
            out.write_all(&data).await.map_err(ClientError::Io)?;
            size += data.len() as u64;
        }
        out.flush().await.map_err(ClientError::Io)?;
        Ok(size)
    }

    /// One page of the audit trail (`page_token` from the previous page's `next_page_token`).
    pub async fn audit_list(
        &self,
        query: &AuditQuery,
        page_token: Option<&str>,
        page_size: u32,
        newest_first: bool,
    ) -> Result<AuditPage, ClientError> {
        let msg = AuditListRequest {
            filter: Some(convert::audit_query_to_proto(query)),
            page_size,
            page_token: page_token.unwrap_or_default().to_string(),
            newest_first,
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                let mut c = AuditClient::new(ch);
                c.list(self.request(msg, &id)).await.map(|r| {
                    let r = r.into_inner();
                    AuditPage {
                        records: r
                            .records
                            .iter()
                            .map(convert::audit_record_from_proto)
                            .collect(),
                        next_page_token: (!r.next_page_token.is_empty())
                            .then_some(r.next_page_token),
                        first_seq: r.first_seq,
                        last_seq: r.last_seq,
                    }
                })
            }
        })
        .await
    }

    /// Follows the trail from `query.from_seq` (or from the next record) on the first endpoint
    /// that answers; the stream ends when the server stops or `query.to_seq` is passed.
    pub async fn audit_follow(
        &self,
        query: &AuditQuery,
    ) -> Result<
        std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<AuditRecord, ClientError>> + Send + 'static>,
        >,
        ClientError,
    > {
        use futures::StreamExt;
        let msg = AuditFollowRequest {
            filter: Some(convert::audit_query_to_proto(query)),
        };
        let stream = self
            .call(|ch, id| {
                let msg = msg.clone();
                async move {
                    let mut c = AuditClient::new(ch);
                    let mut req = self.request(msg, &id);
                    // A follow has no deadline: it lasts until the caller stops reading.
                    req.metadata_mut().remove("grpc-timeout");
                    c.follow(req).await.map(|r| r.into_inner())
                }
            })
            .await?;
        Ok(Box::pin(stream.map(|item| {
            item.map(|r| convert::audit_record_from_proto(&r))
                .map_err(ClientError::from_status)
        })))
    }

    /// Checks the hash chain of the first endpoint that answers, up to `through` (0 = its head).
    pub async fn audit_verify(&self, through: u64) -> Result<AuditVerifyReply, ClientError> {
        self.audit_verify_with(through, false).await
    }

    /// `Audit.Verify` on the member this client reaches: from its verified checkpoint, or every
    /// kept record when `full`.
    pub async fn audit_verify_with(
        &self,
        through: u64,
        full: bool,
    ) -> Result<AuditVerifyReply, ClientError> {
        self.call(|ch, id| async move {
            let mut c = AuditClient::new(ch);
            c.verify(self.request(
                AuditVerifyRequest {
                    through_seq: through,
                    full,
                },
                &id,
            ))
            .await
            .map(|r| r.into_inner())
        })
        .await
    }

    /// Explains the authorization decision a call would get (`Access.Explain`).
    pub async fn explain(&self, req: &ExplainRequest) -> Result<ExplainReply, ClientError> {
        self.call(|ch, id| {
            let msg = req.clone();
            async move {
                let mut c = AccessClient::new(ch);
                c.explain(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
    }

    /// Revokes a token, or every token of a subject issued up to a time (`Auth.Revoke`).
    pub async fn revoke(&self, req: &RevokeRequest) -> Result<RevokeReply, ClientError> {
        self.call(|ch, id| {
            let msg = req.clone();
            async move {
                let mut c = AuthClient::new(ch);
                c.revoke(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
    }

    /// The token revocations in force (`Auth.ListRevocations`).
    pub async fn list_revocations(&self) -> Result<Vec<Revocation>, ClientError> {
        self.call(|ch, id| async move {
            let mut c = AuthClient::new(ch);
            c.list_revocations(self.request(ListRevocationsRequest {}, &id))
                .await
                .map(|r| r.into_inner().revocations)
        })
        .await
    }

    /// Sets the quota of a user, a group or the guests (`Quotas.Set`); returns it.
    pub async fn set_quota(&self, req: &SetQuotaRequest) -> Result<Quota, ClientError> {
        self.call(|ch, id| {
            let msg = req.clone();
            async move {
                let mut c = QuotasClient::new(ch);
                c.set(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().quota.unwrap_or_default())
            }
        })
        .await
    }

    /// Removes the quota of a user, a group or the guests (`Quotas.Remove`).
    pub async fn remove_quota(&self, subject: &QuotaSubject) -> Result<(), ClientError> {
        self.call(|ch, id| {
            let msg = RemoveQuotaRequest {
                subject: Some(subject.clone()),
            };
            async move {
                let mut c = QuotasClient::new(ch);
                c.remove(self.request(msg, &id)).await.map(drop)
            }
        })
        .await
    }

    /// The quotas in force (`Quotas.List`).
    pub async fn list_quotas(&self) -> Result<Vec<Quota>, ClientError> {
        self.call(|ch, id| async move {
            let mut c = QuotasClient::new(ch);
            c.list(self.request(ListQuotasRequest {}, &id))
                .await
                .map(|r| r.into_inner().quotas)
        })
        .await
    }

    /// Every subject's use against its quota (`Quotas.Usage`).
    pub async fn quota_usage(&self) -> Result<Vec<QuotaUse>, ClientError> {
        self.call(|ch, id| async move {
            let mut c = QuotasClient::new(ch);
            c.usage(self.request(QuotaUsageRequest {}, &id))
                .await
                .map(|r| r.into_inner().uses)
        })
        .await
    }

    /// Creates a volume and returns its id (idempotent by name).
    pub async fn create_volume(&self, opts: &CreateVolume) -> Result<String, ClientError> {
        let spec = VolumeSpec {
            size: opts.size,
            ha_level: opts.ha_level,
            shared: opts.shared,
            encrypted: opts.encrypted,
            ..Default::default()
        };
        let msg = SdkVolumeCreateRequest {
            name: opts.name.clone(),
            spec: Some(spec),
            labels: opts.labels.clone().into_iter().collect(),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                let mut c = OpenStorageVolumeClient::new(ch);
                c.create(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().volume_id)
            }
        })
        .await
    }

    /// The SDK's view of one volume, as the answering member reports it.
    async fn inspect_wire(&self, volume_id: &str) -> Result<api::Volume, ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeInspectRequest {
                volume_id: volume_id.to_string(),
                options: None,
            };
            OpenStorageVolumeClient::new(ch)
                .inspect(self.request(msg, &id))
                .await
                .map(|r| r.into_inner().volume)
        })
        .await?
        .ok_or_else(|| ClientError::Protocol("Inspect returned no volume".into()))
    }

    pub async fn inspect_volume(&self, volume_id: &str) -> Result<Volume, ClientError> {
        Ok(convert::volume_from_proto(
            &self.inspect_wire(volume_id).await?,
        ))
    }

    /// Whether the answering member reports the volume DEGRADED (a replica on a node it hears
    /// nothing from).
    pub async fn volume_degraded(&self, volume_id: &str) -> Result<bool, ClientError> {
        Ok(self.inspect_wire(volume_id).await?.status == VolumeStatus::Degraded as i32)
    }

    /// Finds a volume by id, or else by name.
    pub async fn find_volume(&self, id_or_name: &str) -> Result<Volume, ClientError> {
        match self.inspect_volume(id_or_name).await {
            Err(ClientError::Status {
                code: Code::NotFound,
                ..
            }) => {}
            other => return other,
        }
        let resp = self
            .call(|ch, id| async move {
                let mut c = OpenStorageVolumeClient::new(ch);
                let msg = SdkVolumeInspectWithFiltersRequest {
                    name: id_or_name.to_string(),
                    ..Default::default()
                };
                c.inspect_with_filters(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        resp.volumes
            .first()
            .and_then(|r| r.volume.as_ref())
            .map(convert::volume_from_proto)
            .ok_or_else(|| ClientError::Status {
                code: Code::NotFound,
                message: format!("no volume with id or name {id_or_name}"),
            })
    }

    pub async fn enumerate_volumes(&self) -> Result<Vec<String>, ClientError> {
        self.call(|ch, id| async move {
            let mut c = OpenStorageVolumeClient::new(ch);
            c.enumerate(self.request(SdkVolumeEnumerateRequest {}, &id))
                .await
                .map(|r| r.into_inner().volume_ids)
        })
        .await
    }

    pub async fn delete_volume(&self, volume_id: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let mut c = OpenStorageVolumeClient::new(ch);
            let msg = SdkVolumeDeleteRequest {
                volume_id: volume_id.to_string(),
            };
            c.delete(self.request(msg, &id)).await.map(|_| ())
        })
        .await
    }

    /// Clones `parent_id` as a new volume `name` owned by the caller; returns the clone's id.
    pub async fn clone_volume(
        &self,
        parent_id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, ClientError> {
        let msg = SdkVolumeCloneRequest {
            name: name.to_string(),
            parent_id: parent_id.to_string(),
            additional_labels: labels.clone().into_iter().collect(),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                let mut c = OpenStorageVolumeClient::new(ch);
                // The inherent `clone` RPC, not `Clone::clone`.
                OpenStorageVolumeClient::<Channel>::clone(&mut c, self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().volume_id)
            }
        })
        .await
    }

    /// Takes a read-only snapshot `name` of a volume; returns the snapshot's id.
    pub async fn create_snapshot(
        &self,
        volume_id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, ClientError> {
        let msg = SdkVolumeSnapshotCreateRequest {
            volume_id: volume_id.to_string(),
            name: name.to_string(),
            labels: labels.clone().into_iter().collect(),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStorageVolumeClient::new(ch)
                    .snapshot_create(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().snapshot_id)
            }
        })
        .await
    }

    /// The ids of the snapshots the caller can read, of one volume or (empty id) of all.
    pub async fn enumerate_snapshots(&self, volume_id: &str) -> Result<Vec<String>, ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeSnapshotEnumerateWithFiltersRequest {
                volume_id: volume_id.to_string(),
                labels: Default::default(),
            };
            OpenStorageVolumeClient::new(ch)
                .snapshot_enumerate_with_filters(self.request(msg, &id))
                .await
                .map(|r| r.into_inner().volume_snapshot_ids)
        })
        .await
    }

    /// Restores a volume's content from one of its snapshots.
    pub async fn restore_snapshot(
        &self,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeSnapshotRestoreRequest {
                volume_id: volume_id.to_string(),
                snapshot_id: snapshot_id.to_string(),
            };
            OpenStorageVolumeClient::new(ch)
                .snapshot_restore(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    /// Attaches a volume on the answering member's node; returns the device path.
    pub async fn attach_volume(&self, volume_id: &str) -> Result<String, ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeAttachRequest {
                volume_id: volume_id.to_string(),
                ..Default::default()
            };
            OpenStorageMountAttachClient::new(ch)
                .attach(self.request(msg, &id))
                .await
                .map(|r| r.into_inner().device_path)
        })
        .await
    }

    pub async fn detach_volume(&self, volume_id: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeDetachRequest {
                volume_id: volume_id.to_string(),
                ..Default::default()
            };
            OpenStorageMountAttachClient::new(ch)
                .detach(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    /// Records a mount of an attached volume at `path`.
    pub async fn mount_volume(&self, volume_id: &str, path: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeMountRequest {
                volume_id: volume_id.to_string(),
                mount_path: path.to_string(),
                ..Default::default()
            };
            OpenStorageMountAttachClient::new(ch)
                .mount(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    pub async fn unmount_volume(&self, volume_id: &str, path: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkVolumeUnmountRequest {
                volume_id: volume_id.to_string(),
                mount_path: path.to_string(),
                ..Default::default()
            };
            OpenStorageMountAttachClient::new(ch)
                .unmount(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    /// Creates a role (idempotent for an identical role) and returns it as stored.
    pub async fn create_role(&self, role: &Role) -> Result<Role, ClientError> {
        let msg = SdkRoleCreateRequest {
            role: Some(convert::role_to_proto(role)),
        };
        let reply = self
            .call(|ch, id| {
                let msg = msg.clone();
                async move {
                    OpenStorageRoleClient::new(ch)
                        .create(self.request(msg, &id))
                        .await
                        .map(|r| r.into_inner().role)
                }
            })
            .await?;
        role_reply(reply, "Create")
    }

    /// Replaces the rules of an existing role.
    pub async fn update_role(&self, role: &Role) -> Result<Role, ClientError> {
        let msg = SdkRoleUpdateRequest {
            role: Some(convert::role_to_proto(role)),
        };
        let reply = self
            .call(|ch, id| {
                let msg = msg.clone();
                async move {
                    OpenStorageRoleClient::new(ch)
                        .update(self.request(msg, &id))
                        .await
                        .map(|r| r.into_inner().role)
                }
            })
            .await?;
        role_reply(reply, "Update")
    }

    pub async fn inspect_role(&self, name: &str) -> Result<Role, ClientError> {
        let reply = self
            .call(|ch, id| async move {
                let msg = SdkRoleInspectRequest {
                    name: name.to_string(),
                };
                OpenStorageRoleClient::new(ch)
                    .inspect(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().role)
            })
            .await?;
        role_reply(reply, "Inspect")
    }

    pub async fn enumerate_roles(&self) -> Result<Vec<String>, ClientError> {
        self.call(|ch, id| async move {
            OpenStorageRoleClient::new(ch)
                .enumerate(self.request(SdkRoleEnumerateRequest {}, &id))
                .await
                .map(|r| r.into_inner().names)
        })
        .await
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), ClientError> {
        self.call(|ch, id| async move {
            let msg = SdkRoleDeleteRequest {
                name: name.to_string(),
            };
            OpenStorageRoleClient::new(ch)
                .delete(self.request(msg, &id))
                .await
                .map(|_| ())
        })
        .await
    }

    /// Merges `labels` (an empty value removes a key) and applies the set fields of `update`.
    pub async fn update_volume(
        &self,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
        update: &VolumeUpdate,
    ) -> Result<(), ClientError> {
        let msg = SdkVolumeUpdateRequest {
            volume_id: volume_id.to_string(),
            labels: labels.clone().into_iter().collect(),
            spec: Some(convert::update_to_proto(update)),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                OpenStorageVolumeClient::new(ch)
                    .update(self.request(msg, &id))
                    .await
                    .map(|_| ())
            }
        })
        .await
    }

    /// Every registered node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let nodes = self
            .call(|ch, id| async move {
                let msg = SdkNodeEnumerateWithFiltersRequest {};
                OpenStorageNodeClient::new(ch)
                    .enumerate_with_filters(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().nodes)
            })
            .await?;
        Ok(nodes
            .into_iter()
            .map(|n| NodeInfo {
                up: n.status == Status::Ok as i32,
                hostname: n.hostname,
                labels: n.node_labels.into_iter().collect(),
                capacity_bytes: n.pools.iter().map(|p| p.total_size).sum(),
                placed_bytes: n.pools.iter().map(|p| p.used).sum(),
                id: n.id,
            })
            .collect())
    }

    /// Sends one storage node's whole usage report; returns the volume ids custos did not know.
    pub async fn report_usage(
        &self,
        node_id: u64,
        volumes: &BTreeMap<String, VolumeUsage>,
    ) -> Result<Vec<String>, ClientError> {
        let msg = ReportUsageRequest {
            node_id,
            volumes: volumes
                .iter()
                .map(|(id, u)| VolumeUsageReport {
                    volume_id: id.clone(),
                    bytes_used: u.bytes_used,
                    reads: u.reads,
                    writes: u.writes,
                    read_bytes: u.read_bytes,
                    write_bytes: u.write_bytes,
                })
                .collect(),
        };
        self.call(|ch, id| {
            let msg = msg.clone();
            async move {
                ClusterAdminClient::new(ch)
                    .report_usage(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().ignored)
            }
        })
        .await
    }

    /// A volume's usage as `Volume.Stats` reports it (zeros until a storage node reports).
    pub async fn volume_usage(&self, volume_id: &str) -> Result<VolumeUsage, ClientError> {
        let stats = self
            .call(|ch, id| async move {
                let msg = SdkVolumeStatsRequest {
                    volume_id: volume_id.to_string(),
                    not_cumulative: false,
                };
                OpenStorageVolumeClient::new(ch)
                    .stats(self.request(msg, &id))
                    .await
                    .map(|r| r.into_inner().stats)
            })
            .await?
            .unwrap_or_default();
        Ok(VolumeUsage {
            bytes_used: stats.bytes_used,
            reads: stats.reads,
            writes: stats.writes,
            read_bytes: stats.read_bytes,
            write_bytes: stats.write_bytes,
            reported_ms: 0,
        })
    }
}
