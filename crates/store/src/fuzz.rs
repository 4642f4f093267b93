//! Fuzz target of the value codec every persisted value goes through (feature `fuzz`): [`codec`].
//!
//! The bytes are decoded as a log entry, a command, an outcome, snapshot data, a vote, a log id
//! or a membership. A decode error is a clean refusal; a decoded value must encode, decode back
//! to an equal value, and encode again to the same bytes. Length fields claiming more than the
//! input holds must be errors, never allocations that abort the process.

use crate::codec::{decode, encode, VALUE_FORMAT};
use crate::{Entry, LogId, StoredMembership, Vote};
use custos_model::audit::{AuditActor, Denial};
use custos_model::fuzz::Input;
use custos_model::{
    AccessType, Acls, Command, Identity, NodeId, Op, Outcome, Record, Rejection, Reply, RequestId,
    Volume, VolumeId, VolumeSpec,
};
use openraft::EntryPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    what: &'static str,
    bytes: &[u8],
) -> bool {
    let Ok(value) = decode::<T>(what, bytes) else {
        return false;
    };
    let encoded = encode(what, &value).expect("a decoded value encodes");
    let again: T =
        decode(what, &encoded).unwrap_or_else(|e| panic!("{value:?} does not decode back: {e}"));
    assert_eq!(again, value, "{what} round trip");
    assert_eq!(
        encode(what, &again).unwrap(),
        encoded,
        "{what}: encoding is not stable"
    );
    true
}

/// The codec target (see the module docs).
pub fn codec(data: &[u8]) -> u64 {
    let mut u = Input::new(data);
    let kind = u.byte() % 9;
    // Most inputs get the right version byte, so they reach the value decoder.
    let body = u.rest();
    let bytes = if kind == 8 {
        body.to_vec()
    } else {
        [&[VALUE_FORMAT][..], body].concat()
    };
    let ok = match kind {
        0 => round_trip::<Entry>("log entry", &bytes),
        1 => round_trip::<Command>("command", &bytes),
        2 => round_trip::<Outcome>("outcome", &bytes),
        3 => round_trip::<Vec<Record>>("snapshot data", &bytes),
        4 => round_trip::<Vote>("vote", &bytes),
        5 => round_trip::<Option<LogId>>("log id", &bytes),
        6 => round_trip::<StoredMembership>("membership", &bytes),
        7 => round_trip::<Record>("record", &bytes),
        _ => round_trip::<Entry>("log entry", &bytes),
    };
    u64::from(kind) << 1 | u64::from(ok)
}

fn sample_commands() -> Vec<Command> {
    let identity = Identity {
        username: "alice".into(),
        subject: "alice".into(),
        name: "Alice".into(),
        email: "a@x".into(),
        issuer: "custos-dev".into(),
        roles: vec!["system.user".into()],
        groups: vec!["eng".into()],
        guest: false,
        fingerprint: "0123456789ab".into(),
        token_id: String::new(),
        issued_at: 0,
    };
    let command = |op| Command {
        request_id: RequestId("custos-dev/alice/r1".into()),
        identity: identity.clone(),
        time_ms: 1_700_000_000_123,
        origin: NodeId(2),
        op,
    };
    let spec = VolumeSpec {
        size: 1 << 30,
        ha_level: 2,
        shared: true,
        snapshot_schedule: "periodic=60".into(),
        volume_labels: [("k".to_string(), "v".to_string())].into_iter().collect(),
        replica_nodes: vec!["1".into()],
        ..VolumeSpec::default()
    };
    vec![
        command(Op::CreateVolume {
            id: VolumeId("v1".into()),
            name: "vol".into(),
            spec,
            labels: [("a".to_string(), "b".to_string())].into_iter().collect(),
            acls: Acls {
                groups: [("eng".to_string(), AccessType::Write)]
                    .into_iter()
                    .collect(),
                collaborators: Default::default(),
                public: Some(AccessType::Read),
            },
        }),
        command(Op::CreateRole {
            role: custos_model::role::builtin_roles().swap_remove(1),
        }),
        command(Op::RecordDenials {
            denials: vec![Denial {
                message: "Access denied".into(),
                actor: AuditActor {
                    username: "u".into(),
                    roles: vec!["system.view".into()],
                    ..AuditActor::default()
                },
                method: "volume.create".into(),
                objects: vec!["v1".into()],
                code: "PermissionDenied".into(),
                request_id: "q".into(),
                fingerprint: "0123456789ab".into(),
                count: 3,
            }],
        }),
        command(Op::TruncateAudit { through: 9 }),
    ]
}

/// Inputs to start from: encodings of real values of each kind (without the version byte,
/// which [`codec`] adds).
pub fn codec_seeds() -> Vec<Vec<u8>> {
    let tagged = |kind: u8, bytes: Vec<u8>| [vec![kind], bytes[1..].to_vec()].concat();
    let mut seeds = Vec::new();
    for (i, c) in sample_commands().into_iter().enumerate() {
        let log_id = crate::log_id(3, 1, 10 + i as u64);
        let entry: Entry = Entry {
            log_id,
            payload: EntryPayload::Normal(c.clone()),
        };
        seeds.push(tagged(0, encode("s", &entry).unwrap()));
        seeds.push(tagged(1, encode("s", &c).unwrap()));
    }
    let blank: Entry = Entry {
        log_id: crate::log_id(0, 0, 0),
        payload: EntryPayload::Blank,
    };
    seeds.push(tagged(0, encode("s", &blank).unwrap()));
    seeds.push(tagged(
        2,
        encode("s", &Outcome::Applied(Reply::Empty)).unwrap(),
    ));
    seeds.push(tagged(
        2,
        encode("s", &Outcome::Refused(Rejection::denied("no"))).unwrap(),
    ));
    let role = Record::Role(custos_model::role::builtin_roles().swap_remove(2));
    let volume = Record::Volume(Volume::new(
        VolumeId("v1".into()),
        "vol".to_string(),
        VolumeSpec::default(),
        Default::default(),
        None,
        5,
    ));
    seeds.push(tagged(
        3,
        encode("s", &vec![role.clone(), volume.clone()]).unwrap(),
    ));
    seeds.push(tagged(4, encode("s", &Vote::new_committed(4, 2)).unwrap()));
    seeds.push(tagged(
        5,
        encode("s", &Some(crate::log_id(4, 2, 77))).unwrap(),
    ));
    seeds.push(tagged(
        6,
        encode("s", &StoredMembership::default()).unwrap(),
    ));
    seeds.push(tagged(7, encode("s", &volume).unwrap()));
    seeds
}
