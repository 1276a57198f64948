//! `cargo xtask setup`: installs what a fresh Debian 12 machine lacks to build
//! and test the project, skipping whatever is already there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{self, Step};
use crate::ebpf::EBPF_TOOLCHAIN;

/// Debian packages: LLVM 22 for bpf-linker, the tools the netns test bed
/// uses (and bpftool, which makes maps of other layouts in the pinned-map
/// test), and the benchmarks' peers and load generators (kube-proxy's
/// iptables and nftables back ends, nginx, HAProxy, wrk, h2load), which the
/// test suite's bench smoke tests run too.
pub const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "iputils-ping",
    "procps",
    "iptables",
    "nftables",
    "nginx",
    "haproxy",
    "wrk",
    "nghttp2-client",
    "bpftool",
];

/// bpf-linker release line we build with (0.13 supports LLVM 22; newer
/// defaults want LLVM 23, which Debian does not have).
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_SERIES: &str = "0.13.";
const BPF_LINKER_LLVM_FEATURE: &str = "llvm-22";
const LLVM_BIN_DIR: &str = "/usr/lib/llvm-22/bin";

/// One thing that is missing, and how it is installed.
enum Missing {
    AptPackages(Vec<String>),
    RustSrc,
    BpfLinker { found: Option<String> },
}

impl Missing {
    fn describe(&self) -> String {
        match self {
            Missing::AptPackages(p) => format!("Debian packages: {}", p.join(" ")),
            Missing::RustSrc => format!("rust-src component for the {EBPF_TOOLCHAIN} toolchain"),
            Missing::BpfLinker { found } => {
                format!("bpf-linker {BPF_LINKER_VERSION} (found: {})", found.as_deref().unwrap_or("none"))
            }
        }
    }
}

pub fn setup() -> Result<()> {
    let step = Step::start("setup: checking the machine");
    let mut missing = Vec::new();

    let apt = missing_apt_packages();
    if !apt.is_empty() {
        missing.push(Missing::AptPackages(apt));
    }

    let Some(nightly_llvm) = nightly_llvm_major() else {
        let also: String = missing.iter().map(|m| format!("\nalso missing: {}", m.describe())).collect();
        bail!(
            "the `{EBPF_TOOLCHAIN}` Rust toolchain is missing (needed for the eBPF crate).\n\
             Install it with:  rustup toolchain install {EBPF_TOOLCHAIN} --profile minimal\n\
             then run `cargo xtask setup` again.{also}"
        );
    };
    if !rust_src_installed() {
        missing.push(Missing::RustSrc);
    }
    let linker = bpf_linker_version();
    if !linker.as_deref().is_some_and(|v| v.starts_with(BPF_LINKER_SERIES)) {
        missing.push(Missing::BpfLinker { found: linker });
    }

    if missing.is_empty() {
        eprintln!("[xtask] everything is already installed");
    } else {
        for m in &missing {
            eprintln!("[xtask] missing: {}", m.describe());
        }
        if !cmd::is_root() {
            let list: Vec<String> = missing.iter().map(Missing::describe).collect();
            bail!(
                "not root: would install\n  - {}\nRe-run as root (e.g. `sudo -E cargo xtask setup`).",
                list.join("\n  - ")
            );
        }
        for m in &missing {
            install(m)?;
        }
    }

    check_llvm_match(nightly_llvm)?;
    step.done();
    Ok(())
}

fn install(m: &Missing) -> Result<()> {
    match m {
        Missing::AptPackages(pkgs) => {
            cmd::run(Command::new("apt-get").arg("update"))?;
            cmd::run(
                Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y"]).args(pkgs),
            )
        }
        Missing::RustSrc => {
            cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", EBPF_TOOLCHAIN]))
        }
        Missing::BpfLinker { .. } => {
            eprintln!("[xtask] building bpf-linker {BPF_LINKER_VERSION} (about 1-2 minutes)");
            let path = format!("{LLVM_BIN_DIR}:{}", std::env::var("PATH").unwrap_or_default());
            let mut c = Command::new("cargo");
            crate::ebpf::scrub_cargo_env(&mut c, true);
            c.env("PATH", path).args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                BPF_LINKER_LLVM_FEATURE,
            ]);
            cmd::run(&mut c)
        }
    }
}

/// Packages of [`APT_PACKAGES`] that dpkg does not report as installed.
fn missing_apt_packages() -> Vec<String> {
    let mut c = Command::new("dpkg-query");
    c.args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"]).args(APT_PACKAGES);
    cmd::echo(&c);
    // dpkg-query exits 1 when some package is unknown but still prints the others.
    let stdout = c.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let status: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    APT_PACKAGES
        .iter()
        .filter(|p| !status.get(*p).is_some_and(|s| s.starts_with("ii")))
        .map(|p| p.to_string())
        .collect()
}

/// LLVM major version of the nightly rustc, `None` if nightly is not installed.
fn nightly_llvm_major() -> Option<u32> {
    let out = cmd::probe(Command::new("rustup").args(["run", EBPF_TOOLCHAIN, "rustc", "-vV"]))?;
    let major = parse_rustc_llvm_major(&out);
    if major.is_none() {
        eprintln!("[xtask] warning: no `LLVM version:` line in `rustc +{EBPF_TOOLCHAIN} -vV`");
    }
    Some(major.unwrap_or(0))
}

fn parse_rustc_llvm_major(vv: &str) -> Option<u32> {
    let v = vv.lines().find_map(|l| l.strip_prefix("LLVM version:"))?;
    v.trim().split('.').next()?.parse().ok()
}

fn rust_src_installed() -> bool {
    cmd::probe(Command::new("rustup").args(["component", "list", "--toolchain", EBPF_TOOLCHAIN, "--installed"]))
        .is_some_and(|out| out.lines().any(|l| l.trim().starts_with("rust-src")))
}

/// `0.13.0` from `bpf-linker 0.13.0`.
fn bpf_linker_version() -> Option<String> {
    let out = cmd::probe(Command::new("bpf-linker").arg("--version"))?;
    out.split_whitespace().nth(1).map(str::to_string)
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// LLVM major of the libLLVM the bpf-linker binary links (`libLLVM.so.22.1`
/// or `libLLVM-22.so`).
fn bpf_linker_llvm_major() -> Option<u32> {
    let bin = find_in_path("bpf-linker")?;
    let out = cmd::probe(Command::new("ldd").arg(&bin))?;
    parse_ldd_llvm_major(&out)
}

fn parse_ldd_llvm_major(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("libLLVM")?;
        let rest = rest.strip_prefix(".so.").or_else(|| rest.strip_prefix('-'))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

fn check_llvm_match(nightly: u32) -> Result<()> {
    match bpf_linker_llvm_major() {
        None => {
            eprintln!(
                "[xtask] warning: could not tell which LLVM bpf-linker uses (no libLLVM in ldd \
                 output); nightly uses LLVM {nightly}"
            );
            Ok(())
        }
        Some(linker) if linker == nightly => {
            eprintln!("[xtask] LLVM {nightly}: nightly rustc and bpf-linker agree");
            Ok(())
        }
        Some(linker) => bail!(
            "LLVM mismatch: the {EBPF_TOOLCHAIN} rustc uses LLVM {nightly} but bpf-linker links \
             LLVM {linker}; the BPF objects would not link.\nEither install llvm-{nightly}-dev and \
             rebuild bpf-linker: PATH=/usr/lib/llvm-{nightly}/bin:$PATH cargo install bpf-linker \
             --force --no-default-features --features llvm-{nightly} (pick a bpf-linker version \
             with that feature), or use a nightly built on LLVM {linker} \
             (`rustup toolchain install nightly-YYYY-MM-DD`)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llvm_versions() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64\nLLVM version: 22.1.4\n";
        assert_eq!(parse_rustc_llvm_major(vv), Some(22));
        let ldd = "\tlinux-vdso.so.1 (0x0)\n\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x0)\n";
        assert_eq!(parse_ldd_llvm_major(ldd), Some(22));
        assert_eq!(parse_ldd_llvm_major("\tlibLLVM-19.so => /x (0x0)\n"), Some(19));
        assert_eq!(parse_ldd_llvm_major("\tlibc.so.6 => /x\n"), None);
    }
}
