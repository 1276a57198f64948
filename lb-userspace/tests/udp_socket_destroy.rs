//! `lb_userspace::sockets` against the kernel (root only): a network
//! namespace found through a process in a cgroup, connected UDP sockets in
//! it, and the destroy of those connected to a removed backend. All traffic
//! stays on 127.0.0.1 inside that namespace.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lb_userspace::sockets::{NetNs, destroy_udp_connected_to, namespaces_in_cgroup};
use nix::libc;
use nix::sched::{CloneFlags, setns};

/// What the test created, removed on drop (also when an assertion fails).
#[derive(Default)]
struct Bed {
    /// The test's cgroup, and the "pod" cgroup below it holding the child.
    cgroups: Vec<PathBuf>,
    netns: Option<String>,
    child: Option<Child>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals the child's PID (ours to reap, so not reused).
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.cgroups.iter().rev() {
            // A killed process leaves its cgroup shortly after it is reaped.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() == io::ErrorKind::NotFound || Instant::now() > deadline {
                    if e.kind() != io::ErrorKind::NotFound {
                        eprintln!("leaving cgroup {}: {e}", dir.display());
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(name) = self.netns.take() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Bed {
    fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.netns.as_ref().expect("netns created"))
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// The mount point of the cgroup v2 hierarchy: the first cgroup2 line of /proc/mounts.
fn cgroup2_mount() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("reading /proc/mounts");
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .expect("no cgroup2 file system is mounted (/proc/mounts)");
    PathBuf::from(line.split_whitespace().nth(1).unwrap())
}

/// A cgroup tree `<cgroup2>/NAME/pod` with one process (`sleep`) in it,
/// running in a new network namespace NAME whose `lo` is up.
fn bed() -> Bed {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("lb-udpdestroy-{}-{}-{stamp}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut bed = Bed::default();

    run(Command::new("ip").args(["netns", "add", &name]));
    bed.netns = Some(name.clone());
    run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));

    let root = cgroup2_mount().join(&name);
    std::fs::create_dir(&root).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", root.display()));
    bed.cgroups.push(root.clone());
    let pod = root.join("pod");
    std::fs::create_dir(&pod).unwrap_or_else(|e| panic!("creating cgroup {}: {e}", pod.display()));
    bed.cgroups.push(pod.clone());

    let child = Command::new("nsenter")
        .arg(format!("--net={}", bed.netns_path().display()))
        .args(["--", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting nsenter (util-linux)");
    let pid = child.id();
    bed.child = Some(child);
    std::fs::write(pod.join("cgroup.procs"), pid.to_string()).expect("moving the child into its cgroup");

    // nsenter enters the namespace, then execs sleep (same PID): wait for it.
    let want = std::fs::metadata(bed.netns_path()).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino()).ok() != Some(want) {
        assert!(Instant::now() < deadline, "the child {pid} never entered netns {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
    bed
}

/// Runs `f` on a thread that has entered the network namespace at `path`:
/// the sockets it creates belong to that namespace, whichever thread uses them later.
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let ns = File::open(path).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
            f()
        })
        .join()
        .unwrap()
    })
}

fn udp(connect_to: Option<SocketAddr>) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if let Some(peer) = connect_to {
        s.connect(peer).unwrap();
    }
    s
}

/// `client` (connected to `server`) sends, `server` answers, `client` receives.
fn echo(client: &UdpSocket, server: &UdpSocket, payload: &[u8]) {
    client.send(payload).expect("client send");
    let mut buf = [0; 64];
    let (n, from) = server.recv_from(&mut buf).expect("server recv");
    assert_eq!((&buf[..n], from), (payload, client.local_addr().unwrap()));
    server.send_to(&buf[..n], from).unwrap();
    let n = client.recv(&mut buf).expect("client recv");
    assert_eq!(&buf[..n], payload);
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("{a} is not IPv4"),
    }
}

fn errno(r: io::Result<usize>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "udp_socket_destroy must run as root (CI does): it creates a network namespace and a cgroup \
         and destroys sockets with SOCK_DESTROY. Not skipping."
    );
}

#[test]
fn destroys_only_the_udp_sockets_connected_to_a_removed_backend() {
    assert_root();
    let bed = bed();
    let netns_path = bed.netns_path();

    let [server1, server2, client1, client2, unconnected] = in_netns(&netns_path, || {
        let (s1, s2) = (udp(None), udp(None));
        let (c1, c2) = (udp(Some(s1.local_addr().unwrap())), udp(Some(s2.local_addr().unwrap())));
        [s1, s2, c1, c2, udp(None)]
    });
    echo(&client1, &server1, b"before 1");
    echo(&client2, &server2, b"before 2");
    let removed = v4(server1.local_addr().unwrap());

    // The namespace is found through the child, in a cgroup below the root.
    let found = namespaces_in_cgroup(&bed.cgroups[0]).expect("namespaces_in_cgroup");
    assert_eq!(found.len(), 1, "{found:?}");
    let netns = &found[0];
    assert_eq!(netns.id(), NetNs::open(&netns_path).unwrap().id(), "not the test's namespace: {netns:?}");
    assert_eq!(netns.pid(), bed.child.as_ref().map(Child::id));

    let peers = HashSet::from([removed]);
    assert_eq!(destroy_udp_connected_to(netns, &peers).expect("destroy"), 1);

    // The client of the removed backend: its pending error, ECONNABORTED,
    // on the next recv; the kernel also disconnected it, so a send without
    // an address then fails with EDESTADDRREQ.
    let mut buf = [0; 64];
    assert_eq!(errno(client1.recv(&mut buf)), Some(libc::ECONNABORTED), "recv after destroy");
    assert_eq!(errno(client1.send(b"x")), Some(libc::EDESTADDRREQ), "send after destroy");
    // What an application does next: reconnect, here to the live backend.
    client1.connect(server2.local_addr().unwrap()).unwrap();
    echo(&client1, &server2, b"reconnected");

    // The other client and the unconnected sockets are untouched.
    echo(&client2, &server2, b"after 2");
    unconnected.send_to(b"unconnected", removed).unwrap();
    let (n, from) = server1.recv_from(&mut buf).expect("the removed backend's server still receives");
    assert_eq!((&buf[..n], from), (&b"unconnected"[..], unconnected.local_addr().unwrap()));
    server1.send_to(b"reply", from).unwrap();
    let (n, _) = unconnected.recv_from(&mut buf).expect("the unconnected socket still receives");
    assert_eq!(&buf[..n], b"reply");

    // Nothing is connected to the removed backend any more.
    assert_eq!(destroy_udp_connected_to(netns, &peers).unwrap(), 0);

    // A socket whose first call after the destroy is a send: the socket is
    // disconnected, and the send reports that (the pending error stays for
    // the next recv).
    let client3 = in_netns(&netns_path, || udp(Some(server1.local_addr().unwrap())));
    echo(&client3, &server1, b"before 3");
    assert_eq!(destroy_udp_connected_to(netns, &peers).unwrap(), 1);
    assert_eq!(errno(client3.send(b"x")), Some(libc::EDESTADDRREQ), "send after destroy");
    assert_eq!(errno(client3.recv(&mut buf)), Some(libc::ECONNABORTED), "recv after destroy");
}

/// Enough connected sockets that the kernel's dump spans several
/// datagrams (each holds at most 32 KiB, a socket takes over 100 bytes).
#[test]
fn destroys_across_a_dump_of_several_datagrams() {
    const PER_BACKEND: usize = 250;
    assert_root();
    let bed = bed();
    let netns_path = bed.netns_path();
    let (servers, clients) = in_netns(&netns_path, || {
        let servers = [udp(None), udp(None)];
        let clients: Vec<(usize, UdpSocket)> =
            (0..2 * PER_BACKEND).map(|i| (i % 2, udp(Some(servers[i % 2].local_addr().unwrap())))).collect();
        (servers, clients)
    });
    let removed = v4(servers[0].local_addr().unwrap());
    let found = namespaces_in_cgroup(&bed.cgroups[0]).expect("namespaces_in_cgroup");
    assert_eq!(found.len(), 1, "{found:?}");

    assert_eq!(destroy_udp_connected_to(&found[0], &HashSet::from([removed])).expect("destroy"), PER_BACKEND);
    let mut buf = [0; 8];
    for (backend, client) in &clients {
        if *backend == 0 {
            assert_eq!(errno(client.recv(&mut buf)), Some(libc::ECONNABORTED));
        } else {
            assert_eq!(client.peer_addr().unwrap(), servers[1].local_addr().unwrap());
        }
    }
    echo(&clients[1].1, &servers[1], b"still connected");
}
