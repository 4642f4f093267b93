//! Membership against real processes: a node joins through a follower and is promoted,
//! leadership moves on request and on SIGTERM, a wiped node under its old id is refused and
//! replaced under a new id, bad requests get their codes; and backup and restore: a cluster's
//! state (volumes, roles, audit trail) seeds a new cluster that another node then joins.

use custos_cluster_tests::{custos_bin, TestCluster};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the CLI with `args` (endpoint and token passed explicitly).
fn cli(args: &[&str]) -> Output {
    Command::new(custos_bin())
        .args(args)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .env_remove("CUSTOS_CONTEXT")
        .env(
            "CUSTOS_CONFIG_DIR",
            std::env::temp_dir().join("custos-membership-cli"),
        )
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}", text(&o));
    o
}

#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(o.status.code(), Some(want), "{}", text(o));
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// A free port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `custos server` the test started itself; killed on drop.
struct ExtraNode {
    id: u64,
    sdk: String,
    raft: String,
    log: PathBuf,
    child: Option<Child>,
}

impl ExtraNode {
    /// Writes node `id`'s config from `template` (another node's `custos dev` config): own
    /// ports, data dir and certificate, no initial members. `extra` goes on the command line.
    fn start(cluster: &TestCluster, template: &Path, id: u64, extra: &[&str]) -> ExtraNode {
        let dir = cluster.dir.path().join(format!("extra-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = dir.join("tls");
        ok(cli(&[
            "certs",
            "node",
            "--ca-dir",
            cluster.dir.path().join("tls").to_str().unwrap(),
            "--id",
            &id.to_string(),
            "--out-dir",
            tls.to_str().unwrap(),
        ]));
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(template).unwrap()).unwrap();
        let (sdk, raft) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        config.insert("node_id".into(), (id as i64).into());
        config.insert("sdk_listen".into(), sdk.clone().into());
        config.insert("raft_listen".into(), raft.clone().into());
        config.insert(
            "rest_listen".into(),
            format!("127.0.0.1:{}", free_port()).into(),
        );
        config.insert(
            "metrics_listen".into(),
            format!("127.0.0.1:{}", free_port()).into(),
        );
        config.insert(
            "data_dir".into(),
            dir.join("data").display().to_string().into(),
        );
        config.remove("initial_members");
        let t = config["tls"].as_table_mut().unwrap();
        t.insert(
            "cert_file".into(),
            tls.join("node.pem").display().to_string().into(),
        );
        t.insert(
            "key_file".into(),
            tls.join("node.key").display().to_string().into(),
        );
        let path = dir.join("config.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let mut node = ExtraNode {
            id,
            sdk,
            raft,
            log: dir.join("server.log"),
            child: None,
        };
        node.spawn(&path, extra);
        node
    }

    fn spawn(&mut self, config: &Path, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(custos_bin())
                .arg("server")
                .arg("--config")
                .arg(config)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// Waits (bounded) for the process to exit after a signal; its exit status.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ExtraNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `custos cluster status -o json` through `endpoint`: member id → voter.
fn members(endpoint: &str, token: &str) -> Option<(u64, BTreeMap<u64, bool>)> {
    let o = cli(&[
        "cluster",
        "status",
        "-o",
        "json",
        "--endpoint",
        endpoint,
        "--token",
        token,
    ]);
    if !o.status.success() {
        return None;
    }
    let v = json(&o);
    let members = v["members"]
        .as_array()?
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
        .collect();
    Some((v["leader_id"].as_u64().unwrap_or(0), members))
}

/// Polls until `check` holds for the membership seen through `endpoint` (bounded).
#[track_caller]
fn wait_members(
    endpoint: &str,
    token: &str,
    what: &str,
    check: impl Fn(u64, &BTreeMap<u64, bool>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((leader, m)) = members(endpoint, token) {
            if check(leader, &m) {
                return;
            }
            last = Some((leader, m));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not reached within 60 s; last seen {last:?}");
}

/// The message of every audit record, oldest first.
fn audit_messages(endpoint: &str, token: &str) -> Vec<String> {
    let o = ok(cli(&[
        "audit",
        "list",
        "--all",
        "-o",
        "json",
        "--endpoint",
        endpoint,
        "--token",
        token,
    ]));
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect()
}

fn create_volume(endpoint: &str, token: &str, name: &str) -> Output {
    cli(&[
        "volume",
        "create",
        name,
        "--size",
        "1Gi",
        "--endpoint",
        endpoint,
        "--token",
        token,
    ])
}

fn volume_names(endpoint: &str, token: &str) -> Vec<String> {
    let v = json(&ok(cli(&[
        "volume",
        "list",
        "-o",
        "json",
        "--endpoint",
        endpoint,
        "--token",
        token,
    ])));
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn nodes_join_lead_leave_and_a_wiped_node_cannot_come_back_under_its_old_id() {
    let mut cluster = TestCluster::start(3).unwrap();
    let admin = cluster.token("admin");
    let user = cluster.token("user");
    let eps = cluster.info.endpoints.join(",");
    ok(create_volume(&eps, &user, "before-join"));

    // Only administrators change membership: refused at the edge, with the permission code.
    let o = cli(&[
        "cluster",
        "remove",
        "2",
        "--endpoint",
        &eps,
        "--token",
        &user,
    ]);
    code(&o, 4);

    // Node 4 joins through node 2 (whichever member answers forwards to the leader) and is
    // promoted once caught up.
    let template = cluster.node(3).config.clone();
    let via = cluster.node(2).raft.clone();
    let node4 = ExtraNode::start(&cluster, &template, 4, &["--join", &via]);
    wait_members(&eps, &admin, "node 4 a voter", |_, m| {
        m.get(&4) == Some(&true)
    });
    // It serves reads of what was written before it joined (linearizable, through it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while volume_names(&node4.sdk, &user) != ["before-join"] {
        assert!(Instant::now() < deadline, "node 4 never served the volume");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same node under another address is refused; unknown members are not found.
    let o = cli(&[
        "cluster",
        "add-learner",
        "4",
        "--raft-addr",
        "127.0.0.1:1",
        "--sdk-addr",
        "127.0.0.1:2",
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]);
    code(&o, 6);
    assert!(text(&o).contains("already a voter"), "{}", text(&o));
    code(
        &cli(&[
            "cluster",
            "promote",
            "99",
            "--endpoint",
            &eps,
            "--token",
            &admin,
        ]),
        3,
    );
    code(
        &cli(&[
            "cluster",
            "remove",
            "99",
            "--endpoint",
            &eps,
            "--token",
            &admin,
        ]),
        3,
    );

    // Leadership moves to node 4 on request, asked through a node that does not lead.
    let o = ok(cli(&[
        "cluster",
        "transfer-leader",
        "4",
        "-o",
        "json",
        "--endpoint",
        &cluster.node(1).sdk,
        "--token",
        &admin,
    ]));
    assert_eq!(json(&o)["leader_id"], 4, "{}", text(&o));
    wait_members(&cluster.node(1).sdk, &admin, "node 4 leads", |l, _| l == 4);

    // Node 3 loses its data and comes back under its old id: the cluster refuses its traffic
    // (a new incarnation) and keeps serving.
    cluster.kill9(3);
    let data3 = cluster.node(3).data_dir.clone();
    std::fs::remove_dir_all(&data3).unwrap();
    cluster.restart(3).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log3 = cluster.node(3).log.clone();
    while !std::fs::read_to_string(&log3)
        .unwrap_or_default()
        .contains("refused Raft traffic meant for another incarnation")
    {
        assert!(
            Instant::now() < deadline,
            "the wiped node 3 was never refused"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(create_volume(&eps, &user, "while-3-is-wiped"));
    let (_, m) = members(&cluster.node(1).sdk, &admin).unwrap();
    assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let o = cli(&[
        "volume",
        "list",
        "--endpoint",
        &cluster.node(3).sdk,
        "--token",
        &user,
    ]);
    assert!(
        !o.status.success(),
        "the wiped node served data: {}",
        text(&o)
    );

    // The replacement procedure: remove the old id, join under a new one.
    cluster.kill9(3);
    ok(cli(&[
        "cluster",
        "remove",
        "3",
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]));
    // Even removed, the old id stays refused to the wiped data dir.
    let mut wiped = ExtraNode::start(&cluster, &template, 3, &["--join", &node4.raft]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wiped
        .log_text()
        .contains("was registered with another data directory")
    {
        assert!(
            Instant::now() < deadline,
            "the wiped node 3 was admitted: {}",
            wiped.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wiped.signal(nix::sys::signal::Signal::SIGKILL);
    wiped.wait_exit(Duration::from_secs(10));
    let node5 = ExtraNode::start(&cluster, &template, 5, &["--join", &node4.raft]);
    wait_members(&eps, &admin, "3 removed, 5 a voter", |_, m| {
        !m.contains_key(&3) && m.get(&5) == Some(&true)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while volume_names(&node5.sdk, &user) != ["before-join", "while-3-is-wiped"] {
        assert!(Instant::now() < deadline, "node 5 never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM on the leader hands leadership over before the process exits; writes through
    // another member go on, and every acknowledged one is there afterwards.
    let mut node4 = node4;
    let writer_eps = format!("{},{}", cluster.node(1).sdk, cluster.node(2).sdk);
    node4.signal(nix::sys::signal::Signal::SIGTERM);
    let mut acked = vec![];
    for i in 0..10 {
        let name = format!("during-handover-{i}");
        if create_volume(&writer_eps, &user, &name).status.success() {
            acked.push(name);
        }
    }
    let status = node4
        .wait_exit(Duration::from_secs(15))
        .expect("node 4 did not stop");
    assert!(status.success(), "node 4 exited with {status}");
    assert!(
        node4.log_text().contains("handed leadership over"),
        "node 4 stopped without handing over: {}",
        node4.log_text()
    );
    wait_members(&cluster.node(1).sdk, &admin, "a new leader", |l, _| {
        l != 4 && l != 0
    });
    let names = volume_names(&cluster.node(1).sdk, &user);
    for name in &acked {
        assert!(
            names.contains(name),
            "acknowledged {name} is missing: {names:?}"
        );
    }
    assert_eq!(
        acked.len(),
        10,
        "writes failed during the hand-over: {acked:?}"
    );

    // Every change is in the audit trail, and the members agree on it.
    let o = ok(cli(&[
        "audit",
        "list",
        "--all",
        "--method",
        "clusteradmin.addlearner",
        "-o",
        "json",
        "--endpoint",
        &writer_eps,
        "--token",
        &admin,
    ]));
    let records = json(&o);
    let messages: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Membership change authorized: add member 4 at ")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Membership change authorized: add member 5 at ")),
        "{messages:?}"
    );
    // A joiner is registered (with its data dir's incarnation) before it becomes a member, so
    // a wipe right after joining is refused like any other (found by the chaos nemesis: a node
    // wiped between joining and registering was taken for itself).
    let messages = audit_messages(&writer_eps, &admin);
    for id in [4, 5] {
        let registered = messages
            .iter()
            .position(|m| *m == format!("Node {id} registered"));
        let added = messages.iter().position(|m| {
            m.starts_with(&format!(
                "Membership change authorized: add member {id} at "
            ))
        });
        assert!(
            matches!((registered, added), (Some(r), Some(a)) if r < a),
            "node {id}: registered at {registered:?}, added at {added:?}"
        );
    }
    // Node 4 stopped but is still a member: verify the members that answer.
    ok(cli(&[
        "audit",
        "verify",
        "--reachable-only",
        "--endpoint",
        &writer_eps,
        "--token",
        &admin,
    ]));
    drop(node5);
}

/// A removed member is retired: it may still run and hold a certificate the CA signed, but the
/// others refuse its peer calls (a write sent to it is not forwarded into the cluster), and its
/// id never comes back (not as a learner, not by joining).
#[test]
fn a_removed_member_is_retired_and_its_id_never_acts_again() {
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.token("admin");
    let user = cluster.token("user");
    let eps = cluster.info.endpoints.join(",");
    let (leader, _) = members(&eps, &admin).expect("cluster status");
    let gone = if leader == 3 { 2 } else { 3 };
    let rest: Vec<String> = (1..=3u64)
        .filter(|i| *i != gone)
        .map(|i| cluster.node(i).sdk.clone())
        .collect();
    let rest = rest.join(",");
    ok(cli(&[
        "cluster",
        "remove",
        &gone.to_string(),
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]));
    wait_members(&rest, &admin, "removed", |_, m| !m.contains_key(&gone));

    // Still running, the removed node takes a write: it cannot get it into the cluster.
    let o = create_volume(&cluster.node(gone).sdk, &user, "via-removed");
    assert!(!o.status.success(), "the removed node's write went through");
    ok(create_volume(&rest, &user, "after-removal"));
    assert_eq!(volume_names(&rest, &user), ["after-removal"]);
    let log = std::fs::read_to_string(&cluster.node(leader).log).unwrap_or_default();
    assert!(
        log.contains("refused a peer call from a node removed from the cluster"),
        "the leader never refused the removed node"
    );

    // Its id never comes back.
    let o = cli(&[
        "cluster",
        "add-learner",
        &gone.to_string(),
        "--raft-addr",
        &cluster.node(gone).raft,
        "--sdk-addr",
        &cluster.node(gone).sdk,
        "--endpoint",
        &rest,
        "--token",
        &admin,
    ]);
    code(&o, 6);
    assert!(
        text(&o).contains("removed from the cluster"),
        "{}",
        text(&o)
    );
    // The trail says so: the change authorized, then the id retired.
    let messages = audit_messages(&rest, &admin);
    let authorized = messages
        .iter()
        .position(|m| *m == format!("Membership change authorized: remove member {gone}"));
    let retired = messages
        .iter()
        .position(|m| *m == format!("Node {gone} retired: removed from the cluster"));
    assert!(
        matches!((authorized, retired), (Some(a), Some(r)) if a < r),
        "{messages:?}"
    );
}

#[test]
fn a_backup_seeds_a_new_cluster_that_others_join() {
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.token("admin");
    let user = cluster.token("user");
    let eps = cluster.info.endpoints.join(",");
    for name in ["alpha", "beta"] {
        ok(create_volume(&eps, &user, name));
    }
    let dir = tempfile::tempdir().unwrap();
    let role = dir.path().join("role.json");
    std::fs::write(
        &role,
        r#"{"name":"ops.reader","rules":[{"services":["volume"],"apis":["inspect*","enumerate*"]}]}"#,
    )
    .unwrap();
    ok(cli(&[
        "role",
        "create",
        "--role-config",
        role.to_str().unwrap(),
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]));
    // A denial, so the trail holds refusals too.
    code(&create_volume(&eps, &cluster.token("view"), "refused"), 4);
    // A quota, so the backup carries quotas too.
    ok(cli(&[
        "quota",
        "set",
        "--group",
        "ops",
        "--volumes",
        "7",
        "--bytes",
        "1Ti",
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]));

    // Edge denials reach the replicated trail in batches: wait for this one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = ok(cli(&[
            "audit",
            "list",
            "--all",
            "--user",
            "view",
            "-o",
            "json",
            "--endpoint",
            &eps,
            "--token",
            &admin,
        ]));
        if !json(&o).as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the denial never reached the trail"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Backups are for administrators only.
    let file = dir.path().join("custos.backup");
    code(
        &cli(&[
            "cluster",
            "backup",
            "--output",
            file.to_str().unwrap(),
            "--endpoint",
            &eps,
            "--token",
            &user,
        ]),
        4,
    );
    ok(cli(&[
        "cluster",
        "backup",
        "--output",
        file.to_str().unwrap(),
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ]));
    let head = json(&ok(cli(&[
        "audit",
        "list",
        "--newest-first",
        "--limit",
        "1",
        "-o",
        "json",
        "--endpoint",
        &eps,
        "--token",
        &admin,
    ])))[0]["seq"]
        .as_u64()
        .unwrap();

    // A damaged file is refused before anything is written.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let template = cluster.node(1).config.clone();
    let mut bad = ExtraNode::start(
        &cluster,
        &template,
        11,
        &["--restore", damaged.to_str().unwrap()],
    );
    let status = bad
        .wait_exit(Duration::from_secs(20))
        .expect("a damaged restore kept running");
    assert!(!status.success());
    assert!(bad.log_text().contains("damaged"), "{}", bad.log_text());

    // The backup seeds a new one-node cluster (node 21) holding the same state.
    let seed = ExtraNode::start(
        &cluster,
        &template,
        21,
        &["--restore", file.to_str().unwrap()],
    );
    wait_members(&seed.sdk, &admin, "the restored node leads", |l, m| {
        l == 21 && m.len() == 1
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while cli(&["volume", "list", "--endpoint", &seed.sdk, "--token", &user])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "the restored node never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(volume_names(&seed.sdk, &user), ["alpha", "beta"]);
    let role = json(&ok(cli(&[
        "role",
        "inspect",
        "ops.reader",
        "-o",
        "json",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ])));
    assert_eq!(role["name"], "ops.reader", "{role}");
    // The quota, and the use rebuilt from the restored volumes.
    let quotas = json(&ok(cli(&[
        "quota",
        "show",
        "--group",
        "ops",
        "-o",
        "json",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ])));
    assert_eq!(quotas[0]["max_volumes"], "7", "{quotas}");
    assert_eq!(quotas[0]["max_bytes"], (1u64 << 40).to_string(), "{quotas}");
    let usage = json(&ok(cli(&[
        "quota",
        "usage",
        "-o",
        "json",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ])));
    assert!(
        usage
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["subject"]["user"] == "user" && u["volumes"] == "2"),
        "{usage}"
    );
    let denied = json(&ok(cli(&[
        "audit",
        "list",
        "--all",
        "--user",
        "view",
        "-o",
        "json",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ])));
    assert!(
        denied
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["message"] == "Access denied" && r["method"] == "volume.create"),
        "{denied}"
    );
    let newest = json(&ok(cli(&[
        "audit",
        "list",
        "--newest-first",
        "--limit",
        "1",
        "-o",
        "json",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ])))[0]["seq"]
        .as_u64()
        .unwrap();
    assert!(newest >= head, "the trail went back: {newest} < {head}");
    ok(cli(&[
        "audit",
        "verify",
        "--endpoint",
        &seed.sdk,
        "--token",
        &admin,
    ]));
    // A second node joins the restored cluster: the log before the backup is gone, so it
    // catches up by snapshot.
    let joiner = ExtraNode::start(&cluster, &template, 22, &["--join", &seed.raft]);
    wait_members(&seed.sdk, &admin, "node 22 a voter", |_, m| {
        m.get(&22) == Some(&true)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while volume_names(&joiner.sdk, &user) != ["alpha", "beta"] {
        assert!(Instant::now() < deadline, "node 22 never caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = ok(cli(&[
        "audit",
        "verify",
        "--endpoint",
        &format!("{},{}", seed.sdk, joiner.sdk),
        "--token",
        &admin,
    ]));
    assert!(text(&o).contains("agree"), "{}", text(&o));
    assert_eq!(joiner.id, 22);
}
