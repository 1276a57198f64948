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
    /// Ids handed out before (found in the maps): the free ones below the
    /// highest are handed out first.
    pub fn with_used(capacity: u32, used: &BTreeSet<u32>) -> Self {
        let next = used.last().map_or(0, |&id| id + 1).min(capacity);
        let free = (0..next).filter(|id| !used.contains(id)).collect();
        Self { capacity, next, free }
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

/// Backend ids are never reused, also across restarts (the high-water mark
/// is kept in the pinned `AGENT_STATE`): a conntrack entry whose backend id
/// has disappeared from `BACKENDS` knows its backend was removed, even if
/// another backend appeared since. Id 0 is never used.
#[derive(Debug, Default)]
pub struct BackendIds {
    last: u32,
}

impl BackendIds {
    /// Continues after the highest id handed out before.
    pub fn starting_after(last: u32) -> Self {
        Self { last }
    }

    /// The highest id handed out.
    pub fn last(&self) -> u32 {
        self.last
    }

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
        let mut ids = ServiceIds::with_used(3, &BTreeSet::new());
        assert_eq!([ids.allocate(), ids.allocate(), ids.allocate()], [Some(0), Some(1), Some(2)]);
        assert_eq!(ids.allocate(), None);
        ids.release(1);
        assert_eq!(ids.allocate(), Some(1));
    }

    #[test]
    fn service_ids_continue_from_those_in_use() {
        let mut ids = ServiceIds::with_used(5, &BTreeSet::from([0, 2]));
        assert_eq!([ids.allocate(), ids.allocate(), ids.allocate(), ids.allocate()], [Some(1), Some(3), Some(4), None]);
    }

    #[test]
    fn backend_ids_are_never_reused() {
        let mut ids = BackendIds::default();
        let a = ids.allocate();
        let b = ids.allocate();
        assert!(a != 0 && b != a);
    }
}
