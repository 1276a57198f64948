//! DNS for `ExternalName` backends (hickory, Tokio).
//!
//! Name servers: the configured `dns_servers` (each over UDP and TCP), else
//! the system's `resolv.conf`, else hickory's defaults. Answers are cached
//! by hickory for their TTL. IP literals are used as they are.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;

/// Resolves backend host names.
pub(crate) struct Resolver {
    inner: TokioResolver,
    /// Bounds a whole lookup (all servers and attempts).
    timeout: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Resolver {
    pub(crate) fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        let provider = TokioConnectionProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the system DNS configuration, using hickory's defaults");
                TokioResolver::builder_with_config(ResolverConfig::default(), provider)
            })
        } else {
            let mut group = NameServerConfigGroup::new();
            for &server in servers {
                group.push(NameServerConfig::new(server, Protocol::Udp));
                group.push(NameServerConfig::new(server, Protocol::Tcp));
            }
            let config = ResolverConfig::from_parts(None, vec![], group);
            let mut builder = TokioResolver::builder_with_config(config, provider);
            *builder.options_mut() = ResolverOpts::default();
            builder
        };
        let options = builder.options_mut();
        options.timeout = options.timeout.min(timeout);
        Self { inner: builder.build(), timeout }
    }

    /// The addresses of `host` (an IP literal, bracketed or not, or a DNS
    /// name). `None` when the name does not resolve (or not in time).
    pub(crate) async fn resolve(&self, host: &str) -> Option<Vec<IpAddr>> {
        if let Some(ip) = ip_literal(host) {
            return Some(vec![ip]);
        }
        match tokio::time::timeout(self.timeout, self.inner.lookup_ip(host)).await {
            Ok(Ok(lookup)) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                (!ips.is_empty()).then_some(ips)
            }
            Ok(Err(error)) => {
                tracing::debug!(host, %error, "DNS lookup failed");
                None
            }
            Err(_) => {
                tracing::debug!(host, "DNS lookup timed out");
                None
            }
        }
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(ip_literal("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("fd00::2"), Some("fd00::2".parse().unwrap()));
        assert_eq!(ip_literal("db.example.com"), None);
    }

    #[tokio::test]
    async fn ip_literal_needs_no_dns() {
        // A name server that does not exist: literals never reach it.
        let resolver = Resolver::new(&["127.0.0.1:9".parse().unwrap()], Duration::from_millis(200));
        assert_eq!(resolver.resolve("127.0.0.7").await, Some(vec!["127.0.0.7".parse().unwrap()]));
        assert_eq!(resolver.resolve("nothing.invalid").await, None);
    }
}
