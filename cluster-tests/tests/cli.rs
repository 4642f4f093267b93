//! The `custos` binary as people use it: dev cluster restarts, token generation, client
//! commands with global flags and exit codes, and a node's refusal to start without keys.

use custos_cluster_tests::{custos_bin, TestCluster};
use std::process::{Command, Output};

fn custos(args: &[&str]) -> Output {
    Command::new(custos_bin())
        .args(args)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn dev_restarts_the_same_cluster_with_its_data() {
    let mut cluster = TestCluster::start(3).unwrap();
    let endpoints = cluster.info.endpoints.join(",");
    let user = cluster.token("user");
    let created = custos(&[
        "volume",
        "create",
        "kept",
        "--size",
        "2Gi",
        "--endpoint",
        &endpoints,
        "--token",
        &user,
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created);
    let cluster_id = cluster.info.cluster_id.clone();

    cluster.restart_all().unwrap();
    assert_eq!(
        cluster.info.cluster_id, cluster_id,
        "the same cluster came back"
    );
    assert_eq!(
        cluster.info.endpoints.join(","),
        endpoints,
        "on the same ports"
    );
    // Tokens are re-issued at each start; the volume is still there, owned by `user`.
    let user = cluster.token("user");
    let shown = custos(&[
        "volume",
        "inspect",
        "kept",
        "-o",
        "json",
        "--endpoint",
        &endpoints,
        "--token",
        &user,
    ]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let v: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["spec"]["size"], 2u64 << 30);
    assert_eq!(v["ownership"]["owner"], "user");

    // A restart asking for another shape is refused instead of breaking the membership.
    let wrong = custos(&[
        "dev",
        "--dir",
        cluster.dir.path().to_str().unwrap(),
        "--nodes",
        "5",
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("holds a 3-node cluster"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn generated_tokens_global_flags_and_exit_codes() {
    let cluster = TestCluster::start(3).unwrap();
    let endpoints = cluster.info.endpoints.join(",");
    let dir = cluster.dir.path();
    let config = dir.join("carol.yaml");
    std::fs::write(
        &config,
        "name: Carol\nemail: carol@example.com\nsub: carol\nroles: [system.user]\ngroups: [eng]\n",
    )
    .unwrap();
    let secret = cluster
        .info
        .shared_secret_file
        .to_str()
        .unwrap()
        .to_string();
    let token_file = dir.join("carol.jwt");
    let generated = custos(&[
        "auth",
        "token",
        "generate",
        "--auth-config",
        config.to_str().unwrap(),
        "--issuer",
        &cluster.info.issuer,
        "--shared-secret-file",
        &secret,
        "--token-duration",
        "1h",
        "--output",
        token_file.to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3);

    // Global flags before the subcommand, and the token from the environment.
    let created = Command::new(custos_bin())
        .args([
            "--endpoint",
            &endpoints,
            "volume",
            "create",
            "carols",
            "--size",
            "1Gi",
            "--repl",
            "2",
            "--label",
            "team=eng",
        ])
        .env("CUSTOS_TOKEN", &token)
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", stderr(&created));
    let listed = custos(&[
        "volume",
        "list",
        "-o",
        "json",
        "--token",
        &token,
        "--endpoint",
        &endpoints,
    ]);
    let volumes: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let carols = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "carols")
        .expect("listed");
    assert_eq!(carols["ownership"]["owner"], "carol");
    assert_eq!(carols["spec"]["ha_level"], 2);
    assert_eq!(carols["labels"]["team"], "eng");

    // Exit codes tell refusals, absence and bad input apart.
    let view = cluster.token("view");
    let refused = custos(&[
        "volume",
        "create",
        "x",
        "--token",
        &view,
        "--endpoint",
        &endpoints,
    ]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("Access denied to roles: [system.view]"));
    let missing = custos(&[
        "volume",
        "inspect",
        "no-such-volume",
        "--token",
        &token,
        "--endpoint",
        &endpoints,
    ]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    let bad_size = custos(&[
        "volume",
        "create",
        "y",
        "--size",
        "12Qi",
        "--token",
        &token,
        "--endpoint",
        &endpoints,
    ]);
    assert_eq!(bad_size.status.code(), Some(2), "{}", stderr(&bad_size));
    assert!(stderr(&bad_size).contains("unknown size unit"));

    // Issuers that are URLs are refused, as pxctl does.
    let url = custos(&[
        "auth",
        "token",
        "generate",
        "--auth-config",
        config.to_str().unwrap(),
        "--issuer",
        "https://idp.example",
        "--shared-secret-file",
        &secret,
    ]);
    assert!(!url.status.success());

    // Schedule and storage policies from the CLI: create, list, the default shaping a create,
    // release.
    let admin = cluster.token("admin");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--endpoint", &endpoints, "--token", &admin]);
        custos(&all)
    };
    let made = run(&[
        "schedule-policy",
        "create",
        "cli-daily",
        "--schedule",
        "daily@2:30",
        "--retain",
        "3",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let listed = run(&["schedule-policy", "list", "-o", "json"]);
    assert!(stdout(&listed).contains("cli-daily"), "{}", stdout(&listed));
    let made = run(&[
        "policy",
        "create",
        "cli-min",
        "--size",
        "2Gi",
        "--size-op",
        "min",
        "--public",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let set = run(&["policy", "set-default", "cli-min"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let created = run(&["volume", "create", "cli-shaped", "--size", "1Gi"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let shown = run(&["volume", "inspect", "cli-shaped", "-o", "json"]);
    assert!(stdout(&shown).contains("cli-min"), "{}", stdout(&shown));
    let released = run(&["policy", "release"]);
    assert!(released.status.success(), "{}", stderr(&released));
    let default = run(&["policy", "default", "-o", "json"]);
    assert_eq!(stdout(&default), "null");
    let deleted = run(&["volume", "delete", "cli-shaped"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
}

#[test]
fn a_node_with_auth_and_no_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = {:?}\nsdk_listen = \"127.0.0.1:0\"\nraft_listen = \"127.0.0.1:0\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = custos(&["server", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("auth is enabled but no issuer is configured"),
        "{}",
        stderr(&out)
    );
    // An issuer whose key file is missing is refused too, naming the problem.
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = {:?}\nsdk_listen = \"127.0.0.1:0\"\nraft_listen = \"127.0.0.1:0\"\n\
             [[auth.issuers]]\nname = \"x\"\n[[auth.issuers.keys]]\nkind = \"hmac\"\nfile = \"/nonexistent/secret\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = custos(&["server", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/secret"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_node_without_tls_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = {:?}\nsdk_listen = \"127.0.0.1:0\"\nraft_listen = \"127.0.0.1:0\"\n\
             auth_enabled = false\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = custos(&["server", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("peer traffic must be authenticated"),
        "{}",
        stderr(&out)
    );
    // Both `--insecure` and a [tls] section: contradictory, refused.
    let with_tls = format!(
        "{}[tls]\nca_file = \"/x/ca.pem\"\ncert_file = \"/x/n.pem\"\nkey_file = \"/x/n.key\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, with_tls).unwrap();
    let out = custos(&["server", "--insecure", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("contradict"), "{}", stderr(&out));
    // Missing TLS files are named.
    let out = custos(&["server", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/x/ca.pem"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_role_edits_are_enforced_and_survive_a_restart() {
    use custos_client::model::{Code, Role, Rule};
    use custos_client::CreateVolume;
    let mut cluster = TestCluster::start(3).unwrap();
    let vol = |name: &str| CreateVolume {
        name: name.into(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    };
    let rules = |apis: &[&str]| Role {
        name: "system.guest".into(),
        rules: vec![Rule {
            services: vec!["volume".into()],
            apis: apis.iter().map(|a| a.to_string()).collect(),
        }],
    };
    // Anonymous creates are allowed by default ...
    cluster
        .client(1, None)
        .create_volume(&vol("anon-1"))
        .await
        .unwrap();
    // ... until an administrator forbids them (upstream's example edit).
    cluster
        .client(2, Some(&cluster.token("admin")))
        .update_role(&rules(&["*", "!create"]))
        .await
        .unwrap();
    let err = cluster
        .client(3, None)
        .create_volume(&vol("anon-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(
        err.to_string()
            .contains("Access denied without authentication token"),
        "{err}"
    );
    // Other built-ins stay immutable.
    let mut user = rules(&["*"]);
    user.name = "system.user".into();
    let err = cluster
        .client(1, Some(&cluster.token("admin")))
        .update_role(&user)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");

    cluster.restart_all().unwrap();
    let err = cluster
        .client(1, None)
        .create_volume(&vol("anon-3"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(Code::PermissionDenied),
        "the edit survived the restart: {err}"
    );
    assert!(
        cluster.client(2, None).enumerate_volumes().await.is_ok(),
        "reads still allowed"
    );
}
