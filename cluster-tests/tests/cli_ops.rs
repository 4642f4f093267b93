//! The operator CLI against a real cluster: contexts (with failover and precedence), roles
//! from JSON files, volumes by name, access edits seen through another user's access,
//! snapshots, attach and mount, nodes, exit codes, and `-o json` / `-o yaml` output.

use custos_cluster_tests::{custos_bin, TestCluster};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with an isolated config dir and no connection settings from the
/// environment, plus `env`.
fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(custos_bin());
    cmd.args(args)
        .env("CUSTOS_CONFIG_DIR", config)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .env_remove("CUSTOS_CONTEXT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[track_caller]
fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}{}", err(&o), out(&o));
    o
}

#[track_caller]
fn code(o: &Output, want: i32) {
    assert_eq!(o.status.code(), Some(want), "stderr: {}", err(o));
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&out(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out(o)))
}

#[test]
fn contexts_roles_volumes_access_snapshots_and_mounts() {
    let cluster = TestCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let eps = cluster.info.endpoints.join(",");
    let user = cluster.token("user");
    let admin = cluster.token("admin");
    let view = cluster.token("view");
    let bob = cluster.mint_token("bob", &["system.user"], &[]);
    let user_file = dir.path().join("user.jwt");
    std::fs::write(&user_file, format!("{user}\n")).unwrap();
    let view_file = dir.path().join("view.jwt");
    std::fs::write(&view_file, &view).unwrap();
    let c = |args: &[&str]| run(&config, args, &[]);
    let as_ = |token: &str, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--token", token, "--endpoint", &eps]);
        run(&config, &a, &[])
    };

    // ---- contexts: the first endpoint is dead, the client fails over to the others ----
    let with_dead = format!("127.0.0.1:1,{eps}");
    ok(c(&[
        "context",
        "create",
        "dev",
        "--endpoint",
        &with_dead,
        "--token-file",
        user_file.to_str().unwrap(),
    ]));
    let file = config.join("contexts.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "contexts.json is private");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&user), "the token is not stored: {stored}");
    // Global flags after the subcommand, too.
    ok(c(&[
        "context",
        "create",
        "viewer",
        "--token-file",
        view_file.to_str().unwrap(),
        "--endpoint",
        &eps,
    ]));
    let listed = json(&ok(c(&["context", "list", "-o", "json"])));
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("dev", true), ("viewer", false)],
        "the first is current"
    );

    // The current context's endpoints and token are used.
    let created = ok(c(&["volume", "create", "ctx-vol", "--size", "1Gi"]));
    let id = out(&created);
    let v = json(&ok(c(&["volume", "inspect", "ctx-vol", "-o", "json"])));
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["ownership"]["owner"], "user");
    // --context picks another; a flag token beats the context's.
    code(&c(&["--context", "viewer", "volume", "create", "v2"]), 4);
    ok(c(&["context", "set", "viewer"]));
    code(&c(&["volume", "create", "v2"]), 4);
    ok(c(&["volume", "create", "v2", "--token", &user]));
    // CUSTOS_ENDPOINT beats the context: here it names only a dead endpoint (unavailable).
    let dead = run(
        &config,
        &["volume", "list"],
        &[("CUSTOS_ENDPOINT", "127.0.0.1:1")],
    );
    code(&dead, 5);
    code(&c(&["context", "set", "nope"]), 3);
    ok(c(&["context", "delete", "viewer"]));
    let listed = json(&ok(c(&["context", "list", "-o", "json"])));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // A context that names a missing token file says so.
    ok(c(&["context", "set", "dev"]));
    code(
        &c(&[
            "context",
            "create",
            "bad",
            "--endpoint",
            &eps,
            "--token-file",
            "/nonexistent",
        ]),
        2,
    );

    // ---- roles from JSON files ----
    let role_file = dir.path().join("role.json");
    std::fs::write(
        &role_file,
        r#"{"name": "ops.reader", "rules": [{"services": ["volume"], "apis": ["inspect*", "enumerate*"]}]}"#,
    )
    .unwrap();
    let rf = role_file.to_str().unwrap();
    code(&as_(&user, &["role", "create", "--role-config", rf]), 4);
    ok(as_(&admin, &["role", "create", "--role-config", rf]));
    let r = json(&ok(as_(
        &admin,
        &["role", "inspect", "ops.reader", "-o", "json"],
    )));
    assert_eq!(
        r["rules"][0]["apis"],
        serde_json::json!(["inspect*", "enumerate*"])
    );
    std::fs::write(
        &role_file,
        r#"{"name": "ops.reader", "rules": [{"services": ["volume", "node"], "apis": ["*"]}]}"#,
    )
    .unwrap();
    ok(as_(&admin, &["role", "update", "--role-config", rf]));
    let r: serde_json::Value = serde_yaml::from_str(&out(&ok(as_(
        &admin,
        &["role", "inspect", "--name", "ops.reader", "-o", "yaml"],
    ))))
    .unwrap();
    assert_eq!(
        r["rules"][0]["services"],
        serde_json::json!(["volume", "node"])
    );
    let all = json(&ok(as_(
        &admin,
        &["role", "inspect", "--all", "-o", "json"],
    )));
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "system.admin"));
    let names = json(&ok(as_(&admin, &["role", "list", "-o", "json"])));
    assert!(names.as_array().unwrap().contains(&"ops.reader".into()));
    ok(as_(&admin, &["role", "delete", "--name", "ops.reader"]));
    code(&as_(&admin, &["role", "inspect", "ops.reader"]), 3);
    std::fs::write(&role_file, "{\"name\": 1}").unwrap();
    let bad = as_(&admin, &["role", "create", "--role-config", rf]);
    code(&bad, 2);
    assert!(err(&bad).contains("expected {\"name\""), "{}", err(&bad));

    // ---- volumes by name, update, access seen through bob's access ----
    ok(as_(&user, &["volume", "create", "shared", "--size", "1Gi"]));
    assert!(!as_(&bob, &["volume", "inspect", "shared"]).status.success());
    code(&as_(&user, &["volume", "update", "shared"]), 2);
    let v = json(&ok(as_(
        &user,
        &[
            "volume",
            "update",
            "shared",
            "--size",
            "2Gi",
            "--label",
            "tier=gold",
            "-o",
            "json",
        ],
    )));
    assert_eq!(v["spec"]["size"], 2u64 << 30);
    assert_eq!(v["labels"]["tier"], "gold");
    let acl = json(&ok(as_(
        &user,
        &[
            "volume",
            "access",
            "add",
            "shared",
            "--collaborator",
            "bob:r",
            "--group",
            "eng:w",
            "-o",
            "json",
        ],
    )));
    assert_eq!(acl["acls"]["collaborators"]["bob"], "Read");
    assert_eq!(acl["acls"]["groups"]["eng"], "Write");
    let seen = json(&ok(as_(
        &bob,
        &["volume", "inspect", "shared", "-o", "json"],
    )));
    assert_eq!(seen["name"], "shared");
    code(
        &as_(&bob, &["volume", "update", "shared", "--label", "x=y"]),
        4,
    );
    let shown = ok(as_(&user, &["volume", "access", "show", "shared"]));
    assert!(out(&shown).contains("collaborator  bob"), "{}", out(&shown));
    ok(as_(
        &user,
        &[
            "volume",
            "access",
            "remove",
            "shared",
            "--collaborator",
            "bob",
        ],
    ));
    assert!(!as_(&bob, &["volume", "inspect", "shared"]).status.success());
    code(
        &as_(
            &user,
            &[
                "volume",
                "access",
                "add",
                "shared",
                "--collaborator",
                "bob:q",
            ],
        ),
        2,
    );
    // Only an ownership administrator may give the volume away.
    code(
        &as_(
            &user,
            &["volume", "access", "update", "shared", "--owner", "bob"],
        ),
        4,
    );
    // `update` replaces whole lists: here the groups, and the collaborators with nothing.
    let acl = json(&ok(as_(
        &user,
        &[
            "volume",
            "access",
            "update",
            "shared",
            "--groups",
            "ops:a",
            "--public",
            "r",
            "--collaborators",
            "-o",
            "json",
        ],
    )));
    assert_eq!(acl["acls"]["groups"], serde_json::json!({"ops": "Admin"}));
    assert_eq!(acl["acls"]["collaborators"], serde_json::json!({}));
    assert_eq!(acl["acls"]["public"], "Read");
    let seen = json(&ok(as_(
        &bob,
        &["volume", "inspect", "shared", "-o", "json"],
    )));
    assert_eq!(seen["name"], "shared", "public read lets bob in");
    ok(as_(
        &user,
        &["volume", "access", "update", "shared", "--public", "none"],
    ));
    assert!(!as_(&bob, &["volume", "inspect", "shared"]).status.success());

    // ---- clone and snapshots ----
    let clone_id = out(&ok(as_(
        &user,
        &["volume", "clone", "shared", "shared-copy"],
    )));
    let copy = json(&ok(as_(
        &user,
        &["volume", "inspect", "shared-copy", "-o", "json"],
    )));
    assert_eq!(copy["id"], clone_id.as_str());
    assert_eq!(copy["ownership"]["owner"], "user");
    let snap = out(&ok(as_(
        &user,
        &["volume", "snapshot", "create", "shared", "--name", "snap1"],
    )));
    let snaps = json(&ok(as_(
        &user,
        &["volume", "snapshot", "list", "shared", "-o", "json"],
    )));
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["id"], snap.as_str());
    assert_eq!(snaps[0]["name"], "snap1");
    ok(as_(
        &user,
        &[
            "volume",
            "snapshot",
            "restore",
            "shared",
            "--snapshot",
            "snap1",
        ],
    ));
    // (The SDK's Volume carries no "restored from", so the exit status is the check.)
    code(
        &as_(
            &user,
            &[
                "volume",
                "snapshot",
                "restore",
                "shared",
                "--snapshot",
                "no-such-snap",
            ],
        ),
        3,
    );

    // ---- attach, mount, unmount, detach ----
    let device = out(&ok(as_(&user, &["volume", "attach", "shared"])));
    assert!(!device.is_empty());
    ok(as_(
        &user,
        &["volume", "mount", "shared", "--path", "/mnt/shared"],
    ));
    let v: serde_json::Value = serde_yaml::from_str(&out(&ok(as_(
        &user,
        &["volume", "inspect", "shared", "-o", "yaml"],
    ))))
    .unwrap();
    assert_eq!(v["mount_paths"], serde_json::json!(["/mnt/shared"]));
    assert!(!v["attached_on"].is_null());
    code(&as_(&user, &["volume", "detach", "shared"]), 6);
    ok(as_(
        &user,
        &["volume", "unmount", "shared", "--path", "/mnt/shared"],
    ));
    ok(as_(&user, &["volume", "detach", "shared"]));
    let v = json(&ok(as_(
        &user,
        &["volume", "inspect", "shared", "-o", "json"],
    )));
    assert!(v["attached_on"].is_null());

    // The administrator gives the volume to bob.
    ok(as_(
        &admin,
        &["volume", "access", "update", "shared", "--owner", "bob"],
    ));
    let v = json(&ok(as_(
        &bob,
        &["volume", "inspect", "shared", "-o", "json"],
    )));
    assert_eq!(v["ownership"]["owner"], "bob");

    // ---- nodes, completion ----
    let nodes: serde_json::Value =
        serde_yaml::from_str(&out(&ok(as_(&user, &["node", "list", "-o", "yaml"])))).unwrap();
    let first = nodes[0]["id"].as_str().unwrap().to_string();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    let one = json(&ok(as_(&user, &["node", "inspect", &first, "-o", "json"])));
    assert_eq!(one["id"], first.as_str());
    code(&as_(&user, &["node", "inspect", "no-such-node"]), 3);
    let script = out(&ok(c(&["completion", "bash"])));
    assert!(script.contains("custos"), "{script}");
}
