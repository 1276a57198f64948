//! Parsing: Ethernet II → IPv4 without options, unfragmented → TCP or UDP.
//!
//! The rule for anything else: it is not ours. Non-IPv4 frames, IPv4 with
//! options, fragments, other L4 protocols and headers cut short are passed
//! to the kernel untouched (and counted), so the node behaves as if lb were
//! not there. Nothing is ever read beyond `data_end`.

use lb_common::{Counter, PROTO_TCP, PROTO_UDP};

pub const ETH_HLEN: usize = 14;
pub const IP_OFF: usize = ETH_HLEN;
pub const IP_HLEN: usize = 20;
pub const L4_OFF: usize = IP_OFF + IP_HLEN;
pub const TCP_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

/// Byte offsets of fields, from the start of the frame.
pub const OFF_ETH_DST: usize = 0;
pub const OFF_ETH_SRC: usize = 6;
pub const OFF_ETH_TYPE: usize = 12;
pub const OFF_IP_VIHL: usize = IP_OFF;
pub const OFF_IP_TOT_LEN: usize = IP_OFF + 2;
pub const OFF_IP_FRAG: usize = IP_OFF + 6;
pub const OFF_IP_TTL: usize = IP_OFF + 8;
pub const OFF_IP_PROTO: usize = IP_OFF + 9;
pub const OFF_IP_CHECK: usize = IP_OFF + 10;
pub const OFF_IP_SADDR: usize = IP_OFF + 12;
pub const OFF_IP_DADDR: usize = IP_OFF + 16;
pub const OFF_L4_SPORT: usize = L4_OFF;
pub const OFF_L4_DPORT: usize = L4_OFF + 2;
pub const OFF_TCP_FLAGS: usize = L4_OFF + 13;
pub const OFF_TCP_CHECK: usize = L4_OFF + 16;
pub const OFF_UDP_CHECK: usize = L4_OFF + 6;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

pub const ETH_P_IPV4_BE: u16 = 0x0800u16.to_be();
const IP_MF_OFFSET_MASK_BE: u16 = 0x3fffu16.to_be();

/// The fields of a packet that lb looks at, as stored in the packet
/// (addresses and ports in network byte order).
#[derive(Clone, Copy)]
pub struct Headers {
    pub protocol: u8,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// Frame length in bytes.
    pub len: u64,
}

impl Headers {
    #[inline(always)]
    pub fn is_closing(&self) -> bool {
        self.protocol == PROTO_TCP && self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }
}

/// Reads a value at `offset` after the caller proved `offset + size <= len`.
///
/// # Safety
/// `data + offset .. data + offset + size_of::<T>()` must be inside the packet.
#[inline(always)]
pub unsafe fn read<T: Copy>(data: usize, offset: usize) -> T {
    unsafe { core::ptr::read_unaligned((data + offset) as *const T) }
}

/// # Safety
/// As for [`read`].
#[inline(always)]
pub unsafe fn write<T: Copy>(data: usize, offset: usize, value: T) {
    unsafe { core::ptr::write_unaligned((data + offset) as *mut T, value) }
}

/// Parses the frame whose directly readable bytes are `data..data_end` and
/// whose full length is `frame_len` (larger than `data_end - data` for an
/// skb whose payload sits in fragments). `Err` names why it is not ours.
#[inline(always)]
pub fn parse(data: usize, data_end: usize, frame_len: usize) -> Result<Headers, Counter> {
    if data + L4_OFF > data_end {
        // Too short for Ethernet + IPv4; might be a short non-IP frame.
        if data + ETH_HLEN <= data_end && unsafe { read::<u16>(data, OFF_ETH_TYPE) } == ETH_P_IPV4_BE {
            return Err(Counter::PassTruncated);
        }
        return Err(Counter::PassNotIpv4);
    }
    // SAFETY (all reads below): offsets < L4_OFF, checked above.
    if unsafe { read::<u16>(data, OFF_ETH_TYPE) } != ETH_P_IPV4_BE {
        return Err(Counter::PassNotIpv4);
    }
    let vihl: u8 = unsafe { read(data, OFF_IP_VIHL) };
    if vihl >> 4 != 4 {
        return Err(Counter::PassNotIpv4);
    }
    if vihl & 0x0f != 5 {
        // ihl > 5: options; ihl < 5: malformed. Either way the kernel decides.
        return Err(Counter::PassIpOptions);
    }
    if unsafe { read::<u16>(data, OFF_IP_FRAG) } & IP_MF_OFFSET_MASK_BE != 0 {
        return Err(Counter::PassFragment);
    }
    let protocol: u8 = unsafe { read(data, OFF_IP_PROTO) };
    // Constant bounds per protocol keep the verifier's range tracking exact.
    let l4_len = match protocol {
        PROTO_TCP if data + L4_OFF + TCP_HLEN <= data_end => TCP_HLEN,
        PROTO_UDP if data + L4_OFF + UDP_HLEN <= data_end => UDP_HLEN,
        PROTO_TCP | PROTO_UDP => return Err(Counter::PassTruncated),
        _ => return Err(Counter::PassNotService),
    };
    let tot_len = u16::from_be(unsafe { read::<u16>(data, OFF_IP_TOT_LEN) }) as usize;
    if tot_len < IP_HLEN + l4_len || IP_OFF + tot_len > frame_len {
        return Err(Counter::PassTruncated);
    }
    let tcp_flags = if protocol == PROTO_TCP && data + L4_OFF + TCP_HLEN <= data_end {
        // SAFETY: TCP header (20 bytes) checked just above.
        unsafe { read::<u8>(data, OFF_TCP_FLAGS) }
    } else {
        0
    };
    // SAFETY: L4 ports are within the first 8 bytes of the L4 header.
    unsafe {
        Ok(Headers {
            protocol,
            tcp_flags,
            ttl: read(data, OFF_IP_TTL),
            src_addr: read(data, OFF_IP_SADDR),
            dst_addr: read(data, OFF_IP_DADDR),
            src_port: read(data, OFF_L4_SPORT),
            dst_port: read(data, OFF_L4_DPORT),
            len: frame_len as u64,
        })
    }
}
