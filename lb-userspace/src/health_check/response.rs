//! The answer to a load balancer's probe, in kube-proxy's format.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::HealthCheck;

/// Whether the agent's proxying is healthy. kube-proxy reports whether its
/// rules are in sync; the agent has no such notion yet, so this is true
/// while it runs (and answers).
const SERVICE_PROXY_HEALTHY: bool = true;

/// The endpoint count again, for load balancers that weigh nodes by it.
const ENDPOINT_WEIGHT: &str = "x-load-balancing-endpoint-weight";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    service: ServiceName<'a>,
    local_endpoints: usize,
    service_proxy_healthy: bool,
}

#[derive(Serialize)]
struct ServiceName<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// `200` when the Service has ready endpoints on this node, else `503`;
/// the same for every method and path.
pub(super) fn answer(check: &HealthCheck) -> Response<Full<Bytes>> {
    let report = Report {
        service: ServiceName { namespace: &check.namespace, name: &check.name },
        local_endpoints: check.local_endpoints,
        service_proxy_healthy: SERVICE_PROXY_HEALTHY,
    };
    let body = serde_json::to_vec(&report).expect("a report of strings, a number and a bool serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = if check.local_endpoints > 0 && SERVICE_PROXY_HEALTHY {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(HeaderName::from_static(ENDPOINT_WEIGHT), HeaderValue::from(check.local_endpoints));
    response
}
