//! The hash that picks a Maglev slot for a new flow.
//!
//! It is deliberately tiny (a few multiplies and xors, no loops) so the
//! verifier accepts it anywhere, and it is defined here once so that tests and
//! tools in userspace compute exactly what the kernel computes.

/// Mixes the words of a flow tuple into 32 bits (murmur3's finaliser over a
/// multiply-xor combination of the tuple). Inputs are taken as stored in
/// packets: addresses and ports in network byte order.
#[inline(always)]
pub fn flow_hash(src_addr: u32, dst_addr: u32, src_port: u16, dst_port: u16, protocol: u8) -> u32 {
    let ports = ((src_port as u32) << 16) | dst_port as u32;
    let mut h: u32 = 0x9e37_79b9 ^ protocol as u32;
    h = mix(h, src_addr);
    h = mix(h, dst_addr);
    h = mix(h, ports);
    fmix32(h)
}

#[inline(always)]
fn mix(h: u32, word: u32) -> u32 {
    let mut k = word.wrapping_mul(0xcc9e_2d51);
    k = k.rotate_left(15);
    k = k.wrapping_mul(0x1b87_3593);
    let h = (h ^ k).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::flow_hash;

    #[test]
    fn depends_on_every_field() {
        let base = flow_hash(1, 2, 3, 4, 6);
        assert_ne!(base, flow_hash(9, 2, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 9, 3, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 9, 4, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 9, 6));
        assert_ne!(base, flow_hash(1, 2, 3, 4, 17));
    }

    #[test]
    fn spreads_source_ports_evenly_over_buckets() {
        let mut buckets = [0u32; 16];
        for port in 0..16_000u16 {
            buckets[(flow_hash(0x0a00_0002, 0x0a00_000b, port, 30007, 6) % 16) as usize] += 1;
        }
        for count in buckets {
            assert!((900..1100).contains(&count), "uneven bucket: {buckets:?}");
        }
    }
}
