//! Tidy checks: the crate dependency rule (from `cargo metadata`) and a `//!` line opening every `.rs` file.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The only allowed edges between workspace crates (normal, build and dev dependencies alike).
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    m.insert("custos-model", BTreeSet::new());
    m.insert("custos-auth", ["custos-model"].into());
    m.insert("custos-proto", ["custos-model"].into());
    m.insert("custos-store", ["custos-model"].into());
    m.insert(
        "custos-server",
        [
            "custos-model",
            "custos-auth",
            "custos-proto",
            "custos-store",
        ]
        .into(),
    );
    m.insert("custos-client", ["custos-proto", "custos-model"].into());
    m.insert(
        "custos-bench",
        ["custos-client", "custos-proto", "custos-model"].into(),
    );
    m.insert(
        "custos-cli",
        ["custos-client", "custos-server", "custos-bench"].into(),
    );
    // Fuzzing drives the targets of the lower crates; nothing depends on it.
    m.insert(
        "custos-fuzz",
        [
            "custos-model",
            "custos-auth",
            "custos-proto",
            "custos-store",
        ]
        .into(),
    );
    m.insert(
        "custos-cluster-tests",
        ["custos-client", "custos-proto", "custos-model"].into(),
    );
    m
}

/// External crates only one workspace crate may name.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("sled", "custos-store"),
    ("prost", "custos-proto"),
    ("prost-types", "custos-proto"),
    ("tonic-prost", "custos-proto"),
    ("tonic-prost-build", "custos-proto"),
    ("pbjson", "custos-proto"),
    ("pbjson-types", "custos-proto"),
    ("pbjson-build", "custos-proto"),
];

/// Crates the pure model must not depend on.
const IMPURE: &[&str] = &[
    "tokio", "sled", "openraft", "rand", "uuid", "tonic", "futures", "chrono",
];

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_dependencies(meta: &Value) -> Vec<String> {
    let allowed = allowed();
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            problems.push(format!(
                "{name} is not a known workspace crate: add it to the tidy rule"
            ));
            continue;
        };
        for dep in pkg["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if dep_name.starts_with("custos-") && !ok.contains(dep_name) {
                problems.push(format!("{name} must not depend on {dep_name}"));
            }
            if let Some((_, owner)) = EXCLUSIVE.iter().find(|(d, _)| *d == dep_name) {
                if name != *owner {
                    problems.push(format!(
                        "{name} must not depend on {dep_name} (only {owner} may)"
                    ));
                }
            }
            if name == "custos-model" && IMPURE.contains(&dep_name) && dep["kind"].is_null() {
                problems.push(format!(
                    "custos-model must stay pure: it depends on {dep_name}"
                ));
            }
        }
    }
    problems
}

#[test]
fn crates_depend_only_downwards() {
    let problems = check_dependencies(&metadata());
    assert!(
        problems.is_empty(),
        "dependency rule broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_dependency_check_catches_a_bad_edge() {
    let mut meta = metadata();
    for pkg in meta["packages"].as_array_mut().unwrap() {
        if pkg["name"] == "custos-model" {
            let deps = pkg["dependencies"].as_array_mut().unwrap();
            deps.push(serde_json::json!({"name": "custos-server", "kind": null}));
            deps.push(serde_json::json!({"name": "tokio", "kind": null}));
        }
        if pkg["name"] == "custos-server" {
            pkg["dependencies"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "sled", "kind": null}));
        }
    }
    let problems = check_dependencies(&meta);
    assert_eq!(problems.len(), 3, "{problems:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let mut files = Vec::new();
    for dir in ["crates", "cluster-tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} .rs files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line:\n{}",
        missing.join("\n")
    );
}

/// Every cluster test file runs in CI: `scripts/test.sh` names each `cluster-tests/tests/*.rs`
/// (the tidy checks themselves run in an earlier step).
#[test]
fn every_cluster_test_is_run_by_the_test_script() {
    let script = std::fs::read_to_string(root().join("scripts/test.sh")).unwrap();
    let named: BTreeSet<&str> = script
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--test")
        .map(|w| w[1])
        .collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("cluster-tests/tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if !named.contains(name.as_str()) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "cluster tests scripts/test.sh does not run: {missing:?}"
    );
}
