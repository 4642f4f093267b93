//! `Access.Explain` against a real cluster: for admin, user, view, guest, a custom role with a
//! `!` deny, and group, collaborator and public ACL cases, the verdict explained (code and
//! message) equals what the real call returns — explained through gRPC, REST and the CLI.

use custos_client::model::{AccessType, Acls, Code, Ownership, Role, Rule, VolumeUpdate};
use custos_client::{ClientError, CreateVolume, ExplainReply, ExplainRequest};
use custos_cluster_tests::{custos_bin, TestCluster};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A verdict as compared: `None` allowed, else (gRPC code, message).
type Verdict = Option<(i32, String)>;

fn grpc_code(code: Code) -> i32 {
    // The numbers of google.rpc.Code.
    match code {
        Code::InvalidArgument => 3,
        Code::NotFound => 5,
        Code::AlreadyExists => 6,
        Code::PermissionDenied => 7,
        Code::Unauthenticated => 16,
        Code::FailedPrecondition => 9,
        Code::ResourceExhausted => 8,
        Code::Unavailable => 14,
        Code::Unimplemented => 12,
        Code::Aborted => 10,
    }
}

fn real<T>(r: Result<T, ClientError>) -> Verdict {
    match r {
        Ok(_) => None,
        Err(ClientError::Status { code, message }) => Some((grpc_code(code), message)),
        Err(e) => panic!("the real call failed outside authorization: {e}"),
    }
}

fn from_reply(r: &ExplainReply) -> Verdict {
    let v = r.verdict.as_ref().expect("a verdict");
    (!v.allowed).then(|| (v.grpc_code, v.message.clone()))
}

/// The same verdict from proto3 JSON (REST and `-o json`): defaults are left out.
fn from_json(body: &Value) -> Verdict {
    let v = &body["verdict"];
    if v["allowed"] == json!(true) {
        return None;
    }
    Some((
        v["grpc_code"].as_i64().expect("grpc_code") as i32,
        v["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Who is explained: a token (its verified identity) or the anonymous caller.
enum Who<'a> {
    Token(&'a str),
    Anonymous,
    /// user, roles, groups named directly.
    Named(&'a str, &'a [&'a str], &'a [&'a str]),
}

struct Explainer<'a> {
    cluster: &'a TestCluster,
    admin: String,
    dir: tempfile::TempDir,
    runtime: &'a tokio::runtime::Runtime,
    rest: ureq::Agent,
}

impl Explainer<'_> {
    /// Explains through gRPC, REST and the CLI; all three must agree. Returns the verdict.
    fn explain(&self, who: &Who<'_>, method: &str, volume: &str) -> Verdict {
        let mut req = ExplainRequest {
            method: method.into(),
            volume: volume.into(),
            ..ExplainRequest::default()
        };
        match who {
            Who::Token(t) => req.token = t.to_string(),
            Who::Anonymous => {}
            Who::Named(u, roles, groups) => {
                req.user = u.to_string();
                req.roles = roles.iter().map(|s| s.to_string()).collect();
                req.groups = groups.iter().map(|s| s.to_string()).collect();
            }
        }
        // gRPC, through node 2.
        let grpc = self
            .runtime
            .block_on(self.cluster.client(2, Some(&self.admin)).explain(&req))
            .unwrap();
        let verdict = from_reply(&grpc);
        assert!(
            grpc.lines
                .last()
                .is_some_and(|l| l.starts_with("verdict: ")),
            "{:?}",
            grpc.lines
        );
        // REST, through node 3.
        let body = json!({
            "user": req.user, "groups": req.groups, "roles": req.roles,
            "method": req.method, "volume": req.volume, "token": req.token,
        });
        let mut response = self
            .rest
            .post(format!(
                "http://{}/v1/custos/access/explain",
                self.cluster.node(3).rest
            ))
            .header("authorization", &format!("bearer {}", self.admin))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let rest: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(from_json(&rest), verdict, "REST vs gRPC: {rest}");
        // The CLI, through node 1, with -o json and as people read it.
        let mut args: Vec<String> = vec!["access".into(), "explain".into()];
        match who {
            Who::Token(t) => {
                let file = self.dir.path().join("explained.jwt");
                std::fs::write(&file, t).unwrap();
                args.extend(["--explain-token".into(), file.display().to_string()]);
            }
            Who::Anonymous => args.push("--anonymous".into()),
            Who::Named(u, roles, groups) => {
                args.extend(["--user".into(), u.to_string()]);
                if !roles.is_empty() {
                    args.extend(["--roles".into(), roles.join(",")]);
                }
                if !groups.is_empty() {
                    args.extend(["--groups".into(), groups.join(",")]);
                }
            }
        }
        args.extend(["--method".into(), method.into()]);
        if !volume.is_empty() {
            args.extend(["--volume".into(), volume.into()]);
        }
        let cli = |extra: &[&str]| {
            let out = std::process::Command::new(custos_bin())
                .args([
                    "--endpoint",
                    &self.cluster.node(1).sdk,
                    "--token",
                    &self.admin,
                ])
                .args(extra)
                .args(&args)
                .env("CUSTOS_CONFIG_DIR", self.dir.path())
                .env_remove("CUSTOS_CONTEXT")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let cli_json: Value = serde_json::from_str(&cli(&["-o", "json"])).unwrap();
        assert_eq!(from_json(&cli_json), verdict, "CLI vs gRPC: {cli_json}");
        let human = cli(&[]);
        let last = human.lines().last().unwrap_or_default().to_string();
        match &verdict {
            None => assert_eq!(last, "verdict: allowed", "{human}"),
            Some((_, message)) => assert!(last.ends_with(message.as_str()), "{human}"),
        }
        verdict
    }
}

#[test]
fn explain_agrees_with_the_real_calls_through_grpc_rest_and_the_cli() {
    let cluster = TestCluster::start(3).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Clients connect lazily, which needs the runtime's reactor.
    let _entered = runtime.enter();
    let admin = cluster.token("admin");
    let (user, view) = (cluster.token("user"), cluster.token("view"));
    let alice = cluster.mint_token("alice", &["system.user"], &[]);
    let gus = cluster.mint_token("gus", &["system.user"], &["ops"]);
    let rita = cluster.mint_token("rita", &["system.user"], &[]);
    let bob = cluster.mint_token("bob", &["system.user"], &[]);
    let dora = cluster.mint_token("dora", &["no-create"], &[]);
    let c = |t: Option<&str>| cluster.client(1, t);

    // The fixture, through real calls: a role with a `!` deny; alice's volume shared with the
    // group ops (Write) and rita (Read); alice's volume readable by the public.
    let deny = Role {
        name: "no-create".into(),
        rules: vec![Rule {
            services: vec!["volume".into()],
            apis: vec!["*".into(), "!create".into()],
        }],
    };
    runtime
        .block_on(c(Some(&admin)).create_role(&deny))
        .unwrap();
    let create = |name: &str| CreateVolume {
        name: name.into(),
        size: 1 << 20,
        ha_level: 1,
        labels: BTreeMap::new(),
        shared: false,
        encrypted: false,
    };
    let acl = |acls: Acls| VolumeUpdate {
        ownership: Some(Ownership {
            owner: String::new(),
            acls,
        }),
        ..VolumeUpdate::default()
    };
    let (shared, public) = runtime.block_on(async {
        let shared = c(Some(&alice))
            .create_volume(&create("shared"))
            .await
            .unwrap();
        let acls = Acls {
            groups: [("ops".to_string(), AccessType::Write)].into(),
            collaborators: [("rita".to_string(), AccessType::Read)].into(),
            public: None,
        };
        c(Some(&alice))
            .update_volume(&shared, &BTreeMap::new(), &acl(acls))
            .await
            .unwrap();
        let public = c(Some(&alice)).create_volume(&create("pub")).await.unwrap();
        let acls = Acls {
            public: Some(AccessType::Read),
            ..Acls::default()
        };
        c(Some(&alice))
            .update_volume(&public, &BTreeMap::new(), &acl(acls))
            .await
            .unwrap();
        (shared, public)
    });

    let explainer = Explainer {
        cluster: &cluster,
        admin: admin.clone(),
        dir: tempfile::tempdir().unwrap(),
        runtime: &runtime,
        rest: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into(),
    };
    let labels: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
    let mut checked = 0;
    let mut refused = 0;
    let mut check = |who: Who<'_>, method: &str, volume: &str, real: Verdict| {
        let explained = explainer.explain(&who, method, volume);
        assert_eq!(explained, real, "{method} on {volume:?}");
        checked += 1;
        refused += usize::from(real.is_some());
    };
    let r =
        |f: std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + '_>>| runtime.block_on(f);

    // system.view may not create (the tutorial's refusal), explained from its token and from
    // the identity named directly.
    let real_view = r(Box::pin(async {
        real(c(Some(&view)).create_volume(&create("v-view")).await)
    }));
    check(
        Who::Token(&view),
        "volume.create",
        "v-view",
        real_view.clone(),
    );
    check(
        Who::Named("view", &["system.view"], &[]),
        "volume.create",
        "v-view",
        real_view,
    );
    // A `!` deny in a custom role.
    let real_dora = r(Box::pin(async {
        real(c(Some(&dora)).create_volume(&create("v-dora")).await)
    }));
    check(Who::Token(&dora), "volume.create", "v-dora", real_dora);
    // Another's name at create needs Admin on it.
    let real_bob_create = r(Box::pin(async {
        real(c(Some(&bob)).create_volume(&create("shared")).await)
    }));
    check(Who::Token(&bob), "volume.create", "shared", real_bob_create);
    // Inspect: a collaborator (Read), a stranger, the anonymous caller, the public volume.
    for (who, token) in [
        (Who::Token(&rita), Some(rita.as_str())),
        (Who::Token(&bob), Some(bob.as_str())),
        (Who::Anonymous, None),
    ] {
        let real_inspect = r(Box::pin(async {
            real(c(token).inspect_volume(&shared).await)
        }));
        check(who, "volume.inspect", &shared, real_inspect);
    }
    let real_pub = r(Box::pin(async {
        real(c(Some(&bob)).inspect_volume(&public).await)
    }));
    check(Who::Token(&bob), "volume.inspect", "pub", real_pub);
    // Update: the group (Write) may, the Read collaborator and the public may not.
    let update = |t: &str, id: &str| {
        runtime.block_on(async {
            real(
                c(Some(t))
                    .update_volume(id, &labels, &VolumeUpdate::default())
                    .await,
            )
        })
    };
    let (real_gus, real_rita, real_bob_pub) = (
        update(&gus, &shared),
        update(&rita, &shared),
        update(&bob, &public),
    );
    check(Who::Token(&gus), "volume.update", &shared, real_gus);
    check(Who::Token(&rita), "volume.update", "shared", real_rita);
    check(Who::Token(&bob), "volume.update", &public, real_bob_pub);
    // Delete needs Admin: the group's Write is not enough.
    let real_gus_delete = r(Box::pin(async {
        real(c(Some(&gus)).delete_volume(&shared).await)
    }));
    check(Who::Token(&gus), "volume.delete", &shared, real_gus_delete);
    // Role create: system.user may not; the audit trail: only system.admin.
    let real_role = r(Box::pin(async {
        let mut role = deny.clone();
        role.name = "other".into();
        real(c(Some(&user)).create_role(&role).await)
    }));
    check(Who::Token(&user), "role.create", "", real_role);
    let query = custos_client::model::audit::AuditQuery::default();
    let real_audit_view = r(Box::pin(async {
        real(c(Some(&view)).audit_list(&query, None, 1, false).await)
    }));
    check(Who::Token(&view), "audit.list", "", real_audit_view);
    let real_audit_admin = r(Box::pin(async {
        real(c(Some(&admin)).audit_list(&query, None, 1, false).await)
    }));
    check(
        Who::Token(&admin),
        "/custos.admin.v1.Audit/List",
        "",
        real_audit_admin,
    );
    // The anonymous caller (system.guest) may create a volume.
    let real_guest = r(Box::pin(async {
        real(c(None).create_volume(&create("v-guest")).await)
    }));
    check(Who::Anonymous, "volume.create", "v-guest", real_guest);
    // Admin deletes (allowed) — last, as it changes the fixture.
    let real_admin_delete = r(Box::pin(async {
        real(c(Some(&admin)).delete_volume(&public).await)
    }));
    // Explained after the fact: the volume is gone, and a delete of a missing volume is OK.
    check(
        Who::Token(&admin),
        "volume.delete",
        &public,
        real_admin_delete,
    );
    assert_eq!(checked, 17);
    assert!(refused >= 10, "only {refused} refusals compared");

    // Explaining needs system.admin: system.view is refused, with the upstream text.
    let refused_view = runtime
        .block_on(cluster.client(1, Some(&view)).explain(&ExplainRequest {
            method: "volume.create".into(),
            user: "x".into(),
            ..ExplainRequest::default()
        }))
        .unwrap_err();
    assert_eq!(
        refused_view.to_string(),
        "PermissionDenied: Access to /custos.admin.v1.Access/Explain denied: rpc error: code = \
         PermissionDenied desc = Access denied to roles: [system.view]"
    );
    // A token is verified: a forged one is explained as the refusal a real call gets, and the
    // token itself appears in no file of the run (only its fingerprint).
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    let reply = runtime
        .block_on(cluster.client(1, Some(&admin)).explain(&ExplainRequest {
            method: "volume.inspect".into(),
            token: forged.clone(),
            ..ExplainRequest::default()
        }))
        .unwrap();
    let real_forged = r(Box::pin(async {
        real(c(Some(&forged)).inspect_volume(&shared).await)
    }));
    assert_eq!(from_reply(&reply), real_forged);
    assert!(!reply.token_fingerprint.is_empty());
    // Flush the local logs, then scan every file for the explained tokens.
    let _ = cluster.local_log_until(1, "access.log", |t| t.contains("Access/Explain"));
    for file in cluster.files() {
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for secret in [&forged, &dora, &rita] {
            assert!(
                !text.contains(secret.as_str()),
                "a token in {}",
                file.display()
            );
        }
    }
}
