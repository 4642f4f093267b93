//! `custos dev`: a local N-node cluster as child processes on 127.0.0.1, with a generated shared
//! secret and ready-made tokens in `DIR/cluster.json`; running it again restarts the same cluster.

use anyhow::{bail, Context};
use custos_client::{Client, ClientTls};
use custos_server::auth::{generate_token, SigningKey, TokenClaims};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The issuer name of the tokens `custos dev` signs.
pub const DEV_ISSUER: &str = "custos-dev";

#[derive(clap::Args)]
pub struct DevArgs {
    /// Number of nodes.
    /// Defaults to 3, or to the size of the cluster in DIR.
    #[arg(long)]
    nodes: Option<u64>,
    /// Directory for configs, data, logs, the secret and cluster.json.
    #[arg(long, default_value = ".custos-dev")]
    dir: PathBuf,
    /// SDK port of node 1; node i listens on BASE+i-1 (SDK), BASE+100+i-1 (peers) and
    /// BASE+200+i-1 (REST gateway).
    /// Defaults to 9100, or to the port the cluster in DIR was created with.
    #[arg(long)]
    base_port: Option<u16>,
    /// Spread the nodes round-robin over this many zones (label `topology.kubernetes.io/zone`).
    #[arg(long, default_value_t = 1)]
    zones: u64,
    /// Capacity each node offers for replicas, in bytes.
    #[arg(long, default_value_t = 1 << 40)]
    capacity: u64,
    /// Re-place the replicas of a node silent for this many seconds.
    #[arg(long, default_value_t = 60)]
    replace_after_secs: u64,
    /// Audit retention: keep at most this many records (0 = no limit by count; else at least
    /// 1000). Unset: the server's default (`[audit] max_records`, 1,000,000).
    #[arg(long)]
    audit_max_records: Option<u64>,
    /// Build a snapshot every this many log entries (`[raft] snapshot_every`) and keep
    /// `--keep-log-entries` behind it; small values exercise snapshots and log purges.
    #[arg(long, default_value_t = 5000)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot (`[raft] keep_log_entries`).
    #[arg(long, default_value_t = 1000)]
    keep_log_entries: u64,
    /// Raft heartbeat interval in milliseconds (`[raft] heartbeat_ms`).
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Raft election timeout range in milliseconds, `MIN-MAX` (`[raft]
    /// election_timeout_min_ms`, `election_timeout_max_ms`).
    #[arg(long, default_value = "150-300", value_parser = parse_range)]
    election_timeout_ms: (u64, u64),
    /// Run the nodes with authentication off (`auth_enabled = false`): every caller is an
    /// administrator. For benchmarks that measure what auth costs; tokens are still written.
    #[arg(long)]
    no_auth: bool,
    /// How long to wait for the cluster to elect a leader and serve.
    #[arg(long, default_value = "60")]
    ready_timeout_secs: u64,
    /// Plaintext, unauthenticated peer traffic (no certificates): tests only. By default peers
    /// use mutual TLS with certificates from a CA generated in DIR/tls.
    #[arg(long, conflicts_with = "sdk_tls")]
    insecure: bool,
    /// Serve the SDK and REST gateway over TLS too (clients then need `--ca DIR/tls/ca.pem`,
    /// which cluster.json names as `ca_file`).
    #[arg(long)]
    sdk_tls: bool,
}

#[derive(Serialize)]
struct NodeInfo {
    id: u64,
    sdk: String,
    raft: String,
    /// REST gateway address.
    rest: String,
    /// Prometheus metrics (`GET /metrics`).
    metrics: String,
    pid: u32,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

#[derive(Serialize)]
struct ClusterFile {
    endpoints: Vec<String>,
    /// The CA clients must trust when the SDK is served over TLS (`--sdk-tls`); null otherwise.
    ca_file: Option<PathBuf>,
    /// Whether peers use mutual TLS (false only with `--insecure`).
    peer_tls: bool,
    tokens: BTreeMap<&'static str, String>,
    issuer: &'static str,
    shared_secret_file: PathBuf,
    cluster_id: String,
    nodes: Vec<NodeInfo>,
}

/// Reads `path`, or creates it with `make()` (mode 0600) when missing.
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if path.exists() {
        return Ok(std::fs::read_to_string(path)?.trim().to_string());
    }
    let value = make();
    write_private(path, &value)?;
    Ok(value)
}

pub(crate) fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// Per-node settings `custos dev` writes besides membership and auth.
struct NodeExtras {
    zones: u64,
    capacity: u64,
    replace_after_secs: u64,
    audit_max_records: Option<u64>,
    snapshot_every: u64,
    keep_log_entries: u64,
    heartbeat_ms: u64,
    election_timeout_ms: (u64, u64),
    auth_enabled: bool,
    /// (CA, node cert, node key) per node id; empty with `--insecure`.
    tls: BTreeMap<u64, (PathBuf, PathBuf, PathBuf)>,
    sdk_tls: bool,
}

/// The REST gateway address of the node whose SDK address is `sdk`: its port plus 200.
fn rest_addr(sdk: &str) -> String {
    offset_addr(sdk, 200)
}

/// The Prometheus metrics address of a node: its SDK port + 300.
fn metrics_addr(sdk: &str) -> String {
    offset_addr(sdk, 300)
}

fn offset_addr(sdk: &str, offset: u32) -> String {
    match sdk.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) => format!("{host}:{}", u32::from(p) + offset),
            Err(_) => sdk.to_string(),
        },
        None => sdk.to_string(),
    }
}

fn node_config(
    id: u64,
    cluster_id: &str,
    dir: &Path,
    members: &[(u64, String, String)],
    secret: &Path,
    extras: &NodeExtras,
) -> String {
    let (_, raft, sdk) = &members[(id - 1) as usize];
    let mut out = format!(
        "# custos dev node {id}: generated by `custos dev`.\n\
         node_id = {id}\ncluster_id = \"{cluster_id}\"\ncluster_name = \"custos-dev\"\n\
         data_dir = {data:?}\nsdk_listen = \"{sdk}\"\nraft_listen = \"{raft}\"\n\
         rest_listen = \"{rest}\"\nmetrics_listen = \"{metrics}\"\n\
         replica_replace_after_secs = {replace}\nauth_enabled = {auth}\n{insecure}\n\
         [node]\ncapacity_bytes = {capacity}\nlabels = {{ \"topology.kubernetes.io/zone\" = \"zone-{zone}\" }}\n\n",
        data = dir.join("data"),
        rest = rest_addr(sdk),
        metrics = metrics_addr(sdk),
        replace = extras.replace_after_secs,
        auth = extras.auth_enabled,
        capacity = extras.capacity,
        zone = (id - 1) % extras.zones.max(1) + 1,
        insecure = match (extras.tls.contains_key(&id), extras.sdk_tls) {
            (true, true) => "",
            // `/metrics` would follow `[tls]` onto HTTPS; the dev cluster's clients are plaintext.
            (true, false) => "# plaintext /metrics, like the SDK: `custos dev` without --sdk-tls\nmetrics_tls = false\n",
            (false, _) => "# plaintext, unauthenticated peers: `custos dev --insecure`\ninsecure = true\n",
        },
    );
    if let Some((ca, cert, key)) = extras.tls.get(&id) {
        out += &format!(
            "[tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\nsdk = {}\n\n",
            extras.sdk_tls
        );
    }
    out += &format!(
        "[raft]\nsnapshot_every = {}\nkeep_log_entries = {}\nheartbeat_ms = {}\n\
         election_timeout_min_ms = {}\nelection_timeout_max_ms = {}\n\n",
        extras.snapshot_every,
        extras.keep_log_entries,
        extras.heartbeat_ms,
        extras.election_timeout_ms.0,
        extras.election_timeout_ms.1
    );
    if let Some(max) = extras.audit_max_records {
        out += &format!("[audit]\nmax_records = {max}\n\n");
    }
    for (mid, mraft, msdk) in members {
        out += &format!(
            "[[initial_members]]\nid = {mid}\nraft_addr = \"{mraft}\"\nsdk_addr = \"{msdk}\"\n\n"
        );
    }
    if !extras.auth_enabled {
        return out;
    }
    out += &format!(
        "[auth]\nusername_claim = \"sub\"\n\n[[auth.issuers]]\nname = \"{DEV_ISSUER}\"\n\n\
         [[auth.issuers.keys]]\nkind = \"hmac\"\nfile = {secret:?}\n"
    );
    out
}

fn dev_tokens(secret: &str) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let key = SigningKey::SharedSecret(secret.as_bytes().to_vec());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut tokens = BTreeMap::new();
    for (who, role, groups) in [
        ("admin", "system.admin", Some(vec!["*".to_string()])),
        ("user", "system.user", Some(vec!["users".to_string()])),
        ("view", "system.view", None),
    ] {
        let claims = TokenClaims {
            name: who.to_string(),
            email: format!("{who}@custos.dev"),
            sub: Some(who.to_string()),
            roles: vec![role.to_string()],
            groups,
            jti: None,
        };
        tokens.insert(
            who,
            generate_token(&claims, DEV_ISSUER, &key, 30 * 86_400, now)?,
        );
    }
    Ok(tokens)
}

/// `s` in single quotes for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `DIR/env.sh`: the cluster's endpoints, CA, issuer and shared-secret file as shell variables,
/// for `source DIR/env.sh` (docs/tutorial.md). It names files; it holds no token or secret.
fn env_file(c: &ClusterFile) -> String {
    let mut out = String::from(
        "# Written by `custos dev`: `source` it for this cluster's connection settings.\n\
         # It holds no token and no secret, only where the shared secret is.\n",
    );
    let mut var = |name: &str, value: &str| {
        out += &format!("export {name}={}\n", shell_quote(value));
    };
    var("CUSTOS_DEV_ENDPOINTS", &c.endpoints.join(","));
    if let Some(ca) = &c.ca_file {
        var("CUSTOS_DEV_CA", &ca.display().to_string());
    }
    var("CUSTOS_DEV_ISSUER", c.issuer);
    var(
        "CUSTOS_DEV_SECRET_FILE",
        &c.shared_secret_file.display().to_string(),
    );
    out
}

/// Waits until every node serves and all agree on one leader.
async fn wait_ready(
    endpoints: &[String],
    token: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = Vec::new();
        for e in endpoints {
            // As admin: an administrator may have locked the guest role down.
            let client = Client::with_tls(std::slice::from_ref(e), Some(token), tls)?
                .with_timeout(Duration::from_secs(1));
            match client.status().await {
                Ok(s) if s.serving && s.leader_id != 0 => leaders.push(s.leader_id),
                _ => break,
            }
        }
        if leaders.len() == endpoints.len() && leaders.windows(2).all(|w| w[0] == w[1]) {
            // Every node has registered itself through consensus, so Node.* lists them all.
            let all =
                Client::with_tls(endpoints, Some(token), tls)?.with_timeout(Duration::from_secs(1));
            if all.nodes().await.is_ok_and(|n| n.len() == endpoints.len()) {
                return Ok(leaders[0]);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster did not elect a leader within {timeout:?}: see the server.log files"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves when a node exits during start-up (a port in use, a bad config): no need to wait
/// for the ready timeout then.
async fn first_exit(children: &mut [(u64, Child)]) -> anyhow::Error {
    loop {
        for (id, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return anyhow::anyhow!(
                    "node {id} exited while starting ({status}): see its server.log"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_children(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for (id, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => eprintln!("node {id} stopped"),
            Err(_) => {
                eprintln!("node {id} did not stop in 10s: killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// The shape of a dev cluster, kept in `DIR/dev-cluster.json`: Raft membership stores the
/// addresses, so a restart must use the same ports and node count.
#[derive(Serialize, serde::Deserialize, PartialEq, Eq, Debug)]
struct Shape {
    nodes: u64,
    base_port: u16,
}

fn shape(args: &DevArgs, dir: &Path) -> anyhow::Result<Shape> {
    let path = dir.join("dev-cluster.json");
    let stored: Option<Shape> = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ),
        Err(_) => None,
    };
    let wanted = Shape {
        nodes: args.nodes.or(stored.as_ref().map(|s| s.nodes)).unwrap_or(3),
        base_port: args
            .base_port
            .or(stored.as_ref().map(|s| s.base_port))
            .unwrap_or(9100),
    };
    if wanted.nodes == 0 || wanted.nodes > 50 {
        bail!("--nodes must be between 1 and 50");
    }
    if u64::from(wanted.base_port) + 200 + wanted.nodes > 65_535 {
        bail!(
            "--base-port {} leaves no room for {} nodes",
            wanted.base_port,
            wanted.nodes
        );
    }
    match stored {
        Some(s) if s != wanted => bail!(
            "{} holds a {}-node cluster on base port {}: run with those values, or use another --dir",
            dir.display(),
            s.nodes,
            s.base_port
        ),
        Some(_) => {}
        None => std::fs::write(&path, serde_json::to_string_pretty(&wanted)?)?,
    }
    Ok(wanted)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let Shape { nodes, base_port } = shape(&args, &dir)?;
    let secret_file = dir.join("shared-secret");
    let secret = read_or_create(&secret_file, || random_hex(32))?;
    let cluster_id = read_or_create(&dir.join("cluster-id"), || uuid::Uuid::new_v4().to_string())?;
    // The data key sealing credential secrets: one for the cluster, the same on every member.
    let data_key_file = dir.join("data-key");
    if !data_key_file.exists() {
        custos_server::secrets::generate_key_file(&data_key_file)
            .with_context(|| format!("writing {}", data_key_file.display()))?;
    }
    let members: Vec<(u64, String, String)> = (1..=nodes)
        .map(|i| {
            let sdk = format!("127.0.0.1:{}", u64::from(base_port) + i - 1);
            let raft = format!("127.0.0.1:{}", u64::from(base_port) + 100 + i - 1);
            (i, raft, sdk)
        })
        .collect();
    let exe = std::env::current_exe().context("locating the custos binary")?;
    let mut children = Vec::new();
    let mut infos = Vec::new();
    let mut tls = BTreeMap::new();
    let mut ca_file = None;
    if !args.insecure {
        let ca = crate::certs::DevCa::open_or_create(&dir.join("tls"), &cluster_id)?;
        for (id, _, _) in &members {
            let node = ca.node_cert(&dir.join(format!("node-{id}")).join("tls"), *id)?;
            tls.insert(*id, (ca.ca_file.clone(), node.cert_file, node.key_file));
        }
        ca_file = Some(ca.ca_file.clone());
    }
    let sdk_ca = ca_file.clone().filter(|_| args.sdk_tls);
    let client_tls = sdk_ca.as_deref().map(ClientTls::from_ca_file).transpose()?;
    let extras = NodeExtras {
        zones: args.zones,
        capacity: args.capacity,
        replace_after_secs: args.replace_after_secs,
        audit_max_records: args.audit_max_records,
        snapshot_every: args.snapshot_every,
        keep_log_entries: args.keep_log_entries,
        heartbeat_ms: args.heartbeat_ms,
        election_timeout_ms: args.election_timeout_ms,
        auth_enabled: !args.no_auth,
        tls,
        sdk_tls: args.sdk_tls,
    };
    for (id, raft, sdk) in &members {
        let node_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let config = node_dir.join("config.toml");
        std::fs::write(
            &config,
            node_config(*id, &cluster_id, &node_dir, &members, &secret_file, &extras)
                + &format!("\n[secrets]\ndata_key_file = {data_key_file:?}\n"),
        )?;
        let log = node_dir.join("server.log");
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(&exe)
            .arg("server")
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(logfile.try_clone()?)
            .stderr(logfile)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        // `kill -9 $(cat DIR/node-N/pid)` stops one node (docs/tutorial.md does).
        std::fs::write(
            node_dir.join("pid"),
            format!("{}\n", child.id().unwrap_or(0)),
        )?;
        infos.push(NodeInfo {
            id: *id,
            sdk: sdk.clone(),
            raft: raft.clone(),
            rest: rest_addr(sdk),
            metrics: metrics_addr(sdk),
            pid: child.id().unwrap_or(0),
            data_dir: node_dir.join("data"),
            config,
            log,
        });
        children.push((*id, child));
    }
    let endpoints: Vec<String> = members.iter().map(|(_, _, sdk)| sdk.clone()).collect();
    eprintln!("starting {nodes} nodes in {} ...", dir.display());
    let tokens = dev_tokens(&secret)?;
    let ready = wait_ready(
        &endpoints,
        &tokens["admin"],
        client_tls.as_ref(),
        Duration::from_secs(args.ready_timeout_secs),
    );
    let leader = match tokio::select! {
        r = ready => r,
        e = first_exit(&mut children) => Err(e),
    } {
        Ok(l) => l,
        Err(e) => {
            stop_children(&mut children).await;
            return Err(e);
        }
    };
    let cluster = ClusterFile {
        endpoints: endpoints.clone(),
        ca_file: sdk_ca.clone(),
        peer_tls: !args.insecure,
        tokens,
        issuer: DEV_ISSUER,
        shared_secret_file: secret_file,
        cluster_id,
        nodes: infos,
    };
    // Before cluster.json, which tells waiting scripts the cluster is up.
    std::fs::write(dir.join("env.sh"), env_file(&cluster))?;
    let cluster_json = dir.join("cluster.json");
    write_private(&cluster_json, &serde_json::to_string_pretty(&cluster)?)?;
    println!("custos dev cluster is up: leader is node {leader}");
    println!("endpoints: {}", endpoints.join(","));
    println!("tokens and pids: {}", cluster_json.display());
    match (&cluster.ca_file, cluster.peer_tls) {
        (Some(ca), _) => println!("SDK and REST over TLS: trust {}", ca.display()),
        (None, true) => println!("peers use mutual TLS; the SDK and REST are plaintext"),
        (None, false) => println!("--insecure: peers, SDK and REST are PLAINTEXT"),
    }
    let (ca_flag, curl_ca, scheme) = match &cluster.ca_file {
        Some(ca) => (
            format!(" --ca {}", ca.display()),
            format!(" --cacert {}", ca.display()),
            "https",
        ),
        None => (String::new(), String::new(), "http"),
    };
    println!("try:");
    println!(
        "  CUSTOS_TOKEN=$(jq -r .tokens.user {}) custos volume create vol1 --size 1Gi --endpoint {}{ca_flag}",
        cluster_json.display(),
        endpoints.join(",")
    );
    if let Some(node) = cluster.nodes.first() {
        println!(
            "  curl{curl_ca} -H \"Authorization: bearer $(jq -r .tokens.user {})\" {scheme}://{}/v1/volumes",
            cluster_json.display(),
            node.rest
        );
        println!(
            "web console: {scheme}://{}/ (sign in with a token of {})",
            node.rest,
            cluster_json.display()
        );
    }
    println!("stop with Ctrl-C (SIGINT) or SIGTERM");

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut exited = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, (id, child)) in children.iter_mut().enumerate() {
                    if !exited[i] {
                        if let Ok(Some(status)) = child.try_wait() {
                            exited[i] = true;
                            eprintln!("node {id} exited ({status}); the others keep serving");
                        }
                    }
                }
            }
        }
    }
    eprintln!("stopping the cluster ...");
    stop_children(&mut children).await;
    Ok(())
}

/// `MIN-MAX` milliseconds, MIN < MAX.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not MIN-MAX (milliseconds)"))?;
    let (a, b): (u64, u64) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a number"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a number"))?,
    );
    if a == 0 || a >= b {
        return Err(format!("{s:?}: MIN must be at least 1 and below MAX"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::{env_file, ClusterFile};
    use std::collections::BTreeMap;

    #[test]
    fn env_sh_round_trips_through_a_shell_and_holds_no_token() {
        let mut tokens = BTreeMap::new();
        tokens.insert("admin", "eyJ.secret-token".to_string());
        let cluster = ClusterFile {
            endpoints: vec!["127.0.0.1:9100".into(), "127.0.0.1:9101".into()],
            ca_file: Some("/tmp/it's here/tls/ca.pem".into()),
            peer_tls: true,
            tokens,
            issuer: super::DEV_ISSUER,
            shared_secret_file: "/tmp/it's here/shared-secret".into(),
            cluster_id: "c".into(),
            nodes: vec![],
        };
        let text = env_file(&cluster);
        assert!(!text.contains("eyJ"), "{text}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{text}\nprintf '%s|%s|%s|%s' \"$CUSTOS_DEV_ENDPOINTS\" \"$CUSTOS_DEV_CA\" \
                 \"$CUSTOS_DEV_ISSUER\" \"$CUSTOS_DEV_SECRET_FILE\""
            ))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "127.0.0.1:9100,127.0.0.1:9101|/tmp/it's here/tls/ca.pem|custos-dev|/tmp/it's here/shared-secret"
        );
    }
}
