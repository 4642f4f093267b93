//! Build script: compiles `proto/` with protox (pure Rust, no system protoc), writes the encoded
//! `FileDescriptorSet` to `OUT_DIR`, and generates prost messages plus tonic clients and servers,
//! (with pbjson) the proto3 JSON mapping of the `openstorage.api` and `custos.admin.v1` messages
//! for the REST gateway,
//! and, apart from them, clients for the etcd v3 subset the benchmark load generator drives.

use std::error::Error;
use std::path::PathBuf;

/// The proto files custos compiles, relative to the repository's `proto/` directory.
const PROTOS: &[&str] = &[
    "openstorage/api.proto",
    "custos/raft/v1/raft.proto",
    "custos/admin/v1/admin.proto",
];

/// The etcd v3 subset for `custos bench etcd`: clients only, and kept out of the descriptor set
/// (custos does not serve it, so reflection must not list it).
const ETCD_PROTOS: &[&str] = &["etcd/etcdserverpb/rpc.proto"];

/// File name (inside `OUT_DIR`) of the encoded descriptor set that `lib.rs` embeds.
const DESCRIPTOR_SET: &str = "custos_descriptor_set.bin";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto_root = manifest_dir.join("..").join("..").join("proto");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    // Imports (google/protobuf/timestamp.proto) are kept so the set is self-contained for
    // gRPC reflection; source info carries the proto comments into the generated docs.
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(PROTOS)
        .map_err(|e| format!("compiling {}: {e:?}", proto_root.display()))?;

    std::fs::write(
        out_dir.join(DESCRIPTOR_SET),
        compiler.encode_file_descriptor_set(),
    )?;

    // No default method bodies: every method of a served service is written out, the ones
    // custos does not serve with an UNIMPLEMENTED answer that names them, so a method can never
    // be left out (or misspelt) silently.
    tonic_prost_build::configure()
        // Well-known types from pbjson-types: the same prost messages, plus their proto3 JSON
        // forms (a Timestamp is an RFC 3339 string), which the REST gateway needs.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(false)
        .compile_fds(compiler.file_descriptor_set())?;

    // serde for the SDK messages (and custos.admin.v1's, for the console's REST routes) as
    // grpc-gateway v1 writes them (the marshaler openstorage's
    // gateway uses: `OrigName: true`): proto field names, enums by name, 64-bit integers as
    // strings, default values left out. Input accepts proto and lowerCamelCase names.
    pbjson_build::Builder::new()
        .register_descriptors(&compiler.encode_file_descriptor_set())?
        .preserve_proto_field_names()
        .extern_path(".google.protobuf", "::pbjson_types")
        // All of custos.admin.v1: the console's routes (the audit trail, chains, cluster status)
        // and `Access.Explain` (`POST /v1/custos/access/explain`) carry its messages.
        .build(&[".openstorage.api", ".custos.admin.v1"])?;
    let mut etcd = protox::Compiler::new([&proto_root])?;
    etcd.open_files(ETCD_PROTOS)
        .map_err(|e| format!("compiling the etcd subset: {e:?}"))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd.file_descriptor_set())?;
    Ok(())
}
