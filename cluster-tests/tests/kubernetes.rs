//! deploy/kubernetes, checked without a Kubernetes cluster: the manifests agree with each other
//! (Service names, selectors, named ports, mounts, pod DNS names in the config), and the pods
//! they describe form a working cluster on loopback: the Secrets `gen-secrets.sh` writes and
//! the ConfigMap are laid out where the StatefulSet mounts them (under a directory per pod), the
//! container's own entry script runs with the pod's `HOSTNAME`, the readiness and liveness
//! probes pass, and a client trusting the generated CA creates a volume with a token signed
//! with the generated shared secret. The schema check is cluster-tests/python/test_kubernetes.py.
//!
//! What a pod has and loopback does not is mapped, and only that: each pod's mount paths become
//! directories under the pod's root, and the listen and member addresses (each pod has its own
//! IP; here they share 127.0.0.1) become free loopback ports.

use base64::Engine as _;
use custos_client::{ClientTls, CreateVolume};
use custos_cluster_tests::{custos_bin, free_base_port};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// `selector` (a label map) is a subset of `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_mapping().expect("a label selector");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The pods' processes; killed when the test ends, however it ends.
struct Pods(Vec<Child>);

impl Drop for Pods {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[text.len().saturating_sub(3000)..].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifests_fit_together_and_their_pods_form_a_cluster_on_loopback() {
    let docs = documents(&deploy_dir().join("custos.yaml"));
    let sts = docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a StatefulSet");
    let ns = s(&sts["metadata"]["namespace"]);
    let sts_name = s(&sts["metadata"]["name"]);
    let spec = &sts["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    let replicas = spec["replicas"].as_u64().expect("replicas") as usize;
    assert!(replicas >= 3 && replicas % 2 == 1, "an odd majority");
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));
    assert_eq!(
        spec["podManagementPolicy"], "Parallel",
        "ordered start-up deadlocks: pod 0 is not ready before a majority runs"
    );
    assert!(docs.iter().all(|d| d["kind"] == "Namespace"
        || d["kind"] == "StorageClass"
        || d["metadata"]["namespace"] == ns));

    // The headless Service gives the pods their DNS names, before they are ready.
    let headless = find(&docs, "Service", s(&spec["serviceName"]));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    let client_svc = find(&docs, "Service", "custos-sdk");
    assert_ne!(client_svc["spec"]["clusterIP"], "None");
    let container = &seq(&pod["containers"])[0];
    let ports: BTreeMap<&str, u16> = seq(&container["ports"])
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_u64().unwrap() as u16))
        .collect();
    for svc in [headless, client_svc] {
        assert!(selects(&svc["spec"]["selector"], pod_labels));
        for p in seq(&svc["spec"]["ports"]) {
            let target = s(&p["targetPort"]);
            assert!(ports.contains_key(target), "no container port {target}");
        }
    }
    assert!(docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"
        && selects(&d["spec"]["selector"]["matchLabels"], pod_labels)));

    // The config: its ports are the container's, its members the pods' DNS names.
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let config_text = s(&config_map["data"]["custos.toml"]).to_string();
    let config: toml::Value = toml::from_str(&config_text).expect("the config is TOML");
    let listen = |key: &str| port(config[key].as_str().unwrap());
    assert_eq!(listen("sdk_listen"), ports["sdk"]);
    assert_eq!(listen("raft_listen"), ports["peer"]);
    assert_eq!(listen("rest_listen"), ports["rest"]);
    assert_eq!(listen("metrics_listen"), ports["metrics"]);
    let members = config["initial_members"].as_array().expect("members");
    assert_eq!(members.len(), replicas);
    let svc = s(&headless["metadata"]["name"]);
    let dns = |ordinal: usize| format!("{sts_name}-{ordinal}.{svc}.{ns}.svc.cluster.local");
    for (i, m) in members.iter().enumerate() {
        assert_eq!(
            m["id"].as_integer(),
            Some(i as i64 + 1),
            "node N is pod N-1"
        );
        assert_eq!(
            m["raft_addr"].as_str().unwrap(),
            format!("{}:{}", dns(i), ports["peer"])
        );
        assert_eq!(
            m["sdk_addr"].as_str().unwrap(),
            format!("{}:{}", dns(i), ports["sdk"])
        );
    }
    let issuer = config["auth"]["issuers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // The Secrets, as gen-secrets.sh writes them for this namespace and size.
    let work = tempfile::Builder::new()
        .prefix("custos-k8s-")
        .tempdir()
        .unwrap();
    let work = work.path();
    let secrets_dir = work.join("secrets");
    let gen = Command::new("bash")
        .arg(deploy_dir().join("gen-secrets.sh"))
        .arg(&secrets_dir)
        .env("NAMESPACE", ns)
        .env("REPLICAS", replicas.to_string())
        .output()
        .expect("bash gen-secrets.sh");
    assert!(
        gen.status.success(),
        "gen-secrets.sh: {}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let mut secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for file in ["custos-tls.yaml", "custos-auth.yaml"] {
        for d in documents(&secrets_dir.join(file)) {
            assert_eq!(d["kind"], "Secret");
            assert_eq!(d["metadata"]["namespace"], ns);
            let data = d["data"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(s(v))
                        .expect("base64");
                    (s(k).to_string(), bytes)
                })
                .collect();
            secrets.insert(s(&d["metadata"]["name"]).to_string(), data);
        }
    }
    assert!(
        !secrets["custos-tls"].contains_key("ca.key"),
        "the CA key stays with the operator"
    );

    // Mounts: every mount of the container is a volume of the pod or a claim template.
    let volumes: BTreeMap<&str, &Value> = seq(&pod["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let claims: Vec<&str> = seq(&spec["volumeClaimTemplates"])
        .iter()
        .map(|c| s(&c["metadata"]["name"]))
        .collect();
    let mounts: Vec<(&str, &str)> = seq(&container["volumeMounts"])
        .iter()
        .map(|m| (s(&m["name"]), s(&m["mountPath"])))
        .collect();
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|(n, _)| *n == volume)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
    };
    assert_eq!(
        config["data_dir"].as_str(),
        Some(mount_of(claims[0])),
        "data on the claim"
    );

    // The pods, one root directory each.
    let base = free_base_port(replicas as u16).unwrap();
    let addr =
        |offset: u16, ordinal: usize| format!("127.0.0.1:{}", base + offset + ordinal as u16);
    let bin_dir = custos_bin().parent().unwrap().to_path_buf();
    let path_env = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let script = {
        let cmd: Vec<&str> = seq(&container["command"]).iter().map(s).collect();
        assert_eq!(cmd, ["/bin/bash", "-c"]);
        s(&seq(&container["args"])[0]).to_string()
    };
    let mut pods = Pods(Vec::new());
    let mut roots = Vec::new();
    for ordinal in 0..replicas {
        let root = work.join(format!("{sts_name}-{ordinal}"));
        let under = |p: &str| format!("{}{p}", root.display());
        for (name, path) in &mounts {
            let dir = PathBuf::from(under(path));
            std::fs::create_dir_all(&dir).unwrap();
            if claims.contains(name) {
                continue;
            }
            let v = volumes
                .get(name)
                .unwrap_or_else(|| panic!("mount {name}: no such volume"));
            let files: BTreeMap<String, Vec<u8>> = if let Some(cm) = v.get("configMap") {
                assert_eq!(cm["name"], config_map["metadata"]["name"]);
                config_map["data"]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (s(k).to_string(), s(v).as_bytes().to_vec()))
                    .collect()
            } else if let Some(secret) = v.get("secret") {
                secrets
                    .get(s(&secret["secretName"]))
                    .unwrap_or_else(|| panic!("gen-secrets.sh writes no {:?}", secret))
                    .clone()
            } else {
                assert!(v.get("emptyDir").is_some(), "volume {name}: unknown kind");
                BTreeMap::new()
            };
            for (file, bytes) in files {
                std::fs::write(dir.join(file), bytes).unwrap();
            }
        }
        // This pod's addresses: what differs between a pod network and one loopback.
        let config_volume = volumes
            .iter()
            .find(|(_, v)| v["configMap"]["name"] == config_map["metadata"]["name"])
            .map(|(n, _)| *n)
            .expect("a volume of the ConfigMap");
        let config_file = PathBuf::from(under(mount_of(config_volume))).join("custos.toml");
        let mut text = config_text.clone();
        for (_, path) in &mounts {
            text = text.replace(&format!("\"{path}"), &format!("\"{}", under(path)));
        }
        for (i, _) in members.iter().enumerate() {
            text = text.replace(&format!("{}:{}", dns(i), ports["peer"]), &addr(100, i));
            text = text.replace(&format!("{}:{}", dns(i), ports["sdk"]), &addr(0, i));
        }
        for (key, offset) in [("sdk", 0), ("peer", 100), ("rest", 200), ("metrics", 300)] {
            text = text.replace(&format!("0.0.0.0:{}", ports[key]), &addr(offset, ordinal));
        }
        assert!(
            !text.contains("0.0.0.0") && !text.contains(".svc.cluster.local"),
            "an address the test does not know how to map:\n{text}"
        );
        std::fs::write(&config_file, text).unwrap();
        let mut pod_script = script.clone();
        for (_, path) in &mounts {
            pod_script = pod_script.replace(path, &under(path));
        }
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        pods.0.push(
            Command::new("bash")
                .arg("-c")
                .arg(&pod_script)
                .env_clear()
                .env("HOSTNAME", format!("{sts_name}-{ordinal}"))
                .env("PATH", &path_env)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        roots.push(root);
    }
    let logs = || {
        roots
            .iter()
            .map(|r| format!("--- {}\n{}", r.display(), tail(&r.join("server.log"))))
            .collect::<String>()
    };

    // Readiness: the probe's own command, against each pod's metrics port.
    let probe = seq(&container["readinessProbe"]["exec"]["command"]);
    let probe: Vec<&str> = probe.iter().map(s).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for ordinal in 0..replicas {
        let metrics_port = base + 300 + ordinal as u16;
        let args: Vec<String> = probe
            .iter()
            .map(|a| {
                a.replace(
                    &format!("127.0.0.1/{}", ports["metrics"]),
                    &format!("127.0.0.1/{metrics_port}"),
                )
            })
            .collect();
        assert!(
            args.iter().any(|a| a.contains(&metrics_port.to_string())),
            "the readiness probe does not ask the metrics port: {probe:?}"
        );
        loop {
            let ok = Command::new(&args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                break;
            }
            for (i, p) in pods.0.iter_mut().enumerate() {
                if let Some(status) = p.try_wait().unwrap() {
                    panic!("pod {i} exited ({status}):\n{}", logs());
                }
            }
            assert!(
                Instant::now() < deadline,
                "pod {ordinal} not ready in 60 s:\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // Liveness: GET /metrics on the named port.
    let live = &container["livenessProbe"]["httpGet"];
    assert_eq!(live["port"], "metrics");
    let url = format!("http://127.0.0.1:{}{}", base + 300, s(&live["path"]));
    let status = tokio::task::spawn_blocking(move || ureq::get(&url).call().map(|r| r.status()))
        .await
        .unwrap()
        .expect("liveness probe");
    assert_eq!(status, 200);

    // Each pod picked its own certificate (peers would refuse another's) and keeps the key
    // private.
    for root in &roots {
        let key = PathBuf::from(format!("{}/run/custos/tls/node.key", root.display()));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }

    // A client: the CA from the Secret, a token signed with the Secret's shared secret.
    let ca = work.join("ca.crt");
    std::fs::write(&ca, &secrets["custos-tls"]["ca.crt"]).unwrap();
    let shared = work.join("shared-secret");
    std::fs::write(&shared, &secrets["custos-auth"]["shared-secret"]).unwrap();
    let identity = work.join("ops.yaml");
    std::fs::write(
        &identity,
        "name: ops\nemail: ops@example.com\nsub: ops\nroles: [system.user]\ngroups: [ops]\n",
    )
    .unwrap();
    let minted = Command::new(custos_bin())
        .args(["auth", "token", "generate", "--issuer", &issuer])
        .arg("--auth-config")
        .arg(&identity)
        .arg("--shared-secret-file")
        .arg(&shared)
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let tls = ClientTls::from_ca_file(&ca).unwrap();
    let endpoints: Vec<String> = (0..replicas).map(|i| addr(0, i)).collect();
    let client = |i: usize| {
        custos_client::Client::with_tls(
            std::slice::from_ref(&endpoints[i]),
            Some(&token),
            Some(&tls),
        )
        .unwrap()
        .with_timeout(Duration::from_secs(10))
    };
    let id = client(0)
        .create_volume(&CreateVolume {
            name: "k8s-vol".into(),
            size: 1 << 30,
            ha_level: 2,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create: {e}\n{}", logs()));
    let seen = client(replicas - 1).inspect_volume(&id).await.unwrap();
    assert_eq!(seen.name, "k8s-vol");
    assert_eq!(seen.ownership.unwrap().owner, "ops");
    drop(pods);
}

#[test]
fn the_csi_example_takes_each_claims_token_from_its_own_namespace() {
    let docs = documents(&deploy_dir().join("examples/tenant-storageclass.yaml"));
    let sc = docs
        .iter()
        .find(|d| d["kind"] == "StorageClass")
        .expect("a StorageClass");
    let params = sc["parameters"].as_mapping().unwrap();
    let mut secret_names = Vec::new();
    for op in ["provisioner", "node-publish", "controller-expand"] {
        let name = params
            .get(format!("csi.storage.k8s.io/{op}-secret-name"))
            .unwrap_or_else(|| panic!("no {op} secret"));
        let namespace = params
            .get(format!("csi.storage.k8s.io/{op}-secret-namespace"))
            .unwrap();
        assert_eq!(
            namespace, "${pvc.namespace}",
            "{op}: the claim's own namespace"
        );
        secret_names.push(s(name).to_string());
    }
    secret_names.dedup();
    assert_eq!(secret_names.len(), 1, "one Secret per namespace");
    let pvc = docs
        .iter()
        .find(|d| d["kind"] == "PersistentVolumeClaim")
        .expect("a claim");
    assert_eq!(pvc["spec"]["storageClassName"], sc["metadata"]["name"]);
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "secret generic {} --from-file=auth-token=",
            secret_names[0]
        )),
        "the README shows how to make the namespace's Secret with key auth-token"
    );
}
