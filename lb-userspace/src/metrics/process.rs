//! The `process_*` families every Prometheus client exports (Go's names),
//! read from `/proc/self` at each scrape.

use std::fs;

use nix::sys::resource::{Resource, getrlimit};
use nix::unistd::{SysconfVar, sysconf};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the agent's process at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self/stat` and `/proc/stat` say of this process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Stat {
    pub cpu_seconds: f64,
    pub virtual_bytes: f64,
    pub resident_bytes: f64,
    start_time_seconds: f64,
}

impl Stat {
    pub(super) fn read() -> Option<Self> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = fs::read_to_string("/proc/stat").ok()?;
        let ticks = sysconf(SysconfVar::CLK_TCK).ok()?? as f64;
        let page = sysconf(SysconfVar::PAGE_SIZE).ok()?? as f64;
        Self::parse(&stat, &boot_time, ticks, page)
    }

    /// Fields after the command (which may hold spaces and parentheses):
    /// utime (14), stime (15), starttime (22), vsize (23), rss (24).
    fn parse(stat: &str, proc_stat: &str, ticks: f64, page: f64) -> Option<Self> {
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let boot = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<f64>().ok()?;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * page,
            start_time_seconds: boot + field(22)? / ticks,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = Stat::read() {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            for (name, help, value) in [
                ("process_virtual_memory_bytes", "Virtual memory size in bytes", stat.virtual_bytes),
                ("process_resident_memory_bytes", "Resident memory size in bytes", stat.resident_bytes),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    stat.start_time_seconds,
                ),
            ] {
                gauge(&mut encoder, name, help, value)?;
            }
        }
        if let Ok(open) = fs::read_dir("/proc/self/fd") {
            gauge(&mut encoder, "process_open_fds", "Number of open file descriptors", open.count() as f64)?;
        }
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors", soft as f64)?;
        }
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_command_has_spaces_and_parentheses() {
        let stat = "4242 (lb (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let parsed = Stat::parse(stat, proc_stat, 100.0, 4096.0).unwrap();
        assert_eq!(
            parsed,
            Stat {
                cpu_seconds: 3.0,
                virtual_bytes: 104_857_600.0,
                resident_bytes: 2560.0 * 4096.0,
                start_time_seconds: 1_700_000_010.0
            }
        );
        assert_eq!(Stat::parse("garbage", proc_stat, 100.0, 4096.0), None);
    }

    #[test]
    fn reads_this_process() {
        let stat = Stat::read().expect("/proc/self/stat");
        assert!(stat.resident_bytes > 0.0 && stat.virtual_bytes >= stat.resident_bytes, "{stat:?}");
        assert!(stat.start_time_seconds > 1.7e9, "{stat:?}");
    }
}
