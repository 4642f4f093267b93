//! Property tests of the deterministic apply: determinism, persistence round trip, completeness
//! of the change lists, the volume invariants, and the bounded request window.
//!
//! Commands are drawn from small pools (a few users, names, ids, nodes, paths, role names and
//! request ids) so random sequences collide often: idempotent creates, clones and snapshots
//! sharing ids and names, attach/mount/detach in every order, ownership edits that change what
//! later commands may do, duplicate request ids, refusals of every kind.

use std::collections::BTreeMap;

use custos_model::identity::Identity;
use custos_model::ownership::{AccessType, Acls, Ownership};
use custos_model::role::{Role, Rule};
use custos_model::state::{self, Applied, Change, Record, State, VolumeFilter, REQUEST_WINDOW};
use custos_model::{Command, NodeId, Op, Outcome, RequestId, VolumeId, VolumeSpec, VolumeUpdate};
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
const NODES: &[&str] = &["n1", "n1", "n2", ""];
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

fn arb_op() -> impl Strategy<Value = Op> {
    let create = (
        select(VOLUME_IDS),
        select(VOLUME_NAMES),
        prop_oneof![9 => 1u64..3, 1 => Just(0u64)],
        0i64..3,
        any::<bool>(),
        arb_acls(),
    )
        .prop_map(
            |(id, name, size, ha_level, shared, acls)| Op::CreateVolume {
                id: VolumeId(id.to_string()),
                name: name.to_string(),
                spec: VolumeSpec {
                    size,
                    ha_level,
                    shared,
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

/// Long volume lifecycles: unique request ids (no retries) and callers that mostly may act
/// (alice, bob in group g1, an ownership administrator, the guest), so creates, snapshots,
/// attachments, mounts and restores build on each other.
fn arb_lifecycle(max: usize) -> impl Strategy<Value = Vec<Command>> {
    let identity = prop_oneof![
        6 => Just(user("alice", vec!["system.user"], vec![])),
        2 => Just(user("bob", vec!["system.user"], vec!["g1"])),
        1 => Just(user("root", vec!["system.admin"], vec!["*"])),
        1 => Just(Identity::guest()),
    ];
    vec((identity, 0u64..10_000, arb_op()), 0..max).prop_map(|cmds| {
        cmds.into_iter()
            .enumerate()
            .map(|(i, (identity, time_ms, op))| Command {
                request_id: RequestId(format!("l{i}")),
                identity,
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
                state.check_volume_access(who, &id, AccessType::Write)
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
            if matches!(outcome, Outcome::Refused(_)) {
                prop_assert_eq!(changes.len(), 1, "a refusal changed more than its request: {:?}", changes);
            }
        }
    }
}

/// The volume invariants apply keeps, whatever the commands: lineage never dangles, a snapshot
/// is a detached child of a non-snapshot, mounts imply an attachment, the device path is set
/// exactly while attached, names are unique and every volume has a size and an HA level.
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
        prop_assert!(names.insert(v.name.clone()), "duplicate name {}", v.name);
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
        prop_assert_eq!(state.volume_by_name(&v.name).map(|x| &x.id), Some(&v.id));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (e) Over long volume lifecycles the volume invariants hold after every command, the
    /// changes replay to the same state, and the records rebuild it.
    #[test]
    fn volume_invariants_hold(cmds in arb_lifecycle(150)) {
        let mut state = State::new();
        let mut store = Store::default();
        for cmd in &cmds {
            store.apply(&state.apply(cmd).changes);
            check_invariants(&state)?;
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
            if i < window {
                prop_assert_eq!(changes.len(), 1);
            } else {
                let evicted = state::RecordKey::Request(RequestId(format!("w{}", i - window)));
                prop_assert_eq!(changes.len(), 2);
                prop_assert_eq!(&changes[1], &Change::Delete(evicted));
            }
        }
        prop_assert_eq!(request_count(&state) as u64, window);
        prop_assert_eq!(store.0.len() as u64, window);
        // The newest `window` ids are remembered, the older ones are gone.
        for i in 0..window + extra {
            let remembered = state.remembered(&RequestId(format!("w{i}"))).is_some();
            prop_assert_eq!(remembered, i >= extra, "w{}", i);
        }
        // An evicted id is no longer de-duplicated: it applies again, as the newest request,
        // and evicts the current oldest.
        let Applied { changes, .. } = state.apply(&noop(0));
        store.apply(&changes);
        prop_assert_eq!(changes.len(), 2);
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
