use super::*;
use crate::path::PathType::{Exact, ImplementationSpecific, Prefix};
use crate::path::{PathType, normalize_path};
use crate::tls::tests::certified_key;

fn backend(service: &str) -> Arc<Backend> {
    Arc::new(Backend {
        service: ServicePortRef {
            service: ObjectName { namespace: "default".into(), name: service.into() },
            port: "80".into(),
        },
        target: BackendTarget::Endpoints(vec![]),
        protocol: UpstreamProtocol::Http1,
    })
}

fn route(path: &str, path_type: PathType, service: &str) -> Route {
    Route::new(ObjectName { namespace: "default".into(), name: "ing".into() }, path.into(), path_type, backend(service))
}

fn host(name: &str) -> HostPattern {
    HostPattern::parse(name).unwrap()
}

/// A table from `(host, path, type, service)`; `""` is no host.
fn table(routes: &[(&str, &str, PathType, &str)]) -> RouteTable {
    let mut builder = RouteTableBuilder::new();
    for &(h, path, path_type, service) in routes {
        let pattern = (!h.is_empty()).then(|| host(h));
        builder.add_route(pattern.as_ref(), route(path, path_type, service)).unwrap();
    }
    builder.build()
}

/// The service a request goes to (`None`: 404), normalising like the proxy.
fn service(table: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
    let host = host.map(|h| crate::host::normalize_host(h).unwrap());
    let path = normalize_path(path).unwrap();
    table.select(host.as_deref(), &path).backend.map(|b| b.service.service.name.clone())
}

fn svc(name: &str) -> Option<String> {
    Some(name.into())
}

#[test]
fn exact_matches_the_whole_path_case_sensitively() {
    let t = table(&[("", "/foo", Exact, "a")]);
    assert_eq!(service(&t, None, "/foo"), svc("a"));
    assert_eq!(service(&t, None, "/foo/"), None);
    assert_eq!(service(&t, None, "/FOO"), None);
    assert_eq!(service(&t, None, "/foo/bar"), None);
    assert_eq!(service(&t, None, "/%66oo"), svc("a"));
}

#[test]
fn prefix_matches_element_by_element() {
    let t = table(&[("", "/foo", Prefix, "a")]);
    for path in ["/foo", "/foo/", "/foo/bar", "/foo//bar", "/bar/../foo/x"] {
        assert_eq!(service(&t, None, path), svc("a"), "{path}");
    }
    for path in ["/foobar", "/fo", "/", "/Foo", "/foo%2Fbar", "/bar/foo"] {
        assert_eq!(service(&t, None, path), None, "{path}");
    }
}

#[test]
fn prefix_rule_trailing_slash_is_ignored() {
    let t = table(&[("", "/foo/", Prefix, "a")]);
    for path in ["/foo", "/foo/", "/foo/bar"] {
        assert_eq!(service(&t, None, path), svc("a"), "{path}");
    }
    assert_eq!(service(&t, None, "/foobar"), None);
    let mut builder = RouteTableBuilder::new();
    builder.add_route(None, route("/foo", Prefix, "a")).unwrap();
    let existing = builder.add_route(None, route("/foo/", Prefix, "b")).unwrap_err();
    assert_eq!(existing.path, "/foo");
}

#[test]
fn root_prefix_matches_everything() {
    let t = table(&[("", "/", Prefix, "root")]);
    for path in ["/", "/x", "/x/y/", "//"] {
        assert_eq!(service(&t, None, path), svc("root"), "{path}");
    }
}

#[test]
fn implementation_specific_is_matched_as_prefix() {
    let t = table(&[("", "/api", ImplementationSpecific, "a")]);
    assert_eq!(service(&t, None, "/api/v1"), svc("a"));
    assert_eq!(service(&t, None, "/apiv1"), None);
}

#[test]
fn longest_path_wins() {
    let t = table(&[
        ("", "/", Prefix, "root"),
        ("", "/a", Prefix, "a"),
        ("", "/a/b", Prefix, "ab"),
        ("", "/a/b/c", Exact, "abc-exact"),
    ]);
    assert_eq!(service(&t, None, "/x"), svc("root"));
    assert_eq!(service(&t, None, "/a"), svc("a"));
    assert_eq!(service(&t, None, "/a/x"), svc("a"));
    assert_eq!(service(&t, None, "/a/b"), svc("ab"));
    assert_eq!(service(&t, None, "/a/b/c"), svc("abc-exact"));
    assert_eq!(service(&t, None, "/a/b/c/d"), svc("ab"));
    assert_eq!(service(&t, None, "/a/bc"), svc("a"));
}

#[test]
fn exact_beats_prefix_on_the_same_path() {
    let t = table(&[("", "/foo", Prefix, "prefix"), ("", "/foo", Exact, "exact")]);
    assert_eq!(service(&t, None, "/foo"), svc("exact"));
    assert_eq!(service(&t, None, "/foo/"), svc("prefix"));
    assert_eq!(service(&t, None, "/foo/x"), svc("prefix"));
    // The insertion order does not matter.
    let t = table(&[("", "/foo", Exact, "exact"), ("", "/foo", Prefix, "prefix")]);
    assert_eq!(service(&t, None, "/foo"), svc("exact"));
}

#[test]
fn prefix_beats_implementation_specific_on_the_same_path() {
    let t = table(&[("", "/foo", ImplementationSpecific, "is"), ("", "/foo", Prefix, "prefix")]);
    assert_eq!(service(&t, None, "/foo/x"), svc("prefix"));
}

#[test]
fn hosts_exact_then_wildcard_then_hostless() {
    let t =
        table(&[("a.foo.com", "/", Prefix, "exact"), ("*.foo.com", "/", Prefix, "wildcard"), ("", "/", Prefix, "any")]);
    assert_eq!(service(&t, Some("a.foo.com"), "/"), svc("exact"));
    assert_eq!(service(&t, Some("A.Foo.Com:8443"), "/"), svc("exact"));
    assert_eq!(service(&t, Some("b.foo.com"), "/"), svc("wildcard"));
    assert_eq!(service(&t, Some("foo.com"), "/"), svc("any"));
    assert_eq!(service(&t, Some("x.b.foo.com"), "/"), svc("any"));
    assert_eq!(service(&t, Some("other.com"), "/"), svc("any"));
    assert_eq!(service(&t, None, "/"), svc("any"));
    let selected = t.select(Some("b.foo.com"), "/");
    assert_eq!(selected.host.map(|h| h.name.as_str()), Some("*.foo.com"));
    assert_eq!(selected.route.map(|r| r.path.as_str()), Some("/"));
}

#[test]
fn a_host_never_falls_back_to_the_hostless_rules() {
    let t = table(&[("a.com", "/a", Prefix, "a"), ("", "/", Prefix, "any")]);
    assert_eq!(service(&t, Some("a.com"), "/a"), svc("a"));
    assert_eq!(service(&t, Some("a.com"), "/b"), None);
    let selected = t.select(Some("a.com"), "/b");
    assert_eq!(selected.host.map(|h| h.name.as_str()), Some("a.com"));
    assert!(selected.route.is_none());
    assert_eq!(service(&t, Some("b.com"), "/b"), svc("any"));
}

#[test]
fn fallback_then_default_backend() {
    let mut builder = RouteTableBuilder::new();
    let a = host("a.com");
    builder.add_route(Some(&a), route("/a", Prefix, "a")).unwrap();
    builder.add_route(Some(&host("b.com")), route("/b", Prefix, "b")).unwrap();
    assert!(builder.set_fallback(Some(&a), backend("a-fallback")));
    assert!(!builder.set_fallback(Some(&a), backend("a-other")));
    assert!(builder.set_default_backend(backend("default")));
    assert!(!builder.set_default_backend(backend("other")));
    let t = builder.build();
    assert_eq!(service(&t, Some("a.com"), "/x"), svc("a-fallback"));
    assert_eq!(service(&t, Some("b.com"), "/x"), svc("default"));
    let selected = t.select(Some("c.com"), "/x");
    assert!(selected.host.is_none() && selected.route.is_none());
    assert_eq!(selected.backend.map(|b| b.service.service.name.as_str()), Some("default"));
    assert_eq!(t.default_backend().map(|b| b.service.service.name.as_str()), Some("default"));
}

#[test]
fn no_match_without_default_backend_is_none() {
    let t = RouteTable::empty();
    let selected = t.select(Some("a.com"), "/");
    assert!(selected.host.is_none() && selected.route.is_none() && selected.backend.is_none());
    assert!(t.virtual_hosts().is_empty());
    assert!(t.certificates().is_empty());
}

#[test]
fn declared_host_without_paths_is_its_own_server() {
    let mut builder = RouteTableBuilder::new();
    builder.add_host(Some(&host("a.com")));
    builder.add_route(None, route("/", Prefix, "any")).unwrap();
    let t = builder.build();
    assert_eq!(service(&t, Some("a.com"), "/"), None);
    assert!(t.virtual_host(Some(&host("a.com"))).is_some_and(VirtualHost::is_empty));
}

#[test]
fn duplicate_routes_keep_the_first() {
    let mut builder = RouteTableBuilder::new();
    let a = host("a.com");
    builder.add_route(Some(&a), route("/x", Prefix, "first")).unwrap();
    let existing = builder.add_route(Some(&a), route("/x", Prefix, "second")).unwrap_err();
    assert_eq!(existing.backend.service.service.name, "first");
    // The same path after normalisation.
    assert!(builder.add_route(Some(&a), route("/%78", Prefix, "third")).is_err());
    builder.add_route(Some(&a), route("/x", Exact, "exact")).unwrap();
    assert!(builder.add_route(Some(&a), route("/x", Exact, "exact2")).is_err());
    builder.add_route(Some(&a), route("/x", ImplementationSpecific, "is")).unwrap();
    builder.add_route(Some(&host("b.com")), route("/x", Prefix, "other-host")).unwrap();
    builder.add_route(None, route("/x", Prefix, "no-host")).unwrap();
    let t = builder.build();
    assert_eq!(service(&t, Some("a.com"), "/x/y"), svc("first"));
    let routes: Vec<_> = t
        .virtual_host(Some(&a))
        .unwrap()
        .routes()
        .iter()
        .map(|r| (r.path.clone(), r.path_type, r.backend.service.service.name.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            ("/x".into(), Exact, "exact".into()),
            ("/x".into(), Prefix, "first".into()),
            ("/x".into(), ImplementationSpecific, "is".into())
        ]
    );
    let names: Vec<_> = t.virtual_hosts().iter().map(|h| h.name.clone()).collect();
    assert_eq!(names, ["", "a.com", "b.com"]);
}

#[test]
fn tls_redirect_marks_hosts_and_the_exact_hosts_a_wildcard_covers() {
    let mut builder = RouteTableBuilder::new();
    for name in ["a.com", "b.com", "x.foo.com", "*.foo.com", "y.bar.com"] {
        builder.add_route(Some(&host(name)), route("/", Prefix, name)).unwrap();
    }
    builder.add_route(None, route("/", Prefix, "any")).unwrap();
    builder.set_tls_redirect(&host("a.com"));
    builder.set_tls_redirect(&host("*.foo.com"));
    builder.set_tls_redirect(&host("no-rules.com"));
    assert!(builder.add_certificate(&host("a.com"), certified_key("a")));
    assert!(!builder.add_certificate(&host("a.com"), certified_key("again")));
    let t = builder.build();
    let redirected: Vec<_> = t.virtual_hosts().iter().filter(|h| h.tls_redirect).map(|h| h.name.clone()).collect();
    assert_eq!(redirected, ["*.foo.com", "a.com", "x.foo.com"]);
    assert!(t.virtual_host(Some(&host("no-rules.com"))).is_none());
    assert_eq!(t.certificates().resolve("a.com").unwrap().cert[0].as_ref(), b"a");
}

#[test]
fn route_table_is_shareable() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<RouteTable>();
    let t = table(&[("a.com", "/", Prefix, "a")]);
    let copy = t.clone();
    assert_eq!(service(&copy, Some("a.com"), "/"), svc("a"));
}

#[test]
fn routes_are_labelled_with_their_host_and_canary() {
    let mut builder = RouteTableBuilder::new();
    builder.add_route(Some(&host("*.a.com")), route("/api", Prefix, "web")).unwrap();
    let rule = crate::CanaryRule { by_header: None, by_cookie: None, weight: 10, weight_total: 100 };
    let canary = Arc::new(crate::Canary {
        ingress: ObjectName { namespace: "default".into(), name: "ing-canary".into() },
        backend: backend("web-v2"),
        rule,
    });
    builder.set_canary(Some(&host("*.a.com")), "/api", Prefix, canary).unwrap();
    let t = builder.build();
    let selected = t.select(Some("x.a.com"), "/api/v1");
    let route = selected.route.unwrap();
    let labels = &route.labels;
    let values = [&labels.host, &labels.namespace, &labels.ingress, &labels.service, &labels.path, &labels.canary];
    assert_eq!(values, ["*.a.com", "default", "ing", "web", "/api", ""]);
    let canary = route.canary_labels.as_ref().unwrap();
    assert_eq!((canary.service.as_str(), canary.canary.as_str()), ("web", "default-web-v2-80"));
    // A path that matches no route: the virtual host's labels.
    assert_eq!(selected.host.unwrap().labels.host, "*.a.com");
    assert!(t.select(Some("x.a.com"), "/other").route.is_none());
}
