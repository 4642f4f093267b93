//! custos wire types: prost messages and tonic clients/servers for the OpenStorage SDK
//! (`openstorage.api`, 0.101.39), the node-to-node Raft transport (`custos.raft.v1`) and cluster
//! administration (`custos.admin.v1`), generated at build time from `proto/` without protoc.

/// The OpenStorage SDK packages.
pub mod openstorage {
    /// `openstorage.api`: the SDK services custos serves and every message they reach.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/openstorage.api.rs"));
        // serde::Serialize and Deserialize in proto3 JSON (see build.rs), for the REST gateway.
        include!(concat!(env!("OUT_DIR"), "/openstorage.api.serde.rs"));
    }
}

/// custos' own packages.
pub mod custos {
    /// Node-to-node Raft transport.
    pub mod raft {
        /// `custos.raft.v1`.
        #[allow(clippy::all, clippy::pedantic)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/custos.raft.v1.rs"));
        }
    }

    /// Operator-facing cluster administration.
    pub mod admin {
        /// `custos.admin.v1`.
        #[allow(clippy::all, clippy::pedantic)]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/custos.admin.v1.rs"));
            // proto3 JSON (see build.rs), for the REST gateway's custos routes (the console's
            // reads and `Access.Explain`).
            include!(concat!(env!("OUT_DIR"), "/custos.admin.v1.serde.rs"));
        }
    }
}

/// A client-only subset of etcd v3's API (`etcdserverpb`: `KV.Put`, `KV.Range`,
/// `Maintenance.Status`, `Auth.Authenticate`), for the side-by-side benchmark against etcd.
/// Not served by custos and not part of [`FILE_DESCRIPTOR_SET`].
pub mod etcd {
    /// `etcdserverpb`.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }
}

pub mod convert;
pub mod convert_policy;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod json;

/// The encoded `google.protobuf.FileDescriptorSet` of every compiled proto file (imports
/// included, with source info), for gRPC reflection and the descriptor comparison test.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor_set.bin"));

/// The full gRPC names (`/openstorage.api.OpenStorageVolume/Create`) of every method of the
/// served packages (`openstorage.api`, `custos.admin.v1`), from the descriptor set.
pub fn served_methods() -> Vec<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    set.file
        .iter()
        .filter(|f| matches!(f.package(), "openstorage.api" | "custos.admin.v1"))
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::collections::BTreeMap;

    fn descriptor_set() -> prost_types::FileDescriptorSet {
        prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
    }

    #[test]
    fn descriptor_set_holds_the_three_packages() {
        let set = descriptor_set();
        let packages: Vec<&str> = set.file.iter().map(|f| f.package()).collect();
        for package in ["openstorage.api", "custos.raft.v1", "custos.admin.v1"] {
            assert!(
                packages.contains(&package),
                "{package} missing from {packages:?}"
            );
        }
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/timestamp.proto"),
            "imports are included"
        );
    }

    #[test]
    fn openstorage_file_defines_exactly_the_served_services() {
        let set = descriptor_set();
        let api = set
            .file
            .iter()
            .find(|f| f.package() == "openstorage.api")
            .unwrap();
        let services: BTreeMap<&str, usize> = api
            .service
            .iter()
            .map(|s| (s.name(), s.method.len()))
            .collect();
        let expected: BTreeMap<&str, usize> = [
            ("OpenStorageCluster", 1),
            ("OpenStorageIdentity", 2),
            ("OpenStorageMountAttach", 4),
            ("OpenStorageNode", 8),
            ("OpenStorageRole", 5),
            ("OpenStorageSchedulePolicy", 5),
            ("OpenStoragePolicy", 8),
            ("OpenStorageVolume", 16),
            ("OpenStorageCredentials", 7),
            ("OpenStorageAlerts", 2),
        ]
        .into();
        assert_eq!(services, expected);
    }

    #[test]
    fn volume_create_request_round_trips() {
        use openstorage::api::{
            volume_spec_update, CosType, Ownership, SdkVolumeCreateRequest, SdkVolumeUpdateRequest,
            VolumeSpec, VolumeSpecUpdate,
        };
        let request = SdkVolumeCreateRequest {
            name: "vol-1".into(),
            spec: Some(VolumeSpec {
                size: 1 << 30,
                ha_level: 3,
                cos: CosType::High as i32,
                shared: true,
                ownership: Some(Ownership {
                    owner: "alice".into(),
                    acls: None,
                }),
                ..Default::default()
            }),
            labels: [("team".to_string(), "storage".to_string())].into(),
        };
        let bytes = request.encode_to_vec();
        assert_eq!(
            SdkVolumeCreateRequest::decode(bytes.as_slice()).unwrap(),
            request
        );

        let update = SdkVolumeUpdateRequest {
            volume_id: "vol-1".into(),
            labels: Default::default(),
            spec: Some(VolumeSpecUpdate {
                size_opt: Some(volume_spec_update::SizeOpt::Size(2 << 30)),
                shared_opt: Some(volume_spec_update::SharedOpt::Shared(false)),
                ..Default::default()
            }),
        };
        let decoded = SdkVolumeUpdateRequest::decode(update.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, update);
        // A oneof set to its default value is still present on the wire.
        let spec = decoded.spec.unwrap();
        assert_eq!(
            spec.shared_opt,
            Some(volume_spec_update::SharedOpt::Shared(false))
        );
        assert_eq!(spec.ha_level_opt, None);
    }

    #[test]
    fn raft_and_admin_messages_round_trip() {
        let propose = custos::raft::v1::ProposeRequest {
            from: 1,
            target: 2,
            command: vec![1, 2, 3],
        };
        let bytes = propose.encode_to_vec();
        assert_eq!(
            custos::raft::v1::ProposeRequest::decode(bytes.as_slice()).unwrap(),
            propose
        );

        let status = custos::admin::v1::StatusReply {
            node_id: 1,
            leader_id: 1,
            state: "Leader".into(),
            members: vec![custos::admin::v1::Member {
                id: 1,
                raft_addr: "127.0.0.1:7000".into(),
                sdk_addr: "127.0.0.1:9100".into(),
                voter: true,
            }],
            serving: true,
            ..Default::default()
        };
        let bytes = status.encode_to_vec();
        assert_eq!(
            custos::admin::v1::StatusReply::decode(bytes.as_slice()).unwrap(),
            status
        );
    }

    #[test]
    fn sdk_version_enum_keeps_the_wire_numbers() {
        use openstorage::api::sdk_version::Version;
        assert_eq!(Version::Minor as i32, 101);
        assert_eq!(Version::Patch as i32, 39);
    }

    /// The etcd subset must keep etcd's field numbers: a typo would still compile and etcd would
    /// silently ignore the field (a "serializable" read would be linearizable).
    #[test]
    fn etcd_subset_keeps_etcds_field_numbers() {
        use etcd::etcdserverpb::{AuthenticateRequest, PutRequest, RangeRequest};
        let range = RangeRequest {
            key: b"k".to_vec(),
            serializable: true,
            ..Default::default()
        };
        // field 1 (bytes) "k", field 7 (varint) 1.
        assert_eq!(range.encode_to_vec(), vec![0x0a, 1, b'k', 0x38, 1]);
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        assert_eq!(put.encode_to_vec(), vec![0x0a, 1, b'k', 0x12, 1, b'v']);
        let auth = AuthenticateRequest {
            name: "u".into(),
            password: "p".into(),
        };
        assert_eq!(auth.encode_to_vec(), vec![0x0a, 1, b'u', 0x12, 1, b'p']);
        // Not part of the descriptor set custos serves (reflection must not list etcd).
        let packages: Vec<String> = descriptor_set()
            .file
            .iter()
            .map(|f| f.package().to_string())
            .collect();
        assert!(
            !packages.iter().any(|p| p == "etcdserverpb"),
            "{packages:?}"
        );
    }
}
