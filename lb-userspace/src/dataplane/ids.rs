//! Identifiers the maps use for service ports and backends.

use std::collections::BTreeSet;

/// Service ids index fixed-size arrays (`SERVICES`, Maglev rows, stats), so
/// they are compact: the lowest free id is handed out, and freed ids are
/// reused.
#[derive(Debug)]
pub struct ServiceIds {
    capacity: u32,
    next: u32,
    free: BTreeSet<u32>,
}

impl ServiceIds {
    pub fn new(capacity: u32) -> Self {
        Self { capacity, next: 0, free: BTreeSet::new() }
    }

    pub fn allocate(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub fn release(&mut self, id: u32) {
        self.free.insert(id);
    }
}

/// Backend ids are never reused while the agent runs: a conntrack entry
/// whose backend id has disappeared from `BACKENDS` knows its backend was
/// removed, even if another backend appeared since. Id 0 is never used.
#[derive(Debug, Default)]
pub struct BackendIds {
    last: u32,
}

impl BackendIds {
    pub fn allocate(&mut self) -> u32 {
        self.last = self.last.checked_add(1).expect("4 billion backend changes in one agent run");
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_are_compact_and_reused() {
        let mut ids = ServiceIds::new(3);
        assert_eq!([ids.allocate(), ids.allocate(), ids.allocate()], [Some(0), Some(1), Some(2)]);
        assert_eq!(ids.allocate(), None);
        ids.release(1);
        assert_eq!(ids.allocate(), Some(1));
    }

    #[test]
    fn backend_ids_are_never_reused() {
        let mut ids = BackendIds::default();
        let a = ids.allocate();
        let b = ids.allocate();
        assert!(a != 0 && b != a);
    }
}
