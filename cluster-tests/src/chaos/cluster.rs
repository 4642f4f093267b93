//! The chaos harness's cluster: `custos server` processes on 127.0.0.1 whose membership names
//! a fault-injecting proxy (crate::proxy) for every member's peer address, with their own CA,
//! shared secret and tokens, and process control (SIGKILL and restart, SIGSTOP/SIGCONT).
//!
//! `custos dev` bootstraps with the real peer addresses, so this harness writes the node
//! configs itself, in the same format (`crates/cli/src/dev.rs`).
//!
//! Members can be replaced (the documented procedure for a lost or retired node): the slot
//! keeps its ports and directory, the node in it gets a new id, a new certificate, a new
//! proxy and an empty data dir, and joins through a member. So the SDK addresses the workload
//! was given stay served; a slot's id is the id of the node in it now.

use crate::proxy::PeerProxies;
use anyhow::{bail, Context};
use custos_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The token issuer the chaos cluster trusts.
pub const ISSUER: &str = "custos-chaos";

/// One member.
pub struct ChaosNode {
    pub id: u64,
    pub sdk: SocketAddr,
    /// The real peer listener (the membership names the proxy instead).
    pub raft: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Killed by the nemesis and not restarted yet.
    pub down: bool,
    pub starts: u32,
}

impl ChaosNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn paused(&self) -> bool {
        self.paused
    }
}

/// A running chaos cluster. Dropping it kills every process it started.
pub struct ChaosCluster {
    pub dir: PathBuf,
    /// Keeps the temporary directory alive (none when the caller chose the directory).
    _temp: Option<tempfile::TempDir>,
    pub nodes: Vec<ChaosNode>,
    pub proxies: PeerProxies,
    pub secret_file: PathBuf,
    cluster_id: String,
    /// The cluster CA, to certify members that join later.
    ca: Issuer<'static, KeyPair>,
    ca_file: PathBuf,
    /// The id the next joining member gets.
    next_id: u64,
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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

/// The cluster CA (written to `dir/ca.pem`), as `custos dev` makes it.
fn make_ca(dir: &Path) -> anyhow::Result<(PathBuf, Issuer<'static, KeyPair>)> {
    std::fs::create_dir_all(dir)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "custos chaos CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = params.self_signed(&ca_key)?;
    let ca_file = dir.join("ca.pem");
    write_private(&ca_file, &ca_cert.pem())?;
    Ok((ca_file, Issuer::new(params, ca_key)))
}

/// Node `id`'s certificate and key (`dir/node-<id>.pem`, `.key`), naming the node as the
/// peer service checks (SAN URI `custos://node/<id>`, SAN DNS `custos-node-<id>`).
fn make_node_cert(dir: &Path, issuer: &Issuer<'static, KeyPair>, id: u64) -> anyhow::Result<()> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("custos-node-{id}"));
    p.distinguished_name = dn;
    p.subject_alt_names = vec![
        SanType::URI(format!("custos://node/{id}").try_into()?),
        SanType::DnsName(format!("custos-node-{id}").try_into()?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    ];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    write_private(&dir.join(format!("node-{id}.pem")), &cert.pem())?;
    write_private(&dir.join(format!("node-{id}.key")), &key.serialize_pem())?;
    Ok(())
}

/// What a node's config file says; `tail` is appended (the initial members, or `join`).
struct NodeConfig<'a> {
    id: u64,
    cluster_id: &'a str,
    node_dir: &'a Path,
    sdk: SocketAddr,
    raft: SocketAddr,
    tls_dir: &'a Path,
    ca_file: &'a Path,
    secret_file: &'a Path,
}

impl NodeConfig<'_> {
    fn text(&self, tail: &str) -> String {
        let (id, cluster_id, sdk, raft) = (self.id, self.cluster_id, self.sdk, self.raft);
        format!(
            "# custos chaos node {id}: peer addresses in the membership are proxies.\n\
             node_id = {id}\ncluster_id = \"{cluster_id}\"\ncluster_name = \"custos-chaos\"\n\
             data_dir = {data:?}\nsdk_listen = \"{sdk}\"\nraft_listen = \"{raft}\"\n\
             auth_enabled = true\n{tail}\n\
             [tls]\nca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\nsdk = false\n\n\
             [auth]\nusername_claim = \"sub\"\n\n[[auth.issuers]]\nname = \"{ISSUER}\"\n\n\
             [[auth.issuers.keys]]\nkind = \"hmac\"\nfile = {secret:?}\n",
            data = self.node_dir.join("data"),
            ca = self.ca_file,
            cert = self.tls_dir.join(format!("node-{id}.pem")),
            key = self.tls_dir.join(format!("node-{id}.key")),
            secret = self.secret_file,
        )
    }
}

impl ChaosCluster {
    /// Starts `n` nodes in `dir` (a new temporary directory when `None`) and waits (bounded)
    /// until every one serves and all agree on a leader.
    pub async fn start(n: u16, dir: Option<PathBuf>, seed: u64) -> anyhow::Result<ChaosCluster> {
        let (dir, temp) = match dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                (std::fs::canonicalize(&d)?, None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("custos-chaos-").tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let ids: Vec<u64> = (1..=u64::from(n)).collect();
        let mut addrs = Vec::new();
        for _ in &ids {
            let sdk: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            let raft: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
            addrs.push((sdk, raft));
        }
        let proxies = PeerProxies::start(
            &ids.iter()
                .zip(&addrs)
                .map(|(id, (_, raft))| (*id, *raft))
                .collect::<Vec<_>>(),
            seed,
        )
        .await?;
        let tls_dir = dir.join("tls");
        let (ca_file, ca) = make_ca(&tls_dir)?;
        for &id in &ids {
            make_node_cert(&tls_dir, &ca, id)?;
        }
        let secret_file = dir.join("shared-secret");
        write_private(&secret_file, &random_hex(32)?)?;
        let cluster_id = format!("chaos-{seed:x}");
        let mut members = String::new();
        for (id, (sdk, _)) in ids.iter().zip(&addrs) {
            members += &format!(
                "\n[[initial_members]]\nid = {id}\nraft_addr = \"{}\"\nsdk_addr = \"{sdk}\"\n",
                proxies.addr(*id)
            );
        }
        let mut nodes = Vec::new();
        for (id, (sdk, raft)) in ids.iter().zip(&addrs) {
            let node_dir = dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir)?;
            let config = node_dir.join("config.toml");
            let text = NodeConfig {
                id: *id,
                cluster_id: &cluster_id,
                node_dir: &node_dir,
                sdk: *sdk,
                raft: *raft,
                tls_dir: &tls_dir,
                ca_file: &ca_file,
                secret_file: &secret_file,
            }
            .text(&members);
            std::fs::write(&config, text)?;
            nodes.push(ChaosNode {
                id: *id,
                sdk: *sdk,
                raft: *raft,
                log: node_dir.join("server.log"),
                dir: node_dir,
                config,
                child: None,
                paused: false,
                down: true,
                starts: 0,
            });
        }
        let mut cluster = ChaosCluster {
            dir,
            _temp: temp,
            nodes,
            proxies,
            secret_file,
            cluster_id,
            ca,
            ca_file,
            next_id: u64::from(n) + 1,
        };
        for id in ids {
            cluster.spawn(id)?;
        }
        cluster.wait_ready(Duration::from_secs(90)).await?;
        Ok(cluster)
    }

    pub fn node(&self, id: u64) -> &ChaosNode {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    fn node_mut(&mut self, id: u64) -> &mut ChaosNode {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The SDK endpoints, by node id.
    pub fn endpoints(&self) -> Vec<(u64, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.sdk)).collect()
    }

    /// Starts node `id` from its config and data.
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let bin = crate::custos_bin();
        let node = self.node_mut(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        let pid = child.id();
        node.child = Some(child);
        node.down = false;
        node.paused = false;
        node.starts += 1;
        self.proxies.set_pid(pid, id);
        Ok(())
    }

    /// SIGKILLs node `id` (resuming it first if paused, so the kernel reaps it at once).
    pub fn kill9(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.wait();
        }
        node.down = true;
        node.paused = false;
    }

    /// SIGKILLs node `id` and deletes its data directory (a lost disk).
    pub fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill9(id);
        let data = self.node(id).data_dir();
        match std::fs::remove_dir_all(&data) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("wiping {}", data.display()))
            }
            _ => Ok(()),
        }
    }

    /// Puts a new member in the slot of node `old` (which must no longer be a member, or be
    /// about to be removed): stops it, empties its data dir, and starts a node under a new id
    /// with its own certificate and proxy that joins through `via` (as a learner only when
    /// `as_learner`). Returns the new id.
    pub async fn replace(&mut self, old: u64, via: u64, as_learner: bool) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.wipe(old)?;
        let tls_dir = self.dir.join("tls");
        make_node_cert(&tls_dir, &self.ca, id)?;
        let (sdk, raft, node_dir) = {
            let n = self.node(old);
            (n.sdk, n.raft, n.dir.clone())
        };
        let proxy = self.proxies.add(id, raft).await?;
        let join = format!(
            "join = \"{}\"\njoin_as_learner = {as_learner}\n\
             advertise_raft_addr = \"{proxy}\"\nadvertise_sdk_addr = \"{sdk}\"\n",
            self.proxies.addr(via)
        );
        let text = NodeConfig {
            id,
            cluster_id: &self.cluster_id,
            node_dir: &node_dir,
            sdk,
            raft,
            tls_dir: &tls_dir,
            ca_file: &self.ca_file,
            secret_file: &self.secret_file,
        }
        .text(&join);
        let config = node_dir.join(format!("config-{id}.toml"));
        std::fs::write(&config, text)?;
        let node = self.node_mut(old);
        node.id = id;
        node.config = config;
        self.spawn(id)?;
        Ok(id)
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(pid) = node.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
            node.paused = true;
        }
    }

    /// SIGCONTs node `id`.
    pub fn resume(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(pid) = node.pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        node.paused = false;
    }

    /// Nodes that exited although nobody killed them: (id, exit status).
    pub fn unexpected_exits(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((node.id, status.to_string()));
                    node.child = None;
                    node.down = true;
                }
            }
        }
        out
    }

    /// Resident memory of node `id` in KiB (from `/proc`), if it runs.
    pub fn rss_kib(&self, id: u64) -> Option<u64> {
        let pid = self.node(id).pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// A client for node `id` (or all nodes) with `token`.
    pub fn client(&self, ids: &[u64], token: Option<&str>) -> Client {
        let endpoints: Vec<String> = ids
            .iter()
            .map(|id| self.node(*id).sdk.to_string())
            .collect();
        Client::new(&endpoints, token)
            .expect("client")
            .with_timeout(Duration::from_secs(3))
    }

    /// A token from the cluster's issuer, signed by the real binary.
    pub fn mint_token(&self, sub: &str, roles: &[&str], groups: &[&str]) -> anyhow::Result<String> {
        let config = self.dir.join(format!("token-{sub}.yaml"));
        let list = |xs: &[&str]| {
            format!(
                "[{}]",
                xs.iter()
                    .map(|x| format!("{x:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        std::fs::write(
            &config,
            format!(
                "name: {sub}\nemail: {sub}@example.com\nsub: {sub}\nroles: {}\ngroups: {}\n",
                list(roles),
                list(groups)
            ),
        )?;
        let out = Command::new(crate::custos_bin())
            .args([
                "auth",
                "token",
                "generate",
                "--issuer",
                ISSUER,
                "--token-duration",
                "24h",
                "--auth-config",
            ])
            .arg(&config)
            .arg("--shared-secret-file")
            .arg(&self.secret_file)
            .output()?;
        if !out.status.success() {
            bail!(
                "token generate for {sub}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Waits until every running node serves and they agree on one leader, and every node
    /// has registered itself.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<u64> {
        let admin = self.mint_token("chaos-ready", &["system.admin"], &["*"])?;
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().filter(|n| !n.down) {
                match self.client(&[n.id], Some(&admin)).status().await {
                    Ok(s) if s.serving && s.leader_id != 0 => leaders.push(s.leader_id),
                    _ => break,
                }
            }
            let up = self.nodes.iter().filter(|n| !n.down).count();
            if leaders.len() == up && leaders.windows(2).all(|w| w[0] == w[1]) {
                // The registry also lists members replaced earlier in the run.
                let all = self.client(&self.ids(), Some(&admin));
                let registered = |nodes: &[custos_client::NodeInfo]| {
                    self.ids()
                        .iter()
                        .all(|id| nodes.iter().any(|n| n.id == id.to_string()))
                };
                if all.nodes().await.is_ok_and(|n| registered(&n)) {
                    return Ok(leaders[0]);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the chaos cluster was not ready within {timeout:?} (logs in {})",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Lines of the nodes' logs that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                out.push(format!("node {}: {line}", n.id));
            }
        }
        out
    }

    /// Bytes under node `id`'s data directory.
    pub fn data_bytes(&self, id: u64) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.node(id).data_dir())
    }

    /// Keeps the directory after the cluster is dropped (for a failed run's evidence).
    pub fn keep_dir(&mut self) -> PathBuf {
        if let Some(t) = self._temp.take() {
            return t.keep();
        }
        self.dir.clone()
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
