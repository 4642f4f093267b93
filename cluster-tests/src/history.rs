//! The recorded history of a chaos run: every client operation with its invoke and complete
//! times (one monotonic clock) and its outcome, stored as JSON lines, and its check per tenant
//! against [`crate::spec`].

use crate::linearizability::{self, Event, Verdict};
use crate::spec::{self, Input, Interner, Names, Outcome, Principal, Rules, TOp, TenantSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One attempt of an operation at one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub node: u64,
    /// `OK`, a gRPC code name (with `, not sent` when the connection was never made, else
    /// with the message), or `timeout`.
    pub result: String,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Dense from 0 in invoke order per recorder.
    pub index: u64,
    pub client: u32,
    /// The tenant (partition) prefix.
    pub tenant: String,
    /// The `x-request-id` every attempt sent (custos scopes it by issuer and username).
    pub request_id: String,
    pub input: Input,
    pub outcome: Outcome,
    /// Nanoseconds since the run started.
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub attempts: Vec<Attempt>,
    /// Why the client got no definite answer, when it got none (the outcome is then
    /// `unknown`, or what the audit trail says happened: see `audit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<String>,
    /// For a role refusal that followed an attempt without answer: that attempt's result.
    /// The refusal stands (and is checked like any) unless the audit trail holds an applied
    /// record of the request id: then the earlier attempt was applied, the outcome is set
    /// from the record and the end left open (`audit` is then `applied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_after: Option<String>,
    /// For an operation without answer, what the converged audit trail says became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditResolution>,
}

/// What the audit trail says of an operation whose client got no answer (or got a role
/// refusal after an attempt without answer, which may have been applied). Every command
/// apply decides leaves exactly one record, so: one applied record, one refusal record, or
/// none (it never reached apply). The outcome is then set from the record, but the
/// operation keeps an open end (it may have been decided any time after its call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResolution {
    Applied,
    Refused,
    /// No record: it never happened, and is left out of the check.
    Absent,
}

/// Collects the records of concurrent clients against one clock.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    records: Arc<Mutex<Vec<OpRecord>>>,
    next: Arc<Mutex<u64>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            records: Arc::default(),
            next: Arc::default(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The next operation index.
    pub fn next_index(&self) -> u64 {
        let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        *n - 1
    }

    pub fn push(&self, r: OpRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
    }

    /// Every record so far, in invoke order.
    pub fn records(&self) -> Vec<OpRecord> {
        let mut out = self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        out.sort_by_key(|r| (r.invoke_ns, r.index));
        out
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// Writes records as JSON lines.
pub fn write_jsonl(path: &Path, records: &[OpRecord]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        serde_json::to_writer(&mut f, r)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

/// Reads records written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> std::io::Result<Vec<OpRecord>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for line in f.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(std::io::Error::other)?);
    }
    Ok(out)
}

/// The verdict on one tenant's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenantVerdict {
    pub tenant: String,
    pub operations: usize,
    /// `linearizable`, `not linearizable` or `unknown` (the time budget ran out).
    pub verdict: String,
    pub millis: u64,
    /// For a failure: the last operations of the longest linearization found, and those
    /// that could not come next (rendered as JSON records).
    pub detail: Vec<String>,
}

impl TenantVerdict {
    pub fn ok(&self) -> bool {
        self.verdict == "linearizable"
    }
}

/// The checker's events of one tenant's records (reads without an answer are left out), with
/// the index of the record each event came from.
pub fn events(tenant: &str, records: &[&OpRecord]) -> (Vec<Event<TOp>>, Vec<usize>) {
    let names = Names::new(tenant);
    let mut interner = Interner::default();
    let mut events = Vec::new();
    let mut origin = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.audit == Some(AuditResolution::Absent) {
            continue;
        }
        let Some(op) = spec::compile(&names, &mut interner, &r.input, &r.outcome) else {
            continue;
        };
        // Settled by the trail: decided any time after the call.
        let unknown = matches!(r.outcome, Outcome::Unknown { .. })
            || r.unanswered.is_some()
            || r.audit == Some(AuditResolution::Applied);
        events.push(Event {
            op,
            call: r.invoke_ns,
            ret: (!unknown).then_some(r.complete_ns),
        });
        origin.push(i);
    }
    (events, origin)
}

/// Checks every tenant of `records` (on up to `threads` threads), each within `budget`.
pub fn check(records: &[OpRecord], budget: Duration, threads: usize) -> Vec<TenantVerdict> {
    let mut by_tenant: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for r in records {
        by_tenant.entry(&r.tenant).or_default().push(r);
    }
    let work: Vec<(&str, Vec<&OpRecord>)> = by_tenant.into_iter().collect();
    let next = Mutex::new(0usize);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    *n - 1
                };
                let Some((tenant, recs)) = work.get(i) else {
                    break;
                };
                let v = check_tenant(tenant, recs, budget);
                results.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            });
        }
    });
    let mut out = results.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    out
}

fn check_tenant(tenant: &str, records: &[&OpRecord], budget: Duration) -> TenantVerdict {
    let started = Instant::now();
    let (events, origin) = events(tenant, records);
    let verdict = linearizability::check(&TenantSpec, &events, budget);
    let render = |event: usize| -> String {
        serde_json::to_string(records[origin[event]]).unwrap_or_default()
    };
    let (name, detail) = match &verdict {
        Verdict::Linearizable => ("linearizable", Vec::new()),
        Verdict::Unknown => ("unknown", Vec::new()),
        Verdict::NotLinearizable(f) => {
            let mut detail: Vec<String> = f
                .longest_prefix
                .iter()
                .rev()
                .take(12)
                .rev()
                .map(|e| format!("linearized: {}", render(*e)))
                .collect();
            detail.extend(
                f.stuck_on
                    .iter()
                    .map(|e| format!("cannot go next: {}", render(*e))),
            );
            ("not linearizable", detail)
        }
    };
    TenantVerdict {
        tenant: tenant.to_string(),
        operations: events.len(),
        verdict: name.to_string(),
        millis: started.elapsed().as_millis() as u64,
        detail,
    }
}

/// A role decision no role state of its time allows: a diagnosis of a failed check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaleAuthorization {
    /// `allow`: answered although every role state it could have seen denies it; `denial`:
    /// refused by the role check although every such state allows it.
    pub kind: String,
    pub tenant: String,
    /// The rule sets of the tenant role it could have seen (`None`: no role).
    pub possible_roles: Vec<Option<Rules>>,
    /// The operation, as recorded (JSON).
    pub op: String,
}

/// The operations of `u1` and `u2` (whose calls only the tenant role lets through) that were
/// answered, or refused by the role check, although no role state possible during their
/// call and answer decides so. A role state is possible at a time unless a role change
/// acknowledged before then superseded it; role changes without answer may have happened at
/// any time after their call. Sound but incomplete: every operation it names also makes the
/// history non-linearizable; it says which operations and why.
pub fn stale_authorizations(records: &[OpRecord]) -> Vec<StaleAuthorization> {
    struct Change {
        call: u64,
        /// `None`: open end (no answer, or settled by the audit trail).
        ret: Option<u64>,
        rules: Option<Rules>,
    }
    let mut by_tenant: BTreeMap<&str, Vec<&OpRecord>> = BTreeMap::new();
    for r in records {
        by_tenant.entry(&r.tenant).or_default().push(r);
    }
    let mut out = Vec::new();
    for (tenant, ops) in by_tenant {
        let open = |r: &OpRecord| {
            matches!(r.outcome, Outcome::Unknown { .. })
                || r.unanswered.is_some()
                || r.audit == Some(AuditResolution::Applied)
        };
        // The initial state (no role) is a change that ended at 0.
        let mut changes = vec![Change {
            call: 0,
            ret: Some(0),
            rules: None,
        }];
        for r in &ops {
            let rules = match r.input {
                Input::CreateRole { rules } | Input::UpdateRole { rules, .. } => Some(rules),
                Input::DeleteRole => None,
                _ => continue,
            };
            let may_have_happened = matches!(r.outcome, Outcome::Ok { .. })
                || (matches!(r.outcome, Outcome::Unknown { .. })
                    && r.audit != Some(AuditResolution::Absent));
            if may_have_happened {
                changes.push(Change {
                    call: r.invoke_ns,
                    ret: (!open(r)).then_some(r.complete_ns),
                    rules,
                });
            }
        }
        for r in &ops {
            if !matches!(r.input.principal(), Principal::U1 | Principal::U2) || open(r) {
                continue;
            }
            let read = match r.input {
                Input::ReadVolume { .. } => true,
                Input::CreateRole { .. }
                | Input::UpdateRole { .. }
                | Input::DeleteRole
                | Input::ReadRole => continue,
                _ => false,
            };
            let allowed = match &r.outcome {
                Outcome::Ok { .. } => true,
                Outcome::Refused { role: true, .. } => false,
                _ => continue,
            };
            let (xc, xr) = (r.invoke_ns, r.complete_ns);
            let superseded = |c: &Change| {
                c.ret.is_some_and(|cr| {
                    changes
                        .iter()
                        .any(|d| d.call > cr && d.ret.is_some_and(|dr| dr < xc))
                })
            };
            let mut possible: Vec<Option<Rules>> = changes
                .iter()
                .filter(|c| c.call < xr && !superseded(c))
                .map(|c| c.rules)
                .collect();
            possible.sort();
            possible.dedup();
            let allows = |rules: &Option<Rules>| {
                let by = r.input.principal();
                if read {
                    spec::may_read_volumes(by, *rules)
                } else {
                    spec::may_write_volumes(by, *rules)
                }
            };
            let kind = if allowed && !possible.iter().any(allows) {
                "allow"
            } else if !allowed && possible.iter().all(allows) {
                "denial"
            } else {
                continue;
            };
            out.push(StaleAuthorization {
                kind: kind.to_string(),
                tenant: tenant.to_string(),
                possible_roles: possible,
                op: serde_json::to_string(r).unwrap_or_default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Observed, Principal, Slot, VolumeView};

    fn rec(index: u64, input: Input, outcome: Outcome, invoke: u64, complete: u64) -> OpRecord {
        OpRecord {
            index,
            client: 0,
            tenant: "t0".into(),
            request_id: format!("r{index}"),
            input,
            outcome,
            invoke_ns: invoke,
            complete_ns: complete,
            attempts: vec![],
            unanswered: None,
            refused_after: None,
            audit: None,
        }
    }

    fn ok(observed: Observed) -> Outcome {
        Outcome::Ok { observed }
    }

    #[test]
    fn stale_allows_and_denials_are_named() {
        let role =
            |index, input, invoke| rec(index, input, ok(Observed::Done), invoke, invoke + 10);
        let read = |index, by, outcome, invoke| {
            rec(
                index,
                Input::ReadVolume { by, slot: Slot::A },
                outcome,
                invoke,
                invoke + 10,
            )
        };
        let nothing = || ok(Observed::Volumes { volumes: vec![] });
        let denied = || Outcome::Refused {
            code: "PermissionDenied".into(),
            message: "Access to ... denied: ... Access denied to roles: [t0-writers]".into(),
            role: true,
        };
        let history = vec![
            role(
                0,
                Input::CreateRole {
                    rules: Rules::Grant,
                },
                0,
            ),
            // Allowed under the grant: fine.
            read(1, Principal::U1, nothing(), 20),
            role(
                2,
                Input::UpdateRole {
                    by: Principal::Admin,
                    rules: Rules::Revoked,
                },
                40,
            ),
            // Concurrent with the revocation: either is fine.
            read(3, Principal::U2, nothing(), 45),
            read(4, Principal::U1, denied(), 46),
            // After it: a stale allow, and a right denial.
            read(5, Principal::U1, nothing(), 60),
            read(6, Principal::U2, denied(), 61),
            role(
                7,
                Input::UpdateRole {
                    by: Principal::Admin,
                    rules: Rules::ReadOnly,
                },
                80,
            ),
            // Read-only allows reading: a stale denial.
            read(8, Principal::U2, denied(), 100),
            // The administrator's reads are not the role's to decide.
            read(9, Principal::Admin, nothing(), 100),
        ];
        let found = stale_authorizations(&history);
        let named: Vec<(&str, bool)> = found
            .iter()
            .map(|f| (f.kind.as_str(), f.op.contains("\"request_id\":\"r5\"")))
            .collect();
        assert_eq!(named, vec![("allow", true), ("denial", false)], "{found:?}");
        assert!(found[1].op.contains("\"request_id\":\"r8\""));
        assert_eq!(found[1].possible_roles, vec![Some(Rules::ReadOnly)]);
        // The checker fails the same history.
        let v = check(&history, Duration::from_secs(5), 1);
        assert_eq!(v[0].verdict, "not linearizable");
        // A revocation without answer may not have happened: nothing is stale then.
        let mut unsure = history.clone();
        unsure[2].outcome = Outcome::Unknown {
            reason: "timeout".into(),
        };
        unsure.truncate(7);
        assert!(stale_authorizations(&unsure).is_empty());
    }

    #[test]
    fn records_round_trip_through_jsonl_and_a_lost_write_fails_the_check() {
        let create = rec(
            0,
            Input::Create {
                by: Principal::U3,
                slot: Slot::B,
                label: "l0".into(),
            },
            ok(Observed::Id { id: "vol-1".into() }),
            0,
            10,
        );
        let read = |index, invoke, volumes| {
            rec(
                index,
                Input::ReadVolume {
                    by: Principal::Admin,
                    slot: Slot::B,
                },
                ok(Observed::Volumes { volumes }),
                invoke,
                invoke + 10,
            )
        };
        let seen = VolumeView {
            id: "vol-1".into(),
            name: "t0-b".into(),
            owner: Some("t0-u3".into()),
            groups: Default::default(),
            collaborators: Default::default(),
            public: None,
            label: Some("l0".into()),
            attached: false,
            parent: None,
            snapshot: false,
        };
        let good = vec![create.clone(), read(1, 20, vec![seen])];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        write_jsonl(&path, &good).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), good);
        let v = check(&good, Duration::from_secs(5), 2);
        assert_eq!(v.len(), 1);
        assert!(v[0].ok(), "{v:?}");
        // The acknowledged create is missing from a later read: lost.
        let bad = vec![create, read(1, 20, vec![])];
        let v = check(&bad, Duration::from_secs(5), 1);
        assert_eq!(v[0].verdict, "not linearizable");
        assert!(v[0].detail.iter().any(|d| d.contains("cannot go next")));
    }
}
