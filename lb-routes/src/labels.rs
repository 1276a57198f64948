//! What the requests a route serves are counted under: ingress-nginx's
//! request labels (`host`, `namespace`, `ingress`, `service`, `path`,
//! `canary`) but the response's status and the method. Made once per route
//! when the table is built, so counting a request formats nothing.
//!
//! A table built after a change makes new label sets with the same values:
//! they are equal (and hash the same) as the old ones, so a request counted
//! with either lands in the same series.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use crate::backend::ServicePortRef;
use crate::object::ObjectName;

/// One route's request labels.
#[derive(Clone, Debug)]
pub struct RequestLabels {
    /// The rule's host as written (`*.foo.com` for a wildcard), empty for
    /// the rules without host.
    pub host: String,
    /// The Ingress's namespace and name (empty when no Ingress routed the
    /// request: the built-in 404).
    pub namespace: String,
    pub ingress: String,
    /// The route's Service.
    pub service: String,
    /// The rule's path as written.
    pub path: String,
    /// The canary's upstream when the canary served the request, as
    /// ingress-nginx names upstreams: `namespace-service-port`; else empty.
    pub canary: String,
    /// Of the fields above, computed once.
    hash: u64,
}

impl RequestLabels {
    /// Labels from their values.
    pub fn new(host: &str, ingress: Option<&ObjectName>, service: &str, path: &str, canary: &str) -> Self {
        let (namespace, ingress) = ingress.map_or(("", ""), |i| (i.namespace.as_str(), i.name.as_str()));
        let mut labels = Self {
            host: host.into(),
            namespace: namespace.into(),
            ingress: ingress.into(),
            service: service.into(),
            path: path.into(),
            canary: canary.into(),
            hash: 0,
        };
        labels.hash = labels.values_hash();
        labels
    }

    /// The labels of a request no Ingress rule served (`host` is the
    /// virtual host it fell in, if any).
    pub fn unrouted(host: &str) -> Self {
        Self::new(host, None, "", "", "")
    }

    /// The same request served by `canary` instead.
    pub fn with_canary(&self, canary: &ServicePortRef) -> Self {
        let upstream = format!("{}-{}-{}", canary.service.namespace, canary.service.name, canary.port);
        let mut labels = Self { canary: upstream, ..self.clone() };
        labels.hash = labels.values_hash();
        labels
    }

    /// The shared labels of requests that fell in no virtual host.
    pub fn nowhere() -> Arc<RequestLabels> {
        static NOWHERE: LazyLock<Arc<RequestLabels>> = LazyLock::new(|| Arc::new(RequestLabels::unrouted("")));
        NOWHERE.clone()
    }

    fn values(&self) -> [&str; 6] {
        [&self.host, &self.namespace, &self.ingress, &self.service, &self.path, &self.canary]
    }

    fn values_hash(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.values().hash(&mut hasher);
        hasher.finish()
    }
}

impl Default for RequestLabels {
    fn default() -> Self {
        Self::unrouted("")
    }
}

impl PartialEq for RequestLabels {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || (self.hash == other.hash && self.values() == other.values())
    }
}

impl Eq for RequestLabels {}

impl Hash for RequestLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ingress() -> ObjectName {
        ObjectName { namespace: "shop".into(), name: "web".into() }
    }

    #[test]
    fn equal_values_are_one_key_whichever_table_made_them() {
        let a = RequestLabels::new("a.com", Some(&ingress()), "web", "/", "");
        let b = RequestLabels::new("a.com", Some(&ingress()), "web", "/", "");
        let other = RequestLabels::new("a.com", Some(&ingress()), "web", "/x", "");
        let set: HashSet<RequestLabels> = [a.clone(), b, other.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&other));
    }

    #[test]
    fn a_canary_is_named_as_ingress_nginx_names_its_upstream() {
        let main = RequestLabels::new("a.com", Some(&ingress()), "web", "/", "");
        let port = ServicePortRef {
            service: ObjectName { namespace: "shop".into(), name: "web-v2".into() },
            port: "80".into(),
        };
        let canary = main.with_canary(&port);
        assert_eq!(canary.canary, "shop-web-v2-80");
        assert_eq!((canary.service.as_str(), canary.path.as_str()), ("web", "/"));
        assert_ne!(canary, main);
    }
}
