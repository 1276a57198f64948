//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016), weighted as Katran does it.
//!
//! Every backend gets a permutation of the table's slots from two hashes of
//! its name (`offset`, `skip`); backends then take turns claiming their next
//! free preferred slot until the table is full. A backend of weight `w`
//! takes `w` turns per round, so it ends up with about `w` times the slots of
//! a backend of weight 1.
//!
//! The hashes use fixed seeds, so every node and every build computes the
//! same table from the same backends: any node can take over any flow.
//! Backends are visited in the order of their names (not the order of the
//! input slice), so the result does not depend on how the caller orders the
//! slice as long as names are unique. Two backends with the same name have
//! the same permutation; only the first of them (in slice order) would get
//! slots on ties, so callers should pass unique names.

use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The default table size M: a prime, about 100 × a typical backend count,
/// so each backend's share is within ~1% of even.
pub const DEFAULT_TABLE_SIZE: u32 = 16381;

/// Seed of the hash that picks a backend's first preferred slot.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
/// Seed of the hash that picks the stride between preferred slots.
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// A backend to place in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// A stable identity of the backend, e.g. `b"10.244.1.10:80"`.
    pub name: &'a [u8],
    /// Relative share of the slots; 0 means the backend takes no slots.
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MaglevError {
    #[error("Maglev table size {size} is not a prime number")]
    SizeNotPrime { size: u32 },
    #[error(
        "Maglev table size {size} is too small for {backends} backends (need at least 2 and at least one slot per backend)"
    )]
    SizeTooSmall { size: u32, backends: usize },
    #[error("all {backends} Maglev backends have weight 0")]
    AllWeightsZero { backends: usize },
}

/// Whether `n` is a prime number (trial division; fine for table sizes).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    (3..).step_by(2).take_while(|d: &u64| d * d <= n).all(|d| n % d != 0)
}

/// Builds a Maglev table of `size` slots: slot → index into `backends`.
///
/// Returns an empty table when `backends` is empty. `size` must be a prime
/// of at least 2 and at least the number of backends.
pub fn build_table(backends: &[MaglevBackend<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    if backends.is_empty() {
        return Ok(Vec::new());
    }
    if !is_prime(size) {
        return Err(MaglevError::SizeNotPrime { size });
    }
    if size < 2 || (size as usize) < backends.len() {
        return Err(MaglevError::SizeTooSmall { size, backends: backends.len() });
    }
    if backends.iter().all(|b| b.weight == 0) {
        return Err(MaglevError::AllWeightsZero { backends: backends.len() });
    }
    Ok(fill(backends, size))
}

/// A backend's walk through its permutation of the slots.
struct Cursor {
    index: u32,
    weight: u32,
    next: u32,
    skip: u32,
}

impl Cursor {
    fn new(index: usize, backend: &MaglevBackend<'_>, size: u32) -> Self {
        let size64 = u64::from(size);
        let offset = xxh3_64_with_seed(backend.name, OFFSET_SEED) % size64;
        let skip = xxh3_64_with_seed(backend.name, SKIP_SEED) % (size64 - 1) + 1;
        Self { index: index as u32, weight: backend.weight, next: offset as u32, skip: skip as u32 }
    }

    /// Claims this backend's next preferred slot that is still free.
    fn claim(&mut self, table: &mut [u32], size: u32) {
        while table[self.next as usize] != FREE {
            self.advance(size);
        }
        table[self.next as usize] = self.index;
        self.advance(size);
    }

    fn advance(&mut self, size: u32) {
        self.next = ((u64::from(self.next) + u64::from(self.skip)) % u64::from(size)) as u32;
    }
}

const FREE: u32 = u32::MAX;

fn fill(backends: &[MaglevBackend<'_>], size: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].weight > 0).collect();
    order.sort_by(|&a, &b| backends[a].name.cmp(backends[b].name));
    let mut cursors: Vec<Cursor> = order.into_iter().map(|i| Cursor::new(i, &backends[i], size)).collect();

    let mut table = vec![FREE; size as usize];
    let mut filled = 0u32;
    loop {
        for cursor in &mut cursors {
            for _ in 0..cursor.weight {
                cursor.claim(&mut table, size);
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.244.{}.{}:8080", i / 250, i % 250 + 1)).collect()
    }

    fn backends(names: &[String]) -> Vec<MaglevBackend<'_>> {
        names.iter().map(|n| MaglevBackend { name: n.as_bytes(), weight: 1 }).collect()
    }

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        table.iter().for_each(|&i| c[i as usize] += 1);
        c
    }

    #[test]
    fn primes() {
        let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(DEFAULT_TABLE_SIZE));
        assert!(is_prime(65537));
        assert!(!is_prime(16383));
        assert!(is_prime(4_294_967_291));
        assert!(!is_prime(u32::MAX));
    }

    #[test]
    fn balanced_within_one_percent() {
        let names = names(100);
        let table = build_table(&backends(&names), DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
        let even = f64::from(DEFAULT_TABLE_SIZE) / 100.0;
        for (i, &c) in counts(&table, 100).iter().enumerate() {
            assert!((c as f64 - even).abs() <= even * 0.01 + 1.0, "backend {i} has {c} slots, even is {even}");
        }
    }

    /// Slots whose backend changes when backend `removed` of `n` goes away,
    /// and the share of the surviving backends' slots that kept their backend.
    fn disruption(n: usize, removed: usize, size: u32) -> (usize, f64) {
        let names = names(n);
        let all = backends(&names);
        let survivors: Vec<_> = all.iter().enumerate().filter(|&(i, _)| i != removed).map(|(_, b)| *b).collect();
        let before = build_table(&all, size).unwrap();
        let after = build_table(&survivors, size).unwrap();
        let moved: Vec<bool> =
            (0..size as usize).map(|s| all[before[s] as usize].name != survivors[after[s] as usize].name).collect();
        let surviving: Vec<usize> = (0..size as usize).filter(|&s| before[s] as usize != removed).collect();
        let kept = surviving.iter().filter(|&&s| !moved[s]).count();
        (moved.iter().filter(|&&m| m).count(), kept as f64 / surviving.len() as f64)
    }

    /// Maglev trades a little disruption for its balance: removing one of N
    /// backends moves the removed backend's M/N slots plus a cascade of
    /// other slots that shrinks as M/N grows (about 1.3 × M/N more at
    /// M/N ≈ 164, the default with 100 backends; about 0.6 × M/N more at
    /// M/N ≈ 655). Measured: 2.2–2.4 × M/N and 1.5–1.6 × M/N.
    #[test]
    fn removing_one_backend_moves_few_slots() {
        let share = f64::from(DEFAULT_TABLE_SIZE) / 100.0;
        for removed in [0, 37, 99] {
            let (changed, kept) = disruption(100, removed, DEFAULT_TABLE_SIZE);
            assert!(changed as f64 <= 2.6 * share, "{changed} slots changed, M/N is {share}");
            assert!(kept >= 0.98, "only {kept} of the surviving backends' slots kept their backend");
        }
        let share = 65537.0 / 100.0;
        let (changed, kept) = disruption(100, 37, 65537);
        assert!(changed as f64 <= 1.75 * share, "{changed} slots changed, M/N is {share}");
        assert!(kept >= 0.99, "only {kept} of the surviving backends' slots kept their backend");
    }

    #[test]
    fn removing_one_of_few_backends_is_minimal() {
        let (changed, kept) = disruption(10, 3, DEFAULT_TABLE_SIZE);
        assert!(changed as f64 <= 1.1 * f64::from(DEFAULT_TABLE_SIZE) / 10.0, "{changed} slots changed");
        assert!(kept >= 0.99);
    }

    #[test]
    fn deterministic_and_golden() {
        let names = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"].map(String::from);
        let a = build_table(&backends(&names), 251).unwrap();
        let b = build_table(&backends(&names), 251).unwrap();
        assert_eq!(a, b);
        // Changing the hash function or its seeds changes every table, so
        // every node must be upgraded at once: this test makes that visible.
        assert_eq!(&a[..16], GOLDEN_FIRST_16);
        let bytes: Vec<u8> = a.iter().flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(xxh3_64_with_seed(&bytes, 0), GOLDEN_HASH);
    }

    const GOLDEN_FIRST_16: &[u32] = &[0, 2, 1, 1, 0, 2, 0, 1, 2, 1, 1, 0, 2, 2, 1, 2];
    const GOLDEN_HASH: u64 = 0xda39_2f54_975c_ae4e;

    #[test]
    fn independent_of_input_order() {
        let names = names(10);
        let forward = backends(&names);
        let mut reversed = forward.clone();
        reversed.reverse();
        let a = build_table(&forward, 251).unwrap();
        let b = build_table(&reversed, 251).unwrap();
        let name = |bs: &[MaglevBackend<'_>], t: &[u32], s: usize| bs[t[s] as usize].name.to_vec();
        assert!((0..251).all(|s| name(&forward, &a, s) == name(&reversed, &b, s)));
    }

    #[test]
    fn weights_are_proportional() {
        let names = names(3);
        let mut bs = backends(&names);
        bs[0].weight = 2;
        let c = counts(&build_table(&bs, DEFAULT_TABLE_SIZE).unwrap(), 3);
        let ratio = c[0] as f64 / ((c[1] + c[2]) as f64 / 2.0);
        assert!((ratio - 2.0).abs() < 0.05, "weight 2 got {ratio}× the slots of weight 1 ({c:?})");

        bs[2].weight = 0;
        let c = counts(&build_table(&bs, 251).unwrap(), 3);
        assert_eq!(c[2], 0);
        assert_eq!(c[0] + c[1], 251);
    }

    #[test]
    fn single_backend_takes_every_slot() {
        let table = build_table(&[MaglevBackend { name: b"a", weight: 1 }], 2).unwrap();
        assert_eq!(table, [0, 0]);
    }

    #[test]
    fn errors() {
        let names = names(3);
        let bs = backends(&names);
        assert_eq!(build_table(&[], 4), Ok(vec![]));
        assert_eq!(build_table(&bs, 16383), Err(MaglevError::SizeNotPrime { size: 16383 }));
        assert_eq!(build_table(&bs, 1), Err(MaglevError::SizeNotPrime { size: 1 }));
        assert_eq!(build_table(&bs, 2), Err(MaglevError::SizeTooSmall { size: 2, backends: 3 }));
        let zero: Vec<_> = bs.iter().map(|b| MaglevBackend { weight: 0, ..*b }).collect();
        assert_eq!(build_table(&zero, 251), Err(MaglevError::AllWeightsZero { backends: 3 }));
    }
}
