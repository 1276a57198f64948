//! The `MAGLEV` array written through a shared memory mapping instead of one
//! `bpf(BPF_MAP_UPDATE_ELEM)` call per slot. The kernel program declares
//! the map `BPF_F_MMAPABLE`, so its values live in pages this process can
//! map: a store here is what the XDP program's next lookup reads. With
//! 10,000 services × 1021 slots the first apply was 10M system calls
//! (13 s); as stores it takes milliseconds.
//!
//! Each slot is a `u32` backend id, but the kernel lays array values out
//! 8 bytes apart (value sizes are rounded up to 8), so slot `i` is at byte
//! `8 × i`. Stores are single aligned 32-bit atomic stores: a concurrent
//! lookup sees the old or the new id, never a mix.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use aya::maps::{Array, IterableMap, MapData};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// Bytes between two values of a BPF array (value sizes round up to 8).
const SLOT_STRIDE: usize = 8;

pub struct MaglevSlots {
    map: Array<MapData, u32>,
    base: NonNull<u8>,
    bytes: usize,
    slots: u32,
}

// SAFETY: the mapping is owned by this value (unmapped on drop) and is only
// accessed through atomic stores and loads.
unsafe impl Send for MaglevSlots {}
// SAFETY: as above; `&self` methods only load.
unsafe impl Sync for MaglevSlots {}

impl MaglevSlots {
    /// Maps `map`'s values. Fails if the map was not created
    /// `BPF_F_MMAPABLE` (an eBPF object older than this agent).
    pub fn new(map: Array<MapData, u32>) -> Result<Self> {
        let slots = map.len();
        let bytes = slots as usize * SLOT_STRIDE;
        let length = NonZeroUsize::new(bytes).context("MAGLEV has no slots")?;
        // SAFETY: a new shared mapping of the map's value area, of exactly
        // the values' size; the kernel checks it against the map.
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.map().fd().as_fd(),
                0,
            )
        }
        .context("mapping MAGLEV into memory (is the eBPF object's MAGLEV BPF_F_MMAPABLE?)")?;
        Ok(Self { map, base: base.cast(), bytes, slots })
    }

    fn slot(&self, index: u32) -> Result<&AtomicU32> {
        if index >= self.slots {
            bail!("Maglev slot {index} is past the map's {} slots", self.slots);
        }
        // SAFETY: in bounds (checked above), 8-byte aligned (page-aligned
        // base, stride 8), and mapped for as long as `self` lives.
        Ok(unsafe { &*self.base.as_ptr().add(index as usize * SLOT_STRIDE).cast::<AtomicU32>() })
    }

    /// Stores backend id `backend_id` in slot `index` (`service_id × M + slot`).
    pub fn set(&mut self, index: u32, backend_id: u32) -> Result<()> {
        self.slot(index)?.store(backend_id, Ordering::Release);
        Ok(())
    }

    /// The backend id in slot `index`.
    pub fn get(&self, index: u32) -> Result<u32> {
        Ok(self.slot(index)?.load(Ordering::Acquire))
    }

    /// The map itself (for its fd and accounting).
    pub fn map(&self) -> &MapData {
        self.map.map()
    }
}

impl Drop for MaglevSlots {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of `bytes` bytes; no reference
        // into it outlives `self`.
        if let Err(e) = unsafe { munmap(self.base.cast(), self.bytes) } {
            tracing::warn!("unmapping MAGLEV: {e}");
        }
    }
}
