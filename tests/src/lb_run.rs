//! [`LbRun`]: the one place the tests, the demo and the benches build an
//! `lb run` command line.
//!
//! ```
//! use lb_testbed::LbRun;
//! let args = LbRun::on_bed_node("/tmp/manifests").xdp_mode("skb").flag("--log-level", "debug").into_args();
//! assert_eq!(args[..5], ["run", "--manifests", "/tmp/manifests", "--interface", "eth0"]);
//! assert_eq!(args[5..], ["--xdp-mode", "skb", "--log-level", "debug"]);
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// The uplink of every node of the netns bed.
pub const BED_UPLINK: &str = "eth0";

/// The arguments of `lb run`, in the order they were added (`run` first).
/// Typed methods for the flags the harnesses use; [`flag`](Self::flag) and
/// [`arg`](Self::arg) for anything else (e.g. `.flag("--cgroup-root", dir)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbRun {
    args: Vec<OsString>,
}

impl Default for LbRun {
    fn default() -> Self {
        Self::new()
    }
}

impl LbRun {
    /// `lb run` and nothing else.
    pub fn new() -> Self {
        Self { args: vec!["run".into()] }
    }

    /// How a node of the netns bed runs lb: told only its uplink,
    /// `run --manifests DIR --interface eth0`; it finds the rest itself.
    pub fn on_bed_node(manifests: impl AsRef<Path>) -> Self {
        Self::new().manifests(manifests).interface(BED_UPLINK)
    }

    /// How the L7 harness and bench run lb: `run --no-xdp`, only the Ingress
    /// proxy, no root needed.
    pub fn proxy_only() -> Self {
        Self::new().no_xdp()
    }

    /// `ARG` as it is.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Every `ARG` as it is.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `NAME VALUE` (`name` with its dashes: `"--cgroup-root"`).
    pub fn flag(self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.arg(name).arg(value)
    }

    /// `NAME VALUE` if there is a value.
    pub fn flag_opt(self, name: &str, value: Option<impl AsRef<OsStr>>) -> Self {
        match value {
            Some(v) => self.flag(name, v),
            None => self,
        }
    }

    /// `--manifests DIR`: serve a directory of YAML.
    pub fn manifests(self, dir: impl AsRef<Path>) -> Self {
        self.flag("--manifests", dir.as_ref())
    }

    /// `--kubeconfig FILE`: follow the API server of a kubeconfig.
    pub fn kubeconfig(self, file: impl AsRef<Path>) -> Self {
        self.flag("--kubeconfig", file.as_ref())
    }

    /// `--interface IFACE` (repeat for several uplinks).
    pub fn interface(self, iface: &str) -> Self {
        self.flag("--interface", iface)
    }

    /// `--no-xdp`: no eBPF data path, only the Ingress proxy.
    pub fn no_xdp(self) -> Self {
        self.arg("--no-xdp")
    }

    /// `--xdp-mode MODE` (`driver`, `skb`, …).
    pub fn xdp_mode(self, mode: &str) -> Self {
        self.flag("--xdp-mode", mode)
    }

    /// `--xdp-transmit HOW` (`auto`, `xdp`, `tc`, …).
    pub fn xdp_transmit(self, how: &str) -> Self {
        self.flag("--xdp-transmit", how)
    }

    /// `--admin-addr ADDR:PORT` (`/readyz`, metrics).
    pub fn admin_addr(self, addr: impl fmt::Display) -> Self {
        self.flag("--admin-addr", addr.to_string())
    }

    /// `--http-addr ADDR:PORT`: the Ingress plain HTTP listener.
    pub fn http_addr(self, addr: SocketAddr) -> Self {
        self.flag("--http-addr", addr.to_string())
    }

    /// `--https-addr ADDR:PORT`: the Ingress HTTPS listener.
    pub fn https_addr(self, addr: SocketAddr) -> Self {
        self.flag("--https-addr", addr.to_string())
    }

    /// `--log-level FILTER`.
    pub fn log_level(self, filter: &str) -> Self {
        self.flag("--log-level", filter)
    }

    /// `--worker-threads N`.
    pub fn worker_threads(self, n: u16) -> Self {
        self.flag("--worker-threads", n.to_string())
    }

    /// `--max-services N`.
    pub fn max_services(self, n: impl fmt::Display) -> Self {
        self.flag("--max-services", n.to_string())
    }

    /// `--maglev-table-size PRIME`.
    pub fn maglev_table_size(self, n: u32) -> Self {
        self.flag("--maglev-table-size", n.to_string())
    }

    /// `--node-name NAME`.
    pub fn node_name(self, name: &str) -> Self {
        self.flag("--node-name", name)
    }

    /// `--identity NAME` (leader election).
    pub fn identity(self, name: &str) -> Self {
        self.flag("--identity", name)
    }

    /// The arguments (to put after the `lb` binary).
    pub fn to_args(&self) -> Vec<OsString> {
        self.args.clone()
    }

    /// The arguments (to put after the `lb` binary).
    pub fn into_args(self) -> Vec<OsString> {
        self.args
    }

    /// The arguments, borrowed.
    pub fn as_args(&self) -> &[OsString] {
        &self.args
    }
}

impl From<LbRun> for Vec<OsString> {
    fn from(run: LbRun) -> Self {
        run.into_args()
    }
}

/// `run --manifests … ` as one line (lossy), for messages.
impl fmt::Display for LbRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<_> = self.args.iter().map(|a| a.to_string_lossy()).collect();
        f.write_str(&words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bed_node_line_is_the_one_used_before() {
        let args = LbRun::on_bed_node(Path::new("/m")).into_args();
        assert_eq!(args, ["run", "--manifests", "/m", "--interface", "eth0"]);
    }

    #[test]
    fn flags_keep_their_order() {
        let run = LbRun::proxy_only()
            .manifests("/m")
            .http_addr("127.0.0.2:8000".parse().unwrap())
            .admin_addr("127.0.0.2:9000")
            .flag_opt("--dns-server", None::<&str>)
            .flag_opt("--ingress-class", Some("x"))
            .flag("--cgroup-root", Path::new("/sys/fs/cgroup/unified/t"))
            .args(["--no-status"]);
        assert_eq!(
            run.to_string(),
            "run --no-xdp --manifests /m --http-addr 127.0.0.2:8000 --admin-addr 127.0.0.2:9000 \
             --ingress-class x --cgroup-root /sys/fs/cgroup/unified/t --no-status"
        );
        assert_eq!(Vec::<OsString>::from(run.clone()), run.as_args());
    }
}
