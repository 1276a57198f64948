//! Helpers for the tests of the upstream annotations (`backend-protocol`,
//! `upstream-vhost`, `proxy-body-size`, the timeouts, `proxy-next-upstream`):
//! echo pods that also serve HTTPS, or fail on some paths, and their
//! Services.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use super::bed::{ECHO_PORT, EchoPod, L7Bed, SERVICE_PORT};
use super::manifests::{EndpointSlice, Service, docs};
use super::net::{unique_loopback_ip, wait_for_port};

/// The port echo pods started by [`tls_echo`] serve HTTPS on.
pub const ECHO_HTTPS_PORT: u16 = 8443;
/// The Service port [`tls_service`] gives the HTTPS port.
pub const SERVICE_HTTPS_PORT: u16 = 443;
/// Response header the echo sets on answers it sent over TLS (`1`).
pub const ECHO_TLS_HEADER: &str = "x-echo-tls";
/// Response header with the SNI name the echo's TLS client sent (`-`: none).
pub const ECHO_SNI_HEADER: &str = "x-echo-sni";

/// Starts an echo pod serving HTTP on [`ECHO_PORT`] and HTTPS on
/// [`ECHO_HTTPS_PORT`] (self-signed, ALPN `h2` and `http/1.1`).
pub fn tls_echo(bed: &mut L7Bed, name: &str) -> Result<EchoPod> {
    let ip = unique_loopback_ip();
    let https = SocketAddr::from((ip, ECHO_HTTPS_PORT));
    let pod = bed.echo_with(name, ip, &["--https".into(), https.to_string()])?;
    wait_for_port(https, Duration::from_secs(10), || true).with_context(|| format!("{name} HTTPS on {https}"))?;
    Ok(pod)
}

/// Starts an echo pod that answers `code` to paths starting with `prefix`.
pub fn failing_echo(bed: &mut L7Bed, name: &str, prefix: &str, code: u16) -> Result<EchoPod> {
    bed.echo_with(name, unique_loopback_ip(), &["--status-for".into(), format!("{prefix}={code}")])
}

/// Writes `svc-<name>.yaml`: Service `name` with ports `http`
/// ([`SERVICE_PORT`] → [`ECHO_PORT`]) and `https` ([`SERVICE_HTTPS_PORT`]
/// → [`ECHO_HTTPS_PORT`]), `pods` its ready endpoints.
pub fn tls_service(bed: &L7Bed, name: &str, pods: &[&EchoPod]) -> Result<()> {
    let svc =
        Service::new(name).port("http", SERVICE_PORT, ECHO_PORT).port("https", SERVICE_HTTPS_PORT, ECHO_HTTPS_PORT);
    let mut slice =
        EndpointSlice::named(&format!("{name}-1"), name).port("http", ECHO_PORT).port("https", ECHO_HTTPS_PORT);
    for pod in pods {
        slice = slice.endpoint(pod.ip(), true);
    }
    bed.write(&format!("svc-{name}.yaml"), &docs(&[svc.yaml(), slice.yaml()]))
}
