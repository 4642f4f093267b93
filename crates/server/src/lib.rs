//! custos node: Raft peer transport, the SDK and admin gRPC services, write forwarding and
//! linearizable reads, on the sled store and the pure domain core.
//!
//! [`run`] starts a node from a [`ServerConfig`] and serves until the shutdown future resolves.

pub mod access;
pub mod admin;
pub mod alerting;
pub mod audit;
pub mod bounds;
pub mod codec;
pub mod config;
pub mod console;
pub mod duties;
pub mod edge;
pub mod election;
pub mod forwarder;
pub mod liveness;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod oidc;
pub mod peer;
pub mod proposals;
pub mod rest;
pub mod sdk;
pub mod secrets;
pub mod stages;
pub mod status;
pub mod tls;

pub use config::{
    AuditSettings, ConfigError, LimitSettings, MemberConfig, NodeSettings, RaftTuning,
    ServerConfig, TlsSettings,
};
/// Token signing and verification, for the binary's `auth token generate`.
pub use custos_auth as auth;
pub use node::Node;

use anyhow::Context;
use custos_proto::custos::admin::v1::access_server::AccessServer;
use custos_proto::custos::admin::v1::audit_server::AuditServer;
use custos_proto::custos::admin::v1::auth_server::AuthServer;
use custos_proto::custos::admin::v1::cluster_admin_server::ClusterAdminServer;
use custos_proto::custos::admin::v1::quotas_server::QuotasServer;
use custos_proto::custos::raft::v1::raft_service_server::RaftServiceServer;
use custos_proto::openstorage::api::open_storage_alerts_server::OpenStorageAlertsServer;
use custos_proto::openstorage::api::open_storage_cluster_server::OpenStorageClusterServer;
use custos_proto::openstorage::api::open_storage_credentials_server::OpenStorageCredentialsServer;
use custos_proto::openstorage::api::open_storage_identity_server::OpenStorageIdentityServer;
use custos_proto::openstorage::api::open_storage_mount_attach_server::OpenStorageMountAttachServer;
use custos_proto::openstorage::api::open_storage_node_server::OpenStorageNodeServer;
use custos_proto::openstorage::api::open_storage_policy_server::OpenStoragePolicyServer;
use custos_proto::openstorage::api::open_storage_role_server::OpenStorageRoleServer;
use custos_proto::openstorage::api::open_storage_schedule_policy_server::OpenStorageSchedulePolicyServer;
use custos_proto::openstorage::api::open_storage_volume_server::OpenStorageVolumeServer;
use custos_store::Member;
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

/// How long in-flight calls may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest header list (all metadata of one call) a node accepts from clients.
const MAX_SDK_HEADER_LIST: u32 = 64 * 1024;

/// Largest gRPC message a node accepts from clients.
const MAX_SDK_MESSAGE: usize = 4 * 1024 * 1024;

/// Serves a tonic router on a bound listener, over TLS when a [`tls::ReloadableServer`] is
/// given, within `limits`, until `stop` resolves. (A macro: routers with and without layers
/// differ in type.)
macro_rules! serve_grpc {
    ($router:expr, $listener:expr, $tls:expr, $limits:expr, $stop:expr $(,)?) => {{
        let (router, listener, tls, limits, stop) = ($router, $listener, $tls, $limits, $stop);
        async move {
            match tls {
                Some(tls) => {
                    let accepted = tls::accept_tls(listener, tls, limits);
                    let incoming = tokio_stream::wrappers::ReceiverStream::new(accepted)
                        .map(|(stream, _)| Ok::<_, std::io::Error>(stream));
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
                None => {
                    let accepted = tls::accept_plain(listener, limits);
                    let incoming = tokio_stream::wrappers::ReceiverStream::new(accepted)
                        .map(|(stream, _)| Ok::<_, std::io::Error>(stream));
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
            }
        }
    }};
}

fn raft_config(cfg: &ServerConfig) -> anyhow::Result<openraft::Config> {
    let config = openraft::Config {
        cluster_name: cfg.cluster_id.clone(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every),
        max_in_snapshot_log_to_keep: cfg.raft.keep_log_entries,
        install_snapshot_timeout: cfg.raft.install_snapshot_timeout_ms,
        max_payload_entries: cfg.raft.max_payload_entries,
        enable_pre_vote: Some(cfg.raft.pre_vote),
        ..Default::default()
    };
    config.validate().context("invalid Raft timing in [raft]")
}

/// Starts the node and serves until `shutdown` resolves, then stops Raft and returns.
///
/// Each value received on `reload` is a freshly read configuration whose auth section (and
/// key files) replace the keys in force; other sections need a restart.
pub async fn run(
    config: ServerConfig,
    mut reload: tokio::sync::mpsc::Receiver<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    // OpenID provider issuers start without keys; their fetchers start here.
    let oidc = oidc::OidcRegistry::default();
    let auth = if config.auth_enabled {
        Some(Arc::new(
            oidc.authenticator(&config.auth)
                .context("loading auth keys")?,
        ))
    } else {
        tracing::warn!("authentication is DISABLED: every caller acts as an administrator");
        None
    };
    config.validate_transport()?;
    let peer_client_tls =
        Arc::new(tls::PeerClientTls::new(config.tls.as_ref()).context("loading the [tls] files")?);
    let server_tls = |listener| -> anyhow::Result<Option<Arc<tls::ReloadableServer>>> {
        match config.tls.as_ref() {
            Some(t) if listener == tls::Listener::Peer || t.sdk => Ok(Some(Arc::new(
                tls::ReloadableServer::new(t, listener).with_context(|| {
                    format!("loading the [tls] files for the {listener:?} listener")
                })?,
            ))),
            _ => Ok(None),
        }
    };
    let (peer_tls, sdk_tls, rest_tls) = (
        server_tls(tls::Listener::Peer)?,
        server_tls(tls::Listener::Sdk)?,
        server_tls(tls::Listener::Rest)?,
    );
    // `/metrics` over HTTPS whenever `[tls]` is set, unless the operator asked for plaintext.
    let metrics_tls = match config.tls.as_ref() {
        Some(t) if config.metrics_tls && config.metrics_listen.is_some() => Some(Arc::new(
            tls::ReloadableServer::new(t, tls::Listener::Metrics)
                .context("loading the [tls] files for the metrics listener")?,
        )),
        _ => None,
    };
    match &config.tls {
        None => tracing::warn!(
            "insecure = true: peer and SDK traffic is PLAINTEXT and unauthenticated; anyone who \
             reaches the peer port can vote, append entries and install snapshots"
        ),
        Some(t) if !t.sdk => {
            tracing::warn!("[tls] sdk = false: the SDK and REST listeners are plaintext")
        }
        Some(_) => {}
    }
    if config.tls.is_some() && !config.metrics_tls && config.metrics_listen.is_some() {
        tracing::warn!("metrics_tls = false: /metrics is served over plain HTTP");
    }
    let metrics = metrics::Metrics::default();
    metrics
        .load_token(config.metrics_token_file.as_deref())
        .map_err(|e| anyhow::anyhow!("metrics_token_file: {e}"))?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    if let Some(file) = &config.restore {
        restore(&config, file).await?;
    }
    let (log_store, sm_store) = custos_store::open(&config.data_dir.join("db"))
        .await
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let incarnation = log_store
        .incarnation(uuid::Uuid::new_v4().as_u64_pair().0)
        .context("reading the data directory's incarnation")?;
    let state = sm_store.state();
    let backup = sm_store.backup_source();
    let data_keys = secrets::DataKeys::load(&config.secrets)
        .context("loading the data key ([secrets])")?
        .map(Arc::new);
    match &data_keys {
        Some(k) => tracing::info!(
            key = k.primary_id(),
            "credential secrets are sealed with data key"
        ),
        None => tracing::warn!(
            "no [secrets] data_key_file: credentials with secrets cannot be created on this member"
        ),
    }
    let audit = audit::Audit::open(
        config.node_id,
        config.audit.clone(),
        &config.audit_log_dir(),
        sm_store.audit_log(),
    )
    .with_context(|| {
        format!(
            "opening the audit and access logs in {}",
            config.audit_log_dir().display()
        )
    })?;
    let snapshot_inbox = sm_store.inbox();
    let stages = Arc::new(stages::Stages::default());
    let raft = custos_store::Raft::new(
        config.node_id,
        Arc::new(raft_config(&config)?),
        network::PeerNetwork::new(
            config.node_id,
            peer_client_tls.clone(),
            state.clone(),
            incarnation,
        ),
        log_store,
        sm_store,
    )
    .await
    .context("starting Raft")?;

    let peers = network::PeerClients::new(peer_client_tls.clone());
    let node = Arc::new(Node {
        id: config.node_id,
        config: config.clone(),
        raft: raft.clone(),
        state,
        auth: std::sync::RwLock::new(auth),
        oidc,
        forwarder: forwarder::Forwarder::new(
            raft.clone(),
            peers.clone(),
            config.node_id,
            config.limits.max_queued_proposals,
            stages.clone(),
        ),
        peers,
        tls: node::NodeTls {
            peer_client: peer_client_tls,
            servers: [&peer_tls, &sdk_tls, &rest_tls, &metrics_tls]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        },
        liveness: liveness::Liveness::default(),
        leader_contact: Default::default(),
        proposals: proposals::ProposalBatcher::new(
            raft.clone(),
            config.node_id,
            config.limits.max_queued_proposals,
            stages.clone(),
        ),
        stages,
        write_slots: bounds::Gate::new(config.limits.max_writes_in_flight),
        read_slots: bounds::Gate::new(config.limits.max_read_waiters),
        read_batcher: Default::default(),
        remote_reads: Default::default(),
        audit,
        metrics,
        transferring: Default::default(),
        incarnation,
        backup,
        data_keys,
    });

    // Bootstrap: the lowest id of the static initial membership initializes the cluster once
    // (never a node that joins a running cluster).
    let lowest = config.initial_members.iter().map(|m| m.id).min();
    if config.join.is_none() && lowest == Some(config.node_id) && !raft.is_initialized().await? {
        let members: BTreeMap<u64, Member> = config
            .initial_members
            .iter()
            .map(|m| {
                (
                    m.id,
                    Member {
                        raft_addr: m.raft_addr.clone(),
                        sdk_addr: m.sdk_addr.clone(),
                    },
                )
            })
            .collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(node = config.node_id, "initialized the cluster"),
            Err(e) => tracing::info!(node = config.node_id, "cluster already initialized: {e}"),
        }
    }

    // Joining: a node without Raft state asks a member to admit it.
    let joiner = match &config.join {
        Some(addr) if !raft.is_initialized().await? => {
            tracing::info!(node = config.node_id, via = %addr, "joining a running cluster");
            Some(tokio::spawn(membership::join(
                node.clone(),
                addr.clone(),
                config.join_as_learner,
            )))
        }
        _ => None,
    };

    let prober = tokio::spawn(liveness::probe(node.clone()));
    let elections = tokio::spawn(election::watch(node.clone()));
    let registrar = tokio::spawn(duties::register_self(node.clone()));
    let replacer = tokio::spawn(duties::replace_replicas(node.clone()));
    let denials = tokio::spawn(duties::record_denials(node.clone()));
    let local_lines = tokio::spawn(duties::write_local_records(node.clone()));
    let retention = tokio::spawn(duties::audit_retention(node.clone()));
    let member_alerts = tokio::spawn(alerting::member_alerts(node.clone()));
    let self_checks = tokio::spawn(alerting::self_checks(node.clone()));
    let reloader = {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(fresh) = reload.recv().await {
                if let Err(e) = node.reload_auth(&fresh) {
                    tracing::error!(node = node.id, "keeping the old keys: reload failed: {e}");
                }
                if let Err(e) = node.metrics.load_token(fresh.metrics_token_file.as_deref()) {
                    tracing::error!(
                        node = node.id,
                        "keeping the old metrics token: reload failed: {e}"
                    );
                }
                if let Err(e) = node.reload_tls(&fresh) {
                    tracing::error!(
                        node = node.id,
                        "keeping the old certificates: reload failed: {e}"
                    );
                }
                // SIGHUP also means "logrotate moved the files".
                if let Err(e) = node.audit.reopen() {
                    tracing::error!(node = node.id, "reopening the audit and access logs: {e}");
                }
            }
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let peer_listener = bind(config.raft_listen, "peer").await?;
    let sdk_listener = bind(config.sdk_listen, "SDK").await?;
    let rest_listener = match config.rest_listen {
        Some(addr) => Some(bind(addr, "REST").await?),
        None => None,
    };

    let peer = serve_grpc!(
        tonic::transport::Server::builder().add_service(
            RaftServiceServer::new(peer::PeerService::new(node.clone(), snapshot_inbox))
                .max_decoding_message_size(64 * 1024 * 1024),
        ),
        peer_listener,
        peer_tls,
        tls::AcceptLimits::new(
            tls::Listener::Peer,
            &config.limits,
            node.metrics.connections_refused.clone()
        ),
        stopped(stop_rx.clone()),
    );

    // gRPC health: NOT_SERVING until this node knows a leader, has applied all it holds and
    // has registered itself; reflection lets `grpcurl` list and call the services.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let health_task = tokio::spawn(report_health(node.clone(), health));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(custos_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;

    let sdk_router = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(60))
        // Above the verifier's 16 KiB token cap, so an oversized token gets the verifier's
        // clear refusal instead of an HTTP/2 error; far larger header lists are still refused.
        .http2_max_header_list_size(MAX_SDK_HEADER_LIST)
        .layer(access::AccessLayer { node: node.clone() })
        .add_service(
            OpenStorageVolumeServer::new(sdk::VolumeService { node: node.clone() })
                .max_decoding_message_size(MAX_SDK_MESSAGE),
        )
        .add_service(OpenStorageCredentialsServer::new(sdk::CredentialsService {
            node: node.clone(),
        }))
        .add_service(OpenStorageAlertsServer::new(sdk::AlertsService {
            node: node.clone(),
        }))
        .add_service(OpenStorageRoleServer::new(sdk::RoleService {
            node: node.clone(),
        }))
        .add_service(OpenStorageSchedulePolicyServer::new(
            sdk::SchedulePolicyService { node: node.clone() },
        ))
        .add_service(OpenStoragePolicyServer::new(sdk::StoragePolicyService {
            node: node.clone(),
        }))
        .add_service(OpenStorageIdentityServer::new(sdk::IdentityService {
            node: node.clone(),
        }))
        .add_service(OpenStorageClusterServer::new(sdk::ClusterService {
            node: node.clone(),
        }))
        .add_service(OpenStorageNodeServer::new(sdk::NodeService {
            node: node.clone(),
        }))
        .add_service(OpenStorageMountAttachServer::new(sdk::MountAttachService {
            node: node.clone(),
        }))
        .add_service(ClusterAdminServer::new(admin::AdminService {
            node: node.clone(),
        }))
        .add_service(AuditServer::new(admin::AuditService { node: node.clone() }))
        .add_service(AccessServer::new(admin::AccessService {
            node: node.clone(),
        }))
        .add_service(AuthServer::new(admin::AuthService { node: node.clone() }))
        .add_service(QuotasServer::new(admin::QuotasService {
            node: node.clone(),
        }))
        .add_service(health_service)
        .add_service(reflection);
    let sdk_limits = tls::AcceptLimits::new(
        tls::Listener::Sdk,
        &config.limits,
        node.metrics.connections_refused.clone(),
    );
    // Clients are served on a runtime of their own: a flood of client calls (or of refusals)
    // queues there, and Raft, the peer listener and the duties keep their own worker threads,
    // so the OS scheduler, not a queue of thousands of client tasks, decides when heartbeats
    // and AppendEntries run (BENCHMARKS.md, "Overload": without this, peer RPCs timed out
    // under a refusal storm and leadership churned until no write committed).
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .thread_name("custos-clients")
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    // Listeners move to the client runtime's reactor.
    let sdk_listener = sdk_listener.into_std().context("moving the SDK listener")?;
    let rest_listener = rest_listener
        .map(|l| l.into_std())
        .transpose()
        .context("moving the REST listener")?;
    let sdk = {
        let stop = stopped(stop_rx.clone());
        async move {
            let sdk_listener = tokio::net::TcpListener::from_std(sdk_listener)?;
            serve_grpc!(sdk_router, sdk_listener, sdk_tls, sdk_limits, stop)
                .await
                .map_err(anyhow::Error::from)
        }
    };

    tracing::info!(node = config.node_id, sdk = %config.sdk_listen, raft = %config.raft_listen, rest = ?config.rest_listen, "serving");
    let mut peer = tokio::spawn(peer);
    let mut sdk = clients.spawn(sdk);
    // The REST gateway (when configured) calls the same SDK services over HTTP/JSON.
    let mut rest = {
        let (node, stop) = (node.clone(), stopped(stop_rx.clone()));
        clients.spawn(async move {
            match rest_listener {
                Some(listener) => {
                    rest::serve(
                        node,
                        tokio::net::TcpListener::from_std(listener)?,
                        rest_tls,
                        stop,
                    )
                    .await
                }
                None => {
                    stop.await;
                    Ok(())
                }
            }
        })
    };
    let mut rest_done = false;
    let metrics_server = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics_listen {addr}"))?;
            let (node, stop) = (node.clone(), stopped(stop_rx.clone()));
            Some(tokio::spawn(async move {
                if let Err(e) = metrics::serve(node, listener, metrics_tls, stop).await {
                    tracing::error!("{e:#}");
                }
            }))
        }
        None => None,
    };
    let watcher = {
        let (stop_tx, node) = (stop_tx.clone(), node.clone());
        tokio::spawn(async move {
            shutdown.await;
            // A leader hands leadership over first (writes meanwhile wait for the successor),
            // so the cluster does not sit out an election timeout.
            if node.current_leader() == Some(node.id) && node.members().len() > 1 {
                if let Err(e) = node.transfer_leadership(None).await {
                    tracing::warn!(
                        node = node.id,
                        "stopping without handing leadership over: {}",
                        e.message()
                    );
                }
            }
            let _ = stop_tx.send(true);
        })
    };
    // Whichever ends first (shutdown, or a listener failing) stops the others.
    let (result, peer_done, sdk_done) = tokio::select! {
        r = &mut peer => (r.context("peer server task").and_then(|r| r.context("peer server")), true, false),
        r = &mut sdk => (r.context("sdk server task").and_then(|r| r.context("sdk server")), false, true),
        r = &mut rest => { rest_done = true; (r.context("rest gateway task").and_then(|r| r), false, false) }
        _ = stopped(stop_rx.clone()) => (Ok(()), false, false),
    };
    let _ = stop_tx.send(true);
    if let Some(task) = joiner {
        task.abort();
    }
    for task in [
        watcher,
        reloader,
        prober,
        elections,
        registrar,
        replacer,
        health_task,
        denials,
        retention,
        member_alerts,
        self_checks,
    ] {
        task.abort();
    }
    // The listeners stop accepting at once; calls in flight get DRAIN_TIMEOUT to finish.
    let drained = async {
        if !sdk_done {
            let _ = (&mut sdk).await;
        }
        if !peer_done {
            let _ = (&mut peer).await;
        }
        if !rest_done {
            let _ = (&mut rest).await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        tracing::warn!(
            node = config.node_id,
            "calls still in flight after {DRAIN_TIMEOUT:?}: stopping anyway"
        );
        sdk.abort();
        peer.abort();
        rest.abort();
    }
    // Denials seen up to now reach the trail if a leader takes them within a second.
    let mut failures = 0;
    duties::flush_denials(&node, Duration::from_secs(1), &mut failures).await;
    duties::flush_denials(&node, Duration::from_secs(1), &mut failures).await;
    local_lines.abort();
    node.oidc.stop();
    node.audit.flush_files();
    if let Some(task) = metrics_server {
        task.abort();
    }
    // Its listeners are done (or aborted): what is left there (forwarding tasks of calls that
    // gave up) stops with it.
    clients.shutdown_background();
    tracing::info!(node = config.node_id, "stopping Raft");
    raft.shutdown().await.ok();
    result
}

/// Seeds the empty data dir from a backup file (`custos server --restore`).
async fn restore(config: &ServerConfig, file: &std::path::Path) -> anyhow::Result<()> {
    let backup = custos_store::Backup::open(file)
        .await
        .with_context(|| format!("checking the backup file {}", file.display()))?;
    let (raft_addr, sdk_addr) = config.advertised();
    custos_store::restore(
        &config.data_dir.join("db"),
        &backup,
        config.node_id,
        Member {
            raft_addr,
            sdk_addr,
        },
    )
    .await
    .with_context(|| {
        format!(
            "restoring {} into {}",
            file.display(),
            config.data_dir.display()
        )
    })?;
    tracing::info!(
        node = config.node_id,
        last_log_index = backup.header.last_log_id.index,
        records = backup.header.records,
        "restored a backup: this node is the only voter of the new cluster; let the others join it"
    );
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// Keeps the overall gRPC health status current (checked every 250 ms).
async fn report_health(node: Arc<Node>, health: tonic_health::server::HealthReporter) {
    let mut serving = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let m = node.raft.metrics().borrow_watched().clone();
        let caught_up = m.last_applied.map(|l| l.index) >= m.last_log_index;
        let registered = node
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .node(custos_model::NodeId(node.id))
            .is_some();
        let now = node.has_live_leader(&m) && caught_up && registered;
        if serving != Some(now) {
            let status = if now {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            serving = Some(now);
        }
    }
}
