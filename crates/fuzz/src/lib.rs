//! custos fuzzing: the registry of fuzz targets and a small mutational engine that runs them on
//! stable Rust.
//!
//! The targets live next to the code they test, behind each crate's `fuzz` feature
//! (`custos_auth::fuzz::token`, `custos_model::fuzz::rule_matching`,
//! `custos_proto::fuzz::convert`, `custos_store::fuzz::codec`). Each takes arbitrary bytes, panics
//! when a property fails and returns a number naming the path the input took.
//!
//! The engine is not coverage-guided: it mutates a corpus (the targets' seeds plus any files in a
//! corpus directory) with byte-level mutations and keeps an input when it reaches a path not
//! seen before. It is deterministic for a given seed and corpus. `tests/short.rs` runs a few
//! thousand inputs of every target inside `cargo test`; `scripts/fuzz.sh --minutes N` runs the
//! `custos-fuzz` binary for N minutes (or libFuzzer through `cargo fuzz` when a nightly toolchain
//! is there, with the targets in `fuzz/`).

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> u64,
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Inputs longer than this are cut (the engine's mutations stay under it).
    pub max_len: usize,
}

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "token",
            run: custos_auth::fuzz::token,
            seeds: custos_auth::fuzz::token_seeds,
            max_len: 4096,
        },
        Target {
            name: "rules",
            run: custos_model::fuzz::rule_matching,
            seeds: custos_model::fuzz::rule_matching_seeds,
            max_len: 512,
        },
        Target {
            name: "convert",
            run: custos_proto::fuzz::convert,
            seeds: custos_proto::fuzz::convert_seeds,
            max_len: 4096,
        },
        Target {
            name: "codec",
            run: custos_store::fuzz::codec,
            seeds: custos_store::fuzz::codec_seeds,
            max_len: 4096,
        },
    ]
}

pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// A panicking input.
#[derive(Clone, Debug)]
pub struct Crash {
    pub input: Vec<u8>,
    pub message: String,
}

/// How a run ended.
#[derive(Debug)]
pub struct Report {
    pub execs: u64,
    /// Distinct paths the inputs took.
    pub paths: usize,
    /// Inputs kept because they reached a new path (seeds not included).
    pub new_inputs: Vec<Vec<u8>>,
    pub crash: Option<Crash>,
}

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Execs(u64),
    Time(Duration),
}

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 250, 251, 252, 253, 254, b'.', b'"', b'{', b'}', b'*', b'!', b' ',
];

/// Applies 1 to 4 byte-level mutations: bit flips, interesting bytes, insertions, deletions,
/// duplicated or spliced runs (from another corpus entry), truncation.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    input.insert(i, rng.next_u64() as u8);
                }
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let run = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, run);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - i).min(64));
                    let at = rng.below(len + 1);
                    let end = (at + n).min(len);
                    input.splice(at..end, other[i..i + n].iter().copied());
                }
            }
            7 if len > 1 => input.truncate(rng.below(len)),
            8 => {
                // A LEB128 varint (protobuf's integers) of an edge value.
                let i = rng.below(len + 1);
                let mut v = [
                    0u64,
                    127,
                    128,
                    1 << 31,
                    1 << 53,
                    1 << 62,
                    i64::MAX as u64,
                    u64::MAX,
                ][rng.below(8)];
                let mut bytes = Vec::new();
                while v >= 0x80 {
                    bytes.push((v as u8) | 0x80);
                    v >>= 7;
                }
                bytes.push(v as u8);
                input.splice(i..i, bytes);
            }
            _ => {
                // A little-endian or varint-ish number somewhere: lengths and counts.
                let i = rng.below(len + 1);
                let v = [
                    0u64,
                    1,
                    127,
                    128,
                    255,
                    256,
                    65_535,
                    u32::MAX as u64,
                    u64::MAX,
                ][rng.below(9)];
                let bytes = v.to_le_bytes();
                let n = 1 + rng.below(8);
                input.splice(i..i, bytes[..n].iter().copied());
            }
        }
    }
    input.truncate(max_len);
}

/// Runs `target` on `input`, turning a panic into its message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<u64, String> {
    catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// Fuzzes `target` from `seed` and `corpus` (its own seeds are added) within `budget`, stopping
/// at the first crash. `before_each` sees every input before it runs (the runner writes it to a
/// file, so an input that aborts the process is not lost).
pub fn fuzz(
    target: &Target,
    seed: u64,
    corpus: &[Vec<u8>],
    budget: Budget,
    mut before_each: impl FnMut(&[u8]),
) -> Report {
    let mut pool: Vec<Vec<u8>> = (target.seeds)();
    pool.extend(corpus.iter().cloned());
    let mut rng = Rng::new(
        seed ^ target
            .name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    let mut paths = BTreeSet::new();
    let mut new_inputs = Vec::new();
    let started = Instant::now();
    let mut execs = 0u64;
    let mut pending: Vec<Vec<u8>> = pool.clone();
    loop {
        let done = match budget {
            Budget::Execs(n) => execs >= n,
            Budget::Time(d) => execs.is_multiple_of(64) && started.elapsed() >= d,
        };
        if done {
            break;
        }
        // Seeds and corpus first, as they are; then mutations, and now and then fresh bytes.
        let input = match pending.pop() {
            Some(input) => input,
            None if rng.below(16) == 0 || pool.is_empty() => {
                let len = rng.below(target.max_len.min(256) + 1);
                (0..len).map(|_| rng.next_u64() as u8).collect()
            }
            None => {
                let mut input = pool[rng.below(pool.len())].clone();
                mutate(&mut rng, &mut input, &pool, target.max_len);
                input
            }
        };
        before_each(&input);
        execs += 1;
        match run_one(target, &input) {
            Ok(path) => {
                if paths.insert(path) && execs > pool.len() as u64 {
                    pool.push(input.clone());
                    new_inputs.push(input);
                }
            }
            Err(message) => {
                return Report {
                    execs,
                    paths: paths.len(),
                    new_inputs,
                    crash: Some(Crash { input, message }),
                }
            }
        }
    }
    Report {
        execs,
        paths: paths.len(),
        new_inputs,
        crash: None,
    }
}

/// A short file name for an input: FNV-1a of its bytes.
pub fn input_name(input: &[u8]) -> String {
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_magic(data: &[u8]) -> u64 {
        if data.windows(3).any(|w| w == b"BUG") {
            panic!("found the bug");
        }
        0
    }

    fn seeds() -> Vec<Vec<u8>> {
        vec![b"xBUx".to_vec()]
    }

    #[test]
    fn the_engine_finds_a_planted_bug_and_reports_it() {
        let t = Target {
            name: "planted",
            run: panics_on_magic,
            seeds,
            max_len: 64,
        };
        let report = fuzz(&t, 1, &[], Budget::Execs(200_000), |_| {});
        let crash = report.crash.expect("the planted bug is found");
        assert!(crash.input.windows(3).any(|w| w == b"BUG"));
        assert_eq!(crash.message, "found the bug");
        assert_eq!(run_one(&t, &crash.input), Err("found the bug".to_string()));
    }

    #[test]
    fn runs_are_deterministic_and_bounded() {
        let t = target("rules").unwrap();
        let a = fuzz(&t, 7, &[], Budget::Execs(300), |_| {});
        let b = fuzz(&t, 7, &[], Budget::Execs(300), |_| {});
        assert_eq!(a.execs, 300);
        assert_eq!((a.paths, a.new_inputs), (b.paths, b.new_inputs));
    }
}
