//! Fuzz target of the wire → model conversions (feature `fuzz`): [`convert`].
//!
//! The bytes are decoded as one of the messages clients send (protobuf, or proto3 JSON as the
//! REST gateway reads it). A decode error is the client's INVALID_ARGUMENT-class failure and
//! ends the input. A decoded message converts to the model; converting that back to the wire and
//! in again must give the same model value (the conversions lose nothing they keep), role
//! conversion must be lossless both ways, and the message must re-encode to an equal message.

use crate::convert::*;
use crate::custos::admin::v1 as admin;
use crate::openstorage::api;
use custos_model::fuzz::Input;
use prost::Message;

/// Decodes, re-encodes and decodes again: the two decoded messages are equal.
fn decode<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, m, "protobuf round trip");
    Some(m)
}

/// The same through proto3 JSON (pbjson), as the REST gateway reads bodies.
fn decode_json<M>(bytes: &[u8]) -> Option<M>
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let m: M = serde_json::from_slice(bytes).ok()?;
    let text = serde_json::to_vec(&m).expect("a decoded message serializes");
    let again: M = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{m:?} → {}: {e}", String::from_utf8_lossy(&text)));
    assert_eq!(again, m, "JSON round trip");
    Some(m)
}

fn spec_round_trip(spec: &api::VolumeSpec) {
    let model = spec_from_proto(spec);
    assert_eq!(
        spec_from_proto(&spec_to_proto(&model, None)),
        model,
        "spec of {spec:?}"
    );
    if let Some(o) = &spec.ownership {
        let ownership = ownership_from_proto(o);
        assert_eq!(
            ownership_from_proto(&ownership_to_proto(&ownership)),
            ownership,
            "{o:?}"
        );
        assert_eq!(acls_from_proto(Some(o)), ownership.acls);
    }
}

fn role_round_trip(role: &api::SdkRole) {
    let model = role_from_proto(role);
    assert_eq!(&role_to_proto(&model), role, "roles convert losslessly");
    assert_eq!(role_from_proto(&role_to_proto(&model)), model);
}

fn update_round_trip(u: &api::VolumeSpecUpdate) {
    let model = update_from_proto(u);
    assert_eq!(update_from_proto(&update_to_proto(&model)), model, "{u:?}");
}

/// The conversion target (see the module docs).
pub fn convert(data: &[u8]) -> u64 {
    let mut u = Input::new(data);
    let kind = u.byte() % 9;
    let bytes = u.rest();
    let decoded = match kind {
        0 => decode::<api::SdkVolumeCreateRequest>(bytes)
            .map(|m| spec_round_trip(&m.spec.unwrap_or_default())),
        1 => decode::<api::SdkVolumeUpdateRequest>(bytes)
            .map(|m| update_round_trip(&m.spec.unwrap_or_default())),
        2 => decode::<api::SdkRoleCreateRequest>(bytes)
            .map(|m| role_round_trip(&m.role.unwrap_or_default())),
        3 => decode::<api::Volume>(bytes).map(|v| {
            let model = volume_from_proto(&v);
            assert_eq!(
                volume_from_proto(&volume_to_proto(&model)),
                model,
                "volume of {v:?}"
            );
        }),
        4 => decode::<admin::AuditRecord>(bytes).map(|r| {
            let model = audit_record_from_proto(&r);
            assert_eq!(
                audit_record_from_proto(&audit_record_to_proto(&model)),
                model,
                "{r:?}"
            );
        }),
        5 => decode::<admin::AuditFilter>(bytes).map(|f| {
            let q = audit_query_from_proto(Some(&f));
            assert_eq!(
                audit_query_from_proto(Some(&audit_query_to_proto(&q))),
                q,
                "{f:?}"
            );
        }),
        6 => decode_json::<api::SdkVolumeCreateRequest>(bytes)
            .map(|m| spec_round_trip(&m.spec.unwrap_or_default())),
        7 => decode_json::<api::SdkRoleCreateRequest>(bytes)
            .map(|m| role_round_trip(&m.role.unwrap_or_default())),
        _ => decode_json::<api::SdkVolumeUpdateRequest>(bytes)
            .map(|m| update_round_trip(&m.spec.unwrap_or_default())),
    };
    u64::from(kind) << 1 | u64::from(decoded.is_some())
}

/// Inputs to start from: valid messages of each kind.
pub fn convert_seeds() -> Vec<Vec<u8>> {
    use api::ownership::{AccessControl, PublicAccessControl};
    let ownership = api::Ownership {
        owner: "alice".into(),
        acls: Some(AccessControl {
            groups: [("eng".to_string(), 1)].into_iter().collect(),
            collaborators: [("bob".to_string(), 2)].into_iter().collect(),
            public: Some(PublicAccessControl { r#type: 0 }),
        }),
    };
    let spec = api::VolumeSpec {
        size: 1 << 30,
        ha_level: 2,
        shared: true,
        snapshot_schedule: "periodic=60".into(),
        volume_labels: [("a".to_string(), "b".to_string())].into_iter().collect(),
        replica_set: Some(api::ReplicaSet {
            nodes: vec!["1".into(), "x".into()],
            ..Default::default()
        }),
        ownership: Some(ownership.clone()),
        ..Default::default()
    };
    let create = api::SdkVolumeCreateRequest {
        name: "v".into(),
        spec: Some(spec.clone()),
        labels: Default::default(),
    };
    let role = api::SdkRole {
        name: "ops".into(),
        rules: vec![api::SdkRule {
            services: vec!["volume".into(), "!role".into()],
            apis: vec!["*".into()],
        }],
    };
    let role_request = api::SdkRoleCreateRequest { role: Some(role) };
    let update = api::SdkVolumeUpdateRequest {
        volume_id: "v".into(),
        spec: Some(update_to_proto(&custos_model::VolumeUpdate {
            size: Some(5),
            shared: Some(false),
            ownership: Some(ownership_from_proto(&ownership)),
            ..Default::default()
        })),
        ..Default::default()
    };
    let volume = api::Volume {
        id: "v1".into(),
        spec: Some(spec),
        ctime: Some(pbjson_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        }),
        attached_on: "2".into(),
        replica_sets: vec![api::ReplicaSet {
            nodes: vec!["2".into(), "3".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    // Regression: a timestamp whose milliseconds overflow u64 (volume_from_proto panicked).
    let far = api::Volume {
        ctime: Some(pbjson_types::Timestamp {
            seconds: 1 << 62,
            nanos: -1,
        }),
        ..Default::default()
    };
    let record = admin::AuditRecord {
        seq: 3,
        level: "warning".into(),
        hash: "ab".repeat(32),
        ..Default::default()
    };
    let filter = admin::AuditFilter {
        username: "u".into(),
        from_seq: 4,
        ..Default::default()
    };
    let tagged = |kind: u8, bytes: Vec<u8>| [vec![kind], bytes].concat();
    vec![
        tagged(0, create.encode_to_vec()),
        tagged(1, update.encode_to_vec()),
        tagged(2, role_request.encode_to_vec()),
        tagged(3, volume.encode_to_vec()),
        tagged(3, far.encode_to_vec()),
        tagged(4, record.encode_to_vec()),
        tagged(5, filter.encode_to_vec()),
        tagged(6, serde_json::to_vec(&create).unwrap()),
        tagged(7, serde_json::to_vec(&role_request).unwrap()),
        tagged(8, serde_json::to_vec(&update).unwrap()),
    ]
}
