//! A running member: Raft, the replicated state, and the paths every request takes through them.

use crate::config::ServerConfig;
use crate::network::PeerClients;
use crate::status;
use custos_auth::Authenticator;
use custos_model::{Command, Identity, NodeId, Op, Outcome, Reply, RequestId};
use custos_proto::custos::raft::v1::{ProposeRequest, ReadIndexRequest};
use custos_store::{Member, Raft, SharedState};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{LinearizableReadError, RaftError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::Status;

/// A leader counts as live while a quorum acknowledged it within this many milliseconds.
const QUORUM_ACK_FRESH_MS: u64 = 1000;

/// How long to pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Shared by every service of one node.
pub struct Node {
    pub id: u64,
    pub config: ServerConfig,
    pub raft: Raft,
    pub state: SharedState,
    /// `None` when auth is disabled. Swapped whole on reload (SIGHUP), so a request sees
    /// either the old keys or the new ones.
    pub auth: std::sync::RwLock<Option<Arc<Authenticator>>>,
    /// The OpenID provider issuers' key sets and fetchers, kept across reloads.
    pub oidc: crate::oidc::OidcRegistry,
    pub peers: PeerClients,
    /// TLS material in force (none with `insecure = true`); SIGHUP reloads it.
    pub tls: NodeTls,
    pub liveness: crate::liveness::Liveness,
    /// When this node last accepted AppendEntries, for prompt elections.
    pub leader_contact: crate::election::LeaderContact,
    /// Puts the writes that arrive while earlier entries commit into one entry (group commit).
    pub proposals: crate::proposals::ProposalBatcher,
    /// Sends the writes that arrive while earlier ones are being forwarded to the leader
    /// together (as follower).
    pub forwarder: crate::forwarder::Forwarder,
    /// Where writes' time goes (`/debug/write-stages`).
    pub stages: Arc<crate::stages::Stages>,
    /// Writes this member handles at once (`[limits] max_writes_in_flight`).
    pub write_slots: Arc<crate::bounds::Gate>,
    /// Linearizable reads and refusal confirmations waiting for a read index at once
    /// (`[limits] max_read_waiters`).
    pub read_slots: Arc<crate::bounds::Gate>,
    /// Shares leadership confirmations among concurrent linearizable reads (as leader).
    pub read_batcher: ReadIndexBatcher,
    /// Shares `ReadIndex` RPCs to the leader among concurrent linearizable reads (as follower).
    pub remote_reads: ReadIndexBatcher,
    /// Local audit and access logs, denial batching, and the replicated trail's reader.
    pub audit: crate::audit::Audit,
    /// Prometheus counters (`/metrics` on `metrics_listen`).
    pub metrics: crate::metrics::Metrics,
    /// Set while this leader hands leadership over: writes wait for the next leader.
    pub transferring: std::sync::atomic::AtomicBool,
    /// This node's data-directory incarnation (see `StorageNodeRecord::incarnation`).
    pub incarnation: u64,
    /// Writes backup files of the replicated state (`ClusterAdmin.Backup`).
    pub backup: custos_store::BackupSource,
    /// The cluster data key(s) sealing credential secrets; `None` when none is configured.
    pub data_keys: Option<Arc<crate::secrets::DataKeys>>,
}

/// The TLS configurations of one node, each replaceable on SIGHUP.
pub struct NodeTls {
    /// How this node reaches its peers.
    pub peer_client: Arc<crate::tls::PeerClientTls>,
    /// The peer, SDK and REST listeners' server configurations (those served over TLS).
    pub servers: Vec<Arc<crate::tls::ReloadableServer>>,
}

/// Where a linearizable or a local read is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Serializable,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Result of trying to propose or read on this node when it might not be the leader.
#[derive(Clone, Debug)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// Not the leader; maybe it knows who is.
    NotLeader(Option<u64>),
}

impl Node {
    /// The authenticator in force, if auth is enabled.
    pub fn authenticator(&self) -> Option<Arc<Authenticator>> {
        self.auth.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the auth section and its key files; on any error the old keys stay in force.
    pub fn reload_auth(&self, config: &ServerConfig) -> Result<(), String> {
        if config.auth_enabled != self.config.auth_enabled {
            return Err("auth_enabled cannot change without a restart".into());
        }
        if !config.auth_enabled {
            return Ok(());
        }
        let fresh = self
            .oidc
            .authenticator(&config.auth)
            .map_err(|e| e.to_string())?;
        let issuers: Vec<String> = fresh.issuers().map(str::to_string).collect();
        *self.auth.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fresh));
        tracing::info!(node = self.id, ?issuers, "reloaded authentication keys");
        Ok(())
    }

    /// Re-reads the `[tls]` files (certificate, key, CAs); on any error the material in force
    /// stays. New connections use the fresh material; established ones keep theirs.
    pub fn reload_tls(&self, config: &ServerConfig) -> Result<(), String> {
        let Some(settings) = config.tls.as_ref() else {
            return match self.config.tls {
                None => Ok(()),
                Some(_) => Err("[tls] cannot be removed without a restart".into()),
            };
        };
        if self.config.tls.is_none() {
            return Err("[tls] cannot be added without a restart".into());
        }
        if settings.sdk != self.config.tls.as_ref().is_some_and(|t| t.sdk) {
            return Err("[tls] sdk cannot change without a restart".into());
        }
        // All or nothing: every configuration is built before any is put in force.
        let servers = self
            .tls
            .servers
            .iter()
            .map(|server| server.prepare(settings))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let client = self
            .tls
            .peer_client
            .prepare(settings)
            .map_err(|e| e.to_string())?;
        for (server, fresh) in self.tls.servers.iter().zip(servers) {
            server.install(fresh);
        }
        self.tls.peer_client.install(client);
        self.peers.forget();
        tracing::info!(node = self.id, "reloaded TLS certificates");
        Ok(())
    }

    /// Whether this node can serve: it knows a leader and, if it is that leader, a quorum has
    /// acknowledged it recently. (openraft restores a restarted leader whose vote was
    /// committed as leader at once, before any quorum confirms it.)
    pub fn has_live_leader(&self, m: &custos_store::RaftMetrics) -> bool {
        match m.current_leader {
            Some(leader) if leader == self.id => m.last_quorum_acked.as_ref().is_some_and(|at| {
                openraft::Instant::elapsed(&**at) < Duration::from_millis(QUORUM_ACK_FRESH_MS)
            }),
            Some(_) => m.running_state.is_ok(),
            None => false,
        }
    }

    /// The incarnation the replicated node registry records for `id` (0 = not known).
    pub fn registered_incarnation(&self, id: u64) -> u64 {
        registered_incarnation(&self.state, id)
    }

    /// Whether the replicated state records member id `id` as removed (`Op::RetireNode`).
    pub fn is_retired(&self, id: u64) -> bool {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_retired(NodeId(id))
    }

    /// Whether the replicated node registry holds `id`.
    pub fn is_registered(&self, id: u64) -> bool {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .node(NodeId(id))
            .is_some()
    }

    /// The leader this node currently knows of.
    pub fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// All members of the current configuration, voters and learners.
    pub fn members(&self) -> BTreeMap<u64, (Member, bool)> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, m)| (*id, (m.clone(), voters.contains(id))))
            .collect()
    }

    /// Proposes an operation on behalf of `identity` and waits for its outcome, forwarding to
    /// the leader when this node is a follower and retrying across elections until `deadline`.
    pub async fn write(
        &self,
        identity: Identity,
        request_id: RequestId,
        op: Op,
        deadline: Instant,
    ) -> Result<Reply, Status> {
        let cmd = Command {
            request_id,
            identity,
            time_ms: 0,
            origin: NodeId(self.id),
            op,
        };
        let _slot = self.enter_write()?;
        crate::access::mark_write();
        let outcome = self.propose(cmd, deadline).await?;
        outcome.into_result().map_err(status::from_rejection)
    }

    /// A slot for one write on this member, or RESOURCE_EXHAUSTED when all are taken.
    pub(crate) fn enter_write(&self) -> Result<crate::bounds::Slot, Status> {
        self.write_slots
            .try_enter()
            .ok_or_else(|| status::overloaded("writes in flight", self.write_slots.limit()))
    }

    async fn propose(&self, cmd: Command, deadline: Instant) -> Result<Outcome, Status> {
        let started = Instant::now();
        let result = self.propose_until(cmd, deadline).await;
        self.stages
            .record(crate::stages::Stage::Propose, started.elapsed());
        result
    }

    async fn propose_until(&self, cmd: Command, deadline: Instant) -> Result<Outcome, Status> {
        let mut hint = self.current_leader();
        loop {
            let attempt = match hint {
                // Bounded by the deadline: a leader that lost its quorum never commits, and
                // the client must get UNAVAILABLE, not a cancelled call. The request id makes
                // a retry safe if it did commit after all.
                Some(leader) if leader == self.id => tokio::time::timeout_at(
                    deadline.into(),
                    self.propose_local(cmd.clone(), Some(deadline)),
                )
                .await
                .map_err(|_| status::no_leader("write not committed before the deadline"))??,
                Some(leader) => self.propose_remote(leader, &cmd, deadline).await?,
                None => Attempt::NotLeader(None),
            };
            match attempt {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::NotLeader(next) => {
                    if Instant::now() >= deadline {
                        return Err(status::no_leader("write not accepted"));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    hint = next.or_else(|| self.current_leader());
                }
            }
        }
    }

    /// Proposes on this node, which believes it leads: stamps the leader time first. A write
    /// still waiting for its turn when `deadline` passes is not proposed.
    pub(crate) async fn propose_local(
        &self,
        mut cmd: Command,
        deadline: Option<Instant>,
    ) -> Result<Attempt<Outcome>, Status> {
        if self.transferring.load(std::sync::atomic::Ordering::SeqCst) {
            // Handing leadership over: the successor takes this write once elected.
            return Ok(Attempt::NotLeader(None));
        }
        cmd.time_ms = now_ms();
        self.proposals.propose(cmd, deadline).await
    }

    /// `cmd` as a forwarded request to `leader`, with what is left of `deadline` (at least
    /// 50 ms) as its timeout; `None` when it cannot be encoded.
    pub(crate) fn forward_request(
        &self,
        leader: u64,
        cmd: &Command,
        deadline: Instant,
    ) -> Option<tonic::Request<ProposeRequest>> {
        let command = crate::codec::encode(cmd).ok()?;
        let mut req = tonic::Request::new(ProposeRequest {
            from: self.id,
            target: leader,
            command,
        });
        req.set_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50)),
        );
        Some(req)
    }

    /// Forwards `cmd` to `leader`, alone or with the writes forwarded meanwhile
    /// (`forwarder.rs`). The leader's own bounds reach the caller as they are
    /// (RESOURCE_EXHAUSTED: retrying here at once would only add to its load); other failures
    /// are retried.
    async fn propose_remote(
        &self,
        leader: u64,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<Attempt<Outcome>, Status> {
        let Ok(command) = crate::codec::encode(cmd) else {
            return Ok(Attempt::NotLeader(None));
        };
        match self.forwarder.forward(leader, command, deadline).await {
            // A leader that predates `ProposeMany`: one `Propose` for this write.
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                self.propose_one(leader, cmd, deadline).await
            }
            answer => answer,
        }
    }

    /// Forwards `cmd` to `leader` on its own, with one `Propose` RPC.
    async fn propose_one(
        &self,
        leader: u64,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<Attempt<Outcome>, Status> {
        let Some(mut client) = self.peers.client(self, leader) else {
            return Ok(Attempt::NotLeader(None));
        };
        let Some(req) = self.forward_request(leader, cmd, deadline) else {
            return Ok(Attempt::NotLeader(None));
        };
        let started = Instant::now();
        let forwarded = client.propose(req).await;
        self.stages
            .record(crate::stages::Stage::Forward, started.elapsed());
        Ok(match forwarded {
            Ok(reply) => {
                let reply = reply.into_inner();
                if reply.not_leader {
                    let hint = (reply.leader_hint != 0).then_some(reply.leader_hint);
                    return Ok(Attempt::NotLeader(hint.filter(|h| *h != leader)));
                }
                match crate::codec::decode::<Outcome>(&reply.outcome) {
                    Ok(outcome) => Attempt::Done(outcome),
                    Err(_) => Attempt::NotLeader(None),
                }
            }
            Err(s) if s.code() == tonic::Code::ResourceExhausted => return Err(s),
            // The leader may have applied it; a retry carries the same request id, so it
            // is answered with the first outcome rather than applied twice.
            Err(_) => Attempt::NotLeader(None),
        })
    }

    /// Waits until this node's state reflects every write acknowledged before the call.
    pub async fn read_barrier(
        &self,
        consistency: Consistency,
        deadline: Instant,
    ) -> Result<(), Status> {
        if consistency == Consistency::Serializable {
            return Ok(());
        }
        let _slot = self.read_slots.try_enter().ok_or_else(|| {
            status::overloaded("linearizable reads waiting", self.read_slots.limit())
        })?;
        let mut hint = self.current_leader();
        loop {
            let attempt = match hint {
                Some(leader) if leader == self.id => {
                    tokio::time::timeout_at(deadline.into(), self.read_index_local())
                        .await
                        .map_err(|_| {
                            status::no_leader("leadership not confirmed before the deadline")
                        })??
                }
                Some(leader) => self.read_index_remote(leader, deadline).await,
                None => Attempt::NotLeader(None),
            };
            match attempt {
                Attempt::Done(index) => return self.wait_applied(index, deadline).await,
                Attempt::NotLeader(next) => {
                    if Instant::now() >= deadline {
                        return Err(status::no_leader("linearizable read not possible"));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                    hint = next.or_else(|| self.current_leader());
                }
            }
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the read index. Concurrent
    /// callers share one confirmation (see [`ReadIndexBatcher`]).
    pub(crate) async fn read_index_local(&self) -> Result<Attempt<u64>, Status> {
        let raft = self.raft.clone();
        self.read_batcher
            .read_index(self.id, move || {
                Box::pin(async move { confirm_leadership(&raft).await })
            })
            .await
    }
}

/// One read-index round shared by every read that arrived before it started.
type Round =
    futures::future::Shared<futures::future::BoxFuture<'static, Result<Attempt<u64>, Status>>>;

/// Batches read-index requests, as etcd does: at most one round is in flight; reads arriving
/// meanwhile wait for the next one together. On the leader a round is a leadership
/// confirmation (a heartbeat round to a quorum); on a follower it is one `ReadIndex` RPC to the
/// leader, answered the same way there. A read never joins a round that started before it
/// arrived, so the index it gets is at least the commit index at its arrival: reads stay
/// linearizable.
#[derive(Default)]
pub struct ReadIndexBatcher {
    /// The round not yet started, which new reads join: the leader it asks, its number, itself.
    pending: Arc<std::sync::Mutex<Option<(u64, u64, Round)>>>,
    /// Numbers rounds, so a starting round takes only itself out of `pending`; also the count
    /// of rounds so far.
    rounds: std::sync::atomic::AtomicU64,
    /// Reads served by rounds so far.
    reads: std::sync::atomic::AtomicU64,
    /// Held by the round in flight.
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl ReadIndexBatcher {
    /// Reads asked for and rounds run for them so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.reads.load(Relaxed), self.rounds.load(Relaxed))
    }

    /// Joins the next round that asks `leader`, or starts one with `ask` (run once the round
    /// before it ended). A pending round for another leader is not joined.
    async fn read_index(
        &self,
        leader: u64,
        ask: impl FnOnce() -> futures::future::BoxFuture<'static, Result<Attempt<u64>, Status>>,
    ) -> Result<Attempt<u64>, Status> {
        use futures::FutureExt;
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let round = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match &*pending {
                Some((asked, _, round)) if *asked == leader => round.clone(),
                _ => {
                    let number = self
                        .rounds
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (pending_slot, gate, asking) =
                        (self.pending.clone(), self.gate.clone(), ask());
                    let round: Round = async move {
                        let _in_flight = gate.lock_owned().await;
                        // Started: reads arriving from now on wait for the next round.
                        {
                            let mut slot = pending_slot.lock().unwrap_or_else(|p| p.into_inner());
                            if slot.as_ref().is_some_and(|(_, n, _)| *n == number) {
                                slot.take();
                            }
                        }
                        asking.await
                    }
                    .boxed()
                    .shared();
                    *pending = Some((leader, number, round.clone()));
                    round
                }
            }
        };
        round.await
    }
}

/// One leadership confirmation with a quorum; the read index on success.
async fn confirm_leadership(raft: &Raft) -> Result<Attempt<u64>, Status> {
    match raft.get_read_log_id(openraft::ReadPolicy::ReadIndex).await {
        Ok((read, _applied)) => Ok(Attempt::Done(read.index())),
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
            Ok(Attempt::NotLeader(f.leader_id))
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
            Ok(Attempt::NotLeader(None))
        }
        Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!("node is stopping: {f}"))),
    }
}

impl Node {
    /// On a follower: the leader's read index, through one `ReadIndex` RPC shared with the
    /// reads that arrive while the previous one is in flight.
    async fn read_index_remote(&self, leader: u64, deadline: Instant) -> Attempt<u64> {
        let Some(mut client) = self.peers.client(self, leader) else {
            return Attempt::NotLeader(None);
        };
        let from = self.id;
        let ask = move || -> futures::future::BoxFuture<'static, Result<Attempt<u64>, Status>> {
            let mut req = tonic::Request::new(ReadIndexRequest {
                from,
                target: leader,
            });
            req.set_timeout(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(50)),
            );
            Box::pin(async move {
                Ok(match client.read_index(req).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        if reply.not_leader {
                            let hint = (reply.leader_hint != 0).then_some(reply.leader_hint);
                            Attempt::NotLeader(hint.filter(|h| *h != leader))
                        } else {
                            Attempt::Done(reply.read_index)
                        }
                    }
                    Err(_) => Attempt::NotLeader(None),
                })
            })
        };
        // A round another read started may carry a later deadline than this read's.
        match tokio::time::timeout_at(deadline.into(), self.remote_reads.read_index(leader, ask))
            .await
        {
            Ok(Ok(attempt)) => attempt,
            _ => Attempt::NotLeader(None),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), Status> {
        let applied = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        if applied >= index {
            return Ok(());
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|_| Status::unavailable("this node did not catch up with the leader in time"))
    }
}

pub(crate) use Attempt as ProposeAttempt;

/// The incarnation `state`'s node registry records for `id` (0 = not known).
pub fn registered_incarnation(state: &SharedState, id: u64) -> u64 {
    state
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .node(NodeId(id))
        .map_or(0, |n| n.incarnation)
}
