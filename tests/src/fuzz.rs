//! Packet fuzzing of the kernel programs through `BPF_PROG_TEST_RUN`: a
//! seeded mutator that turns well-formed frames into the odd ones an
//! uplink sees (truncations, bit flips, odd lengths, IHL and data offsets,
//! fragments, options, VLAN tags, IPv6, ARP, random bytes), and the checks
//! a changed frame must pass (checksums, and what it may have become).

use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Mutations of seed frames, reproducible from one `u64`.
pub struct Mutator {
    rng: ChaCha8Rng,
    seeds: Vec<Vec<u8>>,
}

impl Mutator {
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>) -> Self {
        assert!(!seeds.is_empty(), "the mutator needs seed frames");
        Self { rng: ChaCha8Rng::seed_from_u64(seed), seeds }
    }

    /// The next frame: a seed as it is (one in 16), random bytes (one in
    /// 32), or a seed with one to three mutations, its IPv4 and L4
    /// checksums made right again half of the time (so that mutated
    /// frames also reach the paths behind the checksum-agnostic parsing).
    pub fn next_frame(&mut self) -> Vec<u8> {
        let roll = self.rng.random_range(0..32u32);
        if roll == 0 {
            let len = self.rng.random_range(0..=128usize);
            return (0..len).map(|_| self.rng.random()).collect();
        }
        let mut frame = self.seeds[self.rng.random_range(0..self.seeds.len())].clone();
        if roll <= 2 {
            return frame;
        }
        for _ in 0..self.rng.random_range(1..=3) {
            self.mutate(&mut frame);
        }
        if self.rng.random_bool(0.5) {
            fix_checksums(&mut frame);
        }
        frame
    }

    fn mutate(&mut self, frame: &mut Vec<u8>) {
        let rng = &mut self.rng;
        match rng.random_range(0..12u32) {
            // Truncated anywhere.
            0 => {
                let len = rng.random_range(0..=frame.len());
                frame.truncate(len);
            }
            // Bit flips, mostly in the headers.
            1 => {
                for _ in 0..rng.random_range(1..=4) {
                    if frame.is_empty() {
                        break;
                    }
                    let at = rng.random_range(0..frame.len().min(64));
                    frame[at] ^= 1 << rng.random_range(0..8);
                }
            }
            // A random byte anywhere.
            2 => {
                if !frame.is_empty() {
                    let at = rng.random_range(0..frame.len());
                    frame[at] = rng.random();
                }
            }
            // Odd lengths: trailing bytes.
            3 => {
                for _ in 0..rng.random_range(1..=67) {
                    frame.push(rng.random());
                }
            }
            // IHL anything from 0 to 15.
            4 => set(frame, 14, |b| (b & 0xf0) | rng.random_range(0..16u8)),
            // TCP data offset anything.
            5 => set(frame, 14 + 20 + 12, |b| (b & 0x0f) | (rng.random_range(0..16u8) << 4)),
            // Fragments: more-fragments and/or an offset.
            6 => {
                let flags: u16 = match rng.random_range(0..3) {
                    0 => 0x2000,
                    1 => rng.random_range(1..0x1fff),
                    _ => 0x2000 | rng.random_range(1..0x1fff),
                };
                if frame.len() >= 22 {
                    frame[20..22].copy_from_slice(&flags.to_be_bytes());
                }
            }
            // IPv4 options: NOP words inserted, IHL and total length kept consistent.
            7 => {
                if frame.len() >= 34 && frame[14] >> 4 == 4 {
                    let words = rng.random_range(1..=10usize);
                    let ihl = usize::from(frame[14] & 0x0f).max(5);
                    let at = (14 + ihl * 4).min(frame.len());
                    frame.splice(at..at, std::iter::repeat_n(1u8, words * 4));
                    frame[14] = 0x40 | ((ihl + words).min(15) as u8);
                    let total = u16::from_be_bytes([frame[16], frame[17]]).saturating_add((words * 4) as u16);
                    frame[16..18].copy_from_slice(&total.to_be_bytes());
                }
            }
            // A VLAN tag before the ethertype.
            8 => {
                if frame.len() >= 12 {
                    let tci: u16 = rng.random_range(0..4096);
                    let mut tag = vec![0x81, 0x00];
                    tag.extend_from_slice(&tci.to_be_bytes());
                    frame.splice(12..12, tag);
                }
            }
            // Another ethertype: IPv6, ARP, or anything.
            9 => {
                let ethertype: u16 = match rng.random_range(0..3) {
                    0 => 0x86dd,
                    1 => 0x0806,
                    _ => rng.random(),
                };
                if frame.len() >= 14 {
                    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
                }
            }
            // The IPv4 total length anything.
            10 => {
                if frame.len() >= 18 {
                    let total: u16 = rng.random_range(0..=frame.len() as u16 + 64);
                    frame[16..18].copy_from_slice(&total.to_be_bytes());
                }
            }
            // The reserved IPv4 flag (lb's hand-off mark) set.
            _ => set(frame, 20, |b| b | 0x80),
        }
    }
}

fn set(frame: &mut [u8], at: usize, f: impl FnOnce(u8) -> u8) {
    if let Some(b) = frame.get_mut(at) {
        *b = f(*b);
    }
}

/// Ones' complement sum of `bytes` (odd length padded), folded.
fn sum16(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An Ethernet + IPv4 frame's parts as far as they are well-formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Frame {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Ports (TCP or UDP), else 0.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP type and code, else 0.
    pub icmp: (u8, u8),
    header_len: usize,
    total_len: usize,
}

impl Ipv4Frame {
    /// Ethernet II, IPv4 with a sane IHL and total length inside the frame.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
            return None;
        }
        let header_len = usize::from(frame[14] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        if header_len < 20 || total_len < header_len || 14 + total_len > frame.len() {
            return None;
        }
        let l4 = &frame[14 + header_len..14 + total_len];
        let protocol = frame[23];
        let ports = match protocol {
            6 | 17 if l4.len() >= 4 => (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])),
            _ => (0, 0),
        };
        let icmp = if protocol == 1 && l4.len() >= 2 { (l4[0], l4[1]) } else { (0, 0) };
        let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
        Some(Self {
            src: ip(26),
            dst: ip(30),
            protocol,
            src_port: ports.0,
            dst_port: ports.1,
            icmp,
            header_len,
            total_len,
        })
    }

    /// Not a fragment (whose L4 checksum covers more than this frame).
    fn whole(frame: &[u8]) -> bool {
        u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff == 0
    }

    /// Whether the IPv4 header checksum and (for an unfragmented TCP, UDP
    /// or ICMP packet with a complete header) the L4 checksum are right.
    pub fn checksums_valid(&self, frame: &[u8]) -> bool {
        if sum16(0, &frame[14..14 + self.header_len]) != 0xffff {
            return false;
        }
        if !Self::whole(frame) {
            return true;
        }
        let l4 = &frame[14 + self.header_len..14 + self.total_len];
        let pseudo = || {
            let mut sum = u32::from(self.protocol) + l4.len() as u32;
            for word in frame[26..34].chunks(2) {
                sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
            }
            sum
        };
        match self.protocol {
            6 if l4.len() >= 20 => sum16(pseudo(), l4) == 0xffff,
            17 if l4.len() >= 8 => l4[6..8] == [0, 0] || sum16(pseudo(), l4) == 0xffff,
            1 if l4.len() >= 8 => sum16(0, l4) == 0xffff,
            _ => true,
        }
    }
}

/// Recomputes the IPv4 header checksum and (unfragmented TCP, UDP or ICMP
/// with a complete header) the L4 checksum of `frame`, when it parses.
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(parsed) = Ipv4Frame::parse(frame) else { return };
    let header = 14..14 + parsed.header_len;
    frame[24..26].copy_from_slice(&[0, 0]);
    let check = !sum16(0, &frame[header]);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
    if !Ipv4Frame::whole(frame) {
        return;
    }
    let l4 = 14 + parsed.header_len..14 + parsed.total_len;
    let len = l4.len();
    let offset = match parsed.protocol {
        6 if len >= 20 => 16,
        17 if len >= 8 => 6,
        1 if len >= 8 => 2,
        _ => return,
    };
    frame[l4.start + offset..l4.start + offset + 2].copy_from_slice(&[0, 0]);
    let mut initial = 0u32;
    if parsed.protocol != 1 {
        initial = u32::from(parsed.protocol) + len as u32;
        for word in frame[26..34].chunks(2) {
            initial += u32::from(u16::from_be_bytes([word[0], word[1]]));
        }
    }
    let mut sum = !sum16(initial, &frame[l4.clone()]);
    if parsed.protocol == 17 && sum == 0 {
        sum = 0xffff;
    }
    frame[l4.start + offset..l4.start + offset + 2].copy_from_slice(&sum.to_be_bytes());
}

/// An ARP reply: (sender MAC, sender IP, target IP).
pub fn arp_reply(frame: &[u8]) -> Option<([u8; 6], Ipv4Addr, Ipv4Addr)> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] || frame[14..22] != [0, 1, 8, 0, 6, 4, 0, 2] {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
    Some((frame[22..28].try_into().ok()?, ip(28), ip(38)))
}

/// `00 11 22 …`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`hex`]'s output.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mutator_is_reproducible_and_fixing_checksums_makes_them_valid() {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        // IPv4 UDP 192.168.1.2:5000 → 192.168.1.11:30053, 4 bytes of payload.
        frame.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 168, 1, 2, 192, 168, 1, 11]);
        frame.extend_from_slice(&[0x13, 0x88, 0x75, 0x65, 0, 12, 0, 0, 1, 2, 3, 4]);
        fix_checksums(&mut frame);
        let parsed = Ipv4Frame::parse(&frame).unwrap();
        assert!(parsed.checksums_valid(&frame));
        assert_eq!((parsed.src_port, parsed.dst_port), (5000, 30053));
        let mut broken = frame.clone();
        broken[45] ^= 1;
        assert!(!parsed.checksums_valid(&broken));
        let a: Vec<Vec<u8>> = {
            let mut m = Mutator::new(7, vec![frame.clone()]);
            (0..200).map(|_| m.next_frame()).collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut m = Mutator::new(7, vec![frame.clone()]);
            (0..200).map(|_| m.next_frame()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|f| f != &frame) && a.iter().any(|f| f.len() != frame.len()));
        assert_eq!(unhex(&hex(&frame)).unwrap(), frame);
    }
}
