//! Canary Ingresses (`canary: "true"`).

use lb_routes::{CanaryHeader, CanaryRule, HeaderMatch, Route};

use super::*;

/// An Ingress with one path of `host` to port 80 of `service`, and
/// ingress-nginx annotations.
fn routed(name: &str, host: &str, path: &str, path_type: &str, service: &str, annotations: &Annotations) -> String {
    let annotations: Vec<String> =
        annotations.iter().map(|(k, v)| format!("nginx.ingress.kubernetes.io/{k}: {}", serde_json::json!(v))).collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{}}}}}\n\
         spec: {{ingressClassName: lb, rules: [{{host: {host}, http: {{paths: [{{path: {}, pathType: {path_type}, \
         backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]}}}}]}}\n",
        annotations.join(", "),
        serde_json::json!(path),
    )
}

fn route<'a>(table: &'a RouteTable, host: &str, path: &str) -> &'a Route {
    let path = lb_routes::normalize_path(path).unwrap();
    table.select(Some(host), &path).route.expect("a route")
}

#[test]
fn a_canary_joins_the_route_with_the_same_host_path_and_type() {
    let yaml = services(&["main", "canary", "other"])
        + &routed("main", "a.com", "/api", "Prefix", "main", &[("rewrite-target", "/v1")])
        + &routed("other", "a.com", "/web", "Prefix", "other", &[])
        + &routed(
            "canary",
            "a.com",
            "/api",
            "Prefix",
            "canary",
            &[("canary", "true"), ("canary-by-header", "X-Canary"), ("canary-weight", "20"), ("use-regex", "false")],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    let api = route(&table, "a.com", "/api/x");
    assert_eq!(api.backend.service.service.name, "main", "the main backend stays the route's");
    let canary = api.canary.as_ref().expect("a canary");
    assert_eq!(canary.ingress.name, "canary");
    assert_eq!(canary.backend.service.service.name, "canary");
    assert_eq!(
        canary.rule,
        CanaryRule {
            by_header: Some(CanaryHeader { name: "x-canary".into(), matcher: HeaderMatch::AlwaysNever }),
            by_cookie: None,
            weight: 20,
            weight_total: 100,
        }
    );
    // The route keeps its own Ingress's policy (the canary's annotations
    // other than canary-* mean nothing).
    assert_eq!(api.policy.rewrite.as_ref().map(ToString::to_string).as_deref(), Some("/v1"));
    assert!(route(&table, "a.com", "/web").canary.is_none());
}

#[test]
fn canaries_without_a_matching_route_or_second_ones_are_diagnosed() {
    let canary = |name: &str, path: &str, path_type: &str, service: &str| {
        routed(name, "a.com", path, path_type, service, &[("canary", "true"), ("canary-weight", "50")])
    };
    let yaml = services(&["main", "c1", "c2"])
        + &routed("main", "a.com", "/api", "Prefix", "main", &[])
        + &canary("c1", "/api", "Prefix", "c1")
        + &canary("c2", "/api", "Prefix", "c2")
        + &canary("c3", "/api/", "Prefix", "c1")
        + &canary("c4", "/api", "Exact", "c1")
        + &canary("c5", "/api", "Prefix", "main");
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        [
            "Ingress default/c2: spec.rules[0].http.paths[0].path: host a.com, path \"/api\" (Prefix) of Ingress \
             default/main already has the canary of Ingress default/c1; this one is not used",
            "Ingress default/c3: spec.rules[0].http.paths[0].path: no Ingress routes host a.com, path \"/api/\" \
             (Prefix); the canary path is not used",
            "Ingress default/c4: spec.rules[0].http.paths[0].path: no Ingress routes host a.com, path \"/api\" \
             (Exact); the canary path is not used",
            "Ingress default/c5: spec.rules[0].http.paths[0].backend: host a.com, path \"/api\" (Prefix) of Ingress \
             default/main already goes to default/main:80; the canary is not used",
        ]
    );
    let api = route(&table, "a.com", "/api");
    assert_eq!(api.canary.as_ref().map(|c| c.ingress.name.as_str()), Some("c1"));
    // A canary never serves on its own.
    assert_eq!(service_for(&table, Some("a.com"), "/"), None);
}

#[test]
fn a_canary_of_a_regex_route_matches_the_path_as_written() {
    let yaml = services(&["main", "canary"])
        + &routed("main", "r.com", "/api/v[0-9]+", "ImplementationSpecific", "main", &[("use-regex", "true")])
        + &routed(
            "canary",
            "r.com",
            "/api/v[0-9]+",
            "ImplementationSpecific",
            "canary",
            &[("canary", "true"), ("canary-by-cookie", "beta")],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    let api = route(&table, "r.com", "/API/V2/x");
    assert_eq!(api.canary.as_ref().and_then(|c| c.rule.by_cookie.as_deref()), Some("beta"));
}

#[test]
fn bad_canary_annotations_reject_the_canary_ingress() {
    let cases: &[(&Annotations, &str)] = &[
        (&[("canary", "yes")], "canary]: \"yes\" is not a boolean"),
        (
            &[("canary", "true"), ("canary-weight", "101")],
            "canary-weight]: \"101\" is not a whole number from 0 to 100",
        ),
        (&[("canary", "true"), ("canary-weight", "-1")], "canary-weight]: \"-1\" is not a whole number"),
        (&[("canary", "true"), ("canary-weight-total", "0")], "canary-weight-total]: \"0\" is not a whole number"),
        (&[("canary", "true"), ("canary-by-header", "X Canary")], "canary-by-header]: \"X Canary\" is not a header"),
        (&[("canary", "true"), ("canary-by-header", "a\nb")], "canary-by-header]: \"a\\nb\" is not a header"),
        (
            &[("canary", "true"), ("canary-by-header", "x"), ("canary-by-header-value", "a\"b;{c}\r\n")],
            "canary-by-header-value]: \"a\\\"b;{c}\\r\\n\": only letters, digits",
        ),
        (
            &[("canary", "true"), ("canary-by-header-pattern", "(a{1000}){1000}")],
            "canary-by-header-pattern]: the pattern is too complex",
        ),
        (&[("canary", "true"), ("canary-by-header-pattern", "(")], "canary-by-header-pattern]: not a valid regex"),
        (&[("canary", "true"), ("canary-by-cookie", "a=b")], "canary-by-cookie]: \"a=b\" is not a cookie name"),
    ];
    for (annotations, expected) in cases {
        let yaml = services(&["main", "canary"])
            + &routed("main", "a.com", "/", "Prefix", "main", &[])
            + &routed("bad", "a.com", "/", "Prefix", "canary", annotations);
        let (table, diagnostics) = compile(&yaml);
        let shown = shown(&diagnostics);
        assert!(shown.len() == 1 && shown[0].contains(expected), "{annotations:?}: {shown:?}");
        assert!(shown[0].starts_with("Ingress default/bad: metadata.annotations[nginx.ingress.kubernetes.io/canary"));
        let root = route(&table, "a.com", "/");
        assert_eq!((root.backend.service.service.name.as_str(), root.canary.is_none()), ("main", true));
    }
}

#[test]
fn the_header_value_wins_over_the_pattern_and_canary_annotations_alone_mean_nothing() {
    let yaml = services(&["main", "canary", "plain"])
        + &routed("main", "a.com", "/", "Prefix", "main", &[])
        + &routed(
            "canary",
            "a.com",
            "/",
            "Prefix",
            "canary",
            &[
                ("canary", "true"),
                ("canary-by-header", "x-v"),
                ("canary-by-header-value", "two"),
                ("canary-by-header-pattern", "t.*"),
            ],
        )
        // Without `canary: "true"`, an ordinary Ingress.
        + &routed("plain", "b.com", "/", "Prefix", "plain", &[("canary-weight", "100")]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    let rule = &route(&table, "a.com", "/").canary.as_ref().unwrap().rule;
    assert_eq!(rule.by_header.as_ref().map(|h| &h.matcher), Some(&HeaderMatch::Value("two".into())));
    let plain = route(&table, "b.com", "/");
    assert_eq!((plain.backend.service.service.name.as_str(), plain.canary.is_none()), ("plain", true));
}
