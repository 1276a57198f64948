//! The compiled kernel programs, embedded in the `lb` binary by build.rs.

/// Aligned wrapper so the ELF bytes can be parsed in place.
#[repr(C, align(32))]
struct Aligned<Bytes: ?Sized>(Bytes);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/lb-ebpf.o")));

/// The ELF object holding `lb_xdp`, `lb_tc_egress` and their maps.
pub fn bytes() -> &'static [u8] {
    &OBJECT.0
}
