//! Helpers for the tests of ingress-nginx annotations
//! (`nginx.ingress.kubernetes.io/…`): one echo pod and Service per name,
//! route and backend-path expectations checked all at once, redirect
//! `Location`s, and lb's warnings read from its whole log.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::bed::{EchoPod, L7Bed};
use super::manifests::Ingress;

/// The prefix of ingress-nginx's annotations.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// `nginx.ingress.kubernetes.io/<name>`.
pub fn nginx(name: &str) -> String {
    format!("{NGINX_PREFIX}{name}")
}

/// Sets ingress-nginx annotations by their short name.
pub trait NginxAnnotations {
    /// `nginx.ingress.kubernetes.io/<name>: <value>`.
    fn nginx(self, name: &str, value: &str) -> Self;
}

impl NginxAnnotations for Ingress {
    fn nginx(self, name: &str, value: &str) -> Self {
        self.annotation(&nginx(name), value)
    }
}

/// A bed with one echo pod per name and, for each, a Service named like the
/// pod (port `http` 80 → the pod). lb is not started.
pub fn bed_with_pods(names: &[&str]) -> Result<(L7Bed, Vec<EchoPod>)> {
    let mut bed = L7Bed::new()?;
    let mut pods = Vec::new();
    for name in names {
        let pod = bed.echo(name)?;
        bed.service(name, &[&pod])?;
        pods.push(pod);
    }
    Ok((bed, pods))
}

/// `GET host path` for every case: the status and the pod that answered
/// (`None`: lb itself). Panics listing every mismatch, with lb's logs.
pub async fn expect_routes(bed: &L7Bed, cases: &[(&str, &str, u16, Option<&str>)]) {
    let mut wrong = Vec::new();
    for (host, path, status, pod) in cases {
        match bed.route(host, path).await {
            Ok(got) if got == (*status, pod.map(str::to_string)) => {}
            Ok(got) => wrong.push(format!("GET {host}{path}: want {status} {pod:?}, got {} {:?}", got.0, got.1)),
            Err(e) => wrong.push(format!("GET {host}{path}: want {status} {pod:?}, got error {e:#}")),
        }
    }
    if !wrong.is_empty() {
        bed.fail(format!("{} of {} routes wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n")));
    }
}

/// `GET host path` for every case: 200 from `pod`, which received the
/// request target `upstream` (path and query). Panics listing every mismatch.
pub async fn expect_upstream(bed: &L7Bed, cases: &[(&str, &str, &str, &str)]) {
    let mut wrong = Vec::new();
    for (host, path, pod, upstream) in cases {
        let resp = match bed.get(host, path).await {
            Ok(r) => r,
            Err(e) => {
                wrong.push(format!("GET {host}{path}: error {e:#}"));
                continue;
            }
        };
        let got_path = resp.echo().map(|e| e.path).unwrap_or_else(|_| "(no echo answer)".to_string());
        if resp.status != 200 || resp.pod().as_deref() != Some(*pod) || got_path != *upstream {
            wrong.push(format!(
                "GET {host}{path}: want 200 from {pod} with upstream target {upstream:?}, got {} from {:?} with {got_path:?}",
                resp.status,
                resp.pod()
            ));
        }
    }
    if !wrong.is_empty() {
        bed.fail(format!("{} of {} requests wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n")));
    }
}

/// Whether `location` is `https://{host}{path_and_query}`, with or without
/// `:{https_port}` after the host (lb writes the port when its HTTPS
/// listener is not on 443).
pub fn is_https_location(location: &str, host: &str, https_port: u16, path_and_query: &str) -> bool {
    location == format!("https://{host}{path_and_query}")
        || location == format!("https://{host}:{https_port}{path_and_query}")
}

/// Decodes `%XX` escapes (for comparing a target lb may have escaped).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// lb's whole output so far (stderr, then stdout), not only the tail.
pub fn lb_output(bed: &L7Bed) -> String {
    let read = |file: &str| std::fs::read_to_string(bed.log_dir().join(file)).unwrap_or_default();
    read("lb.stderr") + &read("lb.stdout")
}

/// Whether `line` names `Ingress {namespace}/{name}` (not a longer name
/// starting with `name`).
pub fn names_ingress(line: &str, namespace: &str, name: &str) -> bool {
    let needle = format!("Ingress {namespace}/{name}");
    line.match_indices(&needle).any(|(at, _)| {
        let next = line[at + needle.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    })
}

/// Whether lb logged a warning (or error) line naming `Ingress
/// {namespace}/{name}` and containing one of `needles`.
pub fn warned_about(output: &str, namespace: &str, name: &str, needles: &[&str]) -> bool {
    output.lines().any(|line| {
        (line.contains("WARN") || line.contains("ERROR"))
            && names_ingress(line, namespace, name)
            && needles.iter().any(|n| line.contains(n))
    })
}

/// One expected warning: the Ingress (namespace `default`) and words one of
/// which the same line holds (the annotation's name).
#[derive(Clone, Debug)]
pub struct ExpectedWarning {
    pub ingress: String,
    pub needles: Vec<String>,
}

/// Waits up to `timeout` until lb warned about every expected Ingress;
/// returns those it did not warn about (empty: all).
pub async fn wait_warnings(bed: &L7Bed, expected: &[ExpectedWarning], timeout: Duration) -> Vec<ExpectedWarning> {
    let deadline = Instant::now() + timeout;
    loop {
        let output = lb_output(bed);
        let missing: Vec<ExpectedWarning> = expected
            .iter()
            .filter(|w| {
                let needles: Vec<&str> = w.needles.iter().map(String::as_str).collect();
                !warned_about(&output, "default", &w.ingress, &needles)
            })
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// At most the last `max` bytes of `s` (on a character boundary), for
/// failure messages that must not print megabytes.
pub fn tail_of(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = s.len() - max;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(nginx("use-regex"), "nginx.ingress.kubernetes.io/use-regex");
        assert!(is_https_location("https://a.com:8443/x?y", "a.com", 8443, "/x?y"));
        assert!(is_https_location("https://a.com/x?y", "a.com", 8443, "/x?y"));
        assert!(!is_https_location("https://a.com/x", "a.com", 8443, "/x?y"));
        assert_eq!(percent_decode("/a%7Bb%7d%22%2"), "/a{b}\"%2");
        let line =
            "2026 WARN lb: Ingress default/bad-x: metadata.annotations[nginx.ingress.kubernetes.io/use-regex]: no";
        assert!(warned_about(line, "default", "bad-x", &["use-regex"]));
        assert!(!warned_about(line, "default", "bad", &["use-regex"]));
        assert!(!warned_about(line, "default", "bad-x", &["app-root"]));
        assert_eq!(tail_of("abcdé", 2), "é");
    }
}
