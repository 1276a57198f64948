//! The access log of `lb run --no-xdp`: one line per request, in the format
//! of a `tracing` event of target `lb_proxy::access`, none lost when the
//! agent stops right after its last answer (the log is buffered).

use lb_testbed::l7::{Ingress, L7Bed, Rule, SERVICE_PORT};

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
