//! The L7 route table: what the Ingress compiler produces and the proxy
//! reads. Pure data and pure matching, no I/O: a table is built once per
//! snapshot, swapped in atomically, and never changed afterwards.
//!
//! - [`host`]: request host normalisation and host patterns (`a.com`,
//!   `*.foo.com`).
//! - [`path`]: request path normalisation and Ingress path matching
//!   (`Exact`, `Prefix`).
//! - [`policy`]: what a route does besides forwarding (regex paths,
//!   rewrites, redirects), from ingress-nginx's annotations.
//! - [`table`]: virtual hosts, routes, backends, and [`RouteTable::select`].
//! - [`tls`]: certificates by SNI name.
//!
//! A [`RouteTable`] is `Send + Sync`, cheap to clone and cheap to select
//! from: hosts and paths are found by hash lookups (one per path element
//! for prefixes), never by scanning every route.

pub mod canary;
pub mod host;
pub mod path;
pub mod policy;
pub mod table;
pub mod tls;
mod vhost;

pub use canary::{Canary, CanaryHeader, CanaryRule, HeaderMatch, HeaderPattern};
pub use host::HostPattern;
pub use path::{PathError, PathType, normalize_path, upstream_path};
pub use policy::{
    ClientPolicy, CookieAffinity, HttpsRedirect, PathRegex, Redirect, RewriteTarget, RoutePolicy, SameSite,
    UpstreamPolicy,
};
pub use table::{
    Backend, BackendTarget, ObjectName, Route, RouteTable, RouteTableBuilder, Selected, ServicePortRef,
    UpstreamProtocol, VirtualHost,
};
pub use tls::CertStore;
