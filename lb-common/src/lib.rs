//! Types shared by the kernel programs (`lb-ebpf`) and the agent (`lb-userspace`).
//!
//! Everything that crosses the user/kernel boundary lives here as `#[repr(C)]`
//! plain old data with explicit padding, so both sides agree on the layout
//! byte for byte. Addresses and ports are kept in **network byte order**
//! (exactly as they appear in packets) so the data path compares and copies
//! them without swapping.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod flow_hash;
pub mod maps;

#[cfg(feature = "user")]
pub mod maglev;

pub use maps::*;
