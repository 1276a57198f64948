//! Internet checksum arithmetic (RFC 1071, incremental update per RFC 1624).
//!
//! Values are 16-bit words exactly as loaded from packet memory: ones'
//! complement sums do not depend on byte order as long as loads and stores
//! agree.

#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Checksum after a 32-bit field changed from `old` to `new`.
#[inline(always)]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u64
        + (!(old as u16)) as u64
        + (!((old >> 16) as u16)) as u64
        + (new & 0xffff) as u64
        + (new >> 16) as u64;
    !fold(sum)
}

/// Checksum after a 16-bit field changed from `old` to `new`.
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u64 + (!old) as u64 + new as u64;
    !fold(sum)
}

/// UDP: a computed checksum of 0 is sent as 0xffff (0 means "none").
#[inline(always)]
pub fn udp_nonzero(check: u16) -> u16 {
    if check == 0 { 0xffff } else { check }
}

/// The ones'-complement difference between two 32-bit fields, as a value
/// `bpf_l4_csum_replace` adds with a size of 0 (at most 0x3fffc: the sum of
/// several such differences does not overflow a `u32`).
#[inline(always)]
pub fn diff32(old: u32, new: u32) -> u32 {
    (!(old as u16)) as u32 + (!((old >> 16) as u16)) as u32 + (new & 0xffff) + (new >> 16)
}

/// [`diff32`] for a 16-bit field.
#[inline(always)]
pub fn diff16(old: u16, new: u16) -> u32 {
    (!old) as u32 + new as u32
}
