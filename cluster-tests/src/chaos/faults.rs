//! The nemesis: a fault schedule drawn from the run's seed (the same seed gives the same
//! schedule: kinds, start times, durations and parameters), and its injection into a running
//! [`ChaosCluster`](super::cluster::ChaosCluster). Targets such as "the leader" are resolved
//! when the fault starts, so which node that is depends on the run; the log says.
//!
//! Membership faults go through the administrator's API as an operator would: a follower is
//! removed while it runs and a new member takes its slot as a learner, is promoted and may be
//! handed the leadership; a follower loses its data dir and is replaced (removed, then a new id
//! joins); or a follower that lost its data comes back under its old id, must be refused by
//! the others while the cluster keeps serving, and is then replaced. A step that does not
//! succeed within its bound is a finding ([`AppliedFault::problem`]), not a harness error.

use super::cluster::ChaosCluster;
use super::Rng;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the leader; restart it after the fault's duration.
    KillLeader,
    /// SIGKILL a follower; restart it after the fault's duration.
    KillFollower,
    /// SIGSTOP the leader; SIGCONT after the duration.
    PauseLeader,
    /// SIGSTOP a follower; SIGCONT after the duration.
    PauseFollower,
    /// Cut the leader off from every other member.
    IsolateLeader,
    /// Cut a follower off from every other member.
    IsolateFollower,
    /// Split a minority (with or without the leader) from the majority.
    SplitMinority,
    /// Delay every peer link (with jitter).
    DelayPeers,
    /// Reset peer connections at random.
    DropPeers,
    /// Remove a running follower; a new member joins its slot as a learner, is promoted, and
    /// half the time is handed the leadership.
    MembershipChange,
    /// Wipe a follower's data dir (SIGKILL first), remove its id, and let a new id join in
    /// its slot.
    WipeRejoin,
    /// Wipe a follower's data dir and restart it under its old id: it must be refused without
    /// harming the cluster; then replace it as `WipeRejoin` does.
    WipeStaleRejoin,
    /// SIGKILL the leader, then SIGKILL the member elected after it the moment it leads (its
    /// first entries, appended while their flush is still owed, in flight); restart both after
    /// the fault's duration. The check of issue #23: no member may lead on an unflushed tail.
    KillNewLeader,
}

impl FaultKind {
    /// Every kind the nemesis injects.
    pub const AVAILABLE: [FaultKind; 13] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::PauseLeader,
        FaultKind::PauseFollower,
        FaultKind::IsolateLeader,
        FaultKind::IsolateFollower,
        FaultKind::SplitMinority,
        FaultKind::DelayPeers,
        FaultKind::DropPeers,
        FaultKind::MembershipChange,
        FaultKind::WipeRejoin,
        FaultKind::WipeStaleRejoin,
        FaultKind::KillNewLeader,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill_leader",
            FaultKind::KillFollower => "kill_follower",
            FaultKind::PauseLeader => "pause_leader",
            FaultKind::PauseFollower => "pause_follower",
            FaultKind::IsolateLeader => "isolate_leader",
            FaultKind::IsolateFollower => "isolate_follower",
            FaultKind::SplitMinority => "split_minority",
            FaultKind::DelayPeers => "delay_peers",
            FaultKind::DropPeers => "drop_peers",
            FaultKind::MembershipChange => "membership_change",
            FaultKind::WipeRejoin => "wipe_rejoin",
            FaultKind::WipeStaleRejoin => "wipe_stale_rejoin",
            FaultKind::KillNewLeader => "kill_new_leader",
        }
    }

    pub fn from_name(s: &str) -> Option<FaultKind> {
        FaultKind::AVAILABLE.into_iter().find(|k| k.name() == s)
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    /// Milliseconds after the workload starts.
    pub at_ms: u64,
    pub kind: FaultKind,
    pub duration_ms: u64,
    /// A random number for the fault's choices (which follower, which minority, how much
    /// delay).
    pub pick: u64,
}

/// The schedule of a run: faults one after another, each followed by a healthy gap, from a
/// short quiet start until `quiet_end` before the end (so that the cluster heals under load).
pub fn schedule(seed: u64, run: Duration, kinds: &[FaultKind]) -> Vec<FaultEvent> {
    let kinds: Vec<FaultKind> = kinds.to_vec();
    let mut rng = Rng::new(seed ^ 0xFA17_5EED);
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let end = run.as_millis() as u64;
    let quiet_end = 8_000.min(end / 5);
    let mut t = 3_000.min(end / 10);
    // Every kind once first (in a seeded order), then at random.
    let mut order = kinds.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut k = 0usize;
    loop {
        let kind = if k < order.len() {
            order[k]
        } else {
            *rng.pick(&kinds)
        };
        k += 1;
        let duration_ms = 1_500 + rng.below(5_000);
        if t + duration_ms + quiet_end > end {
            break;
        }
        out.push(FaultEvent {
            at_ms: t,
            kind,
            duration_ms,
            pick: rng.next_u64(),
        });
        t += duration_ms + 1_000 + rng.below(3_000);
    }
    out
}

/// A fault as it was injected.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedFault {
    pub kind: FaultKind,
    /// When it started and ended, in milliseconds after the workload started.
    pub start_ms: u64,
    pub end_ms: u64,
    /// What exactly was done ("kill -9 node 2 (leader)", "partition [1] | [2, 3]" ...).
    pub detail: String,
    /// What went wrong that must not (a membership step that never succeeded, a wiped node
    /// that was never refused): reported as a failure of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The leader as the running, unpaused members see it, asking again for up to 3 s while
/// none is known (an election may be under way).
pub async fn current_leader(cluster: &Mutex<ChaosCluster>, admin: &str) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(l) = leader_once(cluster, admin).await {
            return Some(l);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader the running, unpaused members name most, if any names one.
async fn leader_once(cluster: &Mutex<ChaosCluster>, admin: &str) -> Option<u64> {
    let clients: Vec<custos_client::Client> = {
        let c = cluster.lock().await;
        c.nodes
            .iter()
            .filter(|n| !n.down && !n.paused())
            .map(|n| {
                c.client(&[n.id], Some(admin))
                    .with_timeout(Duration::from_millis(800))
            })
            .collect()
    };
    let mut votes: std::collections::BTreeMap<u64, usize> = Default::default();
    for client in clients {
        if let Ok(s) = client.status().await {
            if s.leader_id != 0 {
                *votes.entry(s.leader_id).or_default() += 1;
            }
        }
    }
    votes.into_iter().max_by_key(|(_, v)| *v).map(|(id, _)| id)
}

/// Runs the schedule against the cluster until it ends or `end` passes; heals everything it
/// did before returning.
pub async fn run(
    cluster: Arc<Mutex<ChaosCluster>>,
    events: Vec<FaultEvent>,
    admin: String,
    paused: super::workload::Paused,
    start: Instant,
    end: Instant,
) -> Vec<AppliedFault> {
    let mut applied = Vec::new();
    let ms = |i: Instant| i.saturating_duration_since(start).as_millis() as u64;
    for ev in events {
        let at = start + Duration::from_millis(ev.at_ms);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        // A long membership fault can overrun the next start; none begins after the end.
        if Instant::now() >= end {
            break;
        }
        let ids = cluster.lock().await.ids();
        let leader = current_leader(&cluster, &admin).await;
        let mut rng = Rng::new(ev.pick);
        let follower = |rng: &mut Rng| {
            let others: Vec<u64> = ids.iter().copied().filter(|i| Some(*i) != leader).collect();
            *rng.pick(&others)
        };
        // The target: the leader when known, else any node.
        let leader_or_any = |rng: &mut Rng| leader.unwrap_or_else(|| *rng.pick(&ids));
        let role = |id: u64| {
            if Some(id) == leader {
                "leader"
            } else {
                "follower"
            }
        };
        let started = Instant::now();
        let hold =
            Duration::from_millis(ev.duration_ms).min(end.saturating_duration_since(started));
        let detail;
        let mut problem = None;
        match ev.kind {
            FaultKind::KillLeader | FaultKind::KillFollower => {
                let id = if ev.kind == FaultKind::KillLeader {
                    leader_or_any(&mut rng)
                } else {
                    follower(&mut rng)
                };
                cluster.lock().await.kill9(id);
                tokio::time::sleep(hold).await;
                let restarted = cluster.lock().await.spawn(id);
                detail = format!(
                    "kill -9 node {id} ({}), restarted after {} ms{}",
                    role(id),
                    hold.as_millis(),
                    restarted
                        .err()
                        .map(|e| format!(": RESTART FAILED {e}"))
                        .unwrap_or_default()
                );
            }
            FaultKind::KillNewLeader => {
                let first = leader_or_any(&mut rng);
                cluster.lock().await.kill9(first);
                // Poll for the next leader (bounded), and kill it as soon as it is known.
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut second = None;
                while Instant::now() < deadline {
                    match current_leader(&cluster, &admin).await {
                        Some(l) if l != first => {
                            second = Some(l);
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                let elected_after = started.elapsed().as_millis();
                if let Some(l) = second {
                    cluster.lock().await.kill9(l);
                }
                tokio::time::sleep(hold).await;
                let mut failed = Vec::new();
                for id in [Some(first), second].into_iter().flatten() {
                    if let Err(e) = cluster.lock().await.spawn(id) {
                        failed.push(format!("node {id}: RESTART FAILED {e}"));
                    }
                }
                detail = match second {
                    Some(l) => format!(
                        "kill -9 node {first} (leader), then node {l} as soon as it led \
                         ({elected_after} ms later); both restarted after {} ms{}",
                        hold.as_millis(),
                        if failed.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", failed.join("; "))
                        }
                    ),
                    None => format!(
                        "kill -9 node {first} (leader); no new leader within 5 s; restarted \
                         after {} ms{}",
                        hold.as_millis(),
                        if failed.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", failed.join("; "))
                        }
                    ),
                };
            }
            FaultKind::PauseLeader | FaultKind::PauseFollower => {
                let id = if ev.kind == FaultKind::PauseLeader {
                    leader_or_any(&mut rng)
                } else {
                    follower(&mut rng)
                };
                // The workload's role changers work while the pause lasts (workload.rs).
                let sdk = {
                    let mut c = cluster.lock().await;
                    c.pause(id);
                    c.endpoints()
                        .into_iter()
                        .find(|(n, _)| *n == id)
                        .map(|e| e.1)
                };
                *paused.lock().unwrap_or_else(|p| p.into_inner()) = sdk;
                tokio::time::sleep(hold).await;
                *paused.lock().unwrap_or_else(|p| p.into_inner()) = None;
                cluster.lock().await.resume(id);
                detail = format!(
                    "SIGSTOP node {id} ({}) for {} ms",
                    role(id),
                    hold.as_millis()
                );
            }
            FaultKind::IsolateLeader | FaultKind::IsolateFollower => {
                let id = if ev.kind == FaultKind::IsolateLeader {
                    leader_or_any(&mut rng)
                } else {
                    follower(&mut rng)
                };
                cluster.lock().await.proxies.isolate(id);
                tokio::time::sleep(hold).await;
                cluster.lock().await.proxies.heal();
                detail = format!(
                    "isolate node {id} ({}) for {} ms",
                    role(id),
                    hold.as_millis()
                );
            }
            FaultKind::SplitMinority => {
                let size = (ids.len() - 1) / 2;
                let mut pool = ids.clone();
                for i in (1..pool.len()).rev() {
                    pool.swap(i, rng.below(i as u64 + 1) as usize);
                }
                // Half the time the leader is on the minority side.
                if let Some(l) = leader {
                    let with_leader = rng.below(2) == 0;
                    pool.retain(|i| *i != l);
                    if with_leader {
                        pool.insert(0, l);
                    } else {
                        pool.push(l);
                    }
                }
                let mut minority: Vec<u64> = pool[..size.max(1)].to_vec();
                let mut majority: Vec<u64> = pool[size.max(1)..].to_vec();
                minority.sort();
                majority.sort();
                cluster
                    .lock()
                    .await
                    .proxies
                    .partition(&[minority.clone(), majority.clone()]);
                tokio::time::sleep(hold).await;
                cluster.lock().await.proxies.heal();
                detail = format!(
                    "partition {minority:?} | {majority:?} (leader {leader:?}) for {} ms",
                    hold.as_millis()
                );
            }
            FaultKind::DelayPeers => {
                let delay_ms = 20 + rng.below(130);
                let jitter_ms = rng.below(delay_ms / 2 + 1);
                cluster
                    .lock()
                    .await
                    .proxies
                    .set_all(crate::proxy::LinkFault {
                        delay_ms,
                        jitter_ms,
                        ..Default::default()
                    });
                tokio::time::sleep(hold).await;
                cluster.lock().await.proxies.heal();
                detail = format!(
                    "delay every peer link {delay_ms}±{jitter_ms} ms for {} ms",
                    hold.as_millis()
                );
            }
            FaultKind::DropPeers => {
                let per_mille = 20 + rng.below(80) as u32;
                cluster
                    .lock()
                    .await
                    .proxies
                    .set_all(crate::proxy::LinkFault {
                        drop_per_mille: per_mille,
                        ..Default::default()
                    });
                tokio::time::sleep(hold).await;
                cluster.lock().await.proxies.heal();
                detail = format!(
                    "reset peer connections on {per_mille}‰ of chunks for {} ms",
                    hold.as_millis()
                );
            }
            FaultKind::MembershipChange | FaultKind::WipeRejoin | FaultKind::WipeStaleRejoin => {
                let target = follower(&mut rng);
                let via = leader.filter(|l| *l != target).unwrap_or_else(|| {
                    *rng.pick(
                        &ids.iter()
                            .copied()
                            .filter(|i| *i != target)
                            .collect::<Vec<_>>(),
                    )
                });
                let mut steps = Vec::new();
                let result = membership_fault(
                    &cluster,
                    &admin,
                    ev.kind,
                    target,
                    via,
                    hold,
                    rng.below(2) == 0,
                    &mut steps,
                )
                .await;
                if let Err(e) = result {
                    problem = Some(format!("{}: {e}", ev.kind.name()));
                }
                detail = steps.join("; ");
            }
        }
        eprintln!(
            "chaos: {} at {} ms: {detail}{}",
            ev.kind.name(),
            ms(started),
            problem
                .as_deref()
                .map(|p| format!(" — PROBLEM: {p}"))
                .unwrap_or_default()
        );
        applied.push(AppliedFault {
            kind: ev.kind,
            start_ms: ms(started),
            end_ms: ms(Instant::now()),
            detail,
            problem,
        });
    }
    applied
}

/// How long one membership step may take (a join includes catching up, by snapshot).
const STEP_LIMIT: Duration = Duration::from_secs(45);

/// An administrator's client for every current member, with a deadline fit for membership
/// calls (an added learner answers once it has caught up).
async fn admin_client(cluster: &Mutex<ChaosCluster>, admin: &str) -> custos_client::Client {
    let c = cluster.lock().await;
    c.client(&c.ids(), Some(admin))
        .with_timeout(Duration::from_secs(15))
}

/// Calls `op` until it succeeds or `STEP_LIMIT` passes (an election can refuse a step).
async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, custos_client::ClientError>>,
{
    let deadline = Instant::now() + STEP_LIMIT;
    let mut tries = 0u32;
    loop {
        tries += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("{what} failed {tries} times, last: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits until the leader's membership has `id` as a voter (or, with `voter` false, as a
/// member of either kind).
async fn wait_member(
    cluster: &Mutex<ChaosCluster>,
    admin: &str,
    id: u64,
    voter: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        if let Some(l) = current_leader(cluster, admin).await {
            let client = cluster.lock().await.client(&[l], Some(admin));
            if let Ok(s) = client.status().await {
                if s.members.iter().any(|m| m.id == id && (m.voter || !voter)) {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node {id} did not become a {} within {STEP_LIMIT:?}",
                if voter { "voter" } else { "member" }
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Removes `old` (the operator's step), puts a new member in its slot that joins through
/// `via`, and waits until it votes. Returns the new id.
async fn replace_member(
    cluster: &Mutex<ChaosCluster>,
    admin: &str,
    old: u64,
    via: u64,
    steps: &mut Vec<String>,
) -> Result<u64, String> {
    let client = admin_client(cluster, admin).await;
    retry(&format!("removing node {old}"), || {
        client.remove_member(old)
    })
    .await?;
    steps.push(format!("removed node {old}"));
    let new = cluster
        .lock()
        .await
        .replace(old, via, false)
        .await
        .map_err(|e| format!("starting the replacement of node {old}: {e}"))?;
    wait_member(cluster, admin, new, true).await?;
    steps.push(format!(
        "node {new} joined in its slot through node {via} and votes"
    ));
    Ok(new)
}

/// The three membership faults (see [`FaultKind`]); `steps` says what was done.
#[allow(clippy::too_many_arguments)]
async fn membership_fault(
    cluster: &Mutex<ChaosCluster>,
    admin: &str,
    kind: FaultKind,
    target: u64,
    via: u64,
    hold: Duration,
    move_leader: bool,
    steps: &mut Vec<String>,
) -> Result<(), String> {
    match kind {
        FaultKind::MembershipChange => {
            let client = admin_client(cluster, admin).await;
            retry(&format!("removing node {target}"), || {
                client.remove_member(target)
            })
            .await?;
            steps.push(format!("removed follower {target} while it runs"));
            // The removed node keeps running for a while, as one whose operator has not
            // stopped it yet: it must not disturb the others.
            tokio::time::sleep(hold / 2).await;
            let new = cluster
                .lock()
                .await
                .replace(target, via, true)
                .await
                .map_err(|e| format!("starting a learner in node {target}'s slot: {e}"))?;
            wait_member(cluster, admin, new, false).await?;
            steps.push(format!("node {new} joined its slot as a learner"));
            let client = admin_client(cluster, admin).await;
            retry(&format!("promoting node {new}"), || client.promote(new)).await?;
            wait_member(cluster, admin, new, true).await?;
            steps.push(format!("promoted node {new}"));
            if move_leader {
                retry(&format!("handing the leadership to node {new}"), || {
                    client.transfer_leader(new)
                })
                .await?;
                steps.push(format!("leadership handed to node {new}"));
            }
            Ok(())
        }
        FaultKind::WipeRejoin => {
            cluster
                .lock()
                .await
                .wipe(target)
                .map_err(|e| e.to_string())?;
            steps.push(format!("kill -9 follower {target} and wipe its data dir"));
            tokio::time::sleep(hold / 2).await;
            replace_member(cluster, admin, target, via, steps)
                .await
                .map(drop)
        }
        FaultKind::WipeStaleRejoin => {
            let log = {
                let mut c = cluster.lock().await;
                c.wipe(target).map_err(|e| e.to_string())?;
                c.spawn(target).map_err(|e| e.to_string())?;
                c.node(target).log.clone()
            };
            steps.push(format!(
                "kill -9 follower {target}, wipe its data dir, restart it under its old id"
            ));
            let seen_before = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(STALE_REFUSAL)
                .count();
            // It must be refused (its log says so), and the others go on serving.
            let deadline = Instant::now() + hold.max(Duration::from_secs(20));
            loop {
                let seen = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .matches(STALE_REFUSAL)
                    .count();
                if seen > seen_before {
                    steps.push(format!("node {target}'s new incarnation was refused"));
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the wiped node {target} under its old id was never refused"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            match current_leader(cluster, admin).await {
                Some(l) if l != target => steps.push(format!("node {l} still leads")),
                other => {
                    return Err(format!(
                        "with the wiped node {target} back, the leader is {other:?}"
                    ))
                }
            }
            replace_member(cluster, admin, target, via, steps)
                .await
                .map(drop)
        }
        _ => Err(format!("{} is not a membership fault", kind.name())),
    }
}

/// What a wiped node under its old id logs when the leader's traffic meant for its former
/// data dir reaches it (crates/server/src/peer.rs).
const STALE_REFUSAL: &str = "refused Raft traffic meant for another incarnation";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_every_kind_appears() {
        let run = Duration::from_secs(120);
        let a = schedule(42, run, &FaultKind::AVAILABLE);
        let b = schedule(42, run, &FaultKind::AVAILABLE);
        assert_eq!(a, b);
        assert_ne!(a, schedule(43, run, &FaultKind::AVAILABLE));
        for k in FaultKind::AVAILABLE {
            assert!(a.iter().any(|e| e.kind == k), "{k:?} missing from {a:#?}");
        }
        // Faults do not overlap and end before the quiet tail.
        for w in a.windows(2) {
            assert!(w[0].at_ms + w[0].duration_ms < w[1].at_ms);
        }
        let last = a.last().unwrap();
        assert!(last.at_ms + last.duration_ms + 8_000 <= 120_000);
    }

    #[test]
    fn a_schedule_draws_only_the_kinds_asked_for_and_names_round_trip() {
        let s = schedule(
            7,
            Duration::from_secs(60),
            &[FaultKind::WipeRejoin, FaultKind::DelayPeers],
        );
        assert!(!s.is_empty());
        assert!(s
            .iter()
            .all(|e| matches!(e.kind, FaultKind::DelayPeers | FaultKind::WipeRejoin)));
        assert!(s.iter().any(|e| e.kind == FaultKind::WipeRejoin));
        for k in FaultKind::AVAILABLE {
            assert_eq!(FaultKind::from_name(k.name()), Some(k));
        }
        assert_eq!(FaultKind::from_name("wipe"), None);
    }
}
