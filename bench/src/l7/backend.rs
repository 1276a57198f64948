//! The backend of the throughput and latency runs: one nginx with one
//! worker (on the generator's CPU, where lb-bench starts it) answering
//! every request with a fixed 3-byte body on each pod address's
//! `BACKEND_PORT` — the static backend of issue 17's per-core setup. It is
//! much cheaper per request than `lb-echo`, whose JSON echo of every
//! request made the generator's CPU the limit of the faster proxies. It
//! also serves TLS (h2 and HTTP/1.1) on [`TLS_PORT`] of the first address,
//! only for the direct runs that measure the generator's own capacity.
//!
//! The reload, upgrade and memory tests keep the `lb-echo` pods: their
//! WebSockets need an echo.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use lb_testbed::Process;
use lb_testbed::l7::net::wait_for_port;
use lb_testbed::l7::unique_loopback_ip;

use super::model::BACKEND_PORT;
use super::nginx::NGINX;
use super::proxy::write;

/// TLS port of the first address (direct runs only).
pub const TLS_PORT: u16 = 8443;
/// What every request gets.
pub const BODY: &str = "ok\n";

pub struct StaticBackend {
    pub ips: Vec<Ipv4Addr>,
    dir: PathBuf,
    process: Process,
}

impl StaticBackend {
    /// Starts nginx on `n` fresh loopback addresses (in the calling
    /// thread's CPU set: the generator's).
    pub fn start(dir: &Path, n: usize) -> Result<Self> {
        let ips: Vec<Ipv4Addr> = (0..n.max(1)).map(|_| unique_loopback_ip()).collect();
        std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
        let cert = lb_testbed::l7::self_signed(&["backend.test"])?;
        write(&dir.join("backend.crt"), &cert.cert_pem)?;
        write(&dir.join("backend.key"), &cert.key_pem)?;
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join("tmp").join(sub))?;
        }
        let conf = dir.join("backend.conf");
        write(&conf, &config(&ips, dir)?)?;
        let args = ["-c".to_string(), conf.display().to_string(), "-p".into(), dir.display().to_string()];
        let process = Process::spawn(&dir.join("logs"), "backend", Path::new(NGINX), &args, Duration::from_secs(5))?;
        let backend = Self { ips, dir: dir.to_path_buf(), process };
        let addrs = backend.ips.iter().map(|ip| SocketAddr::from((*ip, BACKEND_PORT))).chain([backend.tls_addr()]);
        for addr in addrs {
            wait_for_port(addr, Duration::from_secs(10), || backend.process.is_running())
                .with_context(|| format!("static backend on {addr}\n{}", backend.logs()))?;
        }
        Ok(backend)
    }

    pub fn addr(&self, tls: bool) -> SocketAddr {
        if tls { self.tls_addr() } else { SocketAddr::from((self.ips[0], BACKEND_PORT)) }
    }

    fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ips[0], TLS_PORT))
    }

    /// nginx's master and worker.
    pub fn pids(&self) -> Vec<u32> {
        super::cpu::tree(self.process.pid())
    }

    fn logs(&self) -> String {
        let mut out = self.process.logs(4096);
        if let Ok(err) = std::fs::read_to_string(self.dir.join("logs/error.log")) {
            out.push_str("\n---- error.log ----\n");
            out.push_str(&err);
        }
        out
    }
}

impl Drop for StaticBackend {
    /// Stops the master; then its worker if it is still there.
    fn drop(&mut self) {
        let pids = self.pids();
        self.process.stop();
        for pid in pids.into_iter().skip(1) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.starts_with("nginx") {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// The backend's `nginx.conf`: no access log, connections kept for as many
/// requests as the proxies send (nginx's default of 1000 would make the
/// proxies reconnect to it all the time).
pub fn config(ips: &[Ipv4Addr], dir: &Path) -> Result<String> {
    let d = dir.display();
    let mut c = String::new();
    writeln!(
        c,
        "# lb-bench's static backend.\n\
         worker_processes 1;\ndaemon off;\npid {d}/backend.pid;\nerror_log {d}/logs/error.log warn;\n\
         worker_rlimit_nofile 10240;\nevents {{ worker_connections 8192; use epoll; }}\nhttp {{\n\
         client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy; fastcgi_temp_path {d}/tmp/fastcgi;\n\
         uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n\
         access_log off; server_tokens off; tcp_nodelay on;\n\
         keepalive_timeout 300s; keepalive_requests 100000000; http2_max_concurrent_streams 128;\n\
         default_type text/plain;\n\
         server {{"
    )?;
    for ip in ips {
        writeln!(c, "  listen {ip}:{BACKEND_PORT} backlog=4096;")?;
    }
    let first = ips.first().context("no address")?;
    writeln!(
        c,
        "  listen {first}:{TLS_PORT} ssl http2 backlog=4096;\n\
         \x20 ssl_certificate {d}/backend.crt; ssl_certificate_key {d}/backend.key;\n\
         \x20 ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets off;\n\
         \x20 location / {{ return 200 \"{}\"; }}\n}}\n}}",
        BODY.escape_default()
    )?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_on_every_address() {
        let ips = [Ipv4Addr::new(127, 9, 9, 2), Ipv4Addr::new(127, 9, 9, 3)];
        let c = config(&ips, Path::new("/x")).unwrap();
        assert!(c.contains("listen 127.9.9.2:8080 backlog=4096;\n  listen 127.9.9.3:8080 backlog=4096;\n"), "{c}");
        assert!(c.contains("listen 127.9.9.2:8443 ssl http2"), "{c}");
        assert!(c.contains("location / { return 200 \"ok\\n\"; }"), "{c}");
        assert!(c.contains("worker_processes 1;") && c.contains("access_log off;"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }
}
