//! The usage operation of `State::apply`: a storage node's report of the volumes it serves.
//!
//! Like the node operations, the role check (`Op::method`) is the only authorization: a report
//! comes from a cluster member, not from a volume's owner.

use super::nodes::node_not_found;
use super::{Change, Record, RecordKey, State};
use crate::command::{Command, Reply};
use crate::ids::{NodeId, VolumeId};
use crate::rejection::Rejection;
use crate::usage::VolumeUsage;
use std::collections::BTreeMap;

impl State {
    /// `ReportUsage`: replaces what `node` last reported. Each entry of an existing volume is
    /// stored with `reported_ms` set to the command's time; volumes the node reported before and
    /// no longer lists lose its record; ids of volumes that do not exist are stored nowhere and
    /// returned as `ignored` (in id order). An entry equal to the stored one (time included)
    /// writes nothing; a repeated report at a later time rewrites every entry (its time).
    pub(super) fn report_usage(
        &self,
        cmd: &Command,
        node: NodeId,
        volumes: &BTreeMap<VolumeId, VolumeUsage>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if !self.nodes.contains_key(&node) {
            return Err(node_not_found(node));
        }
        let mut ignored = Vec::new();
        for (volume, usage) in volumes {
            if !self.volumes.contains_key(volume) {
                ignored.push(volume.clone());
                continue;
            }
            let usage = VolumeUsage {
                reported_ms: cmd.time_ms,
                ..usage.clone()
            };
            if self.usage.get(&(volume.clone(), node)) != Some(&usage) {
                changes.push(Change::Put(Record::Usage {
                    volume: volume.clone(),
                    node,
                    usage,
                }));
            }
        }
        for (volume, _) in self.usage.keys().filter(|(v, n)| {
            *n == node && !(volumes.contains_key(v) && self.volumes.contains_key(v))
        }) {
            changes.push(Change::Delete(RecordKey::Usage(volume.clone(), node)));
        }
        Ok(Reply::UsageRecorded { ignored })
    }

    /// The usage records of a volume, every reporting node's: deleted with the volume.
    pub(super) fn delete_usage_of(&self, volume: &VolumeId, changes: &mut Vec<Change>) {
        for (v, n) in self.usage_range(volume).map(|(k, _)| k) {
            changes.push(Change::Delete(RecordKey::Usage(v.clone(), *n)));
        }
    }

    /// The usage entries of one volume, in node id order.
    pub(super) fn usage_range<'a>(
        &'a self,
        volume: &VolumeId,
    ) -> impl Iterator<Item = (&'a (VolumeId, NodeId), &'a VolumeUsage)> + 'a {
        self.usage
            .range((volume.clone(), NodeId(0))..=(volume.clone(), NodeId(u64::MAX)))
    }

    /// A volume's usage aggregated over the nodes that report it: `bytes_used` and
    /// `reported_ms` are the maximum, the counters the sum. `None` when no node reports it.
    pub fn volume_usage(&self, id: &VolumeId) -> Option<VolumeUsage> {
        let mut entries = self.usage_range(id).map(|(_, u)| u);
        let mut total = entries.next()?.clone();
        for u in entries {
            total.merge(u);
        }
        Some(total)
    }

    /// What `node` last reported (of volumes that exist), in volume id order.
    pub fn node_usage(&self, node: NodeId) -> Vec<(VolumeId, VolumeUsage)> {
        self.usage
            .iter()
            .filter(|((_, n), _)| *n == node)
            .map(|((v, _), u)| (v.clone(), u.clone()))
            .collect()
    }
}
