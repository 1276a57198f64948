//! ARP as a host on the LAN sees it: asking who has an address (and
//! collecting every answer, to see that exactly one node answers), and
//! listening for gratuitous ARP. Raw `AF_PACKET` sockets in a namespace of
//! the bed; nothing is installed on the nodes.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::libc;

use crate::netns::{in_netns, ip_in};

const ETH_P_ARP: u16 = 0x0806;

/// An ARP packet as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    fn parse(frame: &[u8]) -> Option<Self> {
        if frame.len() < 42 || frame[12..14] != ETH_P_ARP.to_be_bytes() || frame[14..20] != [0, 1, 8, 0, 6, 4] {
            return None;
        }
        let mac = |at: usize| <[u8; 6]>::try_from(&frame[at..at + 6]).ok();
        let ip = |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
        Some(Self {
            operation: u16::from_be_bytes([frame[20], frame[21]]),
            sender_mac: mac(22)?,
            sender_ip: ip(28),
            target_mac: mac(32)?,
            target_ip: ip(38),
        })
    }

    /// Sender and target address are the same: an announcement.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// A raw ARP socket on `interface` (call inside the namespace).
fn arp_socket(interface: &str, timeout: Duration) -> Result<(OwnedFd, i32)> {
    let ifindex = nix::net::if_::if_nametoindex(interface).with_context(|| format!("no interface {interface}"))?;
    // SAFETY: plain socket(2); owned at once.
    let fd =
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETH_P_ARP.to_be())) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    // SAFETY: just returned by socket(2).
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = ETH_P_ARP.to_be();
    at.sll_ifindex = ifindex as i32;
    // SAFETY: the address outlives the call; its size is passed.
    let bound = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const at).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
    };
    if bound < 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    let tv = libc::timeval { tv_sec: timeout.as_secs() as _, tv_usec: timeout.subsec_micros() as _ };
    // SAFETY: a timeval for SO_RCVTIMEO, its size passed.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if set < 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO");
    }
    Ok((socket, ifindex as i32))
}

/// The next ARP packet, or `None` when the receive timeout passed.
fn receive(socket: &OwnedFd) -> Result<Option<ArpPacket>> {
    let mut frame = [0u8; 1514];
    loop {
        // SAFETY: the buffer outlives the call; its size is passed.
        let n = unsafe { libc::recv(socket.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                return Ok(None);
            }
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("recv(AF_PACKET)");
        }
        if let Some(packet) = ArpPacket::parse(&frame[..n as usize]) {
            return Ok(Some(packet));
        }
    }
}

/// Asks, from `interface` in `ns` (address `from_ip`, Ethernet address
/// `from_mac`), who has `target`, and returns the Ethernet address of every
/// reply that arrives within `wait`.
pub fn who_has(
    ns: &str,
    interface: &str,
    from: ([u8; 6], Ipv4Addr),
    target: Ipv4Addr,
    wait: Duration,
) -> Result<Vec<[u8; 6]>> {
    let interface = interface.to_string();
    in_netns(ns, move || {
        let (socket, ifindex) = arp_socket(&interface, Duration::from_millis(100))?;
        let mut frame = [0u8; 42];
        frame[0..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&from.0);
        frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        frame[22..28].copy_from_slice(&from.0);
        frame[28..32].copy_from_slice(&from.1.octets());
        frame[38..42].copy_from_slice(&target.octets());
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ARP.to_be();
        to.sll_ifindex = ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: frame and address outlive the call; sizes passed.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent != frame.len() as isize {
            return Err(std::io::Error::last_os_error()).context("sending an ARP request");
        }
        let deadline = Instant::now() + wait;
        let mut answers = Vec::new();
        while Instant::now() < deadline {
            if let Some(packet) = receive(&socket)?
                && packet.operation == 2
                && packet.sender_ip == target
                && packet.target_ip == from.1
            {
                answers.push(packet.sender_mac);
            }
        }
        Ok(answers)
    })?
}

/// A listener for ARP on `interface` in `ns`, started now, running on its
/// own thread until it sees a packet `wanted` accepts or `wait` passes.
pub struct ArpListener {
    thread: std::thread::JoinHandle<Result<Option<(ArpPacket, Duration)>>>,
}

impl ArpListener {
    pub fn start(
        ns: &str,
        interface: &str,
        wait: Duration,
        wanted: impl Fn(&ArpPacket) -> bool + Send + 'static,
    ) -> Result<Self> {
        let (ns, interface) = (ns.to_string(), interface.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            in_netns(&ns, move || {
                let started = Instant::now();
                let (socket, _) = arp_socket(&interface, Duration::from_millis(100))?;
                let _ = ready_tx.send(());
                while started.elapsed() < wait {
                    if let Some(packet) = receive(&socket)?
                        && wanted(&packet)
                    {
                        return Ok(Some((packet, started.elapsed())));
                    }
                }
                Ok(None)
            })?
        });
        // Listening before the caller goes on.
        if ready_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            bail!("the ARP listener did not start: {:?}", thread.join());
        }
        Ok(Self { thread })
    }

    /// The packet seen and when (from the start), or `None`.
    pub fn wait(self) -> Result<Option<(ArpPacket, Duration)>> {
        self.thread.join().map_err(|_| anyhow::anyhow!("the ARP listener panicked"))?
    }
}

/// The Ethernet address of `interface` in `ns`.
pub fn mac_of(ns: &str, interface: &str) -> Result<[u8; 6]> {
    let out = ip_in(ns, &["-o", "link", "show", interface])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).context("no link/ether")?;
    parse_mac(mac)
}

/// The Ethernet address `ns`'s neighbour cache holds for `ip`, if any.
pub fn neighbour(ns: &str, ip: Ipv4Addr) -> Result<Option<[u8; 6]>> {
    let out = ip_in(ns, &["neigh", "show", &ip.to_string()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().skip_while(|w| *w != "lladdr").nth(1) {
        Some(mac) => parse_mac(mac).map(Some),
        None => Ok(None),
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>()?;
    <[u8; 6]>::try_from(bytes.as_slice()).map_err(|_| anyhow::anyhow!("{text:?} is not an Ethernet address"))
}

/// `02:00:00:00:00:11`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
