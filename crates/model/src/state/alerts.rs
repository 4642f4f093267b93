//! The alert operations of `State::apply` (raise, clear, delete, retention) and the alert reads.

use super::{Change, Record, RecordKey, State};
use crate::alert::{self, Alert, AlertQuery, AlertRaise, MAX_ALERTS, MAX_RAISE};
use crate::command::{Command, Reply};
use crate::rejection::Rejection;
use std::collections::BTreeMap;

/// The alerts by id, and the next id to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AlertBook {
    pub(super) by_id: BTreeMap<u64, Alert>,
    pub(super) next_id: u64,
}

impl Default for AlertBook {
    fn default() -> Self {
        AlertBook {
            by_id: BTreeMap::new(),
            next_id: 1,
        }
    }
}

impl State {
    /// The alerts any query matches, in id order (oldest first).
    pub fn matching_alerts<'a>(
        &'a self,
        queries: &'a [AlertQuery],
    ) -> impl Iterator<Item = &'a Alert> + 'a {
        self.alerts
            .by_id
            .values()
            .filter(move |a| alert::any_matches(queries, a))
    }

    /// Every alert, in id order.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.by_id.values()
    }

    /// `Op::RaiseAlerts` (and the alerts other operations raise): each raise updates the
    /// stored alert with the same resource, type, resource id and tag, or adds one; a clear
    /// marks the stored one cleared. Past [`MAX_ALERTS`], the oldest are dropped.
    pub(super) fn raise_alerts(
        &self,
        cmd: &Command,
        raises: &[AlertRaise],
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if raises.is_empty() || raises.len() > MAX_RAISE {
            return Err(Rejection::invalid(format!(
                "An alert report holds 1 to {MAX_RAISE} alerts"
            )));
        }
        // The alerts as this command leaves them (later raises see earlier ones).
        let mut touched: BTreeMap<u64, Alert> = BTreeMap::new();
        let mut next_id = self.alerts.next_id;
        let mut ids = Vec::new();
        for r in raises {
            let same = |a: &Alert| {
                a.resource == r.resource
                    && a.alert_type == r.alert_type
                    && a.resource_id == r.resource_id
                    && a.unique_tag == r.unique_tag
            };
            let existing = touched
                .values()
                .find(|a| same(a))
                .or_else(|| self.alerts.by_id.values().find(|a| same(a)))
                .cloned();
            let alert = match (existing, r.clear) {
                (Some(a), true) if a.cleared => continue,
                (None, true) => continue,
                (Some(mut a), true) => {
                    a.cleared = true;
                    a.time_ms = cmd.time_ms;
                    a.message = r.message.clone();
                    a
                }
                (Some(mut a), false) => {
                    a.count = a.count.saturating_add(1);
                    a.cleared = false;
                    a.time_ms = cmd.time_ms;
                    a.severity = r.severity;
                    a.message = r.message.clone();
                    a
                }
                (None, false) => {
                    let id = next_id;
                    next_id += 1;
                    Alert {
                        id,
                        severity: r.severity,
                        alert_type: r.alert_type,
                        message: r.message.clone(),
                        time_ms: cmd.time_ms,
                        resource: r.resource,
                        resource_id: r.resource_id.clone(),
                        cleared: false,
                        ttl: 0,
                        unique_tag: r.unique_tag.clone(),
                        count: 1,
                        first_seen_ms: cmd.time_ms,
                    }
                }
            };
            ids.push(alert.id);
            touched.insert(alert.id, alert);
        }
        let kept_new = touched
            .keys()
            .filter(|id| !self.alerts.by_id.contains_key(id))
            .count();
        let touched_ids: Vec<u64> = touched.keys().copied().collect();
        for a in touched.into_values() {
            changes.push(Change::Put(Record::Alert(a)));
        }
        if next_id != self.alerts.next_id {
            changes.push(Change::Put(Record::AlertNextId(next_id)));
        }
        // Retention: the oldest go once the total passes the bound.
        let total = self.alerts.by_id.len() + kept_new;
        let excess = total.saturating_sub(MAX_ALERTS);
        let oldest = self
            .alerts
            .by_id
            .keys()
            .filter(|id| !touched_ids.contains(id));
        for id in oldest.take(excess) {
            changes.push(Change::Delete(RecordKey::Alert(*id)));
        }
        Ok(Reply::AlertsRaised { ids })
    }

    /// `Alerts.Delete`: removes every alert a query matches.
    pub(super) fn delete_alerts(
        &self,
        queries: &[AlertQuery],
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if queries.is_empty() {
            return Err(Rejection::invalid(alert::MUST_PROVIDE_QUERY));
        }
        let ids: Vec<u64> = self.matching_alerts(queries).map(|a| a.id).collect();
        for id in &ids {
            changes.push(Change::Delete(RecordKey::Alert(*id)));
        }
        Ok(Reply::AlertsDeleted { ids })
    }
}

#[cfg(test)]
mod tests {
    use crate::alert::{AlertRaise, ResourceKind, Severity, MAX_ALERTS};
    use crate::command::{Command, Op, Outcome};
    use crate::identity::Identity;
    use crate::ids::{NodeId, RequestId};
    use crate::state::State;

    #[test]
    fn retention_keeps_the_newest_alerts() {
        let mut state = State::new();
        let total = MAX_ALERTS + 70;
        for batch in 0..total.div_ceil(50) {
            let alerts = (batch * 50..((batch + 1) * 50).min(total))
                .map(|i| AlertRaise {
                    severity: Severity::Notify,
                    alert_type: 1,
                    resource: ResourceKind::Node,
                    resource_id: i.to_string(),
                    message: format!("alert {i}"),
                    unique_tag: String::new(),
                    clear: false,
                })
                .collect();
            let applied = state.apply(&Command {
                request_id: RequestId(format!("r{batch}")),
                identity: Identity::internal_admin("test"),
                time_ms: 1000,
                origin: NodeId(1),
                op: Op::RaiseAlerts { alerts },
            });
            assert!(matches!(applied.outcome, Outcome::Applied(_)));
        }
        let ids: Vec<u64> = state.alerts().map(|a| a.id).collect();
        assert_eq!(ids.len(), MAX_ALERTS);
        assert_eq!(ids[0], 71, "the oldest 70 went");
        assert_eq!(*ids.last().unwrap(), total as u64);
        let restored = State::from_records(state.records());
        assert_eq!(restored, state);
    }
}
