//! Schedule policies (`OpenStorageSchedulePolicy`) and storage policies (`OpenStoragePolicy`): the records, their validation and how a storage policy shapes a volume spec.
//!
//! Upstream keeps both in kvdb (`api/server/sdk/schedule_policy.go`,
//! `pkg/storagepolicy/sdkstoragepolicy.go`); custos replicates them and decides every change in
//! apply (`state/policies.rs`). Messages follow upstream's texts.

use crate::ownership::Ownership;
use crate::rejection::Rejection;
use crate::volume::VolumeSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Upstream's bounds for schedule intervals (`api/server/sdk/utils.go`).
/// Schedule policies the cluster keeps, at most (a create past it: RESOURCE_EXHAUSTED).
pub const MAX_SCHEDULE_POLICIES: usize = 10_000;
/// Storage policies the cluster keeps, at most.
pub const MAX_STORAGE_POLICIES: usize = 10_000;
/// Schedules in one schedule policy, at most (INVALID_ARGUMENT past it).
pub const MAX_SCHEDULES: usize = 64;
const MAX_MONTH_DAY: i32 = 28;
const MAX_HOUR: i32 = 23;
const MAX_MINUTE: i32 = 59;

/// Characters a schedule policy name cannot hold: a volume keeps its policy names in its
/// schedule string (`policy=a,b;...`), which these would corrupt.
const SCHEDULE_NAME_FORBIDDEN: &[char] = &[',', ';', '='];

/// When a schedule interval fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulePeriod {
    Daily {
        hour: i32,
        minute: i32,
    },
    /// `day`: the SDK's `SdkTimeWeekday` (0 = Sunday .. 6 = Saturday).
    Weekly {
        day: i32,
        hour: i32,
        minute: i32,
    },
    /// `day`: 1..=28.
    Monthly {
        day: i32,
        hour: i32,
        minute: i32,
    },
    Periodic {
        seconds: i64,
    },
}

/// One interval of a schedule policy: when, and how many snapshots to keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInterval {
    pub retain: i64,
    /// `None`: the request named no period (refused by validation).
    pub period: Option<SchedulePeriod>,
}

/// A named snapshot schedule (`SdkSchedulePolicy`). No ownership: upstream has none; the role
/// check (service `schedulepolicy`) is the whole authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePolicy {
    pub name: String,
    pub schedules: Vec<ScheduleInterval>,
}

impl SchedulePolicy {
    /// Upstream's checks, in its order. `update` picks Update's text for a missing schedule
    /// (Create's says "Must a supply Schedule", sic).
    pub fn validate(&self, update: bool) -> Result<(), Rejection> {
        if self.name.is_empty() {
            return Err(Rejection::invalid("Must supply Schedule name"));
        }
        if self.schedules.is_empty() {
            return Err(Rejection::invalid(if update {
                "Must supply Schedule"
            } else {
                "Must a supply Schedule"
            }));
        }
        if self.schedules.len() > MAX_SCHEDULES {
            return Err(Rejection::invalid(format!(
                "A schedule policy holds at most {MAX_SCHEDULES} schedules ({} given)",
                self.schedules.len()
            )));
        }
        if self.schedules.iter().any(|s| s.retain < 1) {
            return Err(Rejection::invalid("Must retain more than 0"));
        }
        for s in &self.schedules {
            s.validate()?;
        }
        if let Some(c) = self
            .name
            .chars()
            .find(|c| SCHEDULE_NAME_FORBIDDEN.contains(c) || c.is_control())
        {
            return Err(Rejection::invalid(format!(
                "Schedule policy name {:?} cannot contain {c:?}: volumes list their policy \
                 names in their snapshot schedule, separated by ',' and ';'",
                self.name
            )));
        }
        Ok(())
    }
}

impl ScheduleInterval {
    fn validate(&self) -> Result<(), Rejection> {
        let hour_minute = |hour: i32, minute: i32| {
            // DELIBERATE FIX: upstream bounds the hour by 28 (its day limit); custos by 23.
            if !(0..=MAX_HOUR).contains(&hour) {
                return Err(Rejection::invalid(format!("Invalid hour value: {hour}")));
            }
            if !(0..=MAX_MINUTE).contains(&minute) {
                return Err(Rejection::invalid(format!(
                    "Invalid minute value: {minute}"
                )));
            }
            Ok(())
        };
        match &self.period {
            None => Err(Rejection::invalid("Invalid schedule period type")),
            Some(SchedulePeriod::Daily { hour, minute }) => hour_minute(*hour, *minute),
            Some(SchedulePeriod::Weekly { day, hour, minute }) => {
                if !(0..=6).contains(day) {
                    return Err(Rejection::invalid(format!("Invalid weekday value: {day}")));
                }
                hour_minute(*hour, *minute)
            }
            Some(SchedulePeriod::Monthly { day, hour, minute }) => {
                if !(1..=MAX_MONTH_DAY).contains(day) {
                    return Err(Rejection::invalid(format!("Invalid day value: {day}")));
                }
                hour_minute(*hour, *minute)
            }
            // DELIBERATE FIX: upstream accepts any period; a period under a second never ends.
            Some(SchedulePeriod::Periodic { seconds }) if *seconds < 1 => Err(Rejection::invalid(
                format!("Invalid period value: {seconds} seconds (at least 1)"),
            )),
            Some(SchedulePeriod::Periodic { .. }) => Ok(()),
        }
    }
}

impl fmt::Display for ScheduleInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.period {
            None => write!(f, "none")?,
            Some(SchedulePeriod::Daily { hour, minute }) => {
                write!(f, "daily@{hour:02}:{minute:02}")?
            }
            Some(SchedulePeriod::Weekly { day, hour, minute }) => {
                write!(f, "weekly@{day}/{hour:02}:{minute:02}")?
            }
            Some(SchedulePeriod::Monthly { day, hour, minute }) => {
                write!(f, "monthly@{day}/{hour:02}:{minute:02}")?
            }
            Some(SchedulePeriod::Periodic { seconds }) => write!(f, "periodic@{seconds}s")?,
        }
        write!(f, ",keep={}", self.retain)
    }
}

/// How a size-like value of a policy binds a volume's (`VolumeSpecPolicy.PolicyOp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyOp {
    #[default]
    Equal,
    Minimum,
    Maximum,
}

impl PolicyOp {
    /// Does `specified` satisfy the policy value `policy` (upstream `validateMinMaxParams`)?
    fn holds(self, policy: u64, specified: u64) -> bool {
        match self {
            PolicyOp::Equal => specified == policy,
            PolicyOp::Minimum => specified >= policy,
            PolicyOp::Maximum => specified <= policy,
        }
    }
}

/// The parts of a `VolumeSpecPolicy` custos enforces; `None` is "not set". The server refuses
/// a policy that sets any other field, so no stored policy is weaker than it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecPolicy {
    pub size: Option<u64>,
    pub size_op: PolicyOp,
    pub ha_level: Option<i64>,
    pub ha_level_op: PolicyOp,
    pub cos: Option<i32>,
    pub io_profile: Option<i32>,
    pub shared: Option<bool>,
    pub sharedv4: Option<bool>,
    pub sticky: Option<bool>,
    pub journal: Option<bool>,
    pub encrypted: Option<bool>,
    pub snapshot_schedule: Option<String>,
    /// `replica_set.nodes`.
    pub replica_nodes: Option<Vec<String>>,
}

impl fmt::Display for SpecPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let op = |o: PolicyOp| match o {
            PolicyOp::Equal => "=",
            PolicyOp::Minimum => ">=",
            PolicyOp::Maximum => "<=",
        };
        if let Some(v) = self.size {
            parts.push(format!("size{}{v}", op(self.size_op)));
        }
        if let Some(v) = self.ha_level {
            parts.push(format!("ha_level{}{v}", op(self.ha_level_op)));
        }
        let mut eq = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        };
        eq("cos", self.cos.map(|v| v.to_string()));
        eq("io_profile", self.io_profile.map(|v| v.to_string()));
        eq("shared", self.shared.map(|v| v.to_string()));
        eq("sharedv4", self.sharedv4.map(|v| v.to_string()));
        eq("sticky", self.sticky.map(|v| v.to_string()));
        eq("journal", self.journal.map(|v| v.to_string()));
        eq("encrypted", self.encrypted.map(|v| v.to_string()));
        eq("snapshot_schedule", self.snapshot_schedule.clone());
        eq(
            "replica_nodes",
            self.replica_nodes.as_ref().map(|n| n.join(",")),
        );
        if parts.is_empty() {
            return write!(f, "(none)");
        }
        write!(f, "{}", parts.join(" "))
    }
}

/// A storage policy (`SdkStoragePolicy`): a volume spec template a create can name, or that an
/// administrator makes the default. Ownership-checked like a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePolicy {
    pub name: String,
    pub spec: SpecPolicy,
    /// The volume's values must already agree with the policy (refused otherwise); without it
    /// the policy's values replace the volume's.
    pub force: bool,
    /// Upstream lets volume updates through unchanged for such a policy (custos enforces
    /// policies on create only; the flag is kept and returned).
    pub allow_update: bool,
    /// `None`: public (a guest's policy, as a guest's volume).
    pub ownership: Option<Ownership>,
}

impl StoragePolicy {
    /// `spec` shaped by this policy (upstream `mergeVolumeSpecsPolicy`): each value the policy
    /// sets replaces the spec's, or, with `force`, must already be the spec's (else "Storage
    /// Policy Violation"). Size and HA level follow their operator: a spec value that satisfies
    /// it stays. The spec records the policy's name.
    pub fn shape(&self, spec: &VolumeSpec) -> Result<VolumeSpec, Rejection> {
        let p = &self.spec;
        let mut out = spec.clone();
        let violation = || {
            Rejection::invalid(format!(
                "Storage Policy Violation, valid specs are : {p} (policy {})",
                self.name
            ))
        };
        fn set<T: PartialEq + Clone>(
            force: bool,
            want: &Option<T>,
            have: &mut T,
            violation: &dyn Fn() -> Rejection,
        ) -> Result<(), Rejection> {
            if let Some(w) = want {
                if force && have != w {
                    return Err(violation());
                }
                *have = w.clone();
            }
            Ok(())
        }
        set(self.force, &p.shared, &mut out.shared, &violation)?;
        set(self.force, &p.sharedv4, &mut out.sharedv4, &violation)?;
        set(self.force, &p.sticky, &mut out.sticky, &violation)?;
        set(self.force, &p.journal, &mut out.journal, &violation)?;
        set(self.force, &p.encrypted, &mut out.encrypted, &violation)?;
        set(self.force, &p.cos, &mut out.cos, &violation)?;
        set(self.force, &p.io_profile, &mut out.io_profile, &violation)?;
        set(
            self.force,
            &p.replica_nodes,
            &mut out.replica_nodes,
            &violation,
        )?;
        set(
            self.force,
            &p.snapshot_schedule,
            &mut out.snapshot_schedule,
            &violation,
        )?;
        if let Some(size) = p.size {
            if !p.size_op.holds(size, out.size) {
                if self.force {
                    return Err(violation());
                }
                out.size = size;
            }
        }
        if let Some(ha) = p.ha_level {
            let have = u64::try_from(out.ha_level).unwrap_or(0);
            if !p.ha_level_op.holds(u64::try_from(ha).unwrap_or(0), have) {
                if self.force {
                    return Err(violation());
                }
                out.ha_level = ha;
            }
        }
        out.storage_policy = self.name.clone();
        Ok(out)
    }
}

impl fmt::Display for StoragePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.spec)?;
        if self.force {
            write!(f, " force")?;
        }
        if self.allow_update {
            write!(f, " allow_update")?;
        }
        match &self.ownership {
            None => write!(f, " owner=(none)"),
            Some(o) => write!(f, " owner={:?}", o.owner),
        }
    }
}
