//! What the running kernel's verifier lets an XDP program do, found by
//! loading a four-instruction program (as libbpf's feature probes do).

use std::io;

use nix::libc;

/// `BPF_PROG_LOAD`, `BPF_PROG_TYPE_XDP`, `bpf_xdp_adjust_meta`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;
const HELPER_XDP_ADJUST_META: i32 = 54;

/// One eBPF instruction.
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD` (the rest stays zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    rest: [u64; 12],
}

/// Whether XDP programs may call `bpf_xdp_adjust_meta` (some kernels'
/// verifiers refuse it: "program of this type cannot use helper").
/// `Err` when the probe could not tell (no permission to load programs,
/// say): the real load reports that better.
pub fn xdp_metadata_allowed() -> io::Result<bool> {
    // r2 = -4; call bpf_xdp_adjust_meta (r1 = ctx); r0 = XDP_PASS; exit
    let program = [
        Insn { code: 0xb7, regs: 2, off: 0, imm: -4 },
        Insn { code: 0x85, regs: 0, off: 0, imm: HELPER_XDP_ADJUST_META },
        Insn { code: 0xb7, regs: 0, off: 0, imm: 2 },
        Insn { code: 0x95, regs: 0, off: 0, imm: 0 },
    ];
    let license = c"GPL";
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `attr` and what it points to live across the call; the
    // kernel reads `size_of_val(&attr)` bytes of it.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, size_of_val(&attr) as libc::c_uint)
    };
    if fd >= 0 {
        // SAFETY: the descriptor the call just returned, ours to close.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) => Ok(false),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_head_is_what_the_kernel_reads() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(size_of::<ProgLoadAttr>(), 144);
    }
}
