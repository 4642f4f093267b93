//! The audit trail: the records apply writes for every mutation and reported denial, chained by SHA-256.
//!
//! Every command that reaches apply (and is not a remembered retry) yields audit records in
//! the same set of changes as its state change, so every member holds the same trail and no
//! change exists without its record. Records are numbered densely from 1; each carries the
//! hash of the previous one, so the head (`seq`, `hash`) of two members is equal exactly when
//! their trails are.
//!
//! Messages follow upstream OpenStorage's audit log: `Access denied` (role check),
//! `Access denied: <status text>` (a handler's or ownership refusal), `Authorized` (the role
//! check passed, the operation was refused for another reason: the code says which), and
//! event lines such as `Volume <id> created` for operations that applied.

use crate::command::{Command, MembershipChange, Op, Outcome, Reply};
use crate::identity::Identity;
use crate::ids::NodeId;
use crate::rejection::Rejection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest of an audit record.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuditHash(pub [u8; 32]);

/// The `prev_hash` of record 1.
pub const GENESIS_HASH: AuditHash = AuditHash([0; 32]);

impl AuditHash {
    /// Lowercase hex, 64 digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for AuditHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Severity, as upstream's logrus levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditLevel {
    Info,
    Warning,
}

impl AuditLevel {
    pub fn name(self) -> &'static str {
        match self {
            AuditLevel::Info => "info",
            AuditLevel::Warning => "warning",
        }
    }
}

/// Who a record is about: the verified identity (or what the edge knew of a refused caller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditActor {
    pub username: String,
    pub subject: String,
    pub name: String,
    pub email: String,
    pub issuer: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

impl From<&Identity> for AuditActor {
    fn from(who: &Identity) -> AuditActor {
        AuditActor {
            username: who.username.clone(),
            subject: who.subject.clone(),
            name: who.name.clone(),
            email: who.email.clone(),
            issuer: who.issuer.clone(),
            roles: who.roles.clone(),
            groups: who.groups.clone(),
        }
    }
}

/// The code of an applied operation, as records spell it (refusals use `Code::name`).
pub const CODE_OK: &str = "OK";

/// `method` of an authentication failure, as upstream writes it.
pub const AUTHENTICATION_METHOD: &str = "Authentication";

/// One record of the replicated audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Dense, from 1.
    pub seq: u64,
    /// The leader-stamped time of the command, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub level: AuditLevel,
    pub message: String,
    /// Whether the caller was allowed (the operation may still have been refused for a
    /// reason other than permission: see `code`).
    pub authorized: bool,
    pub actor: AuditActor,
    /// `volume.create` style (`Authentication` for authentication failures).
    pub method: String,
    /// The ids the record is about (volumes, snapshots, roles, nodes), most specific first.
    pub objects: Vec<String>,
    /// `OK` or the refusal's gRPC code name.
    pub code: String,
    /// The refusal's message; empty when applied.
    pub reason: String,
    pub request_id: String,
    /// The node that took the request (or proposed the internal command).
    pub origin: NodeId,
    /// A hash prefix of the token the caller presented; never the token. Empty without one.
    pub fingerprint: String,
    /// How many identical events this record stands for (coalesced edge denials); 1 otherwise.
    pub count: u64,
    /// Reported by a node's edge in a batch (a denial before proposing), not decided by apply.
    pub edge: bool,
    pub prev_hash: AuditHash,
    pub hash: AuditHash,
}

fn put_u64(h: &mut Sha256, v: u64) {
    h.update(v.to_be_bytes());
}

fn put_str(h: &mut Sha256, s: &str) {
    put_u64(h, s.len() as u64);
    h.update(s.as_bytes());
}

fn put_strs(h: &mut Sha256, v: &[String]) {
    put_u64(h, v.len() as u64);
    for s in v {
        put_str(h, s);
    }
}

impl AuditRecord {
    /// The record's hash: SHA-256 over a length-prefixed encoding of every field but `hash`
    /// (so a change of any field, or of the record before it, changes it).
    pub fn compute_hash(&self) -> AuditHash {
        let mut h = Sha256::new();
        h.update(b"custos-audit-v1\0");
        put_u64(&mut h, self.seq);
        put_u64(&mut h, self.time_ms);
        h.update([match self.level {
            AuditLevel::Info => 0u8,
            AuditLevel::Warning => 1,
        }]);
        put_str(&mut h, &self.message);
        h.update([u8::from(self.authorized)]);
        let a = &self.actor;
        for s in [&a.username, &a.subject, &a.name, &a.email, &a.issuer] {
            put_str(&mut h, s);
        }
        put_strs(&mut h, &a.roles);
        put_strs(&mut h, &a.groups);
        put_str(&mut h, &self.method);
        put_strs(&mut h, &self.objects);
        put_str(&mut h, &self.code);
        put_str(&mut h, &self.reason);
        put_str(&mut h, &self.request_id);
        put_u64(&mut h, self.origin.0);
        put_str(&mut h, &self.fingerprint);
        put_u64(&mut h, self.count);
        h.update([u8::from(self.edge)]);
        h.update(self.prev_hash.0);
        AuditHash(h.finalize().into())
    }

    /// Whether `hash` matches the record's content.
    pub fn hash_is_valid(&self) -> bool {
        self.compute_hash() == self.hash
    }
}

/// Where the trail stands: the next sequence number, the hash of the last record, and the
/// first record still kept (retention truncates from the front).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub next_seq: u64,
    pub last_hash: AuditHash,
    pub first_seq: u64,
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            next_seq: 1,
            last_hash: GENESIS_HASH,
            first_seq: 1,
        }
    }
}

impl AuditHead {
    /// The last record's sequence number (0 before the first record).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// How many records are kept.
    pub fn len(&self) -> u64 {
        self.next_seq - self.first_seq
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The last record retention by count drops from `head`, if any: everything before the newest
/// `max_records` (0: no limit). Hysteresis: a truncation adds a record itself, so truncating at
/// `max_records + 1` would churn one record per check forever; it acts once the excess is 1%
/// (at least 10 records). The leader proposes `TruncateAudit` up to here (apply removes at most
/// `state::AUDIT_TRUNCATE_MAX` per command).
pub fn retention_through(head: &AuditHead, max_records: u64) -> Option<u64> {
    (max_records > 0 && head.len() > max_records.saturating_add((max_records / 100).max(10)))
        .then(|| head.last_seq() - max_records)
}

/// A denial a node's edge saw (authentication failure, role or ownership refusal of a read or
/// of a write before proposing), reported in a batch with how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Denial {
    pub message: String,
    pub actor: AuditActor,
    pub method: String,
    pub objects: Vec<String>,
    pub code: String,
    /// The first occurrence's request id and token fingerprint.
    pub request_id: String,
    pub fingerprint: String,
    pub count: u64,
}

/// What one record says before it is numbered and chained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub level: AuditLevel,
    pub message: String,
    pub authorized: bool,
    pub actor: AuditActor,
    pub method: String,
    pub objects: Vec<String>,
    pub code: String,
    pub reason: String,
    pub request_id: String,
    pub fingerprint: String,
    pub count: u64,
    pub edge: bool,
}

/// Upstream's rendering of a permission refusal from a handler: `Access denied: <status text>`.
pub fn access_denied_message(r: &Rejection) -> String {
    format!(
        "Access denied: rpc error: code = {} desc = {}",
        r.code.name(),
        r.message
    )
}

/// The audit events of a command with its outcome. `role_denied` tells a refusal of the role
/// check (`Access denied`) from a refusal by the operation itself. Deterministic: apply uses
/// it to write the records, and nodes use it to describe what they served.
pub fn events(cmd: &Command, outcome: &Outcome, role_denied: bool) -> Vec<AuditEvent> {
    let base = |level, message: String, authorized, objects: Vec<String>| AuditEvent {
        level,
        message,
        authorized,
        actor: AuditActor::from(&cmd.identity),
        method: cmd.op.method().dotted(),
        objects,
        code: CODE_OK.to_string(),
        reason: String::new(),
        request_id: cmd.request_id.0.clone(),
        fingerprint: cmd.identity.fingerprint.clone(),
        count: 1,
        edge: false,
    };
    match outcome {
        Outcome::Refused(r) => {
            let objects = op_objects(&cmd.op);
            let mut e = if role_denied {
                base(AuditLevel::Warning, "Access denied".into(), false, objects)
            } else if r.code == crate::rejection::Code::PermissionDenied {
                base(
                    AuditLevel::Warning,
                    access_denied_message(r),
                    false,
                    objects,
                )
            } else {
                base(AuditLevel::Info, "Authorized".into(), true, objects)
            };
            e.code = r.code.name().to_string();
            e.reason = r.message.clone();
            vec![e]
        }
        Outcome::Applied(reply) => {
            if let Op::RecordDenials { denials } = &cmd.op {
                return denials
                    .iter()
                    .map(|d| AuditEvent {
                        level: AuditLevel::Warning,
                        message: d.message.clone(),
                        authorized: false,
                        actor: d.actor.clone(),
                        method: d.method.clone(),
                        objects: d.objects.clone(),
                        code: d.code.clone(),
                        reason: String::new(),
                        request_id: d.request_id.clone(),
                        fingerprint: d.fingerprint.clone(),
                        count: d.count,
                        edge: true,
                    })
                    .collect();
            }
            if let (Op::ReplaceReplicas { node, .. }, Reply::ReplicasReplaced { moved, stuck }) =
                (&cmd.op, reply)
            {
                let mut out: Vec<AuditEvent> = moved
                    .iter()
                    .map(|m| {
                        base(
                            AuditLevel::Info,
                            format!(
                                "Volume {} replica moved from node {} to node {}",
                                m.volume, m.from, m.to
                            ),
                            true,
                            vec![m.volume.to_string(), m.from.to_string(), m.to.to_string()],
                        )
                    })
                    .collect();
                out.extend(stuck.iter().map(|s| {
                    let mut e = base(
                        AuditLevel::Warning,
                        format!(
                            "Volume {} replica on node {} could not be moved",
                            s.volume, s.node
                        ),
                        true,
                        vec![s.volume.to_string(), s.node.to_string()],
                    );
                    e.code = s.reason.code.name().to_string();
                    e.reason = s.reason.message.clone();
                    e
                }));
                if out.is_empty() {
                    out.push(base(
                        AuditLevel::Info,
                        format!("Replicas on node {node} re-placed: nothing to move"),
                        true,
                        vec![node.to_string()],
                    ));
                }
                return out;
            }
            let (message, objects) = applied_message(&cmd.op, reply);
            vec![base(AuditLevel::Info, message, true, objects)]
        }
    }
}

/// The ids an operation is about, most specific first (for refused operations).
fn op_objects(op: &Op) -> Vec<String> {
    match op {
        Op::CreateVolume { id, .. } => vec![id.to_string()],
        Op::DeleteVolume { id }
        | Op::UpdateVolume { id, .. }
        | Op::UpdateSnapshotSchedule { id, .. }
        | Op::DetachVolume { id }
        | Op::MountVolume { id, .. }
        | Op::UnmountVolume { id, .. } => vec![id.to_string()],
        Op::AttachVolume { id, node } => vec![id.to_string(), node.clone()],
        Op::CloneVolume { id, parent, .. } => vec![id.to_string(), parent.to_string()],
        Op::CreateSnapshot { id, volume, .. } => vec![id.to_string(), volume.to_string()],
        Op::RestoreSnapshot { volume, snapshot } => vec![volume.to_string(), snapshot.to_string()],
        Op::CreateRole { role } | Op::UpdateRole { role } => vec![role.name.clone()],
        Op::DeleteRole { name } => vec![name.clone()],
        Op::RegisterNode { node } => vec![node.id.to_string()],
        Op::RetireNode { id } => vec![id.to_string()],
        Op::CordonNode { id } | Op::UncordonNode { id } | Op::DrainNode { id } => {
            vec![id.to_string()]
        }
        Op::ReplaceReplicas { node, .. } | Op::ReportUsage { node, .. } => vec![node.to_string()],
        Op::RecordDenials { .. } | Op::TruncateAudit { .. } | Op::Batch { .. } => Vec::new(),
        Op::RevokeToken { target, .. } => vec![format!("{}:{}", target.kind(), target.value())],
        Op::SetQuota { subject, .. } | Op::RemoveQuota { subject } => match subject {
            crate::quota::QuotaSubject::Guest => vec!["guest".to_string()],
            _ => vec![format!("{}:{}", subject.kind(), subject.name())],
        },
        Op::ChangeMembership { change } => vec![change.node().to_string()],
        Op::CreateSchedulePolicy { policy } | Op::UpdateSchedulePolicy { policy } => {
            vec![policy.name.clone()]
        }
        Op::CreateStoragePolicy { policy } | Op::UpdateStoragePolicy { policy } => {
            vec![policy.name.clone()]
        }
        Op::DeleteSchedulePolicy { name }
        | Op::DeleteStoragePolicy { name }
        | Op::SetDefaultStoragePolicy { name } => vec![name.clone()],
        Op::ReleaseStoragePolicy => Vec::new(),
        Op::CreateCredential { id, .. } => vec![id.to_string()],
        Op::UpdateCredential { id, .. }
        | Op::DeleteCredential { id }
        | Op::DeleteCredentialReferences { id } => vec![id.clone()],
        Op::RaiseAlerts { alerts } => alerts
            .iter()
            .map(|a| format!("{:?}:{}", a.resource, a.resource_id).to_lowercase())
            .collect(),
        Op::DeleteAlerts { .. } => Vec::new(),
    }
}

/// The event line of an operation that applied, and its objects.
fn applied_message(op: &Op, reply: &Reply) -> (String, Vec<String>) {
    let mut objects = op_objects(op);
    let message = match op {
        Op::CreateVolume { .. } => {
            // An idempotent create answers with the existing volume's id.
            if let Reply::VolumeCreated { id } = reply {
                objects = vec![id.to_string()];
            }
            format!("Volume {} created", objects[0])
        }
        Op::CloneVolume { parent, .. } => {
            if let Reply::VolumeCloned { id } = reply {
                objects = vec![id.to_string(), parent.to_string()];
            }
            format!("Volume {} created from {parent}", objects[0])
        }
        Op::CreateSnapshot { volume, .. } => {
            if let Reply::SnapshotCreated { id } = reply {
                objects = vec![id.to_string(), volume.to_string()];
            }
            format!("Snapshot {} of volume {volume} created", objects[0])
        }
        Op::DeleteVolume { id } => format!("Volume {id} deleted"),
        Op::UpdateVolume { id, .. } => format!("Volume {id} updated"),
        Op::RestoreSnapshot { volume, snapshot } => {
            format!("Volume {volume} restored from snapshot {snapshot}")
        }
        Op::UpdateSnapshotSchedule { id, .. } => format!("Volume {id} snapshot schedule updated"),
        Op::AttachVolume { id, node } => format!("Volume {id} attached on node {node}"),
        Op::DetachVolume { id } => format!("Volume {id} detached"),
        Op::MountVolume { id, path } => format!("Volume {id} mounted at {path}"),
        Op::UnmountVolume { id, path } => format!("Volume {id} unmounted from {path}"),
        Op::CreateRole { role } => format!("Role {} created", role.name),
        Op::UpdateRole { role } => format!("Role {} updated", role.name),
        Op::DeleteRole { name } => format!("Role {name} deleted"),
        Op::RegisterNode { node } => format!("Node {} registered", node.id),
        Op::RetireNode { id } => format!("Node {id} retired: removed from the cluster"),
        Op::CordonNode { id } => format!("Node {id} cordoned"),
        Op::UncordonNode { id } => format!("Node {id} uncordoned"),
        Op::DrainNode { id } => {
            if let Reply::Drained { detached } = reply {
                objects.extend(detached.iter().map(|v| v.to_string()));
            }
            format!(
                "Node {id} drained: {} volume(s) detached",
                objects.len() - 1
            )
        }
        Op::ReportUsage { node, .. } => format!("Usage of node {node} recorded"),
        Op::RevokeToken { target, .. } => {
            let issuer = match target.issuer() {
                "" => String::new(),
                issuer => format!(" of issuer {issuer}"),
            };
            match reply {
                Reply::TokenRevoked { revocation } => match target {
                    crate::revocation::RevocationTarget::Subject { subject, .. } => format!(
                        "Tokens of subject {subject}{issuer} issued at or before {} revoked until {}",
                        crate::revocation::utc_text(revocation.issued_before),
                        crate::revocation::utc_text(revocation.expires_at)
                    ),
                    _ => format!(
                        "Token {} {}{issuer} revoked until {}",
                        target.kind(),
                        target.value(),
                        crate::revocation::utc_text(revocation.expires_at)
                    ),
                },
                _ => format!("Token {} {} revoked", target.kind(), target.value()),
            }
        }
        Op::SetQuota { subject, limits } => format!("Quota of {subject} set: {limits}"),
        Op::RemoveQuota { subject } => match subject {
            crate::quota::QuotaSubject::Guest => format!(
                "Quota of guests removed: the default ({}) applies",
                crate::quota::DEFAULT_GUEST_QUOTA
            ),
            _ => format!("Quota of {subject} removed"),
        },
        Op::CreateSchedulePolicy { policy } => format!("Schedule policy {} created", policy.name),
        Op::UpdateSchedulePolicy { policy } => format!("Schedule policy {} updated", policy.name),
        Op::DeleteSchedulePolicy { name } => format!("Schedule policy {name} deleted"),
        Op::CreateStoragePolicy { policy } => format!("Storage policy {} created", policy.name),
        Op::UpdateStoragePolicy { policy } => format!("Storage policy {} updated", policy.name),
        Op::DeleteStoragePolicy { name } => format!("Storage policy {name} deleted"),
        Op::SetDefaultStoragePolicy { name } => {
            format!("Storage policy {name} set as the default")
        }
        Op::ReleaseStoragePolicy => "Default storage policy released".to_string(),
        // Secrets never appear here: the op carries them sealed, and only ids are named.
        Op::CreateCredential { spec, .. } => {
            format!("Credential {} ({}) created", objects[0], spec.kind.name())
        }
        Op::UpdateCredential { .. } => match reply {
            Reply::CredentialUpdated { id } => {
                objects = vec![id.to_string()];
                format!("Credential {id} updated")
            }
            _ => "Credential updated".to_string(),
        },
        Op::DeleteCredential { .. } => match reply {
            Reply::CredentialDeleted { id } => {
                objects = vec![id.to_string()];
                format!("Credential {id} deleted")
            }
            _ => "Credential deleted".to_string(),
        },
        Op::DeleteCredentialReferences { id } => {
            format!("References to credential {id} deleted (custos holds none)")
        }
        Op::RaiseAlerts { alerts } => {
            let cleared = alerts.iter().filter(|a| a.clear).count();
            let raised = alerts.len() - cleared;
            let first = alerts.first().map(|a| a.message.as_str()).unwrap_or("");
            format!("Alerts raised: {raised}, cleared: {cleared} ({first})")
        }
        Op::DeleteAlerts { .. } => match reply {
            Reply::AlertsDeleted { ids } => {
                objects = ids.iter().map(u64::to_string).collect();
                format!("{} alert(s) deleted", ids.len())
            }
            _ => "Alerts deleted".to_string(),
        },
        Op::TruncateAudit { .. } => match reply {
            Reply::AuditTruncated { first, through } if through >= first => {
                format!("Audit records {first} to {through} truncated")
            }
            _ => "Audit retention: nothing to truncate".to_string(),
        },
        // Handled by `events` before this point.
        Op::ReplaceReplicas { node, .. } => format!("Replicas on node {node} re-placed"),
        Op::RecordDenials { .. } => "Denials recorded".to_string(),
        // Never recorded: its commands are, one by one (`State::apply`).
        Op::Batch { commands } => format!("Batch of {} commands applied", commands.len()),
        // Recorded when apply authorizes the change; the leader carries it out afterwards.
        Op::ChangeMembership { change } => format!(
            "Membership change authorized: {}",
            match change {
                MembershipChange::AddLearner { id, raft_addr, .. } => {
                    format!("add member {id} at {raft_addr} as a learner")
                }
                MembershipChange::Promote { id } => format!("promote member {id} to voter"),
                MembershipChange::Remove { id } => format!("remove member {id}"),
                MembershipChange::TransferLeader { to } => {
                    format!("transfer leadership to member {to}")
                }
            }
        ),
    };
    (message, objects)
}

/// A query over the trail. Empty fields match everything; ranges are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub username: Option<String>,
    /// `volume.create` style; matched case-insensitively.
    pub method: Option<String>,
    /// A gRPC code name (`PermissionDenied`) or `OK`; matched case-insensitively.
    pub code: Option<String>,
    /// Matches records naming this id among their objects.
    pub object: Option<String>,
    pub from_time_ms: Option<u64>,
    pub to_time_ms: Option<u64>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
    /// `Some(true)`: allowed records only; `Some(false)`: refusals only.
    pub authorized: Option<bool>,
}

impl AuditQuery {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.username
            .as_ref()
            .is_none_or(|u| *u == r.actor.username)
            && self
                .method
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&r.method))
            && self
                .code
                .as_ref()
                .is_none_or(|c| c.eq_ignore_ascii_case(&r.code))
            && self
                .object
                .as_ref()
                .is_none_or(|o| r.objects.iter().any(|x| x == o))
            && self.from_time_ms.is_none_or(|t| r.time_ms >= t)
            && self.to_time_ms.is_none_or(|t| r.time_ms <= t)
            && self.from_seq.is_none_or(|s| r.seq >= s)
            && self.to_seq.is_none_or(|s| r.seq <= s)
            && self.authorized.is_none_or(|a| a == r.authorized)
    }
}

/// Why a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("record {seq}: its hash does not match its content")]
    BadHash { seq: u64 },
    #[error("record {seq}: prev_hash does not match record {prev}'s hash")]
    BrokenLink { seq: u64, prev: u64 },
    #[error("record {seq} follows record {prev}: sequence numbers must be dense")]
    Gap { seq: u64, prev: u64 },
    #[error("the trail ends at record {found} but the head says {expected}")]
    HeadMismatch { expected: u64, found: u64 },
    #[error("the last record's hash does not match the head's hash")]
    HeadHash,
}

/// Checks a chain incrementally: feed records in sequence order. The first record's
/// `prev_hash` is taken as given (records before it may have been truncated), unless it is
/// record 1, whose `prev_hash` must be the genesis hash.
#[derive(Clone, Debug, Default)]
pub struct ChainVerifier {
    last: Option<(u64, AuditHash)>,
    pub checked: u64,
}

impl ChainVerifier {
    /// A verifier that continues a chain already checked through record `seq`, whose hash is
    /// `hash`: the first record fed must be `seq + 1` and name `hash` as its `prev_hash`.
    pub fn anchored(seq: u64, hash: AuditHash) -> ChainVerifier {
        ChainVerifier {
            last: Some((seq, hash)),
            checked: 0,
        }
    }

    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        if !r.hash_is_valid() {
            return Err(ChainError::BadHash { seq: r.seq });
        }
        match self.last {
            None if r.seq == 1 && r.prev_hash != GENESIS_HASH => {
                return Err(ChainError::BrokenLink { seq: 1, prev: 0 })
            }
            None => {}
            Some((prev, _)) if r.seq != prev + 1 => {
                return Err(ChainError::Gap { seq: r.seq, prev })
            }
            Some((prev, hash)) if r.prev_hash != hash => {
                return Err(ChainError::BrokenLink { seq: r.seq, prev })
            }
            Some(_) => {}
        }
        self.last = Some((r.seq, r.hash));
        self.checked += 1;
        Ok(())
    }

    /// The last record checked.
    pub fn last(&self) -> Option<(u64, AuditHash)> {
        self.last
    }

    /// Checks that the records fed end where `head` says the trail ends.
    pub fn finish(&self, head: &AuditHead) -> Result<(), ChainError> {
        match self.last {
            None if head.is_empty() => Ok(()),
            None => Err(ChainError::HeadMismatch {
                expected: head.last_seq(),
                found: 0,
            }),
            Some((seq, _)) if seq != head.last_seq() => Err(ChainError::HeadMismatch {
                expected: head.last_seq(),
                found: seq,
            }),
            Some((_, hash)) if hash != head.last_hash => Err(ChainError::HeadHash),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(first_seq: u64, last_seq: u64) -> AuditHead {
        AuditHead {
            next_seq: last_seq + 1,
            last_hash: GENESIS_HASH,
            first_seq,
        }
    }

    #[test]
    fn retention_by_count_waits_for_one_percent_over_then_keeps_the_newest() {
        assert_eq!(retention_through(&head(1, 5_000_000), 0), None);
        assert_eq!(retention_through(&head(1, 1_010_000), 1_000_000), None);
        assert_eq!(
            retention_through(&head(1, 1_010_001), 1_000_000),
            Some(10_001)
        );
        // Small bounds: at least 10 over.
        assert_eq!(retention_through(&head(1, 1_010), 1_000), None);
        assert_eq!(retention_through(&head(5, 1_020), 1_000), Some(20));
    }

    #[test]
    fn an_anchored_verifier_wants_the_next_record_linked_to_its_anchor() {
        let mut r = AuditRecord {
            seq: 8,
            time_ms: 1,
            level: AuditLevel::Info,
            message: "m".into(),
            authorized: true,
            actor: AuditActor::default(),
            method: "volume.create".into(),
            objects: Vec::new(),
            code: CODE_OK.into(),
            reason: String::new(),
            request_id: "r".into(),
            origin: NodeId(1),
            fingerprint: String::new(),
            count: 1,
            edge: false,
            prev_hash: AuditHash([3; 32]),
            hash: GENESIS_HASH,
        };
        r.hash = r.compute_hash();
        let mut good = ChainVerifier::anchored(7, AuditHash([3; 32]));
        assert_eq!(good.push(&r), Ok(()));
        assert_eq!((good.checked, good.last()), (1, Some((8, r.hash))));
        let mut other = ChainVerifier::anchored(7, AuditHash([4; 32]));
        assert_eq!(
            other.push(&r),
            Err(ChainError::BrokenLink { seq: 8, prev: 7 })
        );
        let mut gap = ChainVerifier::anchored(6, AuditHash([3; 32]));
        assert_eq!(gap.push(&r), Err(ChainError::Gap { seq: 8, prev: 6 }));
    }
}
