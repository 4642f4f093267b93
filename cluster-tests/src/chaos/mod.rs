//! The chaos harness (issue #9): a real N-node cluster of `custos` processes, concurrent
//! clients doing a mixed workload under different tokens, faults from a seeded schedule,
//! and, after healing, the checks: linearizability of the recorded history per tenant
//! (crate::history, crate::spec), no acknowledged mutation lost and no refused one visible,
//! no mutation applied after a revocation that denies it, members converged, one audit record
//! per acknowledged mutation, no panics, every killed node back, memory and disk bounded.
//!
//! [`run`] drives one run and returns a [`Report`]; `cluster-tests/tests/chaos.rs` runs a
//! CI-sized one and `scripts/chaos.sh` longer ones (through the `custos-chaos` binary).

pub mod checks;
pub mod cluster;
pub mod faults;
pub mod workload;

use crate::history::{self, OpRecord, Recorder, TenantVerdict};
use crate::spec::{Input, Outcome, Principal, Slot};
use anyhow::Context;
use cluster::ChaosCluster;
use faults::{AppliedFault, FaultKind};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Channels, ClientCtx, Tokens, WorkloadConfig};

/// A small seeded generator (SplitMix64): the schedule and the workload draw from it, so a
/// seed replays them.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// A seed from the clock, for runs that are not given one.
pub fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(t ^ u64::from(std::process::id())).next_u64()
}

/// What a run does.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    pub nodes: u16,
    /// How long the workload runs (faults stop a few seconds before its end).
    pub duration: Duration,
    pub seed: u64,
    pub faults: Vec<FaultKind>,
    pub workload: WorkloadConfig,
    /// Where the report, the history and (on failure) the cluster's files go.
    pub out_dir: Option<PathBuf>,
    /// Time budget of the linearizability check, per tenant.
    pub check_budget: Duration,
    /// Limits for "bounded": any node's resident memory, and its data directory.
    pub max_rss_mib: u64,
    pub max_data_mib: u64,
}

impl ChaosConfig {
    pub fn new(nodes: u16, duration: Duration, seed: u64) -> ChaosConfig {
        ChaosConfig {
            nodes,
            duration,
            seed,
            faults: FaultKind::AVAILABLE.to_vec(),
            workload: WorkloadConfig::default(),
            out_dir: None,
            check_budget: Duration::from_secs(120),
            max_rss_mib: 1024,
            max_data_mib: 1024,
        }
    }
}

/// Per-node resource figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeFigures {
    pub starts: u32,
    pub max_rss_mib: f64,
    pub data_mib: f64,
}

/// The outcome of a run: everything the issue asks a report to say.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: u16,
    pub duration_secs: u64,
    pub passed: bool,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
    pub faults_by_kind: BTreeMap<String, usize>,
    pub faults: Vec<AppliedFault>,
    pub operations: usize,
    pub outcomes: BTreeMap<String, checks::OutcomeCounts>,
    pub acknowledged_mutations: usize,
    /// Acknowledged mutations missing from the converged audit trail (must be 0).
    pub lost: usize,
    /// `linearizable`, `not linearizable` or `unknown`, over all tenants.
    pub linearizability: String,
    pub tenants: Vec<TenantVerdict>,
    pub converged: bool,
    pub members: Vec<checks::MemberState>,
    pub audit: checks::AuditFindings,
    pub panics: Vec<String>,
    pub unexpected_exits: Vec<String>,
    pub node_figures: BTreeMap<u64, NodeFigures>,
    pub proxy: crate::proxy::ProxyStats,
    /// Where the report and history were written, and the cluster's files kept on failure.
    pub out_dir: Option<PathBuf>,
    pub kept_cluster_dir: Option<PathBuf>,
    pub check_millis: u64,
    /// Operations without answer whose outcome the audit trail settled.
    pub resolved_by_audit: usize,
    /// Role changes the tenants' role changers made while a member was paused.
    pub pause_role_changes: u64,
    /// Reads and writes whose role decision no role state of their time allows.
    pub stale_authorizations: Vec<history::StaleAuthorization>,
}

impl Report {
    /// A human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "custos chaos run: {} nodes, {} s, seed {} — {}\n",
            self.nodes,
            self.duration_secs,
            self.seed,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        s += &format!(
            "  replay with: scripts/chaos.sh --nodes {} --seconds {} --seed {}\n",
            self.nodes, self.duration_secs, self.seed
        );
        s += "faults injected:\n";
        for (k, n) in &self.faults_by_kind {
            s += &format!("  {k:<18} {n}\n");
        }
        s += &format!("operations: {}\n", self.operations);
        s += &format!(
            "  {:<12} {:>6} {:>8} {:>8} {:>8}\n",
            "kind", "ok", "refused", "by role", "unknown"
        );
        for (k, c) in &self.outcomes {
            s += &format!(
                "  {k:<12} {:>6} {:>8} {:>8} {:>8}\n",
                c.ok, c.refused, c.refused_by_role, c.unknown
            );
        }
        s += &format!(
            "acknowledged mutations: {}, lost: {}, applied twice: {}, refused but recorded otherwise: {}, phantoms: {}\n",
            self.acknowledged_mutations,
            self.lost,
            self.audit.duplicated.len(),
            self.audit.refused_mismatch.len(),
            self.audit.phantoms.len()
        );
        s += &format!(
            "unknown outcomes resolved by the audit trail: {} applied, {} refused, {} never applied\n",
            self.audit.unknown_applied, self.audit.unknown_refused, self.audit.unknown_absent
        );
        s += &format!(
            "role changes acknowledged while a member was paused: {}\n",
            self.pause_role_changes
        );
        s += &format!(
            "role refusals after an attempt without answer: {} ({} of them applied by that attempt, per the trail)\n",
            self.audit.refused_after_unanswered, self.audit.refused_after_unanswered_applied
        );
        s += &format!(
            "linearizability: {} ({} tenants, {} ms; {} outcomes without answer settled by the audit trail)\n",
            self.linearizability,
            self.tenants.len(),
            self.check_millis,
            self.resolved_by_audit
        );
        for t in self.tenants.iter().filter(|t| !t.ok()) {
            s += &format!(
                "  tenant {}: {} ({} ops)\n",
                t.tenant, t.verdict, t.operations
            );
            for d in &t.detail {
                s += &format!("    {d}\n");
            }
        }
        let allows = self
            .stale_authorizations
            .iter()
            .filter(|s| s.kind == "allow")
            .count();
        s += &format!(
            "stale authorization (role decisions no role state of their time allows): {} allows, {} denials\n",
            allows,
            self.stale_authorizations.len() - allows
        );
        for a in self.stale_authorizations.iter().take(20) {
            s += &format!(
                "  stale {} in {} (the role could only be {:?}): {}\n",
                a.kind, a.tenant, a.possible_roles, a.op
            );
        }
        s += &format!(
            "stale-permission check: {} role changes, {} mutations replayed, {} violations; {} role refusals in apply replayed, {} unfounded\n",
            self.audit.role_changes,
            self.audit.replayed,
            self.audit.stale_permission.len(),
            self.audit.role_refusals_replayed,
            self.audit.false_denials.len()
        );
        for v in self
            .audit
            .stale_permission
            .iter()
            .chain(&self.audit.false_denials)
            .take(10)
        {
            s += &format!("  {v}\n");
        }
        s += &format!("members converged: {}\n", self.converged);
        for m in &self.members {
            s += &format!(
                "  node {}: applied {} audit head {} {} chain ok {} state {} ({} volumes, {} roles)\n",
                m.node,
                m.applied_index,
                m.audit_last_seq,
                &m.audit_last_hash.get(..12).unwrap_or(""),
                m.audit_chain_ok,
                m.state_hash,
                m.volumes,
                m.roles
            );
        }
        for (id, f) in &self.node_figures {
            s += &format!(
                "  node {id}: started {} times, max RSS {:.0} MiB, data {:.1} MiB\n",
                f.starts, f.max_rss_mib, f.data_mib
            );
        }
        s += &format!(
            "peer proxy: {} connections ({} unidentified), {} reset, {} healed, {} bytes blackholed, {} chunks delayed\n",
            self.proxy.connections,
            self.proxy.unidentified,
            self.proxy.dropped_connections,
            self.proxy.healed_connections,
            self.proxy.blackholed_bytes,
            self.proxy.delayed_chunks
        );
        if !self.failures.is_empty() {
            s += "FAILURES:\n";
            for f in &self.failures {
                s += &format!("  - {f}\n");
            }
        }
        if let Some(d) = &self.kept_cluster_dir {
            s += &format!("cluster files kept in {}\n", d.display());
        }
        s
    }
}

/// Mints every token of the workload.
fn mint_tokens(cluster: &ChaosCluster, tenants: &[String]) -> anyhow::Result<Tokens> {
    let mut t = Tokens {
        admin: cluster.mint_token("chaos-admin", &["system.admin"], &["*"])?,
        view: cluster.mint_token("chaos-view", &["system.view"], &[])?,
        users: HashMap::new(),
    };
    for prefix in tenants {
        let names = crate::spec::Names::new(prefix);
        let role = names.role();
        let group = names.group();
        for p in [Principal::U1, Principal::U2] {
            // Only the tenant role: it decides their reads as well as their writes.
            let token = cluster.mint_token(&names.username(p), &[&role], &[&group])?;
            t.users.insert((prefix.clone(), p), token);
        }
        let token = cluster.mint_token(
            &names.username(Principal::U3),
            &["system.user"],
            &[&names.other_group()],
        )?;
        t.users.insert((prefix.clone(), Principal::U3), token);
    }
    Ok(t)
}

/// Runs one chaos run and checks it. Errors are for a harness that could not run at all
/// (the cluster did not start); everything the run finds wrong is in the report.
/// Sets the guests' quota to no limit, retrying (bounded) while the new cluster elects.
async fn lift_guest_quota(cluster: &ChaosCluster, admin: &str) -> anyhow::Result<()> {
    let client = cluster.client(&cluster.ids(), Some(admin));
    let request = custos_client::SetQuotaRequest {
        subject: Some(custos_client::QuotaSubject {
            guest: true,
            ..Default::default()
        }),
        max_volumes: None,
        max_bytes: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.set_quota(&request).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).context("lifting the guests' quota")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub async fn run(cfg: ChaosConfig) -> anyhow::Result<Report> {
    let mut failures: Vec<String> = Vec::new();
    let tag = format!("chaos-{:x}", cfg.seed);
    eprintln!(
        "chaos: seed {} ({} nodes, {} s, faults {:?})",
        cfg.seed,
        cfg.nodes,
        cfg.duration.as_secs(),
        cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>()
    );
    let cluster_dir = cfg.out_dir.as_ref().map(|d| d.join("cluster"));
    if let Some(d) = &cluster_dir {
        let _ = std::fs::remove_dir_all(d);
    }
    let cluster = ChaosCluster::start(cfg.nodes, cluster_dir, cfg.seed)
        .await
        .context("starting the chaos cluster")?;
    let epochs = cfg.duration.as_millis() / cfg.workload.epoch.as_millis().max(1) + 1;
    let tenants: Vec<String> = (0..cfg.workload.tenants)
        .flat_map(|t| (0..epochs as u64).map(move |e| workload::tenant_prefix(t, e)))
        .collect();
    let tokens = Arc::new(mint_tokens(&cluster, &tenants)?);
    // The guests create volumes in every tenant; the specification has no quotas, so the
    // guests' default quota (10 volumes) is lifted before the workload starts.
    lift_guest_quota(&cluster, &tokens.admin).await?;
    // SDK addresses by slot: a replaced member's slot keeps its address (cluster.rs).
    let endpoints = cluster.endpoints();
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));

    // The workload and the nemesis.
    let recorder = Recorder::new();
    let knowledge: workload::Knowledge = Default::default();
    let start = Instant::now();
    let end = start + cfg.duration;
    let ctx = |client: u32, tenant, leads_tenant| ClientCtx {
        client,
        tenant,
        leads_tenant,
        first_node: client as usize % endpoints.len(),
        channels: Channels::new(&endpoints),
        tokens: tokens.clone(),
        knowledge: knowledge.clone(),
        recorder: recorder.clone(),
        cfg: cfg.workload.clone(),
        seed: cfg.seed,
        run_tag: format!("{tag}-c{client}"),
    };
    let mut clients = Vec::new();
    for t in 0..cfg.workload.tenants {
        for c in 0..cfg.workload.clients_per_tenant {
            let client = (t * cfg.workload.clients_per_tenant + c) as u32;
            clients.push(tokio::spawn(workload::client_loop(
                ctx(client, t, c == 0),
                start,
                end,
            )));
        }
    }
    // One role changer per tenant, active while a member is paused.
    let paused: workload::Paused = Default::default();
    let mut changers = Vec::new();
    for t in 0..cfg.workload.tenants {
        let client = (cfg.workload.tenants * cfg.workload.clients_per_tenant + t) as u32;
        changers.push(tokio::spawn(workload::pause_role_changer(
            ctx(client, t, false),
            paused.clone(),
            start,
            end,
        )));
    }
    let schedule = faults::schedule(cfg.seed, cfg.duration, &cfg.faults);
    let nemesis = tokio::spawn(faults::run(
        cluster.clone(),
        schedule,
        tokens.admin.clone(),
        paused,
        start,
        end,
    ));
    // The monitor: memory, and nodes that exit on their own (restarted, and reported).
    let mut rss: BTreeMap<u64, u64> = BTreeMap::new();
    let mut unexpected: Vec<String> = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut c = cluster.lock().await;
        for id in &c.ids() {
            if let Some(kib) = c.rss_kib(*id) {
                let m = rss.entry(*id).or_default();
                *m = (*m).max(kib);
            }
        }
        for (id, status) in c.unexpected_exits() {
            let msg = format!("node {id} exited on its own ({status})");
            eprintln!("chaos: {msg}");
            unexpected.push(msg);
            if let Err(e) = c.spawn(id) {
                unexpected.push(format!("node {id} could not be restarted: {e}"));
            }
        }
    }
    for c in clients {
        let _ = c.await;
    }
    let mut pause_role_changes = 0;
    for c in changers {
        pause_role_changes += c.await.unwrap_or(0);
    }
    let applied = nemesis.await.unwrap_or_default();
    for f in &applied {
        if let Some(p) = &f.problem {
            failures.push(p.clone());
        }
    }
    // The members now (membership faults replace ids).
    let ids = cluster.lock().await.ids();

    // Heal: every fault is undone by the nemesis; make sure, then wait for every node.
    {
        let mut c = cluster.lock().await;
        c.proxies.heal();
        for id in &ids {
            if c.node(*id).paused() {
                c.resume(*id);
            }
            if c.node(*id).down {
                let _ = c.spawn(*id);
            }
        }
    }
    let ready = {
        let c = cluster.lock().await;
        c.wait_ready(Duration::from_secs(60)).await
    };
    if let Err(e) = ready {
        failures.push(format!("the cluster did not recover after healing: {e}"));
    }

    // Final reads of every tenant, as the administrator (part of the checked history).
    let final_ctx = ClientCtx {
        client: u32::MAX,
        tenant: 0,
        leads_tenant: false,
        first_node: 0,
        channels: Channels::new(&endpoints),
        tokens: tokens.clone(),
        knowledge: knowledge.clone(),
        recorder: recorder.clone(),
        cfg: cfg.workload.clone(),
        seed: cfg.seed,
        run_tag: format!("{tag}-final"),
    };
    let mut used: Vec<String> = recorder
        .records()
        .iter()
        .map(|r| r.tenant.clone())
        .collect();
    used.sort();
    used.dedup();
    for prefix in &used {
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        for slot in Slot::ALL {
            let read = Input::ReadVolume {
                by: Principal::Admin,
                slot,
            };
            let o = workload::run_op(&final_ctx, prefix, read, deadline).await;
            if matches!(o, Outcome::Unknown { .. }) {
                failures.push(format!("final read of {prefix} {slot:?} got no answer"));
            }
        }
        workload::run_op(&final_ctx, prefix, Input::ReadRole, deadline).await;
    }

    // Converge.
    let admin_clients: Vec<(u64, custos_client::Client)> = {
        let c = cluster.lock().await;
        ids.iter()
            .map(|id| (*id, c.client(&[*id], Some(&tokens.admin))))
            .collect()
    };
    let (converged, members) = checks::converge(&admin_clients, Duration::from_secs(60)).await;
    if !converged {
        failures.push(format!("members did not converge: {members:?}"));
    }

    // The audit trail, then the history with the outcomes it settles.
    let mut records: Vec<OpRecord> = recorder.records();
    let trail = match checks::audit_trail(&admin_clients[0].1).await {
        Ok(t) => t,
        Err(e) => {
            failures.push(format!("could not read the audit trail: {e}"));
            Vec::new()
        }
    };
    let audit = checks::audit_findings(&trail, &records, &tag);
    let resolved = checks::resolve_unknowns(&mut records, &trail, &tag);
    let check_started = Instant::now();
    let tenants_verdicts = history::check(&records, cfg.check_budget, 2);
    let check_millis = check_started.elapsed().as_millis() as u64;
    let lin = if tenants_verdicts.iter().all(|t| t.ok()) {
        "linearizable"
    } else if tenants_verdicts
        .iter()
        .any(|t| t.verdict == "not linearizable")
    {
        "not linearizable"
    } else {
        "unknown"
    };
    if lin != "linearizable" {
        failures.push(format!("the history is {lin}"));
    }
    let stale_authorizations = history::stale_authorizations(&records);
    if !stale_authorizations.is_empty() {
        let allows = stale_authorizations
            .iter()
            .filter(|s| s.kind == "allow")
            .count();
        failures.push(format!(
            "{allows} stale allows and {} stale denials by the role check",
            stale_authorizations.len() - allows
        ));
    }

    if !audit.lost.is_empty() {
        failures.push(format!("{} acknowledged mutations lost", audit.lost.len()));
    }
    if !audit.duplicated.is_empty() {
        failures.push(format!(
            "{} operations applied twice",
            audit.duplicated.len()
        ));
    }
    if !audit.refused_mismatch.is_empty() {
        failures.push(format!(
            "{} refused operations recorded otherwise",
            audit.refused_mismatch.len()
        ));
    }
    if !audit.phantoms.is_empty() {
        failures.push(format!("{} phantom audit records", audit.phantoms.len()));
    }
    if !audit.false_denials.is_empty() {
        failures.push(format!(
            "{} role refusals in apply that the log's rules do not call for",
            audit.false_denials.len()
        ));
    }
    if !audit.stale_permission.is_empty() {
        failures.push(format!(
            "{} mutations applied after a revocation that denies them",
            audit.stale_permission.len()
        ));
    }

    // Panics, exits, resources.
    let (panics, node_figures, proxy) = {
        let mut c = cluster.lock().await;
        for (id, status) in c.unexpected_exits() {
            unexpected.push(format!("node {id} exited on its own ({status})"));
        }
        let figures: BTreeMap<u64, NodeFigures> = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    NodeFigures {
                        starts: c.node(*id).starts,
                        max_rss_mib: rss.get(id).copied().unwrap_or(0) as f64 / 1024.0,
                        data_mib: c.data_bytes(*id) as f64 / (1024.0 * 1024.0),
                    },
                )
            })
            .collect();
        (c.panics(), figures, c.proxies.stats())
    };
    if !panics.is_empty() {
        failures.push(format!("{} panics in the node logs", panics.len()));
    }
    if !unexpected.is_empty() {
        failures.push(format!("{} unexpected node exits", unexpected.len()));
    }
    for (id, f) in &node_figures {
        if f.max_rss_mib > cfg.max_rss_mib as f64 {
            failures.push(format!(
                "node {id} used {:.0} MiB of memory (limit {})",
                f.max_rss_mib, cfg.max_rss_mib
            ));
        }
        if f.data_mib > cfg.max_data_mib as f64 {
            failures.push(format!(
                "node {id} holds {:.0} MiB of data (limit {})",
                f.data_mib, cfg.max_data_mib
            ));
        }
    }
    let mut faults_by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for f in &applied {
        *faults_by_kind.entry(f.kind.name().to_string()).or_default() += 1;
    }
    let passed = failures.is_empty();
    let kept_cluster_dir = if passed {
        None
    } else {
        Some(cluster.lock().await.keep_dir())
    };
    let report = Report {
        seed: cfg.seed,
        nodes: cfg.nodes,
        duration_secs: cfg.duration.as_secs(),
        passed,
        failures,
        faults_by_kind,
        faults: applied,
        operations: records.len(),
        outcomes: checks::outcome_counts(&records),
        acknowledged_mutations: audit.acknowledged,
        lost: audit.lost.len(),
        linearizability: lin.to_string(),
        tenants: tenants_verdicts,
        converged,
        members,
        audit,
        panics,
        unexpected_exits: unexpected,
        node_figures,
        proxy,
        out_dir: cfg.out_dir.clone(),
        kept_cluster_dir,
        check_millis,
        resolved_by_audit: resolved,
        pause_role_changes,
        stale_authorizations,
    };
    if let Some(dir) = &cfg.out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        std::fs::write(dir.join("summary.txt"), report.summary())?;
        history::write_jsonl(&dir.join("history.jsonl"), &records)?;
    }
    // The processes stop with the last handle; a passing run's cluster files go with them.
    let dir = cluster.lock().await.dir.clone();
    drop(cluster);
    if passed && cfg.out_dir.is_some() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(report)
}
