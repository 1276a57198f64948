//! Maglev rows kept from one compile to the next. A row depends only on its
//! backends (in their canonical order) and the table size, and building one
//! costs O(M) per service port, so rebuilding every row on every change made
//! one EndpointSlice change cost O(services × M). With the rows of the last
//! compile at hand, a change rebuilds only the rows whose backends changed,
//! and the applier skips every row it is handed back unchanged.

use std::collections::HashMap;

use super::{BackendAddr, MaglevRow};

/// The rows of the last compile, by backend list, for the next one to reuse.
/// Rows the next compile does not use are dropped when it ends, so the cache
/// holds at most two compiles' rows.
#[derive(Debug, Default)]
pub struct MaglevRows {
    size: u32,
    /// The rows of the compile before.
    previous: HashMap<Vec<BackendAddr>, MaglevRow>,
    /// The rows of the compile running (or last finished).
    current: HashMap<Vec<BackendAddr>, MaglevRow>,
    built: usize,
}

impl MaglevRows {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a compile with table size `size`: the last compile's rows
    /// become reusable, older ones are dropped.
    pub(super) fn begin(&mut self, size: u32) {
        if size != self.size {
            self.current.clear();
            self.size = size;
        }
        self.previous = std::mem::take(&mut self.current);
        self.built = 0;
    }

    /// The row of `backends`: this compile's or the last one's if it has
    /// one, else `build`'s.
    pub(super) fn row<E>(
        &mut self,
        backends: &[BackendAddr],
        build: impl FnOnce() -> Result<Vec<u32>, E>,
    ) -> Result<MaglevRow, E> {
        if let Some(row) = self.current.get(backends) {
            return Ok(row.clone());
        }
        let (key, row) = match self.previous.remove_entry(backends) {
            Some(kept) => kept,
            None => {
                self.built += 1;
                (backends.to_vec(), MaglevRow::from(build()?))
            }
        };
        self.current.insert(key, row.clone());
        Ok(row)
    }

    /// Rows built (not reused) by the last compile.
    pub fn built(&self) -> usize {
        self.built
    }

    /// Rows kept for the next compile.
    pub fn kept(&self) -> usize {
        self.current.len()
    }
}
