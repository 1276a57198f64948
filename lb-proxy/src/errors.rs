//! Responses the proxy generates itself (errors, redirects).
//!
//! Bodies are short plain text in the nginx style (`404 Not Found`), so a
//! person looking at a browser or `curl` output knows who answered.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::body::{ProxyBody, full};

/// The `Server` header on every response (the upstream's is replaced, as
/// nginx does).
pub(crate) const SERVER_NAME: HeaderValue = HeaderValue::from_static("lb");

/// Why the proxy answered a request itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("invalid request path: {0}")]
    BadPath(#[from] lb_routes::PathError),
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no route")]
    NoRoute,
    #[error("client address not allowed (source ranges)")]
    Forbidden,
    #[error("rate limit exceeded (limit-rps/limit-rpm)")]
    RateLimited,
    #[error("too many requests in flight from the client (limit-connections)")]
    ConnectionLimited,
    #[error("backend {0} has no ready endpoints")]
    NoEndpoints(String),
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    #[error("cannot connect to any endpoint (last {0})")]
    Connect(String),
    #[error("connect timed out (last endpoint {0})")]
    ConnectTimeout(String),
    #[error("no response head within the upstream response timeout")]
    Timeout,
    #[error("the upstream did not take the request body within the send timeout")]
    SendTimeout,
    #[error("the client did not send its request body in time")]
    ClientBodyTimeout,
    #[error("request body larger than proxy-body-size")]
    BodyTooLarge,
    /// The client's request body failed while it was forwarded (a
    /// malformed chunked encoding, a connection closed mid-body): the
    /// client's fault, not the upstream's.
    #[error("invalid request body: {0}")]
    BadRequestBody(String),
    #[error("upstream request failed: {0}")]
    Upstream(String),
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_) | ProxyError::DuplicateHost | ProxyError::BadRequestBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            // ingress-nginx's limit-req-status-code and limit-conn-status-code.
            ProxyError::RateLimited | ProxyError::ConnectionLimited => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoEndpoints(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unresolvable(_) | ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout | ProxyError::SendTimeout | ProxyError::ConnectTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        status_response(self.status())
    }
}

/// `{code} {reason}\n` as `text/plain`, e.g. `404 Not Found`.
pub(crate) fn status_response(status: StatusCode) -> Response<ProxyBody> {
    let text = format!("{} {}\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    let length = HeaderValue::from(text.len());
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(CONTENT_LENGTH, length);
    response
}

/// A `308 Permanent Redirect` to `location` (308 keeps the method and body,
/// unlike 301).
pub(crate) fn redirect_response(code: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut response = status_response(code);
    response.headers_mut().insert(LOCATION, location);
    response
}

/// `error: cause: cause` for logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn status_bodies_are_short_plain_text() {
        let response = ProxyError::NoRoute.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"404 Not Found\n");
    }

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::NoEndpoints("a/b:80".into()).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ProxyError::Unresolvable("x".into()).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(ProxyError::Timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(ProxyError::BodyTooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ProxyError::BadPath(lb_routes::PathError::NotAbsolute).status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn redirect_has_location() {
        let response = redirect_response(StatusCode::PERMANENT_REDIRECT, HeaderValue::from_static("https://a.com/"));
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[LOCATION], "https://a.com/");
    }
}
