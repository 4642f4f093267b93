//! `custos server` configuration through the real binary: flag over environment over file
//! over default (`--print-config` shows the result), and clear errors for bad input.

use custos_cluster_tests::custos_bin;
use std::process::{Command, Output};

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(custos_bin());
    cmd.arg("server").args(args);
    for key in [
        "CUSTOS_CONFIG",
        "CUSTOS_NODE_ID",
        "CUSTOS_CLUSTER_ID",
        "CUSTOS_SDK_LISTEN",
        "CUSTOS_RAFT_LISTEN",
        "CUSTOS_REST_LISTEN",
        "CUSTOS_METRICS_LISTEN",
        "CUSTOS_DATA_DIR",
        "CUSTOS_PEERS",
        "CUSTOS_JOIN",
        "CUSTOS_ADVERTISE_RAFT_ADDR",
        "CUSTOS_ADVERTISE_SDK_ADDR",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn printed(o: &Output) -> toml::Table {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    toml::from_str(&String::from_utf8_lossy(&o.stdout)).expect("--print-config prints TOML")
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s".repeat(40)).unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            "node_id = 1\ncluster_id = \"from-file\"\ndata_dir = \"/var/lib/from-file\"\n\
             sdk_listen = \"127.0.0.1:9100\"\nraft_listen = \"127.0.0.1:9200\"\ninsecure = true\n\
             [raft]\nheartbeat_ms = 70\n\
             [auth]\n[[auth.issuers]]\nname = \"dev\"\n[[auth.issuers.keys]]\nkind = \"hmac\"\n\
             file = {secret:?}\n"
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();

    // The file alone, with the defaults it leaves out.
    let c = printed(&server(&["--config", f, "--print-config"], &[]));
    assert_eq!(c["node_id"].as_integer(), Some(1));
    assert_eq!(c["cluster_id"].as_str(), Some("from-file"));
    assert_eq!(c["raft"]["heartbeat_ms"].as_integer(), Some(70));
    assert_eq!(c["raft"]["election_timeout_min_ms"].as_integer(), Some(150));
    assert_eq!(c["request_timeout_ms"].as_integer(), Some(10_000));
    // No secret is printed: keys are named by file.
    let text = String::from_utf8_lossy(&server(&["--config", f, "--print-config"], &[]).stdout)
        .to_string();
    assert!(!text.contains(&"s".repeat(40)));
    assert!(text.contains(secret.to_str().unwrap()));

    // The environment beats the file; a flag beats both.
    let env = [
        ("CUSTOS_NODE_ID", "2"),
        ("CUSTOS_CLUSTER_ID", "from-env"),
        ("CUSTOS_DATA_DIR", "/var/lib/from-env"),
        (
            "CUSTOS_PEERS",
            "1=127.0.0.1:9200,127.0.0.1:9100;2=127.0.0.1:9201,127.0.0.1:9101",
        ),
    ];
    let c = printed(&server(&["--config", f, "--print-config"], &env));
    assert_eq!(c["node_id"].as_integer(), Some(2));
    assert_eq!(c["cluster_id"].as_str(), Some("from-env"));
    assert_eq!(c["data_dir"].as_str(), Some("/var/lib/from-env"));
    assert_eq!(c["initial_members"].as_array().unwrap().len(), 2);
    let c = printed(&server(
        &[
            "--config",
            f,
            "--id",
            "1",
            "--cluster-id",
            "from-flag",
            "--print-config",
        ],
        &env,
    ));
    assert_eq!(c["node_id"].as_integer(), Some(1));
    assert_eq!(c["cluster_id"].as_str(), Some("from-flag"));
    assert_eq!(c["data_dir"].as_str(), Some("/var/lib/from-env"));

    // A file with only the auth section: flags and environment say the rest.
    let auth_only = dir.path().join("auth.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&auth_only, &text[text.find("[auth]").unwrap()..]).unwrap();
    let c = printed(&server(
        &[
            "--config",
            auth_only.to_str().unwrap(),
            "--id",
            "3",
            "--data-dir",
            "/d",
            "--sdk-listen",
            "127.0.0.1:1",
            "--insecure",
            "--print-config",
        ],
        &[("CUSTOS_RAFT_LISTEN", "127.0.0.1:2")],
    ));
    assert_eq!(c["node_id"].as_integer(), Some(3));
    assert_eq!(c["raft_listen"].as_str(), Some("127.0.0.1:2"));
    assert_eq!(c["auth_enabled"].as_bool(), Some(true));

    // A joining node behind a proxy announces the addresses it is reached at.
    let c = printed(&server(
        &[
            "--config",
            f,
            "--join",
            "10.0.0.2:9200",
            "--advertise-raft-addr",
            "proxy.example:7000",
            "--print-config",
        ],
        &[("CUSTOS_ADVERTISE_SDK_ADDR", "custos-1.example:9100")],
    ));
    assert_eq!(
        c["advertise_raft_addr"].as_str(),
        Some("proxy.example:7000")
    );
    assert_eq!(
        c["advertise_sdk_addr"].as_str(),
        Some("custos-1.example:9100")
    );
    let o = server(
        &[
            "--config",
            f,
            "--advertise-raft-addr",
            "proxy",
            "--print-config",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("advertise_raft_addr \"proxy\" is not host:port"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bad_configuration_is_refused_with_what_to_do() {
    let err = |o: Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = err(server(&["--data-dir", "/d", "--print-config"], &[]));
    assert!(e.contains("node_id") && e.contains("CUSTOS_NODE_ID"), "{e}");
    let e = err(server(
        &[
            "--id",
            "1",
            "--data-dir",
            "/d",
            "--sdk-listen",
            "127.0.0.1:1",
            "--print-config",
        ],
        &[],
    ));
    assert!(
        e.contains("raft_listen") && e.contains("--raft-listen"),
        "{e}"
    );
    let e = err(server(
        &["--id", "0", "--print-config"],
        &[("CUSTOS_SDK_LISTEN", "x")],
    ));
    assert!(
        e.contains("CUSTOS_SDK_LISTEN") || e.contains("sdk-listen"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "node_id = 1\nno_such_setting = 2\n").unwrap();
    let e = err(server(
        &["--config", file.to_str().unwrap(), "--print-config"],
        &[],
    ));
    assert!(e.contains("no_such_setting"), "{e}");
    let e = err(server(
        &[
            "--id",
            "1",
            "--data-dir",
            "/d",
            "--sdk-listen",
            "127.0.0.1:1",
            "--raft-listen",
            "127.0.0.1:2",
            "--print-config",
        ],
        &[],
    ));
    assert!(e.contains("issuer"), "auth on without an issuer: {e}");
    let e = err(server(
        &["--config", "/nonexistent/custos.toml", "--print-config"],
        &[],
    ));
    assert!(e.contains("/nonexistent/custos.toml"), "{e}");
}
