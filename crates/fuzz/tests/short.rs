//! The short fuzz pass `cargo test` runs: a few thousand seeded inputs of every target, so every
//! build exercises the properties (`scripts/fuzz.sh --minutes N` runs them for longer).

use custos_fuzz::{fuzz, targets, Budget};

/// Inputs per target (`CUSTOS_FUZZ_EXECS` overrides).
fn execs() -> u64 {
    std::env::var("CUSTOS_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn short_pass(name: &str) {
    let t = targets().into_iter().find(|t| t.name == name).unwrap();
    let report = fuzz(&t, 0x5eed, &[], Budget::Execs(execs()), |_| {});
    if let Some(crash) = report.crash {
        panic!(
            "{name}: {}\ninput ({} bytes): {:?}",
            crash.message,
            crash.input.len(),
            crash.input
        );
    }
    assert_eq!(report.execs, execs());
    assert!(report.paths > 1, "{name}: every input took the same path");
    eprintln!("{name}: {} inputs, {} paths", report.execs, report.paths);
}

#[test]
fn token() {
    short_pass("token");
}

#[test]
fn rules() {
    short_pass("rules");
}

#[test]
fn convert() {
    short_pass("convert");
}

#[test]
fn codec() {
    short_pass("codec");
}

#[test]
fn every_target_has_a_short_pass() {
    let names: Vec<&str> = targets().iter().map(|t| t.name).collect();
    assert_eq!(names, ["token", "rules", "convert", "codec"]);
}
