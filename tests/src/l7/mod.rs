//! The L7 test harness: `lb run --no-xdp` on a loopback address, echo pods
//! (`lb-echo`) on their own loopback addresses, Kubernetes manifests written
//! into the directory lb watches, test certificates, clients (HTTP/1.1, h2c,
//! HTTPS with SNI and ALPN, WebSocket, raw TCP) and a fake DNS server. No
//! root needed; everything stays on loopback (127.0.0.0/8) and is cleaned
//! up on drop.
//!
//! ```text
//! let mut bed = L7Bed::new()?;
//! let a = bed.echo("pod-a")?;
//! bed.service("web", &[&a])?;
//! bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", 80)))?;
//! bed.start_lb().await?;
//! let resp = bed.get("a.com", "/x").await?;
//! assert_eq!(resp.pod().as_deref(), Some("pod-a"));
//! ```

pub mod annotations;
pub mod bed;
pub mod certs;
pub mod client;
pub mod dns;
pub mod manifests;
pub mod net;
pub mod upstream;

pub use bed::{
    ECHO_PORT, EchoPod, L7Bed, LB_ADMIN_PORT, LB_HTTP_PORT, LB_HTTPS_PORT, LbOptions, RELOAD_TIMEOUT, SERVICE_PORT,
    seed_examples_dir, start_echo,
};
pub use certs::{CertInfo, CertPair, TestCa, b64, cert_info, self_signed};
pub use client::{
    Conn, DEFAULT_TIMEOUT, RawConn, RawResponse, Req, Resp, TlsInfo, TlsOpts, Ws, parse_responses, raw_exchange,
    send_h1, send_h2c, send_tls, tls_conn, tls_connect, ws_connect, ws_roundtrip,
};
pub use dns::FakeDns;
pub use manifests::{
    EndpointSlice, Ingress, ManifestDir, PortRef, Rule, Service, docs, ingress_class, tls_secret, tls_secret_raw,
};
pub use net::{unique_loopback_ip, wait_until};
