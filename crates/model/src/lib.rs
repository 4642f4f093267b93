//! custos domain core: roles, ownership, volumes, nodes, placement, usage, quotas, credentials, alerts, the audit trail, commands and the deterministic apply.
//!
//! This crate is pure: no I/O, no async, no clock and no randomness. Everything that varies
//! (ids, times, the caller's verified identity) arrives inside a [`Command`], so applying the
//! same log gives the same state and the same outcomes on every node.

pub mod alert;
pub mod audit;
pub mod command;
pub mod credential;
pub mod explain;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod identity;
pub mod ids;
pub mod node;
pub mod ownership;
pub mod placement;
pub mod policy;
pub mod quota;
pub mod rejection;
pub mod revocation;
pub mod role;
pub mod state;
pub mod usage;
pub mod volume;

pub use alert::{
    Alert, AlertOption, AlertQuery, AlertRaise, AlertSelector, ResourceKind, Severity,
};
pub use audit::{AuditActor, AuditHash, AuditHead, AuditLevel, AuditQuery, AuditRecord, Denial};
pub use command::{Command, MembershipChange, Op, Outcome, Reply};
pub use credential::{
    Credential, CredentialId, CredentialKind, CredentialSpec, SealedSecret, SecretField,
};
pub use explain::Explanation;
pub use identity::Identity;
pub use ids::{NodeId, RequestId, VolumeId};
pub use node::StorageNodeRecord;
pub use ownership::{AccessType, Acls, Ownership};
pub use placement::{ReplicaMove, StuckReplica};
pub use policy::{
    PolicyOp, ScheduleInterval, SchedulePeriod, SchedulePolicy, SpecPolicy, StoragePolicy,
};
pub use quota::{Quota, QuotaLimits, QuotaSubject, QuotaUsage};
pub use rejection::{Code, Rejection};
pub use revocation::{Revocation, RevocationTarget};
pub use role::{MethodName, Role, RoleTrace, RoleVerdict, Rule, RuleMatch};
pub use state::{
    Applied, Change, Record, RecordKey, State, VolumeFilter, AUDIT_KEY_PREFIX,
    MUST_SUPPLY_VOLUME_ID,
};
pub use usage::VolumeUsage;
pub use volume::{Volume, VolumeSpec, VolumeUpdate};
