use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use lb_routes::{Backend, BackendTarget, PathType, UpstreamProtocol};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::*;
use crate::compile::test_support::{slice, snapshot};

mod canary;

fn compile(yaml: &str) -> (RouteTable, Vec<Diagnostic>) {
    compile_l7(&snapshot(yaml), &L7Options::default())
}

fn shown(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(Diagnostic::to_string).collect()
}

/// A ClusterIP Service with port 80 (`http`) to target port 8080.
fn service(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
"
    )
}

/// A rule of `host` (`""`: none) with `(path, pathType, service)` paths,
/// each to port 80 of the service.
fn rule(host: &str, paths: &[(&str, &str, &str)]) -> String {
    let host = if host.is_empty() { String::new() } else { format!("host: {host:?}\n    ") };
    let paths: String = paths
        .iter()
        .map(|(path, path_type, service)| {
            format!(
                "\n      - path: {path:?}\n        pathType: {path_type}\n        \
                 backend: {{service: {{name: {service}, port: {{number: 80}}}}}}"
            )
        })
        .collect();
    format!("  - {host}http:\n      paths:{paths}\n")
}

/// An Ingress of class `lb` with `extra` spec fields (indented by two)
/// and `rules`.
fn ingress(name: &str, extra: &str, rules: &[String]) -> String {
    let rules = if rules.is_empty() { String::new() } else { format!("  rules:\n{}", rules.concat()) };
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}}}
spec:
  ingressClassName: lb
{extra}{rules}"
    )
}

/// The Service a request goes to (`None`: 404).
fn service_for(table: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
    backend_for(table, host, path).map(|b| b.service.service.name.clone())
}

fn backend_for<'a>(table: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a Arc<Backend>> {
    let host = host.map(|h| lb_routes::host::normalize_host(h).unwrap());
    let path = lb_routes::normalize_path(path).unwrap();
    table.select(host.as_deref(), &path).backend
}

fn svc(name: &str) -> Option<String> {
    Some(name.to_string())
}

fn services(names: &[&str]) -> String {
    names.iter().map(|n| service(n)).collect()
}

// Paths and precedence.

#[test]
fn exact_prefix_and_implementation_specific_paths() {
    let yaml = services(&["exact", "prefix", "is"])
        + &ingress(
            "web",
            "",
            &[rule(
                "a.com",
                &[
                    ("/exact", "Exact", "exact"),
                    ("/prefix/", "Prefix", "prefix"),
                    ("/is", "ImplementationSpecific", "is"),
                ],
            )],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), [] as [String; 0]);
    let host = Some("a.com");
    assert_eq!(service_for(&table, host, "/exact"), svc("exact"));
    assert_eq!(service_for(&table, host, "/exact/"), None);
    assert_eq!(service_for(&table, host, "/prefix"), svc("prefix"));
    assert_eq!(service_for(&table, host, "/prefix/x"), svc("prefix"));
    assert_eq!(service_for(&table, host, "/prefixx"), None);
    assert_eq!(service_for(&table, host, "/is/x"), svc("is"));
    assert_eq!(service_for(&table, host, "/isx"), None);
    let route = table.select(host, "/prefix/x").route.unwrap();
    assert_eq!((route.path.as_str(), route.path_type), ("/prefix/", PathType::Prefix));
    assert_eq!(route.ingress.to_string(), "default/web");
}

#[test]
fn a_missing_path_is_the_root_except_for_exact() {
    let yaml = services(&["root", "is"])
        + &ingress(
            "web",
            "",
            &["  - host: a.com
    http:
      paths:
      - pathType: Prefix
        backend: {service: {name: root, port: {number: 80}}}
      - pathType: Exact
        backend: {service: {name: root, port: {number: 80}}}
  - host: b.com
    http:
      paths:
      - pathType: ImplementationSpecific
        backend: {service: {name: is, port: {number: 80}}}
"
            .to_string()],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/web: spec.rules[0].http.paths[1].path: an Exact path needs a path; ignored"]
    );
    assert_eq!(service_for(&table, Some("a.com"), "/anything"), svc("root"));
    assert_eq!(service_for(&table, Some("b.com"), "/anything"), svc("is"));
}

#[test]
fn invalid_paths_are_diagnosed_and_left_out() {
    let yaml = services(&["ok"])
        + &ingress(
            "web",
            "",
            &[rule(
                "a.com",
                &[
                    ("relative", "Prefix", "ok"),
                    ("exact", "Exact", "ok"),
                    ("/bad%zz", "Prefix", "ok"),
                    ("/nul%00", "Exact", "ok"),
                    ("/x", "", "ok"),
                    ("/x", "Regex", "ok"),
                    ("no-slash", "ImplementationSpecific", "ok"),
                    ("/fine", "Prefix", "ok"),
                ],
            )],
        );
    let (table, diagnostics) = compile(&yaml);
    let field = "Ingress default/web: spec.rules[0].http.paths";
    assert_eq!(
        shown(&diagnostics),
        [
            format!("{field}[0].path: \"relative\": the path does not start with '/'; ignored"),
            format!("{field}[1].path: \"exact\": the path does not start with '/'; ignored"),
            format!("{field}[2].path: \"/bad%zz\": the path holds an invalid percent-encoding; ignored"),
            format!("{field}[3].path: \"/nul%00\": the path holds an encoded NUL, CR, LF or backslash; ignored"),
            format!(
                "{field}[4].pathType: pathType is required (Exact, Prefix or ImplementationSpecific); the path is \
                 ignored"
            ),
            format!(
                "{field}[5].pathType: unknown pathType \"Regex\" (Exact, Prefix or ImplementationSpecific); ignored"
            ),
            format!("{field}[6].path: \"no-slash\": the path does not start with '/'; ignored"),
        ]
    );
    let routes = table.virtual_host(Some(&HostPattern::parse("a.com").unwrap())).unwrap().routes();
    assert_eq!(routes.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/fine"]);
}

#[test]
fn regex_implementation_specific_paths_are_literal_prefixes_for_now() {
    let yaml = services(&["api"])
        + &ingress("web", "", &[rule("a.com", &[("/api/(v1|v2)/.*", "ImplementationSpecific", "api")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, Some("a.com"), "/api/(v1|v2)/.*"), svc("api"));
    assert_eq!(service_for(&table, Some("a.com"), "/api/(v1|v2)/.*/x"), svc("api"));
    assert_eq!(service_for(&table, Some("a.com"), "/api/v1/x"), None);
}

#[test]
fn longest_path_wins_and_exact_beats_prefix_on_a_tie() {
    let yaml = services(&["root", "a", "ab", "ab-exact"])
        + &ingress(
            "web",
            "",
            &[rule(
                "",
                &[
                    ("/", "Prefix", "root"),
                    ("/a/b", "Prefix", "ab"),
                    ("/a", "Prefix", "a"),
                    ("/a/b", "Exact", "ab-exact"),
                ],
            )],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, None, "/"), svc("root"));
    assert_eq!(service_for(&table, None, "/ab"), svc("root"));
    assert_eq!(service_for(&table, None, "/a/x"), svc("a"));
    assert_eq!(service_for(&table, None, "/a/b"), svc("ab-exact"));
    assert_eq!(service_for(&table, None, "/a/b/"), svc("ab"));
    assert_eq!(service_for(&table, None, "/a/b/c"), svc("ab"));
    assert_eq!(service_for(&table, Some("any.host"), "/a/./b"), svc("ab-exact"));
}

// Hosts.

#[test]
fn wildcard_hosts_match_one_label() {
    let yaml = services(&["exact", "wildcard"])
        + &ingress(
            "web",
            "",
            &[rule("*.foo.com", &[("/", "Prefix", "wildcard")]), rule("a.foo.com", &[("/", "Prefix", "exact")])],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, Some("a.foo.com"), "/"), svc("exact"));
    assert_eq!(service_for(&table, Some("B.foo.com:80"), "/"), svc("wildcard"));
    assert_eq!(service_for(&table, Some("foo.com"), "/"), None);
    assert_eq!(service_for(&table, Some("x.b.foo.com"), "/"), None);
}

#[test]
fn hostless_rules_serve_other_hosts_but_a_host_never_falls_back_to_them() {
    let yaml = services(&["a", "any"])
        + &ingress("web", "", &[rule("a.com", &[("/a", "Prefix", "a")]), rule("", &[("/", "Prefix", "any")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, Some("a.com"), "/a/1"), svc("a"));
    assert_eq!(service_for(&table, Some("a.com"), "/b"), None);
    assert_eq!(service_for(&table, Some("b.com"), "/b"), svc("any"));
    assert_eq!(service_for(&table, None, "/b"), svc("any"));
}

#[test]
fn a_host_without_paths_is_its_own_server() {
    let yaml = services(&["any"])
        + &ingress("web", "", &["  - host: a.com\n".to_string(), rule("", &[("/", "Prefix", "any")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, Some("a.com"), "/"), None);
    assert_eq!(service_for(&table, Some("b.com"), "/"), svc("any"));
}

#[test]
fn invalid_hosts_are_diagnosed_and_their_rule_left_out() {
    let yaml = services(&["a"])
        + &ingress(
            "web",
            "",
            &[
                rule("bad_host.com", &[("/", "Prefix", "a")]),
                rule("10.0.0.1", &[("/", "Prefix", "a")]),
                rule("a.com", &[("/", "Prefix", "a")]),
            ],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        [
            "Ingress default/web: spec.rules[0].host: \"bad_host.com\" is not a DNS name or a `*.` wildcard; the rule is ignored",
            "Ingress default/web: spec.rules[1].host: \"10.0.0.1\" is not a DNS name or a `*.` wildcard; the rule is ignored",
        ]
    );
    let names: Vec<_> = table.virtual_hosts().iter().map(|h| h.name.clone()).collect();
    assert_eq!(names, ["a.com"]);
}

// Default backends.

const DEFAULT_BACKEND: &str = "  defaultBackend: {service: {name: fallback, port: {number: 80}}}\n";

#[test]
fn default_backend_is_the_hosts_fallback_and_the_table_default() {
    let yaml = services(&["a", "b", "fallback"])
        + &ingress("one", DEFAULT_BACKEND, &[rule("a.com", &[("/a", "Prefix", "a")])])
        + &ingress("two", "", &[rule("b.com", &[("/b", "Prefix", "b")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(service_for(&table, Some("a.com"), "/a"), svc("a"));
    assert_eq!(service_for(&table, Some("a.com"), "/x"), svc("fallback"));
    // b.com has no fallback of its own: the table's default.
    assert_eq!(service_for(&table, Some("b.com"), "/x"), svc("fallback"));
    assert_eq!(service_for(&table, Some("c.com"), "/x"), svc("fallback"));
    let a = table.virtual_host(Some(&HostPattern::parse("a.com").unwrap())).unwrap();
    assert!(a.fallback.is_some());
    assert_eq!(table.default_backend().map(|b| b.service.to_string()), Some("default/fallback:80".into()));
}

#[test]
fn a_second_default_backend_is_diagnosed() {
    let other = DEFAULT_BACKEND.replace("fallback", "other");
    let yaml = services(&["fallback", "other", "a"])
        + &ingress("one", DEFAULT_BACKEND, &[])
        + &ingress("two", &other, &[rule("a.com", &[("/a", "Prefix", "a")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/two: spec.defaultBackend: Ingress default/one already sets the default backend of \
             requests matching no host; this one is only used for its own hosts"]
    );
    assert_eq!(service_for(&table, Some("c.com"), "/"), svc("fallback"));
    assert_eq!(service_for(&table, Some("a.com"), "/x"), svc("other"));
}

// Ingress classes.

fn class_yaml(name: &str, controller: &str, default: bool) -> String {
    let annotations =
        if default { "\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}" } else { "" };
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {name}{annotations}
spec:
  controller: {controller}
"
    )
}

/// An Ingress for host `<name>.com` with the given class settings.
fn classed_ingress(name: &str, class_name: Option<&str>, annotation: Option<&str>) -> String {
    let class_name = class_name.map(|c| format!("\n  ingressClassName: {c}")).unwrap_or_default();
    let annotation =
        annotation.map(|c| format!("\n  annotations: {{kubernetes.io/ingress.class: {c}}}")).unwrap_or_default();
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}{annotation}
spec:{class_name}
  rules:
{}",
        rule(&format!("{name}.com"), &[("/", "Prefix", "web")])
    )
}

fn hosts(table: &RouteTable) -> Vec<String> {
    table.virtual_hosts().iter().map(|h| h.name.clone()).collect()
}

#[test]
fn ingress_classes_select_our_ingresses() {
    let yaml = service("web")
        + &class_yaml("ours", DEFAULT_CONTROLLER_NAME, false)
        + &class_yaml("theirs", "k8s.io/ingress-nginx", true)
        + &classed_ingress("by-class-object", Some("ours"), None)
        + &classed_ingress("by-option-class", Some("lb"), None)
        + &classed_ingress("by-annotation", None, Some("ours"))
        + &classed_ingress("other-class", Some("theirs"), None)
        + &classed_ingress("other-annotation", None, Some("nginx"))
        + &classed_ingress("unknown-class", Some("nope"), None)
        + &classed_ingress("class-decides", Some("theirs"), Some("lb"))
        + &classed_ingress("no-class", None, None);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(hosts(&table), ["by-annotation.com", "by-class-object.com", "by-option-class.com"]);
}

#[test]
fn ingresses_without_class_are_ours_when_our_class_is_the_default() {
    let yaml = service("web")
        + &class_yaml("ours", DEFAULT_CONTROLLER_NAME, true)
        + &classed_ingress("no-class", None, None)
        + &classed_ingress("other", Some("theirs"), None);
    let (table, _) = compile(&yaml);
    assert_eq!(hosts(&table), ["no-class.com"]);

    // With another controller, the class is not ours any more; the
    // configured class name is, without an IngressClass object.
    let options = L7Options { controller_name: "example.com/other".into(), ingress_class: "custom".into() };
    let yaml = yaml + &classed_ingress("custom", Some("custom"), None);
    let (table, _) = compile_l7(&snapshot(&yaml), &options);
    assert_eq!(hosts(&table), ["custom.com"]);
}

// Backends.

fn endpoints(backend: &Backend) -> Vec<SocketAddr> {
    match &backend.target {
        BackendTarget::Endpoints(endpoints) => endpoints.clone(),
        other => panic!("not endpoints: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const MULTI_PORT_SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 81, targetPort: admin-port}
  - {name: grpc, port: 82, targetPort: 9000, appProtocol: grpc}
  - {name: h2c, port: 83, targetPort: 9001, appProtocol: kubernetes.io/h2c}
  - {name: dns, port: 53, protocol: UDP}
";

fn backend_rule(host: &str, port: &str) -> String {
    format!(
        "  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        \
         backend: {{service: {{name: web, port: {port}}}}}\n"
    )
}

#[test]
fn backends_by_port_number_and_name_with_named_target_ports() {
    let endpoints_yaml = slice(
        "web-1",
        "web",
        "[{name: http, port: 8080}, {name: admin, port: 9090}, {name: grpc, port: 9000}]",
        &[("10.244.1.1", ""), ("10.244.1.2", "")],
    );
    let yaml = format!("{MULTI_PORT_SERVICE}{endpoints_yaml}")
        + &ingress(
            "web",
            "",
            &[
                backend_rule("number.com", "{number: 80}"),
                backend_rule("name.com", "{name: http}"),
                backend_rule("admin.com", "{name: admin}"),
                backend_rule("grpc.com", "{number: 82}"),
            ],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    let by_number = backend_for(&table, Some("number.com"), "/").unwrap();
    assert_eq!(endpoints(by_number), [addr("10.244.1.1:8080"), addr("10.244.1.2:8080")]);
    assert_eq!(by_number.protocol, UpstreamProtocol::Http1);
    assert_eq!(by_number.service.to_string(), "default/web:80");
    let by_name = backend_for(&table, Some("name.com"), "/").unwrap();
    assert_eq!(endpoints(by_name), endpoints(by_number));
    assert_eq!(by_name.service.to_string(), "default/web:http");
    let admin = backend_for(&table, Some("admin.com"), "/").unwrap();
    assert_eq!(endpoints(admin), [addr("10.244.1.1:9090"), addr("10.244.1.2:9090")]);
    let grpc = backend_for(&table, Some("grpc.com"), "/").unwrap();
    assert_eq!(grpc.protocol, UpstreamProtocol::H2c);
}

#[test]
fn app_protocol_h2c_and_grpc_speak_http2() {
    let yaml = MULTI_PORT_SERVICE.to_string()
        + &ingress(
            "web",
            "",
            &[
                backend_rule("grpc.com", "{name: grpc}"),
                backend_rule("h2c.com", "{number: 83}"),
                backend_rule("http.com", "{number: 80}"),
            ],
        );
    let (table, _) = compile(&yaml);
    let protocol = |host| backend_for(&table, Some(host), "/").unwrap().protocol;
    assert_eq!(protocol("grpc.com"), UpstreamProtocol::H2c);
    assert_eq!(protocol("h2c.com"), UpstreamProtocol::H2c);
    assert_eq!(protocol("http.com"), UpstreamProtocol::Http1);
}

#[test]
fn not_ready_endpoints_are_excluded() {
    let endpoints_yaml = slice(
        "web-1",
        "web",
        "[{name: http, port: 8080}]",
        &[
            ("10.244.1.1", ""),
            ("10.244.1.2", "\n  conditions: {ready: false}"),
            ("10.244.1.3", "\n  conditions: {ready: false, serving: true, terminating: true}"),
        ],
    );
    let yaml = service("web") + &endpoints_yaml + &ingress("web", "", &[rule("a.com", &[("/", "Prefix", "web")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert_eq!(endpoints(backend_for(&table, Some("a.com"), "/").unwrap()), [addr("10.244.1.1:8080")]);
}

#[test]
fn a_missing_service_or_port_routes_to_no_endpoint_with_a_diagnostic() {
    let yaml = MULTI_PORT_SERVICE.to_string()
        + &ingress(
            "web",
            "",
            &[
                rule("missing.com", &[("/", "Prefix", "nope"), ("/again", "Prefix", "nope")]),
                backend_rule("port.com", "{number: 8080}"),
                backend_rule("name.com", "{name: https}"),
                backend_rule("udp.com", "{number: 53}"),
            ],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        [
            "Ingress default/web: spec.rules[0].http.paths[0].backend.service.name: Service default/nope not found; \
             requests get 503",
            "Ingress default/web: spec.rules[0].http.paths[1].backend.service.name: Service default/nope not found; \
             requests get 503",
            "Ingress default/web: spec.rules[1].http.paths[0].backend.service.port.number: Service default/web has \
             no port 8080; requests get 503",
            "Ingress default/web: spec.rules[2].http.paths[0].backend.service.port.name: Service default/web has no \
             port named \"https\"; requests get 503",
            "Ingress default/web: spec.rules[3].http.paths[0].backend.service.port.number: port 53 of Service \
             default/web is UDP, not TCP; requests get 503",
        ]
    );
    for host in ["missing.com", "port.com", "name.com", "udp.com"] {
        let backend = backend_for(&table, Some(host), "/").unwrap();
        assert_eq!(endpoints(backend), [], "{host}");
    }
    assert_eq!(backend_for(&table, Some("missing.com"), "/").unwrap().service.to_string(), "default/nope:80");
}

#[test]
fn external_name_services_route_to_their_dns_name() {
    let yaml = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ExternalName
  externalName: backend.example.com
  ports:
  - {name: http, port: 8443, appProtocol: kubernetes.io/h2c}
"
    .to_string()
        + &ingress(
            "web",
            "",
            &[
                backend_rule("listed.com", "{number: 8443}"),
                backend_rule("by-name.com", "{name: http}"),
                backend_rule("unlisted.com", "{number: 80}"),
                backend_rule("unknown-name.com", "{name: nope}"),
            ],
        );
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/web: spec.rules[3].http.paths[0].backend.service.port.name: Service default/web has no \
             port named \"nope\"; requests get 503"]
    );
    let target = |host| backend_for(&table, Some(host), "/").unwrap().target.clone();
    let external = |port| BackendTarget::ExternalName { host: "backend.example.com".into(), port };
    assert_eq!(target("listed.com"), external(8443));
    assert_eq!(target("by-name.com"), external(8443));
    assert_eq!(target("unlisted.com"), external(80));
    assert_eq!(target("unknown-name.com"), BackendTarget::Endpoints(vec![]));
    assert_eq!(backend_for(&table, Some("listed.com"), "/").unwrap().protocol, UpstreamProtocol::H2c);
}

#[test]
fn resource_backends_and_backends_without_port_are_left_out() {
    let yaml = service("web")
        + &ingress(
            "web",
            "",
            &["  - host: a.com
    http:
      paths:
      - path: /resource
        pathType: Prefix
        backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}}
      - path: /no-port
        pathType: Prefix
        backend: {service: {name: web}}
      - path: /bad-port
        pathType: Prefix
        backend: {service: {name: web, port: {number: 70000}}}
"
            .to_string()],
        );
    let (table, diagnostics) = compile(&yaml);
    let field = "Ingress default/web: spec.rules[0].http.paths";
    assert_eq!(
        shown(&diagnostics),
        [
            format!("{field}[0].backend.resource: resource backends are not supported; ignored"),
            format!("{field}[1].backend.service.port: neither a port number nor a port name is set; ignored"),
            format!("{field}[2].backend.service.port.number: 70000 is not a port number (1-65535); ignored"),
        ]
    );
    assert!(table.virtual_host(Some(&HostPattern::parse("a.com").unwrap())).unwrap().is_empty());
}

// Conflicts and order.

fn created(yaml: &str, timestamp: &str) -> String {
    yaml.replacen("metadata: {name: ", &format!("metadata: {{creationTimestamp: \"{timestamp}\", name: "), 1)
}

#[test]
fn the_oldest_ingress_wins_a_conflict() {
    let yaml = services(&["old", "new", "exact"])
        + &created(
            &ingress("a-new", "", &[rule("a.com", &[("/x/", "Prefix", "new"), ("/x", "Exact", "exact")])]),
            "2024-06-01T00:00:00Z",
        )
        + &created(&ingress("z-old", "", &[rule("a.com", &[("/x", "Prefix", "old")])]), "2024-01-01T00:00:00Z");
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/a-new: spec.rules[0].http.paths[0].path: host a.com, path \"/x\" (Prefix) is already \
             routed by Ingress default/z-old; ignored"]
    );
    assert_eq!(service_for(&table, Some("a.com"), "/x/1"), svc("old"));
    assert_eq!(service_for(&table, Some("a.com"), "/x"), svc("exact"));
}

#[test]
fn without_timestamps_namespace_and_name_decide() {
    let yaml = services(&["first", "second"])
        + &ingress("b", "", &[rule("", &[("/", "Prefix", "second")])])
        + &ingress("a", "", &[rule("", &[("/", "Prefix", "first")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/b: spec.rules[0].http.paths[0].path: any host, path \"/\" (Prefix) is already routed by \
          Ingress default/a; ignored"]
    );
    assert_eq!(service_for(&table, None, "/"), svc("first"));
}

/// The table as text, to compare two compilations.
fn render(table: &RouteTable) -> Vec<String> {
    let mut lines = vec![format!("default {:?}", table.default_backend())];
    for host in table.virtual_hosts() {
        let certificate = table.certificates().resolve(host.name.trim_start_matches("*."));
        let certificate = certificate.map(|c| c.cert.clone());
        lines.push(format!("{} {} {:?} {certificate:?}", host.name, host.tls_redirect, host.fallback));
        lines.extend(host.routes().iter().map(|r| format!("  {r:?}")));
    }
    lines
}

#[test]
fn the_result_does_not_depend_on_the_input_order() {
    let pair = certificate(&["a.com"]);
    let yaml = services(&["a", "b", "fallback"])
        + &slice("a-1", "a", "[{name: http, port: 8080}]", &[("10.244.1.1", ""), ("10.244.1.2", "")])
        + &ingress("one", DEFAULT_BACKEND, &[rule("a.com", &[("/a", "Prefix", "a")])])
        + &ingress(
            "two",
            &tls_section(&["a.com"], "tls"),
            &[rule("a.com", &[("/a", "Prefix", "b"), ("/b", "Exact", "b")])],
        )
        + &ingress("three", "", &[rule("", &[("/", "Prefix", "b")])]);
    let mut forward = snapshot(&yaml);
    forward.secrets.insert(Arc::new(tls_secret("tls", &pair.0, &pair.1)));
    // A snapshot keeps each kind in canonical order, whatever order its
    // objects came in.
    let mut backward = forward.clone();
    backward.ingresses = forward.ingresses.iter().rev().cloned().collect();
    backward.endpoint_slices = forward.endpoint_slices.iter().rev().cloned().collect();
    let (a, diagnostics_a) = compile_l7(&forward, &L7Options::default());
    let (b, diagnostics_b) = compile_l7(&backward, &L7Options::default());
    assert_eq!(render(&a), render(&b));
    assert_eq!(diagnostics_a, diagnostics_b);
    assert_eq!(diagnostics_a.len(), 1);
}

// TLS.

/// A self-signed certificate for `names` and its key, both PEM.
fn certificate(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn tls_secret(name: &str, certificate: &str, key: &str) -> Secret {
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(certificate.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    secret.metadata.namespace = Some("default".into());
    secret.metadata.name = Some(name.into());
    secret
}

fn tls_section(hosts: &[&str], secret: &str) -> String {
    format!("  tls:\n  - hosts: {hosts:?}\n    secretName: {secret}\n")
}

/// Compiles `yaml` with the Secrets added.
fn compile_with_secrets(yaml: &str, secrets: Vec<Secret>) -> (RouteTable, Vec<Diagnostic>) {
    let mut snapshot = snapshot(yaml);
    snapshot.secrets.extend(secrets.into_iter().map(Arc::new));
    compile_l7(&snapshot, &L7Options::default())
}

fn redirected(table: &RouteTable) -> Vec<String> {
    table.virtual_hosts().iter().filter(|h| h.tls_redirect).map(|h| h.name.clone()).collect()
}

#[test]
fn a_tls_secret_serves_its_hosts_and_redirects_them() {
    let (cert, key) = certificate(&["a.com", "b.com"]);
    let yaml = services(&["web"])
        + &ingress(
            "web",
            &tls_section(&["a.com"], "tls"),
            &[rule("a.com", &[("/", "Prefix", "web")]), rule("b.com", &[("/", "Prefix", "web")])],
        );
    let (table, diagnostics) = compile_with_secrets(&yaml, vec![tls_secret("tls", &cert, &key)]);
    assert_eq!(diagnostics, []);
    let served = table.certificates().resolve("a.com").unwrap();
    assert_eq!(served.cert[0].as_ref(), CertificateDer::from_pem_slice(cert.as_bytes()).unwrap().as_ref());
    assert!(table.certificates().resolve("b.com").is_none());
    assert_eq!(redirected(&table), ["a.com"]);
}

#[test]
fn each_host_served_with_a_certificate_is_reported_with_its_expiry() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.com".to_string(), "*.b.com".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2051, 3, 4);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x30, 0x39]));
    let cert = params.self_signed(&key).unwrap().pem();
    let yaml = services(&["web"])
        + &ingress(
            "web",
            &tls_section(&["a.com", "*.b.com"], "tls"),
            &[rule("a.com", &[("/", "Prefix", "web")]), rule("c.com", &[("/", "Prefix", "web")])],
        );
    let mut snapshot = snapshot(&yaml);
    snapshot.secrets.insert(Arc::new(tls_secret("tls", &cert, &key.serialize_pem())));
    let compiled = compile_l7_tracked(&snapshot, &L7Options::default(), &mut PathRegexes::new());
    assert_eq!(compiled.diagnostics, []);
    let expires = "2051-03-04T00:00:00Z".parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_second();
    let secret = ObjectName { namespace: "default".into(), name: "tls".into() };
    let reported = |host: &str| HostCertificate {
        host: host.into(),
        secret: secret.clone(),
        expires,
        identifier: "-12345".into(),
    };
    assert_eq!(compiled.certificates, [reported("*.b.com"), reported("a.com")], "c.com has no certificate");
}

#[test]
fn tls_without_hosts_uses_the_rule_hosts() {
    let (cert, key) = certificate(&["a.com", "b.com"]);
    let yaml = services(&["web"])
        + &ingress(
            "web",
            "  tls:\n  - secretName: tls\n",
            &[
                rule("a.com", &[("/", "Prefix", "web")]),
                rule("b.com", &[("/", "Prefix", "web")]),
                rule("", &[("/", "Prefix", "web")]),
            ],
        );
    let (table, diagnostics) = compile_with_secrets(&yaml, vec![tls_secret("tls", &cert, &key)]);
    assert_eq!(diagnostics, []);
    assert!(table.certificates().resolve("a.com").is_some());
    assert!(table.certificates().resolve("b.com").is_some());
    assert_eq!(redirected(&table), ["a.com", "b.com"]);
}

#[test]
fn a_wildcard_certificate_serves_one_label() {
    let (cert, key) = certificate(&["*.foo.com"]);
    let yaml = services(&["web"])
        + &ingress(
            "web",
            &tls_section(&["*.foo.com"], "tls"),
            &[rule("a.foo.com", &[("/", "Prefix", "web")]), rule("*.foo.com", &[("/", "Prefix", "web")])],
        );
    let (table, diagnostics) = compile_with_secrets(&yaml, vec![tls_secret("tls", &cert, &key)]);
    assert_eq!(diagnostics, []);
    assert!(table.certificates().resolve("a.foo.com").is_some());
    assert!(table.certificates().resolve("b.foo.com").is_some());
    assert!(table.certificates().resolve("foo.com").is_none());
    assert!(table.certificates().resolve("x.a.foo.com").is_none());
    assert_eq!(redirected(&table), ["*.foo.com", "a.foo.com"]);
}

#[test]
fn a_missing_secret_is_diagnosed_on_the_ingress() {
    let yaml = services(&["web"])
        + &ingress("web", &tls_section(&["a.com"], "nope"), &[rule("a.com", &[("/", "Prefix", "web")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/web: spec.tls[0].secretName: Secret default/nope not found; the hosts of this TLS \
             section get the default certificate"]
    );
    assert!(table.certificates().is_empty());
    assert_eq!(redirected(&table), [] as [String; 0]);
    assert_eq!(service_for(&table, Some("a.com"), "/"), svc("web"));
}

#[test]
fn bad_secrets_are_diagnosed_on_the_secret_once() {
    let (cert, key) = certificate(&["a.com"]);
    let (_, other_key) = certificate(&["a.com"]);
    let secrets = vec![
        tls_secret("garbage", "not pem", &key),
        tls_secret("truncated", &cert[..cert.len() - 30], &key),
        tls_secret("no-key", &cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        tls_secret("mismatch", &cert, &other_key),
        tls_secret("bad-der", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &key),
        {
            let mut empty = tls_secret("empty", "", "");
            empty.data = None;
            empty
        },
    ];
    let names = ["garbage", "truncated", "no-key", "mismatch", "bad-der", "empty"];
    let mut yaml = services(&["web"]);
    for name in names {
        let host = format!("{name}.com");
        yaml += &ingress(name, &tls_section(&[&host], name), &[rule(&host, &[("/", "Prefix", "web")])]);
    }
    // A second Ingress naming the same bad Secret: diagnosed once.
    yaml += &ingress("zz-again", &tls_section(&["again.com"], "mismatch"), &[]);
    let (table, diagnostics) = compile_with_secrets(&yaml, secrets);
    assert_eq!(
        shown(&diagnostics),
        [
            "Secret default/bad-der: data.tls.crt: the first certificate is not valid X.509 (invalid peer certificate: \
             BadEncoding); the Secret is not used",
            "Secret default/empty: data.tls.crt: missing; the Secret is not used",
            "Secret default/empty: data.tls.key: missing; the Secret is not used",
            "Secret default/garbage: data.tls.crt: no CERTIFICATE PEM section found; the Secret is not used",
            "Secret default/mismatch: data.tls.key: the private key does not belong to the first certificate of \
             tls.crt; the Secret is not used",
            "Secret default/no-key: data.tls.key: no PRIVATE KEY (PKCS#8, PKCS#1 or SEC1) PEM section found; the \
             Secret is not used",
            "Secret default/truncated: data.tls.crt: a PEM section has no END line; the Secret is not used",
        ]
    );
    assert!(table.certificates().is_empty());
    assert_eq!(redirected(&table), [] as [String; 0]);
    // The routes are compiled all the same.
    assert_eq!(service_for(&table, Some("mismatch.com"), "/"), svc("web"));
}

#[test]
fn an_expired_certificate_is_served_with_a_warning() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.com".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap().pem();
    let yaml = services(&["web"])
        + &ingress("web", &tls_section(&["a.com"], "old"), &[rule("a.com", &[("/", "Prefix", "web")])]);
    let (table, diagnostics) = compile_with_secrets(&yaml, vec![tls_secret("old", &cert, &key.serialize_pem())]);
    assert_eq!(
        shown(&diagnostics),
        ["Secret default/old: data.tls.crt: the certificate expired at 2001-01-01T00:00:00Z; it is still served"]
    );
    assert!(table.certificates().resolve("a.com").is_some());
}

#[test]
fn string_data_is_read() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.com".to_string()]).unwrap().self_signed(&key).unwrap().pem();
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let secret = format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: tls}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&cert),
        indent(&key.serialize_pem())
    );
    let yaml = services(&["web"])
        + &secret
        + &ingress("web", &tls_section(&["a.com"], "tls"), &[rule("a.com", &[("/", "Prefix", "web")])]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(diagnostics, []);
    assert!(table.certificates().resolve("a.com").is_some());
}

#[test]
fn the_first_certificate_for_a_host_wins() {
    let (cert_a, key_a) = certificate(&["a.com"]);
    let (cert_b, key_b) = certificate(&["a.com"]);
    let yaml = services(&["web"])
        + &ingress("one", &tls_section(&["a.com"], "first"), &[rule("a.com", &[("/", "Prefix", "web")])])
        + &ingress("two", &tls_section(&["a.com"], "second"), &[])
        + &ingress("three", &tls_section(&["a.com"], "first"), &[]);
    let secrets = vec![tls_secret("first", &cert_a, &key_a), tls_secret("second", &cert_b, &key_b)];
    let (table, diagnostics) = compile_with_secrets(&yaml, secrets);
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/two: spec.tls[0].secretName: host a.com already has the certificate of Secret \
             default/first (Ingress default/one); Secret default/second is not used for it"]
    );
    let served = table.certificates().resolve("a.com").unwrap();
    assert_eq!(served.cert[0].as_ref(), CertificateDer::from_pem_slice(cert_a.as_bytes()).unwrap().as_ref());
}

// The users' manifests.

fn seed(file: &str) -> String {
    let path = format!("{}/../../shared/seed-examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const NGINX_CLASS: &str = "
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}
spec:
  controller: lb.dev/ingress-controller
";

#[test]
fn seed_host_and_path_routing() {
    let (table, diagnostics) = compile(&(seed("ingress-hosts.yaml") + NGINX_CLASS));
    assert_eq!(diagnostics, []);
    let nginx1 = svc("nginx1-service-clusterip");
    let nginx2 = svc("nginx2-service-clusterip");
    assert_eq!(service_for(&table, Some("a.com"), "/a"), nginx1);
    assert_eq!(service_for(&table, Some("a.com"), "/a/x"), nginx1);
    assert_eq!(service_for(&table, Some("a.com"), "/b"), nginx2);
    assert_eq!(service_for(&table, Some("a.com"), "/"), nginx1);
    assert_eq!(service_for(&table, Some("a.com"), "/ab"), nginx1);
    assert_eq!(service_for(&table, Some("b.com"), "/x"), nginx2);
    assert_eq!(service_for(&table, Some("c.com"), "/"), None);
    assert_eq!(service_for(&table, None, "/"), None);
}

#[test]
fn seed_virtual_hosts_and_external_name() {
    let yaml = seed("ingress-virtual-hosts.yaml") + NGINX_CLASS + "\n---\n" + &seed("ingress-externalname.yaml");
    let (table, diagnostics) = compile(&yaml);
    // The virtual-host example names Services the user did not include.
    assert_eq!(diagnostics.len(), 2, "{:?}", shown(&diagnostics));
    assert_eq!(service_for(&table, Some("foo.bar.com"), "/"), svc("service1"));
    assert_eq!(service_for(&table, Some("bar.foo.com"), "/"), svc("service2"));
    // `use-regex` and `rewrite-target: /$2`: a regex path, rewritten.
    let chat = backend_for(&table, Some("myproject.project.io"), "/chatforyouio/user/create").unwrap();
    let route = table.select(Some("myproject.project.io"), "/ChatForYouIO/user/create").route.unwrap();
    assert_eq!(route.upstream_path("/ChatForYouIO/user/create", "/ChatForYouIO/user/create"), "/user/create");
    assert_eq!(
        table.virtual_host(HostPattern::parse("myproject.project.io").as_ref()).unwrap().app_root.as_deref(),
        Some("/")
    );
    assert_eq!(
        chat.target,
        BackendTarget::ExternalName {
            host: "chatforyou-io-service.chatforyou-io.svc.cluster.local".into(),
            port: 8443
        }
    );
}

#[test]
fn seed_tls_with_a_generated_certificate() {
    let yaml = seed("ingress-tls.yaml").replace("REPLACE_WITH_BASE64_CERT", "").replace("REPLACE_WITH_BASE64_KEY", "");
    let (cert, key) = certificate(&["https-example.foo.com"]);
    let mut snapshot = snapshot(&(yaml + NGINX_CLASS));
    let generated = tls_secret("testsecret-tls", &cert, &key);
    let mut secret = (**snapshot.secrets.iter().next().expect("the seed's Secret")).clone();
    secret.data = generated.data;
    snapshot.secrets.insert(Arc::new(secret));
    let (table, diagnostics) = compile_l7(&snapshot, &L7Options::default());
    assert_eq!(
        shown(&diagnostics),
        ["Ingress default/tls-example-ingress: spec.rules[0].http.paths[0].backend.service.name: Service \
             default/service1 not found; requests get 503"]
    );
    assert!(table.certificates().resolve("https-example.foo.com").is_some());
    assert_eq!(redirected(&table), ["https-example.foo.com"]);
}

#[test]
fn seed_regex_order_decides_between_overlapping_paths() {
    let services =
        services(&["auth", "booking", "payment", "review", "tour", "client"]).replace("port: 80,", "port: 3000,");
    let (table, diagnostics) = compile(&(seed("ingress-regex-order.yaml") + NGINX_CLASS + &services));
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    let host = Some("tour.xyz");
    assert_eq!(service_for(&table, host, "/api/v1/tours/123/bookings"), svc("booking"));
    assert_eq!(service_for(&table, host, "/api/v1/tours/123/reviews"), svc("review"));
    assert_eq!(service_for(&table, host, "/api/v1/tours/123"), svc("tour"));
    assert_eq!(service_for(&table, host, "/API/V1/TOURS/1"), svc("tour"));
    assert_eq!(service_for(&table, host, "/api/v1/auth/login"), svc("auth"));
    assert_eq!(service_for(&table, host, "/api/v1/admin/users/7"), svc("auth"));
    assert_eq!(service_for(&table, host, "/anything/else"), svc("client"));
}

/// ingress-nginx annotations without their prefix: (name, value).
type Annotations<'a> = [(&'a str, &'a str)];

/// An Ingress for `host` with one path to `web`, and annotations.
fn annotated(name: &str, host: &str, path: &str, path_type: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: Vec<String> =
        annotations.iter().map(|(k, v)| format!("nginx.ingress.kubernetes.io/{k}: {}", serde_json::json!(v))).collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{}}}}}\n\
         spec: {{ingressClassName: lb, rules: [{{host: {host}, http: {{paths: [{{path: {}, pathType: {path_type}, \
         backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}}}]}}\n",
        annotations.join(", "),
        serde_json::json!(path),
    )
}

#[test]
fn use_regex_makes_every_path_of_the_host_a_regex() {
    let yaml = service("web")
        + &annotated("plain", "a.com", "/literal", "Prefix", &[])
        + &annotated("regex", "a.com", "/r/[0-9]+", "ImplementationSpecific", &[("use-regex", "true")])
        + &annotated("other", "b.com", "/literal", "Prefix", &[]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    assert_eq!(service_for(&table, Some("a.com"), "/r/12"), svc("web"));
    assert_eq!(service_for(&table, Some("a.com"), "/r/x"), None);
    // The plain Ingress's path is a case-insensitive regex now: it matches
    // `/LITERALLY` (a prefix of the string, not of path elements).
    assert_eq!(service_for(&table, Some("a.com"), "/LITERALLY"), svc("web"));
    // Another host keeps Ingress path semantics.
    assert_eq!(service_for(&table, Some("b.com"), "/literally"), None);
    assert_eq!(service_for(&table, Some("b.com"), "/literal/x"), svc("web"));
}

#[test]
fn a_bad_annotation_rejects_only_its_ingress() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("use-regex", "yes")], "use-regex]: \"yes\" is not a boolean"),
        (&[("rewrite-target", "/a\nb")], "rewrite-target]: contains '\\n'"),
        (&[("rewrite-target", "/$10")], "rewrite-target]: `$` must be followed by one digit"),
        (&[("app-root", "no-slash")], "app-root]: \"no-slash\" is not a path"),
        (&[("app-root", "/a/../b")], "app-root]: contains a . or .. segment"),
        (&[("http-redirect-code", "200")], "http-redirect-code]: \"200\" is not one of the status codes"),
        (
            &[("permanent-redirect", "javascript:alert(1)")],
            "permanent-redirect]: \"javascript:alert(1)\" is not an absolute",
        ),
        (&[("temporal-redirect", "https://a.com/x y")], "temporal-redirect]: contains ' '"),
    ];
    for (annotations, expected) in cases {
        let yaml = service("web")
            + &annotated("bad", "bad.com", "/", "Prefix", annotations)
            + &annotated("good", "good.com", "/", "Prefix", &[]);
        let (table, diagnostics) = compile(&yaml);
        let shown = shown(&diagnostics);
        assert_eq!(shown.len(), 1, "{annotations:?}: {shown:?}");
        assert!(
            shown[0].starts_with("Ingress default/bad: metadata.annotations[nginx.ingress.kubernetes.io/"),
            "{shown:?}"
        );
        assert!(shown[0].contains(expected), "{annotations:?}: {shown:?}");
        assert!(shown[0].ends_with("the Ingress is not served"), "{shown:?}");
        assert_eq!(service_for(&table, Some("bad.com"), "/"), None, "{annotations:?}");
        assert_eq!(service_for(&table, Some("good.com"), "/"), svc("web"), "{annotations:?}");
    }
}

#[test]
fn bad_and_huge_regexes_and_values_reject_the_ingress() {
    let huge = "x".repeat(1 << 20);
    let regex = [("use-regex", "true")];
    let rewrite = [("rewrite-target", huge.as_str())];
    let cases: [(&str, &Annotations, &str); 3] = [
        ("/a(", &regex, "not a valid regex"),
        ("/(a{1000}){1000}", &regex, "too complex"),
        ("/ok", &rewrite, "bytes long (at most 4096)"),
    ];
    for (path, annotations, expected) in cases {
        let yaml = service("web") + &annotated("bad", "bad.com", path, "ImplementationSpecific", annotations);
        let (table, diagnostics) = compile(&yaml);
        let shown = shown(&diagnostics);
        assert!(shown.len() == 1 && shown[0].contains(expected), "{path}: {shown:?}");
        assert_eq!(service_for(&table, Some("bad.com"), "/ok"), None);
    }
}

#[test]
fn unknown_annotations_are_ignored() {
    let yaml = service("web")
        + &annotated("snippet", "a.com", "/", "Prefix", &[("configuration-snippet", "more_set_headers \"x: y\";")]);
    let (table, diagnostics) = compile(&yaml);
    assert_eq!(shown(&diagnostics), Vec::<String>::new());
    assert_eq!(service_for(&table, Some("a.com"), "/"), svc("web"));
}

/// Whether the table compiled from `old` depends on what changed in `new`.
fn affected(old: &str, new: &str) -> bool {
    let (old, new) = (snapshot(old), snapshot(new));
    let compiled = compile_l7_tracked(&old, &L7Options::default(), &mut PathRegexes::new());
    compiled.dependencies.affected_by(&new.changes_since(&old), &old, &new)
}

#[test]
fn routes_depend_on_ingresses_secrets_and_the_services_they_name() {
    let web = ingress("web", "", &[rule("a.example", &[("/", "Prefix", "web"), ("/m", "Prefix", "missing")])]);
    let web_pods = slice("web-1", "web", "[{name: http, port: 8080}]", &[("10.244.1.1", "")]);
    let other = format!("{}{}", service("other"), slice("other-1", "other", "[{port: 8080}]", &[("10.244.1.9", "")]));
    let base = format!("{web}{}{web_pods}{other}", service("web"));
    let compiled = compile_l7_tracked(&snapshot(&base), &L7Options::default(), &mut PathRegexes::new());
    let names: Vec<String> = compiled.dependencies.services.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    assert_eq!(names, ["default/missing", "default/web"], "found or not, both are named");

    assert!(!affected(&base, &base));
    // Another Service and its endpoints are not the routes' business.
    let other_moved = other.replace("10.244.1.9", "10.244.1.10");
    assert!(!affected(&base, &base.replace(&other, &other_moved)));
    assert!(!affected(&base, &base.replace(&other, "")));
    // The named Services and their endpoints are, and so is a Service
    // that appears under a name an Ingress already uses.
    assert!(affected(&base, &base.replace("10.244.1.1", "10.244.1.2")));
    assert!(affected(&base, &format!("{base}{}", service("missing"))));
    assert!(affected(&base, &base.replace("targetPort: 8080", "targetPort: 8081")));
    // A slice relabelled to a named Service, or away from one.
    let relabelled = other.replace("kubernetes.io/service-name: other", "kubernetes.io/service-name: web");
    assert!(affected(&base, &base.replace(&other, &relabelled)));
    assert!(affected(&base.replace(&other, &relabelled), &base));
    // Any Ingress, IngressClass or Secret.
    assert!(affected(&base, &format!("{base}{}", ingress("more", "", &[rule("b.example", &[("/", "Prefix", "x")])]))));
    assert!(affected(&base, &format!("{base}{}", class_yaml("other", "example.com/other", false))));
    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n";
    assert!(affected(&base, &format!("{base}{secret}")));
}

#[test]
fn path_regexes_are_compiled_once_per_pattern_and_kept_for_the_next_compile() {
    let regex_ingress = |name: &str, host: &str, extra_path: &str| {
        let mut paths = vec![("/api/v[0-9]+/items", "ImplementationSpecific", "web"), ("/app", "Prefix", "web")];
        if !extra_path.is_empty() {
            paths.push((extra_path, "Prefix", "web"));
        }
        ingress(name, "", &[rule(host, &paths)])
            .replace("metadata: {", "metadata: {annotations: {nginx.ingress.kubernetes.io/use-regex: \"true\"}, ")
    };
    let yaml = |extra: &str| {
        service("web")
            + &regex_ingress("a", "a.example", "")
            + &regex_ingress("b", "b.example", "")
            + &regex_ingress("c", "c.example", extra)
    };
    let mut regexes = PathRegexes::new();
    let first = compile_l7_tracked(&snapshot(&yaml("")), &L7Options::default(), &mut regexes);
    assert_eq!(shown(&first.diagnostics), Vec::<String>::new());
    assert_eq!(regexes.compiled(), 2, "three hosts, two patterns");
    let regex_of = |table: &RouteTable, host: &str| {
        backend_for(table, Some(host), "/api/v2/items").expect("routed");
        table.select(Some(host), "/api/v2/items").route.and_then(|r| r.regex.clone()).expect("a regex route")
    };
    assert!(regex_of(&first.table, "a.example").same_compiled(&regex_of(&first.table, "c.example")));

    let changed = snapshot(&yaml("/new"));
    let second = compile_l7_tracked(&changed, &L7Options::default(), &mut regexes);
    assert_eq!(regexes.compiled(), 1, "only the new pattern");
    assert!(regex_of(&first.table, "b.example").same_compiled(&regex_of(&second.table, "b.example")));
    assert_eq!(render(&second.table), render(&compile_l7(&changed, &L7Options::default()).0));
}
