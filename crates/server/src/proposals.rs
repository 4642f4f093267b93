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
//! Apply takes a batch apart and applies each command exactly as if it had its own entry
//! (`State::apply`), so authorization, request-id deduplication, outcomes and audit records are
//! per command, and a retried command is answered from its first outcome whichever entry
//! carried it.

use crate::node::{now_ms, Attempt};
use crate::status;
use custos_model::{Command, NodeId, Op, Outcome, Reply, RequestId};
use custos_store::Raft;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

struct Inner {
    raft: Raft,
    node: u64,
    queue: Mutex<Queue>,
    counts: Counts,
}

/// What the batcher has proposed, for `/metrics`.
#[derive(Default)]
pub struct Counts {
    /// Entries proposed (a single command or a batch each).
    pub entries: AtomicU64,
    /// Commands proposed, alone or in batches.
    pub commands: AtomicU64,
}

/// The leader's proposal queue (idle on followers, which forward instead).
#[derive(Clone)]
pub struct ProposalBatcher {
    inner: Arc<Inner>,
}

impl ProposalBatcher {
    pub fn new(raft: Raft, node: u64) -> ProposalBatcher {
        ProposalBatcher {
            inner: Arc::new(Inner {
                raft,
                node,
                queue: Mutex::new(Queue::default()),
                counts: Counts::default(),
            }),
        }
    }

    /// Entries and commands proposed so far.
    pub fn counts(&self) -> (u64, u64) {
        let c = &self.inner.counts;
        (
            c.entries.load(Ordering::Relaxed),
            c.commands.load(Ordering::Relaxed),
        )
    }

    /// Proposes `cmd` (already stamped with the leader's time) alone or with the commands
    /// waiting beside it, and waits for its outcome.
    pub(crate) async fn propose(&self, cmd: Command) -> Answer {
        let (answer, outcome) = oneshot::channel();
        let start = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push_back(Waiting { cmd, answer });
            let free = q.in_flight < MAX_IN_FLIGHT;
            if free {
                q.in_flight += 1;
            }
            free
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
            let batch: Vec<Waiting> = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.waiting.is_empty() {
                    q.in_flight -= 1;
                    return;
                }
                let n = q.waiting.len().min(MAX_BATCH);
                q.waiting.drain(..n).collect()
            };
            self.submit(batch).await;
        }
    }

    async fn submit(&self, mut batch: Vec<Waiting>) {
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

    /// One entry through openraft.
    async fn write(&self, cmd: Command) -> Answer {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(Attempt::Done(resp.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Ok(Attempt::NotLeader(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(status::internal(e))
            }
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("node is stopping: {f}"))),
        }
    }
}
