//! Contexts that remember a CA (`custos context create NAME --ca FILE`) against a cluster whose
//! SDK is served over TLS (`custos dev --sdk-tls`): the context connects over TLS with its CA,
//! `--ca` and `CUSTOS_CA` override it, and the contexts file holds paths, never a token.

use custos_cluster_tests::{custos_bin, TestCluster};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in `cwd` with an isolated config dir and no connection settings from the
/// environment, plus `env`.
fn run(cwd: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(custos_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env("CUSTOS_CONFIG_DIR", config)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("CUSTOS_ENDPOINT")
        .env_remove("CUSTOS_CONTEXT")
        .env_remove("CUSTOS_CA")
        .env_remove("CUSTOS_CERT")
        .env_remove("CUSTOS_KEY");
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

/// A CA certificate (PEM) that signed none of the cluster's certificates.
fn foreign_ca() -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "not the cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn a_context_remembers_its_ca_and_flags_and_environment_override_it() {
    let cluster = TestCluster::start_with(3, &["--sdk-tls"]).unwrap();
    let ca = cluster.info.ca_file.clone().expect("--sdk-tls names a CA");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let config = work.join("config");
    let eps = cluster.info.endpoints.join(",");
    let user = cluster.token("user");
    std::fs::write(work.join("user.jwt"), format!("{user}\n")).unwrap();
    std::fs::copy(&ca, work.join("ca.pem")).unwrap();
    std::fs::write(work.join("other-ca.pem"), foreign_ca()).unwrap();
    let c = |args: &[&str]| run(work, &config, args, &[]);

    // Relative paths are stored absolute; the token file's path is stored, not the token.
    let created = ok(c(&[
        "context",
        "create",
        "secure",
        "--endpoint",
        &eps,
        "--token-file",
        "user.jwt",
        "--ca",
        "ca.pem",
    ]));
    assert!(
        err(&created).contains("context secure created"),
        "{}",
        err(&created)
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("contexts.json")).unwrap())
            .unwrap();
    let abs_ca = std::fs::canonicalize(work.join("ca.pem")).unwrap();
    assert_eq!(
        stored["contexts"]["secure"]["ca_file"],
        abs_ca.to_str().unwrap()
    );
    let text = serde_json::to_string(&stored).unwrap();
    assert!(!text.contains(&user), "the token is not stored: {text}");
    assert!(
        !text.contains("BEGIN CERTIFICATE"),
        "the CA's path, not its text: {text}"
    );

    // `context list` shows it, as JSON and in the table.
    let listed: serde_json::Value =
        serde_json::from_str(&out(&ok(c(&["context", "list", "-o", "json"])))).unwrap();
    assert_eq!(listed[0]["ca_file"], abs_ca.to_str().unwrap());
    let table = out(&ok(c(&["context", "list"])));
    assert!(table.contains("CA FILE"), "{table}");
    assert!(table.contains(abs_ca.to_str().unwrap()), "{table}");

    // The context connects over TLS with its CA.
    let id = out(&ok(c(&["volume", "create", "tls-vol", "--size", "1Gi"])));
    let inspected = out(&ok(c(&["volume", "inspect", "tls-vol", "-o", "json"])));
    assert!(inspected.contains(&id), "{inspected}");

    // --ca and CUSTOS_CA beat the context's CA: a CA that signed nothing here fails the
    // handshake, on every endpoint (unavailable).
    let flag = c(&["--ca", "other-ca.pem", "volume", "list"]);
    code(&flag, 5);
    assert!(
        err(&flag).to_lowercase().contains("certificate"),
        "a handshake refusal: {}",
        err(&flag)
    );
    let other = work.join("other-ca.pem");
    let env = run(
        work,
        &config,
        &["volume", "list"],
        &[("CUSTOS_CA", other.to_str().unwrap())],
    );
    code(&env, 5);
    // ... and the flag beats the environment.
    let both = run(
        work,
        &config,
        &["--ca", abs_ca.to_str().unwrap(), "volume", "list"],
        &[("CUSTOS_CA", other.to_str().unwrap())],
    );
    assert!(out(&ok(both)).contains("tls-vol"));

    // A context without a CA talks plaintext, which a TLS port does not answer; the global
    // flag supplies the CA for one command.
    ok(c(&[
        "context",
        "create",
        "plain",
        "--endpoint",
        &eps,
        "--token-file",
        "user.jwt",
    ]));
    code(&c(&["--context", "plain", "volume", "list"]), 5);
    let with_flag = ok(c(&[
        "--context",
        "plain",
        "--ca",
        abs_ca.to_str().unwrap(),
        "volume",
        "list",
    ]));
    assert!(out(&with_flag).contains("tls-vol"));
    let listed = out(&ok(c(&["context", "list"])));
    assert!(listed.contains("(plaintext)"), "{listed}");

    // A CA file that holds no certificate (here: the token) is refused at create, without
    // echoing the file.
    let bad = c(&[
        "context",
        "create",
        "bad",
        "--endpoint",
        &eps,
        "--ca",
        "user.jwt",
    ]);
    code(&bad, 2);
    assert!(!err(&bad).contains(&user), "{}", err(&bad));
    code(
        &c(&[
            "context",
            "create",
            "bad",
            "--endpoint",
            &eps,
            "--ca",
            "missing.pem",
        ]),
        2,
    );

    // A client certificate needs a CA from somewhere.
    std::fs::write(work.join("c.pem"), "x").unwrap();
    std::fs::write(work.join("c.key"), "x").unwrap();
    let no_ca = c(&[
        "--context",
        "plain",
        "--cert",
        "c.pem",
        "--key",
        "c.key",
        "volume",
        "list",
    ]);
    code(&no_ca, 2);
    assert!(err(&no_ca).contains("need the CA"), "{}", err(&no_ca));
}
