//! Bounds on what callers can make a member hold: counted slots for work in flight
//! ([`Gate`]), connections per client address ([`PerAddress`]), and the cap on every
//! caller-controlled text a member writes to its logs ([`cap`]).
//!
//! A full gate answers at once (the caller gets RESOURCE_EXHAUSTED and retries with backoff);
//! nothing here waits for a slot, so an overloaded member never queues without end.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of one caller-controlled value (an id, a name, a path) a log line keeps.
pub const MAX_LOGGED_FIELD: usize = 256;

/// Bytes of a log line's message (which may quote a status text naming request fields).
pub const MAX_LOGGED_MESSAGE: usize = 1024;

/// `s` cut to at most `max` bytes at a character boundary, followed by `…(+N bytes)` naming
/// what was cut; `s` itself when it fits.
pub fn cap(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…(+{} bytes)", &s[..end], s.len() - end))
}

/// At most `limit` holders at once; [`Gate::try_enter`] refuses beyond that instead of waiting.
pub struct Gate {
    limit: usize,
    used: AtomicUsize,
    /// Entries refused because the gate was full.
    refused: AtomicU64,
}

/// One slot of a [`Gate`], given back when dropped.
#[must_use = "the slot is given back when this is dropped"]
pub struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    pub fn new(limit: usize) -> Arc<Gate> {
        Arc::new(Gate {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A slot, or `None` (counted as refused) when `limit` are taken.
    pub fn try_enter(self: &Arc<Gate>) -> Option<Slot> {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match taken {
            Ok(_) => Some(Slot { gate: self.clone() }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Entries refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Open connections per client address, at most `limit` each.
pub struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted by a [`PerAddress`], uncounted when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerAddress {
    pub fn new(limit: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `ip`, or `None` when it already has `limit` open.
    pub fn try_open(self: &Arc<PerAddress>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Addresses with a connection open now.
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_short_text_and_names_what_it_cut() {
        assert_eq!(cap("node-1", 256), "node-1");
        let long = "x".repeat(3 << 20);
        let capped = cap(&long, MAX_LOGGED_FIELD);
        assert_eq!(
            capped,
            format!("{}…(+{} bytes)", "x".repeat(256), (3 << 20) - 256)
        );
        // Cut at a character boundary: 'é' is two bytes, so 255 bytes of them are 127 chars.
        let accents = "é".repeat(200);
        let capped = cap(&accents, 255);
        assert!(capped.starts_with(&"é".repeat(127)));
        assert!(capped.ends_with("…(+146 bytes)"), "{capped}");
    }

    #[test]
    fn a_gate_refuses_beyond_its_limit_and_frees_dropped_slots() {
        let gate = Gate::new(2);
        let a = gate.try_enter().expect("first");
        let b = gate.try_enter().expect("second");
        assert!(gate.try_enter().is_none());
        assert_eq!((gate.in_use(), gate.refused()), (2, 1));
        drop(a);
        let c = gate.try_enter().expect("a freed slot");
        drop((b, c));
        assert_eq!(gate.in_use(), 0);
    }

    #[test]
    fn per_address_counts_each_address_apart() {
        let table = PerAddress::new(2);
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let a = table.try_open(one).expect("first");
        let _b = table.try_open(one).expect("second");
        assert!(table.try_open(one).is_none());
        let _c = table.try_open(two).expect("another address");
        drop(a);
        assert!(table.try_open(one).is_some());
        assert_eq!(table.addresses(), 2);
    }
}
