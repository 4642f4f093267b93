//! A linearizability checker built the Porcupine way (Wing & Gong's search with Lowe's
//! memoisation), plus an independent brute-force checker to cross-check it on small histories.
//!
//! A history is a list of [`Event`]s: an operation with the time its call was made and the
//! time its answer arrived, or no answer at all (a timeout: the operation may or may not have
//! taken effect, at any moment after its call). A [`Model`] is the sequential specification:
//! from a state and an operation *with its recorded outcome*, the states it may lead to (none
//! when the outcome is impossible there). Models may be nondeterministic (an operation whose
//! outcome is unknown leads both to "it happened" and "it did not"); the search runs over sets
//! of states, as Porcupine's powerset construction does.
//!
//! What is checked: there is a total order of the operations that respects real time (an
//! operation that returned before another was called comes first) and in which every
//! operation's recorded outcome is one the model allows. Callers partition histories by object
//! (P-compositionality) and check each part separately; each check has a time budget, and
//! running out of it gives [`Verdict::Unknown`], never a pass.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The sequential specification of an object.
pub trait Model {
    type State: Clone + Eq + Ord + Hash + Debug;
    type Op: Debug;
    fn init(&self) -> Self::State;
    /// The states `op`, with the outcome it recorded, may lead to from `state`; empty when that
    /// outcome is impossible in `state`. For an operation whose outcome is unknown this must
    /// include `state` itself (it may not have happened).
    fn step(&self, state: &Self::State, op: &Self::Op) -> Vec<Self::State>;
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Event<O> {
    pub op: O,
    /// When the call was made (any monotonic unit shared by the whole history).
    pub call: u64,
    /// When the answer arrived; `None` when none did (it may have taken effect any time after
    /// `call`, or never).
    pub ret: Option<u64>,
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Failure),
    /// The time budget ran out before the search finished.
    Unknown,
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Where the search got stuck: the longest linearized prefix it found (operation indices in
/// order) and the operations that were candidates to come next but that no state allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub longest_prefix: Vec<usize>,
    pub stuck_on: Vec<usize>,
}

/// A fixed-size bit set (which operations are linearized).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

const NIL: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    prev: usize,
    next: usize,
    /// The operation this entry belongs to.
    op: usize,
    /// A call entry (else a return entry).
    call: bool,
    /// For a call entry, its return entry.
    matching: usize,
}

/// The doubly linked list of call and return entries that the search lifts operations out
/// of. Index 0 is the head sentinel.
struct Entries {
    nodes: Vec<Node>,
}

impl Entries {
    fn new<O>(events: &[Event<O>]) -> Entries {
        // (time, return-after-call at equal times, op, is_call): a return and a call at the
        // same instant count as concurrent, the permissive reading.
        let mut order: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(events.len() * 2);
        for (i, e) in events.iter().enumerate() {
            order.push((e.call, 0, i, true));
            order.push((e.ret.unwrap_or(u64::MAX), 1, i, false));
        }
        order.sort();
        let mut nodes = vec![Node {
            prev: NIL,
            next: NIL,
            op: NIL,
            call: false,
            matching: NIL,
        }];
        let mut return_node = vec![NIL; events.len()];
        for (k, &(_, _, op, call)) in order.iter().enumerate() {
            let idx = k + 1;
            nodes.push(Node {
                prev: idx - 1,
                next: if k + 1 < order.len() { idx + 1 } else { NIL },
                op,
                call,
                matching: NIL,
            });
            if !call {
                return_node[op] = idx;
            }
        }
        nodes[0].next = if order.is_empty() { NIL } else { 1 };
        for n in nodes.iter_mut().skip(1) {
            if n.call {
                n.matching = return_node[n.op];
            }
        }
        Entries { nodes }
    }

    fn head_next(&self) -> usize {
        self.nodes[0].next
    }

    /// Takes a call entry and its return entry out of the list.
    fn lift(&mut self, entry: usize) {
        let Node { prev, next, .. } = self.nodes[entry];
        self.nodes[prev].next = next;
        self.nodes[next].prev = prev;
        let m = self.nodes[entry].matching;
        let Node { prev, next, .. } = self.nodes[m];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    /// Puts back what the matching `lift` took out (in reverse order of lifting).
    fn unlift(&mut self, entry: usize) {
        let m = self.nodes[entry].matching;
        let Node { prev, next, .. } = self.nodes[m];
        self.nodes[prev].next = m;
        if next != NIL {
            self.nodes[next].prev = m;
        }
        let Node { prev, next, .. } = self.nodes[entry];
        self.nodes[prev].next = entry;
        self.nodes[next].prev = entry;
    }
}

/// The successors of a set of states (sorted, without duplicates).
fn successors<M: Model>(model: &M, states: &[M::State], op: &M::Op) -> Vec<M::State> {
    let mut out: Vec<M::State> = states.iter().flat_map(|s| model.step(s, op)).collect();
    out.sort();
    out.dedup();
    out
}

/// Checks one history (one partition) within `budget`.
pub fn check<M: Model>(model: &M, events: &[Event<M::Op>], budget: Duration) -> Verdict {
    let started = Instant::now();
    let n = events.len();
    let mut entries = Entries::new(events);
    let mut linearized = Bits::new(n);
    let mut cache: HashSet<(Bits, Vec<M::State>)> = HashSet::new();
    let mut calls: Vec<(usize, Vec<M::State>)> = Vec::new();
    let mut states = vec![model.init()];
    let mut entry = entries.head_next();
    let mut longest: Vec<usize> = Vec::new();
    let mut stuck: Vec<usize> = Vec::new();
    let mut steps: u64 = 0;
    while entries.head_next() != NIL {
        steps += 1;
        if steps.is_multiple_of(4096) && started.elapsed() > budget {
            return Verdict::Unknown;
        }
        let node = entries.nodes[entry];
        if node.call {
            let next = successors(model, &states, &events[node.op].op);
            if !next.is_empty() {
                linearized.set(node.op);
                if cache.insert((linearized.clone(), next.clone())) {
                    let prev = std::mem::replace(&mut states, next);
                    calls.push((entry, prev));
                    entries.lift(entry);
                    entry = entries.head_next();
                    continue;
                }
                linearized.clear(node.op);
            } else if calls.len() >= longest.len() {
                // Remember the deepest place where an operation could not go next.
                if calls.len() > longest.len() {
                    stuck.clear();
                }
                longest = calls.iter().map(|(e, _)| entries.nodes[*e].op).collect();
                if !stuck.contains(&node.op) {
                    stuck.push(node.op);
                }
            }
            entry = node.next;
        } else {
            // A return of an operation not yet linearized: nothing after it may go first.
            let Some((e, prev)) = calls.pop() else {
                return Verdict::NotLinearizable(Failure {
                    longest_prefix: longest,
                    stuck_on: stuck,
                });
            };
            let op = entries.nodes[e].op;
            linearized.clear(op);
            states = prev;
            entries.unlift(e);
            entry = entries.nodes[e].next;
        }
    }
    Verdict::Linearizable
}

/// Checks a small history by trying every order that respects real time, without
/// memoisation or state sets: a separate code path to cross-check [`check`]. Operations with
/// an unknown outcome may be left out entirely. Exponential: keep histories under ~10
/// operations.
pub fn check_brute_force<M: Model>(model: &M, events: &[Event<M::Op>]) -> bool {
    let n = events.len();
    assert!(n <= 63, "brute force is for small histories");
    // before[b]: the operations that returned before b was called.
    let before: Vec<u64> = (0..n)
        .map(|b| {
            (0..n)
                .filter(|&a| events[a].ret.is_some_and(|r| r < events[b].call))
                .fold(0u64, |m, a| m | (1 << a))
        })
        .collect();
    let required: u64 = (0..n)
        .filter(|&i| events[i].ret.is_some())
        .fold(0, |m, i| m | (1 << i));
    fn go<M: Model>(
        model: &M,
        events: &[Event<M::Op>],
        before: &[u64],
        required: u64,
        placed: u64,
        state: &M::State,
    ) -> bool {
        if placed & required == required {
            return true;
        }
        (0..events.len()).any(|i| {
            placed & (1 << i) == 0
                && before[i] & !placed == 0
                && model
                    .step(state, &events[i].op)
                    .iter()
                    .any(|s| go(model, events, before, required, placed | (1 << i), s))
        })
    }
    go(model, events, &before, required, 0, &model.init())
}

/// A read/write register: the classic example, used to test the checker itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

/// An operation on [`Register`] with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    /// A write that was acknowledged.
    Write(u32),
    /// A write whose outcome is unknown.
    WriteUnknown(u32),
    /// A write that was refused: it did not happen.
    WriteRefused(u32),
    /// A read that returned this value.
    Read(u32),
}

impl Model for Register {
    type State = u32;
    type Op = RegisterOp;
    fn init(&self) -> u32 {
        0
    }
    fn step(&self, state: &u32, op: &RegisterOp) -> Vec<u32> {
        match *op {
            RegisterOp::Write(v) => vec![v],
            RegisterOp::WriteUnknown(v) => vec![*state, v],
            RegisterOp::WriteRefused(_) => vec![*state],
            RegisterOp::Read(v) if v == *state => vec![*state],
            RegisterOp::Read(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: RegisterOp, call: u64, ret: Option<u64>) -> Event<RegisterOp> {
        Event { op, call, ret }
    }

    const BUDGET: Duration = Duration::from_secs(10);

    #[test]
    fn sequential_and_concurrent_register_histories() {
        use RegisterOp::*;
        // Write 1, then read 1.
        let h = [ev(Write(1), 0, Some(10)), ev(Read(1), 20, Some(30))];
        assert!(check(&Register, &h, BUDGET).is_ok());
        // A read concurrent with a write may see either value.
        let h = [ev(Write(1), 0, Some(10)), ev(Read(0), 5, Some(30))];
        assert!(check(&Register, &h, BUDGET).is_ok());
        let h = [ev(Write(1), 0, Some(10)), ev(Read(1), 5, Some(30))];
        assert!(check(&Register, &h, BUDGET).is_ok());
        // Empty history.
        assert!(check::<Register>(&Register, &[], BUDGET).is_ok());
    }

    #[test]
    fn a_stale_read_is_caught() {
        use RegisterOp::*;
        // Write 1 returned, then a read that started later saw 0.
        let h = [ev(Write(1), 0, Some(10)), ev(Read(0), 20, Some(30))];
        let v = check(&Register, &h, BUDGET);
        assert!(matches!(v, Verdict::NotLinearizable(_)), "{v:?}");
        assert!(!check_brute_force(&Register, &h));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        use RegisterOp::*;
        // 1 then 2 acknowledged in order; a later read sees 1 (2 was lost).
        let h = [
            ev(Write(1), 0, Some(10)),
            ev(Write(2), 20, Some(30)),
            ev(Read(1), 40, Some(50)),
        ];
        assert!(!check(&Register, &h, BUDGET).is_ok());
        assert!(!check_brute_force(&Register, &h));
    }

    #[test]
    fn a_refused_write_must_stay_invisible() {
        use RegisterOp::*;
        let h = [ev(WriteRefused(7), 0, Some(10)), ev(Read(7), 20, Some(30))];
        assert!(!check(&Register, &h, BUDGET).is_ok());
        assert!(!check_brute_force(&Register, &h));
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened_but_only_once() {
        use RegisterOp::*;
        // Unknown write of 5: a later read may see 5 ...
        let h = [ev(WriteUnknown(5), 0, None), ev(Read(5), 20, Some(30))];
        assert!(check(&Register, &h, BUDGET).is_ok());
        // ... or 0 ...
        let h = [ev(WriteUnknown(5), 0, None), ev(Read(0), 20, Some(30))];
        assert!(check(&Register, &h, BUDGET).is_ok());
        // ... but not before its call ...
        let h = [ev(Read(5), 0, Some(10)), ev(WriteUnknown(5), 20, None)];
        assert!(!check(&Register, &h, BUDGET).is_ok());
        // ... and it cannot come back after being overwritten by a later write (it took effect
        // once: 5, then 6 acknowledged after the read of 5, then 5 again is impossible).
        let h = [
            ev(WriteUnknown(5), 0, None),
            ev(Read(5), 10, Some(20)),
            ev(Write(6), 30, Some(40)),
            ev(Read(5), 50, Some(60)),
        ];
        assert!(!check(&Register, &h, BUDGET).is_ok());
        assert!(!check_brute_force(&Register, &h));
    }

    #[test]
    fn the_failure_names_the_operation_that_could_not_go() {
        use RegisterOp::*;
        let h = [ev(Write(1), 0, Some(10)), ev(Read(0), 20, Some(30))];
        let Verdict::NotLinearizable(f) = check(&Register, &h, BUDGET) else {
            panic!("expected a failure");
        };
        assert_eq!(f.longest_prefix, vec![0]);
        assert_eq!(f.stuck_on, vec![1]);
    }

    /// A small seeded generator (SplitMix64), independent of the harness's.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn wgl_agrees_with_brute_force_on_random_register_histories() {
        let mut seed = 0x5EED_u64;
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 1 + (splitmix(&mut seed) % 7) as usize;
            let h: Vec<Event<RegisterOp>> = (0..n)
                .map(|_| {
                    let call = splitmix(&mut seed) % 40;
                    let len = 1 + splitmix(&mut seed) % 15;
                    let v = (splitmix(&mut seed) % 3) as u32;
                    let (op, ret) = match splitmix(&mut seed) % 8 {
                        0..=2 => (RegisterOp::Write(v), Some(call + len)),
                        3 => (RegisterOp::WriteUnknown(v), None),
                        4 => (RegisterOp::WriteRefused(v), Some(call + len)),
                        _ => (RegisterOp::Read(v), Some(call + len)),
                    };
                    Event { op, call, ret }
                })
                .collect();
            let fast = check(&Register, &h, BUDGET);
            assert_ne!(fast, Verdict::Unknown);
            let slow = check_brute_force(&Register, &h);
            assert_eq!(fast.is_ok(), slow, "checkers disagree on {h:#?}");
            if slow {
                yes += 1
            } else {
                no += 1
            }
        }
        // Both verdicts are well represented, so the agreement means something.
        assert!(yes > 500 && no > 500, "linearizable {yes}, not {no}");
    }

    #[test]
    fn the_budget_gives_unknown_not_a_pass() {
        use RegisterOp::*;
        // Many concurrent unknown writes and a read nothing can explain: the search is
        // exponential in the worst case; with a zero budget it must say Unknown.
        let mut h: Vec<Event<RegisterOp>> = (0..40)
            .map(|i| ev(WriteUnknown(i % 20 + 1), i as u64, None))
            .collect();
        for i in 0..4000u64 {
            h.push(ev(Read(99), 100 + 2 * i, Some(101 + 2 * i)));
        }
        assert_eq!(check(&Register, &h, Duration::ZERO), Verdict::Unknown);
    }
}
