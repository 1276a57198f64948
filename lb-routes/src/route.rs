//! One path of an Ingress rule and what it does.

use std::borrow::Cow;
use std::sync::Arc;

use crate::backend::Backend;
use crate::canary::Canary;
use crate::labels::RequestLabels;
use crate::object::ObjectName;
use crate::path::PathType;
use crate::policy::{PathRegex, RoutePolicy};

/// One path of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The Ingress the path comes from.
    pub ingress: ObjectName,
    /// The path as written (trailing slash kept), for logs.
    pub path: String,
    pub path_type: PathType,
    pub backend: Arc<Backend>,
    /// The path as a regex, when its host matches paths by regex
    /// (`use-regex` on one of its Ingresses); `Exact` paths never are.
    pub regex: Option<PathRegex>,
    /// What the route does besides forwarding (its Ingress's annotations).
    pub policy: Arc<RoutePolicy>,
    /// The backend of a canary Ingress for the same host, path and path
    /// type, and which requests go there.
    pub canary: Option<Arc<Canary>>,
    /// What its requests are counted under, set when the route joins its
    /// virtual host (and its canary's, once it has one).
    pub labels: Arc<RequestLabels>,
    pub canary_labels: Option<Arc<RequestLabels>>,
}

impl Route {
    /// A plain route: no regex, no policy.
    pub fn new(ingress: ObjectName, path: String, path_type: PathType, backend: Arc<Backend>) -> Self {
        let labels = Arc::new(RequestLabels::new("", Some(&ingress), &backend.service.service.name, &path, ""));
        Self {
            ingress,
            path,
            path_type,
            backend,
            regex: None,
            policy: Arc::default(),
            canary: None,
            labels,
            canary_labels: None,
        }
    }

    /// Sets [`Self::labels`] and [`Self::canary_labels`] for the virtual
    /// host named `host`.
    pub(crate) fn label(&mut self, host: &str) {
        let labels = RequestLabels::new(host, Some(&self.ingress), &self.backend.service.service.name, &self.path, "");
        self.canary_labels = self.canary.as_ref().map(|canary| Arc::new(labels.with_canary(&canary.backend.service)));
        self.labels = Arc::new(labels);
    }

    /// The path to send upstream for a request whose path is `raw` (as the
    /// client sent it) and `normalized`: the rewrite target when there is
    /// one, else [`upstream_path`](crate::path::upstream_path).
    pub fn upstream_path<'a>(&self, raw: &'a str, normalized: &'a str) -> Cow<'a, str> {
        if let (Some(target), Some(regex)) = (&self.policy.rewrite, &self.regex)
            && let Some(captures) = regex.captures(normalized)
        {
            return Cow::Owned(target.expand(&captures));
        }
        Cow::Borrowed(crate::path::upstream_path(raw, normalized))
    }
}
