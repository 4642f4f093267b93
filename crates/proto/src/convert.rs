//! Conversions between the wire types (SDK and custos admin) and the domain model (the only place both meet).

use crate::custos::admin::v1 as admin;
use crate::openstorage::api;
use custos_model::audit::{AuditActor, AuditHash, AuditLevel, AuditQuery, AuditRecord};
use custos_model::{
    AccessType, Acls, NodeId, Ownership, Role, Rule, Volume, VolumeId, VolumeSpec, VolumeUpdate,
};
use std::collections::{BTreeMap, HashMap};

pub mod credentials;

fn access_from_wire(v: i32) -> AccessType {
    match api::ownership::AccessType::try_from(v) {
        Ok(api::ownership::AccessType::Admin) => AccessType::Admin,
        Ok(api::ownership::AccessType::Write) => AccessType::Write,
        // Read is 0: an unknown value grants the least.
        _ => AccessType::Read,
    }
}

fn access_to_wire(a: AccessType) -> i32 {
    match a {
        AccessType::Read => api::ownership::AccessType::Read as i32,
        AccessType::Write => api::ownership::AccessType::Write as i32,
        AccessType::Admin => api::ownership::AccessType::Admin as i32,
    }
}

fn acl_map_from_wire(m: &HashMap<String, i32>) -> BTreeMap<String, AccessType> {
    m.iter()
        .map(|(k, v)| (k.clone(), access_from_wire(*v)))
        .collect()
}

fn acl_map_to_wire(m: &BTreeMap<String, AccessType>) -> HashMap<String, i32> {
    m.iter()
        .map(|(k, v)| (k.clone(), access_to_wire(*v)))
        .collect()
}

/// The full ownership of a wire message (used for filters and, later, ownership updates).
pub fn ownership_from_proto(o: &api::Ownership) -> Ownership {
    Ownership {
        owner: o.owner.clone(),
        acls: acls_from_proto(Some(o)),
    }
}

/// Only the ACLs of a wire ownership: what a create keeps (the owner is always the caller).
pub fn acls_from_proto(o: Option<&api::Ownership>) -> Acls {
    let Some(acls) = o.and_then(|o| o.acls.as_ref()) else {
        return Acls::default();
    };
    Acls {
        groups: acl_map_from_wire(&acls.groups),
        collaborators: acl_map_from_wire(&acls.collaborators),
        public: acls.public.as_ref().map(|p| access_from_wire(p.r#type)),
    }
}

pub fn ownership_to_proto(o: &Ownership) -> api::Ownership {
    api::Ownership {
        owner: o.owner.clone(),
        acls: Some(api::ownership::AccessControl {
            groups: acl_map_to_wire(&o.acls.groups),
            collaborators: acl_map_to_wire(&o.acls.collaborators),
            public: o.acls.public.map(|p| api::ownership::PublicAccessControl {
                r#type: access_to_wire(p),
            }),
        }),
    }
}

/// The spec fields custos keeps. The passphrase is dropped here and never stored.
pub fn spec_from_proto(s: &api::VolumeSpec) -> VolumeSpec {
    VolumeSpec {
        size: s.size,
        ha_level: s.ha_level,
        format: s.format,
        block_size: s.block_size,
        cos: s.cos,
        io_profile: s.io_profile,
        shared: s.shared,
        sharedv4: s.sharedv4,
        encrypted: s.encrypted,
        sticky: s.sticky,
        journal: s.journal,
        snapshot_schedule: s.snapshot_schedule.clone(),
        volume_labels: s.volume_labels.clone().into_iter().collect(),
        replica_nodes: s
            .replica_set
            .as_ref()
            .map(|r| r.nodes.clone())
            .unwrap_or_default(),
        storage_policy: s.storage_policy.clone(),
    }
}

pub fn spec_to_proto(s: &VolumeSpec, ownership: Option<&Ownership>) -> api::VolumeSpec {
    api::VolumeSpec {
        size: s.size,
        ha_level: s.ha_level,
        format: s.format,
        block_size: s.block_size,
        cos: s.cos,
        io_profile: s.io_profile,
        shared: s.shared,
        sharedv4: s.sharedv4,
        encrypted: s.encrypted,
        sticky: s.sticky,
        journal: s.journal,
        snapshot_schedule: s.snapshot_schedule.clone(),
        volume_labels: s.volume_labels.clone().into_iter().collect(),
        replica_set: (!s.replica_nodes.is_empty()).then(|| api::ReplicaSet {
            nodes: s.replica_nodes.clone(),
            ..Default::default()
        }),
        ownership: ownership.map(ownership_to_proto),
        storage_policy: s.storage_policy.clone(),
        ..Default::default()
    }
}

pub(crate) fn timestamp(ms: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A volume record as the SDK's `Volume` message.
pub fn volume_to_proto(v: &Volume) -> api::Volume {
    api::Volume {
        id: v.id.0.clone(),
        // Always sent, empty for a volume with no parent: upstream always sends one, and
        // clients (upstream's Go test helpers among them) dereference it.
        source: Some(api::Source {
            parent: v.parent.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
            ..Default::default()
        }),
        locator: Some(api::VolumeLocator {
            name: v.name.clone(),
            volume_labels: v.labels.clone().into_iter().collect(),
            ownership: v.ownership.as_ref().map(ownership_to_proto),
            ..Default::default()
        }),
        ctime: Some(timestamp(v.created_ms)),
        spec: Some(spec_to_proto(&v.spec, v.ownership.as_ref())),
        format: v.spec.format,
        readonly: v.snapshot,
        status: api::VolumeStatus::Up as i32,
        state: if v.is_attached() {
            api::VolumeState::Attached
        } else {
            api::VolumeState::Detached
        } as i32,
        attached_on: v.attached_on.clone().unwrap_or_default(),
        device_path: v.device_path.clone(),
        attach_path: v.mount_paths.iter().cloned().collect(),
        replica_sets: if v.replicas.is_empty() {
            Vec::new()
        } else {
            vec![api::ReplicaSet {
                nodes: v.replicas.iter().map(|n| n.0.to_string()).collect(),
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}

/// The inverse of [`volume_to_proto`], for clients.
pub fn volume_from_proto(v: &api::Volume) -> Volume {
    let locator = v.locator.clone().unwrap_or_default();
    let spec = v.spec.clone().unwrap_or_default();
    let ownership = locator
        .ownership
        .as_ref()
        .or(spec.ownership.as_ref())
        .map(ownership_from_proto);
    let created_ms = v
        .ctime
        .as_ref()
        // Saturating: a reply's timestamp is the server's to choose, and `seconds * 1000`
        // overflowed (a panic in debug builds) for seconds past 2^64 / 1000.
        .map(|t| {
            (t.seconds.max(0) as u64)
                .saturating_mul(1000)
                .saturating_add((t.nanos.max(0) as u64) / 1_000_000)
        })
        .unwrap_or(0);
    let mut volume = Volume::new(
        VolumeId(v.id.clone()),
        locator.name.clone(),
        spec_from_proto(&spec),
        locator.volume_labels.into_iter().collect(),
        ownership,
        created_ms,
    );
    volume.parent = v
        .source
        .as_ref()
        .filter(|s| !s.parent.is_empty())
        .map(|s| VolumeId(s.parent.clone()));
    volume.snapshot = v.readonly;
    volume.attached_on = (!v.attached_on.is_empty()).then(|| v.attached_on.clone());
    volume.device_path = v.device_path.clone();
    volume.mount_paths = v.attach_path.iter().cloned().collect();
    volume.replicas = v
        .replica_sets
        .iter()
        .flat_map(|r| r.nodes.iter())
        .filter_map(|n| n.parse().ok().map(NodeId))
        .collect();
    volume
}

/// The fields of an SDK update that custos applies; absent oneofs stay `None`.
pub fn update_from_proto(u: &api::VolumeSpecUpdate) -> VolumeUpdate {
    use api::volume_spec_update as w;
    VolumeUpdate {
        size: u.size_opt.as_ref().map(|w::SizeOpt::Size(v)| *v),
        ha_level: u.ha_level_opt.as_ref().map(|w::HaLevelOpt::HaLevel(v)| *v),
        shared: u.shared_opt.as_ref().map(|w::SharedOpt::Shared(v)| *v),
        sharedv4: u
            .sharedv4_opt
            .as_ref()
            .map(|w::Sharedv4Opt::Sharedv4(v)| *v),
        snapshot_schedule: u
            .snapshot_schedule_opt
            .as_ref()
            .map(|w::SnapshotScheduleOpt::SnapshotSchedule(v)| v.clone()),
        io_profile: u
            .io_profile_opt
            .as_ref()
            .map(|w::IoProfileOpt::IoProfile(v)| *v),
        cos: u.cos_opt.as_ref().map(|w::CosOpt::Cos(v)| *v),
        ownership: u.ownership.as_ref().map(ownership_from_proto),
    }
}

/// The inverse of [`update_from_proto`], for clients.
pub fn update_to_proto(u: &VolumeUpdate) -> api::VolumeSpecUpdate {
    use api::volume_spec_update as w;
    api::VolumeSpecUpdate {
        size_opt: u.size.map(w::SizeOpt::Size),
        ha_level_opt: u.ha_level.map(w::HaLevelOpt::HaLevel),
        shared_opt: u.shared.map(w::SharedOpt::Shared),
        sharedv4_opt: u.sharedv4.map(w::Sharedv4Opt::Sharedv4),
        snapshot_schedule_opt: u
            .snapshot_schedule
            .clone()
            .map(w::SnapshotScheduleOpt::SnapshotSchedule),
        io_profile_opt: u.io_profile.map(w::IoProfileOpt::IoProfile),
        cos_opt: u.cos.map(w::CosOpt::Cos),
        ownership: u.ownership.as_ref().map(ownership_to_proto),
        ..Default::default()
    }
}

pub fn role_from_proto(r: &api::SdkRole) -> Role {
    Role {
        name: r.name.clone(),
        rules: r
            .rules
            .iter()
            .map(|x| Rule {
                services: x.services.clone(),
                apis: x.apis.clone(),
            })
            .collect(),
    }
}

pub fn role_to_proto(r: &Role) -> api::SdkRole {
    api::SdkRole {
        name: r.name.clone(),
        rules: r
            .rules
            .iter()
            .map(|x| api::SdkRule {
                services: x.services.clone(),
                apis: x.apis.clone(),
            })
            .collect(),
    }
}

// ---- explain (custos.admin.v1.Access) ----

fn access_name(a: custos_model::AccessType) -> String {
    format!("{a:?}")
}

/// A verdict; `grpc_code` is left 0 for the server to fill (it owns the gRPC code mapping).
fn explain_verdict(v: &Result<(), custos_model::Rejection>) -> admin::ExplainVerdict {
    match v {
        Ok(()) => admin::ExplainVerdict {
            allowed: true,
            code: "OK".into(),
            grpc_code: 0,
            message: String::new(),
        },
        Err(r) => admin::ExplainVerdict {
            allowed: false,
            code: r.code.name().into(),
            grpc_code: 0,
            message: r.message.clone(),
        },
    }
}

fn explain_step(
    step: &custos_model::ownership::AccessStep,
    want: custos_model::AccessType,
) -> admin::ExplainAccessStep {
    use custos_model::ownership::AccessStep as S;
    let (kind, subject, level, grants) = match step {
        S::NoOwnership => ("no_ownership", String::new(), None, true),
        S::NoOwner => ("no_owner", String::new(), None, true),
        S::Public { level } => (
            "public",
            String::new(),
            *level,
            level.is_some_and(|l| l >= want),
        ),
        S::Anonymous => ("anonymous", String::new(), None, false),
        S::Owner { owner, is_caller } => ("owner", owner.clone(), None, *is_caller),
        S::OwnershipAdmin { is_admin } => ("ownership_admin", String::new(), None, *is_admin),
        S::Group { group, level } => ("group", group.clone(), Some(*level), *level >= want),
        S::Collaborator {
            collaborator,
            level,
        } => (
            "collaborator",
            collaborator.clone(),
            Some(*level),
            *level >= want,
        ),
        S::NoAclEntry => ("no_acl_entry", String::new(), None, false),
    };
    admin::ExplainAccessStep {
        kind: kind.into(),
        subject,
        level: level.map(access_name).unwrap_or_default(),
        grants,
        text: custos_model::explain::step_text(step, want),
    }
}

/// A revocation in force, as `Auth.Revoke` and `Auth.ListRevocations` answer it.
pub fn revocation_to_proto(r: &custos_model::Revocation) -> admin::Revocation {
    admin::Revocation {
        kind: r.target.kind().to_string(),
        value: r.target.value().to_string(),
        issuer: r.target.issuer().to_string(),
        issued_before: r.issued_before,
        expires_at: r.expires_at,
        revoked_ms: r.revoked_ms,
        revoked_by: r.revoked_by.clone(),
    }
}

/// A quota subject on the wire.
pub fn quota_subject_to_proto(s: &custos_model::QuotaSubject) -> admin::QuotaSubject {
    use custos_model::QuotaSubject;
    match s {
        QuotaSubject::User(u) => admin::QuotaSubject {
            user: u.clone(),
            ..Default::default()
        },
        QuotaSubject::Group(g) => admin::QuotaSubject {
            group: g.clone(),
            ..Default::default()
        },
        QuotaSubject::Guest => admin::QuotaSubject {
            guest: true,
            ..Default::default()
        },
    }
}

/// The subject a request names: exactly one of a user, a group and the guests (the error
/// text otherwise).
pub fn quota_subject_from_proto(
    s: Option<&admin::QuotaSubject>,
) -> Result<custos_model::QuotaSubject, &'static str> {
    use custos_model::QuotaSubject;
    const ONE: &str = "Must supply exactly one of a user, a group and the guests";
    let s = s.ok_or(ONE)?;
    match (s.user.is_empty(), s.group.is_empty(), s.guest) {
        (false, true, false) => Ok(QuotaSubject::User(s.user.clone())),
        (true, false, false) => Ok(QuotaSubject::Group(s.group.clone())),
        (true, true, true) => Ok(QuotaSubject::Guest),
        _ => Err(ONE),
    }
}

/// A quota, as `Quotas.Set`, `Quotas.List` and `Quotas.Usage` answer it.
pub fn quota_to_proto(q: &custos_model::Quota) -> admin::Quota {
    admin::Quota {
        subject: Some(quota_subject_to_proto(&q.subject)),
        max_volumes: q.limits.volumes,
        max_bytes: q.limits.bytes,
        set_ms: q.set_ms,
        set_by: q.set_by.clone(),
        default: false,
    }
}

/// The guests' built-in quota (no quota set for them).
pub fn default_guest_quota_to_proto() -> admin::Quota {
    let limits = custos_model::quota::DEFAULT_GUEST_QUOTA;
    admin::Quota {
        subject: Some(quota_subject_to_proto(&custos_model::QuotaSubject::Guest)),
        max_volumes: limits.volumes,
        max_bytes: limits.bytes,
        set_ms: 0,
        set_by: String::new(),
        default: true,
    }
}

/// An explanation as `Access.Explain` answers it (the gRPC code numbers are the server's to
/// fill in).
pub fn explanation_to_proto(e: &custos_model::Explanation) -> admin::ExplainReply {
    use custos_model::role::{RoleVerdict, RuleEffect};
    let role_checks = e
        .roles
        .iter()
        .map(|r| {
            let Some(d) = &r.role else {
                return admin::ExplainRole {
                    name: r.name.clone(),
                    verdict: "unknown".into(),
                    deciding_rule: 0,
                    rules: Vec::new(),
                };
            };
            let (verdict, rule) = match d.verdict {
                RoleVerdict::Allowed { rule } => ("allow", rule + 1),
                RoleVerdict::Denied { rule } => ("deny", rule + 1),
                RoleVerdict::NoMatch => ("no_match", 0),
            };
            admin::ExplainRole {
                name: r.name.clone(),
                verdict: verdict.into(),
                deciding_rule: u32::try_from(rule).unwrap_or(u32::MAX),
                rules: d
                    .rules
                    .iter()
                    .map(|(rule, m)| admin::ExplainRule {
                        services: rule.services.clone(),
                        apis: rule.apis.clone(),
                        effect: match m.effect() {
                            RuleEffect::DeniesService => "deny_service",
                            RuleEffect::DeniesApi => "deny_api",
                            RuleEffect::Allows => "allow",
                            RuleEffect::NoMatch => "no_match",
                        }
                        .into(),
                        service_deny: m.service_deny.clone().unwrap_or_default(),
                        service_allow: m.service_allow.clone().unwrap_or_default(),
                        api_deny: m.api_deny.clone().unwrap_or_default(),
                        api_allow: m.api_allow.clone().unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    let volume = e.volume.as_ref().map(|t| admin::ExplainVolumeCheck {
        check: format!("{:?}", t.check),
        target: t.target.clone(),
        volume_id: t
            .found
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
        levels: t
            .levels
            .iter()
            .map(|l| admin::ExplainAccessLevel {
                want: access_name(l.want),
                granted: l.granted,
                steps: l.steps.iter().map(|s| explain_step(s, l.want)).collect(),
            })
            .collect(),
        verdict: Some(explain_verdict(&t.verdict)),
    });
    admin::ExplainReply {
        user: e.identity.username.clone(),
        groups: e.identity.groups.clone(),
        roles: e.identity.roles.clone(),
        issuer: e.identity.issuer.clone(),
        anonymous: e.identity.guest,
        token_fingerprint: e.identity.fingerprint.clone(),
        method: e.method.clone(),
        dotted: e.dotted.clone(),
        role_checks,
        role_verdict: Some(explain_verdict(&e.role_verdict)),
        volume_check: e.volume_check.map(|c| format!("{c:?}")).unwrap_or_default(),
        volume,
        verdict: Some(explain_verdict(&e.verdict)),
        lines: e.lines(),
    }
}

// ---- the audit trail (custos.admin.v1.Audit) ----

/// The hash 64 hex digits spell; anything else is the zero hash (which no record has, so the
/// chain check fails on it).
fn hex_to_hash(s: &str) -> AuditHash {
    let mut out = [0u8; 32];
    if hex::decode_to_slice(s, &mut out).is_err() {
        out = [0; 32];
    }
    AuditHash(out)
}

pub fn audit_record_to_proto(r: &AuditRecord) -> admin::AuditRecord {
    admin::AuditRecord {
        seq: r.seq,
        time_ms: r.time_ms,
        level: r.level.name().to_string(),
        message: r.message.clone(),
        authorized: r.authorized,
        username: r.actor.username.clone(),
        subject: r.actor.subject.clone(),
        name: r.actor.name.clone(),
        email: r.actor.email.clone(),
        issuer: r.actor.issuer.clone(),
        roles: r.actor.roles.clone(),
        groups: r.actor.groups.clone(),
        method: r.method.clone(),
        objects: r.objects.clone(),
        code: r.code.clone(),
        reason: r.reason.clone(),
        request_id: r.request_id.clone(),
        origin_node: r.origin.0,
        token_fingerprint: r.fingerprint.clone(),
        count: r.count,
        edge: r.edge,
        prev_hash: r.prev_hash.hex(),
        hash: r.hash.hex(),
    }
}

/// The record a reply carries; its hash can be recomputed to check it arrived intact.
pub fn audit_record_from_proto(r: &admin::AuditRecord) -> AuditRecord {
    AuditRecord {
        seq: r.seq,
        time_ms: r.time_ms,
        level: if r.level == "warning" {
            AuditLevel::Warning
        } else {
            AuditLevel::Info
        },
        message: r.message.clone(),
        authorized: r.authorized,
        actor: AuditActor {
            username: r.username.clone(),
            subject: r.subject.clone(),
            name: r.name.clone(),
            email: r.email.clone(),
            issuer: r.issuer.clone(),
            roles: r.roles.clone(),
            groups: r.groups.clone(),
        },
        method: r.method.clone(),
        objects: r.objects.clone(),
        code: r.code.clone(),
        reason: r.reason.clone(),
        request_id: r.request_id.clone(),
        origin: NodeId(r.origin_node),
        fingerprint: r.token_fingerprint.clone(),
        count: r.count,
        edge: r.edge,
        prev_hash: hex_to_hash(&r.prev_hash),
        hash: hex_to_hash(&r.hash),
    }
}

pub fn audit_query_from_proto(f: Option<&admin::AuditFilter>) -> AuditQuery {
    let Some(f) = f else {
        return AuditQuery::default();
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let num = |n: u64| (n != 0).then_some(n);
    AuditQuery {
        username: text(&f.username),
        method: text(&f.method),
        code: text(&f.code),
        object: text(&f.object_id),
        from_time_ms: num(f.from_time_ms),
        to_time_ms: num(f.to_time_ms),
        from_seq: num(f.from_seq),
        to_seq: num(f.to_seq),
        authorized: f.authorized,
    }
}

pub fn audit_query_to_proto(q: &AuditQuery) -> admin::AuditFilter {
    admin::AuditFilter {
        username: q.username.clone().unwrap_or_default(),
        method: q.method.clone().unwrap_or_default(),
        code: q.code.clone().unwrap_or_default(),
        object_id: q.object.clone().unwrap_or_default(),
        from_time_ms: q.from_time_ms.unwrap_or(0),
        to_time_ms: q.to_time_ms.unwrap_or(0),
        from_seq: q.from_seq.unwrap_or(0),
        to_seq: q.to_seq.unwrap_or(0),
        authorized: q.authorized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_records_round_trip_with_their_hashes() {
        use custos_model::audit::{AuditActor, AuditLevel, AuditRecord, GENESIS_HASH};
        let mut r = AuditRecord {
            seq: 7,
            time_ms: 1_700_000_000_123,
            level: AuditLevel::Warning,
            message: "Access denied".into(),
            authorized: false,
            actor: AuditActor {
                username: "victor".into(),
                roles: vec!["system.view".into()],
                ..AuditActor::default()
            },
            method: "volume.create".into(),
            objects: vec!["v1".into()],
            code: "PermissionDenied".into(),
            reason: "no".into(),
            request_id: "r".into(),
            origin: NodeId(2),
            fingerprint: "0123456789ab".into(),
            count: 3,
            edge: true,
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
        };
        r.hash = r.compute_hash();
        let back = audit_record_from_proto(&audit_record_to_proto(&r));
        assert_eq!(back, r);
        assert!(back.hash_is_valid());
    }

    #[test]
    fn volume_round_trips_and_drops_the_passphrase() {
        let wire_spec = api::VolumeSpec {
            size: 1 << 30,
            ha_level: 2,
            passphrase: "hunter2".into(),
            encrypted: true,
            volume_labels: [("a".to_string(), "b".to_string())].into_iter().collect(),
            replica_set: Some(api::ReplicaSet {
                nodes: vec!["1".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = spec_from_proto(&wire_spec);
        let ownership = Ownership {
            owner: "alice".into(),
            acls: Acls {
                groups: [("g".to_string(), AccessType::Write)].into_iter().collect(),
                collaborators: [("bob".to_string(), AccessType::Admin)]
                    .into_iter()
                    .collect(),
                public: Some(AccessType::Read),
            },
        };
        let mut v = Volume::new(
            VolumeId("v1".into()),
            "vol".to_string(),
            spec,
            [("k".to_string(), "v".to_string())].into_iter().collect(),
            Some(ownership),
            1_700_000_000_123,
        );
        v.parent = Some(VolumeId("p".into()));
        v.attached_on = Some("2".into());
        v.device_path = "/dev/custos/v1".into();
        v.mount_paths = ["/mnt/a".to_string()].into_iter().collect();
        v.replicas = vec![NodeId(2), NodeId(3)];
        let wire = volume_to_proto(&v);
        assert_eq!(wire.spec.as_ref().unwrap().passphrase, "");
        assert_eq!(wire.state, api::VolumeState::Attached as i32);
        assert_eq!(volume_from_proto(&wire), v);
    }

    #[test]
    fn huge_timestamps_saturate() {
        let v = api::Volume {
            ctime: Some(pbjson_types::Timestamp {
                seconds: i64::MAX,
                nanos: i32::MAX,
            }),
            ..Default::default()
        };
        let model = volume_from_proto(&v);
        assert_eq!(model.created_ms, u64::MAX);
        assert_eq!(volume_from_proto(&volume_to_proto(&model)), model);
    }

    #[test]
    fn update_keeps_unset_apart_from_zero() {
        use api::volume_spec_update as w;
        let u = api::VolumeSpecUpdate {
            size_opt: Some(w::SizeOpt::Size(5)),
            shared_opt: Some(w::SharedOpt::Shared(false)),
            ..Default::default()
        };
        let got = update_from_proto(&u);
        assert_eq!(update_from_proto(&update_to_proto(&got)), got);
        assert_eq!(got.size, Some(5));
        assert_eq!(got.shared, Some(false));
        assert_eq!(got.ha_level, None);
        assert_eq!(got.ownership, None);
    }

    #[test]
    fn empty_public_message_grants_read() {
        let o = api::Ownership {
            owner: "alice".into(),
            acls: Some(api::ownership::AccessControl {
                public: Some(api::ownership::PublicAccessControl::default()),
                ..Default::default()
            }),
        };
        assert_eq!(acls_from_proto(Some(&o)).public, Some(AccessType::Read));
    }
}
