//! The checks after a chaos run has healed: members converge (applied index, audit chain head,
//! a state hash computed from each member's own state), every acknowledged mutation has
//! exactly one audit record (none lost, none doubled), refused mutations have their refusal's
//! record and no other, and, replayed in the audit trail's order, no mutation applied after
//! the commit of a role or ACL change that denies it (the stale-permission check).

use crate::history::{AuditResolution, OpRecord};
use crate::spec::{self, AclSpec, Input, Level, Names, Outcome, Own, Principal, Rules};
use custos_client::model::audit::{AuditQuery, AuditRecord};
use custos_client::Client;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// One member's view after healing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MemberState {
    pub node: u64,
    pub applied_index: u64,
    pub audit_last_seq: u64,
    pub audit_last_hash: String,
    pub audit_chain_ok: bool,
    /// A hash of the member's roles and volumes (read locally, `serializable`).
    pub state_hash: String,
    pub volumes: usize,
    pub roles: usize,
}

/// A canonical text of one member's roles and volumes, read from its own state.
async fn state_text(client: &Client) -> Result<(String, usize, usize), String> {
    let client = client.clone().with_serializable_reads();
    let mut ids = client
        .enumerate_volumes()
        .await
        .map_err(|e| e.to_string())?;
    ids.sort();
    let mut text = String::new();
    for id in &ids {
        let v = client.inspect_volume(id).await.map_err(|e| e.to_string())?;
        // Everything but liveness-derived status, which is each member's own view.
        text += &format!("{v:?}\n");
    }
    let mut roles = client.enumerate_roles().await.map_err(|e| e.to_string())?;
    roles.sort();
    for r in &roles {
        let role = client.inspect_role(r).await.map_err(|e| e.to_string())?;
        text += &format!("{role:?}\n");
    }
    Ok((text, ids.len(), roles.len()))
}

fn hash_text(text: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Reads every member's state until all agree (or `timeout` passes): the last reading.
pub async fn converge(clients: &[(u64, Client)], timeout: Duration) -> (bool, Vec<MemberState>) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut states = Vec::new();
        let mut complete = true;
        for (node, c) in clients {
            let status = c.status().await;
            let verify = c.audit_verify(0).await;
            let text = state_text(c).await;
            match (status, verify, text) {
                (Ok(s), Ok(v), Ok((text, volumes, roles))) => states.push(MemberState {
                    node: *node,
                    applied_index: s.applied_index,
                    audit_last_seq: v.last_seq,
                    audit_last_hash: v.last_hash.clone(),
                    audit_chain_ok: v.ok,
                    state_hash: hash_text(&text),
                    volumes,
                    roles,
                }),
                _ => complete = false,
            }
        }
        let agree = complete
            && states.windows(2).all(|w| {
                w[0].applied_index == w[1].applied_index
                    && w[0].audit_last_seq == w[1].audit_last_seq
                    && w[0].audit_last_hash == w[1].audit_last_hash
                    && w[0].state_hash == w[1].state_hash
            })
            && states.iter().all(|s| s.audit_chain_ok);
        if agree || Instant::now() > deadline {
            return (agree, states);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The whole audit trail, in order, from the member `client` answers with.
pub async fn audit_trail(client: &Client) -> Result<Vec<AuditRecord>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100_000 {
        let page = client
            .audit_list(&AuditQuery::default(), token.as_deref(), 1000, false)
            .await
            .map_err(|e| e.to_string())?;
        out.extend(page.records);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
    Err("the audit trail did not end".into())
}

/// What the audit trail says about the history.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditFindings {
    pub records: usize,
    /// Acknowledged mutations.
    pub acknowledged: usize,
    /// Acknowledged mutations without an applied record: lost.
    pub lost: Vec<String>,
    /// Operations with more than one record: applied twice.
    pub duplicated: Vec<String>,
    /// Refused mutations whose record says otherwise (applied, or another code).
    pub refused_mismatch: Vec<String>,
    /// Operations whose outcome was unknown, by what the trail says happened.
    pub unknown_applied: usize,
    pub unknown_refused: usize,
    pub unknown_absent: usize,
    /// Role refusals that followed an attempt without answer, and how many of those the
    /// trail shows applied (by the earlier attempt: then the operation is checked as applied).
    pub refused_after_unanswered: usize,
    pub refused_after_unanswered_applied: usize,
    /// Records of the workload's request ids that no operation of the history made.
    pub phantoms: Vec<String>,
    /// Mutations applied although a role or ACL change committed before them denied them.
    pub stale_permission: Vec<String>,
    /// Role refusals decided in apply that the rules at their log index did not call for.
    pub false_denials: Vec<String>,
    /// Role changes (revocations and grants) replayed.
    pub role_changes: usize,
    /// Role refusals decided in apply that the replay checked.
    pub role_refusals_replayed: usize,
    /// Mutations whose permission the replay decided.
    pub replayed: usize,
}

impl AuditFindings {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.refused_mismatch.is_empty()
            && self.phantoms.is_empty()
            && self.stale_permission.is_empty()
            && self.false_denials.is_empty()
    }
}

/// The client request id in a record's (scoped) request id: `issuer/username/<id>`.
fn client_id<'a>(record: &'a AuditRecord, tag: &str) -> Option<&'a str> {
    let id = record.request_id.rsplit('/').next()?;
    id.starts_with(tag).then_some(id)
}

fn describe(op: &OpRecord) -> String {
    serde_json::to_string(op).unwrap_or_default()
}

/// Checks the trail against the history; `tag` prefixes every request id of the workload.
pub fn audit_findings(trail: &[AuditRecord], history: &[OpRecord], tag: &str) -> AuditFindings {
    let mut f = AuditFindings {
        records: trail.len(),
        ..Default::default()
    };
    let mut by_id: HashMap<&str, Vec<&AuditRecord>> = HashMap::new();
    for r in trail.iter().filter(|r| !r.edge) {
        if let Some(id) = client_id(r, tag) {
            by_id.entry(id).or_default().push(r);
        }
    }
    let ops: HashMap<&str, &OpRecord> =
        history.iter().map(|o| (o.request_id.as_str(), o)).collect();
    for id in by_id.keys() {
        if !ops.contains_key(id) {
            f.phantoms.push(id.to_string());
        }
    }
    for op in history.iter().filter(|o| o.input.is_mutation()) {
        let records = by_id
            .get(op.request_id.as_str())
            .cloned()
            .unwrap_or_default();
        if matches!(op.outcome, Outcome::Ok { .. }) {
            f.acknowledged += 1;
        }
        if records.len() > 1 {
            f.duplicated.push(describe(op));
            continue;
        }
        let record = records.first();
        if op.refused_after.is_some() && matches!(op.outcome, Outcome::Refused { .. }) {
            // Two attempts, two possible decisions: the earlier one (no answer) may have
            // been applied or refused in apply with any code; the refusal received may have
            // been decided at the edge without a record.
            f.refused_after_unanswered += 1;
            if record.is_some_and(|r| r.code == "OK") {
                f.refused_after_unanswered_applied += 1;
            }
            continue;
        }
        match &op.outcome {
            Outcome::Ok { .. } => {
                if record.is_none_or(|r| r.code != "OK") {
                    f.lost.push(describe(op));
                }
            }
            Outcome::Refused { code, role, .. } => match record {
                // A role refusal at the edge is never proposed (its denial is reported in a
                // coalesced edge record); one refused in apply has its record.
                None if *role => {}
                Some(r) if r.code == *code => {}
                _ => f.refused_mismatch.push(describe(op)),
            },
            Outcome::Unknown { .. } => match record {
                None => f.unknown_absent += 1,
                Some(r) if r.code == "OK" => f.unknown_applied += 1,
                Some(_) => f.unknown_refused += 1,
            },
        }
    }
    replay_permissions(trail, &ops, tag, &mut f);
    f
}

/// Sets the outcome of every mutation without answer from the trail (see
/// [`AuditResolution`]), and of every role refusal after an attempt without answer whose
/// request id the trail shows applied (else that refusal stands); returns how many were
/// resolved. Needs the whole trail (dense from record 1): without it nothing is resolved.
pub fn resolve_unknowns(records: &mut [OpRecord], trail: &[AuditRecord], tag: &str) -> usize {
    let dense = trail.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1);
    if !dense {
        return 0;
    }
    let mut by_id: HashMap<&str, Vec<&AuditRecord>> = HashMap::new();
    for r in trail.iter().filter(|r| !r.edge) {
        if let Some(id) = client_id(r, tag) {
            by_id.entry(id).or_default().push(r);
        }
    }
    let mut resolved = 0;
    for op in records.iter_mut() {
        if !op.input.is_mutation() {
            continue;
        }
        let found = by_id.get(op.request_id.as_str()).map(Vec::as_slice);
        let refused_after = op.refused_after.is_some()
            && matches!(op.outcome, Outcome::Refused { .. })
            && matches!(found, Some([r]) if r.code == "OK");
        if !refused_after && !matches!(op.outcome, Outcome::Unknown { .. }) {
            continue;
        }
        match found {
            None => op.audit = Some(AuditResolution::Absent),
            Some([r]) if r.code == "OK" => {
                let observed = match op.input {
                    Input::Create { .. } | Input::Clone { .. } | Input::Snapshot { .. } => {
                        match r.objects.first() {
                            Some(id) => spec::Observed::Id { id: id.clone() },
                            None => continue,
                        }
                    }
                    _ => spec::Observed::Done,
                };
                op.outcome = Outcome::Ok { observed };
                op.audit = Some(AuditResolution::Applied);
            }
            Some([r]) => {
                op.outcome = Outcome::Refused {
                    code: r.code.clone(),
                    message: r.reason.clone(),
                    // Apply's own role refusals are recorded as "Access denied".
                    role: r.message == "Access denied",
                };
                op.audit = Some(AuditResolution::Refused);
            }
            Some(_) => continue,
        }
        resolved += 1;
    }
    resolved
}

/// Replays the applied records in trail order, tracking each tenant role's rules and each
/// volume's ownership from the history's inputs, and flags every applied mutation that the
/// rules and ownership at that point of the log deny.
fn replay_permissions(
    trail: &[AuditRecord],
    ops: &HashMap<&str, &OpRecord>,
    tag: &str,
    f: &mut AuditFindings,
) {
    // Tenant → (rules, seq of the record that set them).
    let mut roles: HashMap<String, (Option<Rules>, u64)> = HashMap::new();
    // Volume id → ownership.
    let mut owners: HashMap<String, Own> = HashMap::new();
    for r in trail.iter().filter(|r| !r.edge) {
        let Some(id) = client_id(r, tag) else {
            continue;
        };
        let Some(op) = ops.get(id) else {
            continue;
        };
        let names = Names::new(&op.tenant);
        let by = op.input.principal();
        let (rules, since) = roles.get(&op.tenant).copied().unwrap_or((None, 0));
        if r.code != "OK" {
            // Apply's own role refusals ("Access denied", decided at this log index) must
            // agree with the rules the log holds there.
            let volume_write = op.input.is_mutation()
                && !matches!(
                    op.input,
                    Input::CreateRole { .. } | Input::UpdateRole { .. } | Input::DeleteRole
                );
            if volume_write && r.message == "Access denied" {
                f.role_refusals_replayed += 1;
                if spec::may_write_volumes(by, rules) {
                    f.false_denials.push(format!(
                        "audit seq {}: {} — refused by the role check although {} = {rules:?} \
                         (set at audit seq {since}) allows it",
                        r.seq,
                        describe(op),
                        names.role()
                    ));
                }
            }
            continue;
        }
        let target = r.objects.first().cloned().unwrap_or_default();
        let mut deny = |why: String| {
            f.stale_permission
                .push(format!("audit seq {}: {} — {why}", r.seq, describe(op)));
        };
        match &op.input {
            Input::CreateRole { rules: new } => {
                if rules.is_none() {
                    roles.insert(op.tenant.clone(), (Some(*new), r.seq));
                    f.role_changes += 1;
                }
                continue;
            }
            Input::UpdateRole { rules: new, .. } => {
                roles.insert(op.tenant.clone(), (Some(*new), r.seq));
                f.role_changes += 1;
                continue;
            }
            Input::DeleteRole => {
                roles.insert(op.tenant.clone(), (None, r.seq));
                f.role_changes += 1;
                continue;
            }
            Input::ReadVolume { .. } | Input::ReadRole => continue,
            _ => {}
        }
        f.replayed += 1;
        if !spec::may_write_volumes(by, rules) {
            deny(format!(
                "{} may not write under role {} = {rules:?} (set at audit seq {since})",
                names.username(by),
                names.role()
            ));
        }
        let own = owners.get(&target).copied();
        let need = |own: Option<Own>, want: Level| own.is_none_or(|o| spec::can(by, &o, want));
        match &op.input {
            Input::Create { .. } => {
                owners.entry(target).or_insert(if by == Principal::Guest {
                    Own::Public
                } else {
                    Own::Owned(by, AclSpec::default())
                });
            }
            Input::Clone { parent, .. } | Input::Snapshot { parent, .. } => {
                let parent_own = owners.get(parent).copied();
                if !need(parent_own, Level::Read) {
                    deny(format!("no read access to parent {parent}: {parent_own:?}"));
                }
                if let Some(p) = parent_own {
                    let own = match (&op.input, by, p) {
                        (Input::Snapshot { .. }, _, p) => p,
                        (_, Principal::Guest, p) => p,
                        (_, by, Own::Owned(o, acl)) if o == by => Own::Owned(by, acl),
                        (_, by, _) => Own::Owned(by, AclSpec::default()),
                    };
                    owners.entry(target).or_insert(own);
                }
            }
            Input::Delete { .. } => {
                if !need(own, Level::Admin) {
                    deny(format!("no admin access to {target}: {own:?}"));
                }
                owners.remove(&target);
            }
            Input::SetAcl { acl, .. } => {
                let admin = match own {
                    Some(o @ Own::Owned(..)) => spec::can(by, &o, Level::Admin),
                    _ => true,
                };
                if !need(own, Level::Write) || !admin {
                    deny(format!("no right to change the ACLs of {target}: {own:?}"));
                }
                if let Some(o) = own {
                    owners.insert(
                        target,
                        match o {
                            Own::Owned(owner, _) => Own::Owned(owner, *acl),
                            _ => Own::Ownerless(*acl),
                        },
                    );
                }
            }
            Input::SetLabel { .. } | Input::Attach { .. } | Input::Detach { .. }
                if !need(own, Level::Write) =>
            {
                deny(format!("no write access to {target}: {own:?}"));
            }
            _ => {}
        }
    }
}

/// Counts of outcomes per operation kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutcomeCounts {
    pub ok: usize,
    pub refused: usize,
    pub refused_by_role: usize,
    pub unknown: usize,
}

pub fn outcome_counts(history: &[OpRecord]) -> BTreeMap<String, OutcomeCounts> {
    let mut out: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
    for op in history {
        let c = out.entry(op.input.kind().to_string()).or_default();
        match &op.outcome {
            Outcome::Ok { .. } => c.ok += 1,
            Outcome::Refused { role: true, .. } => c.refused_by_role += 1,
            Outcome::Refused { .. } => c.refused += 1,
            Outcome::Unknown { .. } => c.unknown += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Observed, Slot};
    use custos_client::model::audit::{AuditActor, AuditHash, AuditLevel};

    fn op(i: u64, tenant: &str, input: Input, outcome: Outcome) -> OpRecord {
        OpRecord {
            index: i,
            client: 0,
            tenant: tenant.into(),
            request_id: format!("run-{i}"),
            input,
            outcome,
            invoke_ns: i,
            complete_ns: i + 1,
            attempts: vec![],
            unanswered: None,
            refused_after: None,
            audit: None,
        }
    }

    fn record(seq: u64, request: &str, code: &str, objects: &[&str]) -> AuditRecord {
        AuditRecord {
            seq,
            time_ms: 0,
            level: AuditLevel::Info,
            message: String::new(),
            authorized: true,
            actor: AuditActor::default(),
            method: String::new(),
            objects: objects.iter().map(|s| s.to_string()).collect(),
            code: code.into(),
            reason: String::new(),
            request_id: format!("custos-chaos/someone/{request}"),
            origin: custos_client::model::NodeId(1),
            fingerprint: String::new(),
            count: 1,
            edge: false,
            prev_hash: AuditHash::default(),
            hash: AuditHash::default(),
        }
    }

    fn done() -> Outcome {
        Outcome::Ok {
            observed: Observed::Done,
        }
    }

    #[test]
    fn lost_duplicated_and_phantom_records_are_found() {
        let create = Input::Create {
            by: Principal::U1,
            slot: Slot::A,
            label: "x".into(),
        };
        let history = vec![
            op(
                0,
                "t",
                Input::CreateRole {
                    rules: Rules::Grant,
                },
                done(),
            ),
            op(1, "t", create.clone(), done()),
            op(2, "t", create.clone(), done()),
            op(3, "t", create, done()),
        ];
        let trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            record(2, "run-1", "OK", &["v1"]),
            // run-2: no record (lost); run-3 twice; run-9 is nobody's.
            record(3, "run-3", "OK", &["v1"]),
            record(4, "run-3", "OK", &["v1"]),
            record(5, "run-9", "OK", &["v1"]),
        ];
        let f = audit_findings(&trail, &history, "run-");
        assert_eq!(f.acknowledged, 4);
        assert_eq!(f.lost.len(), 1, "{f:?}");
        assert!(f.lost[0].contains("run-2"));
        assert_eq!(f.duplicated.len(), 1);
        assert_eq!(f.phantoms, vec!["run-9".to_string()]);
        assert!(!f.ok());
    }

    #[test]
    fn a_write_applied_after_a_committed_revocation_is_flagged() {
        let set_label = |i| {
            op(
                i,
                "t",
                Input::SetLabel {
                    by: Principal::U1,
                    slot: Slot::A,
                    id: "v1".into(),
                    label: "l".into(),
                },
                done(),
            )
        };
        let history = vec![
            op(
                0,
                "t",
                Input::CreateRole {
                    rules: Rules::Grant,
                },
                done(),
            ),
            op(
                1,
                "t",
                Input::Create {
                    by: Principal::U1,
                    slot: Slot::A,
                    label: "x".into(),
                },
                done(),
            ),
            set_label(2),
            op(
                3,
                "t",
                Input::UpdateRole {
                    by: Principal::Admin,
                    rules: Rules::ReadOnly,
                },
                done(),
            ),
            set_label(4),
        ];
        let mut trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            record(2, "run-1", "OK", &["v1"]),
            record(3, "run-2", "OK", &["v1"]),
            record(4, "run-3", "OK", &["t-writers"]),
            record(5, "run-4", "OK", &["v1"]),
        ];
        let f = audit_findings(&trail, &history, "run-");
        assert_eq!(f.stale_permission.len(), 1, "{f:?}");
        assert!(f.stale_permission[0].starts_with("audit seq 5"));
        assert_eq!(f.role_changes, 2);
        // In the other order of the log, nothing is wrong.
        trail.swap(3, 4);
        trail[3].seq = 4;
        trail[4].seq = 5;
        let f = audit_findings(&trail, &history, "run-");
        assert!(f.stale_permission.is_empty(), "{f:?}");
        assert!(f.ok());
    }

    #[test]
    fn the_trail_settles_operations_without_answer_and_the_check_uses_it() {
        use crate::spec::VolumeView;
        let unknown = || Outcome::Unknown {
            reason: "timeout".into(),
        };
        let create = |i, slot| {
            let mut o = op(
                i,
                "t",
                Input::Create {
                    by: Principal::U3,
                    slot,
                    label: "x".into(),
                },
                unknown(),
            );
            o.unanswered = Some("timeout".into());
            o
        };
        let read = |i, slot, id: Option<&str>| {
            let volumes = id
                .map(|id| VolumeView {
                    id: id.into(),
                    name: slot_name(slot),
                    owner: Some("t-u3".into()),
                    groups: Default::default(),
                    collaborators: Default::default(),
                    public: None,
                    label: Some("x".into()),
                    attached: false,
                    parent: None,
                    snapshot: false,
                })
                .into_iter()
                .collect();
            op(
                i,
                "t",
                Input::ReadVolume {
                    by: Principal::Admin,
                    slot,
                },
                Outcome::Ok {
                    observed: Observed::Volumes { volumes },
                },
            )
        };
        fn slot_name(s: Slot) -> String {
            s.name("t")
        }
        // run-0 applied (as v1), run-1 never reached apply.
        let trail = vec![record(1, "run-0", "OK", &["v1"])];
        let mut history = vec![
            create(0, Slot::A),
            create(1, Slot::B),
            read(2, Slot::A, Some("v1")),
            read(3, Slot::B, None),
        ];
        assert_eq!(resolve_unknowns(&mut history, &trail, "run-"), 2);
        assert_eq!(history[0].audit, Some(AuditResolution::Applied));
        assert_eq!(
            history[0].outcome,
            Outcome::Ok {
                observed: Observed::Id { id: "v1".into() }
            }
        );
        assert_eq!(history[1].audit, Some(AuditResolution::Absent));
        let budget = Duration::from_secs(5);
        assert!(crate::history::check(&history, budget, 1)[0].ok());
        // Had the absent create's volume been seen, the check fails: it never happened.
        history[3] = read(3, Slot::B, Some("v2"));
        assert!(!crate::history::check(&history, budget, 1)[0].ok());
        // The applied create made v1, not another volume (it may still have been applied
        // after the read: without an answer its end is open).
        history[3] = read(3, Slot::B, None);
        history[2] = read(2, Slot::A, Some("v9"));
        assert!(!crate::history::check(&history, budget, 1)[0].ok());
        history[2] = read(2, Slot::A, None);
        assert!(crate::history::check(&history, budget, 1)[0].ok());
        // A trail that does not start at record 1 settles nothing.
        let mut fresh = vec![create(0, Slot::A)];
        assert_eq!(
            resolve_unknowns(&mut fresh, &[record(2, "run-0", "OK", &["v1"])], "run-"),
            0
        );
    }

    #[test]
    fn a_role_refusal_after_an_unanswered_attempt_is_settled_by_the_trail() {
        let role_refused = || Outcome::Refused {
            code: "PermissionDenied".into(),
            message: "Access to ... denied: ... Access denied to roles: [t-writers]".into(),
            role: true,
        };
        let mk = |i, slot: Slot| {
            let mut o = op(
                i,
                "t",
                Input::Create {
                    by: Principal::U1,
                    slot,
                    label: "x".into(),
                },
                role_refused(),
            );
            o.refused_after = Some("timeout".into());
            o
        };
        let history = || {
            vec![
                op(
                    0,
                    "t",
                    Input::CreateRole {
                        rules: Rules::Grant,
                    },
                    done(),
                ),
                mk(1, Slot::A),
                mk(2, Slot::B),
            ]
        };
        // run-1's earlier attempt was applied (as v1); run-2 has no record.
        let trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            record(2, "run-1", "OK", &["v1"]),
        ];
        let mut h = history();
        let f = audit_findings(&trail, &h, "run-");
        assert!(f.ok(), "{f:?}");
        assert_eq!(
            (
                f.refused_after_unanswered,
                f.refused_after_unanswered_applied
            ),
            (2, 1)
        );
        assert_eq!(resolve_unknowns(&mut h, &trail, "run-"), 1);
        assert_eq!(h[1].audit, Some(AuditResolution::Applied));
        assert_eq!(
            h[1].outcome,
            Outcome::Ok {
                observed: Observed::Id { id: "v1".into() }
            }
        );
        // run-2's refusal stands, and the role grants U1: a stale denial.
        assert_eq!(h[2].outcome, role_refused());
        assert_eq!(h[2].audit, None);
        let budget = Duration::from_secs(5);
        assert!(!crate::history::check(&h, budget, 1)[0].ok());
        // Revoked before run-2 was called: its refusal is right; run-1 applied before the
        // revocation (its end is open, its call was before it).
        let mut h = history();
        h.insert(
            2,
            op(
                2,
                "t",
                Input::UpdateRole {
                    by: Principal::Admin,
                    rules: Rules::Revoked,
                },
                done(),
            ),
        );
        h[3].request_id = "run-3".into();
        h[3].invoke_ns = 5;
        h[3].complete_ns = 6;
        let trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            record(2, "run-1", "OK", &["v1"]),
            record(3, "run-2", "OK", &["t-writers"]),
        ];
        assert!(audit_findings(&trail, &h, "run-").ok());
        resolve_unknowns(&mut h, &trail, "run-");
        assert!(crate::history::check(&h, budget, 1)[0].ok());
    }

    #[test]
    fn a_role_refusal_in_apply_under_granting_rules_is_flagged() {
        let create = |i| {
            op(
                i,
                "t",
                Input::Create {
                    by: Principal::U2,
                    slot: Slot::B,
                    label: "x".into(),
                },
                Outcome::Refused {
                    code: "PermissionDenied".into(),
                    message: "Access to ... denied: ... Access denied to roles: [...]".into(),
                    role: true,
                },
            )
        };
        let history = vec![
            op(
                0,
                "t",
                Input::CreateRole {
                    rules: Rules::Grant,
                },
                done(),
            ),
            create(1),
            op(2, "t", Input::DeleteRole, done()),
            create(3),
        ];
        let denied = |seq, id| AuditRecord {
            message: "Access denied".into(),
            ..record(seq, id, "PermissionDenied", &["v"])
        };
        let trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            denied(2, "run-1"),
            record(3, "run-2", "OK", &["t-writers"]),
            denied(4, "run-3"),
        ];
        let f = audit_findings(&trail, &history, "run-");
        assert_eq!(f.role_refusals_replayed, 2);
        assert_eq!(f.false_denials.len(), 1, "{f:?}");
        assert!(f.false_denials[0].starts_with("audit seq 2"));
        assert!(!f.ok());
    }

    #[test]
    fn an_acl_revocation_is_replayed_too() {
        let history = vec![
            op(
                0,
                "t",
                Input::CreateRole {
                    rules: Rules::Grant,
                },
                done(),
            ),
            op(
                1,
                "t",
                Input::Create {
                    by: Principal::U1,
                    slot: Slot::A,
                    label: "x".into(),
                },
                done(),
            ),
            op(
                2,
                "t",
                Input::SetAcl {
                    by: Principal::U1,
                    slot: Slot::A,
                    id: "v1".into(),
                    acl: AclSpec::default(),
                },
                done(),
            ),
            op(
                3,
                "t",
                Input::SetLabel {
                    by: Principal::U2,
                    slot: Slot::A,
                    id: "v1".into(),
                    label: "l".into(),
                },
                done(),
            ),
        ];
        let trail = vec![
            record(1, "run-0", "OK", &["t-writers"]),
            record(2, "run-1", "OK", &["v1"]),
            record(3, "run-2", "OK", &["v1"]),
            record(4, "run-3", "OK", &["v1"]),
        ];
        let f = audit_findings(&trail, &history, "run-");
        assert_eq!(f.stale_permission.len(), 1, "{f:?}");
        assert!(f.stale_permission[0].contains("no write access"));
    }
}
