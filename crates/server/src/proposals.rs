//! Group commit on the leader: writes that arrive while earlier entries are still committing
//! share one Raft entry (`Op::Batch`).
//!
//! openraft 0.9 appends and flushes every client write as an entry of its own, one after
//! another on the Raft core task, which waits for each flush: N concurrent writers cost the
//! leader N log flushes in a row. Here at most [`MAX_IN_FLIGHT`] entries are in flight; a write
//! that finds them all busy joins a queue, and as soon as a slot frees the whole queue (up to
//! [`MAX_BATCH`] commands) goes out as the next entry. A lone writer never waits: with a slot
//! free its command is proposed at once, as an entry of its own, as before.
//!
//! The queue is bounded (`[limits] max_queued_proposals`): a write that finds it full is
//! answered RESOURCE_EXHAUSTED at once, whether it came from a client of this member or was
//! forwarded by a follower. A waiting write whose caller's deadline passed, or whose caller
//! went away, is dropped when its turn comes instead of being proposed.
//!
//! Apply takes a batch apart and applies each command exactly as if it had its own entry
//! (`State::apply`), so authorization, request-id deduplication, outcomes and audit records are
//! per command, and a retried command is answered from its first outcome whichever entry
//! carried it.

use crate::node::{now_ms, Attempt};
use crate::status;
use custos_model::{Command, NodeId, Op, Outcome, Reply, RequestId};
use custos_store::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;
use tonic::Status;

/// Entries this leader has proposed and not yet seen committed, at most: two keep the log
/// flush of one overlapping the replication of the other.
pub const MAX_IN_FLIGHT: usize = 2;

/// Commands in one batch, at most.
pub const MAX_BATCH: usize = 128;

type Answer = Result<Attempt<Outcome>, Status>;

struct Waiting {
    cmd: Command,
    /// When it joined the queue.
    queued_at: Instant,
    answer: oneshot::Sender<Answer>,
    /// When the caller stops waiting (none: internal work that waits as long as it takes).
    deadline: Option<Instant>,
}

/// [`Queue::admit`] found `limit` commands waiting.
#[derive(Debug)]
struct QueueFull;

/// The commands waiting for an entry slot, at most `limit`, and the slots taken.
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
    limit: usize,
}

impl Queue {
    fn new(limit: usize) -> Queue {
        Queue {
            waiting: VecDeque::new(),
            in_flight: 0,
            limit,
        }
    }

    /// Queues `w` unless the queue is full (then `w` is dropped); true when a slot was free
    /// and the caller must start a driver for it.
    fn admit(&mut self, w: Waiting) -> Result<bool, QueueFull> {
        if self.waiting.len() >= self.limit {
            return Err(QueueFull);
        }
        self.waiting.push_back(w);
        let free = self.in_flight < MAX_IN_FLIGHT;
        if free {
            self.in_flight += 1;
        }
        Ok(free)
    }

    /// The next batch: up to [`MAX_BATCH`] waiting commands whose callers still wait, in
    /// order. Those whose deadline passed by `now` come back apart (to be answered, not
    /// proposed); those whose caller went away are dropped. `None` when nothing is left (the
    /// slot is then given back).
    fn next_batch(&mut self, now: Instant) -> Option<(Vec<Waiting>, Vec<Waiting>)> {
        let (mut batch, mut expired) = (Vec::new(), Vec::new());
        while batch.len() < MAX_BATCH {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            if w.answer.is_closed() || w.deadline.is_some_and(|d| d <= now) {
                expired.push(w);
            } else {
                batch.push(w);
            }
        }
        if batch.is_empty() && expired.is_empty() {
            self.in_flight -= 1;
            return None;
        }
        Some((batch, expired))
    }
}

struct Inner {
    raft: Raft,
    node: u64,
    stages: Arc<crate::stages::Stages>,
    queue: Mutex<Queue>,
    counts: Counts,
}

/// What the batcher has proposed and turned away, for `/metrics`.
#[derive(Default)]
pub struct Counts {
    /// Entries proposed (a single command or a batch each).
    pub entries: AtomicU64,
    /// Commands proposed, alone or in batches.
    pub commands: AtomicU64,
    /// Commands refused because the queue was full.
    pub rejected: AtomicU64,
    /// Commands dropped unproposed: their deadline passed or their caller went away.
    pub expired: AtomicU64,
    /// Entries no longer waited for because this node stopped leading before they were
    /// answered (their callers retry at the new leader).
    pub abandoned: AtomicU64,
}

/// The batcher's counters and queue depth at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub entries: u64,
    pub commands: u64,
    pub rejected: u64,
    pub expired: u64,
    pub abandoned: u64,
    /// Commands waiting for an entry slot now.
    pub queued: u64,
}

/// The leader's proposal queue (idle on followers, which forward instead).
#[derive(Clone)]
pub struct ProposalBatcher {
    inner: Arc<Inner>,
}

impl ProposalBatcher {
    /// A batcher whose queue holds at most `max_queued` commands.
    pub fn new(
        raft: Raft,
        node: u64,
        max_queued: usize,
        stages: Arc<crate::stages::Stages>,
    ) -> ProposalBatcher {
        ProposalBatcher {
            inner: Arc::new(Inner {
                raft,
                node,
                stages,
                queue: Mutex::new(Queue::new(max_queued)),
                counts: Counts::default(),
            }),
        }
    }

    /// What the batcher did so far, and its queue depth now.
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
            entries: c.entries.load(Ordering::Relaxed),
            commands: c.commands.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            queued,
        }
    }

    /// Proposes `cmd` (already stamped with the leader's time) alone or with the commands
    /// waiting beside it, and waits for its outcome. Refused (RESOURCE_EXHAUSTED) when the
    /// queue is full; dropped unproposed (UNAVAILABLE) when `deadline` passes first.
    pub(crate) async fn propose(&self, cmd: Command, deadline: Option<Instant>) -> Answer {
        let c = &self.inner.counts;
        if deadline.is_some_and(|d| d <= Instant::now()) {
            c.expired.fetch_add(1, Ordering::Relaxed);
            return Err(status::expired("write"));
        }
        let (answer, outcome) = oneshot::channel();
        let admitted = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let limit = q.limit;
            q.admit(Waiting {
                cmd,
                queued_at: Instant::now(),
                answer,
                deadline,
            })
            .map_err(|_| limit)
        };
        let start = match admitted {
            Ok(start) => start,
            Err(limit) => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(status::overloaded("writes queued for proposal", limit));
            }
        };
        if start {
            tokio::spawn(self.inner.clone().drive());
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("node is stopping")))
    }
}

impl Inner {
    /// One slot: proposes what is waiting, entry after entry, until the queue is empty.
    async fn drive(self: Arc<Inner>) {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_batch(Instant::now());
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
                self.submit(batch).await;
            }
        }
    }

    async fn submit(&self, mut batch: Vec<Waiting>) {
        let now = Instant::now();
        for w in &batch {
            self.stages.record(
                crate::stages::Stage::Queue,
                now.saturating_duration_since(w.queued_at),
            );
        }
        self.counts.entries.fetch_add(1, Ordering::Relaxed);
        self.counts
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if batch.len() == 1 {
            let one = batch.pop().expect("one");
            let _ = one.answer.send(self.write(one.cmd).await);
            return;
        }
        let (commands, answers): (Vec<Command>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|w| (w.cmd, w.answer)).unzip();
        let n = commands.len();
        let cmd = Command {
            request_id: RequestId(format!("batch/{}/{}", self.node, uuid::Uuid::new_v4())),
            identity: crate::duties::node_identity(self.node),
            time_ms: now_ms(),
            origin: NodeId(self.node),
            op: Op::Batch { commands },
        };
        match self.write(cmd).await {
            Ok(Attempt::Done(Outcome::Applied(Reply::Batch { outcomes })))
                if outcomes.len() == n =>
            {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(Attempt::Done(outcome)));
                }
            }
            Ok(Attempt::Done(other)) => {
                let e = format!("a batch of {n} commands was answered with {other:?}");
                for answer in answers {
                    let _ = answer.send(Err(status::internal(&e)));
                }
            }
            Ok(Attempt::NotLeader(hint)) => {
                for answer in answers {
                    let _ = answer.send(Ok(Attempt::NotLeader(hint)));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }

    /// One entry through openraft, waited for only while this node leads in the term it was
    /// proposed in.
    ///
    /// openraft 0.9 answers a proposal when its entry is applied here or truncated here. An
    /// entry this node proposed, lost leadership over, and then received inside an installed
    /// snapshot is neither: its caller would wait forever, and with it one of the
    /// [`MAX_IN_FLIGHT`] slots, so a member that led again later could never propose (the
    /// overload run of issue #20 stalled so after leadership churn). Once the term or the
    /// leader changes the outcome is unknown here: the callers are told to retry at the
    /// leader, with the same request ids, so a command that was committed after all is
    /// answered from its first outcome instead of being applied twice.
    async fn write(&self, cmd: Command) -> Answer {
        let mut metrics = self.raft.metrics();
        let term = {
            let m = metrics.borrow_and_update();
            if m.current_leader != Some(self.node) {
                return Ok(Attempt::NotLeader(m.current_leader));
            }
            m.current_term
        };
        let started = Instant::now();
        let write = self.raft.client_write(cmd);
        tokio::pin!(write);
        let result = loop {
            tokio::select! {
                result = &mut write => {
                    self.stages.record(crate::stages::Stage::Raft, started.elapsed());
                    break result;
                }
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Err(Status::unavailable("node is stopping"));
                    }
                    let m = metrics.borrow_and_update();
                    if m.current_term != term || m.current_leader != Some(self.node) {
                        self.counts.abandoned.fetch_add(1, Ordering::Relaxed);
                        return Ok(Attempt::NotLeader(
                            m.current_leader.filter(|l| *l != self.node),
                        ));
                    }
                }
            }
        };
        match result {
            Ok(resp) => Ok(Attempt::Done(resp.data)),
            // Discarded: this node lost leadership before the entry committed; whether it
            // commits under the next leader is unknown, so the callers retry there with the
            // same request ids (applied once either way).
            // This node led when the write was handed to Raft (checked above): openraft 0.10
            // answers so itself when the node lost leadership before the entry was answered
            // (discarded, or refused once no longer leading). Abandoned, as when the metrics
            // watch above notices it first.
            Err(RaftError::APIError(
                ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f),
            )) => {
                self.counts.abandoned.fetch_add(1, Ordering::Relaxed);
                Ok(Attempt::NotLeader(f.leader_id.filter(|l| *l != self.node)))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(status::internal(e))
            }
            Err(RaftError::APIError(ClientWriteError::PreconditionFailed(e))) => {
                Err(status::internal(e))
            }
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("node is stopping: {f}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn waiting(n: u64, deadline: Option<Instant>) -> (Waiting, oneshot::Receiver<Answer>) {
        let (answer, rx) = oneshot::channel();
        let cmd = Command {
            request_id: RequestId(format!("r{n}")),
            identity: crate::duties::node_identity(1),
            time_ms: 0,
            origin: NodeId(1),
            op: Op::CordonNode { id: NodeId(n) },
        };
        (
            Waiting {
                cmd,
                queued_at: Instant::now(),
                answer,
                deadline,
            },
            rx,
        )
    }

    fn ids(batch: &[Waiting]) -> Vec<String> {
        batch.iter().map(|w| w.cmd.request_id.0.clone()).collect()
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let mut q = Queue::new(3);
        let mut receivers = Vec::new();
        let mut starts = Vec::new();
        for n in 0..3 {
            let (w, rx) = waiting(n, None);
            starts.push(q.admit(w).map_err(|_| ()).expect("room"));
            receivers.push(rx);
        }
        // Two entry slots: the first two writes start drivers, the third joins the queue.
        assert_eq!(starts, vec![true, true, false]);
        let (w, mut rx) = waiting(9, None);
        assert!(q.admit(w).is_err(), "full");
        // Not kept: its answer channel is dropped with it, and the queue holds the first three.
        assert_eq!(
            rx.try_recv().unwrap_err(),
            oneshot::error::TryRecvError::Closed
        );
        assert_eq!(q.waiting.len(), 3);
        assert!(q.waiting.iter().all(|w| w.cmd.request_id.0 != "r9"));
        // Taking a batch makes room again.
        let (batch, expired) = q.next_batch(Instant::now()).expect("a batch");
        assert_eq!(
            (ids(&batch), expired.len()),
            (vec!["r0".into(), "r1".into(), "r2".into()], 0)
        );
        let (w, _rx) = waiting(10, None);
        assert!(q.admit(w).is_ok());
    }

    #[test]
    fn expired_and_abandoned_writes_are_not_proposed() {
        let now = Instant::now();
        let mut q = Queue::new(16);
        let (live, _live_rx) = waiting(1, Some(now + Duration::from_secs(60)));
        let (late, _late_rx) = waiting(2, Some(now - Duration::from_millis(1)));
        let (gone, gone_rx) = waiting(3, Some(now + Duration::from_secs(60)));
        let (internal, _internal_rx) = waiting(4, None);
        drop(gone_rx);
        for w in [live, late, gone, internal] {
            let _ = q.admit(w).map_err(|_| ()).expect("room");
        }
        let (batch, expired) = q.next_batch(now).expect("a batch");
        assert_eq!(ids(&batch), vec!["r1".to_string(), "r4".to_string()]);
        assert_eq!(ids(&expired), vec!["r2".to_string(), "r3".to_string()]);
        // Nothing left: the slot is given back.
        let in_flight = q.in_flight;
        assert!(q.next_batch(now).is_none());
        assert_eq!(q.in_flight, in_flight - 1);
    }

    #[test]
    fn a_queue_of_only_expired_writes_answers_them_and_frees_the_slot() {
        let now = Instant::now();
        let mut q = Queue::new(4);
        let (late, _rx) = waiting(1, Some(now));
        assert!(q.admit(late).map_err(|_| ()).expect("room"));
        let (batch, expired) = q.next_batch(now).expect("the expired write");
        assert!(batch.is_empty());
        assert_eq!(ids(&expired), vec!["r1".to_string()]);
        // The driver answers them and asks again: only then is the slot given back, once.
        assert_eq!(q.in_flight, 1);
        assert!(q.next_batch(now).is_none());
        assert_eq!(q.in_flight, 0);
    }
}
