//! The access log of `lb run --no-xdp`: one line per request, in the format
//! of a `tracing` event of target `lb_proxy::access`, none lost when the
//! agent stops right after its last answer (the log is buffered). With
//! `--log-format json`, every line of lb's stderr is a JSON object, the
//! access log's included.

use lb_testbed::l7::{Ingress, L7Bed, LbOptions, Rule, SERVICE_PORT};
use serde_json::{Map, Value};

const REQUESTS: usize = 300;

#[tokio::test]
async fn every_request_gets_one_line_and_none_is_lost_at_exit() {
    let mut bed = L7Bed::new().expect("bed");
    let web = bed.echo("web").expect("echo pod");
    bed.service("web", &[&web]).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    bed.start_lb().await.expect("lb starts");
    for i in 0..REQUESTS {
        let resp = bed.ok(bed.get("a.com", &format!("/n/{i}")).await);
        assert_eq!(resp.status, 200);
    }
    let resp = bed.ok(bed.get("unknown.example", "/last").await);
    assert_eq!(resp.status, 404);
    assert!(bed.stop_lb(), "lb stops cleanly:\n{}", bed.logs());

    let stderr = bed.lb_stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(" INFO lb_proxy::access: ")).collect();
    assert_eq!(lines.len(), REQUESTS + 1, "one line per request:\n{}", bed.logs());
    for i in 0..REQUESTS {
        let path = format!(" path=/n/{i} ");
        let line = lines.iter().filter(|l| l.contains(&path)).collect::<Vec<_>>();
        assert_eq!(line.len(), 1, "{path}: {line:?}");
        let line = line[0];
        for field in
            ["host=\"a.com\"", "status=200", "method=GET", "version=HTTP/1.1", "scheme=\"http\"", "upstream=\""]
        {
            assert!(line.contains(field), "{field} in {line}");
        }
        assert!(line.contains(&format!("upstream=\"{}\"", web.addr())), "the pod's address: {line}");
    }
    let last = lines.last().unwrap();
    assert!(last.contains("path=/last") && last.contains("status=404") && last.contains("upstream=\"-\""), "{last}");
}

#[tokio::test]
async fn with_log_format_json_every_line_is_a_json_object() {
    let mut bed = L7Bed::new().expect("bed");
    let web = bed.echo("web").expect("echo pod");
    bed.service("web", &[&web]).unwrap();
    bed.ingress("web", &Ingress::new("web").class("lb").rule(Rule::host("a.com").prefix("/", "web", SERVICE_PORT)))
        .unwrap();
    let opts = LbOptions {
        log_level: "debug".into(),
        extra_args: vec!["--log-format".into(), "json".into()],
        ..LbOptions::default()
    };
    bed.start_lb_with(opts).await.expect("lb starts");
    let resp = bed.ok(bed.get("a.com", "/json/1").await);
    assert_eq!(resp.status, 200);
    let resp = bed.ok(bed.get("unknown.example", "/json/last").await);
    assert_eq!(resp.status, 404);
    assert!(bed.stop_lb(), "lb stops cleanly:\n{}", bed.logs());

    let stderr = bed.lb_stderr();
    let mut access = Vec::new();
    let mut others = 0;
    for line in stderr.lines() {
        let object: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            other => panic!("not a JSON object ({other:?}): {line:?}\n{stderr}"),
        };
        let timestamp = object.get("timestamp").and_then(Value::as_str).unwrap_or_else(|| panic!("timestamp: {line}"));
        assert!(
            timestamp.len() >= 20 && timestamp.as_bytes()[10] == b'T' && timestamp.ends_with('Z'),
            "an RFC 3339 timestamp: {line}"
        );
        let level = object.get("level").and_then(Value::as_str).unwrap_or_else(|| panic!("level: {line}"));
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "{line}");
        let target = object.get("target").and_then(Value::as_str).unwrap_or_else(|| panic!("target: {line}"));
        if target == "lb_proxy::access" {
            access.push(object);
        } else {
            others += 1;
        }
    }
    assert!(others > 0, "the agent's own events are JSON too:\n{stderr}");
    assert_eq!(access.len(), 2, "one access line per request:\n{stderr}");

    let first = &access[0];
    let upstream = web.addr().to_string();
    for (key, value) in [
        ("level", Value::from("INFO")),
        ("scheme", Value::from("http")),
        ("version", Value::from("HTTP/1.1")),
        ("method", Value::from("GET")),
        ("host", Value::from("a.com")),
        ("path", Value::from("/json/1")),
        ("status", Value::from(200)),
        ("upstream", Value::from(upstream.as_str())),
        ("error", Value::from("")),
    ] {
        assert_eq!(first.get(key), Some(&value), "{key} in {first:?}");
    }
    let client = first.get("client").and_then(Value::as_str).unwrap_or_default();
    assert!(client.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()), "client in {first:?}");
    for key in ["message", "backend", "request_id"] {
        assert!(first.get(key).is_some_and(Value::is_string), "{key} in {first:?}");
    }
    assert!(first.get("duration_ms").is_some_and(Value::is_number), "duration_ms in {first:?}");

    let last = &access[1];
    assert_eq!(last.get("path"), Some(&Value::from("/json/last")), "{last:?}");
    assert_eq!(last.get("host"), Some(&Value::from("unknown.example")), "{last:?}");
    assert_eq!(last.get("status"), Some(&Value::from(404)), "{last:?}");
    assert_eq!(last.get("upstream"), Some(&Value::Null), "{last:?}");
    let mut keys: Vec<&str> = last.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "backend",
            "client",
            "duration_ms",
            "error",
            "host",
            "level",
            "message",
            "method",
            "path",
            "request_id",
            "scheme",
            "status",
            "target",
            "timestamp",
            "upstream",
            "version"
        ],
        "{last:?}"
    );
}
