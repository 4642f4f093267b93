//! Property tests of the deterministic apply: determinism, persistence round trip, completeness
//! of the change lists, the volume and placement invariants, the bounded request window, and
//! the placement properties of issue #4 (zone spread and balance over 1,000 volumes, capacity,
//! determinism of `placement::place`).
//!
//! Commands are drawn from small pools (a few users, names, ids, nodes, paths, role names and
//! request ids) so random sequences collide often: idempotent creates, clones and snapshots
//! sharing ids and names, attach/mount/detach in every order, ownership edits that change what
//! later commands may do, node registrations (re-registrations changing capacity and zones),
//! cordons, drains and re-placements, usage reports (replacing, ignoring unknown volumes, cleared
//! by deletes), duplicate request ids, refusals of every kind.

use std::collections::{BTreeMap, BTreeSet};

use custos_model::identity::Identity;
use custos_model::node::{StorageNodeRecord, RACK_LABEL, ZONE_LABEL};
use custos_model::ownership::{AccessType, Acls, Ownership};
use custos_model::placement;
use custos_model::role::{Role, Rule};
use custos_model::state::{
    self, Applied, Change, Record, RecordKey, State, VolumeFilter, REQUEST_WINDOW,
};
use custos_model::AuditRecord;
use custos_model::{
    Code, Command, NodeId, Op, Outcome, Reply, RequestId, VolumeId, VolumeSpec, VolumeUpdate,
    VolumeUsage,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const USERS: &[&str] = &["alice", "bob", "carol"];
const ROLES: &[&str] = &[
    "system.admin",
    "system.user",
    "system.view",
    "system.guest",
    "custom1",
    "nosuch",
];
const GROUPS: &[&str] = &["g1", "g2", "*"];
const VOLUME_IDS: &[&str] = &["v-1", "v-2", "v-3", "v-4"];
const VOLUME_NAMES: &[&str] = &["a", "b", "c"];
/// Attach targets: registered node ids (which may be cordoned), free-form names, empty.
const NODES: &[&str] = &["n1", "1", "2", "n2", ""];
/// Storage node ids of registrations, cordons, drains and re-placements; 5 is never registered.
const NODE_IDS: &[u64] = &[1, 2, 3, 4, 5];
const ZONES: &[&str] = &["a", "b", "c", ""];
const RACKS: &[&str] = &["r1", "r2", ""];
/// Small capacities, so the volume sizes of the pools (1..4) exhaust them.
const CAPACITIES: &[u64] = &[0, 2, 4, 8, 100];
/// `replica_set.nodes` entries: an id, a hostname, an IP, an unknown name.
const REPLICA_NAMES: &[&str] = &["1", "node2", "10.0.0.3", "nosuch"];
const PATHS: &[&str] = &["/mnt/a", "/mnt/a", "/mnt/b", ""];
const POLICIES: &[&str] = &["daily", "weekly", "bad;name"];
const LABEL_KEYS: &[&str] = &["k1", "k2"];
const LABEL_VALUES: &[&str] = &["x", "y", ""];
const ROLE_NAMES: &[&str] = &[
    "custom1",
    "custom2",
    "system.guest",
    "system.user",
    "bad name",
    "",
];
const SERVICES: &[&str] = &["volume", "node", "*", "!volume", "identity"];
const APIS: &[&str] = &["*", "create", "!create", "delete", "inspect*"];
/// Request ids are drawn from this many, so about a third of a 40-command sequence retries.
const REQUEST_IDS: usize = 64;

fn user(name: &str, roles: Vec<&str>, groups: Vec<&str>) -> Identity {
    Identity {
        username: name.to_string(),
        subject: name.to_string(),
        name: name.to_string(),
        email: format!("{name}@example.com"),
        issuer: "prop".into(),
        roles: roles.into_iter().map(str::to_string).collect(),
        groups: groups.into_iter().map(str::to_string).collect(),
        guest: false,
        fingerprint: String::new(),
        token_id: String::new(),
        issued_at: 0,
    }
}

fn arb_identity() -> impl Strategy<Value = Identity> {
    prop_oneof![
        1 => Just(Identity::guest()),
        2 => (select(USERS), select(GROUPS)).prop_map(|(u, g)| user(u, vec!["system.admin"], vec![g])),
        4 => (select(USERS), subsequence(GROUPS, 0..2))
            .prop_map(|(u, g)| user(u, vec!["system.user"], g)),
        3 => (select(USERS), subsequence(ROLES, 0..3), subsequence(GROUPS, 0..2))
            .prop_map(|(u, r, g)| user(u, r, g)),
    ]
}

fn arb_access() -> impl Strategy<Value = AccessType> {
    prop_oneof![
        Just(AccessType::Read),
        Just(AccessType::Write),
        Just(AccessType::Admin)
    ]
}

fn arb_acls() -> impl Strategy<Value = Acls> {
    let names = |pool: &'static [&'static str]| select(pool).prop_map(str::to_string);
    (
        btree_map(names(GROUPS), arb_access(), 0..2),
        btree_map(names(&["alice", "bob", "carol", "*"]), arb_access(), 0..2),
        proptest::option::of(arb_access()),
    )
        .prop_map(|(groups, collaborators, public)| Acls {
            groups,
            collaborators,
            public,
        })
}

fn arb_volume_id() -> impl Strategy<Value = VolumeId> {
    select(VOLUME_IDS).prop_map(|id| VolumeId(id.to_string()))
}

fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(
        select(LABEL_KEYS).prop_map(str::to_string),
        select(LABEL_VALUES).prop_map(str::to_string),
        0..2,
    )
}

fn arb_update() -> impl Strategy<Value = VolumeUpdate> {
    use proptest::option::of;
    let ownership =
        (select(&["", "", "alice", "bob"][..]), arb_acls()).prop_map(|(owner, acls)| Ownership {
            owner: owner.to_string(),
            acls,
        });
    (
        (
            of(0u64..4),
            of(-1i64..4),
            of(any::<bool>()),
            of(any::<bool>()),
        ),
        (
            of(select(&["", "periodic=60", "policy=daily;periodic=60"][..])),
            of(0i32..3),
            of(0i32..3),
            of(ownership),
        ),
    )
        .prop_map(
            |((size, ha_level, shared, sharedv4), (schedule, io_profile, cos, ownership))| {
                VolumeUpdate {
                    size,
                    ha_level,
                    shared,
                    sharedv4,
                    snapshot_schedule: schedule.map(str::to_string),
                    io_profile,
                    cos,
                    ownership,
                }
            },
        )
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    let patterns = |pool: &'static [&'static str], min: usize| {
        subsequence(pool, min..3).prop_map(|p| p.into_iter().map(str::to_string).collect())
    };
    // Mostly valid rules; sometimes one without services or apis.
    prop_oneof![
        8 => (patterns(SERVICES, 1), patterns(APIS, 1)),
        1 => (patterns(SERVICES, 0), patterns(APIS, 0)),
    ]
    .prop_map(|(services, apis)| Rule { services, apis })
}

fn arb_role() -> impl Strategy<Value = Role> {
    (
        select(ROLE_NAMES),
        prop_oneof![9 => vec(arb_rule(), 1..3), 1 => Just(Vec::new())],
    )
        .prop_map(|(name, rules)| Role {
            name: name.to_string(),
            rules,
        })
}

/// A storage node as it registers itself: a hostname and IPs derived from the id, a zone and
/// rack (unlabelled when empty).
fn node_record(id: u64, zone: &str, rack: &str, capacity: u64) -> StorageNodeRecord {
    let mut labels = BTreeMap::new();
    if !zone.is_empty() {
        labels.insert(ZONE_LABEL.to_string(), zone.to_string());
    }
    if !rack.is_empty() {
        labels.insert(RACK_LABEL.to_string(), rack.to_string());
    }
    StorageNodeRecord {
        id: NodeId(id),
        sdk_addr: format!("10.0.0.{id}:9100"),
        raft_addr: format!("10.0.0.{id}:9200"),
        mgmt_ip: format!("10.0.0.{id}"),
        data_ip: format!("10.0.1.{id}"),
        hostname: format!("node{id}"),
        labels,
        capacity_bytes: capacity,
        cordoned: false,
        registered_ms: 0,
        incarnation: 0,
    }
}

fn arb_register() -> impl Strategy<Value = Op> {
    (
        select(&NODE_IDS[..4]),
        select(ZONES),
        select(RACKS),
        select(CAPACITIES),
        any::<bool>(),
    )
        .prop_map(|(id, zone, rack, capacity, cordoned)| {
            let mut node = node_record(id, zone, rack, capacity);
            // Apply must ignore these.
            node.cordoned = cordoned;
            node.registered_ms = capacity;
            Op::RegisterNode { node }
        })
}

fn arb_node_id() -> impl Strategy<Value = NodeId> {
    select(NODE_IDS).prop_map(NodeId)
}

/// A usage report of a node (5 is never registered) about pool volumes (which may not exist),
/// with small numbers so repeated reports are often identical.
fn arb_report_usage() -> impl Strategy<Value = Op> {
    let usage = (0u64..3, 0u64..3, 0u64..3, 0u64..10_000).prop_map(|(used, r, w, at)| {
        VolumeUsage {
            bytes_used: used,
            reads: r,
            writes: w,
            read_bytes: r * 10,
            write_bytes: w * 10,
            // Apply must ignore it.
            reported_ms: at,
        }
    });
    (arb_node_id(), btree_map(arb_volume_id(), usage, 0..4))
        .prop_map(|(node, volumes)| Op::ReportUsage { node, volumes })
}

fn arb_node_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => arb_register(),
        1 => arb_node_id().prop_map(|id| Op::CordonNode { id }),
        1 => arb_node_id().prop_map(|id| Op::UncordonNode { id }),
        1 => arb_node_id().prop_map(|id| Op::DrainNode { id }),
        2 => (arb_node_id(), subsequence(NODE_IDS, 0..3)).prop_map(|(node, down)| {
            Op::ReplaceReplicas { node, down: down.into_iter().map(NodeId).collect() }
        }),
        2 => arb_report_usage(),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let create = (
        select(VOLUME_IDS),
        select(VOLUME_NAMES),
        prop_oneof![9 => 1u64..3, 1 => Just(0u64)],
        0i64..3,
        any::<bool>(),
        arb_acls(),
        prop_oneof![4 => Just(Vec::new()), 1 => subsequence(REPLICA_NAMES, 1..3)],
    )
        .prop_map(
            |(id, name, size, ha_level, shared, acls, replica_nodes)| Op::CreateVolume {
                id: VolumeId(id.to_string()),
                name: name.to_string(),
                spec: VolumeSpec {
                    size,
                    ha_level,
                    shared,
                    replica_nodes: replica_nodes.into_iter().map(str::to_string).collect(),
                    ..VolumeSpec::default()
                },
                labels: BTreeMap::new(),
                acls,
            },
        );
    let name = || select(VOLUME_NAMES).prop_map(str::to_string);
    let node = || select(NODES).prop_map(str::to_string);
    let path = || select(PATHS).prop_map(str::to_string);
    prop_oneof![
        4 => create,
        2 => arb_volume_id().prop_map(|id| Op::DeleteVolume { id }),
        2 => (arb_volume_id(), arb_labels(), arb_update())
            .prop_map(|(id, labels, update)| Op::UpdateVolume { id, labels, update }),
        2 => (arb_volume_id(), name(), arb_volume_id(), arb_labels())
            .prop_map(|(id, name, parent, labels)| Op::CloneVolume { id, name, parent, labels }),
        3 => (arb_volume_id(), arb_volume_id(), name(), arb_labels())
            .prop_map(|(id, volume, name, labels)| Op::CreateSnapshot { id, volume, name, labels }),
        2 => (arb_volume_id(), arb_volume_id())
            .prop_map(|(volume, snapshot)| Op::RestoreSnapshot { volume, snapshot }),
        1 => (arb_volume_id(), subsequence(POLICIES, 0..3)).prop_map(|(id, names)| {
            Op::UpdateSnapshotSchedule { id, names: names.into_iter().map(str::to_string).collect() }
        }),
        2 => (arb_volume_id(), node()).prop_map(|(id, node)| Op::AttachVolume { id, node }),
        2 => arb_volume_id().prop_map(|id| Op::DetachVolume { id }),
        2 => (arb_volume_id(), path()).prop_map(|(id, path)| Op::MountVolume { id, path }),
        2 => (arb_volume_id(), path()).prop_map(|(id, path)| Op::UnmountVolume { id, path }),
        1 => arb_role().prop_map(|role| Op::CreateRole { role }),
        1 => arb_role().prop_map(|role| Op::UpdateRole { role }),
        1 => select(ROLE_NAMES).prop_map(|n| Op::DeleteRole { name: n.to_string() }),
        4 => arb_node_op(),
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    (0..REQUEST_IDS, arb_identity(), 0u64..10_000, arb_op()).prop_map(
        |(req, identity, time_ms, op)| Command {
            request_id: RequestId(format!("r{req}")),
            identity,
            time_ms,
            origin: NodeId(1),
            op,
        },
    )
}

fn arb_commands(max: usize) -> impl Strategy<Value = Vec<Command>> {
    vec(arb_command(), 0..max)
}

fn is_node_op(op: &Op) -> bool {
    matches!(
        op,
        Op::RegisterNode { .. }
            | Op::CordonNode { .. }
            | Op::UncordonNode { .. }
            | Op::DrainNode { .. }
            | Op::ReplaceReplicas { .. }
            | Op::ReportUsage { .. }
    )
}

/// Long volume lifecycles: unique request ids (no retries) and callers that mostly may act
/// (alice, bob in group g1, an ownership administrator, the guest), so creates, snapshots,
/// attachments, mounts and restores build on each other. Most start with a few node
/// registrations, and node operations are always proposed by an administrator (as the leader
/// and operators do), so placement, cordons, drains and re-placements act.
fn arb_lifecycle(max: usize) -> impl Strategy<Value = Vec<Command>> {
    let root = || user("root", vec!["system.admin"], vec!["*"]);
    let identity = prop_oneof![
        6 => Just(user("alice", vec!["system.user"], vec![])),
        2 => Just(user("bob", vec!["system.user"], vec!["g1"])),
        1 => Just(root()),
        1 => Just(Identity::guest()),
    ];
    (
        vec(arb_register(), 0..5),
        vec((identity, 0u64..10_000, arb_op()), 0..max),
    )
        .prop_map(move |(registrations, cmds)| {
            registrations
                .into_iter()
                .map(|op| (root(), 0, op))
                .chain(cmds)
                .enumerate()
                .map(|(i, (identity, time_ms, op))| Command {
                    request_id: RequestId(format!("l{i}")),
                    identity: if is_node_op(&op) { root() } else { identity },
                    time_ms,
                    origin: NodeId(1),
                    op,
                })
                .collect()
        })
}

/// Every read a server makes, for a few callers: must agree between two states that claim to be
/// equal.
fn reads(state: &State) -> String {
    let mut out = String::new();
    let callers = [
        Identity::guest(),
        user("alice", vec!["system.user"], vec![]),
        user("bob", vec!["system.user"], vec!["g1"]),
        user("root", vec!["system.admin"], vec!["*"]),
    ];
    out.push_str(&format!(
        "roles {:?}\n",
        state.role_names().collect::<Vec<_>>()
    ));
    for name in ROLE_NAMES.iter().chain(ROLES) {
        out.push_str(&format!("role {name}: {:?}\n", state.role(name)));
    }
    for name in VOLUME_NAMES {
        out.push_str(&format!(
            "name {name}: {:?}\n",
            state.volume_by_name(name).map(|v| &v.id)
        ));
    }
    let all = VolumeFilter::default();
    for who in &callers {
        let ids: Vec<_> = state.readable_volumes(who, &all).map(|v| &v.id).collect();
        out.push_str(&format!("{}: {ids:?}\n", who.username));
        let no_labels = BTreeMap::new();
        out.push_str(&format!(
            "  snapshots: {:?}\n",
            state.snapshots_of(who, None, &no_labels)
        ));
        for id in VOLUME_IDS {
            let id = VolumeId(id.to_string());
            out.push_str(&format!("  {id}: {:?}\n", state.inspect_volume(who, &id)));
            out.push_str(&format!(
                "  {id} write: {:?}\n",
                state.check_volume(
                    who,
                    custos_model::state::VolumeCheck::Write,
                    id.as_str(),
                    None
                )
            ));
            out.push_str(&format!(
                "  {id} catalog: {:?}\n",
                state.volume_catalog(who, &id)
            ));
            out.push_str(&format!(
                "  {id} snapshots: {:?}\n",
                state.snapshots_of(who, Some(&id), &no_labels)
            ));
        }
    }
    for i in 0..REQUEST_IDS {
        out.push_str(&format!(
            "r{i}: {:?}\n",
            state.remembered(&RequestId(format!("r{i}")))
        ));
    }
    out.push_str(&format!("volumes {}\n", state.volume_count()));
    for node in state.nodes() {
        out.push_str(&format!("node {node:?}\n"));
    }
    for id in NODE_IDS {
        let id = NodeId(*id);
        let on: Vec<_> = state.volumes_on(id).iter().map(|v| &v.id).collect();
        out.push_str(&format!(
            "node {id}: {:?} load {} on {on:?}\n",
            state.node(id).map(|n| n.id),
            state.node_load(id)
        ));
        out.push_str(&format!("  usage {:?}\n", state.node_usage(id)));
    }
    for id in VOLUME_IDS {
        let id = VolumeId(id.to_string());
        out.push_str(&format!("usage {id}: {:?}\n", state.volume_usage(&id)));
    }
    out
}

fn records(state: &State) -> Vec<Record> {
    state.records().collect()
}

fn request_count(state: &State) -> usize {
    state
        .records()
        .filter(|r| matches!(r, Record::Request(_)))
        .count()
}

/// A store as the storage layer keeps it: records by encoded key, edited only through changes.
#[derive(Default)]
struct Store(BTreeMap<Vec<u8>, Record>);

impl Store {
    fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Put(r) => {
                    self.0.insert(r.key().encode(), r.clone());
                }
                Change::Delete(k) => {
                    self.0.remove(&k.encode());
                }
            }
        }
    }

    fn load(&self) -> State {
        State::from_records(self.0.values().cloned())
    }

    fn requests(&self) -> usize {
        self.0
            .values()
            .filter(|r| matches!(r, Record::Request(_)))
            .count()
    }
}

/// The changes other than the audit trail's (its records and head).
fn without_audit(changes: &[Change]) -> Vec<&Change> {
    changes
        .iter()
        .filter(|c| {
            !matches!(
                c,
                Change::Put(Record::Audit(_) | Record::AuditHead(_))
                    | Change::Delete(RecordKey::Audit(_))
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (a) The same commands applied to two fresh states give the same outcomes, the same
    /// changes and the same records.
    #[test]
    fn apply_is_deterministic(cmds in arb_commands(40)) {
        let mut a = State::new();
        let mut b = State::new();
        for cmd in &cmds {
            let x = a.apply(cmd);
            let y = b.apply(cmd);
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(records(&a), records(&b));
        prop_assert_eq!(&a, &b);
    }

    /// (b) A state rebuilt from its records equals the state, answers every read the same way,
    /// and keeps giving the same outcomes to whatever comes next.
    #[test]
    fn records_round_trip(before in arb_commands(40), after in arb_commands(15)) {
        let mut state = State::new();
        for cmd in &before {
            state.apply(cmd);
        }
        let mut restored = State::from_records(state.records());
        prop_assert_eq!(records(&restored), records(&state));
        prop_assert_eq!(reads(&restored), reads(&state));
        prop_assert_eq!(&restored, &state);
        for cmd in &after {
            prop_assert_eq!(restored.apply(cmd), state.apply(cmd));
        }
        prop_assert_eq!(&restored, &state);
    }

    /// (c) The change lists are complete: a store that only ever sees the changes holds, after
    /// every command, exactly the records of the state. Also checks the shape of each change
    /// list: a duplicate request changes nothing, a refusal only remembers its request, and the
    /// remembered outcome is the returned one.
    #[test]
    fn changes_replay_to_the_same_state(cmds in arb_commands(40)) {
        let mut state = State::new();
        let mut store = Store::default();
        for cmd in &cmds {
            let duplicate = state.remembered(&cmd.request_id).cloned();
            let Applied { outcome, changes } = state.apply(cmd);
            store.apply(&changes);
            let loaded = store.load();
            prop_assert_eq!(records(&loaded), records(&state));
            prop_assert_eq!(&loaded, &state);
            prop_assert!(request_count(&state) as u64 <= REQUEST_WINDOW);

            if let Some(first) = duplicate {
                prop_assert_eq!(&outcome, &first);
                prop_assert!(changes.is_empty(), "a duplicate request changed {:?}", changes);
                continue;
            }
            let remembered = changes.iter().find_map(|c| match c {
                Change::Put(Record::Request(q)) if q.id == cmd.request_id => Some(q.outcome.clone()),
                _ => None,
            });
            prop_assert_eq!(remembered.as_ref(), Some(&outcome));
            // Every command that is not a retry leaves exactly one audit record (these commands
            // are neither ReplaceReplicas nor RecordDenials), chained onto the previous one.
            let audited: Vec<&AuditRecord> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Put(Record::Audit(r)) => Some(r),
                    _ => None,
                })
                .collect();
            prop_assert_eq!(audited.len(), 1, "{:?}", changes);
            prop_assert!(audited[0].hash_is_valid());
            prop_assert_eq!(audited[0].seq, state.audit_head().last_seq());
            prop_assert_eq!(audited[0].hash, state.audit_head().last_hash);
            if matches!(outcome, Outcome::Refused(_)) {
                let rest = without_audit(&changes);
                prop_assert_eq!(rest.len(), 1, "a refusal changed more than its request: {:?}", changes);
            }
        }
    }
}

/// `cmds` cut into consecutive batches of the given sizes (cycled), as the leader's group
/// commit would propose them.
fn batched(cmds: &[Command], sizes: &[usize]) -> Vec<Command> {
    let mut out = Vec::new();
    let mut rest = cmds;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        out.push(Command {
            request_id: RequestId(format!("batch-{i}")),
            identity: Identity::internal_admin("custos-node-1"),
            time_ms: 0,
            origin: NodeId(1),
            op: Op::Batch {
                commands: head.to_vec(),
            },
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (d) Group commit is invisible: the same commands applied one by one and in batches of any
    /// sizes give each command the same outcome and leave the same state, the same records and
    /// the same audit chain; replaying a batch's changes gives that state too.
    #[test]
    fn batches_apply_like_their_commands_one_by_one(
        cmds in arb_commands(40),
        sizes in vec(1usize..8, 1..6),
    ) {
        let mut single = State::new();
        let alone: Vec<Outcome> = cmds.iter().map(|c| single.apply(c).outcome).collect();
        let mut grouped = State::new();
        let mut store = Store::default();
        let mut together = Vec::new();
        for batch in batched(&cmds, &sizes) {
            let Applied { outcome, changes } = grouped.apply(&batch);
            store.apply(&changes);
            match outcome {
                Outcome::Applied(Reply::Batch { outcomes }) => together.extend(outcomes),
                other => prop_assert!(false, "a batch answered {:?}", other),
            }
        }
        prop_assert_eq!(together, alone);
        prop_assert_eq!(records(&grouped), records(&single));
        prop_assert_eq!(&grouped, &single);
        prop_assert_eq!(&store.load(), &single);
    }
}

/// The volume invariants apply keeps, whatever the commands: lineage never dangles, a snapshot
/// is a detached child of a non-snapshot, mounts imply an attachment, the device path is set
/// exactly while attached, names of volumes and clones are unique and every volume has a size and an HA level; usage
/// records name existing volumes and registered nodes.
fn check_invariants(state: &State) -> Result<(), TestCaseError> {
    let volumes: Vec<_> = state
        .records()
        .filter_map(|r| match r {
            Record::Volume(v) => Some(v),
            _ => None,
        })
        .collect();
    let mut names = std::collections::BTreeSet::new();
    for v in &volumes {
        // Names of volumes and clones are unique; snapshot names may repeat (as upstream).
        prop_assert!(
            v.snapshot || names.insert(v.name.clone()),
            "duplicate name {}",
            v.name
        );
        prop_assert!(v.spec.size >= 1 && v.spec.ha_level >= 1, "{:?}", v);
        if let Some(p) = &v.parent {
            let parent = state.volume(p);
            prop_assert!(parent.is_some(), "{} names a missing parent {}", v.id, p);
            if v.snapshot {
                prop_assert!(
                    !parent.is_some_and(|p| p.snapshot),
                    "snapshot of a snapshot: {:?}",
                    v
                );
            }
        }
        prop_assert!(
            !v.snapshot || v.parent.is_some(),
            "snapshot without parent: {:?}",
            v
        );
        prop_assert!(
            !v.snapshot || !v.is_attached(),
            "attached snapshot: {:?}",
            v
        );
        prop_assert!(
            v.mount_paths.is_empty() || v.is_attached(),
            "mounted, not attached: {:?}",
            v
        );
        prop_assert!(!v.mount_paths.contains(""), "empty mount path: {:?}", v);
        prop_assert_eq!(v.is_attached(), !v.device_path.is_empty(), "{:?}", v);
        prop_assert!(
            v.attached_on.as_ref().is_none_or(|n| !n.is_empty()),
            "{:?}",
            v
        );
        prop_assert!(
            v.restored_from.is_none() || !v.snapshot,
            "restored snapshot: {:?}",
            v
        );
        // Volumes and clones are found by name; snapshot names repeat and are not indexed.
        if v.snapshot {
            prop_assert!(state.volume_by_name(&v.name).is_none_or(|x| !x.snapshot));
        } else {
            prop_assert_eq!(state.volume_by_name(&v.name).map(|x| &x.id), Some(&v.id));
        }
    }
    for r in state.records() {
        if let Record::Usage { volume, node, .. } = r {
            prop_assert!(
                state.volume(&volume).is_some(),
                "usage of missing {}",
                volume
            );
            prop_assert!(
                state.node(node).is_some(),
                "usage from unregistered {}",
                node
            );
        }
    }
    check_placement_invariants(state, &volumes)
}

/// The placement invariants: replicas are distinct registered nodes, as many as the HA level
/// (or none, under the bootstrap rule); a snapshot has its volume's replicas; the load index is
/// the sum of the sizes placed; `volumes_on` agrees with the replica lists.
fn check_placement_invariants(
    state: &State,
    volumes: &[custos_model::Volume],
) -> Result<(), TestCaseError> {
    let mut load: BTreeMap<NodeId, u64> = BTreeMap::new();
    for v in volumes {
        let distinct: BTreeSet<_> = v.replicas.iter().collect();
        prop_assert_eq!(
            distinct.len(),
            v.replicas.len(),
            "duplicate replica: {:?}",
            v
        );
        for r in &v.replicas {
            prop_assert!(
                state.node(*r).is_some(),
                "replica on an unknown node: {:?}",
                v
            );
            prop_assert!(state.volumes_on(*r).iter().any(|x| x.id == v.id), "{:?}", v);
        }
        if v.snapshot {
            let parent = v.parent.as_ref().and_then(|p| state.volume(p));
            prop_assert_eq!(
                Some(&v.replicas),
                parent.map(|p| &p.replicas),
                "a snapshot's replicas differ from its volume's: {:?}",
                v
            );
        } else {
            prop_assert!(
                v.replicas.is_empty() || v.replicas.len() as i64 == v.spec.ha_level,
                "replicas do not match the HA level: {:?}",
                v
            );
            for r in &v.replicas {
                *load.entry(*r).or_default() += v.spec.size;
            }
        }
    }
    for id in NODE_IDS
        .iter()
        .map(|i| NodeId(*i))
        .chain(state.nodes().map(|n| n.id))
    {
        prop_assert_eq!(
            state.node_load(id),
            load.get(&id).copied().unwrap_or(0),
            "node {}",
            id
        );
        for v in state.volumes_on(id) {
            prop_assert!(v.replicas.contains(&id));
        }
    }
    Ok(())
}

/// What one applied command may do to nodes and placement, seen from the states before and
/// after it:
/// - no node's load rises above its capacity (a node may be over capacity only because a
///   re-registration lowered it, and then its load does not rise);
/// - a cordoned node takes no new attachment; a drained node has none left;
/// - a re-placement moves exactly the replicas it reports, off the node and onto nodes that are
///   neither down nor the node, and leaves the volumes it reports stuck untouched;
/// - a registration records what the node reports and keeps `cordoned` and `registered_ms`.
fn check_step(
    before: &State,
    cmd: &Command,
    outcome: &Outcome,
    after: &State,
) -> Result<(), TestCaseError> {
    for node in after.nodes() {
        let load = after.node_load(node.id);
        prop_assert!(
            load <= node.capacity_bytes || load <= before.node_load(node.id),
            "node {} pushed over capacity: {} of {} bytes by {:?}",
            node.id,
            load,
            node.capacity_bytes,
            cmd.op
        );
    }
    let Outcome::Applied(reply) = outcome else {
        let domain = |s: &State| -> Vec<Record> {
            s.records()
                .filter(|r| !matches!(r, Record::Request(_) | Record::AuditHead(_)))
                .collect()
        };
        prop_assert_eq!(domain(after), domain(before), "a refusal changed the state");
        return Ok(());
    };
    match (&cmd.op, reply) {
        (Op::AttachVolume { id, node }, _) => {
            let cordoned = node
                .parse::<u64>()
                .ok()
                .and_then(|n| before.node(NodeId(n)))
                .is_some_and(|n| n.cordoned);
            if cordoned {
                prop_assert_eq!(
                    before.volume(id).and_then(|v| v.attached_on.as_deref()),
                    Some(node.as_str()),
                    "new attachment on cordoned node {}",
                    node
                );
            }
        }
        (Op::DrainNode { id }, Reply::Drained { detached }) => {
            let name = id.to_string();
            for v in before.volume_ids_for_test() {
                let was = before.volume(&v).and_then(|v| v.attached_on.clone());
                let now = after.volume(&v).and_then(|v| v.attached_on.clone());
                prop_assert_ne!(now.as_deref(), Some(name.as_str()));
                prop_assert_eq!(detached.contains(&v), was.as_deref() == Some(name.as_str()));
            }
        }
        (Op::ReplaceReplicas { node, down }, Reply::ReplicasReplaced { moved, stuck }) => {
            for v in before.volume_ids_for_test() {
                let (old, new) = (before.volume(&v).unwrap(), after.volume(&v).unwrap());
                let m = moved.iter().find(|m| m.volume == v);
                let s = stuck.iter().find(|s| s.volume == v);
                if old.snapshot || !old.replicas.contains(node) {
                    prop_assert!(m.is_none() && s.is_none());
                    if !old.snapshot {
                        prop_assert_eq!(&old.replicas, &new.replicas);
                    }
                    continue;
                }
                match (m, s) {
                    (Some(m), None) => {
                        prop_assert!(!new.replicas.contains(node));
                        prop_assert!(new.replicas.contains(&m.to));
                        prop_assert!(!down.contains(&m.to) && m.to != *node);
                        prop_assert_eq!(old.replicas.len(), new.replicas.len());
                    }
                    (None, Some(s)) => {
                        prop_assert_eq!(old, new);
                        prop_assert!(matches!(
                            s.reason.code,
                            Code::ResourceExhausted | Code::FailedPrecondition
                        ));
                    }
                    _ => prop_assert!(false, "{} neither moved nor stuck exactly once", v),
                }
            }
        }
        (Op::ReportUsage { node, volumes }, Reply::UsageRecorded { ignored }) => {
            let expected: Vec<(VolumeId, VolumeUsage)> = volumes
                .iter()
                .filter(|(v, _)| before.volume(v).is_some())
                .map(|(v, u)| {
                    let u = VolumeUsage {
                        reported_ms: cmd.time_ms,
                        ..u.clone()
                    };
                    (v.clone(), u)
                })
                .collect();
            prop_assert_eq!(after.node_usage(*node), expected);
            let unknown: Vec<VolumeId> = volumes
                .keys()
                .filter(|v| before.volume(v).is_none())
                .cloned()
                .collect();
            prop_assert_eq!(ignored, &unknown);
            for other in NODE_IDS.iter().map(|n| NodeId(*n)).filter(|n| n != node) {
                prop_assert_eq!(after.node_usage(other), before.node_usage(other));
            }
        }
        (Op::DeleteVolume { id }, _) if after.volume(id).is_none() => {
            prop_assert_eq!(after.volume_usage(id), None);
        }
        (Op::RegisterNode { node }, _) => {
            let rec = after.node(node.id).expect("registered");
            let mut expected = node.clone();
            match before.node(node.id) {
                Some(old) => {
                    expected.cordoned = old.cordoned;
                    expected.registered_ms = old.registered_ms;
                }
                None => {
                    expected.cordoned = false;
                    expected.registered_ms = cmd.time_ms;
                }
            }
            prop_assert_eq!(rec, &expected);
        }
        _ => {}
    }
    Ok(())
}

/// Test-side helper: every volume id of a state.
trait VolumeIds {
    fn volume_ids_for_test(&self) -> Vec<VolumeId>;
}

impl VolumeIds for State {
    fn volume_ids_for_test(&self) -> Vec<VolumeId> {
        self.records()
            .filter_map(|r| match r {
                Record::Volume(v) => Some(v.id),
                _ => None,
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (e) Over long volume lifecycles the volume and placement invariants hold after every
    /// command, each command keeps the node rules (`check_step`), the changes replay to the same
    /// state, and the records rebuild it.
    #[test]
    fn volume_invariants_hold(cmds in arb_lifecycle(150)) {
        let mut state = State::new();
        let mut store = Store::default();
        for cmd in &cmds {
            let before = state.clone();
            let applied = state.apply(cmd);
            store.apply(&applied.changes);
            check_invariants(&state)?;
            check_step(&before, cmd, &applied.outcome, &state)?;
        }
        prop_assert_eq!(&store.load(), &state);
        prop_assert_eq!(&State::from_records(state.records()), &state);
    }
}

/// A command that is always applied and changes nothing but the remembered request.
fn noop(i: u64) -> Command {
    Command {
        request_id: RequestId(format!("w{i}")),
        identity: user("root", vec!["system.admin"], vec![]),
        time_ms: i,
        origin: NodeId(1),
        op: Op::DeleteRole {
            name: "never-created".into(),
        },
    }
}

proptest! {
    // Each case applies more than REQUEST_WINDOW commands: keep the count small.
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    /// (d) The request window: never more than REQUEST_WINDOW remembered requests; past it,
    /// each new request evicts exactly the oldest one, in the same change list; the store
    /// replaying those changes agrees; evicted ids are no longer de-duplicated.
    #[test]
    fn request_window_is_bounded(extra in 1u64..40, retries in vec(0u64..40, 0..10)) {
        let window = REQUEST_WINDOW;
        let mut state = State::new();
        let mut store = Store::default();
        for i in 0..window + extra {
            let Applied { outcome, changes } = state.apply(&noop(i));
            prop_assert!(matches!(outcome, Outcome::Applied(_)));
            store.apply(&changes);
            let changes = without_audit(&changes);
            if i < window {
                prop_assert_eq!(changes.len(), 1);
            } else {
                let evicted = state::RecordKey::Request(RequestId(format!("w{}", i - window)));
                prop_assert_eq!(changes.len(), 2);
                prop_assert_eq!(changes[1], &Change::Delete(evicted));
            }
        }
        prop_assert_eq!(request_count(&state) as u64, window);
        prop_assert_eq!(store.requests() as u64, window);
        // The newest `window` ids are remembered, the older ones are gone.
        for i in 0..window + extra {
            let remembered = state.remembered(&RequestId(format!("w{i}"))).is_some();
            prop_assert_eq!(remembered, i >= extra, "w{}", i);
        }
        // An evicted id is no longer de-duplicated: it applies again, as the newest request,
        // and evicts the current oldest.
        let Applied { changes, .. } = state.apply(&noop(0));
        store.apply(&changes);
        prop_assert_eq!(without_audit(&changes).len(), 2);
        prop_assert!(state.remembered(&RequestId("w0".into())).is_some());
        let oldest = RequestId(format!("w{extra}"));
        prop_assert!(state.remembered(&oldest).is_none());
        // Retrying ids still in the window changes nothing.
        for r in retries {
            let Applied { changes, .. } = state.apply(&noop(extra + 1 + r));
            prop_assert!(changes.is_empty());
        }
        prop_assert_eq!(request_count(&state) as u64, window);
        let loaded = store.load();
        prop_assert_eq!(&loaded, &state);
        prop_assert_eq!(&State::from_records(state.records()), &state);
    }
}

// ---- placement (issue #4) ----

fn root() -> Identity {
    user("root", vec!["system.admin"], vec!["*"])
}

/// Applies `op` as `who` with a fresh request id; the outcome.
fn run(state: &mut State, seq: &mut u64, who: &Identity, op: Op) -> Outcome {
    *seq += 1;
    state
        .apply(&Command {
            request_id: RequestId(format!("p{seq}")),
            identity: who.clone(),
            time_ms: *seq,
            origin: NodeId(1),
            op,
        })
        .outcome
}

fn create_op(id: &str, size: u64, ha_level: i64) -> Op {
    Op::CreateVolume {
        id: VolumeId(id.to_string()),
        name: id.to_string(),
        spec: VolumeSpec {
            size,
            ha_level,
            ..VolumeSpec::default()
        },
        labels: BTreeMap::new(),
        acls: Acls::default(),
    }
}

/// Six nodes, two in each of three zones: random distinct ids, a random assignment of zones,
/// random racks, and a capacity that never limits (1,000 volumes of `size` fit on any node).
fn arb_six_nodes() -> impl Strategy<Value = (Vec<StorageNodeRecord>, u64)> {
    (
        subsequence((1u64..=40).collect::<Vec<_>>(), 6),
        Just(vec!["a", "a", "b", "b", "c", "c"]).prop_shuffle(),
        vec(select(RACKS), 6),
        1u64..=1_000_000_000,
    )
        .prop_map(|(ids, zones, racks, size)| {
            let nodes = ids
                .iter()
                .zip(zones)
                .zip(racks)
                .map(|((id, zone), rack)| node_record(*id, zone, rack, size * 1000))
                .collect();
            (nodes, size)
        })
}

/// A cluster of 1 to 7 nodes (ids 1..=n) with random zones, racks and capacities.
fn arb_cluster() -> impl Strategy<Value = Vec<StorageNodeRecord>> {
    vec((select(ZONES), select(RACKS), 0u64..2000), 1..8).prop_map(|nodes| {
        nodes
            .into_iter()
            .enumerate()
            .map(|(i, (zone, rack, capacity))| node_record(i as u64 + 1, zone, rack, capacity))
            .collect()
    })
}

const PLACED_IDS: &[&str] = &["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "w9"];

/// Commands that place, grow, shed, move and free replicas, with random sizes.
fn arb_placement_op() -> impl Strategy<Value = Op> {
    let id = || select(PLACED_IDS).prop_map(|id| VolumeId(id.to_string()));
    prop_oneof![
        5 => (select(PLACED_IDS), 1u64..800, 1i64..5).prop_map(|(id, size, ha)| create_op(id, size, ha)),
        3 => (id(), proptest::option::of(1u64..1200), proptest::option::of(1i64..5)).prop_map(
            |(id, size, ha_level)| Op::UpdateVolume {
                id,
                labels: BTreeMap::new(),
                update: VolumeUpdate { size, ha_level, ..VolumeUpdate::default() },
            }
        ),
        2 => id().prop_map(|id| Op::DeleteVolume { id }),
        1 => (id(), id()).prop_map(|(id, parent)| Op::CloneVolume {
            name: id.to_string(),
            id,
            parent,
            labels: BTreeMap::new(),
        }),
        1 => (id(), id()).prop_map(|(id, volume)| Op::CreateSnapshot {
            name: id.to_string(),
            id,
            volume,
            labels: BTreeMap::new(),
        }),
        2 => (1u64..8, subsequence((1u64..8).collect::<Vec<_>>(), 0..3)).prop_map(|(node, down)| {
            Op::ReplaceReplicas {
                node: NodeId(node),
                down: down.into_iter().map(NodeId).collect(),
            }
        }),
    ]
}

/// The input of one `placement::place` call over nodes 1..=n, and a permutation of the nodes.
#[derive(Debug, Clone)]
struct PlaceInput {
    nodes: Vec<StorageNodeRecord>,
    load: BTreeMap<NodeId, u64>,
    wanted: usize,
    size: u64,
    keep: Vec<NodeId>,
    exclude: BTreeSet<NodeId>,
    order: Vec<usize>,
}

fn arb_place_input() -> impl Strategy<Value = PlaceInput> {
    (1usize..9)
        .prop_flat_map(|n| {
            let ids: Vec<u64> = (1..=n as u64).collect();
            (
                vec((select(ZONES), select(RACKS), 0u64..100, 0u64..100), n),
                1..=n + 1,
                1u64..60,
                subsequence(ids.clone(), 0..=n).prop_shuffle(),
                subsequence(ids, 0..=n),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(nodes, wanted, size, keep, exclude, order)| {
            let mut load = BTreeMap::new();
            let nodes = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (zone, rack, capacity, placed))| {
                    let id = i as u64 + 1;
                    load.insert(NodeId(id), placed);
                    node_record(id, zone, rack, capacity)
                })
                .collect();
            let keep: Vec<NodeId> = keep.into_iter().take(wanted).map(NodeId).collect();
            PlaceInput {
                nodes,
                load,
                wanted,
                size,
                keep,
                exclude: exclude.into_iter().map(NodeId).collect(),
                order,
            }
        })
}

fn zone_of(nodes: &[StorageNodeRecord], id: NodeId) -> String {
    nodes
        .iter()
        .find(|n| n.id == id)
        .and_then(|n| n.zone())
        .unwrap_or("")
        .to_string()
}

proptest! {
    // Each case applies 1,000 creates: keep the count small.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// (f) Issue #4: 1,000 volumes of ha_level 2 over 6 nodes in 3 zones put no two replicas of
    /// a volume in one zone, and keep the busiest node (bytes placed; every volume has the same
    /// size) within 1.2x of the least busy.
    #[test]
    fn thousand_volumes_spread_and_balance((nodes, size) in arb_six_nodes()) {
        let mut state = State::new();
        let mut seq = 0;
        for node in &nodes {
            let out = run(&mut state, &mut seq, &root(), Op::RegisterNode { node: node.clone() });
            prop_assert_eq!(out, Outcome::Applied(Reply::Empty));
        }
        let alice = user("alice", vec!["system.user"], vec![]);
        for i in 0..1000 {
            let out = run(&mut state, &mut seq, &alice, create_op(&format!("v{i}"), size, 2));
            prop_assert!(matches!(out, Outcome::Applied(_)), "{:?}", out);
        }
        for i in 0..1000 {
            let v = state.volume(&VolumeId(format!("v{i}"))).unwrap();
            prop_assert_eq!(v.replicas.len(), 2);
            let zones: BTreeSet<String> = v.replicas.iter().map(|r| zone_of(&nodes, *r)).collect();
            prop_assert_eq!(zones.len(), 2, "two replicas of {} in one zone: {:?}", v.id, v.replicas);
        }
        let loads: Vec<u64> = nodes.iter().map(|n| state.node_load(n.id)).collect();
        let (min, max) = (*loads.iter().min().unwrap(), *loads.iter().max().unwrap());
        prop_assert_eq!(loads.iter().sum::<u64>(), 2000 * size);
        prop_assert!(min > 0 && u128::from(max) * 5 <= u128::from(min) * 6,
            "busiest {} > 1.2 x least busy {}: {:?}", max, min, loads);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// (g) Placement never exceeds a node's capacity: random clusters and volume sizes, with
    /// creates, growth, HA changes, clones, snapshots, deletes and re-placements. Every refusal
    /// of placement is ResourceExhausted or FailedPrecondition (or a volume-level refusal).
    #[test]
    fn placement_never_exceeds_capacity(
        nodes in arb_cluster(),
        ops in vec(arb_placement_op(), 0..60),
    ) {
        let mut state = State::new();
        let mut seq = 0;
        for node in &nodes {
            run(&mut state, &mut seq, &root(), Op::RegisterNode { node: node.clone() });
        }
        for op in ops {
            let before = state.clone();
            let cmd_op = op.clone();
            let outcome = run(&mut state, &mut seq, &root(), op);
            for n in state.nodes() {
                prop_assert!(state.node_load(n.id) <= n.capacity_bytes,
                    "node {} over capacity: {} > {} after {:?}",
                    n.id, state.node_load(n.id), n.capacity_bytes, cmd_op);
            }
            let cmd = Command {
                request_id: RequestId(format!("p{seq}")),
                identity: root(),
                time_ms: seq,
                origin: NodeId(1),
                op: cmd_op,
            };
            check_step(&before, &cmd, &outcome, &state)?;
            check_invariants(&state)?;
        }
    }

    /// (h) `placement::place` is a function of the cluster, not of the order nodes are listed
    /// in; it succeeds exactly when enough distinct eligible nodes have room; what it returns
    /// keeps `keep` first, is distinct, avoids excluded nodes and full nodes, and spans as many
    /// zones as possible. `placement::shed` keeps as many zones as possible too.
    #[test]
    fn place_is_deterministic_and_sound(input in arb_place_input()) {
        let PlaceInput { nodes, load, wanted, size, keep, exclude, order } = input;
        let sorted: Vec<&StorageNodeRecord> = nodes.iter().collect();
        let shuffled: Vec<&StorageNodeRecord> = order.iter().map(|i| &nodes[*i]).collect();
        let a = placement::place(&sorted, &load, wanted, size, &keep, &[], &exclude);
        let b = placement::place(&shuffled, &load, wanted, size, &keep, &[], &exclude);
        prop_assert_eq!(&a, &b);

        let free = |n: &StorageNodeRecord| n.capacity_bytes.saturating_sub(load[&n.id]);
        let fits: Vec<&StorageNodeRecord> = nodes
            .iter()
            .filter(|n| !exclude.contains(&n.id) && !keep.contains(&n.id) && free(n) >= size)
            .collect();
        let need = wanted - keep.len();
        let feasible = wanted <= nodes.len() && fits.len() >= need;
        match a {
            Ok(placed) => {
                prop_assert!(feasible);
                prop_assert_eq!(placed.len(), wanted);
                prop_assert_eq!(&placed[..keep.len()], &keep[..]);
                let distinct: BTreeSet<_> = placed.iter().collect();
                prop_assert_eq!(distinct.len(), placed.len());
                for id in &placed[keep.len()..] {
                    prop_assert!(fits.iter().any(|n| n.id == *id), "node {} is not eligible", id);
                }
                let kept_zones: BTreeSet<String> = keep.iter().map(|k| zone_of(&nodes, *k)).collect();
                let new_zones: BTreeSet<String> = fits
                    .iter()
                    .map(|n| zone_of(&nodes, n.id))
                    .filter(|z| !kept_zones.contains(z))
                    .collect();
                let zones: BTreeSet<String> = placed.iter().map(|r| zone_of(&nodes, *r)).collect();
                prop_assert_eq!(zones.len(), kept_zones.len() + need.min(new_zones.len()));

                // Shedding back down keeps the spread.
                for target in 0..=placed.len() {
                    let kept = placement::shed(&shuffled, &load, &placed, target);
                    prop_assert_eq!(&kept, &placement::shed(&sorted, &load, &placed, target));
                    prop_assert_eq!(kept.len(), target);
                    prop_assert!(kept.iter().all(|k| placed.contains(k)));
                    let kz: BTreeSet<String> = kept.iter().map(|r| zone_of(&nodes, *r)).collect();
                    prop_assert_eq!(kz.len(), target.min(zones.len()));
                }
            }
            Err(e) => {
                prop_assert!(!feasible, "refused a feasible placement: {}", e);
                prop_assert!(matches!(e.code, Code::ResourceExhausted | Code::FailedPrecondition), "{}", e);
            }
        }
    }
}

/// A batch never nests: the inner batch is refused without a record or a remembered request,
/// and the commands around it apply.
#[test]
fn a_batch_inside_a_batch_is_refused_and_leaves_no_trace() {
    let inner = batched(&[noop(2)], &[1]).remove(0);
    let outer = batched(&[noop(1), inner, noop(3)], &[3]).remove(0);
    let mut state = State::new();
    let Applied { outcome, changes } = state.apply(&outer);
    let Outcome::Applied(Reply::Batch { outcomes }) = outcome else {
        panic!("a batch answered {outcome:?}");
    };
    assert!(matches!(outcomes[0], Outcome::Applied(_)));
    assert!(matches!(&outcomes[1], Outcome::Refused(r) if r.code == Code::InvalidArgument));
    assert!(matches!(outcomes[2], Outcome::Applied(_)));
    assert!(state.remembered(&RequestId("w2".into())).is_none());
    assert!(state.remembered(&RequestId("batch-1".into())).is_none());
    let audited = changes
        .iter()
        .filter(|c| matches!(c, Change::Put(Record::Audit(_))))
        .count();
    assert_eq!(audited, 2, "one record per applied command: {changes:?}");
}
