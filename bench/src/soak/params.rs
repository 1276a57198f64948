//! How long the soak runs, how hard it loads the bed and how often it
//! changes it, per profile.

use std::time::Duration;

use serde::Serialize;

use crate::Profile;

/// Every knob of one soak run (written into the report as is).
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Load, changes and restarts run this long.
    pub duration_s: u64,
    /// One change of every kind (EndpointSlices, a Service, an Ingress, a
    /// Secret) this often.
    pub change_every_ms: u64,
    /// node1's agent is replaced this often…
    pub restart_every_s: u64,
    /// …the first time at this point.
    pub first_restart_s: u64,
    /// The agents' fds and RSS are read this often.
    pub sample_every_ms: u64,
    /// Conntrack fill is read (from each agent's /metrics) this often: a
    /// scrape walks the whole table.
    pub conntrack_every_s: u64,
    /// Samples before this point are not judged (start-up: pools, caches,
    /// the first TLS sessions).
    pub warm_up_s: u64,
    /// Short TCP connections per second to each L4 address.
    pub tcp_rate: f64,
    /// UDP exchanges per second to the UDP NodePort.
    pub udp_rate: f64,
    /// Requests per second of each plaintext HTTP client.
    pub http_rate: f64,
    /// Requests per second of each HTTPS client (a new TLS connection each).
    pub https_rate: f64,
    /// Flatness: the last third's highest fd count may exceed the first
    /// third's by at most this many…
    pub fd_slack: u64,
    /// …and its highest RSS the first third's by at most this fraction.
    pub rss_growth: f64,
}

impl Params {
    pub fn for_profile(p: Profile) -> Self {
        Self {
            duration_s: p.pick(40, 60, 600),
            change_every_ms: 1000,
            restart_every_s: 60,
            first_restart_s: p.pick(20, 30, 30),
            sample_every_ms: 1000,
            conntrack_every_s: 5,
            warm_up_s: p.pick(10, 15, 60),
            tcp_rate: p.pick(20.0, 40.0, 40.0),
            udp_rate: p.pick(10.0, 20.0, 20.0),
            http_rate: p.pick(10.0, 20.0, 20.0),
            https_rate: p.pick(5.0, 10.0, 10.0),
            fd_slack: 16,
            rss_growth: 0.10,
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }

    pub fn change_every(&self) -> Duration {
        Duration::from_millis(self.change_every_ms)
    }

    pub fn sample_every(&self) -> Duration {
        Duration::from_millis(self.sample_every_ms)
    }

    /// When node1's agent is replaced, in seconds from the start of the load.
    pub fn restart_times(&self) -> Vec<u64> {
        (self.first_restart_s..self.duration_s).step_by(self.restart_every_s.max(1) as usize).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_run_restarts_every_minute_and_a_quick_one_once() {
        assert_eq!(
            Params::for_profile(Profile::Full).restart_times(),
            [30, 90, 150, 210, 270, 330, 390, 450, 510, 570]
        );
        assert_eq!(Params::for_profile(Profile::Quick).restart_times(), [30]);
        assert_eq!(Params::for_profile(Profile::Smoke).restart_times(), [20]);
    }
}
