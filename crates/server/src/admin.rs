//! `custos.admin.v1`: `ClusterAdmin` (what operators and `custos dev` ask a node about its
//! cluster), `Audit` (the replicated audit trail: list, follow, verify), `Access` (explain
//! an authorization decision), `Auth` (token revocation) and `Quotas`.

use crate::node::Node;
use custos_model::command::REPORT_USAGE_METHOD;
use custos_model::MembershipChange;
use custos_model::{NodeId, Op, Reply, Revocation, RevocationTarget, VolumeId, VolumeUsage};
use custos_proto::convert;
use custos_proto::custos::admin::v1::access_server::Access;
use custos_proto::custos::admin::v1::audit_server::Audit;
use custos_proto::custos::admin::v1::cluster_admin_server::ClusterAdmin;
use custos_proto::custos::admin::v1::{
    AddLearnerRequest, AuditFollowRequest, AuditListReply, AuditListRequest,
    AuditRecord as AuditRecordProto, AuditVerifyReply, AuditVerifyRequest, BackupChunk,
    BackupRequest, ExplainReply, ExplainRequest, ExplainVerdict, ListRevocationsReply,
    ListRevocationsRequest, Member, MembershipReply, PromoteRequest, RemoveRequest,
    ReportUsageReply, ReportUsageRequest, RevokeReply, RevokeRequest, StatusReply, StatusRequest,
    TransferLeaderRequest,
};
use custos_proto::custos::admin::v1::{
    ListQuotasReply, ListQuotasRequest, QuotaUsageReply, QuotaUsageRequest, QuotaUse,
    RemoveQuotaReply, RemoveQuotaRequest, SetQuotaReply, SetQuotaRequest,
};
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    pub node: Arc<Node>,
}

/// Backups stream in pieces of this size.
const BACKUP_CHUNK: usize = 1 << 20;

impl AdminService {
    /// Checks the caller's role early (a refusal only once confirmed, see [`Node::writer`]),
    /// then has the leader authorize (in apply, audited) and carry out `change`.
    async fn change(
        &self,
        meta: &tonic::metadata::MetadataMap,
        change: MembershipChange,
    ) -> Result<Response<MembershipReply>, Status> {
        let caller = self.node.writer(meta, change.method()).await?;
        let deadline = caller.deadline;
        let cmd = crate::membership::operator_command(&self.node, caller, change);
        let view = self.node.change_membership(cmd, deadline).await?;
        Ok(Response::new(MembershipReply {
            leader_id: view.leader,
            members: view
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    raft_addr: m.raft_addr,
                    sdk_addr: m.sdk_addr,
                    voter: m.voter,
                })
                .collect(),
        }))
    }
}

fn node_arg(id: u64) -> Result<NodeId, Status> {
    if id == 0 {
        return Err(Status::invalid_argument(
            "node_id is required (ids start at 1)",
        ));
    }
    Ok(NodeId(id))
}

#[tonic::async_trait]
impl ClusterAdmin for AdminService {
    type BackupStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<BackupChunk, Status>> + Send + 'static>,
    >;

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let req = request.get_ref();
        let change = MembershipChange::AddLearner {
            id: node_arg(req.node_id)?,
            raft_addr: req.raft_addr.trim().to_string(),
            sdk_addr: req.sdk_addr.trim().to_string(),
        };
        self.change(request.metadata(), change).await
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let id = node_arg(request.get_ref().node_id)?;
        self.change(request.metadata(), MembershipChange::Promote { id })
            .await
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let id = node_arg(request.get_ref().node_id)?;
        self.change(request.metadata(), MembershipChange::Remove { id })
            .await
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let to = match request.get_ref().node_id {
            0 => {
                // The leader's choice: ask it which voter is furthest along.
                self.node
                    .writer(
                        request.metadata(),
                        custos_model::command::TRANSFER_LEADER_METHOD,
                    )
                    .await?;
                match self.node.current_leader() {
                    Some(l) if l == self.node.id => {
                        self.node.best_successor_id().ok_or_else(|| {
                            Status::failed_precondition("no other voter to hand leadership to")
                        })?
                    }
                    _ => {
                        return Err(Status::failed_precondition(
                            "without a node_id, ask the leader (`custos cluster status` names                              it), or name the voter that should lead",
                        ))
                    }
                }
            }
            id => id,
        };
        self.change(
            request.metadata(),
            MembershipChange::TransferLeader { to: NodeId(to) },
        )
        .await
    }

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        // Everything acknowledged before the call is in the backup.
        let (caller, state) = self
            .node
            .reader(request.metadata(), "/custos.admin.v1.ClusterAdmin/Backup")
            .await?;
        drop(state);
        let backup = self
            .node
            .backup
            .backup(crate::node::now_ms())
            .await
            .map_err(|e| crate::status::internal(format!("writing the backup: {e}")))?;
        tracing::info!(node = self.node.id, bytes = backup.size(), records = backup.header().records, user = %crate::bounds::cap(&caller.identity.username, crate::bounds::MAX_LOGGED_FIELD), "backup taken");
        // Read from its (unlinked) file one chunk at a time as the client takes them: the
        // backup is never in memory whole.
        let chunks = futures::stream::unfold(Some(backup), |backup| async move {
            let mut backup = backup?;
            match backup.next_chunk(BACKUP_CHUNK).await {
                Ok(Some(data)) => Some((Ok(BackupChunk { data }), Some(backup))),
                Ok(None) => None,
                Err(e) => Some((
                    Err(crate::status::internal(format!("reading the backup: {e}"))),
                    None,
                )),
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        // Cluster status reveals topology, not data: the same role check as Cluster.InspectCurrent,
        // decided on this member's own state: it reports the member's own view of Raft and must
        // answer without a quorum (a serializable read, docs/security.md).
        self.node.local_reader(
            request.metadata(),
            "/openstorage.api.OpenStorageCluster/InspectCurrent",
        )?;
        let m = self.node.raft.metrics().borrow_watched().clone();
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
            committed_index: m
                .local_committed
                .map(|l| l.index)
                .unwrap_or(applied)
                .max(applied),
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
        let caller = self
            .node
            .writer(request.metadata(), REPORT_USAGE_METHOD)
            .await?;
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

/// `custos.admin.v1.Audit`: the replicated audit trail, read from this node's store.
pub struct AuditService {
    pub node: Arc<Node>,
}

const AUDIT: &str = "/custos.admin.v1.Audit/";

/// The largest `page_size` a List honours.
const MAX_PAGE: usize = 1000;

fn storage(e: custos_store::StoreError) -> Status {
    crate::status::internal(format!("reading the audit trail: {e}"))
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn list(
        &self,
        request: Request<AuditListRequest>,
    ) -> Result<Response<AuditListReply>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), &format!("{AUDIT}List"))
            .await?;
        drop(state);
        let req = request.into_inner();
        let query = convert::audit_query_from_proto(req.filter.as_ref());
        let cursor = match req.page_token.as_str() {
            "" => None,
            t => Some(t.parse::<u64>().map_err(|_| {
                Status::invalid_argument(format!("page_token {t:?} is not one this node issued"))
            })?),
        };
        let limit = match req.page_size {
            0 => 100,
            n => (n as usize).min(MAX_PAGE),
        };
        let log = self.node.audit.log.clone();
        let newest_first = req.newest_first;
        let page = tokio::task::spawn_blocking(move || {
            log.list(&query, cursor, limit, newest_first)
                .map(|page| (page, log.head()))
        })
        .await
        .map_err(|e| crate::status::internal(format!("audit list task: {e}")))?
        .map_err(storage)?;
        let (page, head) = page;
        Ok(Response::new(AuditListReply {
            records: page
                .records
                .iter()
                .map(convert::audit_record_to_proto)
                .collect(),
            next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
            first_seq: head.first_seq,
            last_seq: head.last_seq(),
        }))
    }

    type FollowStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<AuditRecordProto, Status>> + Send + 'static>,
    >;

    async fn follow(
        &self,
        request: Request<AuditFollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), &format!("{AUDIT}Follow"))
            .await?;
        drop(state);
        let req = request.into_inner();
        let mut query = convert::audit_query_from_proto(req.filter.as_ref());
        let log = self.node.audit.log.clone();
        let mut next = query.from_seq.unwrap_or_else(|| log.head().next_seq).max(1);
        let to = query.to_seq.unwrap_or(u64::MAX);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut appended = log.subscribe();
            loop {
                let last = (*appended.borrow_and_update()).min(to);
                while next <= last {
                    query.from_seq = Some(next);
                    query.to_seq = Some(last);
                    let (q, l) = (query.clone(), log.clone());
                    let page =
                        tokio::task::spawn_blocking(move || l.list(&q, None, 500, false)).await;
                    let page = match page {
                        Ok(Ok(page)) => page,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(storage(e))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx
                                .send(Err(crate::status::internal(format!("follow task: {e}"))))
                                .await;
                            return;
                        }
                    };
                    for r in &page.records {
                        if tx
                            .send(Ok(convert::audit_record_to_proto(r)))
                            .await
                            .is_err()
                        {
                            return; // the client went away
                        }
                    }
                    next = page.next.unwrap_or(last + 1);
                }
                if next > to {
                    return;
                }
                tokio::select! {
                    changed = appended.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn verify(
        &self,
        request: Request<AuditVerifyRequest>,
    ) -> Result<Response<AuditVerifyReply>, Status> {
        // Linearizable by default like every read: the member first catches up with what was
        // acknowledged before the call, then verifies its own chain.
        self.node
            .reader(request.metadata(), &format!("{AUDIT}Verify"))
            .await
            .map(drop)?;
        let req = request.into_inner();
        let through = (req.through_seq != 0).then_some(req.through_seq);
        let log = self.node.audit.log.clone();
        let v = tokio::task::spawn_blocking(move || {
            if req.full {
                log.verify_full(through)
            } else {
                log.verify(through)
            }
        })
        .await
        .map_err(|e| crate::status::internal(format!("audit verify task: {e}")))?
        .map_err(storage)?;
        let (through_seq, through_hash) = v.at.map(|(s, h)| (s, h.hex())).unwrap_or_default();
        Ok(Response::new(AuditVerifyReply {
            node_id: self.node.id,
            ok: v.error.is_none(),
            error: v.error.unwrap_or_default(),
            first_seq: v.head.first_seq,
            last_seq: v.head.last_seq(),
            last_hash: v.head.last_hash.hex(),
            through_seq,
            through_hash,
            checked: v.checked,
            checkpoint_seq: v.checkpoint.map_or(0, |(seq, _)| seq),
            full: v.full,
        }))
    }
}

/// `custos.admin.v1.Access`: explains the authorization decision a call would get.
pub struct AccessService {
    pub node: Arc<Node>,
}

/// The full name of `Access.Explain`: service `access`, api `explain` for roles. Of the
/// built-in roles only system.admin matches it (system.view's rules name `inspect*`,
/// `*enumerate*`, ..., not `explain`).
pub const EXPLAIN_METHOD: &str = "/custos.admin.v1.Access/Explain";

/// Fills the gRPC code numbers of a verdict (this crate owns the code mapping).
fn fill_code(v: &mut Option<ExplainVerdict>, decided: &Result<(), custos_model::Rejection>) {
    if let (Some(v), Err(r)) = (v.as_mut(), decided) {
        v.grpc_code = crate::status::grpc_code(r.code) as i32;
    }
}

/// The identity a request names: the anonymous caller for no user, roles and groups.
fn named_identity(req: &ExplainRequest) -> custos_model::Identity {
    if req.user.is_empty() && req.roles.is_empty() && req.groups.is_empty() {
        return custos_model::Identity::guest();
    }
    custos_model::Identity {
        username: req.user.clone(),
        subject: req.user.clone(),
        name: req.user.clone(),
        email: String::new(),
        issuer: String::new(),
        roles: req.roles.clone(),
        groups: req.groups.clone(),
        guest: false,
        fingerprint: String::new(),
        token_id: String::new(),
        issued_at: 0,
    }
}

#[tonic::async_trait]
impl Access for AccessService {
    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainReply>, Status> {
        let req = request.get_ref();
        if req.method.trim().is_empty() {
            return Err(Status::invalid_argument("Must supply a method"));
        }
        let names_identity =
            !req.user.is_empty() || !req.roles.is_empty() || !req.groups.is_empty();
        if !req.token.is_empty() && names_identity {
            return Err(Status::invalid_argument(
                "Send either a token or user, groups and roles to explain, not both",
            ));
        }
        let method = custos_model::MethodName::resolve(
            &req.method,
            custos_proto::served_methods().iter().map(String::as_str),
        )
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "Unknown method {:?}: give a full gRPC method (/openstorage.api.OpenStorageVolume/Create) \
                 or a dotted name (volume.create)",
                req.method
            ))
        })?;
        // The identity of a token is verified before the decision; a token a real call would
        // be refused for is explained as that refusal. The token is never logged or audited.
        let identity = if req.token.is_empty() {
            Ok(named_identity(req))
        } else {
            match self.node.authenticator() {
                None => Err(Status::failed_precondition(
                    "Authentication is disabled on this cluster: there is no token to verify",
                )),
                Some(auth) => Ok(auth
                    .authenticate_token(&req.token, crate::node::now_ms() / 1000)
                    .map_err(|e| {
                        (
                            custos_auth::token_fingerprint(&req.token),
                            crate::status::from_auth(e),
                        )
                    })),
            }?
        };
        let (_caller, state) = self.node.reader(request.metadata(), EXPLAIN_METHOD).await?;
        let who = match identity {
            Ok(who) => who,
            Err((fingerprint, refused)) => {
                drop(state);
                let verdict = ExplainVerdict {
                    allowed: false,
                    code: format!("{:?}", refused.code()),
                    grpc_code: refused.code() as i32,
                    message: refused.message().to_string(),
                };
                return Ok(Response::new(ExplainReply {
                    token_fingerprint: fingerprint,
                    method: method.full.clone(),
                    dotted: method.dotted(),
                    verdict: Some(verdict),
                    lines: vec![
                        format!(
                            "token: refused ({:?}): {}",
                            refused.code(),
                            refused.message()
                        ),
                        format!("method: {} ({})", method.full, method.dotted()),
                        format!(
                            "verdict: refused: {:?}: {}",
                            refused.code(),
                            refused.message()
                        ),
                    ],
                    ..ExplainReply::default()
                }));
            }
        };
        let volume = (!req.volume.is_empty()).then(|| state.volume_target(&method, &req.volume));
        let explained = state.explain(&who, &method, volume.as_deref());
        drop(state);
        let mut reply = convert::explanation_to_proto(&explained);
        fill_code(&mut reply.verdict, &explained.verdict);
        fill_code(&mut reply.role_verdict, &explained.role_verdict);
        if let (Some(v), Some(t)) = (reply.volume.as_mut(), explained.volume.as_ref()) {
            fill_code(&mut v.verdict, &t.verdict);
        }
        Ok(Response::new(reply))
    }
}

/// `custos.admin.v1.Auth`: token revocation.
pub struct AuthService {
    pub node: Arc<Node>,
}

/// The full name of `Auth.Revoke` (a mutation: decided in apply, [`Op::RevokeToken`]).
pub const REVOKE_METHOD: &str = custos_model::command::REVOKE_TOKEN_METHOD;
/// The full name of `Auth.ListRevocations` (a read).
pub const LIST_REVOCATIONS_METHOD: &str = "/custos.admin.v1.Auth/ListRevocations";

impl AuthService {
    /// When the entry for `target` can go: the given `expires_at`; else the latest expiry of
    /// the matching tokens this member verified; else `from` plus the longest lifetime a token
    /// may have (`max_token_lifetime_secs`), or plus `revocation_retention_secs`. Whatever
    /// the source, never earlier than a token this member saw still lives.
    fn expiry(&self, req: &RevokeRequest, target: &RevocationTarget, from: u64) -> u64 {
        if req.expires_at != 0 {
            return req.expires_at;
        }
        let auth = self.node.authenticator();
        let probe = Revocation {
            target: target.clone(),
            issued_before: from,
            expires_at: u64::MAX,
            revoked_ms: 0,
            revoked_by: String::new(),
        };
        let seen = auth
            .as_ref()
            .and_then(|a| a.seen_expiry(|who| probe.matches(who)));
        let bound = auth
            .as_ref()
            .and_then(|a| a.max_token_lifetime_secs())
            .unwrap_or(self.node.config.auth.revocation_retention_secs);
        let bounded = from.saturating_add(bound);
        match (target, seen) {
            // One token: its own expiry, as this member verified it. (A jti is unique within
            // its issuer; a token of another issuer that happens to share it is matched too,
            // which it was never meant to be, until the entry goes.)
            (
                RevocationTarget::Fingerprint { .. } | RevocationTarget::TokenId { .. },
                Some(exp),
            ) => exp,
            (_, seen) => bounded.max(seen.unwrap_or(0)),
        }
    }
}

fn revocation_target(req: &RevokeRequest) -> Result<RevocationTarget, Status> {
    let issuer = req.issuer.clone();
    match (
        req.jti.is_empty(),
        req.fingerprint.is_empty(),
        req.subject.is_empty(),
    ) {
        (false, true, true) => Ok(RevocationTarget::TokenId {
            issuer,
            jti: req.jti.clone(),
        }),
        (true, false, true) if issuer.is_empty() => Ok(RevocationTarget::Fingerprint {
            fingerprint: req.fingerprint.clone(),
        }),
        (true, false, true) => Err(Status::invalid_argument(
            "A fingerprint names one token of whatever issuer: send no issuer with it",
        )),
        (true, true, false) => Ok(RevocationTarget::Subject {
            issuer,
            subject: req.subject.clone(),
        }),
        _ => Err(Status::invalid_argument(
            "Must supply exactly one of jti, fingerprint and subject to revoke",
        )),
    }
}

#[tonic::async_trait]
impl custos_proto::custos::admin::v1::auth_server::Auth for AuthService {
    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeReply>, Status> {
        let caller = self.node.writer(request.metadata(), REVOKE_METHOD).await?;
        let req = request.into_inner();
        let target = revocation_target(&req)?;
        if req.issued_before != 0 && !matches!(target, RevocationTarget::Subject { .. }) {
            return Err(Status::invalid_argument(
                "issued_before applies to a subject revocation only",
            ));
        }
        let now = crate::node::now_ms() / 1000;
        let issued_before = match req.issued_before {
            0 => now,
            t => t,
        };
        let from = match target {
            RevocationTarget::Subject { .. } => issued_before,
            _ => now,
        };
        let expires_at = self.expiry(&req, &target, from);
        let reply = self
            .node
            .write(
                caller.identity,
                caller.request_id,
                Op::RevokeToken {
                    target,
                    issued_before,
                    expires_at,
                },
                caller.deadline,
            )
            .await?;
        match reply {
            Reply::TokenRevoked { revocation } => Ok(Response::new(RevokeReply {
                revocation: Some(convert::revocation_to_proto(&revocation)),
            })),
            other => Err(Status::internal(format!(
                "Auth.Revoke: unexpected reply {other:?}"
            ))),
        }
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsReply>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), LIST_REVOCATIONS_METHOD)
            .await?;
        let revocations = state
            .revocations()
            .map(convert::revocation_to_proto)
            .collect();
        Ok(Response::new(ListRevocationsReply { revocations }))
    }
}

/// `custos.admin.v1.Quotas`: quotas on volumes and provisioned bytes.
pub struct QuotasService {
    pub node: Arc<Node>,
}

/// The full name of `Quotas.Set` (a mutation: decided in apply, [`Op::SetQuota`]).
pub const SET_QUOTA_METHOD: &str = custos_model::command::SET_QUOTA_METHOD;
/// The full name of `Quotas.Remove` (a mutation: decided in apply, [`Op::RemoveQuota`]).
pub const REMOVE_QUOTA_METHOD: &str = custos_model::command::REMOVE_QUOTA_METHOD;
/// The full name of `Quotas.List` (a read).
pub const LIST_QUOTAS_METHOD: &str = "/custos.admin.v1.Quotas/List";
/// The full name of `Quotas.Usage` (a read).
pub const QUOTA_USAGE_METHOD: &str = "/custos.admin.v1.Quotas/Usage";

/// The quota set for `subject` in `state`, or the guests' default.
fn quota_of(
    state: &custos_model::State,
    subject: &custos_model::QuotaSubject,
) -> Option<custos_proto::custos::admin::v1::Quota> {
    match state.quotas().find(|q| &q.subject == subject) {
        Some(q) => Some(convert::quota_to_proto(q)),
        None if *subject == custos_model::QuotaSubject::Guest => {
            Some(convert::default_guest_quota_to_proto())
        }
        None => None,
    }
}

#[tonic::async_trait]
impl custos_proto::custos::admin::v1::quotas_server::Quotas for QuotasService {
    async fn set(
        &self,
        request: Request<SetQuotaRequest>,
    ) -> Result<Response<SetQuotaReply>, Status> {
        let caller = self
            .node
            .writer(request.metadata(), SET_QUOTA_METHOD)
            .await?;
        let req = request.into_inner();
        let subject = convert::quota_subject_from_proto(req.subject.as_ref())
            .map_err(Status::invalid_argument)?;
        let limits = custos_model::QuotaLimits {
            volumes: req.max_volumes,
            bytes: req.max_bytes,
        };
        let reply = self
            .node
            .write(
                caller.identity,
                caller.request_id,
                Op::SetQuota { subject, limits },
                caller.deadline,
            )
            .await?;
        match reply {
            Reply::QuotaSet { quota } => Ok(Response::new(SetQuotaReply {
                quota: Some(convert::quota_to_proto(&quota)),
            })),
            other => Err(Status::internal(format!(
                "Quotas.Set: unexpected reply {other:?}"
            ))),
        }
    }

    async fn remove(
        &self,
        request: Request<RemoveQuotaRequest>,
    ) -> Result<Response<RemoveQuotaReply>, Status> {
        let caller = self
            .node
            .writer(request.metadata(), REMOVE_QUOTA_METHOD)
            .await?;
        let req = request.into_inner();
        let subject = convert::quota_subject_from_proto(req.subject.as_ref())
            .map_err(Status::invalid_argument)?;
        self.node
            .write(
                caller.identity,
                caller.request_id,
                Op::RemoveQuota { subject },
                caller.deadline,
            )
            .await?;
        Ok(Response::new(RemoveQuotaReply {}))
    }

    async fn list(
        &self,
        request: Request<ListQuotasRequest>,
    ) -> Result<Response<ListQuotasReply>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), LIST_QUOTAS_METHOD)
            .await?;
        let mut quotas: Vec<_> = state.quotas().map(convert::quota_to_proto).collect();
        if !state
            .quotas()
            .any(|q| q.subject == custos_model::QuotaSubject::Guest)
        {
            quotas.push(convert::default_guest_quota_to_proto());
        }
        Ok(Response::new(ListQuotasReply { quotas }))
    }

    async fn usage(
        &self,
        request: Request<QuotaUsageRequest>,
    ) -> Result<Response<QuotaUsageReply>, Status> {
        let (_, state) = self
            .node
            .reader(request.metadata(), QUOTA_USAGE_METHOD)
            .await?;
        let mut uses: Vec<QuotaUse> = state
            .quota_usages()
            .map(|(subject, used)| QuotaUse {
                subject: Some(convert::quota_subject_to_proto(subject)),
                volumes: used.volumes,
                bytes: used.bytes,
                quota: quota_of(&state, subject),
            })
            .collect();
        // The guests are always reported, against their quota, even with nothing created.
        if state
            .quota_usage(&custos_model::QuotaSubject::Guest)
            .volumes
            == 0
        {
            uses.push(QuotaUse {
                subject: Some(convert::quota_subject_to_proto(
                    &custos_model::QuotaSubject::Guest,
                )),
                volumes: 0,
                bytes: 0,
                quota: quota_of(&state, &custos_model::QuotaSubject::Guest),
            });
        }
        Ok(Response::new(QuotaUsageReply { uses }))
    }
}
