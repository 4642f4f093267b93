//! Follower-side batching of forwarded writes: the client writes a follower takes while its
//! earlier forwarding calls to the leader are in flight go out together, in one `ProposeMany`.
//!
//! A follower hands every client write to the leader. With one `Propose` RPC per write, N
//! concurrent writers through a follower cost N RPCs in a row on both ends (issue #23 measured
//! about 30% less throughput through followers than at the leader). Here, as in the leader's
//! group commit (`proposals.rs`), at most [`MAX_IN_FLIGHT`] forwarding RPCs per leader are in
//! flight; a write that finds them busy joins a queue, and as soon as one returns the queue
//! (up to [`MAX_BATCH`] commands for that leader) goes out as the next RPC. A lone write never
//! waits: with a slot free it is sent at once, alone.
//!
//! Each command keeps its own deadline: one whose deadline passed before its RPC starts (or
//! whose caller went away) is answered, not sent; the others travel with what is left of
//! theirs (`ForwardedCommand.deadline_ms`), and the RPC's timeout is the largest of them. The
//! leader answers each command on its own ([`answer_of`]): an outcome, "not leader" (the caller
//! retries, `Node::propose`, with the same request id: a command that was applied after all is
//! answered from its first outcome), or a refusal; RESOURCE_EXHAUSTED (the leader's bounds)
//! reaches the caller as it is, other refusals are retried like an unreachable leader.
//!
//! The queue is bounded (`[limits] max_queued_proposals`, the same bound as the leader's
//! proposal queue, which is idle on a follower): a write that finds it full is answered
//! RESOURCE_EXHAUSTED at once.

use crate::network::PeerClients;
use crate::node::Attempt;
use crate::status;
use custos_model::Outcome;
use custos_proto::custos::raft::v1::{ForwardedCommand, ForwardedOutcome, ProposeManyRequest};
use custos_store::Raft;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::Status;

/// Forwarding RPCs in flight to one leader, at most.
pub const MAX_IN_FLIGHT: usize = 2;

/// Commands in one forwarding RPC, at most.
pub const MAX_BATCH: usize = 128;

/// The shortest timeout a forwarding RPC gets (as `Node::forward_request`).
const MIN_TIMEOUT: Duration = Duration::from_millis(50);

pub(crate) type Answer = Result<Attempt<Outcome>, Status>;

struct Waiting {
    /// The leader it is for.
    leader: u64,
    /// bincode of the command.
    command: Vec<u8>,
    /// When the caller stops waiting.
    deadline: Instant,
    answer: oneshot::Sender<Answer>,
}

/// [`Queue::admit`] found `limit` commands waiting.
#[derive(Debug)]
struct QueueFull;

/// The commands waiting for a forwarding slot, at most `limit`, and the slots taken per leader.
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: BTreeMap<u64, usize>,
    limit: usize,
}

impl Queue {
    fn new(limit: usize) -> Queue {
        Queue {
            waiting: VecDeque::new(),
            in_flight: BTreeMap::new(),
            limit,
        }
    }

    /// Queues `w` unless the queue is full (then `w` is dropped); true when a slot for its
    /// leader was free and the caller must start a driver for that leader.
    fn admit(&mut self, w: Waiting) -> Result<bool, QueueFull> {
        if self.waiting.len() >= self.limit {
            return Err(QueueFull);
        }
        let busy = self.in_flight.entry(w.leader).or_default();
        let free = *busy < MAX_IN_FLIGHT;
        if free {
            *busy += 1;
        }
        self.waiting.push_back(w);
        Ok(free)
    }

    /// The next RPC's commands for `leader`: up to [`MAX_BATCH`] of its waiting commands
    /// whose callers still wait, in order. Those whose deadline passed by `now`, or whose
    /// caller went away, come back apart (to be answered, not sent). Commands for other
    /// leaders stay. `None` when nothing is left for `leader` (its slot is then given back).
    fn next_batch(&mut self, leader: u64, now: Instant) -> Option<(Vec<Waiting>, Vec<Waiting>)> {
        let (mut batch, mut expired) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < self.waiting.len() && batch.len() < MAX_BATCH {
            if self.waiting[i].leader != leader {
                i += 1;
                continue;
            }
            let Some(w) = self.waiting.remove(i) else {
                break;
            };
            if w.answer.is_closed() || w.deadline <= now {
                expired.push(w);
            } else {
                batch.push(w);
            }
        }
        if batch.is_empty() && expired.is_empty() {
            if let Some(busy) = self.in_flight.get_mut(&leader) {
                *busy -= 1;
                if *busy == 0 {
                    self.in_flight.remove(&leader);
                }
            }
            return None;
        }
        Some((batch, expired))
    }
}

/// The `ProposeMany` request for `batch` sent at `now` by `from` to `leader`, its timeout (the
/// largest deadline left in it, at least [`MIN_TIMEOUT`]) and the callers' answer channels, in
/// the order of the request.
fn request(
    from: u64,
    leader: u64,
    batch: Vec<Waiting>,
    now: Instant,
) -> (ProposeManyRequest, Duration, Vec<oneshot::Sender<Answer>>) {
    let mut timeout = MIN_TIMEOUT;
    let mut commands = Vec::with_capacity(batch.len());
    let mut answers = Vec::with_capacity(batch.len());
    for w in batch {
        let left = w.deadline.saturating_duration_since(now);
        timeout = timeout.max(left);
        commands.push(ForwardedCommand {
            command: w.command,
            // At least 1: 0 would mean "not stated".
            deadline_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
        });
        answers.push(w.answer);
    }
    let req = ProposeManyRequest {
        from,
        target: leader,
        commands,
    };
    (req, timeout, answers)
}

/// What one command's answer from `leader` means to its caller.
pub(crate) fn answer_of(outcome: ForwardedOutcome, leader: u64) -> Answer {
    if outcome.code != 0 {
        let code = tonic::Code::from_i32(outcome.code);
        // The leader's bounds reach the caller as they are: retrying here at once would only
        // add to its load. Anything else (its deadline passed there, it is stopping...) is
        // retried like an unreachable leader, with the same request id.
        if code == tonic::Code::ResourceExhausted {
            return Err(Status::new(code, outcome.message));
        }
        return Ok(Attempt::NotLeader(None));
    }
    if outcome.not_leader {
        let hint = (outcome.leader_hint != 0).then_some(outcome.leader_hint);
        return Ok(Attempt::NotLeader(hint.filter(|h| *h != leader)));
    }
    Ok(match crate::codec::decode::<Outcome>(&outcome.outcome) {
        Ok(outcome) => Attempt::Done(outcome),
        Err(_) => Attempt::NotLeader(None),
    })
}

struct Inner {
    raft: Raft,
    peers: PeerClients,
    node: u64,
    stages: Arc<crate::stages::Stages>,
    queue: Mutex<Queue>,
    counts: Counts,
}

/// What the forwarder has sent and turned away, for `/metrics`.
#[derive(Default)]
struct Counts {
    rpcs: AtomicU64,
    commands: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
}

/// The forwarder's counters and queue depth at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// `ProposeMany` RPCs sent to a leader.
    pub rpcs: u64,
    /// Commands sent in them.
    pub commands: u64,
    /// Commands refused because the queue was full.
    pub rejected: u64,
    /// Commands answered unsent: their deadline passed or their caller went away.
    pub expired: u64,
    /// Commands waiting for a forwarding slot now.
    pub queued: u64,
}

/// A follower's forwarding queue (idle on the leader, which proposes its writes itself).
#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

impl Forwarder {
    /// A forwarder whose queue holds at most `max_queued` commands.
    pub fn new(
        raft: Raft,
        peers: PeerClients,
        node: u64,
        max_queued: usize,
        stages: Arc<crate::stages::Stages>,
    ) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                raft,
                peers,
                node,
                stages,
                queue: Mutex::new(Queue::new(max_queued)),
                counts: Counts::default(),
            }),
        }
    }

    /// What the forwarder did so far, and its queue depth now.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.inner.counts;
        let queued = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .len() as u64;
        Snapshot {
            rpcs: c.rpcs.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            queued,
        }
    }

    /// Sends `command` (bincode of a `Command`) to `leader`, alone or with the commands
    /// waiting beside it, and waits for its answer. Refused (RESOURCE_EXHAUSTED) when the
    /// queue is full; answered unsent (UNAVAILABLE) when `deadline` passes first; UNIMPLEMENTED
    /// when the leader predates `ProposeMany` (the caller then forwards it on its own).
    pub(crate) async fn forward(&self, leader: u64, command: Vec<u8>, deadline: Instant) -> Answer {
        let c = &self.inner.counts;
        if deadline <= Instant::now() {
            c.expired.fetch_add(1, Ordering::Relaxed);
            return Err(status::expired("write"));
        }
        let (answer, outcome) = oneshot::channel();
        let admitted = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let limit = q.limit;
            q.admit(Waiting {
                leader,
                command,
                deadline,
                answer,
            })
            .map_err(|_| limit)
        };
        match admitted {
            Ok(true) => {
                tokio::spawn(self.inner.clone().drive(leader));
            }
            Ok(false) => {}
            Err(limit) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(status::overloaded(
                    "writes queued for forwarding to the leader",
                    limit,
                ));
            }
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("node is stopping")))
    }
}

impl Inner {
    /// One slot for `leader`: sends what is waiting for it, RPC after RPC, until none is left.
    async fn drive(self: Arc<Inner>, leader: u64) {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_batch(leader, Instant::now());
            let Some((batch, expired)) = next else {
                return;
            };
            self.counts
                .expired
                .fetch_add(expired.len() as u64, Ordering::Relaxed);
            for w in expired {
                let _ = w.answer.send(Err(status::expired("write")));
            }
            if !batch.is_empty() {
                self.send(leader, batch).await;
            }
        }
    }

    /// One `ProposeMany` RPC carrying `batch`, each caller answered with its own result.
    async fn send(&self, leader: u64, batch: Vec<Waiting>) {
        let Some(mut client) = self.peers.client_via(&self.raft, leader) else {
            for w in batch {
                let _ = w.answer.send(Ok(Attempt::NotLeader(None)));
            }
            return;
        };
        let n = batch.len();
        let (req, timeout, answers) = request(self.node, leader, batch, Instant::now());
        let mut req = tonic::Request::new(req);
        req.set_timeout(timeout);
        self.counts.rpcs.fetch_add(1, Ordering::Relaxed);
        self.counts.commands.fetch_add(n as u64, Ordering::Relaxed);
        let started = Instant::now();
        let sent = client.propose_many(req).await;
        self.stages
            .record(crate::stages::Stage::Forward, started.elapsed());
        match sent {
            Ok(reply) => {
                let outcomes = reply.into_inner().outcomes;
                if outcomes.len() != n {
                    let e = format!(
                        "node {leader} answered {} of {n} forwarded commands",
                        outcomes.len()
                    );
                    for answer in answers {
                        let _ = answer.send(Err(status::internal(&e)));
                    }
                    return;
                }
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(answer_of(outcome, leader));
                }
            }
            // A leader of an earlier version: the callers forward one by one (`Propose`).
            // The leader's bounds reach the callers as they are.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unimplemented | tonic::Code::ResourceExhausted
                ) =>
            {
                for answer in answers {
                    let _ = answer.send(Err(s.clone()));
                }
            }
            // The leader may have applied some; a retry carries the same request ids, so each
            // is answered with its first outcome rather than applied twice.
            Err(_) => {
                for answer in answers {
                    let _ = answer.send(Ok(Attempt::NotLeader(None)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_model::Reply;

    fn waiting(n: u8, leader: u64, deadline: Instant) -> (Waiting, oneshot::Receiver<Answer>) {
        let (answer, rx) = oneshot::channel();
        (
            Waiting {
                leader,
                command: vec![n],
                deadline,
                answer,
            },
            rx,
        )
    }

    fn ids(batch: &[Waiting]) -> Vec<u8> {
        batch.iter().map(|w| w.command[0]).collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_lone_write_goes_at_once_and_writes_meanwhile_go_together() {
        let mut q = Queue::new(1024);
        let mut receivers = Vec::new();
        let mut starts = Vec::new();
        for n in 0..200u8 {
            let (w, rx) = waiting(n, 2, later());
            starts.push(q.admit(w).expect("room"));
            receivers.push(rx);
        }
        // Two RPC slots: the first two writes start drivers, the rest wait.
        assert_eq!(&starts[..3], &[true, true, false]);
        assert!(starts[2..].iter().all(|s| !s));
        // The first driver finds the first write alone... in practice: whatever waits by
        // then, up to MAX_BATCH, in arrival order.
        let now = Instant::now();
        let (first, expired) = q.next_batch(2, now).expect("a batch");
        assert!(expired.is_empty());
        assert_eq!(first.len(), MAX_BATCH);
        assert_eq!(ids(&first), (0..MAX_BATCH as u8).collect::<Vec<_>>());
        let (second, _) = q.next_batch(2, now).expect("the rest");
        assert_eq!(
            ids(&second),
            (MAX_BATCH as u8..200).collect::<Vec<_>>(),
            "the rest go together in the next RPC"
        );
        // Both drivers find nothing more and give their slots back, once each.
        assert!(q.next_batch(2, now).is_none());
        assert!(q.next_batch(2, now).is_none());
        assert!(q.in_flight.is_empty());
        // Idle again: the next lone write starts a driver at once.
        let (w, _rx) = waiting(7, 2, later());
        assert!(q.admit(w).expect("room"));
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let mut q = Queue::new(3);
        let mut receivers = Vec::new();
        for n in 0..3 {
            let (w, rx) = waiting(n, 2, later());
            q.admit(w).expect("room");
            receivers.push(rx);
        }
        let (w, mut rx) = waiting(9, 2, later());
        assert!(q.admit(w).is_err(), "full");
        // Not kept: its answer channel is dropped with it.
        assert_eq!(
            rx.try_recv().unwrap_err(),
            oneshot::error::TryRecvError::Closed
        );
        assert_eq!(
            q.waiting.iter().map(|w| w.command[0]).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // Taking a batch makes room again.
        let (batch, _) = q.next_batch(2, Instant::now()).expect("a batch");
        assert_eq!(ids(&batch), vec![0, 1, 2]);
        let (w, _rx) = waiting(10, 2, later());
        assert!(q.admit(w).is_ok());
    }

    #[test]
    fn expired_and_abandoned_writes_are_not_sent() {
        let now = Instant::now();
        let mut q = Queue::new(16);
        let (live, _live_rx) = waiting(1, 2, now + Duration::from_secs(60));
        let (late, _late_rx) = waiting(2, 2, now - Duration::from_millis(1));
        let (gone, gone_rx) = waiting(3, 2, now + Duration::from_secs(60));
        let (due, _due_rx) = waiting(4, 2, now);
        drop(gone_rx);
        for w in [live, late, gone, due] {
            q.admit(w).expect("room");
        }
        let (batch, expired) = q.next_batch(2, now).expect("a batch");
        assert_eq!(ids(&batch), vec![1]);
        assert_eq!(ids(&expired), vec![2, 3, 4]);
        // A queue of only expired writes answers them; the slot is given back on the next ask.
        let (late, _rx) = waiting(5, 2, now);
        q.admit(late).expect("room");
        let (batch, expired) = q.next_batch(2, now).expect("the expired write");
        assert!(batch.is_empty());
        assert_eq!(ids(&expired), vec![5]);
        let before = q.in_flight[&2];
        assert!(q.next_batch(2, now).is_none());
        assert_eq!(q.in_flight.get(&2).copied().unwrap_or(0), before - 1);
    }

    #[test]
    fn each_leader_has_its_own_slots_and_batches() {
        let mut q = Queue::new(16);
        let mut keep = Vec::new();
        let mut starts = Vec::new();
        for (n, leader) in [(0, 2), (1, 2), (2, 2), (3, 3), (4, 2), (5, 3)] {
            let (w, rx) = waiting(n, leader, later());
            starts.push(q.admit(w).expect("room"));
            keep.push(rx);
        }
        assert_eq!(starts, vec![true, true, false, true, false, true]);
        let now = Instant::now();
        let (to_2, _) = q.next_batch(2, now).expect("leader 2's");
        assert_eq!(ids(&to_2), vec![0, 1, 2, 4]);
        let (to_3, _) = q.next_batch(3, now).expect("leader 3's");
        assert_eq!(ids(&to_3), vec![3, 5]);
        assert!(q.waiting.is_empty());
    }

    #[test]
    fn each_command_travels_with_its_own_deadline_and_the_rpc_waits_for_the_latest() {
        let now = Instant::now();
        let (a, _ra) = waiting(1, 2, now + Duration::from_millis(300));
        let (b, _rb) = waiting(2, 2, now + Duration::from_millis(5000));
        let (c, _rc) = waiting(3, 2, now + Duration::from_micros(200));
        let (req, timeout, answers) = request(7, 2, vec![a, b, c], now);
        assert_eq!((req.from, req.target), (7, 2));
        assert_eq!(answers.len(), 3);
        let sent: Vec<(u8, u64)> = req
            .commands
            .iter()
            .map(|c| (c.command[0], c.deadline_ms))
            .collect();
        // Under a millisecond left is sent as 1 (0 would mean "not stated").
        assert_eq!(sent, vec![(1, 300), (2, 5000), (3, 1)]);
        assert_eq!(timeout, Duration::from_millis(5000));
        // A batch of short deadlines still gets the minimum timeout.
        let (d, _rd) = waiting(4, 2, now + Duration::from_millis(3));
        assert_eq!(request(7, 2, vec![d], now).1, MIN_TIMEOUT);
    }

    #[test]
    fn each_answer_is_read_on_its_own() {
        let applied = Outcome::Applied(Reply::Empty);
        let done = ForwardedOutcome {
            outcome: crate::codec::encode(&applied).unwrap(),
            ..Default::default()
        };
        assert!(matches!(answer_of(done, 2), Ok(Attempt::Done(o)) if o == applied));
        let moved = ForwardedOutcome {
            not_leader: true,
            leader_hint: 3,
            ..Default::default()
        };
        assert!(matches!(
            answer_of(moved, 2),
            Ok(Attempt::NotLeader(Some(3)))
        ));
        // A hint naming the node asked is no hint.
        let stale = ForwardedOutcome {
            not_leader: true,
            leader_hint: 2,
            ..Default::default()
        };
        assert!(matches!(answer_of(stale, 2), Ok(Attempt::NotLeader(None))));
        let full = ForwardedOutcome {
            code: tonic::Code::ResourceExhausted as i32,
            message: "custos: too many writes in flight".into(),
            ..Default::default()
        };
        let e = answer_of(full, 2).expect_err("the leader's bound passes through");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(e.message(), "custos: too many writes in flight");
        let late = ForwardedOutcome {
            code: tonic::Code::Unavailable as i32,
            message: "expired".into(),
            ..Default::default()
        };
        assert!(matches!(answer_of(late, 2), Ok(Attempt::NotLeader(None))));
    }
}
