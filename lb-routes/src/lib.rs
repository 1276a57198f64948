//! The L7 route table: what the Ingress compiler produces and the proxy
//! reads. Pure data and pure matching, no I/O: a table is built once per
//! snapshot, swapped in atomically, and never changed afterwards.
//!
//! - [`host`]: request host normalisation and host patterns (`a.com`,
//!   `*.foo.com`).
//! - [`path`]: request path normalisation and Ingress path matching
//!   (`Exact`, `Prefix`).
//! - [`table`]: virtual hosts, routes, backends, and [`RouteTable::select`].
//! - [`tls`]: certificates by SNI name.

pub mod host;
pub mod path;
pub mod table;
pub mod tls;

pub use host::HostPattern;
pub use path::{PathError, PathType, normalize_path};
pub use table::{
    Backend, BackendTarget, ObjectName, Route, RouteTable, RouteTableBuilder, Selected, ServicePortRef,
    UpstreamProtocol, VirtualHost,
};
pub use tls::CertStore;
