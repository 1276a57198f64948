//! What the echo pods answer (shared by the `lb-echo` binary and the tests
//! that check its answers).
//!
//! Every HTTP answer carries the header `x-pod-name: POD` and a JSON body
//! describing the request as the pod received it ([`EchoRequest`]):
//!
//! ```json
//! {"pod":"nginx1-deployment-abc","method":"GET","path":"/a?x=1","version":"HTTP/1.1",
//!  "authority":null,"headers":[["host","a.com"],["x-forwarded-for","10.0.0.1"]],
//!  "body":"","remote_addr":"127.0.0.1:40000","request_line":"GET /a?x=1 HTTP/1.1"}
//! ```
//!
//! UDP datagrams are answered with `POD <payload>`; WebSocket messages with
//! `POD <message>`.

use serde::{Deserialize, Serialize};

/// Response header carrying the pod's name.
pub const POD_NAME_HEADER: &str = "x-pod-name";
/// Response header carrying the client address the pod saw (`ip:port`).
pub const REMOTE_ADDR_HEADER: &str = "x-remote-addr";
/// Path prefix of the echo's test behaviours.
pub const SPECIAL_PREFIX: &str = "/__echo/";
/// Answers a head with `Content-Length: 1000`, 10 bytes of body, then closes.
pub const CLOSE_MID_RESPONSE_PATH: &str = "/__echo/close-mid-response";
/// `?ms=N`: waits N ms (at most [`MAX_SLOW_MS`]) before answering.
pub const SLOW_PATH: &str = "/__echo/slow";
/// `?code=N`: answers with status N.
pub const STATUS_PATH: &str = "/__echo/status";
/// Longest wait `/__echo/slow` accepts.
pub const MAX_SLOW_MS: u64 = 60_000;
/// Declared length of the `/__echo/close-mid-response` answer.
pub const CLOSE_MID_RESPONSE_LENGTH: usize = 1000;
/// Bytes of body actually sent by `/__echo/close-mid-response`.
pub const CLOSE_MID_RESPONSE_SENT: usize = 10;

/// The request as the echo pod received it (the JSON body of its answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoRequest {
    pub pod: String,
    pub method: String,
    /// The request target as received (path and query).
    pub path: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The `:authority` of an HTTP/2 request (HTTP/1 has a `host` header instead).
    #[serde(default)]
    pub authority: Option<String>,
    /// In received order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The request body (UTF-8, lossy).
    pub body: String,
    /// The peer of the pod's TCP connection (`ip:port`).
    pub remote_addr: String,
    /// `METHOD PATH VERSION`.
    pub request_line: String,
}

impl EchoRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// Whether header `name` was received.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The host the request named: `:authority` (HTTP/2), else `host`.
    pub fn host(&self) -> Option<&str> {
        self.authority.as_deref().or_else(|| self.header("host"))
    }

    /// The JSON body of the answer.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        s.push('\n');
        s
    }
}

/// The [`EchoRequest`] in an echo answer's body.
pub fn parse_body(body: &str) -> Option<EchoRequest> {
    serde_json::from_str(body).ok()
}

/// The pod name in an echo body.
pub fn pod_from_body(body: &str) -> Option<&str> {
    #[derive(Deserialize)]
    struct PodOnly<'a> {
        #[serde(borrow)]
        pod: &'a str,
    }
    let name = serde_json::from_str::<PodOnly<'_>>(body).ok()?.pod;
    (!name.is_empty()).then_some(name)
}

/// The UDP answer: `POD <payload>`.
pub fn udp_reply(pod: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pod.len() + 1 + payload.len());
    out.extend_from_slice(pod.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Splits a UDP answer into (pod, payload).
pub fn parse_udp_reply(reply: &[u8]) -> Option<(String, Vec<u8>)> {
    let space = reply.iter().position(|b| *b == b' ')?;
    let pod = std::str::from_utf8(&reply[..space]).ok()?.to_string();
    Some((pod, reply[space + 1..].to_vec()))
}

/// The WebSocket answer to a text message: `POD <message>`.
pub fn ws_reply(pod: &str, message: &str) -> String {
    format!("{pod} {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_and_names_the_pod() {
        let req = EchoRequest {
            pod: "nginx1-deployment-abc".into(),
            method: "GET".into(),
            path: "/a?x=1".into(),
            version: "HTTP/1.1".into(),
            authority: None,
            headers: vec![("host".into(), "a.com".into()), ("x-forwarded-for".into(), "10.0.0.1".into())],
            body: String::new(),
            remote_addr: "127.0.0.1:4000".into(),
            request_line: "GET /a?x=1 HTTP/1.1".into(),
        };
        let body = req.to_json();
        assert!(body.contains(r#""headers":[["host","a.com"],["x-forwarded-for","10.0.0.1"]]"#), "{body}");
        assert_eq!(parse_body(&body), Some(req.clone()));
        assert_eq!(pod_from_body(&body), Some("nginx1-deployment-abc"));
        assert_eq!(req.header("X-Forwarded-For"), Some("10.0.0.1"));
        assert_eq!(req.host(), Some("a.com"));
        assert_eq!(pod_from_body("Request served by x"), None);
    }

    #[test]
    fn udp_reply_round_trips() {
        let r = udp_reply("pod-a", b"hello world");
        assert_eq!(r, b"pod-a hello world");
        assert_eq!(parse_udp_reply(&r), Some(("pod-a".to_string(), b"hello world".to_vec())));
    }
}
