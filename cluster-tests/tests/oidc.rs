//! OpenID provider issuers against a real provider: the `oidc-provider` npm package (run by
//! Node.js over HTTPS on 127.0.0.1, `cluster-tests/oidc/provider.mjs`) issues client_credentials
//! JWT access tokens to a 3-member cluster that discovers its keys. Covers roles from the
//! provider's claims, the audience and issuer checks, key rotation without restarting custos
//! (unknown-kid refetch, then a scheduled refresh dropping the old key, cached tokens included),
//! the refetch rate limit under a flood of made-up kids, a provider that is down, and a member
//! starting while it is down.
//!
//! Needs `node` and the provider installed in `target/oidc-provider` (scripts/test.sh does both;
//! by hand: `npm ci --prefix target/oidc-provider` after copying `cluster-tests/oidc/package*.json`).

use custos_client::model::Code;
use custos_cluster_tests::TestCluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "urn:custos";
/// Scheduled refresh of the second half of the test (the first uses an hour).
const REFRESH_SECS: u64 = 3;
const MIN_REFETCH_SECS: u64 = 2;

/// `target/oidc-provider`, where scripts/test.sh installs the pinned `oidc-provider`.
fn provider_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("oidc-provider")
}

/// Runs `node provider.mjs ARGS` to completion; its stdout, trimmed. Each run is bounded (a
/// `genkey` once hung in Node for over ten minutes on a loaded machine): a run that takes over
/// 60 s is killed and tried again, three times at most.
fn node(args: &[&str]) -> String {
    for attempt in 1..=3 {
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running node");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("waiting for node").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().expect("waiting for node").is_none() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("node provider.mjs {args:?}: no answer in 60 s (attempt {attempt})");
            continue;
        }
        let out = child.wait_with_output().expect("node's output");
        assert!(
            out.status.success(),
            "node provider.mjs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return String::from_utf8(out.stdout).unwrap().trim().to_string();
    }
    panic!("node provider.mjs {args:?}: no answer in three attempts of 60 s");
}

/// Fails clearly (never skips) when Node.js or the provider package is missing.
fn check_prerequisites() {
    let version = Command::new("node").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs Node.js (`node` on PATH); scripts/test.sh installs Debian's nodejs and npm: {version:?}"
    );
    let package = provider_dir().join("node_modules/oidc-provider/package.json");
    assert!(
        package.exists(),
        "{} is missing: run scripts/test.sh, which installs the pinned oidc-provider from cluster-tests/oidc/package-lock.json",
        package.display()
    );
    // The script runs from beside its node_modules (ES modules resolve from the file's place).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs");
    std::fs::copy(&script, provider_dir().join("provider.mjs")).unwrap();
}

/// The test CA (PEM) and a certificate from it for 127.0.0.1 (PEM certificate, PEM key).
fn test_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "custos oidc test CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// The provider process; dropping it stops it.
struct Provider {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Provider {
    fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("provider.log")
    }

    /// Starts serving with `keys` (private JWKs; the first signs new tokens) and waits (bounded)
    /// until it listens.
    fn start(&mut self, keys: &[&str]) {
        assert!(self.child.is_none(), "the provider is running already");
        std::fs::write(
            self.dir.join("jwks.json"),
            format!("{{\"keys\":[{}]}}", keys.join(",")),
        )
        .unwrap();
        let before = std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .arg("serve")
            .arg(self.dir.join("provider.json"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the provider");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            if text[before..].contains("listening ") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the provider did not listen within 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An access token for `client` with the audience `resource`.
    fn token(&self, client: &str, resource: &str) -> String {
        let ca = self.dir.join("ca.pem");
        node(&[
            "token",
            &self.issuer(),
            ca.to_str().unwrap(),
            client,
            &format!("{client}-secret-0123456789"),
            resource,
        ])
    }

    /// How many times the key set was served.
    fn jwks_requests(&self) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .matches("request GET /jwks")
            .count()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Appends `section` to every running node's config and SIGHUPs it (`custos dev` writes
/// `[auth]` last, so a further `[[auth.issuers]]` joins it).
fn set_oidc_issuer(cluster: &TestCluster, base: &[String], section: &str) {
    for (node, text) in cluster.info.nodes.iter().zip(base) {
        std::fs::write(&node.config, format!("{text}{section}")).unwrap();
        kill(Pid::from_raw(node.pid as i32), Signal::SIGHUP).unwrap();
    }
}

fn issuer_section(issuer: &str, ca: &Path, refresh_secs: u64) -> String {
    format!(
        "\n[[auth.issuers]]\nname = \"{issuer}\"\noidc = {{ audience = \"{AUDIENCE}\", ca_file = {ca:?}, \
         refresh_secs = {refresh_secs}, min_refetch_interval_secs = {MIN_REFETCH_SECS} }}\n"
    )
}

/// A token the provider never signed: ES256 with a key of our own, claiming `iss`, with `kid`.
fn forged(iss: &str, kid: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let claims = serde_json::json!({
        "iss": iss, "sub": "mallory", "aud": AUDIENCE, "iat": now, "exp": now + 600,
        "name": "Mallory", "email": "mallory@example.com", "roles": ["system.admin"],
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A string claim of a token (read from its payload, unverified).
fn token_claim(token: &str, name: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    let claims: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} claim"))
        .to_string()
}

/// What node `id` answers an Enumerate with `token`.
async fn enumerate(cluster: &TestCluster, id: u64, token: &str) -> Result<(), (Code, String)> {
    cluster
        .client(id, Some(token))
        .enumerate_volumes()
        .await
        .map(|_| ())
        .map_err(|e| (e.code().unwrap(), e.to_string()))
}

/// Waits (bounded by `secs`) until node `id` answers `want` for `token`.
async fn eventually(
    cluster: &TestCluster,
    id: u64,
    token: &str,
    want: Result<(), Code>,
    secs: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = enumerate(cluster, id, token).await;
        if got.as_ref().map_err(|(c, _)| *c) == want.as_ref().map_err(|c| *c) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: {got:?}, want {want:?} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `f` holds.
fn wait_for(what: &str, secs: u64, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of series `name` on node `id`; 0 when it has none yet.
fn metric(cluster: &TestCluster, id: u64, name: &str) -> u64 {
    let text = ureq::get(&format!("http://{}/metrics", cluster.node(id).metrics))
        .call()
        .unwrap_or_else(|e| panic!("metrics of node {id}: {e}"))
        .into_body()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn assert_denied(got: Result<(), (Code, String)>, what: &str) {
    match got {
        Err((Code::PermissionDenied, message)) => {
            assert!(
                message.contains("Unable to authenticate token"),
                "{what}: {message}"
            )
        }
        other => panic!("{what}: {other:?}, want PERMISSION_DENIED"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_openid_provider_through_rotation_and_outage() {
    check_prerequisites();
    let mut cluster = TestCluster::start(3).unwrap();
    let dir = cluster.dir.path().join("provider");
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = test_pki();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let mut provider = Provider {
        dir: dir.clone(),
        port: free_port(),
        child: None,
    };
    let issuer = provider.issuer();
    let client = |id: &str, name: &str, roles: &[&str]| {
        serde_json::json!({
            "client_id": id, "client_secret": format!("{id}-secret-0123456789"),
            "claims": {"name": name, "email": format!("{id}@example.com"), "roles": roles, "groups": ["ops"]},
        })
    };
    let config = serde_json::json!({
        "issuer": issuer, "port": provider.port,
        "cert": dir.join("cert.pem"), "key": dir.join("key.pem"), "jwks": dir.join("jwks.json"),
        "clients": [client("ops-admin", "Olga Admin", &["system.admin"]), client("auditor", "Avi Viewer", &["system.view"])],
        "resources": [AUDIENCE, "urn:someone-else"],
    });
    std::fs::write(dir.join("provider.json"), config.to_string()).unwrap();
    let old_key = node(&["genkey", "old"]);
    let new_key = node(&["genkey", "new"]);
    let series = |name: &str| format!("{name}{{issuer=\"{issuer}\"}}");
    let failures = |reason: &str| format!("custos_auth_failures_total{{reason=\"{reason}\"}}");

    // The provider, and the issuer on every member (SIGHUP; refresh hourly for now).
    provider.start(&[&old_key]);
    let base: Vec<String> = cluster
        .info
        .nodes
        .iter()
        .map(|n| std::fs::read_to_string(&n.config).unwrap())
        .collect();
    let ca_file = dir.join("ca.pem");
    set_oidc_issuer(&cluster, &base, &issuer_section(&issuer, &ca_file, 3600));
    for id in 1..=3 {
        wait_for(&format!("node {id} fetches the keys"), 20, || {
            metric(&cluster, id, &series("custos_oidc_keys")) == 1
        });
    }

    // Roles come from the provider's claims, on every member.
    let admin = provider.token("ops-admin", AUDIENCE);
    let viewer = provider.token("auditor", AUDIENCE);
    for id in 1..=3 {
        enumerate(&cluster, id, &admin).await.unwrap();
        enumerate(&cluster, id, &viewer).await.unwrap();
    }
    let opts = |name: &str| custos_client::CreateVolume {
        name: name.into(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    };
    let created = cluster
        .any_client(Some(&admin))
        .create_volume(&opts("oidc-admin-volume"))
        .await
        .unwrap();
    assert!(!created.is_empty());
    let refused = cluster
        .client(2, Some(&viewer))
        .create_volume(&opts("oidc-viewer-volume"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied), "{refused}");

    // A provider's token is revoked like any other (docs/security.md, "Revoking a token"): by
    // its jti, through one member, refused by every member once acknowledged; the same
    // client's next token works.
    let leaked = provider.token("auditor", AUDIENCE);
    enumerate(&cluster, 3, &leaked).await.unwrap();
    let jti = token_claim(&leaked, "jti");
    let revoked = cluster
        .client(1, Some(&cluster.token("admin")))
        .revoke(&custos_client::RevokeRequest {
            jti: jti.clone(),
            issuer: issuer.clone(),
            ..Default::default()
        })
        .await
        .expect("revoke the provider's token");
    let entry = revoked.revocation.unwrap();
    assert_eq!(
        (entry.kind.as_str(), entry.value.as_str()),
        ("jti", jti.as_str())
    );
    for id in 1..=3 {
        let (code, message) = enumerate(&cluster, id, &leaked).await.unwrap_err();
        assert_eq!(code, Code::PermissionDenied, "{message}");
        assert!(message.contains("the token has been revoked"), "{message}");
        enumerate(&cluster, id, &viewer).await.unwrap();
    }

    // Another audience, another issuer: refused.
    let elsewhere = provider.token("ops-admin", "urn:someone-else");
    assert_denied(enumerate(&cluster, 1, &elsewhere).await, "wrong audience");
    assert!(metric(&cluster, 1, &failures("wrong_audience")) >= 1);
    let stranger = forged(&format!("https://127.0.0.1:{}", free_port()), "x");
    let (code, message) = enumerate(&cluster, 1, &stranger).await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(message.contains("is not a trusted issuer"), "{message}");

    // A flood of made-up kids: each refused at once, and the provider asked at most once per
    // min_refetch_interval (here: once at once, once more after the interval).
    let refetches = |cluster: &TestCluster, id| {
        metric(
            cluster,
            id,
            &series("custos_oidc_unknown_kid_refetches_total"),
        )
    };
    let (before, jwks_before) = (refetches(&cluster, 1), provider.jwks_requests());
    let flood_started = Instant::now();
    for i in 0..30 {
        let t = forged(&issuer, &format!("made-up-{i}"));
        assert_denied(enumerate(&cluster, 1, &t).await, "unknown kid");
    }
    let flood = flood_started.elapsed();
    assert!(
        flood < Duration::from_secs(MIN_REFETCH_SECS * 5),
        "the flood took {flood:?}: refusals must not wait for the provider"
    );
    std::thread::sleep(Duration::from_secs(MIN_REFETCH_SECS + 1));
    let intervals = (flood_started.elapsed().as_secs() / MIN_REFETCH_SECS) + 1;
    let done = refetches(&cluster, 1) - before;
    assert!(
        (1..=intervals).contains(&done),
        "{done} refetches for 30 unknown kids in {intervals} intervals"
    );
    let served = provider.jwks_requests() - jwks_before;
    assert!(
        served as u64 <= done,
        "the provider served {served} key sets"
    );
    assert!(metric(&cluster, 1, &failures("kid_not_found")) >= 30);
    // Let wake-ups the flood left pending run out before the rotation below, so that a
    // deferred refetch cannot pick up the new key before a new kid asks for it.
    let mut settled = refetches(&cluster, 1);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(MIN_REFETCH_SECS + 1));
        let now = refetches(&cluster, 1);
        if now == settled {
            break;
        }
        settled = now;
    }

    // Rotation, step 1: the provider publishes a new key beside the old one and signs with the
    // new. New tokens work on every member at once (their unknown kid triggers a fetch) and old
    // tokens keep working.
    provider.stop();
    provider.start(&[&new_key, &old_key]);
    let rotated_admin = provider.token("ops-admin", AUDIENCE);
    let rotated_viewer = provider.token("auditor", AUDIENCE);
    for id in 1..=3 {
        let before = refetches(&cluster, id);
        eventually(&cluster, id, &rotated_admin, Ok(()), 10).await;
        assert!(
            refetches(&cluster, id) > before,
            "node {id} fetched for the new kid (before {before}, now {})",
            refetches(&cluster, id),
        );
        enumerate(&cluster, id, &admin).await.unwrap();
        enumerate(&cluster, id, &viewer).await.unwrap();
    }

    // A short refresh interval (SIGHUP). The reload fetches at once (a changed `oidc` table),
    // while the old key is still published.
    let fetches =
        |cluster: &TestCluster, id| metric(cluster, id, &series("custos_oidc_fetches_total"));
    let fetched_before: Vec<u64> = (1..=3).map(|id| fetches(&cluster, id)).collect();
    set_oidc_issuer(
        &cluster,
        &base,
        &issuer_section(&issuer, &ca_file, REFRESH_SECS),
    );
    for id in 1..=3 {
        wait_for(&format!("node {id} fetches after the reload"), 10, || {
            fetches(&cluster, id) > fetched_before[id as usize - 1]
        });
        enumerate(&cluster, id, &admin).await.unwrap();
    }
    // Step 2: the provider drops the old key. Old tokens, cached on every member, are refused
    // once the members' scheduled refresh sees it (nothing else makes them fetch); new ones work.
    provider.stop();
    provider.start(&[&new_key]);
    for id in 1..=3 {
        eventually(
            &cluster,
            id,
            &admin,
            Err(Code::PermissionDenied),
            4 * REFRESH_SECS + 10,
        )
        .await;
        enumerate(&cluster, id, &rotated_admin).await.unwrap();
        wait_for(&format!("node {id} holds the new key only"), 10, || {
            metric(&cluster, id, &series("custos_oidc_keys")) == 1
        });
    }

    // The provider goes away: the keys in force keep working (cached tokens, and a token never
    // seen before), fetches fail and are counted, and the key set ages.
    provider.stop();
    let failed_before: Vec<u64> = (1..=3)
        .map(|id| metric(&cluster, id, &series("custos_oidc_fetch_failures_total")))
        .collect();
    for id in 1..=3 {
        wait_for(
            &format!("node {id} notices the provider is down"),
            4 * REFRESH_SECS + 10,
            || {
                metric(&cluster, id, &series("custos_oidc_fetch_failures_total"))
                    > failed_before[id as usize - 1]
            },
        );
        enumerate(&cluster, id, &rotated_admin).await.unwrap();
        enumerate(&cluster, id, &rotated_viewer).await.unwrap();
    }
    assert!(metric(&cluster, 1, &series("custos_oidc_key_set_age_seconds")) >= 1);

    // A member that starts while the provider is down starts, refuses the issuer's tokens
    // (no keys yet), and takes them once the provider is back.
    cluster.kill9(3);
    cluster.restart(3).unwrap();
    let serving = cluster.token("admin");
    eventually(&cluster, 3, &serving, Ok(()), 30).await;
    assert_denied(enumerate(&cluster, 3, &rotated_admin).await, "no keys yet");
    assert!(metric(&cluster, 3, &failures("keys_not_loaded")) >= 1);
    provider.start(&[&new_key]);
    eventually(&cluster, 3, &rotated_admin, Ok(()), 20).await;

    // Tokens never reach a log or a data file.
    for file in cluster.files() {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for token in [&admin, &viewer, &leaked, &rotated_admin, &rotated_viewer] {
            assert!(
                !text.contains(token.as_str()),
                "{} holds a token",
                file.display()
            );
        }
    }
}
