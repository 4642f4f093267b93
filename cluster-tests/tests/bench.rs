//! `custos bench` against real `custos dev` clusters with tiny operation counts: every workload
//! yields a well-formed report (all requested operations counted, positive ordered latencies,
//! server CPU measured), `custos dev --no-auth` really turns authentication off, a short
//! `custos bench flood` reports figures consistent with each other (no timing thresholds: the
//! latency target is the benchmark's, `scripts/bench.sh flood`), and the failover writer
//! (`custos bench timeline`) reports a consistent timeline across a leader kill.

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
    let writer = Command::new(custos_bin())
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

/// Runs `custos bench flood -o json ARGS` against `cluster` as `token` and returns the report.
fn flood(cluster: &TestCluster, token: &str, args: &[&str]) -> Value {
    let pids: Vec<String> = cluster
        .info
        .nodes
        .iter()
        .map(|n| n.pid.to_string())
        .collect();
    let out = Command::new(custos_bin())
        .args(["bench", "flood", "-o", "json", "--endpoint"])
        .arg(cluster.info.endpoints.join(","))
        .arg("--pids")
        .arg(pids.join(","))
        .arg("--token")
        .arg(token)
        .args(args)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .output()
        .expect("running custos bench flood");
    assert!(
        out.status.success(),
        "custos bench flood {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "custos bench flood printed no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Checks what every flood report of a clean run must hold: K loops, the phases' figures, the
/// ratios computed from the reported percentiles, the refusals and the flooded member.
fn check_flood(cluster: &TestCluster, r: &Value, loops: u64, bursts: u64, phase_ms: (u64, u64)) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    let u = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert_eq!(r["system"], "custos", "{r}");
    assert_eq!(r["workload"], "flood", "{r}");
    assert_eq!(u("flood_loops"), loops, "{r}");
    assert_eq!(u("bursts"), bursts, "{r}");
    assert_eq!(
        (u("quiet_ms_per_burst"), u("flood_ms_per_burst")),
        phase_ms,
        "{r}"
    );

    let endpoints = &cluster.info.endpoints;
    let flooded = r["flooded"].as_str().unwrap();
    assert!(
        endpoints.iter().any(|e| e == r["leader"].as_str().unwrap()),
        "{r}"
    );
    assert!(endpoints.iter().any(|e| e == flooded), "{r}");

    for (name, ms) in [("quiet", phase_ms.0), ("flood", phase_ms.1)] {
        let p = &r[name];
        let writes = p["writes"].as_u64().unwrap();
        assert!(writes > 0, "{name}: the writer wrote: {r}");
        assert_eq!(
            p["write_errors"], 0,
            "{name}: every legitimate write succeeds: {r}"
        );
        // Each phase lasts at least its length (the writer stops after it, not before).
        assert!(
            f(p, "elapsed_s") >= (bursts * ms) as f64 / 1000.0,
            "{name}: {r}"
        );
        assert!(
            close(f(p, "writes_per_s"), writes as f64 / f(p, "elapsed_s")),
            "{name}: {r}"
        );
        let lat = &p["latency_ms"];
        let l = |k: &str| f(lat, k);
        assert!(l("p50") > 0.0, "{name}: {r}");
        assert!(
            l("p50") <= l("p90") && l("p90") <= l("p99") && l("p99") <= l("max"),
            "{name}: {r}"
        );
        assert!(l("mean") > 0.0 && l("mean") <= l("max"), "{name}: {r}");
        assert!(
            f(p, "servers_cpu_s") >= f(p, "flooded_cpu_s"),
            "{name}: {r}"
        );
    }
    assert!(r["first_write_error"].is_null(), "{r}");
    assert!(
        f(&r["flood"], "flooded_cpu_s") > 0.0,
        "the flooded member worked in the flood phases: {r}"
    );

    // The ratios are the reported percentiles' quotients.
    let (q, fl) = (&r["quiet"]["latency_ms"], &r["flood"]["latency_ms"]);
    assert!(
        close(f(r, "p99_ratio"), f(fl, "p99") / f(q, "p99")),
        "p99 ratio: {r}"
    );
    assert!(
        close(f(r, "p50_ratio"), f(fl, "p50") / f(q, "p50")),
        "p50 ratio: {r}"
    );

    // Every flood call was refused as unauthenticated, and counted by token kind: even loops
    // send garbage, odd loops untrusted issuers.
    let refusals = u("refusals");
    assert!(refusals > 0, "{r}");
    assert_eq!(u("flood_errors"), 0, "{r}");
    assert!(r["first_flood_error"].is_null(), "{r}");
    assert_eq!(
        refusals,
        u("refusals_garbage") + u("refusals_untrusted"),
        "{r}"
    );
    assert!(u("refusals_garbage") > 0, "{r}");
    assert_eq!(u("refusals_untrusted") > 0, loops > 1, "{r}");
    assert!(
        close(
            f(r, "refusals_per_s"),
            refusals as f64 / f(&r["flood"], "elapsed_s")
        ),
        "{r}"
    );

    // The flooded member's process was found by its address, and its memory read.
    let node = cluster
        .info
        .nodes
        .iter()
        .find(|n| n.sdk == flooded)
        .expect("the flooded member is a node of the cluster");
    assert_eq!(r["flooded_pid"], node.pid, "{r}");
    assert!(
        u("flooded_rss_kib_before") > 0 && u("flooded_rss_kib_after") > 0,
        "{r}"
    );
}

#[test]
fn the_flood_benchmark_reports_consistent_figures() {
    // Options are checked before anything is contacted.
    let out = Command::new(custos_bin())
        .args([
            "bench",
            "flood",
            "--flood-loops",
            "0",
            "--endpoint",
            "127.0.0.1:1",
        ])
        .args(["--token", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--flood-loops must be at least 1"),
        "{stderr}"
    );

    let cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    // The default shape of the test it came from (audit.rs): two loops, one garbage, one
    // untrusted; short phases.
    let r = flood(
        &cluster,
        &user,
        &["--bursts", "2", "--quiet-ms", "400", "--flood-ms", "600"],
    );
    check_flood(&cluster, &r, 2, 2, (400, 600));
    // By default the writer writes through the leader and the flood goes to another member.
    assert_ne!(
        r["leader"], r["flooded"],
        "the flood spares the leader: {r}"
    );

    // Three loops (two garbage, one untrusted) at a member named explicitly.
    let leader = r["leader"].as_str().unwrap();
    let other = cluster
        .info
        .endpoints
        .iter()
        .find(|e| *e != leader && *e != r["flooded"].as_str().unwrap())
        .unwrap()
        .clone();
    let r3 = flood(
        &cluster,
        &user,
        &[
            "--flood-loops",
            "3",
            "--bursts",
            "1",
            "--quiet-ms",
            "300",
            "--flood-ms",
            "300",
            "--flood-target",
            &other,
        ],
    );
    check_flood(&cluster, &r3, 3, 1, (300, 300));
    assert_eq!(r3["flooded"], other.as_str(), "{r3}");
}

/// A short `custos bench contention` (issue #20): the readers read in both kinds of phase, the
/// writers write only in busy ones, the figures agree with each other, and the ratios are the
/// reported percentiles' quotients (no timing thresholds: the target is the benchmark's,
/// `scripts/bench.sh contention`).
#[test]
fn a_short_contention_run_reports_consistent_phases() {
    let cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    let endpoints = cluster.info.endpoints.join(",");
    let pids: Vec<String> = cluster
        .info
        .nodes
        .iter()
        .map(|n| n.pid.to_string())
        .collect();
    let run = |args: &[&str]| -> Value {
        let out = Command::new(custos_bin())
            .args(["bench"])
            .args(args)
            .args(["-o", "json", "--endpoint", &endpoints, "--token", &user])
            .env_remove("CUSTOS_TOKEN")
            .env_remove("CUSTOS_ENDPOINT")
            .output()
            .expect("running custos bench");
        assert!(
            out.status.success(),
            "custos bench {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    run(&[
        "custos",
        "--workload",
        "preload",
        "--clients",
        "4",
        "--ops",
        "20",
    ]);
    let r = run(&[
        "contention",
        "--writers",
        "8",
        "--writer-connections",
        "2",
        "--readers",
        "2",
        "--read-at",
        "follower",
        "--bursts",
        "2",
        "--quiet-ms",
        "400",
        "--busy-ms",
        "400",
        "--keys",
        "20",
        "--pids",
        &pids.join(","),
    ]);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert_eq!(r["workload"], "contention", "{r}");
    assert_eq!(
        (r["writers"].as_u64(), r["readers"].as_u64()),
        (Some(8), Some(2)),
        "{r}"
    );
    assert_ne!(r["read_member"], r["leader"], "--read-at follower: {r}");
    assert_eq!(r["write_errors"], 0, "{r}");
    for name in ["quiet", "busy"] {
        let p = &r[name];
        let reads = p["reads"].as_u64().unwrap();
        assert!(reads > 0, "{name}: the readers read: {r}");
        assert_eq!(p["read_errors"], 0, "{name}: {r}");
        assert!(
            f(p, "elapsed_s") >= 0.8,
            "{name}: two phases of 400 ms: {r}"
        );
        assert!(
            close(f(p, "reads_per_s"), reads as f64 / f(p, "elapsed_s")),
            "{r}"
        );
        let l = &p["latency_ms"];
        assert!(f(l, "p50") > 0.0 && f(l, "p50") <= f(l, "p99") && f(l, "p99") <= f(l, "max"));
        assert!(f(p, "servers_cpu_s") > 0.0, "{name}: {r}");
    }
    assert_eq!(r["quiet"]["writes"], 0, "writers rest in quiet phases: {r}");
    assert!(
        r["busy"]["writes"].as_u64().unwrap() > 0,
        "writers write when busy: {r}"
    );
    let (q, b) = (&r["quiet"]["latency_ms"], &r["busy"]["latency_ms"]);
    assert!(close(f(&r, "p99_ratio"), f(b, "p99") / f(q, "p99")), "{r}");
    assert!(close(f(&r, "p50_ratio"), f(b, "p50") / f(q, "p50")), "{r}");
}
