//! HAProxy configured as the HAProxy ingress controllers do: one frontend
//! with the plain and TLS binds (a crt-list, ALPN h2 and http/1.1), routing
//! on `host + path` through map files — exact (`map`), prefix (`map_beg`,
//! longest first) and regex (`map_reg`, every non-Exact path of a
//! `use-regex` host, `(?i)^host/path`) — and a backend per Service with its
//! endpoints, server connections reused (`http-reuse safe`). Master-worker
//! mode, one thread; reloads by SIGUSR2 to the master, listeners handed
//! over through the stats socket (`expose-fd listeners`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lb_testbed::Process;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::model::{BACKEND_PORT, IngressSet, PathKind};
use super::proxy::{HTTP_PORT, HTTPS_PORT, Placement, safe, write};

pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// HAProxy cannot raise the open-file limit past 20,000 here.
pub const MAXCONN: u32 = 4000;

pub fn start(set: &IngressSet, ip: Ipv4Addr, dir: &Path, place: &Placement) -> Result<Process> {
    write_files(set, ip, dir)?;
    let out = Command::new(HAPROXY).args(["-c", "-q", "-f", &cfg(dir)]).output().context("running haproxy -c")?;
    if !out.status.success() {
        bail!("haproxy -c: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let args = ["-W".to_string(), "-db".into(), "-f".into(), cfg(dir)];
    place.spawn(&dir.join("logs"), "haproxy", &[], Path::new(HAPROXY), &args, Duration::from_secs(5))
}

/// Starts one HAProxy process without master-worker (as `haproxy -sf`
/// upgrades are done): with `old`, `-sf OLD`: the new process binds the
/// ports beside the old one (SO_REUSEPORT), then asks it to stop (SIGUSR1:
/// it closes its listeners and finishes its connections).
pub fn start_single(
    set: &IngressSet,
    ip: Ipv4Addr,
    dir: &Path,
    place: &Placement,
    old: Option<u32>,
    label: &str,
) -> Result<Process> {
    write_files(set, ip, dir)?;
    write(&dir.join("haproxy.cfg"), &config(set, ip, dir)?.replace("\n  master-worker\n", "\n"))?;
    let mut args = vec!["-db".to_string(), "-f".into(), cfg(dir)];
    if let Some(old) = old {
        args.extend(["-sf".into(), old.to_string()]);
    }
    place.spawn(&dir.join("logs"), label, &[], Path::new(HAPROXY), &args, Duration::from_secs(5))
}

/// Regenerates the configuration and asks the master to reload (SIGUSR2).
pub fn reload(set: &IngressSet, ip: Ipv4Addr, dir: &Path, master: u32) -> Result<()> {
    write_files(set, ip, dir)?;
    kill(Pid::from_raw(master as i32), Signal::SIGUSR2).context("SIGUSR2 to the HAProxy master")
}

fn cfg(dir: &Path) -> String {
    dir.join("haproxy.cfg").display().to_string()
}

fn write_files(set: &IngressSet, ip: Ipv4Addr, dir: &Path) -> Result<()> {
    let mut crt_list = String::new();
    if !dir.join("certs/default.pem").exists() {
        let default = lb_testbed::l7::self_signed(&["ingress.local"])?;
        write(&dir.join("certs/default.pem"), &format!("{}{}", default.cert_pem, default.key_pem))?;
    }
    // The first line is the default certificate.
    writeln!(crt_list, "{}/certs/default.pem", dir.display())?;
    for cert in &set.certs {
        let file = dir.join(format!("certs/{}.pem", safe(&cert.name)?));
        write(&file, &format!("{}{}", cert.pair.cert_pem, cert.pair.key_pem))?;
        writeln!(crt_list, "{}", file.display())?;
    }
    write(&dir.join("crt-list.txt"), &crt_list)?;
    let maps = maps(set)?;
    write(&dir.join("maps/exact.map"), &maps[0])?;
    write(&dir.join("maps/prefix.map"), &maps[1])?;
    write(&dir.join("maps/regex.map"), &maps[2])?;
    write(&dir.join("haproxy.cfg"), &config(set, ip, dir)?)
}

fn backend_name(set: &IngressSet, service: usize) -> Result<String> {
    Ok(format!("be-{}", safe(&set.services[service].name)?))
}

/// The exact, prefix and regex maps: `host/path backend`.
fn maps(set: &IngressSet) -> Result<[String; 3]> {
    let (mut exact, mut prefix, mut regex) = (Vec::new(), Vec::new(), Vec::new());
    for host in &set.hosts {
        let name = safe(&host.name)?;
        let mut host_regex = Vec::new();
        for p in &host.paths {
            let path = safe(&p.path)?;
            let be = backend_name(set, p.service)?;
            match p.kind {
                PathKind::Exact => exact.push(format!("{name}{path} {be}")),
                _ if host.regex() => host_regex.push((path, be)),
                PathKind::Prefix | PathKind::Regex => {
                    let trimmed = path.trim_end_matches('/');
                    prefix.push(format!("{name}{trimmed}/ {be}"));
                    if !trimmed.is_empty() {
                        exact.push(format!("{name}{trimmed} {be}"));
                    }
                }
            }
        }
        // As ingress-nginx: longest path first within the host.
        host_regex.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(b.0.cmp(a.0)));
        let host_re = name.replace('.', "[.]");
        regex.extend(host_regex.into_iter().map(|(path, be)| format!("(?i)^{host_re}{path} {be}")));
    }
    // Longest prefix first, whichever way map_beg looks entries up.
    prefix.sort_by(|a: &String, b: &String| {
        let key = |s: &String| s.split(' ').next().unwrap_or("").len();
        key(b).cmp(&key(a)).then(a.cmp(b))
    });
    let join = |v: Vec<String>| if v.is_empty() { String::new() } else { v.join("\n") + "\n" };
    Ok([join(exact), join(prefix), join(regex)])
}

/// The whole `haproxy.cfg`.
pub fn config(set: &IngressSet, ip: Ipv4Addr, dir: &Path) -> Result<String> {
    let d = dir.display();
    let mut c = String::new();
    writeln!(
        c,
        "# Generated by lb-bench from the Ingress set {:?}, as the HAProxy ingress controllers would.\n\
         global\n  master-worker\n  nbthread 1\n  maxconn {MAXCONN}\n  pidfile {d}/haproxy.pid\n\
         \x20 stats socket {d}/admin.sock mode 600 level admin expose-fd listeners\n\
         \x20 log stdout format raw local0\n  hard-stop-after 240s\n\
         \x20 ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets\n  tune.ssl.default-dh-param 2048\n\
         defaults\n  mode http\n  log global\n  option httplog\n  option dontlognull\n\
         \x20 option http-keep-alive\n  http-reuse safe\n  maxconn {MAXCONN}\n\
         \x20 timeout connect 5s\n  timeout client 75s\n  timeout server 60s\n  timeout http-request 10s\n\
         \x20 timeout http-keep-alive 75s\n  timeout tunnel 1h\n\
         frontend ingress\n  bind {ip}:{HTTP_PORT}\n\
         \x20 bind {ip}:{HTTPS_PORT} ssl crt-list {d}/crt-list.txt alpn h2,http/1.1\n\
         \x20 http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}\n\
         \x20 http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}\n\
         \x20 http-request set-header X-Forwarded-For %[src]\n  http-request set-header X-Real-IP %[src]\n\
         \x20 http-request set-header X-Forwarded-Host %[req.hdr(host)]\n\
         \x20 http-request set-header X-Forwarded-Port %[dst_port]\n\
         \x20 http-request set-header X-Request-ID %[uuid] unless {{ req.hdr(x-request-id) -m found }}\n\
         \x20 http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n\
         \x20 http-request set-var(txn.path) path\n\
         \x20 http-request set-var(txn.hostpath) var(txn.host),concat(,txn.path)\n\
         \x20 use_backend %[var(txn.hostpath),map({d}/maps/exact.map)] if {{ var(txn.hostpath),map({d}/maps/exact.map) -m found }}\n\
         \x20 use_backend %[var(txn.hostpath),map_beg({d}/maps/prefix.map)] if {{ var(txn.hostpath),map_beg({d}/maps/prefix.map) -m found }}\n\
         \x20 use_backend %[var(txn.hostpath),map_reg({d}/maps/regex.map)] if {{ var(txn.hostpath),map_reg({d}/maps/regex.map) -m found }}\n\
         \x20 default_backend be-default-404\n\
         backend be-default-404\n  http-request return status 404 content-type text/plain string \"default backend - 404\"",
        set.label
    )?;
    for (i, svc) in set.services.iter().enumerate() {
        writeln!(c, "backend {}", backend_name(set, i)?)?;
        for (j, ip) in svc.endpoints.iter().enumerate() {
            writeln!(c, "  server ep{j} {ip}:{BACKEND_PORT}")?;
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_testbed::l7::TestCa;

    #[test]
    fn maps_route_by_host_and_path() {
        let ca = TestCa::new().unwrap();
        let pods = [Ipv4Addr::new(127, 9, 9, 2)];
        let [exact, prefix, regex] = maps(&IngressSet::few(&pods, &ca).unwrap()).unwrap();
        assert!(exact.contains("a.com/a be-svc-a\n") && exact.contains("a.com/b be-svc-b\n"), "{exact}");
        assert!(prefix.starts_with("https-example.foo.com/ be-svc-a\n"), "longest first: {prefix}");
        assert!(prefix.contains("a.com/a/ be-svc-a\n") && prefix.contains("b.com/ be-svc-b\n"));
        assert!(regex.is_empty());
        let [exact, prefix, regex] = maps(&IngressSet::many(2, &pods, &ca).unwrap()).unwrap();
        assert!(exact.contains("h00000.bench.test/healthz be-svc-00000\n"), "{exact}");
        assert!(prefix.is_empty(), "{prefix}");
        assert!(regex.starts_with("(?i)^h00000[.]bench[.]test/api/v[0-9]+/items be-svc-00000\n"), "{regex}");
    }
}
