//! `custos bench` against real `custos dev` clusters with tiny operation counts: every workload
//! yields a well-formed report (all requested operations counted, positive ordered latencies,
//! server CPU measured), `custos dev --no-auth` really turns authentication off, and the
//! failover writer (`custos bench timeline`) reports a consistent timeline across a leader kill.

use custos_cluster_tests::{custos_bin, TestCluster};
use serde_json::Value;
use std::process::Command;

/// Runs `custos bench custos -o json ARGS` against `cluster` and returns the report.
fn bench(cluster: &TestCluster, token: Option<&str>, args: &[&str]) -> Value {
    let pids: Vec<String> = cluster
        .info
        .nodes
        .iter()
        .map(|n| n.pid.to_string())
        .collect();
    let mut cmd = Command::new(custos_bin());
    cmd.args(["bench", "custos", "-o", "json", "--deadline-secs", "30"])
        .arg("--endpoint")
        .arg(cluster.info.endpoints.join(","))
        .arg("--pids")
        .arg(pids.join(","))
        .args(args)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT");
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    let out = cmd.output().expect("running custos bench");
    assert!(
        out.status.success(),
        "custos bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "custos bench printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Checks what every report of a clean run must hold.
fn check_report(r: &Value, workload: &str, ops: u64, clients: u64) {
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert_eq!(r["system"], "custos", "{r}");
    assert_eq!(r["workload"], workload, "{r}");
    assert_eq!(u("clients"), clients, "{r}");
    assert_eq!(u("ops_requested"), ops, "{r}");
    assert_eq!(u("ops_issued"), ops, "{r}");
    assert_eq!(u("ops_ok"), ops, "every operation succeeds: {r}");
    assert_eq!(u("errors"), 0, "{r}");
    assert_eq!(r["deadline_hit"], false, "{r}");
    assert!(f("elapsed_s") > 0.0 && f("ops_per_s") > 0.0, "{r}");
    let lat = &r["latency_ms"];
    let l = |k: &str| lat[k].as_f64().unwrap();
    assert!(l("p50") > 0.0, "{r}");
    assert!(
        l("p50") <= l("p90") && l("p90") <= l("p99") && l("p99") <= l("max"),
        "{r}"
    );
    assert!(f("server_cpu_s") > 0.0, "the servers did work: {r}");
    assert!(
        f("server_cpu_ms_per_op") > 0.0 && f("client_cpu_s") >= 0.0,
        "{r}"
    );
    assert!(!r["endpoints"].as_array().unwrap().is_empty(), "{r}");
}

#[test]
fn bench_reports_every_workload_against_a_real_cluster() {
    let cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    let w = bench(
        &cluster,
        Some(&user),
        &[
            "--workload",
            "write",
            "--clients",
            "4",
            "--connections",
            "2",
            "--ops",
            "30",
        ],
    );
    check_report(&w, "write", 30, 4);
    assert_eq!(w["target"], "leader");
    assert_eq!(
        w["endpoints"].as_array().unwrap().len(),
        1,
        "writes go to the leader"
    );

    let p = bench(
        &cluster,
        Some(&user),
        &["--workload", "preload", "--clients", "2", "--ops", "10"],
    );
    check_report(&p, "preload", 10, 2);

    for workload in ["read-linearizable", "read-serializable"] {
        let r = bench(
            &cluster,
            Some(&user),
            &[
                "--workload",
                workload,
                "--clients",
                "6",
                "--connections",
                "3",
                "--ops",
                "40",
                "--keys",
                "10",
            ],
        );
        check_report(&r, workload, 40, 6);
        assert_eq!(r["target"], "all");
        assert_eq!(
            r["endpoints"].as_array().unwrap().len(),
            3,
            "reads go to every member"
        );
    }

    // A sequential run: one client on one connection.
    let s = bench(
        &cluster,
        Some(&user),
        &["--workload", "write", "--ops", "20"],
    );
    check_report(&s, "write", 20, 1);
    assert_eq!(s["connections"], 1);
}

#[test]
fn dev_no_auth_turns_authentication_off() {
    // With auth on, system.view may not create volumes: every write is refused.
    let on = TestCluster::start(3).unwrap();
    let refused = bench(
        &on,
        Some(&on.token("view")),
        &["--workload", "write", "--ops", "3"],
    );
    assert_eq!(refused["ops_ok"], 0, "view writes are refused: {refused}");
    assert_eq!(refused["errors"], 3, "{refused}");
    let err = refused["first_error"].as_str().unwrap();
    assert!(
        err.contains("PermissionDenied")
            || err.contains("PERMISSION_DENIED")
            || err.to_lowercase().contains("permission"),
        "{err}"
    );
    drop(on);

    // With auth off the token is not even looked at: every caller is an administrator.
    let off = TestCluster::start_with(3, &["--no-auth"]).unwrap();
    let r = bench(
        &off,
        Some(&off.token("view")),
        &["--workload", "write", "--clients", "3", "--ops", "15"],
    );
    check_report(&r, "write", 15, 3);
    let anonymous = bench(&off, None, &["--workload", "write", "--ops", "5"]);
    check_report(&anonymous, "write", 5, 1);
}

/// `custos bench timeline` (the leader-failover writer): with the leader SIGKILLed while it
/// writes, the report is consistent (one acknowledgement time per write, in order, the longest
/// gap the largest of them), the writer carried on through another member, and every
/// acknowledged write reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_writer_reports_a_consistent_timeline_across_a_leader_kill() {
    let mut cluster = TestCluster::start(3).unwrap();
    let leader = cluster.leader(1).await.unwrap();
    let mut writer = Command::new(custos_bin())
        .args(["bench", "timeline", "--system", "custos", "-o", "json"])
        .args(["--duration-secs", "6", "--attempt-timeout-ms", "500"])
        .arg("--endpoint")
        .arg(cluster.info.endpoints.join(","))
        .arg("--token")
        .arg(cluster.token("user"))
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cluster.kill9(leader);
    let out = tokio::task::spawn_blocking(move || writer.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "the writer failed");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let acks: Vec<f64> = r["ack_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(r["acked"].as_u64().unwrap(), acks.len() as u64, "{r}");
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "{r}");
    let mut prev = 0.0f64;
    let mut widest = 0.0f64;
    for t in acks.iter().copied().chain([6000.0]) {
        widest = widest.max(t - prev);
        prev = t;
    }
    assert!(
        (r["longest_gap_ms"].as_f64().unwrap() - widest).abs() < 1e-6,
        "{r}"
    );
    // Writes were acknowledged after the kill (by the members left), and none is missing.
    assert!(
        acks.iter().any(|t| *t > 2500.0),
        "no write after the kill: {r}"
    );
    assert_eq!(r["missing"].as_u64(), Some(0), "{r}");
    assert_eq!(r["verified"], r["acked"], "{r}");
    assert!(r["verify_error"].is_null(), "{r}");
}
