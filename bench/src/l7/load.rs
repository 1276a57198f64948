//! Load with h2load (nghttp2): closed-loop runs at fixed concurrency for
//! the maximum rate, `--rps` runs at a fixed offered rate with a per-request
//! log for the latency percentiles. One tool for HTTP/1.1 (`--h1`) and h2,
//! plaintext and TLS; `--connect-to` sends every request to the subject's
//! address while the URIs carry the host (`:authority`/`Host` and SNI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::model::Target;
use crate::stats::percentile;

pub const H2LOAD: &str = "h2load";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
        }
    }
}

/// One h2load run's shape.
#[derive(Clone, Debug, Serialize)]
pub struct Shape {
    /// Connections (`-c`).
    pub clients: u32,
    /// Concurrent streams per connection (`-m`; 1 for HTTP/1.1).
    pub streams: u32,
    pub duration: Duration,
    pub warm_up: Duration,
    /// Requests per second of each client (`--rps`), for fixed-rate runs.
    pub rps_per_client: Option<u32>,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// 2xx answers per second.
    pub ok_rps: f64,
    pub done: u64,
    pub ok: u64,
    /// Requests that failed, errored, timed out or got a non-2xx answer.
    pub failed: u64,
    /// Latency percentiles (ms) of the 2xx answers, for fixed-rate runs.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The command line (for the report's params and the run itself).
pub fn args(addr: SocketAddr, proto: Proto, shape: &Shape, uris: &Path, log: Option<&Path>) -> Vec<String> {
    let mut a = vec![
        "-t".to_string(),
        "1".into(),
        "-c".into(),
        shape.clients.to_string(),
        "-m".into(),
        shape.streams.to_string(),
        "-D".into(),
        format!("{}ms", shape.duration.as_millis().max(100)),
        "--warm-up-time".into(),
        format!("{}ms", shape.warm_up.as_millis().max(100)),
        // A connection silent this long is given up (its requests count as
        // failed) instead of holding the run open.
        "-N".into(),
        "5s".into(),
        "--connect-to".into(),
        addr.to_string(),
        "-i".into(),
        uris.display().to_string(),
    ];
    if proto == Proto::H1 {
        a.push("--h1".into());
    }
    if let Some(rps) = shape.rps_per_client {
        a.extend(["--rps".into(), rps.to_string()]);
    }
    if let Some(log) = log {
        a.extend(["--log-file".into(), log.display().to_string()]);
    }
    a
}

/// Writes the URIs file for `target` (scheme, host and port as the client
/// sees them; h2load takes scheme and authority from the first line).
pub fn uris_file(dir: &Path, target: &Target, tls: bool, port: u16) -> Result<PathBuf> {
    let scheme = if tls { "https" } else { "http" };
    let file = dir.join(format!("uris-{}-{scheme}.txt", super::model::slug(&target.host)));
    let text: String = target.paths.iter().map(|p| format!("{scheme}://{}:{port}{p}\n", target.host)).collect();
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Called at every poll (about every 50 ms) while h2load runs, with its
/// PID and the time since it started (the CPU probe of a max-rate run).
pub type Watch<'a> = &'a mut dyn FnMut(u32, Duration);

/// Runs h2load and reads its summary (and, with `log`, the latencies).
pub fn run(
    addr: SocketAddr,
    proto: Proto,
    shape: &Shape,
    uris: &Path,
    log: Option<&Path>,
    watch: Option<Watch>,
) -> Result<Outcome> {
    let args = args(addr, proto, shape, uris, log);
    let bound = shape.duration + shape.warm_up + Duration::from_secs(30);
    let stdout = run_bounded(H2LOAD, &args, bound, watch)?;
    let mut out = parse_summary(&stdout).with_context(|| format!("h2load {}:\n{stdout}", args.join(" ")))?;
    if let Some(log) = log {
        let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        let (lat, failed) = parse_log(&text);
        if lat.is_empty() {
            bail!("h2load {}: no successful request in the log", args.join(" "));
        }
        out.p50_ms = percentile(&lat, 50.0);
        out.p99_ms = percentile(&lat, 99.0);
        out.failed = out.failed.max(failed);
        let _ = std::fs::remove_file(log);
    }
    Ok(out)
}

/// Runs `program args`, killing it if it outlives `bound`; its stdout.
fn run_bounded(program: &str, args: &[String], bound: Duration, mut watch: Option<Watch>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if let Some(w) = watch.as_mut() {
            w(child.id(), started.elapsed());
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{program} {} ran over {bound:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{program} {}: {}\n{stdout}{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

/// Numbers before the given words: `"451 total, 3 failed"` → `[("total", 451), …]`.
fn counts(line: &str) -> Vec<(String, f64)> {
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    words.windows(2).filter_map(|w| w[0].parse::<f64>().ok().map(|n| (w[1].to_string(), n))).collect()
}

fn get(counts: &[(String, f64)], word: &str) -> Option<f64> {
    counts.iter().find(|(w, _)| w == word).map(|(_, n)| *n)
}

/// h2load's summary: `finished in 10.00s, 45123.40 req/s, …`,
/// `requests: … done, … succeeded, … failed, … errored, … timeout`,
/// `status codes: … 2xx, …`.
pub fn parse_summary(text: &str) -> Result<Outcome> {
    let line = |prefix: &str| text.lines().find(|l| l.trim_start().starts_with(prefix)).map(counts);
    let finished = line("finished in").context("no `finished in` line")?;
    let rps = get(&finished, "req/s").context("no req/s")?;
    let requests = line("requests:").context("no `requests:` line")?;
    let codes = line("status codes:").context("no `status codes:` line")?;
    let done = get(&requests, "done").unwrap_or(0.0);
    let ok = get(&codes, "2xx").unwrap_or(0.0);
    // `failed` includes the errored and timed-out requests; `succeeded`
    // ones got an answer, 2xx or not.
    let failed = get(&requests, "failed").unwrap_or(0.0);
    let not_ok = (get(&requests, "succeeded").unwrap_or(0.0) - ok).max(0.0);
    let ok_rps = if done > 0.0 { rps * ok / done } else { 0.0 };
    Ok(Outcome { ok_rps, done: done as u64, ok: ok as u64, failed: (failed + not_ok) as u64, ..Default::default() })
}

/// h2load's `--log-file`: `start_us \t status \t duration_us`; latencies
/// (ms) of the 2xx answers and the count of the others.
pub fn parse_log(text: &str) -> (Vec<f64>, u64) {
    let mut lat = Vec::new();
    let mut failed = 0;
    for l in text.lines() {
        let cols: Vec<&str> = l.split('\t').collect();
        let (Some(status), Some(us)) = (cols.get(1), cols.get(2)) else { continue };
        match (status.trim().parse::<i32>(), us.trim().parse::<f64>()) {
            (Ok(s), Ok(us)) if (200..300).contains(&s) => lat.push(us / 1000.0),
            _ => failed += 1,
        }
    }
    (lat, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2load_output() {
        let text = "finished in 10.00s, 45123.40 req/s, 5.20MB/s\n\
                    requests: 451234 total, 451234 started, 451234 done, 451200 succeeded, 34 failed, 34 errored, 0 timeout\n\
                    status codes: 451200 2xx, 0 3xx, 0 4xx, 0 5xx\n";
        let o = parse_summary(text).unwrap();
        assert_eq!(o.done, 451234);
        assert_eq!(o.failed, 34);
        assert!((o.ok_rps - 45123.40 * 451200.0 / 451234.0).abs() < 1e-6);
        let (lat, failed) = parse_log("1\t200\t1500\n2\t-1\t10\n3\t200\t500\n");
        assert_eq!(lat, vec![1.5, 0.5]);
        assert_eq!(failed, 1);
    }
}
