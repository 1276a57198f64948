//! Where and when a run happened: machine, kernel, commit, tool versions.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// RFC 3339, UTC.
    pub started: String,
    /// Seconds the run took (set when the report is written).
    pub duration_s: f64,
    /// The command line.
    pub command: Vec<String>,
    pub machine: Machine,
    /// `uname -r` and `uname -v`.
    pub kernel: String,
    pub os: String,
    /// `git rev-parse HEAD`, with `-dirty` when the tree has changes.
    pub commit: String,
    /// Whether lb and lb-echo are release builds (the bench binary's own profile).
    pub release_build: bool,
    /// `tool → first line of its version output`, for every peer and load tool used.
    pub tools: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
}

impl Meta {
    /// Reads everything but the tools (see [`Meta::tool`]).
    pub fn collect() -> Self {
        Self {
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            duration_s: 0.0,
            command: std::env::args().collect(),
            machine: Machine {
                cpu_model: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
                cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                memory_gib: proc_field("/proc/meminfo", "MemTotal")
                    .and_then(|v| v.split_whitespace().next().and_then(|kb| kb.parse::<f64>().ok()))
                    .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
                    .unwrap_or(0.0),
            },
            kernel: format!(
                "{} {}",
                output("uname", &["-r"]).unwrap_or_default(),
                output("uname", &["-v"]).unwrap_or_default()
            ),
            os: os_release().unwrap_or_else(|| "unknown".into()),
            commit: commit(),
            release_build: !cfg!(debug_assertions),
            tools: BTreeMap::new(),
        }
    }

    /// Records `program args`' first output line (stdout, else stderr) as the
    /// version of `name`.
    pub fn tool(&mut self, name: &str, program: &str, args: &[&str]) {
        let version = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_else(|| "not found".into());
        self.tools.insert(name.to_string(), version);
    }

    /// A fixed value for unit tests.
    pub fn for_tests() -> Self {
        Self {
            started: "2026-01-01T00:00:00Z".into(),
            duration_s: 1.0,
            command: vec!["lb-bench".into()],
            machine: Machine { cpu_model: "test".into(), cpus: 2, memory_gib: 24.0 },
            kernel: "6.18".into(),
            os: "Debian".into(),
            commit: "0000000".into(),
            release_build: true,
            tools: BTreeMap::new(),
        }
    }

    /// `2 × AMD EPYC …, 24 GiB, Linux 6.18.0, commit abc1234`.
    pub fn summary(&self) -> String {
        let kernel = self.kernel.split_whitespace().next().unwrap_or("");
        let commit: String = self.commit.chars().take(12).collect();
        format!(
            "{} × {}, {} GiB, Linux {kernel}, {}, commit {commit}, {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.memory_gib, self.os, self.started
        )
    }
}

fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(program).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn commit() -> String {
    let root = lb_testbed::repo_root();
    let root = root.to_string_lossy();
    let Some(head) = output("git", &["-C", &root, "rev-parse", "HEAD"]) else { return "unknown".into() };
    let dirty =
        output("git", &["-C", &root, "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}
