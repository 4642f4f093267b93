//! Alerts (`OpenStorageAlerts`): the records custos raises about itself, and upstream's query filters.
//!
//! custos raises alerts through Raft (the leader's duties propose `Op::RaiseAlerts`; apply of
//! `Op::ReplaceReplicas` raises its own), so every member lists the same alerts. Their number
//! is bounded ([`MAX_ALERTS`]): the oldest go first.

use serde::{Deserialize, Serialize};

/// The most alerts the cluster keeps; past it, apply drops the oldest (lowest id).
pub const MAX_ALERTS: usize = 1_000;

/// The most alerts one `Op::RaiseAlerts` may carry.
pub const MAX_RAISE: usize = 64;

/// `SeverityType`: ALARM is the most severe (1), NOTIFY the least (3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    None,
    Alarm,
    Warning,
    Notify,
}

impl Severity {
    /// The `SeverityType` enum number.
    pub fn number(self) -> i32 {
        match self {
            Severity::None => 0,
            Severity::Alarm => 1,
            Severity::Warning => 2,
            Severity::Notify => 3,
        }
    }

    pub fn from_number(n: i32) -> Severity {
        match n {
            1 => Severity::Alarm,
            2 => Severity::Warning,
            3 => Severity::Notify,
            _ => Severity::None,
        }
    }
}

/// `ResourceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceKind {
    None,
    Volume,
    Node,
    Cluster,
    Drive,
    Pool,
}

impl ResourceKind {
    /// The `ResourceType` enum number.
    pub fn number(self) -> i32 {
        match self {
            ResourceKind::None => 0,
            ResourceKind::Volume => 1,
            ResourceKind::Node => 2,
            ResourceKind::Cluster => 3,
            ResourceKind::Drive => 4,
            ResourceKind::Pool => 5,
        }
    }

    pub fn from_number(n: i32) -> ResourceKind {
        match n {
            1 => ResourceKind::Volume,
            2 => ResourceKind::Node,
            3 => ResourceKind::Cluster,
            4 => ResourceKind::Drive,
            5 => ResourceKind::Pool,
            _ => ResourceKind::None,
        }
    }
}

/// The alert types custos raises (`Alert.alert_type`; upstream leaves the numbers to drivers).
pub mod types {
    /// A member stopped answering its peers (resource: the node; cleared when it is back).
    pub const MEMBER_DOWN: i64 = 1;
    /// A volume's replicas were re-placed off a down member (resource: the volume).
    pub const REPLICAS_REPLACED: i64 = 2;
    /// A volume's replicas could not all be re-placed (resource: the volume).
    pub const REPLICAS_STUCK: i64 = 3;
    /// A member's audit chain disagrees with the leader's (resource: the node).
    pub const AUDIT_CHAIN_MISMATCH: i64 = 4;
    /// A member's TLS certificate expires soon (resource: the node).
    pub const CERTIFICATE_EXPIRING: i64 = 5;
}

/// A stored alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub severity: Severity,
    pub alert_type: i64,
    pub message: String,
    /// When it was last raised (or cleared), ms since the epoch.
    pub time_ms: u64,
    pub resource: ResourceKind,
    pub resource_id: String,
    pub cleared: bool,
    pub ttl: u64,
    pub unique_tag: String,
    /// How many times it was raised.
    pub count: i64,
    pub first_seen_ms: u64,
}

/// One alert to raise (or clear), as the leader proposes it. An alert with the same resource,
/// type, resource id and tag as a stored one updates that one (count, time, message) instead
/// of adding another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRaise {
    pub severity: Severity,
    pub alert_type: i64,
    pub resource: ResourceKind,
    pub resource_id: String,
    pub message: String,
    pub unique_tag: String,
    /// Clears the matching stored alert (nothing happens if there is none or it is cleared).
    pub clear: bool,
}

/// `SdkAlertsQuery`'s `query` oneof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertSelector {
    ResourceType(ResourceKind),
    AlertType(ResourceKind, i64),
    ResourceId(ResourceKind, i64, String),
}

/// `SdkAlertsOption`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertOption {
    /// Alerts at least this severe (`NONE`: all).
    MinSeverity(Severity),
    Cleared(bool),
    /// Raised between these times, seconds since the epoch, inclusive.
    TimeSpan {
        start_s: i64,
        end_s: i64,
    },
    CountSpan {
        min: i64,
        max: i64,
    },
}

/// `SdkAlertsQuery`: a selector and options that must all hold. A query without a selector
/// (upstream ignores it) matches nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertQuery {
    pub selector: Option<AlertSelector>,
    pub options: Vec<AlertOption>,
}

impl AlertOption {
    fn matches(&self, a: &Alert) -> bool {
        match self {
            AlertOption::MinSeverity(Severity::None) => true,
            AlertOption::MinSeverity(min) => a.severity != Severity::None && a.severity <= *min,
            AlertOption::Cleared(c) => a.cleared == *c,
            AlertOption::TimeSpan { start_s, end_s } => {
                let at = (a.time_ms / 1000) as i64;
                at >= *start_s && at <= *end_s
            }
            AlertOption::CountSpan { min, max } => a.count >= *min && a.count <= *max,
        }
    }
}

impl AlertQuery {
    /// Upstream's filter match: the selector's fields equal, then every option.
    pub fn matches(&self, a: &Alert) -> bool {
        let selected = match &self.selector {
            None => false,
            Some(AlertSelector::ResourceType(r)) => a.resource == *r,
            Some(AlertSelector::AlertType(r, t)) => a.resource == *r && a.alert_type == *t,
            Some(AlertSelector::ResourceId(r, t, id)) => {
                a.resource == *r && a.alert_type == *t && a.resource_id == *id
            }
        };
        selected && self.options.iter().all(|o| o.matches(a))
    }
}

/// Does any query match (upstream: an alert is listed when at least one filter matches)?
pub fn any_matches(queries: &[AlertQuery], a: &Alert) -> bool {
    queries.iter().any(|q| q.matches(a))
}

/// Upstream's refusal of a request without queries.
pub const MUST_PROVIDE_QUERY: &str = "Must provide at least one query";

/// The alerts a re-placement off `node` raises: one for the volumes moved, one for those that
/// could not move (none when nothing was to move).
pub fn replacement_alerts(
    node: crate::ids::NodeId,
    moved: &[crate::placement::ReplicaMove],
    stuck: &[crate::placement::StuckReplica],
) -> Vec<AlertRaise> {
    let list = |ids: Vec<String>| {
        let shown: Vec<&str> = ids.iter().take(8).map(String::as_str).collect();
        let more = ids.len().saturating_sub(shown.len());
        if more == 0 {
            shown.join(", ")
        } else {
            format!("{} and {more} more", shown.join(", "))
        }
    };
    let mut out = Vec::new();
    if !moved.is_empty() {
        let mut vols: Vec<String> = moved.iter().map(|m| m.volume.to_string()).collect();
        vols.dedup();
        out.push(AlertRaise {
            severity: Severity::Warning,
            alert_type: types::REPLICAS_REPLACED,
            resource: ResourceKind::Node,
            resource_id: node.to_string(),
            message: format!(
                "Replicas of {} volume(s) re-placed off down member {node}: {}",
                vols.len(),
                list(vols.clone())
            ),
            unique_tag: String::new(),
            clear: false,
        });
    }
    if !stuck.is_empty() {
        let vols: Vec<String> = stuck.iter().map(|s| s.volume.to_string()).collect();
        out.push(AlertRaise {
            severity: Severity::Alarm,
            alert_type: types::REPLICAS_STUCK,
            resource: ResourceKind::Node,
            resource_id: node.to_string(),
            message: format!(
                "Replicas of {} volume(s) on down member {node} could not be re-placed: {}",
                vols.len(),
                list(vols.clone())
            ),
            unique_tag: String::new(),
            clear: false,
        });
    }
    out
}
