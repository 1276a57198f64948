//! Maglev rows reused instead of built. A row depends only on its backends
//! (in their canonical order) and the table size, and building one costs
//! O(M), so a compile reuses the rows of the Services it compiles again
//! when their backends did not change, and shares one row between service
//! ports with the same backends.

use std::collections::HashMap;

use super::{BackendAddr, MaglevRow};

/// The rows one compile may reuse, by backend list. Emptied when the
/// compile ends: the rows live on in the tables.
#[derive(Debug, Default)]
pub struct MaglevRows {
    size: u32,
    reusable: HashMap<Vec<BackendAddr>, MaglevRow>,
    built: usize,
}

impl MaglevRows {
    /// Starts a compile with table size `size`.
    pub(super) fn begin(&mut self, size: u32) {
        self.size = size;
        self.reusable.clear();
        self.built = 0;
    }

    /// Offers the row a Service had, for its compile to reuse.
    pub(super) fn offer(&mut self, backends: &[BackendAddr], row: &MaglevRow) {
        if (row.is_empty() || row.len() == self.size as usize) && !self.reusable.contains_key(backends) {
            self.reusable.insert(backends.to_vec(), row.clone());
        }
    }

    /// The row of `backends`: one offered or built in this compile, else
    /// `build`'s.
    pub(super) fn row<E>(
        &mut self,
        backends: &[BackendAddr],
        build: impl FnOnce() -> Result<Vec<u32>, E>,
    ) -> Result<MaglevRow, E> {
        if let Some(row) = self.reusable.get(backends) {
            return Ok(row.clone());
        }
        self.built += 1;
        let row = MaglevRow::from(build()?);
        self.reusable.insert(backends.to_vec(), row.clone());
        Ok(row)
    }

    /// Ends the compile.
    pub(super) fn end(&mut self) {
        self.reusable = HashMap::new();
    }

    /// Rows built (not reused) by the last compile.
    pub fn built(&self) -> usize {
        self.built
    }
}
