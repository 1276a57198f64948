//! What the echo pods answer (shared by the `lb-echo` binary and the tests
//! that check its answers).

/// Response header carrying the pod's name.
pub const POD_NAME_HEADER: &str = "x-pod-name";
/// Response header carrying the client address the pod saw (`ip:port`).
pub const REMOTE_ADDR_HEADER: &str = "x-remote-addr";
/// First words of every HTTP body.
pub const SERVED_BY: &str = "Request served by ";

/// The HTTP body, as the users' echo server printed it:
///
/// ```text
/// Request served by nginx-7c5ddbdf54-2xkqn
///
/// GET / HTTP/1.1
///
/// Host: 192.168.1.11:30007
/// User-Agent: curl/7.88.1
/// ```
///
/// Header names are printed in canonical form (`X-Forwarded-For`).
pub fn format_http_body(pod: &str, request_line: &str, headers: &[(String, String)]) -> String {
    let mut body = format!("{SERVED_BY}{pod}\n\n{request_line}\n\n");
    for (name, value) in headers {
        body.push_str(&canonical_header_name(name));
        body.push_str(": ");
        body.push_str(value);
        body.push('\n');
    }
    body
}

/// `x-forwarded-for` -> `X-Forwarded-For`.
pub fn canonical_header_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The pod name on the first line of an echo body.
pub fn pod_from_body(body: &str) -> Option<&str> {
    let name = body.lines().next()?.strip_prefix(SERVED_BY)?.trim();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_looks_like_the_users_echo_server() {
        let body = format_http_body(
            "nginx1-deployment-abc",
            "GET /a HTTP/1.1",
            &[("host".into(), "a.com".into()), ("x-forwarded-for".into(), "10.0.0.1".into())],
        );
        assert_eq!(
            body,
            "Request served by nginx1-deployment-abc\n\nGET /a HTTP/1.1\n\nHost: a.com\nX-Forwarded-For: 10.0.0.1\n"
        );
        assert_eq!(pod_from_body(&body), Some("nginx1-deployment-abc"));
    }

    #[test]
    fn udp_reply_round_trips() {
        let r = udp_reply("pod-a", b"hello world");
        assert_eq!(r, b"pod-a hello world");
        assert_eq!(parse_udp_reply(&r), Some(("pod-a".to_string(), b"hello world".to_vec())));
    }
}
