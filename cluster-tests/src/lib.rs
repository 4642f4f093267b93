//! Test harness: runs a real custos cluster (`custos dev` and `custos server` processes) on
//! loopback in a temporary directory, kills and restarts nodes, and cleans up on drop.

pub mod chaos;
pub mod history;
pub mod linearizability;
pub mod proxy;
pub mod raw_grpc;
pub mod spec;

use anyhow::{bail, Context};
use custos_client::{Client, ClientTls};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `DIR/cluster.json` as `custos dev` writes it.
#[derive(Clone, Debug, Deserialize)]
pub struct ClusterInfo {
    pub endpoints: Vec<String>,
    /// The CA of the SDK's certificates when `custos dev --sdk-tls` serves it over TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether peers use mutual TLS (all but `custos dev --insecure`).
    #[serde(default)]
    pub peer_tls: bool,
    pub tokens: BTreeMap<String, String>,
    pub issuer: String,
    pub shared_secret_file: PathBuf,
    pub cluster_id: String,
    pub nodes: Vec<NodeInfo>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub sdk: String,
    pub raft: String,
    /// REST gateway address (`custos dev` puts it at the SDK port + 200).
    #[serde(default)]
    pub rest: String,
    /// Prometheus metrics address (`custos dev` puts it at the SDK port + 300).
    #[serde(default)]
    pub metrics: String,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// The custos binary under test: `CUSTOS_BIN`, else the workspace's debug build.
pub fn custos_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CUSTOS_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("custos");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p custos-cli` first (scripts/test.sh does) or set CUSTOS_BIN",
        bin.display()
    );
    bin
}

/// `GET /metrics` on `addr` (`127.0.0.1:port`): over HTTPS verifying the server against `ca`
/// when given, else plain HTTP; with `Authorization: Bearer <token>` when given. The status and
/// body; a connection refused or closed is an error. Bounded by a 10 s timeout.
pub fn scrape(addr: &str, ca: Option<&Path>, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(10);
    let tcp =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let mut raw = Vec::new();
    match ca {
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())?;
            tcp.read_to_end(&mut raw)?;
        }
        Some(ca) => {
            use tokio_rustls::rustls;
            use tokio_rustls::rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
                roots.add(cert?)?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
            let name = rustls::pki_types::ServerName::try_from(host)?;
            let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(request.as_bytes())?;
            // The server may close without close_notify once it has answered.
            if let Err(e) = tls.read_to_end(&mut raw) {
                if raw.is_empty() {
                    return Err(e.into());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// A base port P such that P..P+n, P+100..P+100+n, P+200..P+200+n and P+300..P+300+n are free on 127.0.0.1
/// right now.
pub fn free_base_port(n: u16) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let base: u16 = 20_000 + (rand_u16() % 30_000);
        let ok = (0..n).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 100 + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 200 + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 300 + i)).is_ok()
        });
        if ok {
            return Ok(base);
        }
    }
    bail!("no free port range found on 127.0.0.1")
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as u16
}

/// Runs `custos dev --dir DIR ARGS...`, logging to `DIR/dev.log`.
fn spawn_dev(dir: &Path, args: &[&str]) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dev.log"))?;
    Command::new(custos_bin())
        .arg("dev")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting custos dev")
}

/// A running cluster. Dropping it stops every process it started.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub info: ClusterInfo,
    dev: Child,
    /// Nodes restarted by the test (not children of `custos dev`), by id.
    restarted: BTreeMap<u64, Child>,
}

impl TestCluster {
    /// Starts `custos dev --nodes n` and waits (bounded) for its `cluster.json`.
    pub fn start(n: u16) -> anyhow::Result<TestCluster> {
        TestCluster::start_with(n, &[])
    }

    /// Like [`TestCluster::start`], with more `custos dev` flags (`--zones 3`, ...).
    pub fn start_with(n: u16, flags: &[&str]) -> anyhow::Result<TestCluster> {
        let dir = tempfile::Builder::new().prefix("custos-test-").tempdir()?;
        let base = free_base_port(n)?;
        let mut args = vec![
            "--nodes".to_string(),
            n.to_string(),
            "--base-port".to_string(),
            base.to_string(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = spawn_dev(dir.path(), &args)?;
        let mut cluster = TestCluster {
            dir,
            info: ClusterInfo {
                endpoints: vec![],
                ca_file: None,
                peer_tls: false,
                tokens: BTreeMap::new(),
                issuer: String::new(),
                shared_secret_file: PathBuf::new(),
                cluster_id: String::new(),
                nodes: vec![],
            },
            dev,
            restarted: BTreeMap::new(),
        };
        cluster.wait_for_info()?;
        Ok(cluster)
    }

    /// Stops every process, then runs `custos dev` again on the same directory: the same
    /// cluster comes back with its data.
    pub fn restart_all(&mut self) -> anyhow::Result<()> {
        self.stop_processes();
        std::fs::remove_file(self.dir.path().join("cluster.json"))?;
        self.restarted.clear();
        self.dev = spawn_dev(self.dir.path(), &[])?;
        self.wait_for_info()
    }

    fn wait_for_info(&mut self) -> anyhow::Result<()> {
        let path = self.dir.path().join("cluster.json");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(info) = serde_json::from_str::<ClusterInfo>(&text) {
                    self.info = info;
                    return Ok(());
                }
            }
            if let Some(status) = self.dev.try_wait()? {
                bail!("custos dev exited early ({status}):\n{}", self.dev_log());
            }
            if Instant::now() > deadline {
                bail!(
                    "custos dev did not become ready in 90 s:\n{}",
                    self.dev_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dev_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dev.log")).unwrap_or_default()
    }

    /// The value of the unlabelled metric `name` on node `id` (its `/metrics`, over HTTPS with
    /// the cluster's CA when the cluster serves its clients over TLS).
    pub fn metric(&self, id: u64, name: &str) -> u64 {
        let addr = &self.node(id).metrics;
        let (status, text) = scrape(addr, self.info.ca_file.as_deref(), None)
            .unwrap_or_else(|e| panic!("metrics of node {id}: {e:#}"));
        assert_eq!(status, 200, "metrics of node {id}: {text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("node {id} exports no {name}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name} on node {id}: {e}"))
    }

    pub fn token(&self, who: &str) -> String {
        self.info
            .tokens
            .get(who)
            .cloned()
            .unwrap_or_else(|| panic!("no {who} token"))
    }

    pub fn node(&self, id: u64) -> &NodeInfo {
        self.info
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id")
    }

    /// Node `id`'s local log `file` (`audit.log`, `access.log`) once `done` holds for its text,
    /// or its text after 5 s. Nodes buffer these lines for up to `[audit] log_flush_ms`.
    pub fn local_log_until(&self, id: u64, file: &str, done: impl Fn(&str) -> bool) -> String {
        let path = self.node(id).data_dir.join(file);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if done(&text) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The furthest index node `id` has purged its Raft log up to, read from its log file's
    /// "purging the Raft log" lines (0 when it has not purged).
    pub fn purged_up_to(&self, id: u64) -> u64 {
        std::fs::read_to_string(&self.node(id).log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("purging the Raft log"))
            .map(strip_ansi)
            .filter_map(|l| {
                l.split("index=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// Creates volumes (1 MiB, `purge-pad-N`) through `client` until every member but `late`
    /// has purged its Raft log past `index`, so `late` (which holds the log up to `index`) can
    /// catch up only by a snapshot install. openraft purges only while no replication task
    /// reads the entries (the one to a dead member retries), so a fixed number of writes is
    /// not always enough. Bounded: panics after 200 volumes.
    pub async fn create_until_purged_past(&self, client: &Client, late: u64, index: u64) {
        for n in 0..=200 {
            let purged = self
                .info
                .nodes
                .iter()
                .map(|node| node.id)
                .filter(|id| *id != late)
                .map(|id| self.purged_up_to(id))
                .min();
            if purged.is_some_and(|p| p > index) {
                return;
            }
            assert!(
                n < 200,
                "the members never purged past index {index} (purged up to {purged:?})"
            );
            client
                .create_volume(&custos_client::CreateVolume {
                    name: format!("purge-pad-{n}"),
                    size: 1 << 20,
                    ha_level: 1,
                    ..Default::default()
                })
                .await
                .expect("a padding volume");
        }
    }

    /// Node `id`'s Raft status (term, leader, log indexes), asked as the admin.
    pub async fn status(&self, id: u64) -> custos_client::StatusReply {
        self.client(id, Some(&self.token("admin")))
            .status()
            .await
            .expect("status")
    }

    /// A client talking to node `id` only.
    pub fn client(&self, id: u64, token: Option<&str>) -> Client {
        Client::with_tls(&[self.node(id).sdk.clone()], token, self.sdk_tls().as_ref())
            .expect("client")
            .with_timeout(Duration::from_secs(10))
    }

    /// A client failing over among all nodes.
    pub fn any_client(&self, token: Option<&str>) -> Client {
        Client::with_tls(&self.info.endpoints, token, self.sdk_tls().as_ref())
            .expect("client")
            .with_timeout(Duration::from_secs(10))
    }

    /// The TLS a client needs for this cluster's SDK (none when it is plaintext).
    pub fn sdk_tls(&self) -> Option<ClientTls> {
        self.info
            .ca_file
            .as_deref()
            .map(|ca| ClientTls::from_ca_file(ca).expect("the cluster's CA file"))
    }

    /// The leader as node `asker` sees it, waiting (bounded) until it knows one.
    pub async fn leader(&self, asker: u64) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let admin = self.token("admin");
            if let Ok(s) = self
                .client(asker, Some(&admin))
                .with_timeout(Duration::from_secs(1))
                .status()
                .await
            {
                if s.leader_id != 0 {
                    return Ok(s.leader_id);
                }
            }
            if Instant::now() > deadline {
                bail!("node {asker} knows no leader after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self, id: u64) -> u32 {
        match self.restarted.get(&id) {
            Some(child) => child.id(),
            None => self.node(id).pid,
        }
    }

    /// SIGKILLs node `id` and waits until its SDK port stops answering.
    pub fn kill9(&mut self, id: u64) {
        let pid = self.pid(id);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        if let Some(mut child) = self.restarted.remove(&id) {
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.node(id).sdk).is_ok() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOPs node `id`; it gets SIGCONT when the returned guard is dropped.
    pub fn pause(&self, id: u64) -> Paused {
        let pid = Pid::from_raw(self.pid(id) as i32);
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
        Paused(pid)
    }

    /// Starts node `id` again from its config and data.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node(id).clone();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&node.log)?;
        let child = Command::new(custos_bin())
            .arg("server")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.restarted.insert(id, child);
        Ok(())
    }

    /// Signs a token with `custos auth token generate` (the real binary) for `sub` with the
    /// given roles and groups, by `issuer` with the shared secret in `secret`.
    pub fn mint_token_with(
        &self,
        issuer: &str,
        secret: &Path,
        sub: &str,
        roles: &[&str],
        groups: &[&str],
    ) -> String {
        let config = self.dir.path().join(format!("{sub}-{}.yaml", rand_u16()));
        let list = |xs: &[&str]| format!("[{}]", xs.join(", "));
        std::fs::write(
            &config,
            format!(
                "name: {sub}\nemail: {sub}@example.com\nsub: {sub}\nroles: {}\ngroups: {}\n",
                list(roles),
                list(groups)
            ),
        )
        .unwrap();
        let out = Command::new(custos_bin())
            .args([
                "auth",
                "token",
                "generate",
                "--issuer",
                issuer,
                "--token-duration",
                "1h",
                "--auth-config",
            ])
            .arg(&config)
            .arg("--shared-secret-file")
            .arg(secret)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token generate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A token from the cluster's own issuer.
    pub fn mint_token(&self, sub: &str, roles: &[&str], groups: &[&str]) -> String {
        self.mint_token_with(
            &self.info.issuer,
            &self.info.shared_secret_file,
            sub,
            roles,
            groups,
        )
    }

    /// Every file under the cluster directory (data, logs, configs), for secret scans.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

impl TestCluster {
    /// SIGTERMs `custos dev` (which stops its nodes) and kills nodes the test restarted itself.
    fn stop_processes(&mut self) {
        for (_, child) in self.restarted.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = kill(Pid::from_raw(self.dev.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.dev.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.dev.kill();
                    let _ = self.dev.wait();
                    // custos dev could not stop its children: do it here.
                    for n in &self.info.nodes {
                        let _ = kill(Pid::from_raw(n.pid as i32), Signal::SIGKILL);
                    }
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop_processes();
    }
}

/// A member held by SIGSTOP ([`TestCluster::pause`]); SIGCONT when dropped, so an assertion
/// that fails while a member is paused does not leave it paused.
pub struct Paused(Pid);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// `line` without terminal colour sequences (`ESC [ ... m`), as a log file may hold them.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every audit record `client`'s member holds that matches `query`, oldest first (at most
/// 1,000 pages of 1,000).
pub async fn all_audit_records(
    client: &Client,
    query: &custos_client::model::audit::AuditQuery,
) -> Vec<custos_client::model::audit::AuditRecord> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..1000 {
        let page = client
            .audit_list(query, token.as_deref(), 1000, false)
            .await
            .unwrap();
        out.extend(page.records);
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    out
}
