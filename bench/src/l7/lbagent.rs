//! lb: the set as Kubernetes YAML in a watched manifests directory (one
//! file per Service, per host's Ingress and per certificate's Secret),
//! `lb run --no-xdp`, and changes by rewriting the changed files.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use lb_testbed::l7::{EndpointSlice, Ingress, ManifestDir, Rule, Service, docs, tls_secret};
use lb_testbed::{LbRun, Process};

use super::model::{BACKEND_PORT, IngressSet, PathKind, SERVICE_PORT, slug};
use super::proxy::{ADMIN_PORT, HTTP_PORT, HTTPS_PORT, Placement};

/// The manifests of `set`: file name → content.
pub fn manifests(set: &IngressSet) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for svc in &set.services {
        let service = Service::new(&svc.name).port("http", SERVICE_PORT, BACKEND_PORT);
        let mut slice = EndpointSlice::named(&format!("{}-1", svc.name), &svc.name).port("http", BACKEND_PORT);
        for ip in &svc.endpoints {
            slice = slice.endpoint(*ip, true);
        }
        files.insert(format!("svc-{}.yaml", svc.name), docs(&[service.yaml(), slice.yaml()]));
    }
    for cert in &set.certs {
        files.insert(format!("secret-{}.yaml", cert.name), tls_secret(&cert.name, &cert.pair));
    }
    for host in &set.hosts {
        let name = format!("ing-{}", slug(&host.name));
        let mut ing = Ingress::new(&name).class("lb").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false");
        if host.regex() {
            ing = ing.annotation("nginx.ingress.kubernetes.io/use-regex", "true");
        }
        if let Some(c) = host.cert {
            ing = ing.tls(&set.certs[c].name, &[&host.name]);
        }
        let mut rule = Rule::host(&host.name);
        for p in &host.paths {
            let kind = match p.kind {
                PathKind::Exact => "Exact",
                PathKind::Prefix => "Prefix",
                PathKind::Regex => "ImplementationSpecific",
            };
            rule = rule.path(&p.path, kind, &set.services[p.service].name, SERVICE_PORT);
        }
        files.insert(format!("{name}.yaml"), ing.rule(rule).yaml());
    }
    files
}

/// Starts lb serving `set`, with `extra` flags.
pub fn start(
    set: &IngressSet,
    ip: Ipv4Addr,
    dir: &Path,
    place: &Placement,
    extra: &[&str],
) -> Result<(Process, BTreeMap<String, String>)> {
    let mut written = BTreeMap::new();
    apply(set, dir, &mut written)?;
    Ok((spawn_with(ip, dir, place, "lb", extra)?, written))
}

/// Starts `lb run` on `ip` serving the manifests in `dir` (already
/// written), its logs under `dir/logs/LABEL.*`: also a second agent beside
/// a running one, with the same flags (an upgrade).
pub fn spawn(ip: Ipv4Addr, dir: &Path, place: &Placement, label: &str) -> Result<Process> {
    spawn_with(ip, dir, place, label, &[])
}

fn spawn_with(ip: Ipv4Addr, dir: &Path, place: &Placement, label: &str, extra: &[&str]) -> Result<Process> {
    let addr = |port| SocketAddr::from((ip, port));
    let run = LbRun::proxy_only()
        .manifests(dir.join("manifests"))
        .http_addr(addr(HTTP_PORT))
        .https_addr(addr(HTTPS_PORT))
        .admin_addr(addr(ADMIN_PORT))
        // One worker, as nginx's `worker_processes 1` and HAProxy's `nbthread 1`.
        .worker_threads(1);
    let lb = lb_testbed::lb_bin()?;
    let mut args = run.as_args().to_vec();
    args.extend(extra.iter().map(std::ffi::OsString::from));
    place.spawn(&dir.join("logs"), label, &[], &lb, &args, Duration::from_secs(5))
}

/// Writes the files of `set` that differ from `written`, removes those it
/// no longer has.
pub fn apply(set: &IngressSet, dir: &Path, written: &mut BTreeMap<String, String>) -> Result<()> {
    let files = manifests(set);
    let out = ManifestDir::new(&dir.join("manifests"))?;
    for (name, content) in &files {
        if written.get(name) != Some(content) {
            out.write(name, content)?;
        }
    }
    for name in written.keys().filter(|n| !files.contains_key(*n)) {
        out.remove(name)?;
    }
    *written = files;
    Ok(())
}
