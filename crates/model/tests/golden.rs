//! Data-driven golden scripts for `custos-model`, in the style of toydb's goldenscripts.
//!
//! Every `tests/testdata/*.txt` file is a script run by its own `#[test]`. A script is a list of
//! blocks; blank lines and `#` comment lines between blocks are kept verbatim:
//!
//! ```text
//! # pattern matching
//! match pattern=*enumerate* name=volumeenumerate
//! ----
//! true
//! ```
//!
//! A block is a command line (`verb flag key=value key="quoted value"`), optional input lines,
//! a `----` line, and the expected output, which runs to the next blank line (so output never
//! contains blank lines). Keys may repeat (`rule=... rule=...`); an argument the command does not
//! use is an error, so typos cannot silently weaken a case.
//!
//! `REWRITE=1 cargo test -p custos-model --test golden` rewrites every expected block from the
//! actual output (`UPDATE_EXPECT=1`, as the auth crate spells it, works too). Review the diff:
//! a changed golden is a changed behaviour.
//!
//! Commands (all scripts share one session, but each script uses its own subset):
//!
//! - rules: `match pattern=P name=N...` (`role::pattern_matches`), `deny pattern=P name=N...`
//!   (does P act as a deny for N, observed through `Role::allows` in both the api and the service
//!   slot).
//! - roles: `role name=R rule=SVCS:APIS...` defines a role in a local registry that starts with
//!   the built-ins; `allows role=R method=FULL...`; `authorize <identity> method=FULL` runs
//!   `role::authorize` against the registry.
//! - matrix: `derive` (input: full method names) prints `MethodName::from_full`; `matrix` (input:
//!   `FULL admin user view guest` rows holding the reference table) prints the role check of
//!   every built-in role; a row that disagrees with the reference fails the test.
//! - ownership: `ownership none | owner=O acl.groups=G:r,... acl.collaborators=C:w,...
//!   acl.public=r` sets the ownership under test; `check <identity>` prints `permitted` for Read,
//!   Write and Admin.
//! - apply: `create-volume`, `delete-volume`, `create-role`, `update-role`, `delete-role` build a
//!   `Command` (`<identity> req=ID [time=MS]` plus the operation's fields) and print the outcome
//!   and every change; reads `inspect`, `list`, `inspect-role`, `roles`, `remembered`, `can`,
//!   `records`; `restart` rebuilds the state from its records; `seed-volume` adds a volume record
//!   directly (for states apply cannot reach, e.g. an empty owner from an older release);
//!   `reset` starts from a fresh state; `clock auto` makes apply commands without `time=` get
//!   1000, 2000, 3000, ... instead of always 1000.
//! - volumes: the apply commands `update-volume` (`labels=k=v,k2=` with an empty value removing
//!   the key, `size= ha= shared=true sharedv4= schedule= io_profile= cos=`, and the bare word
//!   `ownership` to send an ownership, with `owner=` and `acl.*=`), `clone-volume` (`id= name=
//!   parent= labels=`), `create-snapshot` (`id= volume= name= labels=`), `restore-snapshot`
//!   (`volume= snapshot=`), `update-snapshot-schedule` (`id= names=a,b`), `attach` (`id=
//!   node=`), `detach` (`id=`), `mount`/`unmount` (`id= path=`); reads `snapshots <identity>
//!   [volume=] [labels=]` (`State::snapshots_of`) and `catalog <identity> id=`
//!   (`State::volume_catalog`); `access` (input: `Service.Method Y n ...` reference rows) runs
//!   every method for every kind of caller on a fixed fixture and fails on a row that differs.
//! - placement: the apply commands `register-node` (`id= [zone=] [rack=] [labels=] [capacity=]
//!   [host=] [sdk=] [raft=] [mgmt=] [data=] [cordoned] [registered=]`, addresses defaulting to
//!   ones derived from the id), `cordon`/`uncordon`/`drain` (`id=`), `replace-replicas` (`node=
//!   down=1,2`), and `create-volume ... replicas=a,b` (`replica_set.nodes`); reads `nodes` (zone,
//!   rack, capacity, load, free space, volumes on each node), `replicas` (each volume's replicas
//!   as `node@zone/rack`) and `place ha= size= keep= requested= exclude=` (`placement::place`
//!   over the session's nodes and loads).
//! - usage: the apply command `report-usage node=N vol=ID:USED[:READS:WRITES:RBYTES:WBYTES[:AT]]...`
//!   (missing numbers are 0; `AT` is the `reported_ms` the report carries, which apply ignores);
//!   the read `usage volume=ID` (`State::volume_usage`) or `usage node=N` (`State::node_usage`).
//!
//! - quotas: the apply commands `set-quota` (`quota-user=U | quota-group=G | quota-guest`,
//!   `[volumes=N] [bytes=N]`, an absent limit being none) and `remove-quota` (the same
//!   subject); reads `quotas` (the quotas set, then each subject's use: `State::quota_usages`)
//!   and `quota-for <identity>` (`State::effective_quota`).
//! - explain: `explain <identity> method=M [volume=V]` prints `State::explain` (`M` full or
//!   dotted, `V` an id or a name) against the apply session's state.
//!
//! `explain_agrees_with_every_decision` runs every script again, cross-checking each decision a
//! script makes against its explanation (see there).
//!
//! `<identity>` is `guest` (the anonymous caller; `groups=` may add claimed groups), `admin`
//! (root: `system.admin`, group `*`) or `user=NAME [roles=R1,R2] [groups=G1,G2]`; roles default
//! to `system.user`. Rules are written
//! `services:apis` with comma-separated patterns (`volume,node:*,!create`); an empty side is an
//! empty list. Access levels are `r`, `w`, `a`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use custos_model::audit::{AuditActor, AuditRecord, ChainVerifier, Denial};
use custos_model::identity::Identity;
use custos_model::node::{StorageNodeRecord, RACK_LABEL, ZONE_LABEL};
use custos_model::ownership::explain_access;
use custos_model::ownership::{permitted, AccessType, Acls, Ownership};
use custos_model::placement;
use custos_model::quota::{self, Quota, QuotaLimits, QuotaSubject};
use custos_model::role::{self, MethodName, Role, Rule};
use custos_model::state::VolumeCheck;
use custos_model::state::{Change, Record, RecordKey, State, VolumeFilter};
use custos_model::{
    Code, Command, NodeId, Op, Outcome, PolicyOp, Rejection, Reply, RequestId, Revocation,
    RevocationTarget, ScheduleInterval, SchedulePeriod, SchedulePolicy, SpecPolicy, StoragePolicy,
    Volume, VolumeId, VolumeSpec, VolumeUpdate, VolumeUsage,
};

#[path = "golden_support/credentials.rs"]
mod credentials;

#[test]
fn credentials() {
    run_script("credentials.txt");
}

#[test]
fn alerts() {
    run_script("alerts.txt");
}

#[test]
fn revocation() {
    run_script("revocation.txt");
}

#[test]
fn rules() {
    run_script("rules.txt");
}

#[test]
fn roles() {
    run_script("roles.txt");
}

#[test]
fn matrix() {
    run_script("matrix.txt");
}

#[test]
fn ownership() {
    run_script("ownership.txt");
}

#[test]
fn apply() {
    run_script("apply.txt");
}

#[test]
fn volumes() {
    run_script("volumes.txt");
}

#[test]
fn placement() {
    run_script("placement.txt");
}

#[test]
fn policies() {
    run_script("policies.txt");
}

#[test]
fn usage() {
    run_script("usage.txt");
}

#[test]
fn audit() {
    run_script("audit.txt");
}

#[test]
fn explain() {
    run_script("explain.txt");
}

#[test]
fn quotas() {
    run_script("quotas.txt");
}

/// Every decision of every golden script, explained: each role check (`authorize`, `can`, the
/// matrix rows), each access check (`check` at every level), each read of a volume (`inspect`,
/// `catalog`, `snapshots`), each applied command (also inside batches and in every cell of the
/// access table) is run again through `State::explain` / `role::explain` /
/// `ownership::explain_access`, whose verdict (code and message) must equal the real one. A
/// disagreement fails at once.
#[test]
fn explain_agrees_with_every_decision() {
    let scripts = [
        "rules.txt",
        "roles.txt",
        "matrix.txt",
        "ownership.txt",
        "apply.txt",
        "volumes.txt",
        "placement.txt",
        "usage.txt",
        "audit.txt",
        "explain.txt",
        "quotas.txt",
    ];
    CROSS_CHECK.with(|c| c.set(true));
    for script in scripts {
        run_script(script);
    }
    CROSS_CHECK.with(|c| c.set(false));
    let counts = CHECKED.with(|c| c.borrow().clone());
    // Every kind of decision was compared, many times: a cross-check that silently stopped
    // running fails here.
    for (kind, at_least) in [
        ("role", 100),
        ("access", 100),
        ("read", 10),
        ("apply", 100),
        ("apply-refused", 30),
        ("apply-volume", 50),
        ("access-table", 100),
    ] {
        let got = counts.get(kind).copied().unwrap_or(0);
        assert!(
            got >= at_least,
            "only {got} {kind} decisions were cross-checked (want at least {at_least}): {counts:?}"
        );
    }
}

thread_local! {
    /// Whether decisions are cross-checked against their explanation
    /// ([`explain_agrees_with_every_decision`]).
    static CROSS_CHECK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How many decisions of each kind were cross-checked.
    static CHECKED: std::cell::RefCell<BTreeMap<&'static str, usize>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

fn cross_checking() -> bool {
    CROSS_CHECK.with(|c| c.get())
}

fn counted(kind: &'static str) {
    CHECKED.with(|c| *c.borrow_mut().entry(kind).or_insert(0) += 1);
}

/// Fails the test when an explanation's verdict differs from the real one.
fn agree(
    what: &str,
    explained: &Result<(), Rejection>,
    real: &Result<(), Rejection>,
    kind: &'static str,
) {
    assert_eq!(
        explained, real,
        "{what}: the explanation's verdict differs from the real decision"
    );
    counted(kind);
}

/// The volume a command's request names, as explain takes it (`None` for an empty one: the
/// request is refused by argument validation before any volume check).
fn op_target(op: &Op) -> Option<String> {
    let t = match op {
        Op::CreateVolume { name, .. } => name.clone(),
        Op::DeleteVolume { id }
        | Op::UpdateVolume { id, .. }
        | Op::UpdateSnapshotSchedule { id, .. }
        | Op::AttachVolume { id, .. }
        | Op::DetachVolume { id }
        | Op::MountVolume { id, .. }
        | Op::UnmountVolume { id, .. } => id.to_string(),
        Op::CloneVolume { parent, .. } => parent.to_string(),
        Op::CreateSnapshot { volume, .. } | Op::RestoreSnapshot { volume, .. } => {
            volume.to_string()
        }
        _ => return None,
    };
    (!t.is_empty()).then_some(t)
}

/// A refusal explain does not cover by design (see `custos_model::explain`): a second object's
/// check, or the ownership rules of an Update sending an ownership.
fn outside_explain(op: &Op, r: &Rejection) -> bool {
    match op {
        Op::RestoreSnapshot { snapshot, .. } => {
            r.message == format!("Access denied to snapshot {snapshot}")
                || r.message == format!("Snapshot id {snapshot} not found")
        }
        Op::CloneVolume { name, .. } | Op::CreateSnapshot { name, .. } => {
            r.message == format!("Volume {name} already exists and is owned by another user")
        }
        Op::UpdateVolume { update, .. } => {
            update.ownership.is_some()
                && [
                    "Only owner or those with admin access type can update volume acls",
                    "Only the administrator can change the owner of the resource",
                ]
                .contains(&r.message.as_str())
        }
        _ => false,
    }
}

/// Cross-checks one command: its explanation on the state before apply against the outcome
/// apply gave. Authorization (the role check, then the volume check) is all explain decides:
/// - a refusal of the role check must be the real outcome, always;
/// - a refusal of the volume check must be the real outcome, unless argument validation (which
///   runs before it) refused the command first (InvalidArgument);
/// - an allow must not meet a real PermissionDenied or a "Volume id X not found" of the named
///   volume, unless the refusal is one explain does not cover ([`outside_explain`]).
fn cross_check_command(before: &State, cmd: &Command, outcome: &Outcome, kind: &'static str) {
    if matches!(cmd.op, Op::Batch { .. }) || before.remembered(&cmd.request_id).is_some() {
        return;
    }
    let target = op_target(&cmd.op);
    let e = before.explain(&cmd.identity, &cmd.op.method(), target.as_deref());
    let real: Result<(), Rejection> = match outcome {
        Outcome::Applied(_) => Ok(()),
        Outcome::Refused(r) => Err(r.clone()),
    };
    let what = format!(
        "{:?} as {:?}",
        cmd.op.method().dotted(),
        cmd.identity.username
    );
    match (&e.verdict, &real) {
        (Err(_), _) if e.role_verdict.is_err() => agree(&what, &e.verdict, &real, kind),
        (Err(_), Err(r)) if r.code == Code::InvalidArgument => counted(kind),
        (Err(_), _) => agree(&what, &e.verdict, &real, kind),
        (Ok(()), Err(r)) => {
            let not_found = target
                .as_ref()
                .is_some_and(|t| r.message == format!("Volume id {t} not found"));
            if (r.code == Code::PermissionDenied || not_found) && !outside_explain(&cmd.op, r) {
                agree(&what, &e.verdict, &real, kind);
            }
            counted(kind);
        }
        (Ok(()), Ok(())) => counted(kind),
    }
    if real.is_err() {
        counted("apply-refused");
    }
    if e.volume.is_some() {
        counted("apply-volume");
    }
}

// ---- the script format ----

/// One `command / input / ---- / expected` block.
struct Block {
    /// 1-based line number of the command line.
    line: usize,
    command: String,
    input: Vec<String>,
    expected: Vec<String>,
}

enum Item {
    /// A blank or comment line, kept as it is.
    Text(String),
    Block(Block),
}

fn parse_script(text: &str, path: &Path) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            items.push(Item::Text(line.to_string()));
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut input = Vec::new();
        loop {
            match lines.get(i) {
                Some(&"----") => {
                    i += 1;
                    break;
                }
                Some(l) if !l.trim().is_empty() => {
                    input.push(l.to_string());
                    i += 1;
                }
                _ => panic!(
                    "{}:{}: command without a `----` line",
                    path.display(),
                    start + 1
                ),
            }
        }
        let mut expected = Vec::new();
        while let Some(l) = lines.get(i) {
            if l.trim().is_empty() {
                break;
            }
            expected.push(l.to_string());
            i += 1;
        }
        items.push(Item::Block(Block {
            line: start + 1,
            command: line.to_string(),
            input,
            expected,
        }));
    }
    items
}

fn rewrite_requested() -> bool {
    ["REWRITE", "UPDATE_EXPECT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0"))
}

fn run_script(name: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "testdata", name]
        .iter()
        .collect();
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut session = Session::new();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for item in parse_script(&text, &path) {
        let block = match item {
            Item::Text(t) => {
                rewritten.push_str(&t);
                rewritten.push('\n');
                continue;
            }
            Item::Block(b) => b,
        };
        let output = session.run(&block).unwrap_or_else(|e| {
            panic!(
                "{}:{}: {e}\n  {}",
                path.display(),
                block.line,
                block.command
            )
        });
        let actual: Vec<String> = output.lines().map(|l| l.trim_end().to_string()).collect();
        assert!(
            actual.iter().all(|l| !l.is_empty()),
            "{}:{}: output contains a blank line",
            path.display(),
            block.line
        );
        if actual != block.expected {
            let mut f = format!("{}:{}: {}\n", path.display(), block.line, block.command);
            f.push_str("  expected:\n");
            for l in &block.expected {
                let _ = writeln!(f, "    {l}");
            }
            f.push_str("  actual:\n");
            for l in &actual {
                let _ = writeln!(f, "    {l}");
            }
            failures.push(f);
        }
        rewritten.push_str(&block.command);
        rewritten.push('\n');
        for l in &block.input {
            rewritten.push_str(l);
            rewritten.push('\n');
        }
        rewritten.push_str("----\n");
        for l in &actual {
            rewritten.push_str(l);
            rewritten.push('\n');
        }
    }
    if rewrite_requested() {
        if rewritten != text {
            fs::write(&path, rewritten)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        return;
    }
    assert!(
        failures.is_empty(),
        "{} block(s) differ from the golden output (REWRITE=1 regenerates, then review the diff):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- command arguments ----

/// The words of a command line: `verb flag key=value key="quoted value"`.
struct Args {
    verb: String,
    /// (key, value for `key=value`, used by the command).
    words: Vec<(String, Option<String>, bool)>,
}

impl Args {
    fn parse(line: &str) -> Result<Args, String> {
        let mut tokens = Vec::new();
        let mut current = String::new();
        let mut in_token = false;
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    in_token = true;
                }
                c if c.is_whitespace() && !quoted => {
                    if in_token {
                        tokens.push(std::mem::take(&mut current));
                        in_token = false;
                    }
                }
                c => {
                    current.push(c);
                    in_token = true;
                }
            }
        }
        if quoted {
            return Err("unbalanced quote".into());
        }
        if in_token {
            tokens.push(current);
        }
        let mut tokens = tokens.into_iter();
        let verb = tokens.next().ok_or("empty command")?;
        let words = tokens
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string()), false),
                None => (t, None, false),
            })
            .collect();
        Ok(Args { verb, words })
    }

    /// The next unused value of `key`.
    fn take(&mut self, key: &str) -> Option<String> {
        let w = self
            .words
            .iter_mut()
            .find(|(k, v, used)| k == key && v.is_some() && !used)?;
        w.2 = true;
        w.1.clone()
    }

    fn take_all(&mut self, key: &str) -> Vec<String> {
        std::iter::from_fn(|| self.take(key)).collect()
    }

    fn required(&mut self, key: &str) -> Result<String, String> {
        self.take(key).ok_or_else(|| format!("missing {key}="))
    }

    /// A bare word.
    fn flag(&mut self, key: &str) -> bool {
        match self
            .words
            .iter_mut()
            .find(|(k, v, used)| k == key && v.is_none() && !used)
        {
            Some(w) => {
                w.2 = true;
                true
            }
            None => false,
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("bad value {key}={v}")),
        }
    }

    fn finish(&self) -> Result<(), String> {
        let unused: Vec<String> = self
            .words
            .iter()
            .filter(|w| !w.2)
            .map(|(k, v, _)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(format!("unused arguments: {}", unused.join(" ")))
        }
    }
}

/// `a,b,c`; the empty string is the empty list.
fn list(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    let (services, apis) = s
        .split_once(':')
        .ok_or_else(|| format!("rule {s:?} needs services:apis"))?;
    Ok(Rule {
        services: list(services),
        apis: list(apis),
    })
}

fn parse_access(s: &str) -> Result<AccessType, String> {
    match s {
        "r" | "read" => Ok(AccessType::Read),
        "w" | "write" => Ok(AccessType::Write),
        "a" | "admin" => Ok(AccessType::Admin),
        _ => Err(format!("bad access type {s:?}")),
    }
}

fn parse_value<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("bad value {key}={v}"))
}

/// `labels=k=v,k2=v2`; `k=` is a key with an empty value.
fn parse_labels(args: &mut Args) -> Result<BTreeMap<String, String>, String> {
    list(&args.take("labels").unwrap_or_default())
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("label {kv:?} needs k=v"))
        })
        .collect()
}

fn parse_acl_map(s: &str) -> Result<BTreeMap<String, AccessType>, String> {
    list(s)
        .iter()
        .map(|e| {
            let (who, level) = e
                .split_once(':')
                .ok_or_else(|| format!("ACL {e:?} needs who:level"))?;
            Ok((who.to_string(), parse_access(level)?))
        })
        .collect()
}

/// `acl.groups=`, `acl.collaborators=`, `acl.public=`.
fn parse_acls(args: &mut Args) -> Result<Acls, String> {
    Ok(Acls {
        groups: parse_acl_map(&args.take("acl.groups").unwrap_or_default())?,
        collaborators: parse_acl_map(&args.take("acl.collaborators").unwrap_or_default())?,
        public: args
            .take("acl.public")
            .map(|p| parse_access(&p))
            .transpose()?,
    })
}

/// `guest [groups=..]`, `admin` (root: system.admin, group `*`) or `user=NAME [roles=..]
/// [groups=..]`.
fn parse_identity(args: &mut Args) -> Result<Identity, String> {
    let guest = args.flag("guest");
    let admin = args.flag("admin");
    let user = args.take("user");
    let mut who = match (guest, admin, user) {
        (true, false, None) => Identity::guest(),
        (false, true, None) => root(),
        (false, false, Some(user)) => Identity {
            username: user.clone(),
            subject: user.clone(),
            name: user.clone(),
            email: format!("{user}@example.com"),
            issuer: "golden".into(),
            roles: vec![role::USER_ROLE.to_string()],
            groups: Vec::new(),
            guest: false,
            fingerprint: String::new(),
            token_id: String::new(),
            issued_at: 0,
        },
        _ => return Err("need exactly one of `guest`, `admin` and user=NAME".into()),
    };
    if let Some(roles) = args.take("roles") {
        who.roles = list(&roles);
    }
    if let Some(groups) = args.take("groups") {
        who.groups = list(&groups);
    }
    // The token a user's identity came from: its `jti`, `iat` and fingerprint.
    if let Some(jti) = args.take("jti") {
        who.token_id = jti;
    }
    who.issued_at = args.parsed("iat", who.issued_at)?;
    if let Some(fp) = args.take("fp") {
        who.fingerprint = fp;
    }
    Ok(who)
}

// ---- output formats ----

fn fmt_access(a: AccessType) -> &'static str {
    match a {
        AccessType::Read => "r",
        AccessType::Write => "w",
        AccessType::Admin => "a",
    }
}

fn fmt_acl_map(m: &BTreeMap<String, AccessType>) -> String {
    let entries: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}:{}", fmt_access(*v)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

fn fmt_ownership(o: Option<&Ownership>) -> String {
    let Some(o) = o else {
        return "ownership=none".into();
    };
    let mut s = format!("owner={:?}", o.owner);
    if !o.acls.groups.is_empty() {
        let _ = write!(s, " groups={}", fmt_acl_map(&o.acls.groups));
    }
    if !o.acls.collaborators.is_empty() {
        let _ = write!(s, " collaborators={}", fmt_acl_map(&o.acls.collaborators));
    }
    if let Some(p) = o.acls.public {
        let _ = write!(s, " public={}", fmt_access(p));
    }
    s
}

fn fmt_rules(rules: &[Rule]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|r| format!("{}:{}", r.services.join(","), r.apis.join(",")))
        .collect();
    rules.join("; ")
}

fn fmt_role(r: &Role) -> String {
    format!("{} = {}", r.name, fmt_rules(&r.rules))
}

fn fmt_volume(v: &Volume) -> String {
    let mut s = format!(
        "name={} size={} ha={}",
        v.name, v.spec.size, v.spec.ha_level
    );
    for (set, word) in [
        (v.spec.shared, "shared"),
        (v.spec.sharedv4, "sharedv4"),
        (v.spec.encrypted, "encrypted"),
    ] {
        if set {
            let _ = write!(s, " {word}");
        }
    }
    if v.spec.format != 0 {
        let _ = write!(s, " format={}", v.spec.format);
    }
    if v.spec.io_profile != 0 {
        let _ = write!(s, " io_profile={}", v.spec.io_profile);
    }
    if v.spec.cos != 0 {
        let _ = write!(s, " cos={}", v.spec.cos);
    }
    if !v.spec.snapshot_schedule.is_empty() {
        let _ = write!(s, " schedule={:?}", v.spec.snapshot_schedule);
    }
    if !v.spec.storage_policy.is_empty() {
        let _ = write!(s, " policy={}", v.spec.storage_policy);
    }
    if !v.labels.is_empty() {
        let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(s, " labels={{{}}}", labels.join(","));
    }
    let _ = write!(s, " {}", fmt_ownership(v.ownership.as_ref()));
    if v.snapshot {
        s.push_str(" snapshot");
    }
    if let Some(p) = &v.parent {
        let _ = write!(s, " parent={p}");
    }
    if let Some(r) = &v.restored_from {
        let _ = write!(s, " restored_from={r}");
    }
    if let Some(node) = &v.attached_on {
        let _ = write!(s, " attached_on={node} device={}", v.device_path);
    } else if !v.device_path.is_empty() {
        let _ = write!(s, " device={} (detached!)", v.device_path);
    }
    if !v.mount_paths.is_empty() {
        let paths: Vec<&str> = v.mount_paths.iter().map(String::as_str).collect();
        let _ = write!(s, " mounts={{{}}}", paths.join(","));
    }
    if !v.replicas.is_empty() {
        let _ = write!(s, " replicas={}", fmt_ids(&v.replicas));
    }
    let _ = write!(s, " created={}", v.created_ms);
    if v.updated_ms != v.created_ms {
        let _ = write!(s, " updated={}", v.updated_ms);
    }
    s
}

/// `[1,2,3]`.
fn fmt_ids(ids: &[NodeId]) -> String {
    let ids: Vec<String> = ids.iter().map(|n| n.to_string()).collect();
    format!("[{}]", ids.join(","))
}

fn fmt_node(n: &StorageNodeRecord) -> String {
    let mut s = format!(
        "host={} sdk={} raft={} mgmt={} data={}",
        n.hostname, n.sdk_addr, n.raft_addr, n.mgmt_ip, n.data_ip
    );
    if let Some(z) = n.labels.get(ZONE_LABEL) {
        let _ = write!(s, " zone={z}");
    }
    if let Some(r) = n.labels.get(RACK_LABEL) {
        let _ = write!(s, " rack={r}");
    }
    let other: Vec<String> = n
        .labels
        .iter()
        .filter(|(k, _)| *k != ZONE_LABEL && *k != RACK_LABEL)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !other.is_empty() {
        let _ = write!(s, " labels={{{}}}", other.join(","));
    }
    let _ = write!(s, " capacity={}", n.capacity_bytes);
    if n.cordoned {
        s.push_str(" cordoned");
    }
    let _ = write!(s, " registered={}", n.registered_ms);
    if n.incarnation != 0 {
        let _ = write!(s, " incarnation={}", n.incarnation);
    }
    s
}

fn fmt_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Applied(Reply::Empty) => "applied".into(),
        Outcome::Applied(Reply::VolumeCreated { id }) => format!("applied: volume {id}"),
        Outcome::Applied(Reply::VolumeCloned { id }) => format!("applied: clone {id}"),
        Outcome::Applied(Reply::SnapshotCreated { id }) => format!("applied: snapshot {id}"),
        Outcome::Applied(Reply::Attached { device_path }) => {
            format!("applied: attached at {device_path}")
        }
        Outcome::Applied(Reply::Role(r)) => format!("applied: role {}", fmt_role(r)),
        Outcome::Applied(Reply::Drained { detached }) => {
            let ids: Vec<String> = detached.iter().map(|v| v.to_string()).collect();
            format!("applied: drained [{}]", ids.join(","))
        }
        Outcome::Applied(Reply::ReplicasReplaced { moved, stuck }) => {
            let mut s = "applied: moved [".to_string();
            let moves: Vec<String> = moved
                .iter()
                .map(|m| format!("{} {}->{}", m.volume, m.from, m.to))
                .collect();
            s.push_str(&moves.join(", "));
            s.push(']');
            for st in stuck {
                let _ = write!(s, "; stuck {} on {}: {}", st.volume, st.node, st.reason);
            }
            s
        }
        Outcome::Applied(Reply::UsageRecorded { ignored }) => {
            let ids: Vec<String> = ignored.iter().map(|v| v.to_string()).collect();
            format!("applied: usage recorded, ignored [{}]", ids.join(","))
        }
        Outcome::Applied(Reply::AuditTruncated { first, through }) => {
            format!("applied: audit {first}..={through} truncated")
        }
        Outcome::Applied(Reply::Batch { outcomes }) => {
            let mut s = format!("applied: batch of {}", outcomes.len());
            for (i, o) in outcomes.iter().enumerate() {
                let _ = write!(s, "\n  {}: {}", i + 1, fmt_outcome(o));
            }
            s
        }
        Outcome::Applied(Reply::TokenRevoked { revocation }) => {
            format!("applied: revoked {}", fmt_revocation(revocation))
        }
        Outcome::Applied(Reply::QuotaSet { quota }) => {
            format!("applied: quota {}", fmt_quota(quota))
        }
        Outcome::Applied(reply) => credentials::fmt_reply(reply)
            .unwrap_or_else(|| panic!("no golden format for the reply {reply:?}")),
        Outcome::Refused(r) => format!("refused: {r}"),
    }
}

fn fmt_quota(q: &Quota) -> String {
    format!(
        "of {}: {} by={} at={}",
        q.subject, q.limits, q.set_by, q.set_ms
    )
}

/// `quota-user=NAME`, `quota-group=NAME` or the bare word `quota-guest`.
fn parse_quota_subject(args: &mut Args) -> Result<QuotaSubject, String> {
    match (
        args.take("quota-user"),
        args.take("quota-group"),
        args.flag("quota-guest"),
    ) {
        (Some(u), None, false) => Ok(QuotaSubject::User(u)),
        (None, Some(g), false) => Ok(QuotaSubject::Group(g)),
        (None, None, true) => Ok(QuotaSubject::Guest),
        _ => Err("need exactly one of quota-user=, quota-group= and quota-guest".into()),
    }
}

fn fmt_revocation(r: &Revocation) -> String {
    let mut s = format!("{}={}", r.target.kind(), r.target.value());
    if !r.target.issuer().is_empty() {
        let _ = write!(s, " issuer={}", r.target.issuer());
    }
    if r.issued_before != 0 {
        let _ = write!(s, " issued-before={}", r.issued_before);
    }
    let _ = write!(
        s,
        " expires={} by={} at={}",
        r.expires_at, r.revoked_by, r.revoked_ms
    );
    s
}

fn fmt_key(k: &RecordKey) -> String {
    match k {
        RecordKey::Audit(seq) => format!("a/{seq}"),
        RecordKey::Alert(id) => format!("e/{id}"),
        _ => String::from_utf8(k.encode()).expect("keys of the scripts are UTF-8"),
    }
}

/// An audit record without its hashes (`audit` checks the chain instead).
fn fmt_audit(r: &AuditRecord) -> String {
    let mut s = format!(
        "{} {} {:?} method={} code={}",
        r.seq,
        r.level.name(),
        r.message,
        r.method,
        r.code
    );
    if !r.actor.username.is_empty() {
        let _ = write!(s, " user={}", r.actor.username);
    }
    let _ = write!(s, " roles=[{}]", r.actor.roles.join(","));
    if !r.objects.is_empty() {
        let _ = write!(s, " objects=[{}]", r.objects.join(","));
    }
    if !r.reason.is_empty() {
        let _ = write!(s, " reason={:?}", r.reason);
    }
    if r.count != 1 {
        let _ = write!(s, " count={}", r.count);
    }
    if r.edge {
        s.push_str(" edge");
    }
    let _ = write!(s, " req={} at={}", r.request_id, r.time_ms);
    s
}

fn fmt_record(r: &Record) -> String {
    let key = fmt_key(&r.key());
    match r {
        Record::Volume(v) => format!("{key}: {}", fmt_volume(v)),
        Record::Role(role) => format!("{key}: {}", fmt_rules(&role.rules)),
        Record::Request(q) => format!("{key}: seq={} {}", q.seq, fmt_outcome(&q.outcome)),
        Record::Node(n) => format!("{key}: {}", fmt_node(n)),
        Record::Usage { usage, .. } => format!("{key}: {}", fmt_usage(usage)),
        Record::Audit(a) => format!("audit {}", fmt_audit(a)),
        Record::AuditHead(h) => format!("{key}: next={} first={}", h.next_seq, h.first_seq),
        Record::Retired { retired_ms, .. } => format!("{key}: retired={retired_ms}"),
        Record::Revocation(r) => format!("{key}: {}", fmt_revocation(r)),
        Record::Quota(q) => format!("{key}: {}", fmt_quota(q)),
        Record::SchedulePolicy(p) => format!("{key}: {}", fmt_schedule_policy(p)),
        Record::StoragePolicy(p) => format!("{key}: {p}"),
        Record::DefaultStoragePolicy { name } => format!("{key}: default={name}"),
        other => credentials::fmt_record(&key, other)
            .unwrap_or_else(|| panic!("no golden format for the record {other:?}")),
    }
}

fn fmt_schedule_policy(p: &SchedulePolicy) -> String {
    let s: Vec<String> = p.schedules.iter().map(|i| i.to_string()).collect();
    s.join(" ")
}

/// `schedules=daily@12:30:2,weekly@0/12:30:1,monthly@1/0:0:3,periodic@60:5,none:1,...`: each
/// interval's period then `:RETAIN` (hours and minutes as `H:M`).
fn parse_schedules(s: &str) -> Result<Vec<ScheduleInterval>, String> {
    let mut out = Vec::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        let (period, retain) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("schedule {item:?}: want PERIOD:RETAIN"))?;
        let retain: i64 = retain.parse().map_err(|e| format!("{item}: {e}"))?;
        let num = |v: &str| v.parse::<i64>().map_err(|e| format!("{item}: {e}"));
        let hm = |v: &str| -> Result<(i32, i32), String> {
            let (h, m) = v
                .split_once(':')
                .ok_or_else(|| format!("{item}: want H:M"))?;
            Ok((num(h)? as i32, num(m)? as i32))
        };
        let period = if period == "none" {
            None
        } else if let Some(v) = period.strip_prefix("daily@") {
            let (hour, minute) = hm(v)?;
            Some(SchedulePeriod::Daily { hour, minute })
        } else if let Some(v) = period.strip_prefix("weekly@") {
            let (day, t) = v
                .split_once('/')
                .ok_or_else(|| format!("{item}: want D/H:M"))?;
            let (hour, minute) = hm(t)?;
            Some(SchedulePeriod::Weekly {
                day: num(day)? as i32,
                hour,
                minute,
            })
        } else if let Some(v) = period.strip_prefix("monthly@") {
            let (day, t) = v
                .split_once('/')
                .ok_or_else(|| format!("{item}: want D/H:M"))?;
            let (hour, minute) = hm(t)?;
            Some(SchedulePeriod::Monthly {
                day: num(day)? as i32,
                hour,
                minute,
            })
        } else if let Some(v) = period.strip_prefix("periodic@") {
            Some(SchedulePeriod::Periodic { seconds: num(v)? })
        } else {
            return Err(format!("schedule {item:?}: unknown period"));
        };
        out.push(ScheduleInterval { retain, period });
    }
    Ok(out)
}

fn parse_policy_op(args: &mut Args, key: &str) -> Result<PolicyOp, String> {
    match args.take(key).as_deref() {
        None | Some("eq") => Ok(PolicyOp::Equal),
        Some("min") => Ok(PolicyOp::Minimum),
        Some("max") => Ok(PolicyOp::Maximum),
        Some(other) => Err(format!("{key}={other}: want eq, min or max")),
    }
}

/// `name= [size=N size-op=eq|min|max] [ha=N ha-op=..] [cos=N] [io_profile=N]
/// [shared=true|false] [sharedv4=..] [encrypted=..] [schedule=S] [force] [allow-update]`, and
/// the bare word `ownership` to send one (`owner=`, `acl.*=`).
fn parse_storage_policy(args: &mut Args) -> Result<StoragePolicy, String> {
    let bool_opt = |args: &mut Args, key: &str| -> Result<Option<bool>, String> {
        args.take(key).map(|v| parse_value(key, &v)).transpose()
    };
    let spec = SpecPolicy {
        size: args
            .take("size")
            .map(|v| parse_value("size", &v))
            .transpose()?,
        size_op: parse_policy_op(args, "size-op")?,
        ha_level: args.take("ha").map(|v| parse_value("ha", &v)).transpose()?,
        ha_level_op: parse_policy_op(args, "ha-op")?,
        cos: args
            .take("cos")
            .map(|v| parse_value("cos", &v))
            .transpose()?,
        io_profile: args
            .take("io_profile")
            .map(|v| parse_value("io_profile", &v))
            .transpose()?,
        shared: bool_opt(args, "shared")?,
        sharedv4: bool_opt(args, "sharedv4")?,
        encrypted: bool_opt(args, "encrypted")?,
        snapshot_schedule: args.take("schedule"),
        ..SpecPolicy::default()
    };
    let ownership = if args.flag("ownership") {
        Some(Ownership {
            owner: args.take("owner").unwrap_or_default(),
            acls: parse_acls(args)?,
        })
    } else {
        let acls = parse_acls(args)?;
        (acls != Acls::default()).then(|| Ownership {
            owner: String::new(),
            acls,
        })
    };
    Ok(StoragePolicy {
        name: args.take("name").unwrap_or_default(),
        spec,
        force: args.flag("force"),
        allow_update: args.flag("allow-update"),
        ownership,
    })
}

/// `record-denials`'s `denial=MESSAGE;METHOD;CODE;USER;ROLES;COUNT` (ROLES comma-separated).
fn parse_denial(s: &str) -> Result<Denial, String> {
    let parts: Vec<&str> = s.split(';').collect();
    let [message, method, code, user, roles, count] = parts[..] else {
        return Err(format!(
            "denial={s}: want MESSAGE;METHOD;CODE;USER;ROLES;COUNT"
        ));
    };
    Ok(Denial {
        message: message.to_string(),
        actor: AuditActor {
            username: user.to_string(),
            roles: list(roles),
            ..AuditActor::default()
        },
        method: method.to_string(),
        objects: Vec::new(),
        code: code.to_string(),
        request_id: format!("edge-{user}"),
        fingerprint: String::new(),
        count: parse_value("count", count)?,
    })
}

fn fmt_usage(u: &VolumeUsage) -> String {
    format!(
        "used={} reads={} writes={} read_bytes={} write_bytes={} at={}",
        u.bytes_used, u.reads, u.writes, u.read_bytes, u.write_bytes, u.reported_ms
    )
}

/// `report-usage`'s `vol=ID:USED[:READS:WRITES:RBYTES:WBYTES[:AT]]`.
fn parse_usage(s: &str) -> Result<(VolumeId, VolumeUsage), String> {
    let mut parts = s.split(':');
    let id = VolumeId(parts.next().unwrap_or_default().to_string());
    let nums: Vec<u64> = parts
        .map(|n| parse_value("vol", n))
        .collect::<Result<_, _>>()?;
    if nums.is_empty() || nums.len() > 6 {
        return Err(format!(
            "vol={s}: want ID:USED[:READS:WRITES:RBYTES:WBYTES[:AT]]"
        ));
    }
    let n = |i: usize| nums.get(i).copied().unwrap_or(0);
    Ok((
        id,
        VolumeUsage {
            bytes_used: n(0),
            reads: n(1),
            writes: n(2),
            read_bytes: n(3),
            write_bytes: n(4),
            reported_ms: n(5),
        },
    ))
}

fn fmt_change(c: &Change) -> String {
    match c {
        Change::Put(r) => format!("put {}", fmt_record(r)),
        Change::Delete(k) => format!("delete {}", fmt_key(k)),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Y"
    } else {
        "n"
    }
}

// ---- the session ----

/// The methods `explain` resolves dotted names among (the server uses its served methods).
const KNOWN_METHODS: [&str; 8] = [
    "/openstorage.api.OpenStorageVolume/Create",
    "/openstorage.api.OpenStorageVolume/Inspect",
    "/openstorage.api.OpenStorageVolume/Update",
    "/openstorage.api.OpenStorageVolume/Delete",
    "/openstorage.api.OpenStorageMountAttach/Attach",
    "/openstorage.api.OpenStorageMountAttach/Detach",
    "/openstorage.api.OpenStorageRole/Create",
    "/custos.admin.v1.Audit/List",
];

/// The full name of `Volume.Inspect`.
const INSPECT: &str = "/openstorage.api.OpenStorageVolume/Inspect";

struct Session {
    /// roles.txt: the built-ins plus roles defined with `role`.
    registry: BTreeMap<String, Role>,
    /// ownership.txt: the ownership `check` runs against.
    ownership: Option<Ownership>,
    /// apply.txt: the replicated state.
    state: State,
    /// After `clock auto`: the default `time=` of the next apply command (then +1000 each).
    clock: Option<u64>,
    /// The audit records apply wrote, as a store keeps them (the state holds only the head).
    trail: BTreeMap<u64, AuditRecord>,
}

/// The verbs that build a command and apply it (also the lines a `batch` block holds).
const APPLY_VERBS: [&str; 34] = [
    "create-volume",
    "delete-volume",
    "update-volume",
    "clone-volume",
    "create-snapshot",
    "restore-snapshot",
    "update-snapshot-schedule",
    "attach",
    "detach",
    "mount",
    "unmount",
    "create-role",
    "update-role",
    "delete-role",
    "register-node",
    "retire-node",
    "cordon",
    "uncordon",
    "drain",
    "replace-replicas",
    "report-usage",
    "record-denials",
    "truncate-audit",
    "revoke",
    "set-quota",
    "remove-quota",
    "create-schedule-policy",
    "update-schedule-policy",
    "delete-schedule-policy",
    "create-storage-policy",
    "update-storage-policy",
    "delete-storage-policy",
    "set-default-policy",
    "release-policy",
];

impl Session {
    fn new() -> Session {
        Session {
            registry: role::builtin_roles()
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect(),
            ownership: None,
            state: State::new(),
            clock: None,
            trail: BTreeMap::new(),
        }
    }

    fn run(&mut self, block: &Block) -> Result<String, String> {
        let mut args = Args::parse(&block.command)?;
        if !block.input.is_empty()
            && !matches!(args.verb.as_str(), "matrix" | "derive" | "access" | "batch")
        {
            return Err(format!("{} takes no input lines", args.verb));
        }
        let out = match args.verb.clone().as_str() {
            "match" => self.match_cmd(&mut args)?,
            "deny" => self.deny_cmd(&mut args)?,
            "role" => self.role_cmd(&mut args)?,
            "allows" => self.allows_cmd(&mut args)?,
            "authorize" => self.authorize_cmd(&mut args)?,
            "derive" => self.derive_cmd(&block.input)?,
            "matrix" => self.matrix_cmd(&block.input)?,
            "ownership" => self.ownership_cmd(&mut args)?,
            "check" => self.check_cmd(&mut args)?,
            verb if APPLY_VERBS.contains(&verb) || credentials::VERBS.contains(&verb) => {
                self.apply_cmd(&mut args)?
            }
            "batch" => self.batch_cmd(&mut args, &block.input)?,
            "audit" => self.audit_cmd(),
            "usage" => self.usage_cmd(&mut args)?,
            "nodes" => self.nodes_cmd(),
            "replicas" => self.replicas_cmd(),
            "place" => self.place_cmd(&mut args)?,
            "inspect" => self.inspect_cmd(&mut args)?,
            "explain" => {
                let who = parse_identity(&mut args)?;
                let given = args.required("method")?;
                let method = MethodName::resolve(&given, KNOWN_METHODS)
                    .ok_or_else(|| format!("unknown method {given:?}"))?;
                let volume = args
                    .take("volume")
                    .map(|v| self.state.volume_target(&method, &v));
                self.state
                    .explain(&who, &method, volume.as_deref())
                    .lines()
                    .join("\n")
            }
            "snapshots" => self.snapshots_cmd(&mut args)?,
            "catalog" => {
                let who = parse_identity(&mut args)?;
                let id = VolumeId(args.take("id").unwrap_or_default());
                if cross_checking() && !id.as_str().is_empty() {
                    let e = self
                        .state
                        .explain_volume(&who, VolumeCheck::Read, id.as_str());
                    let real = self.state.volume_catalog(&who, &id).map(drop);
                    agree("catalog", &e.verdict, &real, "read");
                }
                match self.state.volume_catalog(&who, &id) {
                    Ok(v) => format!("ok: {}", v.id),
                    Err(e) => format!("error: {e}"),
                }
            }
            "access" => access_table(&block.input)?,
            "list" => self.list_cmd(&mut args)?,
            "inspect-role" => {
                let name = args.required("name")?;
                match self.state.role(&name) {
                    Some(r) => fmt_role(r),
                    None => "none".into(),
                }
            }
            "roles" => self.state.role_names().collect::<Vec<_>>().join(" "),
            "remembered" => {
                let id = RequestId(args.required("req")?);
                match self.state.remembered(&id) {
                    Some(o) => fmt_outcome(o),
                    None => "none".into(),
                }
            }
            "can" => {
                let who = parse_identity(&mut args)?;
                let method = MethodName::from_full(&args.required("method")?);
                if cross_checking() {
                    let e = self.state.explain(&who, &method, None);
                    agree(
                        "can",
                        &e.verdict,
                        &self.state.authorize(&who, &method),
                        "role",
                    );
                }
                match self.state.authorize(&who, &method) {
                    Ok(()) => "ok".into(),
                    Err(e) => format!("{e}"),
                }
            }
            "records" => {
                let lines: Vec<String> = self.state.records().map(|r| fmt_record(&r)).collect();
                if lines.is_empty() {
                    "(none)".into()
                } else {
                    lines.join("\n")
                }
            }
            "restart" => {
                let restored = State::from_records(self.state.records());
                let same = restored == self.state;
                self.state = restored;
                if same {
                    "ok: the restored state equals the running one"
                } else {
                    "DIFFERS"
                }
                .into()
            }
            "seed-volume" => self.seed_volume_cmd(&mut args)?,
            "seed-schedule-policies" => {
                // Schedule policies as records, without apply (no audit, no request, no
                // clock tick): for scripts that need policies to exist but test other things.
                let names = list(&args.required("names")?);
                let added: Vec<Record> = names
                    .iter()
                    .map(|n| {
                        Record::SchedulePolicy(SchedulePolicy {
                            name: n.clone(),
                            schedules: vec![ScheduleInterval {
                                retain: 1,
                                period: Some(SchedulePeriod::Periodic { seconds: 3600 }),
                            }],
                        })
                    })
                    .collect();
                let out: Vec<String> = added.iter().map(fmt_record).collect();
                let records: Vec<Record> = self.state.records().chain(added).collect();
                self.state = State::from_records(records);
                out.join("\n")
            }
            verb @ ("credentials" | "inspect-credential" | "alerts") => {
                credentials::read(verb, &self.state, &mut args).expect("a read of the module")?
            }
            "quotas" => self.quotas_cmd(),
            "schedule-policies" => {
                let lines: Vec<String> = self
                    .state
                    .schedule_policies()
                    .map(|p| format!("{}: {}", p.name, fmt_schedule_policy(p)))
                    .collect();
                if lines.is_empty() {
                    "(none)".into()
                } else {
                    lines.join("\n")
                }
            }
            "storage-policies" => {
                let who = parse_identity(&mut args)?;
                let lines: Vec<String> = self
                    .state
                    .readable_storage_policies(&who)
                    .map(|p| format!("{}: {p}", p.name))
                    .collect();
                if lines.is_empty() {
                    "(none)".into()
                } else {
                    lines.join("\n")
                }
            }
            "storage-policy" => {
                let who = parse_identity(&mut args)?;
                let name = args.take("name").unwrap_or_default();
                match self.state.storage_policy(&who, &name) {
                    Ok(p) => format!("{}: {p}", p.name),
                    Err(r) => format!("refused: {r}"),
                }
            }
            "default-policy" => match self.state.default_storage_policy() {
                Some(p) => format!("{}: {p}", p.name),
                None => "(none)".into(),
            },
            "quota-for" => {
                let who = parse_identity(&mut args)?;
                let e = self.state.effective_quota(&who);
                let show = |what: &str, l: &Option<quota::Limit>| match l {
                    Some(l) => format!("{what}: at most {} (quota of {})", l.max, l.from),
                    None => format!("{what}: no limit"),
                };
                format!(
                    "{}\n{}",
                    show("volumes", &e.volumes),
                    show("bytes", &e.bytes)
                )
            }
            "clock" => {
                if !args.flag("auto") {
                    return Err("clock takes `auto`".into());
                }
                self.clock = Some(self.clock.unwrap_or(1000));
                "ok: apply commands without time= get 1000, 2000, 3000, ...".into()
            }
            "reset" => {
                self.state = State::new();
                self.trail.clear();
                "ok".into()
            }
            other => return Err(format!("unknown command {other:?}")),
        };
        args.finish()?;
        Ok(out)
    }

    fn names(args: &mut Args) -> Result<Vec<String>, String> {
        let names = args.take_all("name");
        if names.is_empty() {
            return Err("missing name=".into());
        }
        Ok(names)
    }

    /// One bare result for one name, `name: result` lines for several.
    fn per_name(names: &[String], f: impl Fn(&str) -> String) -> String {
        if let [name] = names {
            return f(name);
        }
        let lines: Vec<String> = names.iter().map(|n| format!("{n:?}: {}", f(n))).collect();
        lines.join("\n")
    }

    fn match_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let pattern = args.required("pattern")?;
        let names = Self::names(args)?;
        Ok(Self::per_name(&names, |n| {
            role::pattern_matches(&pattern, n).to_string()
        }))
    }

    /// Whether `pattern` denies `name`, seen through a role in both slots: as an api entry next
    /// to `*` (`*:P,*`) and as a service entry next to `*` (`P,*:*`). A non-deny pattern never
    /// denies, and a deny that does not match leaves the `*` allow in force.
    fn deny_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let pattern = args.required("pattern")?;
        let names = Self::names(args)?;
        Ok(Self::per_name(&names, |n| {
            let star = "*".to_string();
            let in_api = Role {
                name: "probe".into(),
                rules: vec![Rule {
                    services: vec![star.clone()],
                    apis: vec![pattern.clone(), star.clone()],
                }],
            };
            let in_service = Role {
                name: "probe".into(),
                rules: vec![Rule {
                    services: vec![pattern.clone(), star.clone()],
                    apis: vec![star.clone()],
                }],
            };
            let method = |service: &str, api: &str| MethodName {
                full: format!("/{service}/{api}"),
                service: service.to_string(),
                api: api.to_string(),
            };
            let api_denied = !in_api.allows(&method("svc", n));
            let service_denied = !in_service.allows(&method(n, "api"));
            if api_denied == service_denied {
                api_denied.to_string()
            } else {
                format!("api slot {api_denied}, service slot {service_denied}")
            }
        }))
    }

    fn role_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let name = args.required("name")?;
        let rules = args
            .take_all("rule")
            .iter()
            .map(|r| parse_rule(r))
            .collect::<Result<_, _>>()?;
        let role = Role {
            name: name.clone(),
            rules,
        };
        let out = fmt_role(&role);
        self.registry.insert(name, role);
        Ok(out)
    }

    fn allows_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let name = args.required("role")?;
        let role = self
            .registry
            .get(&name)
            .ok_or_else(|| format!("no role {name} defined"))?;
        let methods = args.take_all("method");
        if methods.is_empty() {
            return Err("missing method=".into());
        }
        let lines: Vec<String> = methods
            .iter()
            .map(|m| {
                let method = MethodName::from_full(m);
                let verdict = if role.allows(&method) {
                    "allowed"
                } else {
                    "denied"
                };
                format!("{}: {verdict}", method.dotted())
            })
            .collect();
        Ok(lines.join("\n"))
    }

    fn authorize_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let who = parse_identity(args)?;
        let method = MethodName::from_full(&args.required("method")?);
        if cross_checking() {
            let (_, explained) = role::explain(&who, &method, |r| self.registry.get(r));
            let real = role::authorize(&who, &method, |r| self.registry.get(r));
            agree("authorize", &explained, &real, "role");
        }
        Ok(
            match role::authorize(&who, &method, |r| self.registry.get(r)) {
                Ok(()) => "ok".into(),
                Err(e) => e.to_string(),
            },
        )
    }

    fn derive_cmd(&mut self, input: &[String]) -> Result<String, String> {
        let lines: Vec<String> = input
            .iter()
            .map(|full| {
                let m = MethodName::from_full(full.trim());
                format!("{}: service={} api={}", m.full, m.service, m.api)
            })
            .collect();
        Ok(lines.join("\n"))
    }

    /// The role check of the four built-ins, through `State::authorize` of a fresh state: a user
    /// holding only that role, and the anonymous caller for `system.guest`.
    fn matrix_cmd(&mut self, input: &[String]) -> Result<String, String> {
        let state = State::new();
        let holder = |role: &str| Identity {
            username: "u".into(),
            subject: "u".into(),
            name: "u".into(),
            email: "u@example.com".into(),
            issuer: "golden".into(),
            roles: vec![role.to_string()],
            groups: Vec::new(),
            guest: false,
            fingerprint: String::new(),
            token_id: String::new(),
            issued_at: 0,
        };
        let callers = [
            holder(role::ADMIN_ROLE),
            holder(role::USER_ROLE),
            holder(role::VIEW_ROLE),
            Identity::guest(),
        ];
        let rows: Vec<(String, Vec<String>)> = input
            .iter()
            .map(|l| {
                let mut words = l.split_whitespace();
                let method = words.next().unwrap_or_default().to_string();
                (method, words.map(str::to_string).collect())
            })
            .collect();
        let width = rows.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
        let mut out = format!("{:<width$}  admin user view guest", "method");
        let mut mismatches = 0;
        for (full, reference) in &rows {
            if reference.len() != 4 {
                return Err(format!("{full}: the reference row needs 4 Y/n columns"));
            }
            let method = MethodName::from_full(full);
            if cross_checking() {
                for c in &callers {
                    let e = state.explain(c, &method, None);
                    agree(full, &e.verdict, &state.authorize(c, &method), "role");
                }
            }
            let got: Vec<&str> = callers
                .iter()
                .map(|c| yes_no(state.authorize(c, &method).is_ok()))
                .collect();
            let _ = write!(
                out,
                "\n{full:<width$}  {:^5} {:^4} {:^4} {:^5}",
                got[0], got[1], got[2], got[3]
            );
            if got != *reference {
                let _ = write!(out, "  <-- reference: {}", reference.join(" "));
                mismatches += 1;
            }
        }
        if mismatches > 0 {
            return Err(format!(
                "{mismatches} row(s) differ from the reference table:\n{out}"
            ));
        }
        Ok(out)
    }

    fn ownership_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        self.ownership = if args.flag("none") {
            None
        } else {
            Some(Ownership {
                owner: args.take("owner").unwrap_or_default(),
                acls: parse_acls(args)?,
            })
        };
        Ok(fmt_ownership(self.ownership.as_ref()))
    }

    fn check_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let who = parse_identity(args)?;
        let own = self.ownership.as_ref();
        if cross_checking() {
            for want in [AccessType::Read, AccessType::Write, AccessType::Admin] {
                let explained = explain_access(&who, own, want).granted;
                assert_eq!(
                    explained,
                    permitted(&who, own, want),
                    "check {want:?}: the explanation differs from permitted"
                );
                counted("access");
            }
        }
        Ok(format!(
            "read={} write={} admin={}",
            yes_no(permitted(&who, own, AccessType::Read)),
            yes_no(permitted(&who, own, AccessType::Write)),
            yes_no(permitted(&who, own, AccessType::Admin)),
        ))
    }

    fn apply_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let cmd = self.command_from(args)?;
        Ok(self.apply_and_show(&cmd))
    }

    /// `batch [user=...] req=R` with one apply command per input line: the commands as one
    /// `Op::Batch`, applied as one entry.
    fn batch_cmd(&mut self, args: &mut Args, lines: &[String]) -> Result<String, String> {
        let mut commands = Vec::new();
        for line in lines {
            let mut inner = Args::parse(line)?;
            if !APPLY_VERBS.contains(&inner.verb.as_str())
                && !credentials::VERBS.contains(&inner.verb.as_str())
            {
                return Err(format!(
                    "a batch holds apply commands, not {:?}",
                    inner.verb
                ));
            }
            commands.push(self.command_from(&mut inner)?);
            inner.finish()?;
        }
        let identity = parse_identity(args)?;
        let cmd = Command {
            request_id: RequestId(args.required("req")?),
            identity,
            time_ms: 0,
            origin: NodeId(1),
            op: Op::Batch { commands },
        };
        Ok(self.apply_and_show(&cmd))
    }

    fn command_from(&mut self, args: &mut Args) -> Result<Command, String> {
        let identity = parse_identity(args)?;
        let request_id = RequestId(args.required("req")?);
        let default_time = match self.clock {
            Some(t) => {
                self.clock = Some(t + 1000);
                t
            }
            None => 1000,
        };
        let time_ms = args.parsed("time", default_time)?;
        let op = match args.verb.as_str() {
            "create-volume" => {
                let spec = VolumeSpec {
                    size: args.parsed("size", 1u64)?,
                    ha_level: args.parsed("ha", 0i64)?,
                    format: args.parsed("format", 0i32)?,
                    shared: args.flag("shared"),
                    sharedv4: args.flag("sharedv4"),
                    encrypted: args.flag("encrypted"),
                    replica_nodes: list(&args.take("replicas").unwrap_or_default()),
                    cos: args.parsed("cos", 0i32)?,
                    storage_policy: args.take("policy").unwrap_or_default(),
                    ..VolumeSpec::default()
                };
                let labels = parse_labels(args)?;
                Op::CreateVolume {
                    id: VolumeId(args.required("id")?),
                    name: args.take("name").unwrap_or_default(),
                    spec,
                    labels,
                    acls: parse_acls(args)?,
                }
            }
            "delete-volume" => Op::DeleteVolume {
                id: VolumeId(args.required("id")?),
            },
            "update-volume" => {
                let labels = parse_labels(args)?;
                let ownership = if args.flag("ownership") {
                    Some(Ownership {
                        owner: args.take("owner").unwrap_or_default(),
                        acls: parse_acls(args)?,
                    })
                } else {
                    None
                };
                let update = VolumeUpdate {
                    size: args
                        .take("size")
                        .map(|v| parse_value("size", &v))
                        .transpose()?,
                    ha_level: args.take("ha").map(|v| parse_value("ha", &v)).transpose()?,
                    shared: args
                        .take("shared")
                        .map(|v| parse_value("shared", &v))
                        .transpose()?,
                    sharedv4: args
                        .take("sharedv4")
                        .map(|v| parse_value("sharedv4", &v))
                        .transpose()?,
                    snapshot_schedule: args.take("schedule"),
                    io_profile: args
                        .take("io_profile")
                        .map(|v| parse_value("io_profile", &v))
                        .transpose()?,
                    cos: args
                        .take("cos")
                        .map(|v| parse_value("cos", &v))
                        .transpose()?,
                    ownership,
                };
                Op::UpdateVolume {
                    id: VolumeId(args.take("id").unwrap_or_default()),
                    labels,
                    update,
                }
            }
            "clone-volume" => Op::CloneVolume {
                id: VolumeId(args.required("id")?),
                name: args.take("name").unwrap_or_default(),
                parent: VolumeId(args.take("parent").unwrap_or_default()),
                labels: parse_labels(args)?,
            },
            "create-snapshot" => Op::CreateSnapshot {
                id: VolumeId(args.required("id")?),
                volume: VolumeId(args.take("volume").unwrap_or_default()),
                name: args.take("name").unwrap_or_default(),
                labels: parse_labels(args)?,
            },
            "restore-snapshot" => Op::RestoreSnapshot {
                volume: VolumeId(args.take("volume").unwrap_or_default()),
                snapshot: VolumeId(args.take("snapshot").unwrap_or_default()),
            },
            "update-snapshot-schedule" => Op::UpdateSnapshotSchedule {
                id: VolumeId(args.take("id").unwrap_or_default()),
                names: list(&args.take("names").unwrap_or_default()),
            },
            "attach" => Op::AttachVolume {
                id: VolumeId(args.take("id").unwrap_or_default()),
                node: args.take("node").unwrap_or_default(),
            },
            "detach" => Op::DetachVolume {
                id: VolumeId(args.take("id").unwrap_or_default()),
            },
            "mount" | "unmount" => {
                let id = VolumeId(args.take("id").unwrap_or_default());
                let path = args.take("path").unwrap_or_default();
                if args.verb == "mount" {
                    Op::MountVolume { id, path }
                } else {
                    Op::UnmountVolume { id, path }
                }
            }
            "create-role" | "update-role" => {
                let rules = args
                    .take_all("rule")
                    .iter()
                    .map(|r| parse_rule(r))
                    .collect::<Result<_, _>>()?;
                let role = Role {
                    name: args.take("name").unwrap_or_default(),
                    rules,
                };
                if args.verb == "create-role" {
                    Op::CreateRole { role }
                } else {
                    Op::UpdateRole { role }
                }
            }
            "delete-role" => Op::DeleteRole {
                name: args.take("name").unwrap_or_default(),
            },
            "register-node" => Op::RegisterNode {
                node: parse_node(args)?,
            },
            "retire-node" => Op::RetireNode {
                id: NodeId(args.parsed("id", 0u64)?),
            },
            "cordon" => Op::CordonNode {
                id: NodeId(args.parsed("id", 0u64)?),
            },
            "uncordon" => Op::UncordonNode {
                id: NodeId(args.parsed("id", 0u64)?),
            },
            "drain" => Op::DrainNode {
                id: NodeId(args.parsed("id", 0u64)?),
            },
            "replace-replicas" => Op::ReplaceReplicas {
                node: NodeId(args.parsed("node", 0u64)?),
                down: parse_ids(&args.take("down").unwrap_or_default())?
                    .into_iter()
                    .collect(),
            },
            "report-usage" => Op::ReportUsage {
                node: NodeId(args.parsed("node", 0u64)?),
                volumes: args
                    .take_all("vol")
                    .iter()
                    .map(|v| parse_usage(v))
                    .collect::<Result<_, _>>()?,
            },
            "record-denials" => Op::RecordDenials {
                denials: args
                    .take_all("denial")
                    .iter()
                    .map(|d| parse_denial(d))
                    .collect::<Result<_, _>>()?,
            },
            "truncate-audit" => Op::TruncateAudit {
                through: args.parsed("through", 0u64)?,
            },
            "revoke" => {
                let issuer = args.take("issuer").unwrap_or_default();
                let target = match (
                    args.take("revoke-jti"),
                    args.take("revoke-fp"),
                    args.take("revoke-subject"),
                ) {
                    (Some(jti), None, None) => RevocationTarget::TokenId { issuer, jti },
                    (None, Some(fingerprint), None) => {
                        RevocationTarget::Fingerprint { fingerprint }
                    }
                    (None, None, Some(subject)) => RevocationTarget::Subject { issuer, subject },
                    _ => {
                        return Err(
                            "revoke needs one of revoke-jti=, revoke-fp=, revoke-subject=".into(),
                        )
                    }
                };
                Op::RevokeToken {
                    target,
                    issued_before: args.parsed("issued-before", 0u64)?,
                    expires_at: args.parsed("expires", 0u64)?,
                }
            }
            "set-quota" => Op::SetQuota {
                subject: parse_quota_subject(args)?,
                limits: QuotaLimits {
                    volumes: args
                        .take("volumes")
                        .map(|v| parse_value("volumes", &v))
                        .transpose()?,
                    bytes: args
                        .take("bytes")
                        .map(|v| parse_value("bytes", &v))
                        .transpose()?,
                },
            },
            "remove-quota" => Op::RemoveQuota {
                subject: parse_quota_subject(args)?,
            },
            "create-schedule-policy" | "update-schedule-policy" => {
                let policy = SchedulePolicy {
                    name: args.take("name").unwrap_or_default(),
                    schedules: parse_schedules(&args.take("schedules").unwrap_or_default())?,
                };
                if args.verb == "create-schedule-policy" {
                    Op::CreateSchedulePolicy { policy }
                } else {
                    Op::UpdateSchedulePolicy { policy }
                }
            }
            "delete-schedule-policy" => Op::DeleteSchedulePolicy {
                name: args.take("name").unwrap_or_default(),
            },
            "create-storage-policy" | "update-storage-policy" => {
                let policy = parse_storage_policy(args)?;
                if args.verb == "create-storage-policy" {
                    Op::CreateStoragePolicy { policy }
                } else {
                    Op::UpdateStoragePolicy { policy }
                }
            }
            "delete-storage-policy" => Op::DeleteStoragePolicy {
                name: args.take("name").unwrap_or_default(),
            },
            "set-default-policy" => Op::SetDefaultStoragePolicy {
                name: args.take("name").unwrap_or_default(),
            },
            "release-policy" => Op::ReleaseStoragePolicy,
            verb if credentials::VERBS.contains(&verb) => {
                let verb = verb.to_string();
                credentials::op(&verb, args)?
            }
            _ => unreachable!("dispatched above"),
        };
        Ok(Command {
            request_id,
            identity,
            time_ms,
            origin: NodeId(1),
            op,
        })
    }

    /// Applies `cmd`: its outcome, then its changes (the audit trail follows them).
    fn apply_and_show(&mut self, cmd: &Command) -> String {
        if cross_checking() {
            // Each command of a batch is decided as if alone, in order: replay them one by one
            // on a copy, explaining each on the state it meets.
            let mut copy = self.state.clone();
            let commands = match &cmd.op {
                Op::Batch { commands } => commands.clone(),
                _ => vec![cmd.clone()],
            };
            for c in &commands {
                let before = copy.clone();
                let applied = copy.apply(c);
                cross_check_command(&before, c, &applied.outcome, "apply");
            }
        }
        let applied = self.state.apply(cmd);
        let mut out = fmt_outcome(&applied.outcome);
        if applied.changes.is_empty() {
            out.push_str("\nno changes");
        }
        for c in &applied.changes {
            match c {
                Change::Put(Record::Audit(r)) => {
                    self.trail.insert(r.seq, r.clone());
                }
                Change::Delete(RecordKey::Audit(seq)) => {
                    self.trail.remove(seq);
                }
                _ => {}
            }
            // The head moves with every command: `audit` shows it.
            if matches!(c, Change::Put(Record::AuditHead(_))) {
                continue;
            }
            let _ = write!(out, "\n{}", fmt_change(c));
        }
        out
    }

    /// The audit trail kept so far, then whether its chain verifies up to the state's head.
    fn audit_cmd(&self) -> String {
        let mut out = String::new();
        let mut verifier = ChainVerifier::default();
        let mut broken = None;
        for r in self.trail.values() {
            let _ = writeln!(out, "{}", fmt_audit(r));
            if broken.is_none() {
                broken = verifier.push(r).err();
            }
        }
        let head = self.state.audit_head();
        let verdict = match broken.map_or_else(|| verifier.finish(&head), Err) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("BROKEN: {e}"),
        };
        let _ = write!(
            out,
            "head: next={} first={} chain={verdict}",
            head.next_seq, head.first_seq
        );
        out
    }

    /// `usage volume=ID` (the aggregate) or `usage node=N` (that node's last report).
    /// `quotas`: the quotas set (the guests' default when none is), then every subject's use.
    fn quotas_cmd(&self) -> String {
        let mut lines: Vec<String> = self
            .state
            .quotas()
            .map(|q| format!("quota {}", fmt_quota(q)))
            .collect();
        if self
            .state
            .quotas()
            .all(|q| q.subject != QuotaSubject::Guest)
        {
            lines.push(format!(
                "quota of guests: {} (default)",
                quota::DEFAULT_GUEST_QUOTA
            ));
        }
        for (subject, used) in self.state.quota_usages() {
            lines.push(format!(
                "use of {subject}: volumes={} bytes={}",
                used.volumes, used.bytes
            ));
        }
        lines.join("\n")
    }

    fn usage_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        match (args.take("volume"), args.take("node")) {
            (Some(id), None) => Ok(match self.state.volume_usage(&VolumeId(id)) {
                Some(u) => fmt_usage(&u),
                None => "none".into(),
            }),
            (None, Some(node)) => {
                let lines: Vec<String> = self
                    .state
                    .node_usage(NodeId(parse_value("node", &node)?))
                    .iter()
                    .map(|(v, u)| format!("{v}: {}", fmt_usage(u)))
                    .collect();
                Ok(if lines.is_empty() {
                    "(none)".into()
                } else {
                    lines.join("\n")
                })
            }
            _ => Err("usage takes volume= or node=".into()),
        }
    }

    fn inspect_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let who = parse_identity(args)?;
        let id = VolumeId(args.required("id")?);
        if cross_checking() {
            let e = self
                .state
                .explain_volume(&who, VolumeCheck::Read, id.as_str());
            let real = self.state.inspect_volume(&who, &id).map(drop);
            agree("inspect", &e.verdict, &real, "read");
            let full = self
                .state
                .explain(&who, &MethodName::from_full(INSPECT), Some(id.as_str()));
            if full.role_verdict.is_ok() {
                agree(
                    "inspect (with the role check)",
                    &full.verdict,
                    &real,
                    "read",
                );
            }
        }
        Ok(match self.state.inspect_volume(&who, &id) {
            Ok(v) => format!("{id}: {}", fmt_volume(v)),
            Err(e) => format!("error: {e}"),
        })
    }

    fn snapshots_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let who = parse_identity(args)?;
        let volume = args.take("volume").map(VolumeId);
        let labels = parse_labels(args)?;
        if let Some(id) = volume.as_ref().filter(|_| cross_checking()) {
            let e = self
                .state
                .explain_volume(&who, VolumeCheck::Read, id.as_str());
            let real = self.state.snapshots_of(&who, Some(id), &labels).map(drop);
            agree("snapshots", &e.verdict, &real, "read");
        }
        Ok(
            match self.state.snapshots_of(&who, volume.as_ref(), &labels) {
                Ok(snaps) if snaps.is_empty() => "(none)".into(),
                Ok(snaps) => snaps
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                Err(e) => format!("error: {e}"),
            },
        )
    }

    fn list_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let who = parse_identity(args)?;
        let filter = VolumeFilter {
            name: args.take("filter.name"),
            labels: BTreeMap::new(),
            ownership: args.take("filter.owner").map(|owner| Ownership {
                owner,
                acls: Acls::default(),
            }),
        };
        let ids: Vec<String> = self
            .state
            .readable_volumes(&who, &filter)
            .map(|v| v.id.to_string())
            .collect();
        Ok(if ids.is_empty() {
            "(none)".into()
        } else {
            ids.join(" ")
        })
    }

    /// Every registered node with its load, free space and the volumes it holds a replica of.
    fn nodes_cmd(&self) -> String {
        let lines: Vec<String> = self
            .state
            .nodes()
            .map(|n| {
                let load = self.state.node_load(n.id);
                let zone = n.zone().unwrap_or("-");
                let rack = n.rack().unwrap_or("-");
                let mut s = format!(
                    "{}: zone={zone} rack={rack} capacity={} load={load} free={}",
                    n.id,
                    n.capacity_bytes,
                    n.capacity_bytes.saturating_sub(load)
                );
                if n.cordoned {
                    s.push_str(" cordoned");
                }
                let vols: Vec<String> = self
                    .state
                    .volumes_on(n.id)
                    .iter()
                    .map(|v| v.id.to_string())
                    .collect();
                if !vols.is_empty() {
                    let _ = write!(s, " volumes={}", vols.join(","));
                }
                s
            })
            .collect();
        if lines.is_empty() {
            "(none)".into()
        } else {
            lines.join("\n")
        }
    }

    /// Each volume's replicas as `node@zone/rack` (`-` for an unlabelled zone or rack).
    fn replicas_cmd(&self) -> String {
        let who = root();
        let lines: Vec<String> = self
            .state
            .readable_volumes(&who, &VolumeFilter::default())
            .map(|v| {
                let replicas: Vec<String> = v
                    .replicas
                    .iter()
                    .map(|r| match self.state.node(*r) {
                        Some(n) => format!(
                            "{r}@{}/{}",
                            n.zone().unwrap_or("-"),
                            n.rack().unwrap_or("-")
                        ),
                        None => format!("{r}@?"),
                    })
                    .collect();
                let snap = if v.snapshot { " (snapshot)" } else { "" };
                format!("{}{snap}: {}", v.id, replicas.join(" "))
            })
            .collect();
        if lines.is_empty() {
            "(none)".into()
        } else {
            lines.join("\n")
        }
    }

    /// `placement::place` over the session's nodes and loads: `ha= size= keep= requested=
    /// exclude=`.
    fn place_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let nodes: Vec<&StorageNodeRecord> = self.state.nodes().collect();
        let load: BTreeMap<NodeId, u64> = nodes
            .iter()
            .map(|n| (n.id, self.state.node_load(n.id)))
            .collect();
        let wanted: usize = args.parsed("ha", 1)?;
        let size: u64 = args.parsed("size", 1)?;
        let keep = parse_ids(&args.take("keep").unwrap_or_default())?;
        let requested = list(&args.take("requested").unwrap_or_default());
        let exclude = parse_ids(&args.take("exclude").unwrap_or_default())?
            .into_iter()
            .collect();
        Ok(
            match placement::place(&nodes, &load, wanted, size, &keep, &requested, &exclude) {
                Ok(ids) => fmt_ids(&ids),
                Err(e) => format!("error: {e}"),
            },
        )
    }

    /// Adds a volume record as a restart would find it (`State::from_records`).
    fn seed_volume_cmd(&mut self, args: &mut Args) -> Result<String, String> {
        let owner = args.take("owner");
        let mut volume = Volume::new(
            VolumeId(args.required("id")?),
            args.required("name")?,
            VolumeSpec {
                size: 1,
                ha_level: 1,
                ..VolumeSpec::default()
            },
            BTreeMap::new(),
            owner.map(|owner| Ownership {
                owner,
                acls: Acls::default(),
            }),
            args.parsed("time", 1000u64)?,
        );
        volume.parent = args.take("parent").map(VolumeId);
        volume.snapshot = args.flag("snapshot");
        let out = fmt_record(&Record::Volume(volume.clone()));
        let records: Vec<Record> = self
            .state
            .records()
            .chain([Record::Volume(volume)])
            .collect();
        self.state = State::from_records(records);
        Ok(out)
    }
}

/// `1,2,3` as node ids.
fn parse_ids(s: &str) -> Result<Vec<NodeId>, String> {
    list(s)
        .iter()
        .map(|id| parse_value("node id", id).map(NodeId))
        .collect()
}

/// `register-node`: `id=N [host=] [zone=] [rack=] [labels=k=v,..] [capacity=] [sdk=] [raft=]
/// [mgmt=] [data=] [cordoned] [registered=MS]`. Addresses default to ones derived from the id;
/// `cordoned` and `registered=` set the fields apply must ignore.
fn parse_node(args: &mut Args) -> Result<StorageNodeRecord, String> {
    let id: u64 = parse_value("id", &args.required("id")?)?;
    let mut labels = parse_labels(args)?;
    if let Some(zone) = args.take("zone") {
        labels.insert(ZONE_LABEL.to_string(), zone);
    }
    if let Some(rack) = args.take("rack") {
        labels.insert(RACK_LABEL.to_string(), rack);
    }
    Ok(StorageNodeRecord {
        id: NodeId(id),
        sdk_addr: args
            .take("sdk")
            .unwrap_or_else(|| format!("10.0.0.{id}:9100")),
        raft_addr: args
            .take("raft")
            .unwrap_or_else(|| format!("10.0.0.{id}:9200")),
        mgmt_ip: args.take("mgmt").unwrap_or_else(|| format!("10.0.0.{id}")),
        data_ip: args.take("data").unwrap_or_else(|| format!("10.0.1.{id}")),
        hostname: args.take("host").unwrap_or_else(|| format!("node{id}")),
        labels,
        capacity_bytes: args.parsed("capacity", 1000u64)?,
        cordoned: args.flag("cordoned"),
        registered_ms: args.parsed("registered", 0u64)?,
        incarnation: args.parsed("incarnation", 0u64)?,
    })
}

// ---- the access table (volumes.txt) ----

/// The callers of the access table: a column name, the identity and the volume it acts on.
fn access_columns() -> Vec<(&'static str, Identity, VolumeId)> {
    let user = |name: &str, groups: &[&str]| Identity {
        username: name.into(),
        subject: name.into(),
        name: name.into(),
        email: format!("{name}@example.com"),
        issuer: "golden".into(),
        roles: vec![role::USER_ROLE.to_string()],
        groups: groups.iter().map(|g| g.to_string()).collect(),
        guest: false,
        fingerprint: String::new(),
        token_id: String::new(),
        issued_at: 0,
    };
    let acl = VolumeId("v-acl".into());
    vec![
        ("owner", user("alice", &[]), acl.clone()),
        ("read", user("rita", &[]), acl.clone()),
        ("write", user("will", &[]), acl.clone()),
        ("admin", user("ada", &[]), acl.clone()),
        ("group", user("gus", &["ops"]), acl.clone()),
        ("public", user("pat", &[]), VolumeId("v-pub".into())),
        ("guest", Identity::guest(), acl.clone()),
        ("unowned", Identity::guest(), VolumeId("v-anon".into())),
        ("oadmin", user("root", &["*"]), acl.clone()),
        ("stranger", user("sam", &[]), acl),
    ]
}

/// An administrator that prepares the state of a cell (attach before mount, ...).
fn root() -> Identity {
    Identity {
        username: "root".into(),
        subject: "root".into(),
        name: "root".into(),
        email: "root@example.com".into(),
        issuer: "golden".into(),
        roles: vec![role::ADMIN_ROLE.to_string()],
        groups: vec!["*".into()],
        guest: false,
        fingerprint: String::new(),
        token_id: String::new(),
        issued_at: 0,
    }
}

/// Applies `op` as `who`; the outcome as a result.
fn run_op(state: &mut State, who: &Identity, req: &str, op: Op) -> Result<Reply, String> {
    let cmd = Command {
        request_id: RequestId(req.into()),
        identity: who.clone(),
        time_ms: 2000,
        origin: NodeId(1),
        op,
    };
    let before = cross_checking().then(|| state.clone());
    let outcome = state.apply(&cmd).outcome;
    if let Some(before) = before {
        cross_check_command(&before, &cmd, &outcome, "access-table");
    }
    outcome.into_result().map_err(|e| e.to_string())
}

/// The fixture of the access table, built through apply: `v-acl` owned by alice with a Read,
/// a Write and an Admin collaborator and the group `ops` at Write; `v-pub` owned by alice with
/// public Read; `v-anon` created by a guest (no ownership).
fn access_fixture() -> Result<State, String> {
    let mut state = State::new();
    let alice = access_columns().remove(0).1;
    let create = |id: &str, acls: Acls| Op::CreateVolume {
        id: VolumeId(id.into()),
        name: id.trim_start_matches("v-").into(),
        spec: VolumeSpec {
            size: 1,
            ..VolumeSpec::default()
        },
        labels: BTreeMap::new(),
        acls,
    };
    let acls = Acls {
        groups: [("ops".to_string(), AccessType::Write)]
            .into_iter()
            .collect(),
        collaborators: [
            ("rita".to_string(), AccessType::Read),
            ("will".to_string(), AccessType::Write),
            ("ada".to_string(), AccessType::Admin),
        ]
        .into_iter()
        .collect(),
        public: None,
    };
    run_op(&mut state, &alice, "f1", create("v-acl", acls))?;
    let public = Acls {
        public: Some(AccessType::Read),
        ..Acls::default()
    };
    run_op(&mut state, &alice, "f2", create("v-pub", public))?;
    run_op(
        &mut state,
        &Identity::guest(),
        "f3",
        create("v-anon", Acls::default()),
    )?;
    Ok(state)
}

/// One cell of the access table: `Y` when the caller may, `n` when refused with
/// PermissionDenied. Any other refusal is an error: the cell's preparation is wrong.
fn access_cell(method: &str, who: &Identity, vol: &VolumeId) -> Result<&'static str, String> {
    let mut state = access_fixture()?;
    let id = |s: &str| VolumeId(s.into());
    let no_labels = BTreeMap::new;
    let admin = root();
    let prep = |state: &mut State, ops: Vec<Op>| -> Result<(), String> {
        for (i, op) in ops.into_iter().enumerate() {
            run_op(state, &admin, &format!("prep{i}"), op)?;
        }
        Ok(())
    };
    let attach = Op::AttachVolume {
        id: vol.clone(),
        node: "n1".into(),
    };
    let mount = Op::MountVolume {
        id: vol.clone(),
        path: "/mnt/x".into(),
    };
    let update =
        |ownership: Option<Ownership>, labels: BTreeMap<String, String>| Op::UpdateVolume {
            id: vol.clone(),
            labels,
            update: VolumeUpdate {
                ownership,
                ..VolumeUpdate::default()
            },
        };
    let read = |r: Result<(), custos_model::Rejection>| r.map_err(|e| e.to_string());
    let result: Result<(), String> = match method {
        "Volume.Inspect" | "Volume.Stats" | "Volume.CapacityUsage" => {
            let real = state.inspect_volume(who, vol).map(drop);
            if cross_checking() {
                let method = MethodName::from_full(&format!(
                    "/openstorage.api.OpenStorageVolume/{}",
                    method.trim_start_matches("Volume.")
                ));
                let e = state.explain(who, &method, Some(vol.as_str()));
                agree(method.full.as_str(), &e.verdict, &real, "access-table");
            }
            read(real)
        }
        "Volume.Enumerate" | "Volume.InspectWithFilters" => {
            let filter = VolumeFilter::default();
            if state.readable_volumes(who, &filter).any(|v| &v.id == vol) {
                Ok(())
            } else {
                return Ok("n");
            }
        }
        "Volume.VolumeCatalog" => read(state.volume_catalog(who, vol).map(drop)),
        "Volume.SnapshotEnumerate" => {
            read(state.snapshots_of(who, Some(vol), &no_labels()).map(drop))
        }
        "Volume.Create" => {
            let name = state
                .volume(vol)
                .map(|v| v.name.clone())
                .unwrap_or_default();
            let op = Op::CreateVolume {
                id: id("v-new"),
                name,
                spec: VolumeSpec {
                    size: 1,
                    ..VolumeSpec::default()
                },
                labels: BTreeMap::new(),
                acls: Acls::default(),
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        "Volume.Clone" => {
            let op = Op::CloneVolume {
                id: id("v-clone"),
                name: "clone".into(),
                parent: vol.clone(),
                labels: no_labels(),
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        "Volume.Delete" => run_op(
            &mut state,
            who,
            "cell",
            Op::DeleteVolume { id: vol.clone() },
        )
        .map(drop),
        "Volume.Update" => {
            let labels = [("k".to_string(), "v".to_string())].into_iter().collect();
            run_op(&mut state, who, "cell", update(None, labels)).map(drop)
        }
        "Volume.Update(acls)" => {
            let ownership = Ownership {
                owner: String::new(),
                acls: Acls {
                    collaborators: [("x".to_string(), AccessType::Read)].into_iter().collect(),
                    ..Acls::default()
                },
            };
            run_op(
                &mut state,
                who,
                "cell",
                update(Some(ownership), no_labels()),
            )
            .map(drop)
        }
        "Volume.Update(owner)" => {
            let ownership = Ownership {
                owner: "newowner".into(),
                acls: Acls::default(),
            };
            run_op(
                &mut state,
                who,
                "cell",
                update(Some(ownership), no_labels()),
            )
            .map(drop)
        }
        "Volume.SnapshotCreate" => {
            let op = Op::CreateSnapshot {
                id: id("v-snap"),
                volume: vol.clone(),
                name: "snap".into(),
                labels: no_labels(),
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        "Volume.SnapshotRestore" => {
            let snap = Op::CreateSnapshot {
                id: id("v-prep-snap"),
                volume: vol.clone(),
                name: "prep-snap".into(),
                labels: no_labels(),
            };
            prep(&mut state, vec![snap])?;
            let op = Op::RestoreSnapshot {
                volume: vol.clone(),
                snapshot: id("v-prep-snap"),
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        "Volume.SnapshotScheduleUpdate" => {
            prep(
                &mut state,
                vec![Op::CreateSchedulePolicy {
                    policy: SchedulePolicy {
                        name: "daily".into(),
                        schedules: vec![ScheduleInterval {
                            retain: 1,
                            period: Some(SchedulePeriod::Daily { hour: 1, minute: 0 }),
                        }],
                    },
                }],
            )?;
            let op = Op::UpdateSnapshotSchedule {
                id: vol.clone(),
                names: vec!["daily".into()],
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        "MountAttach.Attach" => run_op(&mut state, who, "cell", attach).map(drop),
        "MountAttach.Detach" => {
            prep(&mut state, vec![attach])?;
            run_op(
                &mut state,
                who,
                "cell",
                Op::DetachVolume { id: vol.clone() },
            )
            .map(drop)
        }
        "MountAttach.Mount" => {
            prep(&mut state, vec![attach])?;
            run_op(&mut state, who, "cell", mount).map(drop)
        }
        "MountAttach.Unmount" => {
            prep(&mut state, vec![attach, mount])?;
            let op = Op::UnmountVolume {
                id: vol.clone(),
                path: "/mnt/x".into(),
            };
            run_op(&mut state, who, "cell", op).map(drop)
        }
        other => return Err(format!("no access probe for {other:?}")),
    };
    let denied = format!("{}: ", Code::PermissionDenied.name());
    match result {
        Ok(()) => Ok("Y"),
        Err(e) if e.starts_with(&denied) => Ok("n"),
        Err(e) => Err(format!("{method} as {:?} on {vol}: {e}", who.username)),
    }
}

/// `access` (input: `Service.Method Y n ...` rows, one column per caller of
/// [`access_columns`]) prints whether each caller may call each method on its volume; a row
/// that disagrees with the reference fails the test, like `matrix`.
fn access_table(input: &[String]) -> Result<String, String> {
    let columns = access_columns();
    let rows: Vec<(String, Vec<String>)> = input
        .iter()
        .map(|l| {
            let mut words = l.split_whitespace();
            let method = words.next().unwrap_or_default().to_string();
            (method, words.map(str::to_string).collect())
        })
        .collect();
    let width = rows.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let mut out = format!("{:<width$}", "method");
    for (name, ..) in &columns {
        let _ = write!(out, " {name}");
    }
    let mut mismatches = 0;
    for (method, reference) in &rows {
        if reference.len() != columns.len() {
            return Err(format!(
                "{method}: the reference row needs {} Y/n columns",
                columns.len()
            ));
        }
        let got: Vec<&str> = columns
            .iter()
            .map(|(_, who, vol)| access_cell(method, who, vol))
            .collect::<Result<_, _>>()?;
        let _ = write!(out, "\n{method:<width$}");
        for ((name, ..), cell) in columns.iter().zip(&got) {
            let _ = write!(out, " {cell:^w$}", w = name.len());
        }
        if got != *reference {
            let _ = write!(out, "  <-- reference: {}", reference.join(" "));
            mismatches += 1;
        }
    }
    if mismatches > 0 {
        return Err(format!(
            "{mismatches} row(s) differ from the reference table:\n{out}"
        ));
    }
    Ok(out)
}
