//! Bad input and attacks, end to end against real clusters: the JWT attack catalogue
//! (ecosystem-and-security.md B2), oversized metadata and messages, malformed protobuf and gRPC
//! framing on the SDK port, garbage, truncated and replayed TLS on the peer port, garbage payloads
//! and a forged AppendEntries on a plaintext (`--insecure`) peer port, and tokens of an issuer
//! removed by SIGHUP. Each attack gets its own gRPC code and message; after each one a legitimate
//! client still writes and reads on every member; at the end every node is alive and no node log
//! holds a panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use custos_cluster_tests::raw_grpc::RawCodec;
use custos_cluster_tests::TestCluster;
use http_body_util::BodyExt as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::codegen::Service as _;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const MSG_HEADER: &str = "Invalid or missing authentication token";
const MSG_NO_ISSUER: &str = "Unable to obtain token issuer from authorization token";
const MSG_DENIED: &str = "Unable to authenticate token";

const ENUMERATE: &str = "/openstorage.api.OpenStorageVolume/Enumerate";
const CREATE: &str = "/openstorage.api.OpenStorageVolume/Create";
const ROLE_CREATE: &str = "/openstorage.api.OpenStorageRole/Create";

/// The SDK's message limit (`crates/server/src/lib.rs`, tonic's default for the other services).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------- raw gRPC

async fn channel(addr: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, tonic::Status> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))
}

/// One unary call of `path` with `body` as the message bytes, `authorization` values (each one
/// a separate header) and more metadata, on a fresh connection.
async fn call_with(
    addr: &str,
    tls: Option<ClientTlsConfig>,
    path: &str,
    body: Vec<u8>,
    authorization: &[String],
    extra: &[(&str, String)],
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel(addr, tls).await?);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("ready: {e}")))?;
    let mut request = tonic::Request::new(body);
    for value in authorization {
        request.metadata_mut().append(
            "authorization",
            MetadataValue::try_from(value.as_str()).expect("ASCII authorization"),
        );
    }
    for (key, value) in extra {
        request.metadata_mut().append(
            MetadataKey::from_bytes(key.as_bytes()).unwrap(),
            MetadataValue::try_from(value.as_str()).unwrap(),
        );
    }
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

async fn call(
    addr: &str,
    path: &str,
    body: Vec<u8>,
    authorization: &[String],
) -> Result<Vec<u8>, tonic::Status> {
    call_with(addr, None, path, body, authorization, &[]).await
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `SdkVolumeCreateRequest { name, spec: { size: 1 MiB, ha_level: 1 } }`.
fn create_request(name: &str) -> Vec<u8> {
    let mut spec = vec![0x10];
    varint(&mut spec, 1 << 20);
    spec.extend([0x28, 0x01]);
    let mut out = Vec::new();
    field(&mut out, 1, name.as_bytes());
    field(&mut out, 2, &spec);
    out
}

/// A message of exactly `len` bytes that only holds unknown field 15 (skipped by the decoder).
fn padded_message(len: usize) -> Vec<u8> {
    // tag (1 byte) + length varint (4 bytes for lengths in 2^21..2^28) + payload.
    let payload = len - 1 - 4;
    let mut out = vec![15 << 3 | 2];
    let mut n = payload as u64;
    for _ in 0..3 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    assert!(n < 0x80, "padded_message: length out of range");
    out.resize(len, b'p');
    out
}

/// What a raw HTTP/2 exchange ended with: the HTTP status and the gRPC status (from the headers
/// of a trailers-only answer, or from the trailers).
#[derive(Debug)]
struct RawAnswer {
    http: u16,
    grpc_status: Option<i32>,
    grpc_message: String,
}

/// Sends `body` verbatim (the gRPC length-prefixed framing included) as an HTTP/2 POST to `path`.
async fn raw_http2(
    addr: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<RawAnswer, String> {
    let mut ch = channel(addr, None).await.map_err(|e| e.to_string())?;
    std::future::poll_fn(|cx| ch.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("te", "trailers");
    let has_content_type = headers.iter().any(|(k, _)| *k == "content-type");
    if !has_content_type {
        builder = builder.header("content-type", "application/grpc");
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(body),
        )))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(15), ch.call(request))
        .await
        .map_err(|_| "no answer in 15 s".to_string())?
        .map_err(|e| e.to_string())?;
    let http = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let collected = tokio::time::timeout(Duration::from_secs(15), body.collect())
        .await
        .map_err(|_| "no end of body in 15 s".to_string())?
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
    };
    Ok(RawAnswer {
        http,
        grpc_status: get("grpc-status").and_then(|s| s.parse().ok()),
        grpc_message: get("grpc-message")
            .map(|m| percent_decode(&m))
            .unwrap_or_default(),
    })
}

/// grpc-message is percent-encoded.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A gRPC frame: compression flag, big-endian length, message.
fn frame(flag: u8, declared_len: u32, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend(declared_len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

// ---------------------------------------------------------------- tokens

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS over the exact header and payload texts.
fn jws(header: &str, payload: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid claim set from `iss` (system.user).
fn claims(iss: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "sub": format!("atk-{iss}"), "name": "Attack Test", "email": "atk@example.com",
        "iat": now - 5, "exp": now + 600, "roles": ["system.user"], "groups": ["atk"],
    })
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn trimmed_secret(path: &Path) -> Vec<u8> {
    let mut s = std::fs::read(path).unwrap();
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    s
}

fn auth_keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/auth/tests/keys")
}

// ---------------------------------------------------------------- the cluster under attack

/// Replaces the `[auth]` section (the last one in `custos dev` configs) of every node's config
/// and SIGHUPs every node.
fn reload_auth(cluster: &TestCluster, auth: &str) {
    for node in &cluster.info.nodes {
        let text = std::fs::read_to_string(&node.config).unwrap();
        let start = text
            .find("[auth]")
            .expect("dev configs have an [auth] section");
        std::fs::write(&node.config, format!("{}{auth}", &text[..start])).unwrap();
        kill(Pid::from_raw(node.pid as i32), Signal::SIGHUP).unwrap();
    }
}

fn issuer_toml(name: &str, keys: &[(&str, Option<&str>, &Path)]) -> String {
    let mut out = format!("\n[[auth.issuers]]\nname = \"{name}\"\n");
    for (kind, kid, file) in keys {
        out += &format!("[[auth.issuers.keys]]\nkind = \"{kind}\"\nfile = {file:?}\n");
        if let Some(kid) = kid {
            out += &format!("kid = \"{kid}\"\n");
        }
    }
    out
}

/// What a call must end with.
#[derive(Clone, Debug)]
enum Want {
    Ok,
    Err(Code, String),
}

fn denied() -> Want {
    Want::Err(Code::PermissionDenied, MSG_DENIED.into())
}
fn no_issuer() -> Want {
    Want::Err(Code::Unauthenticated, MSG_NO_ISSUER.into())
}
/// The HTTP/2 layer's answer to a header list over the server's 64 KiB limit: HTTP 431, which
/// the client maps to UNKNOWN. Only that request is refused; the connection stays usable.
fn http_431() -> Want {
    Want::Err(
        Code::Unknown,
        "grpc-status header missing, mapped from HTTP status code 431".into(),
    )
}
fn bad_header() -> Want {
    Want::Err(Code::Unauthenticated, MSG_HEADER.into())
}

fn check(what: &str, want: &Want, got: &Result<Vec<u8>, tonic::Status>) {
    match (want, got) {
        (Want::Ok, Ok(_)) => {}
        (Want::Err(code, message), Err(s)) if s.code() == *code && s.message() == message => {}
        _ => panic!(
            "{what}: want {want:?}, got {:?}",
            got.as_ref()
                .map(|b| b.len())
                .map_err(|s| (s.code(), s.message()))
        ),
    }
}

struct Attack {
    cluster: TestCluster,
    round: u32,
}

impl Attack {
    fn sdk(&self, node: u64) -> String {
        self.cluster.node(node).sdk.clone()
    }

    /// A legitimate client (the dev `user` token) writes through one member, in turn, and reads
    /// the volume back from every member.
    async fn still_serving(&mut self, after: &str) {
        self.round += 1;
        let writer = u64::from(self.round % 3) + 1;
        let token = self.cluster.token("user");
        let opts = custos_client::CreateVolume {
            name: format!("legit-{}", self.round),
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        };
        let id = self
            .cluster
            .client(writer, Some(&token))
            .create_volume(&opts)
            .await
            .unwrap_or_else(|e| panic!("after {after}: a legitimate write on node {writer}: {e}"));
        for node in 1..=3 {
            self.cluster
                .client(node, Some(&token))
                .inspect_volume(&id)
                .await
                .unwrap_or_else(|e| panic!("after {after}: a legitimate read on node {node}: {e}"));
        }
    }

    /// `authorization` values on a read on every member and a write on one.
    async fn auth_case(&mut self, what: &str, authorization: Vec<String>, want: Want) {
        for node in 1..=3 {
            let got = call(&self.sdk(node), ENUMERATE, Vec::new(), &authorization).await;
            check(&format!("{what} (read on node {node})"), &want, &got);
        }
        let node = u64::from(self.round % 3) + 1;
        let got = call(
            &self.sdk(node),
            CREATE,
            create_request(&format!("atk-{}", self.round)),
            &authorization,
        )
        .await;
        check(&format!("{what} (write on node {node})"), &want, &got);
        self.still_serving(what).await;
    }

    /// Every node process is alive and no node log holds a panic.
    fn no_casualties(&self) {
        for node in &self.cluster.info.nodes {
            assert!(
                kill(Pid::from_raw(node.pid as i32), None).is_ok(),
                "node {} died",
                node.id
            );
            let log = std::fs::read_to_string(&node.log).unwrap();
            assert!(
                !log.contains("panicked"),
                "node {} panicked:\n{}",
                node.id,
                log.lines()
                    .filter(|l| l.contains("panicked"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// A loopback listener standing in for `jku`/`x5u` URLs: nothing may ever connect to it.
struct Tripwire {
    listener: std::net::TcpListener,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Tripwire { listener }
    }
    fn url(&self) -> String {
        format!("http://{}/keys.json", self.listener.local_addr().unwrap())
    }
    fn untouched(&self) -> bool {
        matches!(self.listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

// ---------------------------------------------------------------- the mTLS cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_sdk_and_peer_ports_get_clear_errors_and_the_cluster_keeps_serving() {
    let cluster = TestCluster::start(3).unwrap();
    assert!(
        cluster.info.peer_tls,
        "custos dev uses peer mTLS by default"
    );
    let mut a = Attack { cluster, round: 0 };

    // Issuers: the dev HMAC issuer; `rsa-issuer` with an RSA key (kid r1) beside an HMAC key
    // (kid h1), the setting of algorithm confusion; `retiring-issuer`, removed at the end.
    let keys = auth_keys_dir();
    let retiring_secret = a.cluster.dir.path().join("retiring-secret");
    std::fs::write(&retiring_secret, "r".repeat(48)).unwrap();
    let dev_secret_file = a.cluster.info.shared_secret_file.clone();
    let dev_issuer = issuer_toml("custos-dev", &[("hmac", None, &dev_secret_file)]);
    let rsa_issuer = issuer_toml(
        "rsa-issuer",
        &[
            ("rsa", Some("r1"), &keys.join("rsa-a.pub.pem")),
            ("hmac", Some("h1"), &keys.join("hmac-b.secret")),
        ],
    );
    let retiring = issuer_toml("retiring-issuer", &[("hmac", None, &retiring_secret)]);
    let head = "[auth]\nusername_claim = \"sub\"\n";
    reload_auth(
        &a.cluster,
        &format!("{head}{dev_issuer}{rsa_issuer}{retiring}"),
    );

    let dev = EncodingKey::from_secret(&trimmed_secret(&dev_secret_file));
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(keys.join("rsa-a.key.pem")).unwrap()).unwrap();
    let rogue =
        EncodingKey::from_rsa_pem(&std::fs::read(keys.join("rsa-b.key.pem")).unwrap()).unwrap();
    let rsa_public_pem = std::fs::read(keys.join("rsa-a.pub.pem")).unwrap();
    let attacker = EncodingKey::from_secret(&[0x5a; 32]);
    let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
    let dev_token = |c: &Value| jws(hs, &c.to_string(), Algorithm::HS256, &dev);
    let rs_token = |c: &Value| {
        jws(
            r#"{"alg":"RS256","kid":"r1"}"#,
            &c.to_string(),
            Algorithm::RS256,
            &rsa,
        )
    };
    let valid = dev_token(&claims("custos-dev"));
    let parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let retiring_token = jws(
        hs,
        &claims("retiring-issuer").to_string(),
        Algorithm::HS256,
        &EncodingKey::from_secret(&trimmed_secret(&retiring_secret)),
    );

    // The reload reached every node once the RSA issuer is trusted everywhere.
    let deadline = Instant::now() + Duration::from_secs(15);
    for node in 1..=3 {
        while call(
            &a.sdk(node),
            ENUMERATE,
            Vec::new(),
            &[bearer(&rs_token(&claims("rsa-issuer")))],
        )
        .await
        .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "node {node} did not reload its issuers"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // -- Controls: what must pass does pass, so the refusals below mean something.
    a.auth_case(
        "control: HS256 from custos-dev",
        vec![bearer(&valid)],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "control: lowercase scheme",
        vec![format!("bearer {valid}")],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "control: uppercase scheme",
        vec![format!("BEARER {valid}")],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "control: RS256, kid r1",
        vec![bearer(&rs_token(&claims("rsa-issuer")))],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "control: RS256 without kid",
        vec![bearer(&jws(
            r#"{"alg":"RS256"}"#,
            &claims("rsa-issuer").to_string(),
            Algorithm::RS256,
            &rsa,
        ))],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "control: retiring-issuer",
        vec![bearer(&retiring_token)],
        Want::Ok,
    )
    .await;
    let tripwire = Tripwire::new();
    let url = tripwire.url();
    let key_urls = format!(
        r#"{{"alg":"HS256","jku":"{url}","x5u":"{url}","x5c":["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}}"#
    );
    a.auth_case(
        "jku/x5u/x5c headers are ignored (valid signature)",
        vec![bearer(&jws(
            &key_urls,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &dev,
        ))],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "huge claims under the 16 KiB token cap",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "pad",
            json!("x".repeat(11_000)),
        )))],
        Want::Ok,
    )
    .await;
    let many: Vec<String> = std::iter::once("system.user".to_string())
        .chain((0..499).map(|i| format!("r{i}")))
        .collect();
    a.auth_case(
        "500 roles and groups",
        vec![bearer(&dev_token(&with(
            with(claims("custos-dev"), "roles", json!(many)),
            "groups",
            json!(many),
        )))],
        Want::Ok,
    )
    .await;
    a.auth_case(
        "exp = u64::MAX does not overflow (no max_token_lifetime_secs configured)",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "exp",
            json!(u64::MAX),
        )))],
        Want::Ok,
    )
    .await;

    // -- alg none and algorithm confusion.
    let dev_payload = b64(claims("custos-dev").to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        a.auth_case(
            &format!("alg {alg}, no signature"),
            vec![bearer(&format!("{h}.{dev_payload}."))],
            denied(),
        )
        .await;
    }
    let h_none = b64(br#"{"alg":"none"}"#);
    a.auth_case(
        "alg none keeping a valid signature",
        vec![bearer(&format!("{h_none}.{}.{}", parts[1], parts[2]))],
        denied(),
    )
    .await;
    let confused = |header: &str| {
        jws(
            header,
            &claims("rsa-issuer").to_string(),
            Algorithm::HS256,
            &EncodingKey::from_secret(&rsa_public_pem),
        )
    };
    a.auth_case(
        "HS256 keyed with rsa-issuer's RSA public key (key confusion)",
        vec![bearer(&confused(hs))],
        denied(),
    )
    .await;
    a.auth_case(
        "HS256 keyed with the RSA public key, kid of the RSA key",
        vec![bearer(&confused(r#"{"alg":"HS256","kid":"r1"}"#))],
        denied(),
    )
    .await;
    a.auth_case(
        "RS256 header on an HMAC signature (custos-dev has no RSA key)",
        vec![bearer(&jws(
            r#"{"alg":"RS256"}"#,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &dev,
        ))],
        denied(),
    )
    .await;
    for alg in ["PS256", "HS1", "ES512", ""] {
        a.auth_case(
            &format!("unsupported alg {alg:?}"),
            vec![bearer(&jws(
                &format!(r#"{{"alg":"{alg}"}}"#),
                &claims("custos-dev").to_string(),
                Algorithm::HS256,
                &dev,
            ))],
            denied(),
        )
        .await;
    }

    // -- Signatures stripped, altered, borrowed; payloads swapped; wrong keys.
    a.auth_case(
        "signature stripped",
        vec![bearer(&format!("{}.{}.", parts[0], parts[1]))],
        denied(),
    )
    .await;
    let mut altered = parts[2].clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    a.auth_case(
        "signature altered",
        vec![bearer(&format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(altered).unwrap()
        ))],
        denied(),
    )
    .await;
    let escalated = b64(with(
        with(claims("custos-dev"), "roles", json!(["system.admin"])),
        "groups",
        json!(["*"]),
    )
    .to_string()
    .as_bytes());
    a.auth_case(
        "payload swapped after signing (roles escalated)",
        vec![bearer(&format!("{}.{escalated}.{}", parts[0], parts[2]))],
        denied(),
    )
    .await;
    let other = dev_token(&with(claims("custos-dev"), "sub", json!("someone-else")));
    a.auth_case(
        "another token's signature",
        vec![bearer(&format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.split('.').nth(2).unwrap()
        ))],
        denied(),
    )
    .await;
    a.auth_case(
        "RS256 signed by an unconfigured key",
        vec![bearer(&jws(
            r#"{"alg":"RS256"}"#,
            &claims("rsa-issuer").to_string(),
            Algorithm::RS256,
            &rogue,
        ))],
        denied(),
    )
    .await;
    a.auth_case(
        "RS256 signed by an unconfigured key claiming kid r1",
        vec![bearer(&jws(
            r#"{"alg":"RS256","kid":"r1"}"#,
            &claims("rsa-issuer").to_string(),
            Algorithm::RS256,
            &rogue,
        ))],
        denied(),
    )
    .await;
    a.auth_case(
        "HS256 from an unknown secret",
        vec![bearer(&jws(
            hs,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &attacker,
        ))],
        denied(),
    )
    .await;

    // -- Header injection: kid, embedded keys, crit, duplicate names.
    for kid in [
        r#""../../../../../../dev/null""#,
        r#""r1' OR '1'='1""#,
        r#""$(touch /tmp/pwned)""#,
        "7",
        "null",
    ] {
        a.auth_case(
            &format!("kid {kid}"),
            vec![bearer(&jws(
                &format!(r#"{{"alg":"HS256","kid":{kid}}}"#),
                &claims("custos-dev").to_string(),
                Algorithm::HS256,
                &dev,
            ))],
            denied(),
        )
        .await;
    }
    let embedded = format!(
        r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{}"}},"jku":"{url}"}}"#,
        b64(&[0x5a; 32])
    );
    a.auth_case(
        "embedded jwk with the attacker's key, signed by it",
        vec![bearer(&jws(
            &embedded,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &attacker,
        ))],
        denied(),
    )
    .await;
    a.auth_case(
        "crit header",
        vec![bearer(&jws(
            r#"{"alg":"HS256","crit":["exp"]}"#,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &dev,
        ))],
        denied(),
    )
    .await;
    a.auth_case(
        "duplicate alg in the JOSE header",
        vec![bearer(&jws(
            r#"{"alg":"HS256","alg":"none"}"#,
            &claims("custos-dev").to_string(),
            Algorithm::HS256,
            &dev,
        ))],
        denied(),
    )
    .await;
    assert!(tripwire.untouched(), "something fetched a jku/x5u URL");

    // -- Issuers.
    a.auth_case(
        "iss rsa-issuer, signed with custos-dev's secret",
        vec![bearer(&dev_token(&claims("rsa-issuer")))],
        denied(),
    )
    .await;
    a.auth_case(
        "untrusted issuer",
        vec![bearer(&dev_token(&claims("evil.example")))],
        Want::Err(
            Code::Unauthenticated,
            "evil.example is not a trusted issuer".into(),
        ),
    )
    .await;
    a.auth_case(
        "issuer differing only in case",
        vec![bearer(&dev_token(&claims("Custos-Dev")))],
        Want::Err(
            Code::Unauthenticated,
            "Custos-Dev is not a trusted issuer".into(),
        ),
    )
    .await;
    a.auth_case(
        "missing iss",
        vec![bearer(&dev_token(&without(claims("custos-dev"), "iss")))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "empty iss",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "iss",
            json!(""),
        )))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "iss a number",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "iss",
            json!(7),
        )))],
        no_issuer(),
    )
    .await;

    // -- Time claims: expired, not yet valid, mistyped.
    let t = now();
    let timing: Vec<(&str, Value)> = vec![
        (
            "expired",
            with(
                with(claims("custos-dev"), "iat", json!(t - 3600)),
                "exp",
                json!(t - 10),
            ),
        ),
        (
            "nbf in the future",
            with(claims("custos-dev"), "nbf", json!(t + 3600)),
        ),
        (
            "iat in the future",
            with(
                with(claims("custos-dev"), "iat", json!(t + 3600)),
                "exp",
                json!(t + 7200),
            ),
        ),
        (
            "exp a string",
            with(claims("custos-dev"), "exp", json!((t + 600).to_string())),
        ),
        (
            "nbf a string",
            with(claims("custos-dev"), "nbf", json!((t - 60).to_string())),
        ),
        (
            "iat a string",
            with(claims("custos-dev"), "iat", json!((t - 60).to_string())),
        ),
        (
            "exp a float",
            with(claims("custos-dev"), "exp", json!(t as f64 + 600.5)),
        ),
        ("exp negative", with(claims("custos-dev"), "exp", json!(-1))),
        ("exp null", with(claims("custos-dev"), "exp", Value::Null)),
        (
            "exp an object",
            with(claims("custos-dev"), "exp", json!({"t": t + 600})),
        ),
        ("exp 0", with(claims("custos-dev"), "exp", json!(0))),
        ("exp 1e30", with(claims("custos-dev"), "exp", json!(1e30))),
    ];
    for (what, c) in timing {
        a.auth_case(what, vec![bearer(&dev_token(&c))], denied())
            .await;
    }

    // -- Required claims and their types.
    for claim in ["sub", "exp", "iat", "name", "email"] {
        a.auth_case(
            &format!("missing {claim}"),
            vec![bearer(&dev_token(&without(claims("custos-dev"), claim)))],
            denied(),
        )
        .await;
    }
    a.auth_case(
        "empty sub",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "sub",
            json!(""),
        )))],
        denied(),
    )
    .await;
    a.auth_case(
        "sub null",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "sub",
            Value::Null,
        )))],
        denied(),
    )
    .await;
    a.auth_case(
        "roles a string",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "roles",
            json!("system.admin"),
        )))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "groups of numbers",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "groups",
            json!([1]),
        )))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "sub an array",
        vec![bearer(&dev_token(&with(
            claims("custos-dev"),
            "sub",
            json!(["a"]),
        )))],
        no_issuer(),
    )
    .await;
    let dup = format!(
        r#"{{"iss":"custos-dev","sub":"a","name":"A","email":"a@x","iat":{},"exp":{},"exp":9999999999,"roles":["system.admin"]}}"#,
        t - 3600,
        t - 1
    );
    a.auth_case(
        "duplicate exp claim",
        vec![bearer(&jws(hs, &dup, Algorithm::HS256, &dev))],
        no_issuer(),
    )
    .await;

    // -- Structure and size.
    a.auth_case(
        "two segments",
        vec![bearer(&format!("{}.{}", parts[0], parts[1]))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "four segments",
        vec![bearer(&format!("{valid}.{}", parts[2]))],
        no_issuer(),
    )
    .await;
    a.auth_case("empty token", vec!["Bearer ".into()], no_issuer())
        .await;
    a.auth_case(
        "payload with base64 padding",
        vec![bearer(&format!("{}.{}==.{}", parts[0], parts[1], parts[2]))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "payload not base64url",
        vec![bearer(&format!("{}.!!!.{}", parts[0], parts[2]))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "header not base64url",
        vec![bearer(&format!("%%%.{}.{}", parts[1], parts[2]))],
        denied(),
    )
    .await;
    a.auth_case(
        "payload not JSON",
        vec![bearer(&jws(
            hs,
            r#"{"iss":"custos-dev","#,
            Algorithm::HS256,
            &dev,
        ))],
        no_issuer(),
    )
    .await;
    a.auth_case(
        "payload a JSON array",
        vec![bearer(&jws(hs, "[1,2]", Algorithm::HS256, &dev))],
        no_issuer(),
    )
    .await;
    let deep = format!(
        r#"{{"iss":"custos-dev","x":{}1{}}}"#,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    a.auth_case(
        "deeply nested payload",
        vec![bearer(&jws(hs, &deep, Algorithm::HS256, &dev))],
        no_issuer(),
    )
    .await;
    for size in [20 << 10, 60 << 10] {
        a.auth_case(
            &format!("{} KiB token (over the verifier's 16 KiB cap)", size >> 10),
            vec![bearer(&format!(
                "{}.{}{}.{}",
                parts[0],
                parts[1],
                "A".repeat(size),
                parts[2]
            ))],
            no_issuer(),
        )
        .await;
    }

    // -- The authorization header itself.
    a.auth_case("no scheme", vec![valid.clone()], bad_header())
        .await;
    a.auth_case("scheme Basic", vec![format!("Basic {valid}")], bad_header())
        .await;
    a.auth_case(
        "scheme glued to the token",
        vec![format!("Bearer{valid}")],
        bad_header(),
    )
    .await;
    a.auth_case(
        "tab after the scheme",
        vec![format!("Bearer\t{valid}")],
        bad_header(),
    )
    .await;
    a.auth_case(
        "two spaces after the scheme",
        vec![format!("Bearer  {valid}")],
        denied(),
    )
    .await;
    a.auth_case(
        "two authorization headers",
        vec![bearer(&valid), bearer(&valid)],
        bad_header(),
    )
    .await;
    a.auth_case(
        "a valid and an empty authorization header",
        vec![bearer(&valid), String::new()],
        bad_header(),
    )
    .await;

    // -- Oversized metadata: a 100 KiB token, and other headers just under and over the
    // server's 64 KiB header-list limit. Over it, HTTP/2 refuses the request before gRPC runs.
    let huge = bearer(&format!(
        "{}.{}{}.{}",
        parts[0],
        parts[1],
        "A".repeat(100 << 10),
        parts[2]
    ));
    a.auth_case(
        "100 KiB token (over the 64 KiB header-list limit)",
        vec![huge],
        http_431(),
    )
    .await;
    for (size, want) in [(60 << 10, Want::Ok), (80 << 10, http_431())] {
        for node in 1..=3 {
            let got = call_with(
                &a.sdk(node),
                None,
                ENUMERATE,
                Vec::new(),
                &[bearer(&valid)],
                &[("x-pad", "p".repeat(size))],
            )
            .await;
            check(
                &format!("{} KiB x-pad header on node {node}", size >> 10),
                &want,
                &got,
            );
        }
        a.still_serving(&format!("{} KiB of metadata", size >> 10))
            .await;
    }
    // Hostile values of the metadata custos reads itself.
    for (key, value) in [
        ("grpc-timeout", "99999999999999999H".to_string()),
        ("grpc-timeout", "18446744073709551615M".to_string()),
        ("grpc-timeout", "0n".to_string()),
        ("x-request-id", "r".repeat(10_000)),
        (
            "x-custos-consistency",
            "linearizable-please; DROP TABLE".to_string(),
        ),
    ] {
        for node in 1..=3 {
            let got = call_with(
                &a.sdk(node),
                None,
                ENUMERATE,
                Vec::new(),
                &[bearer(&valid)],
                &[(key, value.clone())],
            )
            .await;
            // A zero timeout may expire before the answer; anything else must succeed.
            if value == "0n" {
                assert!(
                    got.is_ok()
                        || matches!(&got, Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Unavailable | Code::Cancelled)),
                    "grpc-timeout 0n on node {node}: {got:?}"
                );
            } else {
                check(
                    &format!("{key}: {} bytes on node {node}", value.len()),
                    &Want::Ok,
                    &got,
                );
            }
        }
        a.still_serving(&format!("metadata {key}")).await;
    }

    // -- Messages: at the 4 MiB limit, just over it, and far over it. tonic refuses an
    // oversized message with OUT_OF_RANGE before decoding it.
    let token = [bearer(&valid)];
    let sdk1 = a.sdk(1);
    let at_limit = call(&sdk1, ENUMERATE, padded_message(MAX_MESSAGE), &token).await;
    check("a 4 MiB message (the limit)", &Want::Ok, &at_limit);
    let too_large = |n: usize| {
        Want::Err(
            Code::OutOfRange,
            format!("Error, decoded message length too large: found {n} bytes, the limit is: {MAX_MESSAGE} bytes"),
        )
    };
    for (path, n) in [
        (ENUMERATE, MAX_MESSAGE + 1),
        (CREATE, 6 << 20),
        (ROLE_CREATE, MAX_MESSAGE + 1),
    ] {
        let got = call(&sdk1, path, padded_message(n), &token).await;
        check(&format!("{n}-byte message to {path}"), &too_large(n), &got);
        a.still_serving(&format!("a {n}-byte message")).await;
    }

    // -- Malformed protobuf: a decode error (INTERNAL, tonic's mapping), never a crash.
    let bad_bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "0xff bytes",
            vec![0xff; 16],
            "failed to decode Protobuf message",
        ),
        (
            "truncated string",
            vec![0x0a, 0x10, b'a'],
            "failed to decode Protobuf message",
        ),
        (
            "invalid UTF-8 in name",
            vec![0x0a, 0x02, 0xff, 0xfe],
            "failed to decode Protobuf message",
        ),
        (
            "wrong wire type for name",
            vec![0x0d, 0, 0, 0, 0],
            "failed to decode Protobuf message",
        ),
        (
            "field number 0",
            vec![0x02, 0x00],
            "failed to decode Protobuf message",
        ),
        (
            "varint over 10 bytes",
            [&[0x12u8, 0x0c, 0x10][..], &[0xff; 11]].concat(),
            "failed to decode Protobuf message",
        ),
        (
            "nested length past the end",
            vec![0x12, 0x7f, 0x10, 0x01],
            "failed to decode Protobuf message",
        ),
    ];
    for (what, body, prefix) in bad_bodies {
        for node in 1..=3 {
            match call(&a.sdk(node), CREATE, body.clone(), &token).await {
                Err(s) if s.code() == Code::Internal && s.message().starts_with(prefix) => {}
                other => panic!(
                    "malformed protobuf ({what}) on node {node}: {:?}",
                    other.map_err(|s| (s.code(), s.message().to_string()))
                ),
            }
        }
        a.still_serving(&format!("malformed protobuf ({what})"))
            .await;
    }

    // -- Malformed gRPC framing, sent as raw HTTP/2 bodies.
    let auth_header = bearer(&valid);
    let create = create_request("framing");
    // (case, body, extra headers, expected code, expected message)
    type Framing<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, i32, &'a str);
    let framings: Vec<Framing<'_>> = vec![
        ("declared length past the body", frame(0, 100, b"\x0a\x01a"), vec![], Code::Internal as i32, "Unexpected EOF decoding stream."),
        ("a frame cut inside its prefix", vec![0, 0, 0], vec![], Code::Internal as i32, "Unexpected EOF decoding stream."),
        ("compressed flag without grpc-encoding", frame(1, create.len() as u32, &create), vec![], Code::Internal as i32, "protocol error: received message with compressed-flag but no grpc-encoding was specified"),
        ("compression flag 7", frame(7, create.len() as u32, &create), vec![], Code::Internal as i32, "protocol error: received message with invalid compression flag: 7 (valid flags are 0 and 1), while sending request"),
        ("declared length 4 GiB - 1", frame(0, u32::MAX, b""), vec![], Code::OutOfRange as i32, "Error, decoded message length too large: found 4294967295 bytes, the limit is: 4194304 bytes"),
        ("gzip, which the server does not accept", frame(1, 3, b"abc"), vec![("grpc-encoding", "gzip")], Code::Unimplemented as i32, "Content is compressed with `gzip` which isn't supported"),
        ("random bytes", (0..997u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), vec![], -1, ""),
    ];
    for (what, body, headers, code, message) in framings {
        for node in 1..=3 {
            let mut hs: Vec<(&str, &str)> = vec![("authorization", auth_header.as_str())];
            hs.extend(headers.iter().copied());
            let got = raw_http2(&a.sdk(node), CREATE, body.clone(), &hs).await;
            let answer = got.unwrap_or_else(|e| panic!("framing ({what}) on node {node}: {e}"));
            eprintln!("framing ({what}) on node {node}: {answer:?}");
            assert_eq!(answer.http, 200, "framing ({what})");
            let status = answer.grpc_status.expect("a gRPC status");
            if code >= 0 {
                assert_eq!(
                    (status, answer.grpc_message.as_str()),
                    (code, message),
                    "framing ({what}) on node {node}"
                );
            } else {
                assert!(status != 0, "random bytes were accepted as a request");
            }
        }
        a.still_serving(&format!("framing ({what})")).await;
    }
    // Two messages in a unary call: tonic reads the first and ignores the rest, so exactly the
    // first create happens, once.
    let (first, second) = (create_request("two-first"), create_request("two-second"));
    let two = [
        frame(0, first.len() as u32, &first),
        frame(0, second.len() as u32, &second),
    ]
    .concat();
    let answer = raw_http2(
        &sdk1,
        CREATE,
        two,
        &[("authorization", auth_header.as_str())],
    )
    .await
    .unwrap();
    eprintln!("two messages in a unary call: {answer:?}");
    let reader = a.cluster.client(2, Some(&valid));
    reader
        .find_volume("two-first")
        .await
        .expect("the first message was applied");
    let second = reader.find_volume("two-second").await.map(|_| ());
    assert!(
        second.is_err(),
        "the second message of a unary call was applied"
    );
    // A non-gRPC content type: tonic does not look at it and reads the JSON as gRPC framing,
    // whose first byte ('{' = 123) is no valid compression flag.
    let json_body = b"{\"name\":\"x\"}".to_vec();
    let hs = [
        ("content-type", "application/json"),
        ("authorization", auth_header.as_str()),
    ];
    let answer = raw_http2(&sdk1, CREATE, json_body, &hs).await.unwrap();
    assert_eq!(
        (answer.grpc_status, answer.grpc_message.as_str()),
        (Some(Code::Internal as i32), "protocol error: received message with invalid compression flag: 123 (valid flags are 0 and 1), while sending request"),
        "a JSON body"
    );
    a.still_serving("malformed framing").await;

    // -- The peer port (mutual TLS).
    peer_port_attacks(&a.cluster).await;
    a.still_serving("peer port attacks").await;

    // -- An issuer removed from the config: its still-valid tokens are refused on every member.
    reload_auth(&a.cluster, &format!("{head}{dev_issuer}{rsa_issuer}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    for node in 1..=3 {
        while call(
            &a.sdk(node),
            ENUMERATE,
            Vec::new(),
            &[bearer(&retiring_token)],
        )
        .await
        .is_ok()
        {
            assert!(
                Instant::now() < deadline,
                "node {node} still trusts the removed issuer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    a.auth_case(
        "a valid token of an issuer removed by SIGHUP",
        vec![bearer(&retiring_token)],
        Want::Err(
            Code::Unauthenticated,
            "retiring-issuer is not a trusted issuer".into(),
        ),
    )
    .await;
    a.auth_case(
        "control: custos-dev after the removal",
        vec![bearer(&valid)],
        Want::Ok,
    )
    .await;

    a.no_casualties();
}

// ---------------------------------------------------------------- the peer port

/// `RaftRequest { from, target, payload }`.
fn raft_request(from: u64, target: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08];
    varint(&mut out, from);
    out.push(0x10);
    varint(&mut out, target);
    if !payload.is_empty() {
        field(&mut out, 3, payload);
    }
    out
}

/// bincode (standard config) of an openraft `AppendEntriesRequest` heartbeat: vote
/// `{ leader_id: { term, node_id }, committed: true }`, no `prev_log_id`, no entries, no
/// `leader_commit`. Terms and ids below 251 are one byte each.
fn heartbeat(term: u8, leader: u8) -> Vec<u8> {
    assert!(term < 251 && leader < 251);
    vec![term, leader, 1, 0, 0, 0]
}

/// Writes `bytes` to `addr`, then reads until the server closes the connection (bounded). Returns
/// what the server sent, or panics if the connection stays open.
fn write_and_expect_close(what: &str, addr: &str, bytes: &[u8], shutdown_write: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    // The server may close while we still write: that is a refusal too.
    let _ = stream.write_all(bytes);
    if shutdown_write {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return got, // reset
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the peer port kept the connection open for 15 s"
        );
    }
}

/// A TCP proxy for one connection that records what the client sent.
async fn recording_proxy(upstream: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = sw.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(30), futures::future::join(up, down)).await;
    });
    (addr, recorded)
}

async fn peer_port_attacks(cluster: &TestCluster) {
    let dir = cluster.dir.path();
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ca = read(dir.join("tls/ca.pem"));
    let node2 = Identity::from_pem(
        read(dir.join("node-2/tls/node.pem")),
        read(dir.join("node-2/tls/node.key")),
    );
    let target = cluster.node(1).raft.clone();
    let admin = cluster.token("admin");
    let term_before = cluster.client(1, Some(&admin)).status().await.unwrap().term;

    // Garbage on the TLS port: random bytes, a plaintext HTTP/2 preface with a request, a
    // truncated ClientHello. Each connection is dropped.
    let random: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    write_and_expect_close("random bytes", &target, &random, false);
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(frame(0, 6, &heartbeat(1, 2)));
    write_and_expect_close("a plaintext HTTP/2 preface", &target, &preface, false);

    // A real mTLS exchange through a recording proxy: node 2's certificate, a Vote with an empty
    // payload (refused as undecodable, so it changes nothing).
    let (proxy, recorded) = recording_proxy(target.clone()).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("custos-node-1")
        .identity(node2.clone());
    let got = call_with(
        &proxy,
        Some(tls.clone()),
        "/custos.raft.v1.RaftService/Vote",
        raft_request(2, 1, b""),
        &[],
        &[],
    )
    .await;
    assert!(
        matches!(&got, Err(s) if s.code() == Code::InvalidArgument),
        "the recorded call reached the service: {got:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let captured = recorded.lock().unwrap().clone();
    assert!(captured.len() > 500, "captured {} bytes", captured.len());
    assert_eq!(captured[0], 0x16, "a TLS handshake record comes first");
    // The ClientHello alone, cut in the middle.
    let hello_len = 5 + u16::from_be_bytes([captured[3], captured[4]]) as usize;
    write_and_expect_close(
        "a truncated ClientHello",
        &target,
        &captured[..hello_len / 2],
        true,
    );
    // The whole recorded client side, replayed verbatim: the server's fresh handshake secrets
    // make every recorded record after the ClientHello useless, so the connection fails.
    let answer = write_and_expect_close("a replayed TLS session", &target, &captured, false);
    eprintln!(
        "replayed TLS session: the server sent {} bytes and closed",
        answer.len()
    );
    // The replayed ClientHello alone gets a ServerHello and then waits for the client's
    // certificate: nothing from the recording can complete it.
    write_and_expect_close(
        "a replayed ClientHello",
        &target,
        &captured[..hello_len],
        true,
    );

    // A forged AppendEntries heartbeat: without a client certificate it cannot even be sent.
    let no_cert = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("custos-node-1");
    let got = call_with(
        &target,
        Some(no_cert),
        "/custos.raft.v1.RaftService/AppendEntries",
        raft_request(2, 1, &heartbeat(term_before as u8, 2)),
        &[],
        &[],
    )
    .await;
    match got {
        Ok(_) => panic!("an AppendEntries without a client certificate was answered"),
        Err(s) => {
            eprintln!(
                "AppendEntries without a client certificate: {:?} {}",
                s.code(),
                s.message()
            );
            assert!(
                !matches!(
                    s.code(),
                    Code::Ok
                        | Code::InvalidArgument
                        | Code::PermissionDenied
                        | Code::FailedPrecondition
                ),
                "{s:?}"
            );
        }
    }
    // Random payloads behind a real certificate (a compromised member) are refused as
    // undecodable; garbage starting with an invalid varint can never decode.
    for i in 0..20u32 {
        let mut payload: Vec<u8> = (0..(i * 37 % 300))
            .map(|j| (j.wrapping_mul(2_246_822_519) ^ i) as u8)
            .collect();
        payload.insert(0, 0xff);
        for method in ["AppendEntries", "Vote", "InstallSnapshot"] {
            let got = call_with(
                &target,
                Some(tls.clone()),
                &format!("/custos.raft.v1.RaftService/{method}"),
                raft_request(2, 1, &payload),
                &[],
                &[],
            )
            .await;
            match got {
                Err(s)
                    if s.code() == Code::InvalidArgument
                        && s.message().starts_with("peer payload codec") => {}
                other => panic!(
                    "garbage {method} payload: {:?}",
                    other.map_err(|s| (s.code(), s.message().to_string()))
                ),
            }
        }
    }

    let status = cluster.client(1, Some(&admin)).status().await.unwrap();
    assert_eq!(
        status.term, term_before,
        "the attacks changed the Raft term"
    );
}

// ---------------------------------------------------------------- the plaintext peer port

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_peer_port_refuses_garbage_and_stale_replays() {
    let cluster = TestCluster::start_with(3, &["--insecure"]).unwrap();
    assert!(!cluster.info.peer_tls);
    let mut a = Attack { cluster, round: 0 };
    a.still_serving("start").await;
    let admin = a.cluster.token("admin");
    let leader = a.cluster.leader(1).await.unwrap();
    let follower = if leader == 1 { 2 } else { 1 };
    let target = a.cluster.node(follower).raft.clone();
    let status = a
        .cluster
        .client(follower, Some(&admin))
        .status()
        .await
        .unwrap();
    let term = status.term;
    assert!((1..200).contains(&term), "term {term}");

    // Random bytes instead of HTTP/2.
    let random: Vec<u8> = (0..16 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    write_and_expect_close("random bytes (plaintext)", &target, &random, false);
    a.still_serving("random bytes on the plaintext peer port")
        .await;

    let peer_call = |method: &str, body: Vec<u8>| {
        let target = target.clone();
        let path = format!("/custos.raft.v1.RaftService/{method}");
        async move { call_with(&target, None, &path, body, &[], &[]).await }
    };
    // Garbage payloads: each one a clear InvalidArgument from the payload codec.
    for i in 0..40u32 {
        let mut payload: Vec<u8> = (0..(i * 53 % 500))
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 9 ^ i) as u8)
            .collect();
        payload.insert(0, 0xfe | (i as u8 & 1));
        for method in ["AppendEntries", "Vote", "InstallSnapshot"] {
            match peer_call(method, raft_request(leader, follower, &payload)).await {
                Err(s)
                    if s.code() == Code::InvalidArgument
                        && s.message().starts_with("peer payload codec") => {}
                other => panic!(
                    "garbage {method} payload: {:?}",
                    other.map_err(|s| (s.code(), s.message().to_string()))
                ),
            }
        }
    }
    // Length bombs: a string or byte length of 2^40 and 2^62 must be refused, not allocated.
    let mut bombs = Vec::new();
    for len in [1u64 << 40, 1u64 << 62] {
        // Propose: the command's request id (a string) comes first.
        let mut p = vec![253];
        p.extend(len.to_le_bytes());
        bombs.push(("Propose", p));
    }
    for (method, payload) in bombs {
        let mut body = vec![0x08];
        varint(&mut body, leader);
        body.push(0x10);
        varint(&mut body, follower);
        field(&mut body, 3, &payload);
        match peer_call(method, body).await {
            Err(s)
                if s.code() == Code::InvalidArgument
                    && s.message().starts_with("peer payload codec") =>
            {
                eprintln!("length bomb: {}", s.message())
            }
            other => panic!(
                "length bomb to {method}: {:?}",
                other.map_err(|s| (s.code(), s.message().to_string()))
            ),
        }
    }
    a.still_serving("garbage peer payloads").await;
    // A wrong target is named.
    let got = peer_call("Vote", raft_request(leader, 7, &[0xff])).await;
    check(
        "a peer call for node 7",
        &Want::Err(
            Code::FailedPrecondition,
            format!("this is node {follower}, not node 7"),
        ),
        &got,
    );

    // A replayed AppendEntries from a fake sender (plaintext: nothing proves who sends, which is
    // why peers use mutual TLS outside tests): an old term is answered with the follower's higher
    // vote (bincode `Ok(HigherVote(..))` = 0, 3) and changes nothing.
    if term > 1 {
        let reply = peer_call(
            "AppendEntries",
            raft_request(leader, follower, &heartbeat(term as u8 - 1, leader as u8)),
        )
        .await
        .expect("a stale heartbeat gets an answer");
        assert_eq!(
            &reply_payload(&reply)[..2],
            &[0, 3],
            "a stale AppendEntries is answered HigherVote"
        );
    }
    // The same heartbeat the leader sends, replayed: accepted as what it is (bincode
    // `Ok(Success)` = 0, 0), idempotent, and nothing moves.
    let reply = peer_call(
        "AppendEntries",
        raft_request(leader, follower, &heartbeat(term as u8, leader as u8)),
    )
    .await
    .expect("a replayed heartbeat gets an answer");
    assert_eq!(
        &reply_payload(&reply)[..2],
        &[0, 0],
        "a replayed current heartbeat is a no-op success"
    );
    let after = a
        .cluster
        .client(follower, Some(&admin))
        .status()
        .await
        .unwrap();
    assert_eq!(
        (after.term, after.leader_id),
        (term, leader),
        "the replays moved the term or the leader"
    );
    a.still_serving("replayed AppendEntries").await;
    a.no_casualties();
}

/// The `payload` (field 1) of a `RaftReply`.
fn reply_payload(reply: &[u8]) -> Vec<u8> {
    assert_eq!(
        reply.first(),
        Some(&0x0a),
        "a RaftReply with a payload: {reply:?}"
    );
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let b = reply[i];
        len |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    reply[i..i + len].to_vec()
}
