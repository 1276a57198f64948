//! The human tables of `lb inspect`.

use anyhow::{Result, bail};

use crate::inspect::model::{ConntrackReport, DiagnosticsReport, RoutesReport, ServiceReport, ServicesReport};

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn port_name(s: &ServiceReport) -> String {
    let port = if s.port.is_empty() { String::new() } else { format!(":{}", s.port) };
    let scope = if s.scope == "node" { " (node-local)" } else { "" };
    format!("{}/{}{port}/{}{scope}", s.namespace, s.name, s.protocol)
}

fn state(b: &crate::inspect::model::BackendReport) -> String {
    let mut states: Vec<&str> = Vec::new();
    for (on, name) in [(b.ready, "ready"), (b.serving, "serving"), (b.terminating, "terminating"), (b.local, "local")] {
        if on {
            states.push(name);
        }
    }
    if states.is_empty() { "-".into() } else { states.join(",") }
}

pub fn services(report: &ServicesReport) -> String {
    if !report.data_path {
        return "no data path on this agent (--no-xdp, or standing by): no service port is programmed here\n".into();
    }
    let mut rows = Vec::new();
    for s in &report.services {
        let frontends: Vec<String> = s.frontends.iter().map(|f| format!("{} {}", f.kind, f.address)).collect();
        let backends: Vec<String> = s.backends.iter().map(|b| format!("{} ({})", b.address, state(b))).collect();
        let lines = frontends.len().max(backends.len()).max(1);
        for i in 0..lines {
            let first = i == 0;
            rows.push(vec![
                if first { port_name(s) } else { String::new() },
                if first { s.id.map_or("-".into(), |id| id.to_string()) } else { String::new() },
                frontends.get(i).cloned().unwrap_or_default(),
                backends.get(i).cloned().unwrap_or_else(|| if first { "(none)".into() } else { String::new() }),
                if first { s.packets.to_string() } else { String::new() },
                if first { s.bytes.to_string() } else { String::new() },
            ]);
        }
    }
    table(&["SERVICE", "ID", "FRONTENDS", "BACKENDS", "PACKETS", "BYTES"], &rows)
}

pub fn backends(report: &ServicesReport, service: &str) -> Result<String> {
    let views: Vec<&ServiceReport> =
        report.services.iter().filter(|s| format!("{}/{}", s.namespace, s.name) == service).collect();
    if views.is_empty() {
        bail!("no service port of {service} in the data path (see `lb inspect services`)");
    }
    let mut rows = Vec::new();
    for s in views {
        for b in &s.backends {
            rows.push(vec![port_name(s), b.address.clone(), state(b), format!("{:.1}%", b.maglev_share * 100.0)]);
        }
    }
    Ok(table(&["SERVICE PORT", "BACKEND", "STATE", "MAGLEV SHARE"], &rows))
}

pub fn conntrack(report: &ConntrackReport) -> String {
    let rows: Vec<Vec<String>> = report
        .flows
        .iter()
        .map(|f| {
            vec![
                f.service.clone(),
                f.client.clone(),
                f.frontend.clone(),
                f.backend.clone(),
                if f.masquerade { f.source.clone() } else { "-".into() },
                format!("{:.1}s", f.idle_seconds),
            ]
        })
        .collect();
    let mut out = table(&["SERVICE", "CLIENT", "FRONTEND", "BACKEND", "MASQUERADED AS", "IDLE"], &rows);
    let more = if report.truncated { " (more flows than --limit)" } else { "" };
    out.push_str(&format!(
        "{} flows shown; {} of {} conntrack entries in use{more}\n",
        rows.len(),
        report.entries,
        report.capacity
    ));
    out
}

pub fn routes(report: &RoutesReport) -> String {
    let mut rows = Vec::new();
    for host in &report.hosts {
        let name = if host.host.is_empty() { "*".to_string() } else { host.host.clone() };
        let certificate =
            host.certificate.as_ref().map_or("-".into(), |c| format!("{} (until {})", c.secret, c.not_after));
        if host.paths.is_empty() {
            rows.push(vec![name.clone(), "-".into(), "-".into(), "-".into(), certificate.clone(), String::new()]);
        }
        for (i, path) in host.paths.iter().enumerate() {
            let mut backend = path.backend.clone();
            if let Some(canary) = &path.canary {
                backend.push_str(&format!(" (canary {canary})"));
            }
            let annotations: Vec<String> = path
                .annotations
                .iter()
                .map(|(k, v)| format!("{}={v}", k.trim_start_matches("nginx.ingress.kubernetes.io/")))
                .collect();
            rows.push(vec![
                if i == 0 { name.clone() } else { String::new() },
                format!("{} ({})", path.path, path.path_type),
                backend,
                path.endpoints.join(","),
                if i == 0 { certificate.clone() } else { String::new() },
                annotations.join(" "),
            ]);
        }
    }
    let mut out = table(&["HOST", "PATH", "BACKEND", "ENDPOINTS", "CERTIFICATE", "ANNOTATIONS"], &rows);
    if let Some(default) = &report.default_backend {
        out.push_str(&format!("default backend: {default}\n"));
    }
    out
}

pub fn diagnostics(report: &DiagnosticsReport) -> String {
    if report.diagnostics.is_empty() {
        return "no object was rejected\n".into();
    }
    let rows: Vec<Vec<String>> =
        report.diagnostics.iter().map(|d| vec![d.object.clone(), d.field.clone(), d.message.clone()]).collect();
    table(&["OBJECT", "FIELD", "PROBLEM"], &rows)
}
