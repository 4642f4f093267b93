//! Conversions of schedule policies and storage policies between the SDK messages and the domain model.

use crate::convert::{acls_from_proto, ownership_from_proto, ownership_to_proto};
use crate::openstorage::api;
use custos_model::{
    PolicyOp, ScheduleInterval, SchedulePeriod, SchedulePolicy, SpecPolicy, StoragePolicy,
};

pub fn schedule_policy_from_proto(p: &api::SdkSchedulePolicy) -> SchedulePolicy {
    use api::sdk_schedule_policy_interval::PeriodType;
    SchedulePolicy {
        name: p.name.clone(),
        schedules: p
            .schedules
            .iter()
            .map(|s| ScheduleInterval {
                retain: s.retain,
                period: s.period_type.as_ref().map(|t| match t {
                    PeriodType::Daily(d) => SchedulePeriod::Daily {
                        hour: d.hour,
                        minute: d.minute,
                    },
                    PeriodType::Weekly(w) => SchedulePeriod::Weekly {
                        day: w.day,
                        hour: w.hour,
                        minute: w.minute,
                    },
                    PeriodType::Monthly(m) => SchedulePeriod::Monthly {
                        day: m.day,
                        hour: m.hour,
                        minute: m.minute,
                    },
                    PeriodType::Periodic(p) => SchedulePeriod::Periodic { seconds: p.seconds },
                }),
            })
            .collect(),
    }
}

pub fn schedule_policy_to_proto(p: &SchedulePolicy) -> api::SdkSchedulePolicy {
    use api::sdk_schedule_policy_interval::PeriodType;
    api::SdkSchedulePolicy {
        name: p.name.clone(),
        schedules: p
            .schedules
            .iter()
            .map(|s| api::SdkSchedulePolicyInterval {
                retain: s.retain,
                period_type: s.period.as_ref().map(|t| match t {
                    SchedulePeriod::Daily { hour, minute } => {
                        PeriodType::Daily(api::SdkSchedulePolicyIntervalDaily {
                            hour: *hour,
                            minute: *minute,
                        })
                    }
                    SchedulePeriod::Weekly { day, hour, minute } => {
                        PeriodType::Weekly(api::SdkSchedulePolicyIntervalWeekly {
                            day: *day,
                            hour: *hour,
                            minute: *minute,
                        })
                    }
                    SchedulePeriod::Monthly { day, hour, minute } => {
                        PeriodType::Monthly(api::SdkSchedulePolicyIntervalMonthly {
                            day: *day,
                            hour: *hour,
                            minute: *minute,
                        })
                    }
                    SchedulePeriod::Periodic { seconds } => {
                        PeriodType::Periodic(api::SdkSchedulePolicyIntervalPeriodic {
                            seconds: *seconds,
                        })
                    }
                }),
            })
            .collect(),
    }
}

fn op_from_wire(v: i32) -> PolicyOp {
    match api::volume_spec_policy::PolicyOp::try_from(v) {
        Ok(api::volume_spec_policy::PolicyOp::Minimum) => PolicyOp::Minimum,
        Ok(api::volume_spec_policy::PolicyOp::Maximum) => PolicyOp::Maximum,
        // Equal is 0, as is anything unknown: the strictest.
        _ => PolicyOp::Equal,
    }
}

fn op_to_wire(o: PolicyOp) -> i32 {
    (match o {
        PolicyOp::Equal => api::volume_spec_policy::PolicyOp::Equal,
        PolicyOp::Minimum => api::volume_spec_policy::PolicyOp::Minimum,
        PolicyOp::Maximum => api::volume_spec_policy::PolicyOp::Maximum,
    }) as i32
}

/// The `VolumeSpecPolicy` fields custos does not enforce that `p` sets, by their wire names.
fn unsupported_fields(p: &api::VolumeSpecPolicy) -> Vec<&'static str> {
    let set = [
        ("dedupe", p.dedupe_opt.is_some()),
        ("snapshot_interval", p.snapshot_interval_opt.is_some()),
        ("volume_labels", !p.volume_labels.is_empty()),
        ("passphrase", p.passphrase_opt.is_some()),
        ("scale", p.scale_opt.is_some()),
        ("group", p.group_opt.is_some()),
        ("queue_depth", p.queue_depth_opt.is_some()),
        ("aggregation_level", p.aggregation_level_opt.is_some()),
        ("nodiscard", p.nodiscard_opt.is_some()),
        ("io_strategy", p.io_strategy.is_some()),
        ("export_spec", p.export_spec_opt.is_some()),
        ("scan_policy", p.scan_policy_opt.is_some()),
        ("mount_opt_spec", p.mount_opt.is_some()),
        ("sharedv4_mount_opt_spec", p.sharedv4_mount_opt.is_some()),
        ("proxy_write", p.proxy_write_opt.is_some()),
        ("proxy_spec", p.proxy_spec_opt.is_some()),
        ("fastpath", p.fastpath_opt.is_some()),
        (
            "sharedv4_service_spec",
            p.sharedv4_service_spec_opt.is_some(),
        ),
        ("sharedv4_spec", p.sharedv4_spec_opt.is_some()),
        ("auto_fstrim", p.auto_fstrim_opt.is_some()),
        ("io_throttle", p.io_throttle_opt.is_some()),
    ];
    set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect()
}

/// A storage policy from the wire. `Err` names the `VolumeSpecPolicy` fields custos does not
/// enforce: a policy that set them would be weaker than it reads, so it is refused.
/// `ownership` keeps the whole wire ownership (Create keeps only its ACLs; Update treats it
/// as an ownership edit).
pub fn storage_policy_from_proto(p: &api::SdkStoragePolicy) -> Result<StoragePolicy, String> {
    use api::volume_spec_policy as w;
    let spec = p.policy.clone().unwrap_or_default();
    let unsupported = unsupported_fields(&spec);
    if !unsupported.is_empty() {
        return Err(format!(
            "custos does not enforce the storage policy field(s) {}: remove them from the policy \
             (docs/compatibility.md)",
            unsupported.join(", ")
        ));
    }
    Ok(StoragePolicy {
        name: p.name.clone(),
        spec: SpecPolicy {
            size: spec.size_opt.as_ref().map(|w::SizeOpt::Size(v)| *v),
            size_op: op_from_wire(spec.size_operator),
            ha_level: spec
                .ha_level_opt
                .as_ref()
                .map(|w::HaLevelOpt::HaLevel(v)| *v),
            ha_level_op: op_from_wire(spec.ha_level_operator),
            cos: spec.cos_opt.as_ref().map(|w::CosOpt::Cos(v)| *v),
            io_profile: spec
                .io_profile_opt
                .as_ref()
                .map(|w::IoProfileOpt::IoProfile(v)| *v),
            shared: spec.shared_opt.as_ref().map(|w::SharedOpt::Shared(v)| *v),
            sharedv4: spec
                .sharedv4_opt
                .as_ref()
                .map(|w::Sharedv4Opt::Sharedv4(v)| *v),
            sticky: spec.sticky_opt.as_ref().map(|w::StickyOpt::Sticky(v)| *v),
            journal: spec
                .journal_opt
                .as_ref()
                .map(|w::JournalOpt::Journal(v)| *v),
            encrypted: spec
                .encrypted_opt
                .as_ref()
                .map(|w::EncryptedOpt::Encrypted(v)| *v),
            snapshot_schedule: spec
                .snapshot_schedule_opt
                .as_ref()
                .map(|w::SnapshotScheduleOpt::SnapshotSchedule(v)| v.clone()),
            replica_nodes: spec.replica_set.as_ref().map(|r| r.nodes.clone()),
        },
        force: p.force,
        allow_update: p.allow_update,
        ownership: p.ownership.as_ref().map(|o| {
            let mut own = ownership_from_proto(o);
            own.acls = acls_from_proto(Some(o));
            own
        }),
    })
}

pub fn storage_policy_to_proto(p: &StoragePolicy) -> api::SdkStoragePolicy {
    use api::volume_spec_policy as w;
    let s = &p.spec;
    api::SdkStoragePolicy {
        name: p.name.clone(),
        policy: Some(api::VolumeSpecPolicy {
            size_opt: s.size.map(w::SizeOpt::Size),
            size_operator: op_to_wire(s.size_op),
            ha_level_opt: s.ha_level.map(w::HaLevelOpt::HaLevel),
            ha_level_operator: op_to_wire(s.ha_level_op),
            cos_opt: s.cos.map(w::CosOpt::Cos),
            io_profile_opt: s.io_profile.map(w::IoProfileOpt::IoProfile),
            shared_opt: s.shared.map(w::SharedOpt::Shared),
            sharedv4_opt: s.sharedv4.map(w::Sharedv4Opt::Sharedv4),
            sticky_opt: s.sticky.map(w::StickyOpt::Sticky),
            journal_opt: s.journal.map(w::JournalOpt::Journal),
            encrypted_opt: s.encrypted.map(w::EncryptedOpt::Encrypted),
            snapshot_schedule_opt: s
                .snapshot_schedule
                .clone()
                .map(w::SnapshotScheduleOpt::SnapshotSchedule),
            replica_set: s.replica_nodes.as_ref().map(|n| api::ReplicaSet {
                nodes: n.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        force: p.force,
        allow_update: p.allow_update,
        ownership: p.ownership.as_ref().map(ownership_to_proto),
    }
}
