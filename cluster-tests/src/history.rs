//! The recorded history of a chaos run: every client operation with its invoke and complete
//! times (one monotonic clock) and its outcome, stored as JSON lines, and its check per tenant
//! against [`crate::spec`].

use crate::linearizability::{self, Event, Verdict};
use crate::spec::{self, Input, Interner, Names, Outcome, TOp, TenantSpec};
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
    /// For an operation without answer, what the converged audit trail says became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditResolution>,
}

/// What the audit trail says of an operation whose client got no answer. Every command
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
        let unknown = matches!(r.outcome, Outcome::Unknown { .. }) || r.unanswered.is_some();
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
            audit: None,
        }
    }

    fn ok(observed: Observed) -> Outcome {
        Outcome::Ok { observed }
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
