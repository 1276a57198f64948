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
//! - [`Backend`]: where a route sends requests; [`ObjectName`]: the
//!   Kubernetes objects things come from; [`Route`]: one path of an
//!   Ingress rule, with its policy and canary.
//! - [`table`]: virtual hosts and [`RouteTable::select`].
//! - [`tls`]: certificates by SNI name.
//!
//! A [`RouteTable`] is `Send + Sync`, cheap to clone and cheap to select
//! from: hosts and paths are found by hash lookups (one per path element
//! for prefixes), never by scanning every route.

mod backend;
pub mod canary;
pub mod host;
mod labels;
mod object;
pub mod path;
pub mod policy;
mod route;
pub mod table;
pub mod tls;
mod vhost;

pub use backend::{Backend, BackendTarget, ServicePortRef, UpstreamProtocol};
pub use canary::{Canary, CanaryHeader, CanaryRule, HeaderMatch, HeaderPattern};
pub use host::HostPattern;
pub use labels::RequestLabels;
pub use object::ObjectName;
pub use path::{PathError, PathType, normalize_path, upstream_path};
pub use policy::{
    ClientPolicy, CookieAffinity, HttpsRedirect, PathRegex, Redirect, RewriteTarget, RoutePolicy, SameSite,
    UpstreamPolicy,
};
pub use route::Route;
pub use table::{RouteTable, RouteTableBuilder, Selected};
pub use tls::CertStore;
pub use vhost::VirtualHost;
